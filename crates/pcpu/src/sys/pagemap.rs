//! How many pages of an address range are backed by memory of this process's
//! own, from `/proc/self/pagemap` (one 64-bit entry per virtual page).
//!
//! `mincore` cannot tell: it reports a page that was only *read* as resident,
//! although all such pages map the kernel's one shared zero page and take no
//! memory. With units that are not pre-faulted (`sys::units::HotUnits`), reads of a
//! unit's untouched copies are common (zeroing checks a copy before it
//! writes, `iter` and sums read every copy), so the allocator counts pages
//! that are present *and* mapped by this process alone: the zero page is
//! never "exclusively mapped", a page of our own always is — except while a
//! `fork()` child still shares it copy-on-write, which is then counted by
//! neither process until one of them writes it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Bit 63 of an entry: the page is present in RAM.
const PRESENT: u64 = 1 << 63;
/// Bit 56 (Linux 4.2 and later): the page is mapped by this process only.
const EXCLUSIVE: u64 = 1 << 56;

/// Entries read per `pread`.
const BATCH: usize = 4096;

/// Pages of `addr..addr + pages * page_size` (page aligned) that are present
/// and exclusively mapped.
///
/// # Errors
/// When `/proc/self/pagemap` cannot be opened or read (no `/proc`, or a
/// short read).
pub(crate) fn backed_pages(addr: usize, pages: usize, page_size: usize) -> io::Result<usize> {
    let file = File::open("/proc/self/pagemap")?;
    let first = (addr / page_size) as u64;
    let mut buf = vec![0u8; BATCH * 8];
    let mut count = 0;
    let mut done = 0;
    while done < pages {
        let n = (pages - done).min(BATCH);
        let bytes = &mut buf[..n * 8];
        file.read_exact_at(bytes, (first + done as u64) * 8)?;
        count += bytes
            .chunks_exact(8)
            .map(|e| u64::from_ne_bytes(e.try_into().expect("8-byte chunks")))
            .filter(|&e| e & (PRESENT | EXCLUSIVE) == PRESENT | EXCLUSIVE)
            .count();
        done += n;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_written_heap_pages() {
        let ps = crate::sys::mmap::page_size();
        // Heap memory of our own: 3 pages, written.
        let mut v = vec![1u8; 4 * ps];
        let start = v.as_ptr() as usize;
        let aligned = start.next_multiple_of(ps);
        for b in v.iter_mut() {
            *b = 2;
        }
        let n = backed_pages(aligned, 3, ps).unwrap();
        assert_eq!(n, 3);
        std::hint::black_box(&v);
    }
}
