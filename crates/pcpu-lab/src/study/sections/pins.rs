//! Question 6, who pins the memory: pin reports as markdown, and the
//! per-cgroup averages that §4 uses.

use std::fmt::Write as _;

use super::Ctx;
use crate::pins::PinsReport;
use crate::study::format::{md_table, plural};

/// §6: the pin reports.
pub(super) fn who_pins(md: &mut String, ctx: &Ctx) {
    let Ctx { pin_reports, .. } = *ctx;
    let _ = writeln!(md, "## 6. Who pins the memory\n");
    let _ = writeln!(
        md,
        "`pcpu pins <capture> --at <phase>` replays up to a phase and attributes every resident \
         page: *pinned* pages hold live objects of one call site only (freeing them would \
         empty the page); *share* splits each page among the call sites on it by live bytes \
         (shares add up to the pages holding live objects). Linux 5.14 rules, first fit:\n"
    );
    for r in pin_reports {
        pins_md(md, r, 6);
    }
    page_maps_md(md, ctx.page_maps);
}

/// Chunks of each page map drawn in full.
const DRAWN_CHUNKS: usize = 2;

/// Where the objects sit: the first dynamic chunks' page maps under each
/// policy, and the lengths of the runs of used pages over all of them.
fn page_maps_md(md: &mut String, maps: &[(String, String, Vec<String>)]) {
    let Some((trace, _, _)) = maps.first() else {
        return;
    };
    let _ = writeln!(
        md,
        "**Where the objects sit.** `pcpu stats <capture> --at <phase> --map` draws every \
         chunk's pages, one character per page: `#` holds live objects, `.` is populated but \
         empty, `-` is unpopulated. The first {DRAWN_CHUNKS} dynamic chunks of **{trace}** at \
         phase C, balance work on demand:\n"
    );
    let width = maps.iter().map(|(_, p, _)| p.len()).max().unwrap_or(0);
    let _ = writeln!(md, "```text");
    for (_, policy, chunks) in maps {
        for (i, c) in chunks.iter().take(DRAWN_CHUNKS).enumerate() {
            let label = if i == 0 { policy.as_str() } else { "" };
            let _ = writeln!(md, "{label:<width$}  {c}");
        }
    }
    let _ = writeln!(md, "```\n");
    let rows: Vec<Vec<String>> = maps
        .iter()
        .map(|(_, policy, chunks)| {
            let runs = used_runs(chunks);
            let count = |f: &dyn Fn(usize) -> bool| runs.iter().filter(|&&r| f(r)).count();
            let empty: usize = chunks
                .iter()
                .map(|c| c.chars().filter(|&p| p == '.').count())
                .sum();
            vec![
                policy.clone(),
                runs.len().to_string(),
                count(&|r| r == 1).to_string(),
                count(&|r| r == 2).to_string(),
                count(&|r| r > 2).to_string(),
                runs.iter().sum::<usize>().to_string(),
                empty.to_string(),
            ]
        })
        .collect();
    let headers: Vec<String> = [
        "policy",
        "runs of used pages",
        "1 page",
        "2 pages",
        "longer",
        "used pages",
        "populated but empty",
    ]
    .map(String::from)
    .to_vec();
    md_table(md, &headers, &rows);
    let _ = writeln!(
        md,
        "All dynamic chunks; a run is pages in a row that hold live objects. Under `pcpu` a \
         cgroup's objects are contiguous and start on a half-page boundary with its counter \
         pooled (§5d), so nearly every run is one surviving cgroup on one page (without \
         `tile_bursts` it straddles two half the time, which decided §8's floor at C). Under \
         `linux-5.14` first \
         fit puts a new cgroup's small objects into the holes the one before left, and most \
         runs are two pages.\n"
    );
}

/// Lengths of the maximal runs of used pages (`#`) in `chunks`, each chunk
/// on its own.
fn used_runs(chunks: &[String]) -> Vec<usize> {
    let mut runs = Vec::new();
    for c in chunks {
        let mut run = 0;
        for p in c.chars().chain(core::iter::once(' ')) {
            if p == '#' {
                run += 1;
            } else if run > 0 {
                runs.push(run);
                run = 0;
            }
        }
    }
    runs
}

