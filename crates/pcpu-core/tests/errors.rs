//! Bad input and backend failures: typed errors, state unchanged, nothing
//! leaked, invariants hold.

use pcpu_core::*;

fn alloc_with_reserved() -> Allocator {
    let fc = FirstChunk {
        static_size: 4000,
        reserved_size: 8192,
        dyn_size: 12288,
    };
    Allocator::new(
        Geometry::new(4096, 2, 64 << 10, fc).unwrap(),
        Policy::default(),
    )
}

fn snapshot(a: &Allocator) -> (String, i32, usize, usize) {
    (
        a.percpu_stats(),
        a.nr_empty_pop_pages(),
        a.nr_populated(),
        a.nr_chunks(),
    )
}

#[test]
fn invalid_requests_are_rejected_without_change() {
    let mut a = alloc_with_reserved();
    let mut b = SimBackend::default();
    let before = snapshot(&a);
    for (size, align) in [
        (0, 4),
        (MIN_UNIT_SIZE + 1, 4),
        (8, 12),
        (8, 8192),
        (8, 0x3000),
    ] {
        let e = a
            .alloc(&mut b, size, align, AllocFlags::NORMAL)
            .unwrap_err();
        assert!(
            matches!(
                e,
                AllocError::InvalidSize { .. } | AllocError::InvalidAlign { .. }
            ),
            "{e}"
        );
        assert!(e.to_string().starts_with("illegal"), "{e}");
    }
    assert_eq!(before, snapshot(&a));
    a.check_invariants().unwrap();
    assert_eq!(b, SimBackend::default());
    // like the kernel, alignments below 4 are raised to 4 (even 3)
    assert_eq!(
        a.alloc(&mut b, 8, 3, AllocFlags::NORMAL).unwrap().offset % 4,
        0
    );
    // rounding: 32 KiB - 1 rounds to exactly the maximum and is accepted
    assert!(a
        .alloc(&mut b, MIN_UNIT_SIZE - 1, 4, AllocFlags::NORMAL)
        .is_ok());
}

#[test]
fn reserved_requests() {
    let mut a = Allocator::new(Geometry::simple(2, 16).unwrap(), Policy::default());
    let mut b = SimBackend::default();
    let e = a.alloc(&mut b, 8, 8, AllocFlags::RESERVED).unwrap_err();
    assert_eq!(e, AllocError::NoReservedChunk);
    assert!(e.to_string().contains("no reserved chunk"));
    let mut a = alloc_with_reserved();
    let r = a.alloc(&mut b, 4096, 8, AllocFlags::RESERVED).unwrap();
    assert_eq!(Some(r.chunk), a.reserved_chunk());
    // fill the rest of the reserved chunk, then it is full
    let mut n = 0;
    while a.alloc(&mut b, 1024, 4, AllocFlags::RESERVED).is_ok() {
        n += 1;
    }
    assert!(n >= 3);
    assert_eq!(
        a.alloc(&mut b, 1024, 4, AllocFlags::RESERVED).unwrap_err(),
        AllocError::ReservedFull
    );
    a.check_invariants().unwrap();
    a.free(r.chunk, r.offset).unwrap();
    a.check_invariants().unwrap();
}

#[test]
fn bad_frees_are_typed_and_change_nothing() {
    let mut a = alloc_with_reserved();
    let mut b = SimBackend::default();
    let x = a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap();
    let before = snapshot(&a);
    assert_eq!(
        a.free(ChunkId(999), 0),
        Err(FreeError::UnknownChunk(ChunkId(999)))
    );
    for off in [x.offset + 4, x.offset + 2, x.offset + 128, 1 << 30] {
        let e = a.free(x.chunk, off).unwrap_err();
        assert!(
            matches!(e, FreeError::NotAllocated { stale: false, .. }),
            "{e}"
        );
    }
    assert_eq!(before, snapshot(&a));
    assert_eq!(a.free(x.chunk, x.offset), Ok(64));
    let before = snapshot(&a);
    let e = a.free(x.chunk, x.offset).unwrap_err();
    assert!(matches!(e, FreeError::NotAllocated { stale: true, .. }));
    assert!(e.to_string().contains("double free"), "{e}");
    assert_eq!(before, snapshot(&a));
    // the hidden head of the first chunk is not an allocation
    let first = a.first_chunk();
    let start = a.chunk(first).unwrap().start_offset();
    assert!(start > 0);
    assert!(a.free(first, 0).is_err());
    // nor is its hidden tail (the unit past the dynamic area)
    let c = a.chunk(first).unwrap();
    let tail = c.nr_pages() * 4096 - c.end_offset();
    assert!(c.end_offset() > 0);
    let e = a.free(first, tail).unwrap_err();
    assert!(matches!(e, FreeError::NotAllocated { .. }), "{e}");
    assert_eq!(before, snapshot(&a));
    a.check_invariants().unwrap();
}

