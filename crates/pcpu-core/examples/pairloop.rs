//! Profiling aid: a tight loop of 8-byte alloc+free pairs (run under
//! `valgrind --tool=callgrind` to count instructions per pair).
use pcpu_core::*;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    let mut a = Allocator::new(g, Policy::default());
    let mut b = SimBackend::default();
    let keep: Vec<_> = (0..1000)
        .map(|_| a.alloc(&mut b, 8, 8, AllocFlags::NORMAL).unwrap())
        .collect();
    for _ in 0..n {
        let x = a
            .alloc(&mut b, std::hint::black_box(8), 8, AllocFlags::NORMAL)
            .unwrap();
        a.free(x.chunk, x.offset).unwrap();
    }
    println!("{} live", keep.len());
}
