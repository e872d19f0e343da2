//! Restartable sequences (rseq): updating the current CPU's slot with plain,
//! non-`lock` instructions that the kernel restarts if the thread is
//! preempted, migrated or signalled before they commit.
//!
//! [`add_fold`] is the one operation: `slot[cpu] += n`, or, when the new
//! value reaches `±batch`, `slot[cpu] = 0` with the value handed back to the
//! caller to move into a shared total (`percpu_counter_add_batch`). It uses
//! the `struct rseq` area that glibc (2.35+) registers for every thread,
//! through glibc's exported `__rseq_offset` and `__rseq_size` (looked up by
//! `sys::cpu`).
//!
//! # The sequences (x86_64)
//!
//! ```text
//!   retry:  rseq->rseq_cs = &descriptor          (the store right before start)
//!   start:  cpu = rseq->cpu_id
//!           if cpu >= units: goto post_commit     (no slot: caller falls back)
//!           new = slot[cpu] + n                   (plain load and add)
//!           if |new| >= batch: goto post_commit   (add sequence: fold instead)
//!           slot[cpu] = new                       (commit: one plain store)
//!   post_commit:
//!           rseq->rseq_cs = 0
//!   abort:  (out of line, after the signature)    goto retry
//! ```
//!
//! The fold sequence, run only when the add sequence left at `±batch`, is the
//! same except that it commits `|new| >= batch ? 0 : new` (branch-free) and
//! reports which. It starts over from the CPU id: the thread may have moved
//! in between, and then simply adds to its new CPU's slot unless that one
//! reaches `±batch` too.
//!
//! The kernel, on every preemption, migration or signal delivery that
//! interrupts the thread with its instruction pointer in `[start,
//! post_commit)`, moves it to `abort` (after checking that the four bytes
//! before `abort` are the signature the thread registered with) before it
//! returns to user space. Hence the commit store executes only if the whole
//! sequence ran on one CPU without any other thread or signal handler running
//! on that CPU in between, and the CPU is the one whose `cpu_id` it read.
//!
//! # Safety
//!
//! This module is one of the four in the crate allowed to use `unsafe` (with
//! `sys::mmap`, `sys::cpu` and `handle`). Its `unsafe` code is the inline
//! assembly of the two sequences, and [`add_fold`] itself is an `unsafe fn`
//! whose caller vouches for the slots. The argument is at the assembly.
//!
//! Enabled only on `target_os = "linux"`, `target_env = "gnu"`, x86_64; other
//! targets (and processes where glibc did not register rseq) report
//! [`AddFold::Unavailable`] and callers keep using atomics.
#![allow(unsafe_code)]

use std::ptr::NonNull;
use std::sync::atomic::AtomicI64;

/// Per-CPU `i64` slots: CPU `c`'s slot (`c < units`) is `stride` × `c` bytes
/// after `base`.
#[derive(Debug, Clone, Copy)]
// Only the x86_64 sequences read the fields or build the outcomes below.
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
pub(crate) struct Slots {
    /// CPU 0's slot.
    pub(crate) base: NonNull<AtomicI64>,
    /// Bytes between two CPUs' slots.
    pub(crate) stride: u32,
    /// Number of slots.
    pub(crate) units: u32,
}

/// What [`add_fold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")),
    allow(dead_code)
)]
pub(crate) enum AddFold {
    /// No critical sections in this process (other target, glibc without
    /// rseq, rseq disabled or unregistered): nothing was written. The same
    /// answer for every call in the process's lifetime.
    Unavailable,
    /// The calling thread's `cpu_id` names no slot (`>= units`: its own rseq
    /// registration failed, so `cpu_id` is `(u32)-2`, or the CPU has no
    /// slot): nothing was written.
    NoSlot,
    /// The current CPU's slot now holds this value (`|v| < batch`).
    Added(i64),
    /// The new value reached `±batch`: the slot was set to 0 instead, and the
    /// caller must move this value to its shared total.
    Folded(i64),
}

/// Whether [`add_fold`] runs critical sections in this process (fixed for
/// the process's lifetime). Only tests ask: callers get
/// [`AddFold::Unavailable`] from [`add_fold`] itself.
#[cfg(test)]
pub(crate) fn available() -> bool {
    imp::area_offset().is_some()
}