#[test]
fn chunk_creation_failure_rolls_back() {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
    let mut b = FailingBackend::default();
    // exhaust the first chunk (8 KiB dynamic)
    let mut live = Vec::new();
    while let Ok(x) = a.alloc(&mut b, 1024, 4, AllocFlags::ATOMIC) {
        live.push(x);
    }
    b.fail_create = 1;
    let before = (a.nr_chunks(), a.nr_populated(), a.stats().nr_cur_alloc);
    let e = a.alloc(&mut b, 1024, 4, AllocFlags::NORMAL).unwrap_err();
    assert_eq!(e, AllocError::ChunkCreate(BackendError::Injected));
    assert!(e.to_string().contains("failed to allocate new chunk"));
    assert_eq!(
        before,
        (a.nr_chunks(), a.nr_populated(), a.stats().nr_cur_alloc)
    );
    a.check_invariants().unwrap();
    // and the next attempt works, reusing the released id
    let x = a.alloc(&mut b, 1024, 4, AllocFlags::NORMAL).unwrap();
    assert_eq!(b.inner.created, 1);
    a.free(x.chunk, x.offset).unwrap();
    a.check_invariants().unwrap();
}

#[test]
fn populate_failure_rolls_back() {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
    let mut b = FailingBackend::default();
    let x = a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap(); // first chunk
    let before = (
        a.nr_populated(),
        a.stats().nr_cur_alloc,
        a.nr_empty_pop_pages(),
    );
    b.fail_populate = 1;
    let e = a.alloc(&mut b, 8192, 4, AllocFlags::NORMAL).unwrap_err();
    assert_eq!(e, AllocError::Populate(BackendError::Injected));
    assert_eq!(
        before,
        (
            a.nr_populated(),
            a.stats().nr_cur_alloc,
            a.nr_empty_pop_pages()
        )
    );
    a.check_invariants().unwrap();
    a.free(x.chunk, x.offset).unwrap();
    // depopulation failure during balance: pages stay counted, nothing breaks
    b.fail_depopulate = 100;
    a.balance(&mut b);
    a.check_invariants().unwrap();
}

#[test]
fn atomic_allocations_never_create_or_populate() {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
    let mut b = SimBackend::default();
    let mut n = 0;
    loop {
        match a.alloc(&mut b, 512, 4, AllocFlags::ATOMIC) {
            Ok(_) => n += 1,
            Err(e) => {
                assert_eq!(e, AllocError::AtomicNoSpace);
                break;
            }
        }
    }
    assert_eq!(n, 16); // the 8 KiB first chunk
    assert_eq!(b, SimBackend::default());
    assert!(a.balance_pending());
    // the balance run after an atomic failure populates HIGH pages in a new chunk
    let r = a.balance(&mut b);
    assert_eq!((r.created, r.populated), (1, EMPTY_POP_PAGES_HIGH as usize));
    assert!(a.alloc(&mut b, 512, 4, AllocFlags::ATOMIC).is_ok());
    a.check_invariants().unwrap();
}

