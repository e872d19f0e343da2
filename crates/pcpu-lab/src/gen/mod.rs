//! Synthetic workload generators.
//!
//! Every generator produces a [`SyntheticTrace`]: `Vec<pcpu_trace::Record>` in
//! the Linux 6.1 ftrace layout, so that synthetic and real traces take one
//! path (parse → replay). A trace can be written as a capture folder
//! ([`SyntheticTrace::write_capture`]: `trace.txt.gz` plus a `dmesg-percpu.txt`
//! with the matching `percpu: Embedded ...` line) that `pcpu replay` reads.
//!
//! The generators are deterministic: the same parameters and seed give the
//! same trace text, byte for byte ([`crate::rng::SplitMix64`]).
//!
//! # How the "kernel" columns are filled
//!
//! A trace line carries the kernel's placement (`base_addr`, `off`, `ptr`).
//! A generator runs its workload through pcpu-core's `linux-6.1` policy
//! (balance work run as soon as it is scheduled) and prints that placement,
//! as if our model were the traced kernel; `percpu_create_chunk` /
//! `percpu_destroy_chunk` lines follow the same model. The traces carry no
//! `pcpu_balance_workfn` lines and no populate/depopulate kprobes, so every
//! policy replays them with modelled balance timing and nothing in the trace
//! favours one policy.
//!
//! # Phase markers and the kernel's Percpu figure
//!
//! Phases are marked as in the real captures (`PHASE <X> begin`, then
//! `PHASE <X> Percpu: 0 kB`). There is no kernel figure for a synthetic
//! trace: the 0 is a placeholder. The first record is the trace marker
//! [`SYNTHETIC_MARKER`]; [`is_synthetic`] detects it, and the lab drops the
//! placeholder (`kernel_percpu_kb` becomes `None`) in everything it reports.

mod bpf;
mod memcg;
mod mix;
mod workers;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use pcpu_core::{AllocFlags, Allocation, Allocator, Backend, BackendError, ChunkId, Policy};
use pcpu_replay::{ReplayError, Setup};
use pcpu_trace::{AllocEvent, CallSite, Event, FirstChunkGeometry, Flags, Record};

use crate::rng::SplitMix64;

pub use bpf::LargeObjects;
pub use memcg::{Churn, CoverLetter, MEMCG_GROUP};
pub use mix::Mix;
pub use workers::Workers;

/// Text of the trace marker that opens every synthetic trace.
pub use pcpu_trace::SYNTHETIC_MARKER;

/// Lines of the header [`pcpu_trace::write::write_header`] prints.
const HEADER_LINES: u64 = 12;

/// Does this trace come from a generator (its first records hold
/// [`SYNTHETIC_MARKER`])? Its `PHASE <X> Percpu` figures are placeholders.
pub fn is_synthetic(records: &[Record]) -> bool {
    records
        .iter()
        .take(8)
        .any(|r| matches!(&r.event, Event::Marker(m) if m.starts_with(SYNTHETIC_MARKER)))
}

/// The traced machine: units (CPUs) and first-chunk geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// Units (possible CPUs).
    pub units: u32,
    /// Static percpu area (bytes).
    pub static_size: u64,
    /// Reserved area (bytes).
    pub reserved_size: u64,
    /// Dynamic area of the first chunk (bytes).
    pub dyn_size: u64,
    /// Unit size (bytes).
    pub unit_size: u64,
}

impl Default for Machine {
    /// The machine of the shared captures: 4 CPUs,
    /// `percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288`.
    fn default() -> Self {
        Machine {
            units: 4,
            static_size: 217_088,
            reserved_size: 8192,
            dyn_size: 28_672,
            unit_size: 524_288,
        }
    }
}

/// Page size of the traced machine.
const PAGE: u64 = 4096;
/// `pcpu_base_addr` printed in synthetic traces (that of the shared captures).
const PCPU_BASE: u64 = 0xffff_8dc3_bbc0_0000;
/// `base_addr` of the first dynamic chunk; later ones are 2 MiB lower each.
const DYN_TOP: u64 = 0xffff_f22e_3fc0_0000;

