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
