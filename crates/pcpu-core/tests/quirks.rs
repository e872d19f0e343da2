//! The kernel's quirks that the allocator replicates on purpose (DESIGN.md
//! §8): the `linux-*` policies must behave exactly as the kernel does, and the
//! invariant checker must accept what the kernel really does.

use pcpu_core::*;

/// The kernel's stale `left_free` (DESIGN.md §8): a sequence found by a
/// randomised review leaves the chunk's `contig_hint` three bits above the
/// largest free run, as `pcpu_block_refresh_hint` would; the checker allows
/// exactly that (it failed here before).
#[test]
fn stale_left_free_is_replicated_and_allowed() {
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size: 5440,
    };
    let geo = Geometry::new(256, 1, 256 * 34, fc).unwrap();
    let mut a = Allocator::new(geo, Policy::new(PolicyKind::Linux511));
    let mut b = SimBackend::default();
    let c = a.create_chunk(&mut b).unwrap();
    for (alloc, off, size) in [
        (true, 768, 1032),
        (true, 2376, 420),
        (true, 2816, 24),
        (true, 3840, 40),
        (false, 768, 0),
        (false, 3840, 0),
        (false, 2816, 0),
        (true, 3908, 120),
        (false, 2376, 0),
        (true, 5544, 1028),
        (true, 3896, 12),
    ] {
        if alloc {
            a.alloc_at(&mut b, c, off, size, 4, AllocFlags::NORMAL)
                .unwrap();
        } else {
            a.free(c, off).unwrap();
        }
        a.check_invariants().unwrap();
    }
    assert_eq!(a.chunk(c).unwrap().chunk_md().contig_hint, 977);
}
