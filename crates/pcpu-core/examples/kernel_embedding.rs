//! Embedding `pcpu-core` where memory is managed by hand (a kernel, a
//! hypervisor, an arena): a [`Backend`] that maps each unit's pages to
//! frames of a page-frame allocator, `per_cpu_ptr` as address arithmetic,
//! and the kernel's two locks: `pcpu_lock` (the allocator's bookkeeping,
//! dropped around every page operation) and `pcpu_alloc_mutex`
//! (serialising population, chunk creation and the balance work, which
//! runs step by step with [`BalanceRun`]).
//!
//! Run with `cargo run -p pcpu-core --example kernel_embedding`: two threads
//! allocate per-CPU counters (with the `pcpu` policy, each thread's objects
//! kept together: [`ClassHint::task`]) and write each CPU's copy; all of
//! one thread's and most of the other's are freed, and the balance work
//! gives the emptied pages' frames back.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use pcpu_core::{
    AllocError, AllocFlags, Allocation, Allocator, Backend, BackendError, BalanceRun, ChunkId,
    ClassHint, Geometry, PageWork, Policy, ProtocolError,
};

const PAGE: usize = 4096;
const UNITS: usize = 4;
const UNIT_PAGES: usize = 32;

/// A page-frame allocator: frame `f` is `mem[f]`.
#[derive(Default)]
struct Frames {
    mem: Vec<Box<[u8; PAGE]>>,
    free: Vec<usize>,
}

impl Frames {
    fn get(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.mem.push(Box::new([0; PAGE]));
            self.mem.len() - 1
        })
    }
    fn put(&mut self, f: usize) {
        self.mem[f].fill(0); // a fresh page reads as zeros, as after MADV_DONTNEED
        self.free.push(f);
    }
    fn in_use(&self) -> usize {
        self.mem.len() - self.free.len()
    }
}

/// The "page tables": each chunk is a virtual range of `UNITS × UNIT_PAGES`
/// pages at `base`; unit `u`'s page `p` maps to a frame once populated.
#[derive(Default)]
struct Mapper {
    frames: Frames,
    chunks: HashMap<ChunkId, (usize, Vec<Option<usize>>)>,
    next_base: usize,
}

impl Mapper {
    /// `per_cpu_ptr`: the address of `cpu`'s copy of an allocation. (This
    /// geometry has no static or reserved area; with one, the first
    /// chunk's offsets count from `Allocator::chunk_base`, past them.)
    fn per_cpu_ptr(&self, a: &Allocation, cpu: usize) -> usize {
        let (base, _) = &self.chunks[&a.chunk];
        base + cpu * UNIT_PAGES * PAGE + a.offset
    }
    /// The frame and offset behind a virtual address (a page fault on an
    /// unpopulated page would be a bug: the allocator never hands one out).
    fn translate(&self, va: usize) -> (usize, usize) {
        let (base, ptes) = self
            .chunks
            .values()
            .find(|(base, ptes)| (*base..base + ptes.len() * PAGE).contains(&va))
            .expect("address in a chunk");
        let page = (va - base) / PAGE;
        (ptes[page].expect("page populated"), (va - base) % PAGE)
    }
    fn write_u64(&mut self, va: usize, v: u64) {
        let (f, off) = self.translate(va);
        self.frames.mem[f][off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn read_u64(&self, va: usize) -> u64 {
        let (f, off) = self.translate(va);
        u64::from_ne_bytes(self.frames.mem[f][off..off + 8].try_into().unwrap())
    }
    /// Zero `len` bytes from `va`, page by page.
    fn zero(&mut self, mut va: usize, mut len: usize) {
        while len > 0 {
            let (f, off) = self.translate(va);
            let n = len.min(PAGE - off);
            self.frames.mem[f][off..off + n].fill(0);
            va += n;
            len -= n;
        }
    }
    /// The first chunk is mapped at boot, its pages populated (the kernel
    /// embeds it in the static per-CPU area).
    fn map_first_chunk(&mut self, id: ChunkId, pages: usize) {
        self.create_chunk(id, UNIT_PAGES).unwrap();
        self.populate(id, 0..pages).unwrap();
    }
}

impl Backend for Mapper {
    fn create_chunk(&mut self, id: ChunkId, nr_pages: usize) -> Result<(), BackendError> {
        let base = 0x1000_0000 + self.next_base;
        self.next_base += UNITS * nr_pages * PAGE;
        self.chunks.insert(id, (base, vec![None; UNITS * nr_pages]));
        Ok(())
    }
    fn destroy_chunk(&mut self, id: ChunkId) {
        let (_, ptes) = self.chunks.remove(&id).expect("live chunk");
        for f in ptes.into_iter().flatten() {
            self.frames.put(f);
        }
    }
    fn populate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        let (_, ptes) = self.chunks.get_mut(&id).expect("live chunk");
        for unit in 0..UNITS {
            for p in pages.clone() {
                let pte = &mut ptes[unit * UNIT_PAGES + p];
                assert!(pte.is_none(), "populated twice");
                *pte = Some(self.frames.get());
            }
        }
        Ok(())
    }
    fn depopulate(&mut self, id: ChunkId, pages: Range<usize>) -> Result<(), BackendError> {
        let (_, ptes) = self.chunks.get_mut(&id).expect("live chunk");
        for unit in 0..UNITS {
            for p in pages.clone() {
                let f = ptes[unit * UNIT_PAGES + p].take().expect("populated");
                self.frames.put(f);
            }
        }
        Ok(())
    }
}

/// A step of the two-phase protocol that the allocator refused: our own
/// bookkeeping went wrong, and the allocator changed nothing. A kernel
/// would `WARN` and go on.
fn warn_on(r: Result<(), ProtocolError>) {
    if let Err(e) = r {
        eprintln!("WARNING: percpu: {e}");
    }
}

/// The per-CPU allocator of our "kernel".
struct Percpu {
    /// `pcpu_lock`.
    state: Mutex<Allocator>,
    /// `pcpu_alloc_mutex`, with what it serialises: the page tables.
    mapper: Mutex<Mapper>,
}

impl Percpu {
    fn new() -> Self {
        let a = Allocator::new(Geometry::simple(UNITS, UNIT_PAGES).unwrap(), Policy::pcpu());
        let mut m = Mapper::default();
        let first = a.first_chunk();
        m.map_first_chunk(first, a.chunk(first).unwrap().nr_pages());
        Percpu {
            state: Mutex::new(a),
            mapper: Mutex::new(m),
        }
    }