/// Sizes and offsets near the top of `usize` are rejected, never wrapped.
#[test]
fn huge_offsets_and_sizes_do_not_wrap() {
    let mut a = alloc_with_reserved();
    let mut b = SimBackend::default();
    let first = a.first_chunk();
    let before = snapshot(&a);
    for off in [usize::MAX - 3, usize::MAX - 7, 1 << 62] {
        let e = a
            .alloc_at(&mut b, first, off, 8, 4, AllocFlags::NORMAL)
            .unwrap_err();
        assert!(matches!(e, AllocError::Misplaced { .. }), "{e}");
    }
    assert_eq!(snapshot(&a), before);
    a.check_invariants().unwrap();
    for (s, r, d) in [
        (usize::MAX - 2, 0, 28672),
        (0, 8192, usize::MAX - 4095),
        (4, usize::MAX - 3, 4096),
    ] {
        let fc = FirstChunk {
            static_size: s,
            reserved_size: r,
            dyn_size: d,
        };
        assert!(
            Geometry::new(4096, 4, 1 << 19, fc).is_err(),
            "s{s} r{r} d{d}"
        );
    }
    // Sizes that leave the dynamic area without whole 4-byte bits.
    for (s, d) in [(2, 8192), (0, 8190), (1, 3)] {
        let fc = FirstChunk {
            static_size: s,
            reserved_size: 0,
            dyn_size: d,
        };
        assert!(Geometry::new(4096, 4, 1 << 19, fc).is_err(), "s{s} d{d}");
    }
    let fc = FirstChunk {
        static_size: 3,
        reserved_size: 0,
        dyn_size: 8193,
    };
    let a = Allocator::new(
        Geometry::new(4096, 4, 1 << 19, fc).unwrap(),
        Policy::default(),
    );
    a.check_invariants().unwrap();
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size: 4096,
    };
    assert!(Geometry::new(4096, MAX_UNITS + 1, 1 << 19, fc).is_err());
    assert!(Geometry::new(4096, MAX_UNITS, 1 << 19, fc).is_ok());
}

/// `Allocation`'s fields are public, so its figures must hold for values
/// made by hand: near the top of `usize` they saturate (they overflowed,
/// panicking in debug builds and wrapping to an empty or backward range in
/// release builds), a page size of 0 names no pages (it divided by zero),
/// and `unit_offset` saturates too (it added the chunk's base unchecked).
/// Ids of no chunk count from 0, like any chunk the backend creates.
#[test]
fn hand_made_allocations_saturate_instead_of_wrapping() {
    let a = alloc_with_reserved();
    let before = snapshot(&a);
    let first = a.first_chunk();
    let top = Allocation {
        chunk: first,
        offset: usize::MAX - 3,
        size: 8,
    };
    assert_eq!(top.zero_range(), usize::MAX - 3..usize::MAX);
    assert_eq!(top.zero_range().len(), 3);
    assert_eq!(
        top.pages(4096),
        (usize::MAX - 3) / 4096..usize::MAX / 4096 + 1
    );
    assert_eq!(top.pages(1), usize::MAX - 3..usize::MAX);
    let whole = Allocation {
        chunk: first,
        offset: 0,
        size: usize::MAX,
    };
    assert_eq!(whole.zero_range(), 0..usize::MAX);
    assert_eq!(whole.pages(usize::MAX), 0..1);
    for x in [top, whole, Allocation { size: 0, ..top }] {
        assert_eq!(x.pages(0), 0..0, "{x:?}");
    }
    // The first chunk counts from past the static and reserved areas.
    let base = a.chunk_base(first);
    assert_eq!(base, 8192);
    assert_eq!(a.unit_offset(&top), usize::MAX);
    let below = Allocation {
        offset: usize::MAX - base,
        ..top
    };
    assert_eq!(a.unit_offset(&below), usize::MAX);
    let fits = Allocation {
        offset: usize::MAX - base - 1,
        ..top
    };
    assert_eq!(a.unit_offset(&fits), usize::MAX - 1);
    for id in [2, 1000, u32::MAX] {
        let x = Allocation {
            chunk: ChunkId(id),
            ..top
        };
        assert!(a.chunk(x.chunk).is_none());
        assert_eq!(a.chunk_base(x.chunk), 0);
        assert_eq!(a.unit_offset(&x), usize::MAX - 3);
    }
    assert_eq!(snapshot(&a), before);
    a.check_invariants().unwrap();
}

#[test]
fn geometry_errors_print_the_config() {
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size: 0,
    };
    let e = Geometry::new(4096, 4, 65536, fc).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("dynamic area") && s.contains("unit_size=65536"),
        "{s}"
    );
    assert!("linux-9.9".parse::<Policy>().is_err());
    assert_eq!("seed-rfc".parse::<Policy>().unwrap().name(), "seed-rfc");
}

