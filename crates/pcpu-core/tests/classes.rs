//! Class placement (`pcpu` policy): objects of a class share pages; other
//! classes' objects are kept off them. The Linux policies ignore hints.

use std::collections::BTreeSet;

use pcpu_core::*;

mod support;
use support::MEMCG_GROUP as GROUP;

fn kernel_like(policy: Policy) -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, policy)
}

/// 200 parents with 10 children each; returns (parents' objects, children's).
fn cgroups(
    a: &mut Allocator,
    b: &mut SimBackend,
    hint: impl Fn(bool, u64) -> Option<ClassHint>,
) -> (Vec<Allocation>, Vec<Allocation>) {
    let (mut parents, mut children) = (Vec::new(), Vec::new());
    let mut task = 1000;
    for _ in 0..200 {
        for child in [
            false, true, true, true, true, true, true, true, true, true, true,
        ] {
            task += 1;
            for &(size, align) in &GROUP {
                let x = match hint(child, task) {
                    Some(h) => a.alloc_class(b, size, align, AllocFlags::NORMAL, h),
                    None => a.alloc(b, size, align, AllocFlags::NORMAL),
                }
                .unwrap();
                if child {
                    children.push(x)
                } else {
                    parents.push(x)
                }
            }
        }
    }
    a.check_invariants().unwrap();
    (parents, children)
}

fn pages_touched(objs: &[Allocation]) -> usize {
    objs.iter()
        .flat_map(|o| o.pages(4096).map(move |p| (o.chunk, p)))
        .collect::<BTreeSet<_>>()
        .len()
}

fn remove_children(a: &mut Allocator, b: &mut SimBackend, children: &[Allocation]) {
    for c in children {
        a.free(c.chunk, c.offset).unwrap();
    }
    for _ in 0..3 {
        a.balance(b);
    }
    a.check_invariants().unwrap();
}

#[test]
fn lifetime_classes_pack_survivors_densely() {
    let mut a = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    let (parents, children) = cgroups(&mut a, &mut b, |child, _| {
        Some(ClassHint::lifetime(child as u64))
    });
    remove_children(&mut a, &mut b, &children);
    let live: usize = parents.iter().map(|p| p.size).sum();
    let ideal = live.div_ceil(4096);
    let floor = pages_touched(&parents);
    assert!(floor <= ideal + 2, "floor {floor} ideal {ideal}");
}

#[test]
fn task_classes_keep_each_group_contiguous() {
    let mut linux = kernel_like(Policy::default());
    let mut pcpu = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    let (lp, _) = cgroups(&mut linux, &mut b, |_, _| None);
    let (pp, _) = cgroups(&mut pcpu, &mut b, |_, t| Some(ClassHint::task(t)));
    // Each parent's 11 objects span ~2 KiB: at most 2 pages each (3 when a
    // chunk runs out in the middle of a group), 1.5 on average; fewer once
    // the bursts tile the pages (`tile_bursts`: the 4-byte counters, not
    // counted here, are on the long-lived pages).
    let per_group: Vec<usize> = pp
        .chunks(11)
        .map(|g| {
            let g: Vec<Allocation> = g.iter().filter(|o| o.size > 4).copied().collect();
            pages_touched(&g)
        })
        .collect();
    assert!(per_group.iter().all(|&n| n <= 3), "{per_group:?}");
    let mean = per_group.iter().sum::<usize>() as f64 / per_group.len() as f64;
    assert!(mean <= 1.6, "{mean}");
    assert!(
        pages_touched(&pp) < pages_touched(&lp),
        "{} vs {}",
        pages_touched(&pp),
        pages_touched(&lp)
    );
    // Task regions are opened in the chunks there are, not a chunk each:
    // as many chunks as first fit needs, one more at most.
    assert!(
        pcpu.nr_chunks() <= linux.nr_chunks() + 1,
        "{} chunks against {}",
        pcpu.nr_chunks(),
        linux.nr_chunks()
    );
    pcpu.check_invariants().unwrap();
}

