//! Test knobs that make the next reservations / populations fail.
//!
//! The counters are **thread-local**: only calls made on the thread that armed
//! them fail, so tests running in parallel do not disturb each other. Each
//! armed failure is consumed by one call and produces `ENOMEM`:
//!
//! * a failing [`Region::reserve`](crate::sys::mmap::Region::reserve) returns `SysError::Reserve` before any
//!   `mmap`;
//! * a failing [`Region::populate`](crate::sys::mmap::Region::populate) (any call with a valid, non-empty page
//!   range) does all of its real work — every unit made accessible and
//!   resident — and then fails in place of the *last* pre-fault, so the
//!   rollback path has the most to undo. The error is `SysError::Populate`
//!   with `op: SysOp::Prefault`.
//!
//! One knob is process-wide instead: [`panic_next_balance_runs`] makes
//! balance runs panic with the allocator's state lock held, on whichever
//! thread runs them (the balance worker's), as an internal bug would.
//!
//! Without the `fault-injection` feature (and outside tests) only the four
//! crate-internal queries exist, as constant `false`.

#[cfg(any(test, feature = "fault-injection"))]
pub use knobs::*;

#[cfg(any(test, feature = "fault-injection"))]
mod knobs {
    use std::cell::Cell;

    thread_local! {
        static RESERVE_FAILURES: Cell<u32> = const { Cell::new(0) };
        static POPULATE_FAILURES: Cell<u32> = const { Cell::new(0) };
        static FORCE_TOUCH: Cell<bool> = const { Cell::new(false) };
    }

    /// Makes the next `n` region reservations on this thread fail with
    /// `ENOMEM` (replacing any count armed before).
    pub fn fail_next_reserves(n: u32) {
        RESERVE_FAILURES.with(|c| c.set(n));
    }

    /// Makes the next `n` populate calls on this thread fail with `ENOMEM`
    /// after doing their work (replacing any count armed before).
    pub fn fail_next_populates(n: u32) {
        POPULATE_FAILURES.with(|c| c.set(n));
    }

    /// Armed reservation failures not consumed yet on this thread.
    pub fn pending_reserve_failures() -> u32 {
        RESERVE_FAILURES.with(Cell::get)
    }

    /// Armed populate failures not consumed yet on this thread.
    pub fn pending_populate_failures() -> u32 {
        POPULATE_FAILURES.with(Cell::get)
    }

    /// Forces (on this thread) the pre-fault fallback used on kernels without
    /// `MADV_POPULATE_WRITE`: one volatile zero-byte write per page.
    pub fn force_touch_fallback(on: bool) {
        FORCE_TOUCH.with(|c| c.set(on));
    }

    /// Disarms everything on this thread.
    pub fn reset() {
        fail_next_reserves(0);
        fail_next_populates(0);
        force_touch_fallback(false);
    }

    fn take(c: &'static std::thread::LocalKey<Cell<u32>>) -> bool {
        c.with(|c| match c.get() {
            0 => false,
            n => {
                c.set(n - 1);
                true
            }
        })
    }

    pub(crate) fn take_reserve_failure() -> bool {
        take(&RESERVE_FAILURES)
    }

    pub(crate) fn take_populate_failure() -> bool {
        take(&POPULATE_FAILURES)
    }

    pub(crate) fn touch_forced() -> bool {
        FORCE_TOUCH.with(Cell::get)
    }

    /// Balance runs still to panic (process-wide).
    static BALANCE_PANICS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

    /// Makes the next `n` balance runs, on any thread, panic with the
    /// allocator's state lock held, poisoning that allocator (replacing any
    /// count armed before).
    pub fn panic_next_balance_runs(n: u32) {
        BALANCE_PANICS.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn take_balance_panic() -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        BALANCE_PANICS
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

#[cfg(not(any(test, feature = "fault-injection")))]
mod knobs {
    #[inline(always)]
    pub(crate) fn take_reserve_failure() -> bool {
        false
    }
    #[inline(always)]
    pub(crate) fn take_populate_failure() -> bool {
        false
    }
    #[inline(always)]
    pub(crate) fn touch_forced() -> bool {
        false
    }
    #[inline(always)]
    pub(crate) fn take_balance_panic() -> bool {
        false
    }
}

#[cfg(not(any(test, feature = "fault-injection")))]
pub(crate) use knobs::*;