impl Machine {
    /// Pages of the first chunk (`Embedded N pages/cpu`).
    pub fn embedded_pages(&self) -> u64 {
        (self.static_size + self.reserved_size + self.dyn_size).div_ceil(PAGE)
    }

    /// The kernel's percpu boot lines for this machine (`dmesg-percpu.txt`).
    pub fn dmesg(&self) -> String {
        let mut s = format!(
            "[    0.000000] percpu: Embedded {} pages/cpu s{} r{} d{} u{}\n",
            self.embedded_pages(),
            self.static_size,
            self.reserved_size,
            self.dyn_size,
            self.unit_size
        );
        let _ = write!(
            s,
            "[    0.000000] pcpu-alloc: s{} r{} d{} u{} alloc=1*{}\n[    0.000000] pcpu-alloc: [0]",
            self.static_size,
            self.reserved_size,
            self.dyn_size,
            self.unit_size,
            self.unit_size * u64::from(self.units)
        );
        for cpu in 0..self.units {
            let _ = write!(s, " {cpu}");
        }
        s.push('\n');
        s
    }

    /// The first-chunk geometry as [`pcpu_trace::parse_dmesg`] reads it from
    /// [`Machine::dmesg`].
    pub fn first_chunk_geometry(&self) -> FirstChunkGeometry {
        FirstChunkGeometry {
            embedded_pages: self.embedded_pages() as u32,
            static_size: self.static_size,
            reserved_size: self.reserved_size,
            dyn_size: self.dyn_size,
            unit_size: self.unit_size,
            atom_size: Some(self.unit_size * u64::from(self.units)),
            alloc_size: Some(self.unit_size * u64::from(self.units)),
            groups: vec![(0..self.units).map(Some).collect()],
        }
    }

    /// pcpu-core's geometry for this machine.
    pub fn geometry(&self) -> pcpu_core::Geometry {
        let first = pcpu_core::FirstChunk {
            static_size: self.static_size as usize,
            reserved_size: self.reserved_size as usize,
            dyn_size: self.dyn_size as usize,
        };
        pcpu_core::Geometry::new(
            PAGE as usize,
            self.units as usize,
            self.unit_size as usize,
            first,
        )
        .expect("valid machine geometry")
    }
}

/// One kind of allocation: call site (as `%pS` prints it), size and alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    /// `call_site=` text, e.g. `percpu_ref_init+0x23/0x120`.
    pub call_site: &'static str,
    /// Size in bytes (a multiple of 4).
    pub size: u32,
    /// Alignment in bytes.
    pub align: u32,
}

impl Site {
    /// A site.
    pub const fn new(call_site: &'static str, size: u32, align: u32) -> Self {
        Site {
            call_site,
            size,
            align,
        }
    }
}

/// A generated trace.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticTrace {
    /// Name (used as the capture folder's name and in reports).
    pub name: String,
    /// Generator and parameters, one line (`capture-params.txt`).
    pub params: String,
    /// The machine.
    pub machine: Machine,
    /// The records, with line numbers as in [`SyntheticTrace::text`].
    pub records: Vec<Record>,
}

impl SyntheticTrace {
    /// Writes the trace as ftrace text (header and one line per record).
    pub fn write_text<W: Write>(&self, w: &mut W) -> io::Result<()> {
        pcpu_trace::write::write_trace(w, self.machine.units, &self.records)
    }

    /// The trace as ftrace text.
    pub fn text(&self) -> String {
        let mut v = Vec::new();
        self.write_text(&mut v).expect("writing to memory");
        String::from_utf8(v).expect("ftrace text is UTF-8")
    }