#[test]
fn linux_policies_ignore_hints() {
    let mut with = kernel_like(Policy::default());
    let mut without = kernel_like(Policy::default());
    let mut b = SimBackend::default();
    let (p1, c1) = cgroups(&mut with, &mut b, |child, _| {
        Some(ClassHint::lifetime(child as u64))
    });
    let (p2, c2) = cgroups(&mut without, &mut b, |_, _| None);
    assert_eq!((p1, c1), (p2, c2));
}

fn keep_room() -> Policy {
    let mut p = Policy::pcpu();
    p.keep_room = true;
    p
}

/// With `keep_room`, three lifetime classes allocating 3 KiB objects in
/// turn each form one run per chunk (no object of another class between two
/// of their own), so each class leaves at most one page partly used per
/// chunk; without it they interleave page by page.
#[test]
fn lifetime_classes_allocating_in_turn_do_not_interleave() {
    // Runs of each class in address order (a run ends at another class's
    // object or at a chunk boundary), and the chunks it spans.
    let runs = |policy: Policy| -> Vec<(usize, usize)> {
        let mut a = kernel_like(policy);
        let mut b = SimBackend::default();
        let mut objs: Vec<(u64, Allocation)> = Vec::new();
        for i in 0..150 {
            let class = i % 3;
            let x = a
                .alloc_class(
                    &mut b,
                    3072,
                    8,
                    AllocFlags::NORMAL,
                    ClassHint::lifetime(class),
                )
                .unwrap();
            objs.push((class, x));
            a.check_invariants().unwrap();
        }
        let mut by_place = objs.clone();
        by_place.sort_by_key(|(_, x)| (x.chunk, x.offset));
        (0..3)
            .map(|class| {
                let n = by_place
                    .windows(2)
                    .filter(|w| {
                        w[0].0 == class && (w[1].0 != class || w[1].1.chunk != w[0].1.chunk)
                    })
                    .count()
                    + usize::from(by_place.last().unwrap().0 == class);
                let chunks: BTreeSet<ChunkId> = objs
                    .iter()
                    .filter(|(c, _)| *c == class)
                    .map(|(_, x)| x.chunk)
                    .collect();
                (n, chunks.len())
            })
            .collect()
    };
    for (class, (n, chunks)) in runs(keep_room()).into_iter().enumerate() {
        assert_eq!(n, chunks, "class {class} split into {n} runs");
    }
    assert!(runs(Policy::pcpu()).iter().all(|&(n, _)| n >= 40));
}

/// `keep_room`: when no chunk can be created, an exclusive class takes the
/// free room of another class after all (plain first fit) instead of
/// failing.
#[test]
fn lifetime_class_falls_back_to_first_fit_without_a_new_chunk() {
    let mut a = kernel_like(keep_room());
    let mut b = FailingBackend::default();
    // Class 0 takes the dynamic area of the first chunk as its region.
    let first = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::lifetime(0))
        .unwrap();
    let chunks = a.nr_chunks();
    b.fail_create = 1;
    let second = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::lifetime(1))
        .unwrap();
    a.check_invariants().unwrap();
    assert_eq!(a.nr_chunks(), chunks, "no chunk was created");
    assert_eq!(second.chunk, first.chunk);
    assert_eq!(b.fail_create, 0, "a chunk was asked for first");
    // With chunks available, the next class goes to a new chunk instead.
    let third = a
        .alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, ClassHint::lifetime(2))
        .unwrap();
    a.check_invariants().unwrap();
    assert_ne!(third.chunk, first.chunk);
}

/// One lifetime class per request, 100 requests alive, the balance work run
/// whenever it is scheduled: (largest number of chunks, pages populated at
/// the end).
fn per_request(policy: Policy) -> (usize, u64) {
    let mut a = kernel_like(policy);
    let mut b = SimBackend::default();
    let mut live = std::collections::VecDeque::new();
    let mut max_chunks = 0;
    for request in 0..1000u64 {
        let objs: Vec<Allocation> = (0..20)
            .map(|_| {
                a.alloc_class(
                    &mut b,
                    300,
                    8,
                    AllocFlags::NORMAL,
                    ClassHint::lifetime(request),
                )
                .unwrap()
            })
            .collect();
        live.push_back(objs);
        if live.len() > 100 {
            for x in live.pop_front().unwrap() {
                a.free(x.chunk, x.offset).unwrap();
            }
        }
        if a.balance_pending() {
            a.balance(&mut b);
        }
        max_chunks = max_chunks.max(a.nr_chunks());
    }
    a.check_invariants().unwrap();
    (max_chunks, b.populated_pages - b.depopulated_pages)
}

