//! "Who pins my memory", in a running program: the call sites and threads
//! whose live per-CPU objects keep pages populated
//! ([`Builder::track_owners`](crate::Builder::track_owners),
//! [`PerCpuAllocator::pins`](crate::PerCpuAllocator::pins)).
//!
//! The kernel's percpu allocator has no owner of an allocation (its
//! tracepoint has a `call_site`, which nothing keeps); `pcpu pins` answers
//! the question for a replayed trace. Here the allocator itself keeps, for
//! every live allocation, the source location of the call that made it
//! (`#[track_caller]`) and the thread that made it, and reports per owner
//! the objects, the pages they touch, the pages on which they are alone
//! (freeing them would empty those pages, which the balance work then gives
//! back) and their byte-proportional share of the pages holding objects
//! (`pcpu_core::tally_pins`, which `pcpu pins` uses too).
//!
//! Tracking costs a map entry per live allocation (about 48 bytes) and a
//! map update under the allocator's lock at every allocation and free, and
//! it turns the thread caches off for this allocator (a cached area changes
//! owner without the lock).

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::panic::Location;

use serde::Serialize;

use pcpu_core::{tally_pins, Allocator, ChunkId, PageState, Pins};

use crate::hint::ThreadName;
use crate::word_hash::WordMap;

/// Who made one live allocation.
#[derive(Clone, Copy, Debug)]
struct Owner {
    site: &'static Location<'static>,
    /// The thread's number (`hint::thread_number`).
    thread: u64,
    size: usize,
}

/// The owners of an allocator's live allocations.
///
/// # Invariants
/// Every key of `live` is the start of a live allocation of the core, of
/// the recorded size, and every live allocation is a key (checked by
/// [`Owners::check`]); `threads` names every thread of `live` (and maybe
/// others: names of threads without live objects are dropped once there
/// are [`PRUNE_AT`] names, or twice as many as the last pruning kept).
#[derive(Debug, Default)]
pub(crate) struct Owners {
    live: WordMap<(ChunkId, usize), Owner>,
    threads: WordMap<u64, String>,
    /// Names kept at the last pruning, doubled (0: none yet).
    prune_at: usize,
    /// Prunings so far: a thread's mark from an earlier one is stale.
    epoch: u64,
}

/// Thread names kept before the first pruning: a program that spawns
/// threads without end keeps the names of those holding objects only.
pub(crate) const PRUNE_AT: usize = 1024;

