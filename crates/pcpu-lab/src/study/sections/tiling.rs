//! §5d: page-tiling bursts (`Policy::tile_bursts`), on the study's
//! workloads.

use std::fmt::Write as _;

use super::Ctx;
use crate::run::LabError;
use crate::study::compare::changes;
use crate::study::format::span;
use crate::study::subjects::after_kb;
use crate::study::writer::Writer;

/// `§5d`, "Bursts that tile the pages".
pub(super) fn tiling(md: &mut String, ctx: &Ctx, w: &mut Writer) -> Result<(), LabError> {
    let Ctx { subjects, .. } = *ctx;
    let res = ctx.res.tile_bursts;
    let _ = writeln!(
        md,
        "### 5d. Bursts that tile the pages (`tile_bursts`)\n\n\
         A memory cgroup's `mkdir` in Linux 6.1 allocates eleven objects, 2052 bytes per unit: \
         4 bytes more than half a page. Kept contiguous, such bursts land at every page offset, \
         and a survivor among removed neighbours straddles two pages half the time: 1.5 pages \
         per surviving cgroup (§4's table). Without its 4-byte counter the burst is exactly \
         2048 bytes, with no hole when it starts on a 64-byte boundary (the hole before its \
         64-byte-aligned object is filled by its own later 8- and 32-byte objects). With \
         `tile_bursts` (on in `pcpu`) the allocator learns, per call site of a task's first \
         object, how many bytes the last task that started there placed (4-byte objects \
         aside). When that is a power of two from a quarter page to a page, the next such task \
         *tiles*: its region starts on a multiple of that size (in dynamic chunks only: the \
         first chunk is populated anyway), and its 4-byte objects go to the shared long-lived \
         pages (§5b), where they pack 1024 to a page. Equal bursts then tile the pages, and a \
         survivor pins the one page it fills. A burst of any other size is placed as before; \
         one that turns out larger only starts aligned.\n"
    );
    md.push_str(&w.sweep_section(res, "pcpu rules, page-tiling bursts varied")?);
    let mut floors = Vec::new();
    for s in subjects {
        let (Some(off), Some(on)) = (res.get(&s.input.name, "off"), res.get(&s.input.name, "on"))
        else {
            continue;
        };
        let (Some(a), Some(b)) = (on.phase("C"), off.phase("C")) else {
            continue;
        };
        floors.push(format!(
            "{} {} kB against {} kB",
            s.short, a.floor_kb, b.floor_kb
        ));
    }
    let after = changes(subjects, res, "on", "off", &after_kb);
    let _ = writeln!(
        md,
        "Tiling changes resident memory after removals by {}{}. The pages given back at \
         the troughs are populated again by the next round, so the churn workloads populate \
         more pages over the run (the traffic table).\n",
        span(&after),
        if floors.is_empty() {
            String::new()
        } else {
            format!(
                "; the cover letters' placement floor at C: {}",
                floors.join(", ")
            )
        }
    );
    Ok(())
}
