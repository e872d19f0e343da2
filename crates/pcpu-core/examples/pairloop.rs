//! Profiling aid: a tight loop of 8-byte alloc+free pairs (run under
//! `valgrind --tool=callgrind` to count instructions per pair).
//! Arguments: pairs (default 100000), live neighbours (default 1000).
use pcpu_core::*;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    // Live 8-byte neighbours kept during the loop (0: an otherwise empty
    // allocator, where every pair moves the chunk between slots).
    let live: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let g = Geometry::from_kernel_line(
        "percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288",
        4,
    )
    .unwrap();
    let mut a = Allocator::new(g, Policy::default());
    let mut b = SimBackend::default();
    let keep: Vec<_> = (0..live)
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
