//! The short-lived prediction (`Policy::short_lived`) through the
//! allocator's public paths: tasks that start with two objects they free
//! when they exit (as every `exec` does on Linux 6.2 and later) and then
//! allocate objects that live on leave no hole at the start of their
//! regions once the prediction has learnt the two sites; classes freed
//! whole teach nothing.
use pcpu_core::*;

const EXEC_CID: u64 = 0x400;
const EXEC_RSS: u64 = 0x401;
const CGROUP: u64 = 0x402;
/// The cgroup's objects (multiples of 8: no alignment gaps between them).
const SIZES: [usize; 6] = [8, 128, 32, 128, 24, 8];

fn kernel_like(policy: Policy) -> Allocator {
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    Allocator::new(g, policy)
}

/// `tasks` tasks, each: the two exec objects, the cgroup's objects, then
/// exit (the exec objects freed). Returns the cgroup objects.
fn mkdirs(a: &mut Allocator, tasks: u64) -> Vec<Allocation> {
    let mut b = SimBackend::default();
    let mut kept = Vec::new();
    for t in 0..tasks {
        let class = ClassHint::task(100 + t);
        let cid = a
            .alloc_class(&mut b, 16, 8, AllocFlags::NORMAL, class.at_site(EXEC_CID))
            .unwrap();
        let rss = a
            .alloc_class(&mut b, 16, 4, AllocFlags::NORMAL, class.at_site(EXEC_RSS))
            .unwrap();
        for size in SIZES {
            kept.push(
                a.alloc_class(&mut b, size, 8, AllocFlags::NORMAL, class.at_site(CGROUP))
                    .unwrap(),
            );
        }
        a.free(cid.chunk, cid.offset).unwrap();
        a.free(rss.chunk, rss.offset).unwrap();
        a.check_invariants().unwrap();
    }
    kept
}

/// Holes of 32 bytes or more between consecutive cgroup objects of the
/// tasks after the first `skip` (whose objects the learning placed).
fn holes(kept: &[Allocation], skip: usize) -> usize {
    let mut v: Vec<(u32, usize, usize)> = kept[skip * SIZES.len()..]
        .iter()
        .map(|x| (x.chunk.0, x.offset, x.size))
        .collect();
    v.sort_unstable();
    v.windows(2)
        .filter(|w| w[0].0 == w[1].0 && w[1].1 >= w[0].1 + w[0].2 + 32)
        .count()
}

#[test]
fn exec_objects_leave_no_hole_once_learnt() {
    let mut with = kernel_like(Policy::pcpu());
    let kept = mkdirs(&mut with, 40);
    // A verdict comes 64 objects (8 tasks) after its object, each site
    // needs two, and the second site's objects start classes only once the
    // first's are routed: from the 10th task on the first site's, from the
    // 20th on both.
    assert_eq!(with.short_lived_objects(), 30 + 20);
    assert_eq!(holes(&kept, 20), 0);
    let mut p = Policy::pcpu();
    p.short_lived = false;
    let mut without = kernel_like(p);
    let kept = mkdirs(&mut without, 40);
    assert_eq!(without.short_lived_objects(), 0);
    assert!(holes(&kept, 20) >= 15, "{}", holes(&kept, 20));
}

/// Without call sites (the userspace crate passes none), nothing is learnt.
#[test]
fn no_call_site_no_prediction() {
    let mut a = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    for t in 0..40u64 {
        let class = ClassHint::task(100 + t);
        let exec: Vec<Allocation> = (0..2)
            .map(|_| {
                a.alloc_class(&mut b, 16, 8, AllocFlags::NORMAL, class)
                    .unwrap()
            })
            .collect();
        for size in SIZES {
            a.alloc_class(&mut b, size, 8, AllocFlags::NORMAL, class)
                .unwrap();
        }
        for x in exec {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    a.check_invariants().unwrap();
    assert_eq!(a.short_lived_objects(), 0);
}

#[test]
fn classes_freed_whole_teach_nothing() {
    let mut a = kernel_like(Policy::pcpu());
    let mut b = SimBackend::default();
    for t in 0..40u64 {
        let class = ClassHint::task(100 + t);
        let objs: Vec<Allocation> = SIZES
            .iter()
            .map(|&s| {
                a.alloc_class(&mut b, s, 8, AllocFlags::NORMAL, class.at_site(CGROUP))
                    .unwrap()
            })
            .collect();
        for x in objs {
            a.free(x.chunk, x.offset).unwrap();
        }
    }
    a.check_invariants().unwrap();
    assert_eq!(a.short_lived_objects(), 0);
}

#[test]
fn the_knob_reads_and_prints() {
    let p: Policy = "pcpu:short_lived=false".parse().unwrap();
    assert!(!p.short_lived);
    assert!(Policy::pcpu().short_lived);
    assert!(p.to_string().contains("short_lived=false"), "{p}");
}
