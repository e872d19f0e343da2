//! CPU numbering: how many CPU ids exist, and which CPU the calling thread is
//! running on.
//!
//! * [`possible_cpus`] is the kernel's `nr_cpu_ids`: one more than the highest
//!   id in `/sys/devices/system/cpu/possible`. The allocator gives every chunk
//!   one unit per possible CPU, so every id [`current_cpu`] can return indexes
//!   a unit.
//! * [`current_cpu`] reads `cpu_id` from the thread's rseq area that glibc
//!   (2.35+) registers with the kernel — a plain memory load, no system call —
//!   and falls back to `getcpu` (vDSO where available, else the system call)
//!   when rseq is unavailable (old glibc or kernel,
//!   `GLIBC_TUNABLES=glibc.pthread.rseq=0`, valgrind, musl, architectures
//!   other than x86_64 and aarch64).
//!
//! The answer is a hint, exactly like `raw_smp_processor_id()` in a
//! preemptible kernel context: the thread may migrate right after the call.
//! Callers must stay correct when it is stale (per-CPU data accessed from the
//! "wrong" CPU must still be synchronised); it only has to be fast and usually
//! right.
//!
//! # Safety
//!
//! This module is one of the four in the crate allowed to use `unsafe` (the
//! others are `sys::mmap`, `sys::rseq` and `handle`). Its `unsafe` code is:
//!
//! 1. `dlsym` look-ups of glibc's exported `__rseq_offset` and `__rseq_size`
//!    (done once, cached), and reading those two read-only variables;
//! 2. reading the thread pointer register with inline assembly;
//! 3. a volatile 4-byte load of `cpu_id` from the calling thread's rseq area,
//!    located at `thread pointer + __rseq_offset` as glibc's ABI documents
//!    (`<sys/rseq.h>`). That area lives in the thread's own control block for
//!    the thread's whole lifetime, is only written by the kernel while the
//!    thread is not executing user code, and is never referenced by Rust
//!    code, so the load races with nothing.
//!
//! It is enabled only on `target_os = "linux"`, `target_env = "gnu"` and
//! x86_64 / aarch64, where that ABI holds.
#![allow(unsafe_code)]

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Where the kernel lists the possible CPUs.
const POSSIBLE_PATH: &str = "/sys/devices/system/cpu/possible";

/// Largest CPU id accepted from the possible-CPU list. Linux's largest
/// `NR_CPUS` is 8192; anything far beyond it is treated as malformed rather
/// than trusted to size every chunk.
const MAX_CPU_ID: usize = (1 << 16) - 1;

/// Cached [`possible_cpus`]; 0 = not computed yet.
static POSSIBLE: AtomicUsize = AtomicUsize::new(0);

/// Number of CPU ids: one more than the highest possible CPU id (the kernel's
/// `nr_cpu_ids`), computed once and cached. Always `>= 1`.
///
/// Read from `/sys/devices/system/cpu/possible` (e.g. `0-3`, `0`, `0,2-5,7`;
/// the last one gives 8, since ids are indices and the gaps still need a
/// slot). If the file is missing or malformed, falls back to the larger of
/// [`std::thread::available_parallelism`] and one more than the highest CPU
/// in the thread's affinity mask.
#[inline]
pub fn possible_cpus() -> usize {
    match POSSIBLE.load(Ordering::Relaxed) {
        0 => init_possible_cpus(),
        n => n,
    }
}

#[cold]
fn init_possible_cpus() -> usize {
    let n = std::fs::read_to_string(POSSIBLE_PATH)
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .unwrap_or_else(fallback_cpus);
    // Racing initialisers compute the same value; the first store wins so
    // that every caller sees one value forever.
    match POSSIBLE.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => n,
        Err(first) => first,
    }
}

/// Parses a kernel CPU list (`0-3`, `0`, `0,2-5,7`, with an optional trailing
/// newline) and returns one more than its highest id. Returns `None` for
/// anything malformed (see [`parse_cpu_ranges`]). Never panics.
fn parse_cpu_list(s: &str) -> Option<usize> {
    parse_cpu_ranges(s)?.iter().map(|r| *r.end() + 1).max()
}