thread_local! {
    /// The tracked allocator (its id) this thread last gave its name to,
    /// and that allocator's pruning epoch then: a thread allocating in one
    /// allocator looks its name up once (again after a pruning).
    static NAMED_IN: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

impl Owners {
    /// The allocation of `size` bytes at `offset` of `chunk` was just made
    /// by the caller at `site`, on this thread, in allocator `id` (whose
    /// owners these are).
    pub(crate) fn record(
        &mut self,
        id: u64,
        chunk: ChunkId,
        offset: usize,
        size: usize,
        site: &'static Location<'static>,
    ) {
        let thread = crate::hint::thread_number();
        if NAMED_IN.with(Cell::get) != (id, self.epoch) {
            if self.threads.len() >= self.prune_at.max(PRUNE_AT) {
                self.prune();
            }
            self.threads
                .entry(thread)
                .or_insert_with(|| match crate::hint::thread_name() {
                    ThreadName::Named(name) => format!("{name} (#{thread})"),
                    ThreadName::Unnamed => format!("thread #{thread}"),
                    ThreadName::Unknown => format!("<...> (#{thread})"),
                });
            NAMED_IN.with(|n| n.set((id, self.epoch)));
        }
        self.live
            .insert((chunk, offset), Owner { site, thread, size });
    }

    /// Drops the names of threads without live objects; every thread names
    /// itself again at its next allocation (a new epoch).
    fn prune(&mut self) {
        let holding: std::collections::HashSet<u64> =
            self.live.values().map(|o| o.thread).collect();
        self.threads.retain(|t, _| holding.contains(t));
        self.epoch += 1;
        self.prune_at = 2 * self.threads.len();
    }

    /// The allocation at `offset` of `chunk` was freed.
    pub(crate) fn forget(&mut self, chunk: ChunkId, offset: usize) {
        self.live.remove(&(chunk, offset));
    }

    /// Check the invariants against `core`.
    pub(crate) fn check(&self, core: &Allocator) -> Result<(), String> {
        for (&(chunk, offset), o) in &self.live {
            match core.allocation_size(chunk, offset) {
                Ok(size) if size == o.size => {}
                found => {
                    return Err(format!(
                        "owner of (chunk {}, offset {offset}, {} bytes) has no such live \
                         allocation ({found:?})",
                        chunk.0, o.size
                    ))
                }
            }
            if !self.threads.contains_key(&o.thread) {
                return Err(format!("thread #{} has no name", o.thread));
            }
        }
        let live = core.stats().nr_cur_alloc;
        if self.live.len() as u64 != live {
            return Err(format!(
                "{} owners for {live} live allocations",
                self.live.len()
            ));
        }
        Ok(())
    }

    /// What the report needs, copied from `core` and these owners (under
    /// the allocator's lock: the figures are computed after it is let go,
    /// by [`Snapshot::report`]).
    pub(crate) fn snapshot(&self, core: &Allocator) -> Snapshot {
        let (mut populated, mut used, mut empty) = (0, 0, 0);
        for id in core.chunk_ids() {
            let c = core.chunk(id).expect("listed chunk");
            populated += c.nr_populated();
            for p in 0..c.nr_pages() {
                match c.page_state(p) {
                    PageState::Used => used += 1,
                    PageState::Empty => empty += 1,
                    _ => {}
                }
            }
        }
        Snapshot {
            page_size: core.geometry().page_size(),
            units: core.geometry().nr_units(),
            objects: self
                .live
                .iter()
                .map(|(&(c, off), &o)| (c, off, o))
                .collect(),
            threads: self.threads.clone(),
            populated,
            used,
            empty,
        }
    }
}

/// An allocator's owners and page counts at one moment
/// ([`Owners::snapshot`]).
pub(crate) struct Snapshot {
    page_size: usize,
    units: usize,
    objects: Vec<(ChunkId, usize, Owner)>,
    threads: WordMap<u64, String>,
    /// Populated pages, and of them those holding allocated bytes and
    /// those holding nothing.
    populated: usize,
    used: usize,
    empty: usize,
}

impl Snapshot {
    /// The report.
    pub(crate) fn report(self) -> PinsReport {
        // Owners as indices, by call site and by thread.
        let mut sites: Vec<&'static Location<'static>> = Vec::new();
        let mut threads: Vec<u64> = Vec::new();
        let mut site_of = HashMap::new();
        let mut thread_of = HashMap::new();
        let keyed: Vec<(usize, usize, ChunkId, usize, usize)> = self
            .objects
            .iter()
            .map(|&(chunk, offset, o)| {
                let s = *site_of.entry(o.site).or_insert_with(|| {
                    sites.push(o.site);
                    sites.len() - 1
                });
                let t = *thread_of.entry(o.thread).or_insert_with(|| {
                    threads.push(o.thread);
                    threads.len() - 1
                });
                (s, t, chunk, offset, o.size)
            })
            .collect();
        let by_site = tally_pins(self.page_size, keyed.iter().map(|k| (k.0, k.2, k.3, k.4)));
        let by_thread = tally_pins(self.page_size, keyed.iter().map(|k| (k.1, k.2, k.3, k.4)));
        let with_objects = by_site.pages.len();
        PinsReport {
            page_size: self.page_size,
            units: self.units,
            populated_pages: self.populated,
            pages_with_objects: with_objects,
            other_used_pages: self.used - with_objects.min(self.used),
            empty_pages: self.empty,
            sites: rows(&by_site, |i| {
                let site = sites[i];
                format!("{}:{}:{}", site.file(), site.line(), site.column())
            }),
            threads: rows(&by_thread, |i| self.threads[&threads[i]].clone()),
        }
    }
}

/// The rows of `pins`, owner `i` named `name(i)`: most pages pinned first,
/// then largest share, then name.
fn rows(pins: &Pins, name: impl Fn(usize) -> String) -> Vec<PinRow> {
    let mut rows: Vec<PinRow> = pins
        .owners
        .iter()
        .enumerate()
        .map(|(i, t)| PinRow {
            owner: name(i),
            objects: t.objects,
            bytes: t.bytes,
            pages_touched: t.pages_touched,
            pages_pinned: t.pages_pinned,
            share_pages: t.share_pages,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.pages_pinned
            .cmp(&a.pages_pinned)
            .then(b.share_pages.total_cmp(&a.share_pages))
            .then_with(|| a.owner.cmp(&b.owner))
    });
    rows
}

/// One owner (a call site or a thread) in a [`PinsReport`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PinRow {
    /// `file:line:column` of the allocating call, or the thread (its name
    /// and number, or `thread #n`).
    pub owner: String,
    /// Live objects.
    pub objects: u64,
    /// Their bytes, per unit.
    pub bytes: u64,
    /// Pages (per unit) holding at least one of its objects.
    pub pages_touched: u64,
    /// Pages on which its objects are the only ones.
    pub pages_pinned: u64,
    /// Its byte-proportional share of the pages it touches.
    pub share_pages: f64,
}