/// Short-lived lifetime classes (one per request): by default each new one
/// reuses the pages the dead ones freed, as plain first fit does; with
/// `keep_room` the room kept for the most recent ones costs at most
/// 8 more chunks (the classes whose room is kept), and no more memory.
#[test]
fn per_request_classes_stay_bounded() {
    let (chunks, pages) = per_request(Policy::pcpu());
    // 100 requests of ~1.5 pages: ~200 pages, two chunks of 128 pages
    // beside the first one.
    assert!(chunks <= 5, "{chunks} chunks");
    assert!(pages <= 200 + 8, "{pages} pages");
    let (kept, kept_pages) = per_request(keep_room());
    assert!(kept <= chunks + 8, "{kept} chunks with keep_room");
    assert!(kept_pages <= pages + 8, "{kept_pages} pages with keep_room");
}

/// Call sites of the long-lived test: a cgroup's first object, a mount's.
const MKDIR_SITE: u64 = 0x100;
const MOUNT_SITE: u64 = 0x200;

/// 400 cgroups (11 objects each, a task of their own) and after every 10th a
/// `mount` task allocating one 8-byte object from its own site; every cgroup
/// freed at the end. Returns the pages the 40 mounts' objects are on, and
/// how many went to the long-lived class.
fn mounts_among_cgroups(policy: Policy) -> (usize, u64) {
    let mut a = kernel_like(policy);
    let mut b = SimBackend::default();
    let (mut groups, mut mounts) = (Vec::new(), Vec::new());
    for task in 1..=400u64 {
        for (i, &(size, align)) in GROUP.iter().enumerate() {
            let site = if i == 0 { MKDIR_SITE } else { 0x300 + i as u64 };
            let hint = ClassHint::task(task).at_site(site);
            groups.push(
                a.alloc_class(&mut b, size, align, AllocFlags::NORMAL, hint)
                    .unwrap(),
            );
            a.check_invariants().unwrap();
        }
        if task % 10 == 0 {
            let hint = ClassHint::task(100_000 + task).at_site(MOUNT_SITE);
            mounts.push(
                a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, hint)
                    .unwrap(),
            );
            a.check_invariants().unwrap();
        }
    }
    for g in &groups {
        a.free(g.chunk, g.offset).unwrap();
        a.check_invariants().unwrap();
    }
    for _ in 0..3 {
        a.balance(&mut b);
    }
    a.check_invariants().unwrap();
    assert_eq!(a.stats().nr_cur_alloc as usize, mounts.len());
    if !a.policy().long_lived {
        assert_eq!(a.long_lived_objects(), 0);
    }
    (pages_touched(&mounts), a.long_lived_objects())
}

/// `long_lived` (on in `pcpu`): once a site's tasks have shown they allocate
/// one object each, its next first objects share one page instead of each
/// landing in (and later pinning) a page of the cgroup region it followed.
#[test]
fn one_object_tasks_share_pages() {
    // The prediction alone: with `tile_bursts` the cgroups' bursts would
    // realign after each mount, and later mounts fill those holes.
    let mut on = Policy::pcpu();
    on.tile_bursts = false;
    let (on, routed) = mounts_among_cgroups(on);
    let mut p = Policy::pcpu();
    p.tile_bursts = false;
    p.long_lived = false;
    let (off, _) = mounts_among_cgroups(p);
    // The first few mounts are placed before the site is learnt.
    assert!(on <= 4, "long_lived: the 40 mounts are on {on} pages");
    assert!(
        (35..=38).contains(&routed),
        "{routed} mounts went long-lived"
    );
    assert!(off >= 30, "without it: {off} pages");
}