    fn state(&self) -> MutexGuard<'_, Allocator> {
        self.state.lock().unwrap()
    }

    /// `__alloc_percpu`: place under `pcpu_lock`, create chunks and populate
    /// pages with it dropped, holding `pcpu_alloc_mutex` throughout (which
    /// also keeps other class requests out between a `NeedsChunk` and its
    /// retry, as `alloc_area_class` asks). `class` keeps objects that die
    /// together on the same pages (the Linux policies ignore it).
    fn alloc(&self, size: usize, align: usize, class: ClassHint) -> Result<Allocation, AllocError> {
        let flags = AllocFlags::NORMAL;
        let mut mapper = self.mapper.lock().unwrap();
        let req = self.state().request(size, align)?;
        let mut created = false;
        let area = loop {
            let mut st = self.state();
            match st.alloc_area_class(req, flags, class) {
                Ok(area) => break area,
                // A class may ask for a chunk while free room is left (it
                // keeps out of other classes' growth room): after one new
                // chunk, or when none can be made, plain first fit.
                Err(AllocError::NeedsChunk) if created => {
                    break st.first_fit_or_fail(req, flags)?
                }
                Err(AllocError::NeedsChunk) => {
                    let id = st.begin_create_chunk();
                    drop(st);
                    let made = mapper.create_chunk(id, UNIT_PAGES);
                    let mut st = self.state();
                    match made {
                        Ok(()) => {
                            warn_on(st.finish_create_chunk(id));
                            created = true;
                        }
                        Err(e) => {
                            warn_on(st.abort_create_chunk(id));
                            break st
                                .first_fit_or_fail(req, flags)
                                .map_err(|_| AllocError::ChunkCreate(e))?;
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        };
        loop {
            let Some(run) = self.state().next_unpopulated(&area) else {
                break;
            };
            // Other threads may free (and, from populated pages, allocate
            // atomically) meanwhile: only `pcpu_lock` guards those.
            match mapper.populate(area.chunk, run.clone()) {
                Ok(()) => warn_on(self.state().commit_populated(area.chunk, run)),
                Err(e) => {
                    warn_on(self.state().abort_area(area, flags));
                    return Err(AllocError::Populate(e));
                }
            }
        }
        self.state().finish_alloc();
        // Zero the area in every unit (`pcpu_alloc`'s memset): a freed
        // object's bytes are still there.
        for cpu in 0..UNITS {
            let va = mapper.per_cpu_ptr(&area, cpu);
            mapper.zero(va, area.zero_range().len());
        }
        Ok(area)
    }

    /// `__alloc_percpu_gfp(GFP_ATOMIC)`: `pcpu_lock` only, never the
    /// backend (no chunk is created, no page populated: it takes populated
    /// room or fails, and a failure makes the next balance run populate
    /// more). The caller zeroes the area, as `alloc` does (a kernel's
    /// memset needs no lock; this model's memory sits behind `mapper`'s
    /// mutex, which an atomic context would not take: `main` zeroes it
    /// afterwards).
    fn alloc_atomic(&self, size: usize, align: usize) -> Result<Allocation, AllocError> {
        let mut st = self.state();
        let req = st.request(size, align)?;
        let flags = AllocFlags {
            atomic: true,
            ..AllocFlags::NORMAL
        };
        let area = st.alloc_area(req, flags)?;
        debug_assert!(st.next_unpopulated(&area).is_none());
        st.finish_alloc();
        Ok(area)
    }

    /// `free_percpu`: `pcpu_lock` only.
    fn free(&self, a: Allocation) {
        self.state()
            .free(a.chunk, a.offset)
            .expect("a live allocation");
    }

    /// `pcpu_balance_workfn`: one run, page operation by page operation,
    /// `pcpu_lock` dropped around each. (A kernel that must stop a run
    /// part-way, on shutdown say, commits the operation it performed with
    /// `done` and calls `run.abort(&mut state)`: dropping the run would
    /// leave the chunks it holds off every list.)
    fn balance(&self) {
        let mut mapper = self.mapper.lock().unwrap();
        // `mapper` (pcpu_alloc_mutex) serialises runs: none is open.
        let Ok(mut run): Result<BalanceRun, _> = self.state().balance_start() else {
            return;
        };
        loop {
            let Some(work) = run.next(&mut self.state()) else {
                break;
            };
            let ok = match work {
                PageWork::Populate { chunk, pages } => mapper.populate(chunk, pages).is_ok(),
                PageWork::Depopulate { chunk, pages } => mapper.depopulate(chunk, pages).is_ok(),
                PageWork::FlushTlb { .. } => true, // flush_tlb_kernel_range() here
                PageWork::CreateChunk { chunk } => mapper.create_chunk(chunk, UNIT_PAGES).is_ok(),
                PageWork::DestroyChunk { chunk } => {
                    mapper.destroy_chunk(chunk);
                    true
                }
            };
            run.done(&mut self.state(), ok);
        }
    }
}

fn main() {
    let pcpu = Percpu::new();
    let frames = |p: &Percpu| p.mapper.lock().unwrap().frames.in_use();
    let boot = frames(&pcpu);

    // An object freed and allocated again: the same place, zeroed again.
    let a = pcpu.alloc(8, 8, ClassHint::task(9)).unwrap();
    let mut m = pcpu.mapper.lock().unwrap();
    for cpu in 0..UNITS {
        let va = m.per_cpu_ptr(&a, cpu);
        m.write_u64(va, 0xdead_beef);
    }
    drop(m);
    pcpu.free(a);
    let b = pcpu.alloc(8, 8, ClassHint::task(9)).unwrap();
    assert_eq!((a.chunk, a.offset), (b.chunk, b.offset));
    let m = pcpu.mapper.lock().unwrap();
    assert!((0..UNITS).all(|cpu| m.read_u64(m.per_cpu_ptr(&b, cpu)) == 0));
    drop(m);
    pcpu.free(b);

    // An atomic allocation (a context that cannot sleep) takes populated
    // room without touching the page tables.
    let frames_before = frames(&pcpu);
    let c = pcpu
        .alloc_atomic(16, 8)
        .expect("populated room in the first chunk");
    assert_eq!(frames(&pcpu), frames_before);
    let mut m = pcpu.mapper.lock().unwrap();
    for cpu in 0..UNITS {
        let va = m.per_cpu_ptr(&c, cpu);
        m.zero(va, c.zero_range().len());
        assert_eq!(m.read_u64(va), 0);
    }
    drop(m);
    pcpu.free(c);

    // Two threads allocate 8-byte counters; each CPU's copy gets its value.
    let objs: Vec<Allocation> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|t| {
                let pcpu = &pcpu;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..6000u64 {
                        let a = pcpu.alloc(8, 8, ClassHint::task(t)).expect("allocation");
                        let mut m = pcpu.mapper.lock().unwrap();
                        for cpu in 0..UNITS {
                            let va = m.per_cpu_ptr(&a, cpu);
                            m.write_u64(va, t << 48 | i << 8 | cpu as u64);
                        }
                        mine.push((a, t << 48 | i << 8));
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            for (a, tag) in w.join().unwrap() {
                let m = pcpu.mapper.lock().unwrap();
                for cpu in 0..UNITS {
                    assert_eq!(m.read_u64(m.per_cpu_ptr(&a, cpu)), tag | cpu as u64);
                }
                all.push(a);
            }
        }
        all
    });
    pcpu.state().check_invariants().unwrap();
    let full = frames(&pcpu);

    // Thread 1's counters and most of thread 0's are freed; the survivors
    // keep their values.
    let mut kept = Vec::new();
    for (i, a) in objs.into_iter().enumerate() {
        if i < 1200 {
            kept.push(a);
        } else {
            pcpu.free(a);
        }
    }
    while pcpu.state().balance_pending() {
        pcpu.balance();
    }
    pcpu.state().check_invariants().unwrap();
    let after = frames(&pcpu);
    let m = pcpu.mapper.lock().unwrap();
    for a in &kept {
        for cpu in 0..UNITS {
            assert_eq!(m.read_u64(m.per_cpu_ptr(a, cpu)) & 0xff, cpu as u64);
        }
    }
    println!(
        "frames in use: {boot} at boot, {full} with 12000 counters, {after} with {} left \
         ({} units of {PAGE}-byte pages)",
        kept.len(),
        UNITS
    );
    assert!(after < full, "the balance work gave frames back");
    drop(m);
}