    /// Writes a capture folder `dir` (created if needed): `trace.txt.gz`
    /// (gzipped like a real capture's: a tenth of the text's size),
    /// `dmesg-percpu.txt` and `capture-params.txt`. `pcpu replay dir` reads
    /// it. A `trace.txt` already there is removed, so that no older trace is
    /// left beside the new one.
    pub fn write_capture(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        match std::fs::remove_file(dir.join("trace.txt")) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = std::fs::File::create(dir.join("trace.txt.gz"))?;
        let mut gz =
            flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::fast());
        self.write_text(&mut gz)?;
        gz.finish()?.flush()?;
        std::fs::write(dir.join("dmesg-percpu.txt"), self.machine.dmesg())?;
        std::fs::write(
            dir.join("capture-params.txt"),
            format!(
                "name={}\ngenerator={}\nunits={}\nkernel_percpu=unknown (synthetic; PHASE markers carry a 0 kB placeholder)\n",
                self.name, self.params, self.machine.units
            ),
        )
    }

    /// The replay setup (no pre-filled first chunk: a generator traces
    /// everything from an empty allocator).
    pub fn setup(&self) -> Result<Setup, ReplayError> {
        Setup::derive(
            &self.machine.first_chunk_geometry(),
            self.machine.units as usize,
            &self.records,
            false,
        )
    }

    /// Number of allocation records.
    pub fn allocs(&self) -> usize {
        self.records
            .iter()
            .filter(|r| matches!(r.event, Event::Alloc(_)))
            .count()
    }
}

/// Who does an operation: the task, pid, CPU and flags columns of a line.
#[derive(Clone, Debug)]
pub struct Ctx {
    task: Arc<str>,
    pid: i32,
    cpu: u32,
    flags: Flags,
}

/// Handle of a generated object.
pub type ObjId = u64;

#[derive(Clone, Copy, Debug)]
struct LiveObj {
    alloc: Allocation,
    base: u64,
    ptr: u64,
}

/// Backend of the generator's model: records chunk creation and destruction.
#[derive(Debug, Default)]
struct ModelBackend {
    created: Vec<ChunkId>,
    destroyed: Vec<ChunkId>,
}