/// On the current CPU `c`, in restartable sequences: `v = slot[c] + n`
/// (wrapping); if `|v| >= batch` (as `u64`, so `i64::MIN` folds) store 0 and
/// return [`AddFold::Folded(v)`](AddFold::Folded), else store `v` and return
/// [`AddFold::Added(v)`](AddFold::Added). `batch` must be at least 1.
///
/// The slot accesses are an aligned 8-byte `mov` load and `mov` store: on
/// x86_64 exactly what `AtomicI64::load` / `store` with `Relaxed` compile
/// to, so they are atomic accesses (no data race with concurrent atomic loads
/// or RMWs), but the pair is **not** an atomic read-modify-write. It is one
/// only against other callers of this function, which on CPU `c` are
/// serialised by the kernel (an interrupted sequence starts over from reading
/// the CPU id, before its load).
///
/// **Correctness (not memory safety) rule:** while any thread may be inside
/// this function on some slots, nothing else may write those slots — not even
/// with an atomic RMW — or that write can land between another CPU's load and
/// store and be lost. Reading them (atomic loads) is fine. Exclusive access
/// (`&mut`) is fine, since no call can be in progress then.
///
/// # Safety
///
/// For every `c < slots.units`, `slots.base` plus `c × slots.stride` bytes
/// must point to an initialised, 8-byte-aligned `AtomicI64` that stays valid
/// for the whole call, and no `&mut` to it may exist during the call.
#[inline]
pub(crate) unsafe fn add_fold(slots: Slots, n: i64, batch: i64) -> AddFold {
    debug_assert!(batch >= 1, "batch {batch}");
    // SAFETY: forwarded: the caller upholds `add_fold`'s contract.
    unsafe { imp::add_fold(slots, n, batch) }
}

#[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
mod imp {
    use super::{AddFold, Slots};
    use crate::sys::cpu::rseq::AreaOffset;
    use std::ptr::NonNull;
    use std::sync::atomic::AtomicI64;

    /// `__rseq_size` must cover `cpu_id_start`, `cpu_id`, `rseq_cs` and
    /// `flags` (the kernel reads `flags` when it considers a restart): the
    /// original rseq ABI's 20 bytes. glibc reports at least that when it
    /// registered (32 in its first releases, the 20-byte feature size in
    /// later ones and backports, more with newer kernel features), 0 when it
    /// did not.
    const MIN_RSEQ_SIZE: u32 = 20;

    /// `__rseq_offset` for critical sections.
    static AREA: AreaOffset = AreaOffset::new(MIN_RSEQ_SIZE);

    /// `__rseq_offset` if glibc registered rseq with an area large enough for
    /// critical sections; the same answer on every thread, for the process's
    /// lifetime.
    #[inline]
    pub(super) fn area_offset() -> Option<isize> {
        AREA.get()
    }

    /// One restartable sequence on the current CPU's slot. It writes the
    /// parts both sequences share: the `struct rseq_cs` descriptor (`6:`),
    /// the abort stub after the signature (`4:`, back to `7:`), arming
    /// (`7:`), start_ip (`2:`), the CPU bounds check (out to `3:` with
    /// `{cpu} >= units`), the slot's offset from `{base}` in `{t}`,
    /// `{new} = slot + n`, post_commit_ip (`3:`) and disarming. `$tail` are
    /// the instructions in between: the last one must be the commit, a store
    /// to `[{base} + {t}]`, and any other exit must jump to `3f` having
    /// stored nothing. `$extra` are their further operands, each with a
    /// trailing comma (outputs as `out`, so never in an input's register).
    macro_rules! sequence {
        (
            rs = $rs:expr, base = $base:expr, units = $units:expr,
            stride = $stride:expr, n = $n:expr, batch = $batch:expr,
            cpu = $cpu:ident, new = $new:ident,
            tail = [$($tail:literal),+ $(,)?],
            $($extra:tt)*
        ) => {
            core::arch::asm!(
                // struct rseq_cs, out of line.
                ".pushsection __rseq_cs, \"aw\"",
                ".balign 32",
                "6:",
                ".long 0, 0",
                ".quad 2f, 3f - 2f, 4f",
                ".popsection",
                // Abort handler, out of line, after RSEQ_SIG embedded in ud1.
                ".pushsection __rseq_failure, \"ax\"",
                ".byte 0x0f, 0xb9, 0x3d",
                ".long 0x53053053",
                "4:",
                "jmp 7f",
                ".popsection",
                // Arm: rseq->rseq_cs = &descriptor.
                "7:",
                "lea {t}, [rip + 6b]",
                "mov qword ptr fs:[{rs} + 8], {t}",
                // start_ip
                "2:",
                "mov {cpu:e}, dword ptr fs:[{rs} + 4]",
                "cmp {cpu:e}, {units:e}",
                "jae 3f",
                "mov {t}, {cpu}",
                "imul {t}, {stride}",
                "mov {new}, qword ptr [{base} + {t}]",
                "add {new}, {n}",
                $($tail,)+
                // post_commit_ip
                "3:",
                "mov qword ptr fs:[{rs} + 8], 0",
                rs = in(reg) $rs,
                base = in(reg) $base,
                units = in(reg) $units,
                stride = in(reg) $stride,
                n = in(reg) $n,
                batch = in(reg) $batch,
                cpu = out(reg) $cpu,
                t = out(reg) _,
                new = out(reg) $new,
                $($extra)*
                options(nostack),
            )
        };
    }

