//! The page map: what every page of every chunk holds, one character per
//! page. `percpu_stats` gives per-chunk counts but no map (the kernel has
//! none either), so it cannot show *where* a mostly empty chunk's live
//! objects sit, which is what decides how much depopulation can give back.

use alloc::string::String;
use core::fmt::Write;

use crate::allocator::Allocator;
use crate::chunk::{Chunk, ChunkKind};
use crate::ChunkId;

/// What one page of a chunk holds (the same in every unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PageState {
    /// Not populated: no memory behind it.
    Unpopulated,
    /// Populated, no allocated or hidden byte on it: what depopulation can
    /// give back.
    Empty,
    /// Populated, holding allocated (or hidden) bytes.
    Used,
    /// Holding allocated bytes but not populated yet: an area placed by the
    /// two-phase allocation ([`Allocator::alloc_area`]) whose pages are still
    /// being populated. Never seen between whole operations.
    Placed,
}

impl PageState {
    /// Its character in [`Allocator::page_map`]: `#` used, `.` empty,
    /// `-` unpopulated, `!` placed.
    pub fn symbol(self) -> char {
        match self {
            PageState::Unpopulated => '-',
            PageState::Empty => '.',
            PageState::Used => '#',
            PageState::Placed => '!',
        }
    }
}

impl Chunk {
    /// What page `page` holds.
    ///
    /// # Panics
    /// If `page >= self.nr_pages()`.
    pub fn page_state(&self, page: usize) -> PageState {
        match (self.is_page_populated(page), self.is_page_used(page)) {
            (false, false) => PageState::Unpopulated,
            (true, false) => PageState::Empty,
            (true, true) => PageState::Used,
            (false, true) => PageState::Placed,
        }
    }

    /// The chunk's pages as [`PageState::symbol`]s, page 0 first.
    pub fn page_symbols(&self) -> String {
        (0..self.nr_pages())
            .map(|p| self.page_state(p).symbol())
            .collect()
    }
}

/// Pages per line of [`Allocator::page_map`].
const PER_LINE: usize = 64;

impl Allocator {
    /// Every chunk's pages, one character per page, in chunk-id order (the
    /// order of creation, ids being reused after a chunk is destroyed):
    ///
    /// ```text
    /// chunk 3 (dynamic, sidelined): 128 pages, 9 populated: 6 used, 3 empty
    ///     0  #.#..##-------------------------------------------------------
    ///    64  ----------------------------------------------------------------
    /// ```
    ///
    /// Each chunk's header says which list it is on when that is not an
    /// active slot (`sidelined`, `to_depopulate`, `free`), and the lines give
    /// the page number of their first page. A key comes first.
    pub fn page_map(&self) -> String {
        let mut out = String::from(
            "Page map (one character per page, the same in every unit):\n  \
             # populated, holds allocations (or the first chunk's hidden static \
             or reserved bytes)   . populated, empty   - unpopulated   \
             ! allocated, not yet populated\n",
        );
        // Page numbers as wide as the longest chunk's, so that all line up.
        let width = self
            .chunk_ids()
            .map(|id| digits(self.c(id.0).nr_pages().saturating_sub(1)))
            .max()
            .unwrap_or(1);
        for id in self.chunk_ids() {
            self.chunk_map(&mut out, id, width);
        }
        out
    }

    /// One chunk's block of [`Allocator::page_map`].
    fn chunk_map(&self, out: &mut String, id: ChunkId, width: usize) {
        let c = self.c(id.0);
        let kind = match c.kind() {
            ChunkKind::First => "first",
            ChunkKind::Reserved => "reserved",
            ChunkKind::Dynamic => "dynamic",
        };
        let slot = self.lists.slot_of(id.0).map(usize::from);
        let list = if slot == Some(self.layout.sidelined) {
            ", sidelined"
        } else if slot == Some(self.layout.to_depopulate) {
            ", to_depopulate"
        } else if slot == Some(self.layout.free) {
            ", free"
        } else {
            ""
        };
        let symbols = c.page_symbols();
        let used = symbols.chars().filter(|&s| s == '#').count();
        let pages = if c.nr_pages() == 1 { "page" } else { "pages" };
        let _ = writeln!(
            out,
            "chunk {} ({kind}{list}): {} {pages}, {} populated: {used} used, {} empty",
            id.0,
            c.nr_pages(),
            c.nr_populated(),
            symbols.chars().filter(|&s| s == '.').count(),
        );
        for (i, line) in symbols.as_bytes().chunks(PER_LINE).enumerate() {
            // The symbols are ASCII.
            let line = core::str::from_utf8(line).unwrap_or_default();
            let _ = writeln!(out, "  {:>width$}  {line}", i * PER_LINE);
        }
    }
}