/// A site whose tasks go on allocating is not predicted long-lived: with
/// every cgroup's first object from one site, `long_lived` changes nothing.
#[test]
fn busy_sites_are_not_long_lived() {
    let place = |policy: Policy| {
        let mut a = kernel_like(policy);
        let mut b = SimBackend::default();
        let mut out = Vec::new();
        for task in 1..=300u64 {
            for (i, &(size, align)) in GROUP.iter().enumerate() {
                let hint = ClassHint::task(task).at_site(if i == 0 { MKDIR_SITE } else { 0 });
                out.push(
                    a.alloc_class(&mut b, size, align, AllocFlags::NORMAL, hint)
                        .unwrap(),
                );
            }
        }
        out
    };
    let mut off = Policy::pcpu();
    off.long_lived = false;
    let (on, off) = (place(Policy::pcpu()), place(off));
    let first_difference = on.iter().zip(&off).position(|(x, y)| x != y);
    assert_eq!(
        first_difference, None,
        "object {first_difference:?} placed differently"
    );
    assert_eq!(on.len(), off.len());
}

/// A task class fills the holes its older region keeps on pages in use (here
/// the gap before a cache-line aligned object) before its newest region's
/// room: nothing else fills them, and at a peak they would be waste.
#[test]
fn a_class_fills_its_older_regions_holes_first() {
    let mut a = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    let mut alloc = |a: &mut Allocator, task: u64, size: usize, align: usize| {
        let x = a
            .alloc_class(
                &mut b,
                size,
                align,
                AllocFlags::NORMAL,
                ClassHint::task(task),
            )
            .unwrap();
        a.check_invariants().unwrap();
        x
    };
    let ref0 = alloc(&mut a, 1, 8, 8);
    let rstat = alloc(&mut a, 1, 64, 8);
    let psi = alloc(&mut a, 1, 128, 64);
    assert_eq!(rstat.offset, ref0.offset + 8);
    assert_eq!(psi.offset, ref0.offset + 128, "a 56-byte gap before it");
    // Another task opens its region right after (the gap is under min_run).
    let other = alloc(&mut a, 2, 8, 8);
    assert_eq!(other.offset, psi.offset + 128);
    // Task 1's next object no longer fits before the other task's: a second
    // region.
    let big = alloc(&mut a, 1, 1096, 8);
    assert!(big.chunk != psi.chunk || big.offset > other.offset);
    // Its next small object goes into the gap of its first region.
    let small = alloc(&mut a, 1, 8, 8);
    assert_eq!((small.chunk, small.offset), (ref0.chunk, ref0.offset + 72));
}

/// No hint names the shared long-lived class: a lifetime class with the
/// largest id is placed like any other.
#[test]
fn no_hint_is_the_long_lived_class() {
    let place = |id: u64| {
        let mut a = kernel_like(Policy::pcpu());
        let mut b = SimBackend::default();
        let mut out = Vec::new();
        for i in 0..200u64 {
            let hint = if i % 2 == 0 {
                ClassHint::lifetime(id)
            } else {
                ClassHint::task(1)
            };
            out.push(
                a.alloc_class(&mut b, 64, 8, AllocFlags::NORMAL, hint)
                    .unwrap(),
            );
            a.check_invariants().unwrap();
        }
        assert_eq!(a.long_lived_objects(), 0);
        out
    };
    assert_eq!(place(u64::MAX), place(5));
}