    /// [`super::add_fold`] (same contract) in up to two sequences: the add
    /// sequence stores `slot + n` unless that reaches `±batch`, in which case
    /// it stores nothing and [`add_or_fold`] starts over with the sequence that
    /// can also fold. Keeping the fold out of the add sequence keeps its
    /// commit store dependent on the load and the add only (the slot value is
    /// carried from one call to the next through memory, so every extra
    /// instruction between load and store would add to each call's latency).
    #[inline]
    pub(super) unsafe fn add_fold(slots: Slots, n: i64, batch: i64) -> AddFold {
        let Some(rs) = area_offset() else {
            return AddFold::Unavailable;
        };
        let cpu: u64;
        let new: i64;
        let abs: u64;
        // SAFETY: for the whole asm, the `sequence!` frame and this tail:
        // Memory. It touches three places:
        // - `fs:[rs + 4]` (`cpu_id`, read) and `fs:[rs + 8]` (`rseq_cs`,
        //   written): the calling thread's `struct rseq`, which glibc's ABI
        //   puts at thread pointer + `__rseq_offset` (`fs` is the thread
        //   pointer's segment on x86_64) for every thread of a process where
        //   `__rseq_size` is non-zero, 32-byte aligned, alive as long as the
        //   thread. Only this thread and the kernel (while this thread is
        //   stopped in it) access it, and no Rust reference to it exists. A
        //   thread whose own registration failed has the area with
        //   `cpu_id = (u32)-2`; it then never gets past the bounds check.
        // - `[base + cpu × stride]` for `cpu < units` (checked in the asm
        //   before the address is formed): a valid, aligned `AtomicI64` by
        //   the caller's contract. Its accesses are one aligned 8-byte load
        //   and at most one aligned 8-byte store, i.e. relaxed atomic
        //   accesses (see `super::add_fold`), so they race with nothing in
        //   Rust's sense.
        // - the `__rseq_cs` descriptor and the `__rseq_failure` abort stub:
        //   static, emitted with the code, never written at run time.
        // The kernel. The descriptor follows `struct rseq_cs`: version 0,
        // flags 0, start_ip = `2:`, post_commit_offset = `3:` − `2:`,
        // abort_ip = `4:`, 32 bytes, 32-byte aligned, and `4:` lies outside
        // `[2:, 3:)` (another section). The 4 bytes before `4:` are
        // 0x53053053, glibc's RSEQ_SIG for x86, which is what glibc registered
        // every thread with (as the immediate of a `ud1`, like glibc's and
        // librseq's own sequences); a mismatch would get the process killed,
        // never memory corrupted. The store to `rseq_cs` is the last
        // instruction before `2:`, so from start_ip on the kernel sees our
        // descriptor: if it interrupts the thread in `[2:, 3:)` it clears
        // `rseq_cs` and resumes at `4:`, which jumps back to `7:` and stores
        // it again. The only store to the slot is the last instruction before
        // `3:` (the commit); every early exit jumps to `3:` having stored
        // nothing. The sequence makes no system call. After `3:` the pointer
        // is cleared, so no stale descriptor is left behind should this code
        // be unmapped (a `dlclose`d library): the kernel would otherwise read
        // it at the thread's next preemption.
        // Restart safety. Every input register is only read, and every value
        // the sequence needs is recomputed from the inputs after `7:`; all
        // outputs (`cpu`, `t`, `new`, and the tail's `abs`) are `out`
        // operands (never allocated to an input's register) written before
        // they are read. Nothing is stored before the commit.
        // Registers and stack: every register written is a declared output
        // or `t`; flags are clobbered (no `preserves_flags`); no stack use
        // (`nostack`); the labels are numeric local labels, safe to duplicate
        // when the function is inlined in several places, and none consists
        // only of 0s and 1s.
        unsafe {
            sequence!(
                rs = rs,
                base = slots.base.as_ptr(),
                units = slots.units,
                stride = u64::from(slots.stride),
                n = n,
                batch = batch,
                cpu = cpu,
                new = new,
                tail = [
                    // abs = |new| as u64; at ±batch leave without storing.
                    "mov {abs}, {new}",
                    "neg {abs}",
                    "cmovs {abs}, {new}",
                    "cmp {abs}, {batch}",
                    "jae 3f",
                    // Commit.
                    "mov qword ptr [{base} + {t}], {new}",
                ],
                abs = out(reg) abs,
            );
        }
        if cpu >= u64::from(slots.units) {
            AddFold::NoSlot
        } else if abs < batch as u64 {
            AddFold::Added(new)
        } else {
            // SAFETY: the caller upholds `add_fold`'s contract, which is
            // `add_or_fold`'s too; `rs` is `area_offset()`.
            unsafe { add_or_fold(rs, slots.base, slots.stride, slots.units, n, batch) }
        }
    }