/// Decimal digits of `n`.
fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AllocFlags, Geometry, Policy, SimBackend};

    fn small() -> (Allocator, SimBackend) {
        // 4 units of 32 KiB (8 pages); the first chunk's dynamic area is
        // 8 KiB after a 4 KiB static area.
        let g = Geometry::from_kernel_line("s4096 r0 d8192 u32768", 4).unwrap();
        (Allocator::new(g, Policy::default()), SimBackend::default())
    }

    #[test]
    fn symbols_follow_population_and_use() {
        let (mut a, mut b) = small();
        // Fill the first chunk, then put one object in a new chunk.
        let mut objs = alloc::vec::Vec::new();
        let second = loop {
            let x = a.alloc(&mut b, 1024, 8, AllocFlags::NORMAL).unwrap();
            let chunk = x.chunk;
            objs.push(x);
            if chunk != a.first_chunk() {
                break chunk;
            }
        };
        let c = a.chunk(second).unwrap();
        assert_eq!(c.page_state(0), PageState::Used);
        for p in 1..c.nr_pages() {
            let s = c.page_state(p);
            assert!(
                s == PageState::Empty || s == PageState::Unpopulated,
                "{p}: {s:?}"
            );
            assert_eq!(s == PageState::Empty, c.is_page_populated(p));
        }
        let map = a.page_map();
        let line = map
            .lines()
            .find(|l| l.starts_with(&alloc::format!("chunk {} (dynamic)", second.0)))
            .unwrap();
        let pop = c.nr_populated();
        assert!(
            line.ends_with(&alloc::format!(
                "{pop} populated: 1 used, {} empty",
                pop - 1
            )),
            "{line}"
        );
        assert!(map.contains(&alloc::format!("  0  #{}", &c.page_symbols()[1..])));
        // The first chunk's static area is hidden: used.
        assert!(a
            .chunk(a.first_chunk())
            .unwrap()
            .page_symbols()
            .starts_with('#'));
    }

    #[test]
    fn long_chunks_wrap_and_lists_are_named() {
        let g = Geometry::from_kernel_line(
            "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
            4,
        )
        .unwrap();
        let mut a = Allocator::new(g, Policy::default());
        let mut b = SimBackend::default();
        let x = loop {
            let x = a.alloc(&mut b, 4096, 8, AllocFlags::NORMAL).unwrap();
            if x.chunk != a.first_chunk() && a.reserved_chunk() != Some(x.chunk) {
                break x;
            }
        };
        a.free(x.chunk, x.offset).unwrap();
        let map = a.page_map();
        // 128 pages: two lines of 64, numbered with three digits, and the
        // shorter chunks' lines as wide.
        assert!(map.contains("\n    0  "), "{map}");
        assert!(map.contains("\n   64  "), "{map}");
        assert!(!map.contains("\n  0  "), "{map}");
        assert!(map.contains(&alloc::format!("chunk {} (dynamic, free)", x.chunk.0)));
        assert!(map.contains("(reserved)"));
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(127), 3);
    }

    #[test]
    fn placed_pages_show_until_populated() {
        let (mut a, mut b) = small();
        // Open a second chunk (populated only under its first object), then
        // place areas until one lands on an unpopulated page.
        while a.alloc(&mut b, 1024, 8, AllocFlags::NORMAL).unwrap().chunk == a.first_chunk() {}
        let mut fill = alloc::vec::Vec::new();
        loop {
            let req = a.request(1024, 8).unwrap();
            let area = a.alloc_area(req, AllocFlags::NORMAL).unwrap();
            if a.next_unpopulated(&area).is_some() {
                let c = a.chunk(area.chunk).unwrap();
                let page = area.offset / 4096;
                assert_eq!(c.page_state(page), PageState::Placed);
                assert!(a.chunk(area.chunk).unwrap().page_symbols().contains('!'));
                while let Some(pages) = a.next_unpopulated(&area) {
                    use crate::Backend;
                    b.populate(area.chunk, pages.clone()).unwrap();
                    a.commit_populated(area.chunk, pages).unwrap();
                }
                a.finish_alloc();
                assert_eq!(
                    a.chunk(area.chunk).unwrap().page_state(page),
                    PageState::Used
                );
                assert!(!a.chunk(area.chunk).unwrap().page_symbols().contains('!'));
                break;
            }
            a.finish_alloc();
            fill.push(area);
        }
        a.check_invariants().unwrap();
    }
}