#[test]
fn geometry_constructors_refuse_what_they_cannot_parse_or_hold() {
    // Tokens starting with a multi-byte character are not fields (this
    // panicked on the char boundary).
    assert!(Geometry::from_kernel_line("é", 4).is_err());
    assert!(Geometry::from_kernel_line("ésu", 4).is_err());
    let g = Geometry::from_kernel_line("ø€ s217088 r8192 d28672 u524288 ü", 4).unwrap();
    assert_eq!(g.unit_size(), 524_288);
    assert!(Geometry::from_kernel_line("", 4).is_err());
    // A unit of more pages than a usize holds in bytes.
    let e = Geometry::simple(1, usize::MAX).unwrap_err();
    assert!(e.to_string().contains("overflows"), "{e}");
    assert!(Geometry::simple(4, 16).is_ok());
}

/// Every step of the two-phase protocol refuses a call that does not match
/// what the allocator handed out, with an error naming what is wrong, and
/// changes nothing (in debug builds too: these are the embedder's mistakes,
/// not the allocator's).
#[test]
fn two_phase_protocol_misuse_is_refused_and_changes_nothing() {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
    let mut b = SimBackend::default();
    let x = a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap();
    let nr_pages = a.chunk(x.chunk).unwrap().nr_pages();
    let before = (a.percpu_stats(), a.nr_populated(), a.nr_chunks());
    let unknown = ChunkId(77);
    let inside = Allocation {
        chunk: x.chunk,
        offset: x.offset + 8,
        size: 8,
    };
    let resized = Allocation { size: 128, ..x };
    let e = a.finish_create_chunk(x.chunk).unwrap_err(); // a live chunk is never replaced
    assert_eq!(e, ProtocolError::NotReserved(x.chunk));
    assert!(e.to_string().contains("not reserved"), "{e}");
    assert_eq!(
        a.finish_create_chunk(unknown),
        Err(ProtocolError::NotReserved(unknown))
    );
    assert_eq!(
        a.abort_create_chunk(x.chunk),
        Err(ProtocolError::NotReserved(x.chunk))
    );
    let e = a.commit_populated(x.chunk, 0..1).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::AlreadyPopulated {
            chunk: x.chunk,
            page: 0
        }
    );
    assert!(e.to_string().contains("populated already"), "{e}");
    assert_eq!(
        a.commit_populated(unknown, 0..1),
        Err(ProtocolError::UnknownChunk(unknown))
    );
    #[allow(clippy::reversed_empty_ranges)]
    for pages in [3..3, 4..2, nr_pages..nr_pages + 1, 0..usize::MAX] {
        let e = a.commit_populated(x.chunk, pages.clone()).unwrap_err();
        assert_eq!(
            e,
            ProtocolError::PageRange {
                chunk: x.chunk,
                pages,
                nr_pages
            }
        );
        assert!(e.to_string().contains(&format!("0..{nr_pages}")), "{e}");
    }
    let e = a.abort_area(inside, AllocFlags::NORMAL).unwrap_err();
    assert!(
        matches!(
            e,
            ProtocolError::NotLive {
                cause: FreeError::NotAllocated { stale: false, .. },
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("not the start of a live allocation"),
        "{e}"
    );
    assert_eq!(a.cancel_area(inside), Err(e));
    let e = a.cancel_area(resized).unwrap_err();
    assert_eq!(
        e,
        ProtocolError::WrongSize {
            area: resized,
            size: 64
        }
    );
    assert!(e.to_string().contains("128 bytes"), "{e}");
    assert_eq!(a.abort_area(resized, AllocFlags::NORMAL), Err(e));
    let gone = Allocation {
        chunk: unknown,
        ..x
    };
    assert_eq!(
        a.cancel_area(gone),
        Err(ProtocolError::NotLive {
            area: gone,
            cause: FreeError::UnknownChunk(unknown)
        })
    );
    assert_eq!(before, (a.percpu_stats(), a.nr_populated(), a.nr_chunks()));
    a.check_invariants().unwrap();
    // A reserved id is finished or aborted once.
    let id = a.begin_create_chunk();
    a.abort_create_chunk(id).unwrap();
    assert_eq!(
        a.abort_create_chunk(id),
        Err(ProtocolError::NotReserved(id))
    );
    assert_eq!(
        a.finish_create_chunk(id),
        Err(ProtocolError::NotReserved(id))
    );
    // The live area itself is still given back normally.
    a.cancel_area(x).unwrap();
    assert!(matches!(
        a.abort_area(x, AllocFlags::NORMAL),
        Err(ProtocolError::NotLive {
            cause: FreeError::NotAllocated { stale: true, .. },
            ..
        })
    ));
    a.check_invariants().unwrap();
}

/// A `Request` made by an allocator with larger units or pages, given to
/// the two-phase API of one whose geometry refuses its size or alignment,
/// is refused as `request` refuses it, nothing changed. The too-large one
/// asked for a new chunk after every new chunk (a debug assertion
/// panicked; in release an embedder retrying after each `NeedsChunk`
/// created chunks without end), and an alignment above the page size was
/// placed.
#[test]
fn another_geometrys_request_is_refused() {
    let big = Allocator::new(Geometry::simple(2, 64).unwrap(), Policy::default());
    let fc = FirstChunk {
        static_size: 0,
        reserved_size: 0,
        dyn_size: 4096,
    };
    for policy in Policy::all() {
        let mut a = Allocator::new(Geometry::new(1024, 2, 8192, fc).unwrap(), policy);
        a.check_invariants().unwrap();
        let before = (a.percpu_stats(), a.nr_chunks(), a.stats().nr_failed);
        for (size, align) in [(32768, 4), (8196, 4), (16, 2048), (16, 4096)] {
            let req = big.request(size, align).unwrap();
            let expected = a.request(size, align).unwrap_err();
            for flags in [AllocFlags::NORMAL, AllocFlags::ATOMIC, AllocFlags::RESERVED] {
                assert_eq!(a.alloc_area(req, flags), Err(expected.clone()), "{req:?}");
                assert_eq!(a.first_fit_or_fail(req, flags), Err(expected.clone()));
                assert_eq!(
                    a.alloc_area_class(req, flags, ClassHint::task(1)),
                    Err(expected.clone())
                );
                assert_eq!(a.probe(req, flags), None);
            }
            let mut mag = Magazine::new(req, 4);
            let mut b = SimBackend::default();
            assert_eq!(
                a.alloc_cached(&mut b, &mut mag, AllocFlags::NORMAL),
                Err(expected)
            );
        }
        assert_eq!(
            before,
            (a.percpu_stats(), a.nr_chunks(), a.stats().nr_failed)
        );
        a.check_invariants().unwrap();
        // What fits this geometry too is served.
        let req = big.request(8192, 1024).unwrap();
        let x = loop {
            match a.alloc_area(req, AllocFlags::NORMAL) {
                Ok(x) => break x,
                Err(AllocError::NeedsChunk) => {
                    let id = a.begin_create_chunk();
                    a.finish_create_chunk(id).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        };
        a.cancel_area(x).unwrap();
        a.check_invariants().unwrap();
    }
}

/// `next_unpopulated` names only pages of the area's chunk: an area that
/// does not lie inside it (built by hand, or another geometry's) gives
/// `None`. It named pages past the chunk's end (which a backend would map
/// outside the chunk), or indexed past the populated bitmap and panicked,
/// in release builds too, and overflowed near the top of `usize`.
#[test]
fn next_unpopulated_names_only_pages_of_the_chunk() {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
    let page = a.geometry().page_size();
    let req = a.request(8, 8).unwrap();
    let x = loop {
        match a.alloc_area(req, AllocFlags::NORMAL) {
            Ok(x) if x.chunk != a.first_chunk() => break x,
            Ok(_) => {}
            Err(AllocError::NeedsChunk) => {
                let id = a.begin_create_chunk();
                a.finish_create_chunk(id).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    };
    let nr_pages = a.chunk(x.chunk).unwrap().nr_pages();
    assert_eq!(a.next_unpopulated(&x), Some(0..1));
    let end = nr_pages * page;
    for (offset, size) in [
        (1 << 20, 8),
        (usize::MAX - 3, 8),
        (0, usize::MAX),
        (end, 4),
        (end - page, 2 * page),
    ] {
        let bogus = Allocation {
            chunk: x.chunk,
            offset,
            size,
        };
        assert_eq!(a.next_unpopulated(&bogus), None, "{bogus:?}");
    }
    // The last page of the chunk is still named.
    let last = Allocation {
        chunk: x.chunk,
        offset: end - page,
        size: page,
    };
    assert_eq!(a.next_unpopulated(&last), Some(nr_pages - 1..nr_pages));
    a.commit_populated(x.chunk, 0..1).unwrap();
    a.finish_alloc();
    a.check_invariants().unwrap();
}

/// A placed area on unpopulated pages that the caller does not want after
/// all: cancelled, it leaves the counters as if it had never been placed
/// (and is not a failure).
#[test]
fn a_cancelled_area_leaves_consistent_counters() {
    let mut a = Allocator::new(Geometry::simple(2, 8).unwrap(), Policy::default());
    let mut b = SimBackend::default();
    let page = a.geometry().page_size();
    // Fill the first chunk so that the next area goes to a fresh chunk.
    while a.nr_chunks() == 1 {
        a.alloc(&mut b, page, 4, AllocFlags::NORMAL).unwrap();
    }
    let req = a.request(3 * page, 4).unwrap();
    let before = (
        a.nr_empty_pop_pages(),
        a.nr_populated(),
        a.stats().nr_failed,
    );
    let area = loop {
        match a.alloc_area(req, AllocFlags::NORMAL) {
            Ok(x) => break x,
            Err(AllocError::NeedsChunk) => {
                a.create_chunk(&mut b).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(a.next_unpopulated(&area).is_some(), "needs population");
    a.cancel_area(area).unwrap();
    a.check_invariants().unwrap();
    assert!(a.allocation_size(area.chunk, area.offset).is_err());
    assert_eq!(a.stats().nr_failed, before.2);
    assert_eq!(
        (a.nr_empty_pop_pages(), a.nr_populated()),
        (before.0, before.1)
    );
    a.balance(&mut b);
    a.check_invariants().unwrap();
}

/// A first chunk whose dynamic area fills the unit becomes fully free and
/// sits in the free slot; the balance work must not free it as a surplus
/// free chunk (it depopulated and destroyed it, and reused its id).
#[test]
fn a_fully_free_first_chunk_is_never_freed() {
    for policy in Policy::all() {
        let mut a = Allocator::new(Geometry::simple(4, 2).unwrap(), policy);
        let mut b = SimBackend::default();
        let first = a.first_chunk();
        let x = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
        let y = a.alloc(&mut b, 8192, 8, AllocFlags::NORMAL).unwrap();
        assert_eq!(x.chunk, first);
        assert_ne!(y.chunk, first);
        a.free(x.chunk, x.offset).unwrap();
        a.free(y.chunk, y.offset).unwrap();
        for _ in 0..3 {
            a.balance(&mut b);
            a.check_invariants().unwrap();
        }
        let c = a.chunk(first).expect("the first chunk is still there");
        assert_eq!(c.kind(), ChunkKind::First, "{}", policy.name());
        assert!(
            b.destroyed <= b.created,
            "only created chunks are destroyed"
        );
        let z = a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap();
        a.free(z.chunk, z.offset).unwrap();
        a.check_invariants().unwrap();
    }
}

/// `alloc_at` (replay's kernel placement) populates the area's pages even
/// for an atomic request: the traced kernel put it there, so its pages were
/// populated. It left a live area on unpopulated pages before.
#[test]
fn alloc_at_populates_for_atomic_requests_too() {
    let mut a = alloc_with_reserved();
    let mut b = SimBackend::default();
    let c = a.create_chunk(&mut b).unwrap();
    let flags = AllocFlags {
        atomic: true,
        reserved: false,
    };
    let x = a.alloc_at(&mut b, c, 8192, 4, 4, flags).unwrap();
    a.check_invariants().unwrap();
    assert!(a.chunk(c).unwrap().is_page_populated(8192 / 4096));
    a.free(x.chunk, x.offset).unwrap();
    a.check_invariants().unwrap();
}

/// Calling `BalanceRun::next` twice without `done` hands out the same
/// operation again instead of planning a second one (it panicked before).
#[test]
fn balance_next_twice_repeats_the_pending_operation() {
    let mut a = alloc_with_reserved();
    let mut b = SimBackend::default();
    let objs: Vec<_> = (0..3000)
        .map(|_| a.alloc(&mut b, 64, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    for x in &objs {
        a.free(x.chunk, x.offset).unwrap();
    }
    let mut run = a.balance_start().unwrap();
    let w = run.next(&mut a).expect("work after freeing everything");
    assert_eq!(run.next(&mut a), Some(w.clone()));
    run.done(&mut a, true);
    while let Some(w) = run.next(&mut a) {
        match w {
            PageWork::Depopulate { chunk, pages } => {
                b.depopulate(chunk, pages).unwrap();
            }
            PageWork::DestroyChunk { chunk } => b.destroy_chunk(chunk),
            _ => {}
        }
        run.done(&mut a, true);
    }
    a.check_invariants().unwrap();
}