impl Backend for ModelBackend {
    fn create_chunk(&mut self, id: ChunkId, _nr_pages: usize) -> Result<(), BackendError> {
        self.created.push(id);
        Ok(())
    }
    fn destroy_chunk(&mut self, id: ChunkId) {
        self.destroyed.push(id);
    }
    fn populate(&mut self, _: ChunkId, _: std::ops::Range<usize>) -> Result<(), BackendError> {
        Ok(())
    }
    fn depopulate(&mut self, _: ChunkId, _: std::ops::Range<usize>) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Builds a trace: runs a workload through the model allocator (see the
/// module docs) and records the trace lines. The generators are written with
/// it; custom workloads can be too:
///
/// ```
/// use pcpu_lab::gen::{Builder, Machine, Site};
///
/// let mut b = Builder::new(Machine::default(), 7, "example");
/// let task = b.process("mkdir");
/// let id = b.alloc(&task, Site::new("percpu_ref_init+0x23/0x120", 8, 8));
/// b.phase("A");
/// b.free(&task, id);
/// b.phase("B");
/// let trace = b.finish("example");
/// assert_eq!(trace.allocs(), 1);
/// ```
#[derive(Debug)]
pub struct Builder {
    machine: Machine,
    a: Allocator,
    be: ModelBackend,
    records: Vec<Record>,
    now_us: u64,
    live: HashMap<ObjId, LiveObj>,
    next_obj: ObjId,
    first_base: u64,
    bases: HashMap<u32, u64>,
    next_dyn: u64,
    names: HashMap<String, Arc<str>>,
    /// The workload's pseudo-random generator (seeded by [`Builder::new`]).
    pub rng: SplitMix64,
    next_pid: i32,
    init: Ctx,
    params: String,
}

/// Flags column of process context, RCU softirq on an idle CPU, softirq
/// thread, and workqueue.
const FLAGS_TASK: &str = ".....";
const FLAGS_RCU_IDLE: &str = "dNs2.";
const FLAGS_SOFTIRQ: &str = "d.s1.";
const FLAGS_WORKER: &str = "d..1.";

impl Builder {
    /// A builder for `machine` whose pseudo-random choices (CPUs, pids,
    /// timing) follow `seed`; `params` describes the workload in the opening
    /// [`SYNTHETIC_MARKER`] line.
    pub fn new(machine: Machine, seed: u64, params: &str) -> Self {
        let a = Allocator::new(
            machine.geometry(),
            Policy::new(pcpu_core::PolicyKind::Linux61),
        );
        let fc = machine.static_size + machine.reserved_size;
        let mut t = Builder {
            machine,
            a,
            be: ModelBackend::default(),
            records: Vec::new(),
            now_us: 1_000_000,
            live: HashMap::new(),
            next_obj: 1,
            first_base: (PCPU_BASE + fc) & !(PAGE - 1),
            bases: HashMap::new(),
            next_dyn: 0,
            names: HashMap::new(),
            rng: SplitMix64::new(seed),
            next_pid: 150,
            params: params.to_string(),
            init: Ctx {
                task: Arc::from("init"),
                pid: 1,
                cpu: 0,
                flags: Flags::new(FLAGS_TASK).expect("flags"),
            },
        };
        t.init.cpu = t.cpu();
        let init = t.init.clone();
        t.push(
            &init,
            Event::Marker(format!("{SYNTHETIC_MARKER}: {params}")),
        );
        t
    }

    fn name(&mut self, s: &str) -> Arc<str> {
        if let Some(n) = self.names.get(s) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(s);
        self.names.insert(s.to_string(), n.clone());
        n
    }

    /// A random CPU.
    pub fn cpu(&mut self) -> u32 {
        self.rng.below(u64::from(self.machine.units)) as u32
    }

    /// Advances the clock by `lo..=hi` microseconds.
    pub fn tick(&mut self, lo: u64, hi: u64) {
        self.now_us += self.rng.range(lo, hi);
    }

    /// A new process `comm` with the next pid, on a random CPU.
    pub fn process(&mut self, comm: &str) -> Ctx {
        self.next_pid += 1 + self.rng.below(3) as i32;
        let cpu = self.cpu();
        Ctx {
            task: self.name(comm),
            pid: self.next_pid,
            cpu,
            flags: Flags::new(FLAGS_TASK).expect("flags"),
        }
    }

    /// A task with a fixed pid (boot tasks, the workload's driver).
    pub fn fixed(&mut self, comm: &str, pid: i32) -> Ctx {
        let cpu = self.cpu();
        Ctx {
            task: self.name(comm),
            pid,
            cpu,
            flags: Flags::new(FLAGS_TASK).expect("flags"),
        }
    }

    /// The context an RCU callback frees in: the idle task or `ksoftirqd`.
    pub fn rcu_ctx(&mut self) -> Ctx {
        let cpu = self.cpu();
        if self.rng.chance(0.6) {
            Ctx {
                task: self.name("<idle>"),
                pid: 0,
                cpu,
                flags: Flags::new(FLAGS_RCU_IDLE).expect("flags"),
            }
        } else {
            let comm = format!("ksoftirqd/{cpu}");
            Ctx {
                task: self.name(&comm),
                pid: 12 + 9 * cpu as i32,
                cpu,
                flags: Flags::new(FLAGS_SOFTIRQ).expect("flags"),
            }
        }
    }

    /// A workqueue worker (`kworker/<cpu>:1`).
    pub fn worker_ctx(&mut self) -> Ctx {
        let cpu = self.cpu();
        let comm = format!("kworker/{cpu}:1");
        Ctx {
            task: self.name(&comm),
            pid: 17 + 19 * cpu as i32,
            cpu,
            flags: Flags::new(FLAGS_WORKER).expect("flags"),
        }
    }

    fn push(&mut self, ctx: &Ctx, event: Event) {
        let line = HEADER_LINES + self.records.len() as u64 + 1;
        self.records.push(Record {
            line,
            task: ctx.task.clone(),
            pid: ctx.pid,
            cpu: ctx.cpu,
            flags: Some(ctx.flags),
            ts: self.now_us as f64 / 1e6,
            event,
        });
        self.now_us += 1;
    }

    /// `base_addr` of our model's chunk `id`.
    fn base(&self, id: ChunkId) -> u64 {
        if id == self.a.first_chunk() {
            self.first_base
        } else {
            self.bases[&id.0]
        }
    }

    /// Emits create/destroy lines for what the model backend just did.
    fn chunk_events(&mut self, ctx: &Ctx) {
        for id in std::mem::take(&mut self.be.destroyed) {
            if let Some(base) = self.bases.remove(&id.0) {
                self.push(ctx, Event::DestroyChunk { base_addr: base });
            }
        }
        for id in std::mem::take(&mut self.be.created) {
            let base = DYN_TOP.wrapping_sub(self.next_dyn * 0x20_0000);
            self.next_dyn += 1;
            self.bases.insert(id.0, base);
            self.push(ctx, Event::CreateChunk { base_addr: base });
        }
    }

    /// Runs the model's balance work if it was scheduled.
    fn balance(&mut self) {
        if self.a.balance_pending() {
            let w = self.worker_ctx();
            self.a.balance(&mut self.be);
            self.chunk_events(&w);
        }
    }

    /// Allocates one `site` object as `ctx`.
    pub fn alloc(&mut self, ctx: &Ctx, site: Site) -> ObjId {
        let alloc = self
            .a
            .alloc(
                &mut self.be,
                site.size as usize,
                site.align as usize,
                AllocFlags::NORMAL,
            )
            .expect("the model allocator never runs out in generated workloads");
        self.chunk_events(ctx);
        let base = self.base(alloc.chunk);
        let off = alloc.offset as u64;
        let ptr = base.wrapping_add(off).wrapping_sub(PCPU_BASE);
        let size = u64::from(site.size);
        let units = u64::from(self.machine.units);
        let call_site = self.name(site.call_site);
        let gfp = self.name("");
        self.push(
            ctx,
            Event::Alloc(AllocEvent {
                call_site: Some(CallSite(call_site)),
                reserved: false,
                is_atomic: false,
                size,
                align: u64::from(site.align),
                base_addr: base,
                off,
                ptr,
                // pcpu_obj_full_size() with memcg accounting on (6.1).
                bytes_alloc: Some(size * units + size / 4 * 8),
                gfp_flags: Some(gfp),
            }),
        );
        let id = self.next_obj;
        self.next_obj += 1;
        self.live.insert(id, LiveObj { alloc, base, ptr });
        self.balance();
        id
    }

    /// Allocates `sites` in order as `ctx`, a few microseconds apart.
    pub fn alloc_all(&mut self, ctx: &Ctx, sites: &[Site]) -> Vec<ObjId> {
        sites
            .iter()
            .map(|&s| {
                self.tick(3, 40);
                self.alloc(ctx, s)
            })
            .collect()
    }

    /// Frees object `id` as `ctx` (no-op if it is not live).
    pub fn free(&mut self, ctx: &Ctx, id: ObjId) {
        let Some(o) = self.live.remove(&id) else {
            return;
        };
        self.a
            .free(o.alloc.chunk, o.alloc.offset)
            .expect("generated frees are of live objects");
        self.push(
            ctx,
            Event::Free {
                base_addr: o.base,
                off: o.alloc.offset as u64,
                ptr: o.ptr,
            },
        );
        self.balance();
    }

    /// Writes `PHASE <name> begin` and `PHASE <name> Percpu: 0 kB` (the
    /// kernel figure is unknown: a placeholder, see the module docs).
    pub fn phase(&mut self, name: &str) {
        self.tick(2_000, 4_000);
        let init = self.init.clone();
        self.push(
            &init,
            Event::PhaseBegin {
                name: name.to_string(),
            },
        );
        self.tick(5_000, 9_000);
        self.push(
            &init,
            Event::PhasePercpu {
                name: name.to_string(),
                kb: 0,
            },
        );
        self.tick(2_000, 4_000);
    }

    /// Live objects of the model.
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// The trace, named `name`.
    pub fn finish(self, name: impl Into<String>) -> SyntheticTrace {
        SyntheticTrace {
            name: name.into(),
            params: self.params,
            machine: self.machine,
            records: self.records,
        }
    }
}

/// Objects allocated during boot by assorted subsystems (call site, size,
/// align, count), after the histogram of the shared captures' boot phase.
const BOOT: &[(Site, u32)] = &[
    (Site::new("alloc_desc+0x50/0x250", 4, 4), 16),
    (Site::new("__kmem_cache_create+0x1d5/0x4f0", 32, 16), 84),
    (Site::new("__percpu_init_rwsem+0x18/0x70", 4, 4), 63),
    (Site::new("alloc_vfsmnt+0x7e/0x1a0", 8, 4), 27),
    (Site::new("alloc_workqueue+0x13e/0x470", 256, 256), 25),
    (Site::new("build_sched_domains+0x1b3/0x1390", 8, 8), 21),
    (Site::new("dma_channel_table_init+0x4a/0xf0", 8, 8), 13),
    (Site::new("perf_pmu_register+0x3a/0x430", 4, 4), 8),
    (Site::new("smpcfd_prepare_cpu+0x45/0x70", 32, 32), 4),
    (Site::new("seg6_hmac_init+0x2e/0x60", 8, 8), 4),
    (Site::new("init_srcu_struct_fields+0x257/0x270", 384, 64), 3),
    (Site::new("setup_zone_pageset+0x23/0xb0", 64, 8), 3),
    (Site::new("setup_zone_pageset+0x6b/0xb0", 256, 64), 3),
    (Site::new("irq_alloc_matrix+0x5d/0x81", 88, 8), 1),
    (Site::new("bioset_init+0x172/0x1d0", 16, 8), 2),
    (Site::new("neigh_table_init+0x57/0x2e0", 96, 8), 2),
    (Site::new("ipv4_mib_init_net+0x2f/0x190", 80, 8), 2),
];

/// The boot phase every generator starts with: about 400 objects from the
/// boot-time call sites of the shared captures, in a shuffled order by a few
/// boot tasks, one in ten freed again, then the `BOOT` phase marker.
pub fn boot(t: &mut Builder) {
    let mut sites: Vec<Site> = BOOT
        .iter()
        .flat_map(|&(s, n)| std::iter::repeat(s).take(n as usize))
        .collect();
    t.rng.shuffle(&mut sites);
    let tasks = [
        t.fixed("swapper/0", 1),
        t.fixed("kworker/u8:1", 42),
        t.fixed("modprobe", 106),
    ];
    let mut recent: Vec<ObjId> = Vec::new();
    for s in sites {
        let ctx = tasks[t.rng.below(tasks.len() as u64) as usize].clone();
        t.tick(50, 3_000);
        let id = t.alloc(&ctx, s);
        recent.push(id);
        if t.rng.chance(0.1) {
            let victim = recent.swap_remove(t.rng.below(recent.len() as u64) as usize);
            t.free(&ctx, victim);
        }
    }
    t.phase("BOOT");
}

/// Frees whole groups the way the kernel tears a cgroup down: the
/// `percpu_ref`s first from RCU callbacks (`stage1`), the css objects later
/// from a workqueue (`stage2`, `lag2` groups behind), and the last ones later
/// still (`stage3`, `lag3` groups behind), so that the frees of neighbouring
/// groups interleave as in the real captures. Indices are into each group.
pub(crate) struct Teardown {
    pub(crate) stage1: &'static [usize],
    pub(crate) stage2: &'static [usize],
    pub(crate) stage3: &'static [usize],
    pub(crate) lag2: usize,
    pub(crate) lag3: usize,
}

impl Teardown {
    /// Frees every group of `groups` (in order).
    pub(crate) fn run(&self, t: &mut Builder, groups: &[Vec<ObjId>]) {
        let n = groups.len();
        for step in 0..n + self.lag3.max(self.lag2) {
            if step < n {
                let ctx = t.rcu_ctx();
                t.tick(200, 3_000);
                for &i in self.stage1 {
                    if let Some(&id) = groups[step].get(i) {
                        t.tick(2, 30);
                        t.free(&ctx, id);
                    }
                }
            }
            for (lag, stage) in [(self.lag2, self.stage2), (self.lag3, self.stage3)] {
                if step >= lag && step - lag < n {
                    let ctx = t.worker_ctx();
                    for &i in stage {
                        if let Some(&id) = groups[step - lag].get(i) {
                            t.tick(5, 150);
                            t.free(&ctx, id);
                        }
                    }
                }
            }
        }
    }
}