/// A pin report as markdown: the summary line, the `top` call sites, and
/// the tasks.
fn pins_md(md: &mut String, r: &PinsReport, top: usize) {
    let kb = |p: u64| r.kb(p as f64) as u64;
    let _ = writeln!(
        md,
        "**{}** at phase {} ({}, {}): resident {} kB; {} kB hold live objects, {} kB are populated but empty, {} kB are the static and reserved areas.\n",
        r.trace,
        r.phase,
        r.policy,
        r.classes,
        kb(r.resident_pages),
        kb(r.used_pages),
        kb(r.empty_pages),
        kb(r.static_pages)
    );
    let headers: Vec<String> = [
        "call site",
        "objects",
        "live bytes",
        "pages touched",
        "pages pinned",
        "pinned kB",
        "share kB",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = r
        .by_call_site
        .iter()
        .take(top)
        .map(|x| {
            vec![
                format!("`{}`", x.owner),
                x.objects.to_string(),
                x.bytes.to_string(),
                x.pages_touched.to_string(),
                x.pages_pinned.to_string(),
                kb(x.pages_pinned).to_string(),
                format!("{:.0}", r.kb(x.share_pages)),
            ]
        })
        .collect();
    md_table(md, &headers, &rows);
    let tasks = &r.by_task;
    let pinning = tasks.iter().filter(|t| t.pages_pinned > 0).count() as u64;
    let _ = writeln!(
        md,
        "By task: {} own live objects, {} the sole owner of at least one page; the top one, `{}`, pins {}.\n",
        plural(tasks.len() as u64, "task", "tasks"),
        plural(pinning, "is", "are"),
        tasks.first().map_or("-", |t| t.owner.as_str()),
        plural(tasks.first().map_or(0, |t| t.pages_pinned), "page", "pages"),
    );
}

/// Averages over the `mkdir` tasks (one per surviving cgroup) of a pin
/// report: (cgroups, pages touched per cgroup, pages pinned per cgroup).
pub(super) fn per_cgroup(r: &PinsReport) -> (u64, f64, f64) {
    let rows: Vec<_> = r
        .by_task
        .iter()
        .filter(|t| t.owner.starts_with("mkdir-"))
        .collect();
    let n = rows.len().max(1) as f64;
    (
        rows.len() as u64,
        rows.iter().map(|t| t.pages_touched).sum::<u64>() as f64 / n,
        rows.iter().map(|t| t.pages_pinned).sum::<u64>() as f64 / n,
    )
}

#[cfg(test)]
mod tests {
    use super::{page_maps_md, used_runs};

    #[test]
    fn page_maps_are_drawn_and_counted() {
        let maps = vec![
            (
                "t".to_string(),
                "a".to_string(),
                vec!["#..##".to_string(), "-###".to_string(), "#".to_string()],
            ),
            ("t".to_string(), "bb".to_string(), vec!["#-#".to_string()]),
        ];
        let mut md = String::new();
        page_maps_md(&mut md, &maps);
        assert!(md.contains("**t** at"), "{md}");
        // Two chunks drawn of the first, labelled once; the third is not.
        assert!(md.contains("\na   #..##\n    -###\nbb  #-#\n```"), "{md}");
        assert!(md.contains("| a | 4 | 2 | 1 | 1 | 7 | 2 |"), "{md}");
        assert!(md.contains("| bb | 2 | 2 | 0 | 0 | 2 | 0 |"), "{md}");
        let mut none = String::new();
        page_maps_md(&mut none, &[]);
        assert!(none.is_empty());
    }

    #[test]
    fn runs_of_used_pages_per_chunk() {
        let maps = ["#..##-###".to_string(), "##".to_string(), "-.-".to_string()];
        assert_eq!(used_runs(&maps), vec![1, 2, 3, 2]);
    }
}