/// Tasks of one cgroup each: 300 of them after those that fill the first
/// chunk, then all of the first 60 freed (an empty run at the start of a
/// chunk) and 3 of every 4 of the rest (holes beside survivors); the balance
/// work gives back the empty pages. With `backfill`, the next tasks open
/// their regions beside the survivors, on pages that stay resident anyway;
/// without it, first fit spreads them over the empty run.
#[test]
fn a_refill_backfills_beside_survivors() {
    let refill = |policy: Policy, long_lived_region: bool| {
        let mut a = kernel_like(policy);
        let mut b = SimBackend::default();
        let first = a.first_chunk();
        if long_lived_region {
            // Two one-object tasks of one site, each followed by another
            // task's burst, teach the site; a third's object opens the
            // long-lived region, whose room the walk then keeps out of
            // (`outside_growth_room`).
            const MOUNT: u64 = 0x200;
            for t in 0..3u64 {
                let hint = ClassHint::task(1 << 40 | t).at_site(MOUNT);
                a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, hint)
                    .unwrap();
                for _ in 0..70 {
                    let burst = ClassHint::task(1 << 41 | t).at_site(0x300);
                    a.alloc_class(&mut b, 8, 8, AllocFlags::NORMAL, burst)
                        .unwrap();
                }
            }
            assert_eq!(a.long_lived_objects(), 1);
        }
        let cgroup = |a: &mut Allocator, b: &mut SimBackend, task: u64| -> Vec<Allocation> {
            let objs = GROUP
                .iter()
                .map(|&(size, align)| {
                    a.alloc_class(b, size, align, AllocFlags::NORMAL, ClassHint::task(task))
                        .unwrap()
                })
                .collect();
            a.check_invariants().unwrap();
            objs
        };
        let mut task = 0;
        let mut tasks = Vec::new();
        while tasks.len() < 300 {
            task += 1;
            let objs = cgroup(&mut a, &mut b, task);
            // The first chunk's objects stay, out of the count.
            if objs.iter().any(|o| o.chunk != first) {
                tasks.push(objs);
            }
        }
        let mut survivors = Vec::new();
        for (i, objs) in tasks.into_iter().enumerate() {
            if i >= 60 && i % 4 == 0 {
                survivors.extend(objs);
            } else {
                for o in objs {
                    a.free(o.chunk, o.offset).unwrap();
                }
            }
        }
        for _ in 0..3 {
            a.balance(&mut b);
        }
        a.check_invariants().unwrap();
        let before = pages_touched(&survivors);
        let pinned: BTreeSet<_> = survivors
            .iter()
            .flat_map(|o| o.pages(4096).map(move |p| (o.chunk, p)))
            .collect();
        let new: Vec<Allocation> = (1000..1040)
            .flat_map(|t| cgroup(&mut a, &mut b, t))
            .collect();
        // (What the first chunk still has room for goes there first.)
        let outside: Vec<&Allocation> = new[..GROUP.len()]
            .iter()
            .filter(|o| o.chunk != first)
            .collect();
        assert!(outside.len() > GROUP.len() / 2);
        // Where its region opened (the rest may spill onto the next page).
        let first_on_pinned = outside[0]
            .pages(4096)
            .any(|p| pinned.contains(&(outside[0].chunk, p)));
        survivors.extend(new);
        (first_on_pinned, pages_touched(&survivors) - before)
    };
    // Back-fill alone: the cgroups' bursts would tile the pages too
    // (`tile_bursts`), their counters on the long-lived pages.
    let mut on = Policy::pcpu();
    on.tile_bursts = false;
    let mut off = on;
    off.backfill = false;
    for long_lived_region in [false, true] {
        let (on_pinned, on_added) = refill(on, long_lived_region);
        let (off_pinned, off_added) = refill(off, long_lived_region);
        assert!(on_pinned, "the first new task lands beside survivors");
        assert!(!off_pinned, "without backfill it lands in the empty run");
        assert!(
            on_added < off_added,
            "40 new cgroups touch {on_added} more pages with backfill, {off_added} without \
             (long-lived region: {long_lived_region})"
        );
    }
}

/// A class opening a region walks the active slots' own chunks (the refill
/// order applies to the sidelined slot only): two lifetime classes taking
/// turns, with nothing sidelined, fit in the chunks they started in instead
/// of mapping a chunk per region.
#[test]
fn new_regions_come_from_the_active_slots() {
    let mut a = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    let mut objs = Vec::new();
    for i in 0..4000u64 {
        let class = ClassHint::lifetime(i % 2);
        let size = [8, 24, 128, 1000][(i % 4) as usize];
        objs.push(
            a.alloc_class(&mut b, size, 8, AllocFlags::NORMAL, class)
                .unwrap(),
        );
        a.check_invariants().unwrap();
    }
    let bytes: usize = objs.iter().map(|x| x.size).sum();
    let unit = a.geometry().unit_size();
    let chunks = a.nr_chunks();
    assert!(
        chunks <= bytes / unit + 3,
        "{chunks} chunks for {bytes} bytes in {unit}-byte units"
    );
}