/// The ranges of a kernel CPU list (`0-3`, `0`, `0,2-5,7`, with an optional
/// trailing newline; also the format of a NUMA node's `cpulist`), in the
/// order listed. Returns `None` for anything malformed: empty input or
/// element, non-digits (including signs), reversed ranges, ids above
/// [`MAX_CPU_ID`]. Never panics.
pub(crate) fn parse_cpu_ranges(s: &str) -> Option<Vec<RangeInclusive<usize>>> {
    fn id(s: &str) -> Option<usize> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|&v| v <= MAX_CPU_ID)
    }
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    s.split(',')
        .map(|item| match item.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (id(lo)?, id(hi)?);
                (lo <= hi).then_some(lo..=hi)
            }
            None => id(item).map(|c| c..=c),
        })
        .collect()
}

/// CPU count when the possible list cannot be read: the larger of the usable
/// parallelism and the highest CPU id this thread may run on, plus one.
fn fallback_cpus() -> usize {
    let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
    let affinity = rustix::thread::sched_getaffinity(None).map_or(0, |set| {
        (0..rustix::thread::CpuSet::MAX_CPU)
            .rev()
            .find(|&c| set.is_set(c))
            .map_or(0, |c| c + 1)
    });
    parallelism.max(affinity).max(1)
}

/// Maps an id reported by the OS into `0..possible_cpus()`.
///
/// The kernel never runs a thread on a CPU outside the possible mask, so this
/// is the identity — unless `possible_cpus()` came from the fallback (which
/// may undercount, e.g. in a container that hides sysfs). Then the id is
/// folded with a modulo: callers index per-CPU units with it, and a wrong but
/// in-range CPU is harmless (the answer is only a hint anyway) whereas an
/// out-of-range one would be a bug.
#[inline]
fn clamp(cpu: usize) -> usize {
    let n = possible_cpus();
    if cpu < n {
        cpu
    } else {
        cpu % n
    }
}

/// The CPU the calling thread is running on, always `< possible_cpus()`.
///
/// Fast path: [`current_cpu_rseq`] (one memory load); otherwise
/// [`current_cpu_syscall`]. The value may be stale as soon as it is returned.
#[inline]
pub fn current_cpu() -> usize {
    match current_cpu_rseq() {
        Some(cpu) => cpu,
        None => current_cpu_syscall(),
    }
}

/// The CPU from `getcpu` (`rustix::thread::sched_getcpu`: the vDSO's
/// `__vdso_getcpu` where the kernel provides one — x86_64 does, a few ns —
/// else the real system call),
/// folded into `0..possible_cpus()` (identity unless the CPU count came
/// from the fallback and undercounts; see `clamp`).
#[inline]
pub fn current_cpu_syscall() -> usize {
    clamp(rustix::thread::sched_getcpu())
}

/// The CPU from the calling thread's rseq area, or `None` when glibc has not
/// registered rseq for this process/thread or the value is not a valid CPU
/// id (`cpu_id` is `(u32)-1` before registration and `(u32)-2` when it
/// failed).
#[inline]
pub fn current_cpu_rseq() -> Option<usize> {
    let cpu = rseq::cpu_id()? as usize;
    if cpu < possible_cpus() {
        Some(cpu)
    } else {
        None
    }
}

/// Whether glibc registered rseq for this process (so [`current_cpu_rseq`]
/// answers), as far as its exported `__rseq_size` says.
pub fn rseq_available() -> bool {
    rseq::area_offset().is_some()
}

