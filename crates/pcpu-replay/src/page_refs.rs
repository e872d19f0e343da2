//! Pages holding live bytes, reference-counted (the placement floor).

use std::collections::HashMap;

/// Reference-counted set of pages holding live bytes.
#[derive(Default, Debug)]
pub(crate) struct PageRefs {
    refs: HashMap<(u32, u32), u32>,
    pub(crate) pages: u64,
    /// The chunks whose pages `fixed_pages` counts (the first and reserved
    /// chunks, which are never depopulated; `None`: not counted).
    fixed: [Option<u32>; 2],
    /// Of `pages`, those of the `fixed` chunks.
    pub(crate) fixed_pages: u64,
}

impl PageRefs {
    pub(crate) fn new(fixed: [Option<u32>; 2]) -> Self {
        PageRefs {
            fixed,
            ..PageRefs::default()
        }
    }

    pub(crate) fn add(&mut self, chunk: u32, off: u32, size: u32, page: u32, delta: i32) {
        let in_fixed = u64::from(self.fixed.contains(&Some(chunk)));
        for p in off / page..(off + size).div_ceil(page) {
            let e = self.refs.entry((chunk, p)).or_insert(0);
            if delta > 0 {
                if *e == 0 {
                    self.pages += 1;
                    self.fixed_pages += in_fixed;
                }
                *e += 1;
            } else {
                *e -= 1;
                if *e == 0 {
                    self.pages -= 1;
                    self.fixed_pages -= in_fixed;
                    self.refs.remove(&(chunk, p));
                }
            }
        }
    }
}