/// Who keeps an allocator's pages populated
/// ([`PerCpuAllocator::pins`](crate::PerCpuAllocator::pins)). Pages are
/// per unit: every figure holds in each of the `units` copies. Serialises
/// to JSON with the field names below (`serde_json::to_string(&report)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct PinsReport {
    /// Page size in bytes.
    pub page_size: usize,
    /// Units (copies of every page).
    pub units: usize,
    /// Populated pages, over all chunks.
    pub populated_pages: usize,
    /// Pages holding live objects.
    pub pages_with_objects: usize,
    /// Pages holding allocator bytes that are no object (the first
    /// chunk's alignment head, if any).
    pub other_used_pages: usize,
    /// Populated pages holding nothing (the balance work's business: the
    /// empty-page reserve, or not reclaimed yet).
    pub empty_pages: usize,
    /// Per call site, most pages pinned first.
    pub sites: Vec<PinRow>,
    /// Per thread, most pages pinned first.
    pub threads: Vec<PinRow>,
}

impl PinsReport {
    /// The report as text, the first `top` rows of each table.
    pub fn render(&self, top: usize) -> String {
        let kb = |pages: f64| pages * (self.page_size * self.units) as f64 / 1024.0;
        let mut out = format!(
            "{} pages populated per unit ({:.0} kB in all): {} hold live objects, {} are \
             empty, {} hold other bytes\n",
            self.populated_pages,
            kb(self.populated_pages as f64),
            self.pages_with_objects,
            self.empty_pages,
            self.other_used_pages
        );
        for (title, rows) in [("call site", &self.sites), ("thread", &self.threads)] {
            let width = rows
                .iter()
                .take(top)
                .map(|r| r.owner.len())
                .max()
                .unwrap_or(0)
                .max(title.len());
            out.push_str(&format!(
                "\n{title:<width$}  {:>8}  {:>10}  {:>7}  {:>6}  {:>9}  {:>8}\n",
                "objects", "bytes", "touched", "pinned", "pinned kB", "share kB"
            ));
            for r in rows.iter().take(top) {
                out.push_str(&format!(
                    "{:<width$}  {:>8}  {:>10}  {:>7}  {:>6}  {:>9.0}  {:>8.0}\n",
                    r.owner,
                    r.objects,
                    r.bytes,
                    r.pages_touched,
                    r.pages_pinned,
                    kb(r.pages_pinned as f64),
                    kb(r.share_pages)
                ));
            }
            if rows.len() > top {
                out.push_str(&format!("({} more)\n", rows.len() - top));
            }
        }
        out
    }
}

impl fmt::Display for PinsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn names_of_threads_without_objects_are_dropped_and_asked_again() {
        let owners = Mutex::new(Owners::default());
        let site = Location::caller();
        let me = crate::hint::thread_number();
        let chunk = ChunkId(1);
        // This thread allocates and frees: named, then holding nothing.
        owners.lock().unwrap().record(7, chunk, 0, 8, site);
        owners.lock().unwrap().forget(chunk, 0);
        // Threads without end, each keeping one object in ten.
        for i in 1..=3 * PRUNE_AT {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut o = owners.lock().unwrap();
                    o.record(7, chunk, 8 * i, 8, site);
                    if i % 10 != 0 {
                        o.forget(chunk, 8 * i);
                    }
                });
            });
        }
        let mut o = owners.lock().unwrap();
        // Every thread holding an object is named; the others mostly not.
        for owner in o.live.values() {
            assert!(o.threads.contains_key(&owner.thread));
        }
        let holding = 3 * PRUNE_AT / 10;
        assert!(
            o.threads.len() <= 2 * holding + PRUNE_AT,
            "{} names",
            o.threads.len()
        );
        assert!(o.epoch >= 1);
        // This thread's name went with a pruning; it names itself again.
        assert!(!o.threads.contains_key(&me));
        o.record(7, chunk, 0, 8, site);
        assert!(o.threads.contains_key(&me));
    }
}