/// Supported platforms: glibc's rseq ABI and a readable thread pointer.
#[cfg(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub(super) mod rseq {
    use super::*;

    /// Byte offset of `cpu_id` in `struct rseq` (after `u32 cpu_id_start`).
    const CPU_ID_OFFSET: isize = 4;
    /// `__rseq_size` must cover `cpu_id_start` and `cpu_id`.
    const MIN_RSEQ_SIZE: u32 = 8;

    /// `__rseq_offset` for reading `cpu_id`.
    static AREA: AreaOffset = AreaOffset::new(MIN_RSEQ_SIZE);

    /// glibc's `__rseq_offset`, looked up once, for a user that needs
    /// `__rseq_size` to cover at least `min_size` bytes of `struct rseq`.
    /// Every thread computes the same answer: it only depends on glibc's two
    /// variables, fixed before `main`.
    pub(crate) struct AreaOffset {
        /// The offset, or one of the two markers below. Real offsets are
        /// small (the area is inside the thread control block).
        offset: AtomicIsize,
        min_size: u32,
    }

    const UNKNOWN: isize = isize::MIN;
    const UNAVAILABLE: isize = isize::MIN + 1;

    impl AreaOffset {
        /// Not looked up yet.
        pub(crate) const fn new(min_size: u32) -> Self {
            AreaOffset {
                offset: AtomicIsize::new(UNKNOWN),
                min_size,
            }
        }

        /// `__rseq_offset` if glibc registered rseq with an area of at least
        /// `min_size` bytes.
        #[inline]
        pub(crate) fn get(&self) -> Option<isize> {
            match self.offset.load(Ordering::Relaxed) {
                UNKNOWN => self.init(),
                UNAVAILABLE => None,
                off => Some(off),
            }
        }

        #[cold]
        fn init(&self) -> Option<isize> {
            let found = match lookup() {
                Lookup {
                    offset: Some(off),
                    size: Some(size),
                } if size >= self.min_size && off != UNKNOWN && off != UNAVAILABLE => Some(off),
                _ => None,
            };
            // Concurrent initialisers store the same value.
            self.offset
                .store(found.unwrap_or(UNAVAILABLE), Ordering::Relaxed);
            found
        }
    }

    /// What the one-time look-up found (for [`AreaOffset`], tests and
    /// diagnostics).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) struct Lookup {
        /// `__rseq_offset`, if the symbol exists.
        pub(crate) offset: Option<isize>,
        /// `__rseq_size`, if the symbol exists (0: registration failed or
        /// disabled).
        pub(crate) size: Option<u32>,
    }

    /// Looks up glibc's rseq variables with `dlsym(RTLD_DEFAULT, ...)`.
    ///
    /// `dlsym` rather than `extern { static __rseq_offset: isize; }`: a
    /// strong reference to a `GLIBC_2.35` symbol would make the binary fail
    /// to link against an older glibc and fail to *start* on a system with an
    /// older glibc; Rust has no stable weak linkage. `dlsym` simply returns
    /// null there and we fall back. (It also returns null in static binaries.)
    pub(crate) fn lookup() -> Lookup {
        // SAFETY: `dlsym` is thread-safe and needs a valid handle and a
        // NUL-terminated name: `RTLD_DEFAULT` is a valid pseudo-handle and the
        // C-string literals are NUL-terminated and 'static.
        let (off_p, size_p) = unsafe {
            (
                libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
                libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
            )
        };
        // SAFETY: a non-null result is the address of glibc's
        // `const ptrdiff_t __rseq_offset` (sys/rseq.h): aligned, initialised
        // before any user code runs, and read-only (RELRO) afterwards, so a
        // plain read of an `isize` (= ptrdiff_t on the supported targets)
        // races with nothing.
        let offset = (!off_p.is_null()).then(|| unsafe { off_p.cast::<isize>().read() });
        // SAFETY: likewise for `const unsigned int __rseq_size` (u32).
        let size = (!size_p.is_null()).then(|| unsafe { size_p.cast::<u32>().read() });
        Lookup { offset, size }
    }

    /// `__rseq_offset` if glibc registered rseq, looked up once.
    #[inline]
    pub(super) fn area_offset() -> Option<isize> {
        AREA.get()
    }

    /// The raw `cpu_id` of the calling thread's rseq area.
    #[inline]
    pub(super) fn cpu_id() -> Option<u32> {
        let off = area_offset()?;
        let cpu_id = thread_pointer().wrapping_offset(off + CPU_ID_OFFSET);
        // SAFETY: glibc registered rseq (`__rseq_size >= 8`), so every thread
        // it created has a `struct rseq` at `thread pointer + __rseq_offset`
        // (glibc's documented ABI), inside the thread's control block, alive
        // as long as the thread, 32-byte aligned; `cpu_id` is the `u32` at
        // byte 4, so the pointer is valid and aligned for a 4-byte read. (A
        // thread whose own registration failed still has the area, with
        // `cpu_id` = -2, which the caller rejects.) The kernel updates it only
        // while this thread is in the kernel, and no Rust reference to it
        // exists, so the load races with nothing; volatile makes every call
        // re-read it instead of reusing an earlier (possibly stale) value.
        Some(unsafe { cpu_id.cast::<u32>().read_volatile() })
    }

    /// The thread pointer (`__builtin_thread_pointer()`).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn thread_pointer() -> *const u8 {
        let tp: *const u8;
        // SAFETY: on x86_64 Linux `fs` is the thread pointer and the TCB's
        // first word (`tcbhead_t.tcb`) points to itself, so `fs:[0]` is the
        // thread pointer as a linear address. The instruction only reads that
        // always-mapped word of the current thread's TCB; it touches no
        // stack, flags or other memory. Not `pure`: the value must not be
        // reused across a point where the code could resume on another thread.
        unsafe {
            core::arch::asm!(
                "mov {}, qword ptr fs:[0]",
                out(reg) tp,
                options(nostack, readonly, preserves_flags)
            );
        }
        tp
    }

    /// The thread pointer (`__builtin_thread_pointer()`).
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    fn thread_pointer() -> *const u8 {
        let tp: *const u8;
        // SAFETY: `tpidr_el0` is the user-readable thread-pointer register;
        // reading it has no side effects and touches no memory.
        unsafe {
            core::arch::asm!(
                "mrs {}, tpidr_el0",
                out(reg) tp,
                options(nomem, nostack, preserves_flags)
            );
        }
        tp
    }
}