    /// The fold sequence: `new = slot + n`, then store `new`, or 0 when
    /// `|new| >= batch` (as `u64`), in one sequence. Reached only when the
    /// add sequence saw the slot reach `±batch`; it starts from scratch, as
    /// the thread may have moved to another CPU since.
    ///
    /// # Safety
    ///
    /// As [`super::add_fold`], for `Slots { base, stride, units }` (passed
    /// apart so that they travel in registers); `rs` must be
    /// [`area_offset`]'s answer.
    #[cold]
    #[inline(never)]
    unsafe fn add_or_fold(
        rs: isize,
        base: NonNull<AtomicI64>,
        stride: u32,
        units: u32,
        n: i64,
        batch: i64,
    ) -> AddFold {
        let cpu: u64;
        let new: i64;
        let stored: i64;
        // SAFETY: the argument of the add sequence in `add_fold` applies
        // word for word: the `sequence!` frame is the same (area, slots,
        // descriptor, signature, abort-and-retry path, bounds check, labels,
        // registers). Only the tail differs: instead of leaving at `±batch`
        // it computes the stored value branch-free (`sbb`/`and`: `new` when
        // `|new| < batch`, else 0) in its one extra `out` register `st`, and
        // its last instruction is still the one store, the commit.
        unsafe {
            sequence!(
                rs = rs,
                base = base.as_ptr(),
                units = units,
                stride = u64::from(stride),
                n = n,
                batch = batch,
                cpu = cpu,
                new = new,
                tail = [
                    // stored = |new| (as u64) < batch ? new : 0
                    "mov {st}, {new}",
                    "neg {st}",
                    "cmovs {st}, {new}",
                    "cmp {st}, {batch}",
                    "sbb {st}, {st}",
                    "and {st}, {new}",
                    // Commit.
                    "mov qword ptr [{base} + {t}], {st}",
                ],
                st = out(reg) stored,
            );
        }
        if cpu >= u64::from(units) {
            AddFold::NoSlot
        } else if stored == new {
            AddFold::Added(new)
        } else {
            AddFold::Folded(new)
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64")))]
mod imp {
    use super::{AddFold, Slots};

    #[cfg(test)]
    pub(super) fn area_offset() -> Option<isize> {
        None
    }

    #[inline]
    pub(super) unsafe fn add_fold(_: Slots, _: i64, _: i64) -> AddFold {
        AddFold::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::cpu::{possible_cpus, rseq_available};
    use crate::sys::testutil::{self, allowed_cpus, Pin};
    use std::sync::atomic::Ordering;

    /// Slots in a plain array, 64 bytes apart (each on its own line).
    #[repr(C, align(64))]
    #[derive(Default)]
    struct Line(AtomicI64);

    fn slots_of(lines: &[Line], units: u32) -> Slots {
        assert!(units as usize <= lines.len());
        Slots {
            base: NonNull::from(&lines[0].0),
            stride: std::mem::size_of::<Line>() as u32,
            units,
        }
    }

    fn lines(n: usize) -> Vec<Line> {
        (0..n).map(|_| Line::default()).collect()
    }

    fn total(lines: &[Line]) -> i64 {
        lines.iter().map(|l| l.0.load(Ordering::Relaxed)).sum()
    }

    /// `add_fold` on `lines` (every slot valid, aligned, alive).
    fn add(lines: &[Line], units: u32, n: i64, batch: i64) -> AddFold {
        // SAFETY: `slots_of` describes `units <= lines.len()` elements of a
        // live slice, 64 bytes apart, each an aligned `AtomicI64`; only
        // shared references exist.
        unsafe { add_fold(slots_of(lines, units), n, batch) }
    }

    /// glibc registered an area large enough (2.35+ does) exactly when the
    /// cpu_id fast path works, on x86_64 glibc.
    #[test]
    fn available_matches_the_cpu_fast_path() {
        if cfg!(all(
            target_os = "linux",
            target_env = "gnu",
            target_arch = "x86_64"
        )) {
            assert_eq!(available(), rseq_available());
        } else {
            assert!(!available());
        }
        eprintln!("rseq critical sections: {}", available());
    }

    #[test]
    fn adds_and_folds_on_the_pinned_cpu() {
        if !available() {
            assert_eq!(add(&lines(1), 1, 1, 10), AddFold::Unavailable);
            return;
        }
        let n = possible_cpus();
        let l = lines(n);
        let units = n as u32;
        for cpu in allowed_cpus() {
            let _pin = Pin::to(cpu);
            let before = total(&l);
            assert_eq!(add(&l, units, 3, 10), AddFold::Added(3));
            assert_eq!(add(&l, units, 4, 10), AddFold::Added(7));
            assert_eq!(l[cpu].0.load(Ordering::Relaxed), 7);
            // 7 + 5 = 12 >= 10: folded, slot emptied.
            assert_eq!(add(&l, units, 5, 10), AddFold::Folded(12));
            assert_eq!(l[cpu].0.load(Ordering::Relaxed), 0);
            assert_eq!(add(&l, units, -9, 10), AddFold::Added(-9));
            assert_eq!(add(&l, units, -1, 10), AddFold::Folded(-10));
            assert_eq!(add(&l, units, 0, 10), AddFold::Added(0));
            // batch 1 folds everything but 0.
            assert_eq!(add(&l, units, 1, 1), AddFold::Folded(1));
            assert_eq!(add(&l, units, 0, 1), AddFold::Added(0));
            // Extremes: wrapping, and i64::MIN folds even for i64::MAX.
            assert_eq!(
                add(&l, units, i64::MAX - 1, i64::MAX),
                AddFold::Added(i64::MAX - 1)
            );
            assert_eq!(add(&l, units, 1, i64::MAX), AddFold::Folded(i64::MAX));
            assert_eq!(
                add(&l, units, i64::MIN, i64::MAX),
                AddFold::Folded(i64::MIN)
            );
            assert_eq!(
                add(&l, units, -(i64::MAX - 1), i64::MAX),
                AddFold::Added(-(i64::MAX - 1))
            );
            assert_eq!(add(&l, units, i64::MAX - 1, i64::MAX), AddFold::Added(0));
            assert_eq!(total(&l), before, "only CPU {cpu}'s slot, back to 0");
        }
    }

    /// CPUs without a slot write nothing; the bounds check is in the asm.
    #[test]
    fn cpus_without_a_slot_write_nothing() {
        if !available() {
            return;
        }
        let l = lines(possible_cpus());
        assert_eq!(add(&l, 0, 5, 100), AddFold::NoSlot);
        for cpu in allowed_cpus() {
            let _pin = Pin::to(cpu);
            assert_eq!(add(&l, cpu as u32, 5, 100), AddFold::NoSlot);
            assert_eq!(add(&l, cpu as u32 + 1, 5, 100), AddFold::Added(5));
        }
        assert_eq!(total(&l), 5 * allowed_cpus().len() as i64);
    }

    /// More threads than CPUs, unpinned: preemption and migration land inside
    /// sequences all the time, and not one update may be lost. Without the
    /// restart (e.g. with the `rseq_cs` store removed) this loses updates
    /// within a fraction of a second on a 2-CPU machine.
    #[test]
    fn no_update_lost_under_preemption() {
        if !available() {
            return;
        }
        let units = possible_cpus();
        let l = lines(units);
        let threads = 4 * allowed_cpus().len().max(2);
        let per_thread = 2_000_000i64;
        std::thread::scope(|s| {
            for t in 0..threads {
                let l = &l;
                s.spawn(move || {
                    let mut folded = 0i64;
                    for i in 0..per_thread {
                        let n = if (i + t as i64) % 4 == 0 { -1 } else { 1 };
                        match add(l, units as u32, n, i64::MAX) {
                            AddFold::Added(_) => {}
                            AddFold::Folded(v) => folded += v,
                            other => panic!("{other:?}"),
                        }
                    }
                    assert_eq!(folded, 0);
                });
            }
        });
        let expected: i64 = (0..threads)
            .map(|t| {
                (0..per_thread)
                    .map(|i| if (i + t as i64) % 4 == 0 { -1 } else { 1 })
                    .sum::<i64>()
            })
            .sum();
        assert_eq!(total(&l), expected);
    }

    /// Slots shared with the signal handler of the test below (the handler
    /// can only reach statics).
    static SIG_LINES: [Line; 256] = [const { Line(AtomicI64::new(0)) }; 256];
    /// Updates the handler made.
    static HANDLED: AtomicI64 = AtomicI64::new(0);
    /// Handler calls that got something other than `Added`.
    static HANDLER_ODD: AtomicI64 = AtomicI64::new(0);

    fn sig_units() -> u32 {
        possible_cpus().min(SIG_LINES.len()) as u32
    }

    extern "C" fn add_in_handler(_: libc::c_int) {
        // Async-signal-safe: the sequence and atomics only, no allocation,
        // no locks, no panics.
        match add(&SIG_LINES, sig_units(), 1, i64::MAX) {
            AddFold::Added(_) => HANDLED.fetch_add(1, Ordering::Relaxed),
            _ => HANDLER_ODD.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Signals land inside sequences (which must then restart before the
    /// handler runs), and the handler runs sequences on the same slots
    /// itself: every update, the threads' and the handler's, must count
    /// exactly once. In a child: it installs a process-wide handler.
    #[test]
    fn no_update_lost_under_signals() {
        let test = testutil::test_name(module_path!(), "no_update_lost_under_signals");
        testutil::in_child(&test, &[], signals_in_child);
    }

    fn signals_in_child() {
        if !available() {
            return;
        }
        // SAFETY: `sigaction` with a zeroed (valid: empty mask, no flags but
        // the ones set) struct whose handler is an `extern "C" fn(c_int)`
        // that is async-signal-safe; SIGUSR1 is used by nothing else in this
        // child process.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = add_in_handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
        }
        let workers = 4;
        let target_signals = 100_000u64;
        let enough = std::sync::atomic::AtomicBool::new(false);
        let stop = std::sync::Barrier::new(workers + 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let (signals, expected) = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers as i64)
                .map(|t| {
                    let (enough, stop, tx) = (&enough, &stop, tx.clone());
                    s.spawn(move || {
                        // SAFETY: `pthread_self` has no preconditions.
                        tx.send(unsafe { libc::pthread_self() }).unwrap();
                        let mut added = 0i64;
                        let mut i = 0i64;
                        while i < 1_000_000 || !enough.load(Ordering::Relaxed) {
                            let n = if (i + t) % 3 == 0 { -1 } else { 1 };
                            assert!(matches!(
                                add(&SIG_LINES, sig_units(), n, i64::MAX),
                                AddFold::Added(_)
                            ));
                            added += n;
                            i += 1;
                        }
                        // Stay alive (signalable) until the signaller stops.
                        stop.wait();
                        added
                    })
                })
                .collect();
            let threads: Vec<libc::pthread_t> = rx.iter().take(workers).collect();
            let mut signals = 0u64;
            while signals < target_signals {
                for &t in &threads {
                    // SAFETY: every worker is alive until it passes `stop`,
                    // which needs this thread too, so `t` is a live thread.
                    assert_eq!(unsafe { libc::pthread_kill(t, libc::SIGUSR1) }, 0);
                    signals += 1;
                }
            }
            enough.store(true, Ordering::Relaxed);
            stop.wait();
            let expected: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            (signals, expected)
        });
        let handled = HANDLED.load(Ordering::Relaxed);
        eprintln!("{signals} signals sent, {handled} handled");
        assert!(handled > 0);
        assert_eq!(HANDLER_ODD.load(Ordering::Relaxed), 0);
        assert_eq!(total(&SIG_LINES), expected + handled);
    }

    /// With glibc's rseq disabled (valgrind and old kernels look like this),
    /// no critical section runs and nothing is written.
    #[test]
    fn unavailable_when_glibc_rseq_is_disabled() {
        let test = testutil::test_name(module_path!(), "unavailable_when_glibc_rseq_is_disabled");
        testutil::in_child(&test, &[testutil::NO_RSEQ], || {
            assert!(!available());
            let l = lines(possible_cpus());
            assert_eq!(add(&l, possible_cpus() as u32, 1, 10), AddFold::Unavailable);
            assert_eq!(total(&l), 0);
        });
    }
}