/// Other platforms: no rseq fast path.
#[cfg(not(all(
    target_os = "linux",
    target_env = "gnu",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod rseq {
    #[inline]
    pub(super) fn area_offset() -> Option<isize> {
        None
    }
    #[inline]
    pub(super) fn cpu_id() -> Option<u32> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::testutil::{self, allowed_cpus, Pin};
    use rustix::thread::{sched_getaffinity, sched_getcpu, CpuSet};

    #[test]
    fn parse_well_formed_lists() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-3"), Some(4));
        assert_eq!(parse_cpu_list("0-3\n"), Some(4));
        assert_eq!(parse_cpu_list("  0-1 \n"), Some(2));
        assert_eq!(parse_cpu_list("0,2-5,7"), Some(8));
        assert_eq!(parse_cpu_list("0,2-5,7\n"), Some(8));
        assert_eq!(parse_cpu_list("7,0-2"), Some(8));
        assert_eq!(parse_cpu_list("3-3"), Some(4));
        assert_eq!(parse_cpu_list("0-8191"), Some(8192));
        assert_eq!(parse_cpu_list("00-03"), Some(4));
        assert_eq!(parse_cpu_list("65535"), Some(65536));
    }

    #[test]
    fn parse_malformed_lists_is_none() {
        let bad = [
            "",
            "\n",
            " ",
            "abc",
            "0-",
            "-3",
            "-",
            "3-1",
            "0,,2",
            "0,",
            ",0",
            "0-3,",
            "+1",
            "0-+3",
            "-1",
            "1 2",
            "0 - 3",
            "0-3:2",
            "0x3",
            "０",
            "1-2-3",
            "65536",
            "0-70000",
            "99999999999999999999999",
            "0-18446744073709551616",
            "\u{0}",
            "3\n4",
        ];
        for s in bad {
            assert_eq!(parse_cpu_list(s), None, "{s:?}");
        }
    }

    #[test]
    fn possible_cpus_matches_sysfs_and_is_stable() {
        let n = possible_cpus();
        assert!(n >= 1);
        assert_eq!(possible_cpus(), n);
        if let Ok(s) = std::fs::read_to_string(POSSIBLE_PATH) {
            if let Some(parsed) = parse_cpu_list(&s) {
                assert_eq!(n, parsed, "sysfs says {s:?}");
            }
        }
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(n >= online, "possible {n} < available parallelism {online}");
    }

    #[test]
    fn fallback_is_sane() {
        let f = fallback_cpus();
        assert!(f >= 1);
        assert!(f >= std::thread::available_parallelism().map_or(1, |n| n.get()));
        // Every CPU this thread may run on has an id below the fallback.
        let set = sched_getaffinity(None).unwrap();
        assert!((0..CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .all(|c| c < f));
    }

    #[test]
    fn clamp_folds_into_range() {
        let n = possible_cpus();
        assert_eq!(clamp(0), 0);
        assert_eq!(clamp(n - 1), n - 1);
        assert_eq!(clamp(n), 0);
        assert_eq!(clamp(n + 1), 1 % n);
        assert!(clamp(usize::MAX) < n);
    }

    /// Checks all three answers against the pinned CPU.
    fn check_pinned(cpu: usize, rounds: usize) {
        let _pin = Pin::to(cpu);
        assert_eq!(sched_getcpu(), cpu, "pinning did not take effect");
        for _ in 0..rounds {
            assert_eq!(current_cpu(), cpu);
            assert_eq!(current_cpu_syscall(), cpu);
            match current_cpu_rseq() {
                Some(c) => assert_eq!(c, cpu),
                None => assert!(!rseq_available(), "rseq registered but unanswered"),
            }
        }
    }

    #[test]
    fn current_cpu_agrees_with_getcpu_when_pinned() {
        let before = sched_getaffinity(None).unwrap();
        for cpu in allowed_cpus() {
            check_pinned(cpu, 1000);
        }
        assert!(sched_getaffinity(None).unwrap() == before, "mask restored");
    }

    #[test]
    fn current_cpu_from_many_threads() {
        let cpus = allowed_cpus();
        let n = possible_cpus();
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let cpu = cpus[i % cpus.len()];
                std::thread::spawn(move || {
                    if i % 2 == 0 {
                        check_pinned(cpu, 10_000);
                    } else {
                        // Unpinned: may migrate at any time, but stays in range.
                        for _ in 0..10_000 {
                            assert!(current_cpu() < n);
                            assert!(current_cpu_syscall() < n);
                            if let Some(c) = current_cpu_rseq() {
                                assert!(c < n);
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    /// glibc's version as (major, minor).
    fn glibc_version() -> (u32, u32) {
        // SAFETY: `gnu_get_libc_version` takes no arguments and returns a
        // pointer to a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        let v = v.to_str().unwrap();
        let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    /// On glibc >= 2.35 the symbols must be found (catches a broken look-up
    /// that would silently always fall back); when glibc says rseq is
    /// registered, the fast path must answer on every thread.
    #[test]
    fn rseq_lookup_is_consistent_with_glibc() {
        let found = rseq::lookup();
        if glibc_version() >= (2, 35) {
            assert!(found.offset.is_some() && found.size.is_some(), "{found:?}");
        }
        let registered = found.size.is_some_and(|s| s >= 8);
        assert_eq!(rseq_available(), registered, "{found:?}");
        if registered {
            assert!(current_cpu_rseq().is_some());
            let other = std::thread::spawn(current_cpu_rseq).join().unwrap();
            assert!(other.is_some(), "rseq on a new thread");
        } else {
            assert_eq!(current_cpu_rseq(), None);
        }
        eprintln!(
            "glibc {:?}, rseq look-up {found:?}, fast path {}",
            glibc_version(),
            if registered { "active" } else { "inactive" }
        );
    }

    /// With rseq disabled through glibc's tunable (what valgrind and old
    /// kernels look like), the fast path reports `None` and `current_cpu`
    /// still gives the right answer via the system call. Runs in a child
    /// because tunables are read at process start.
    #[test]
    fn fallback_when_glibc_rseq_is_disabled() {
        let test = testutil::test_name(module_path!(), "fallback_when_glibc_rseq_is_disabled");
        testutil::in_child(&test, &[testutil::NO_RSEQ], || {
            assert!(!rseq_available());
            assert_eq!(current_cpu_rseq(), None);
            for cpu in allowed_cpus() {
                check_pinned(cpu, 100);
            }
        });
    }
}
