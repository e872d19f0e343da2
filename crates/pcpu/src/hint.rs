//! Placement hints: lifetime classes.
//!
//! Objects allocated inside [`with_lifetime`] carry a *lifetime class*: with
//! a policy that has class placement (`pcpu`), objects of one class get pages
//! of their own, so that when a class dies together its pages become empty
//! and go back to the OS instead of being pinned by a few survivors of
//! another class. Without a scope, the `pcpu` policy keeps each *thread's*
//! objects together (as it keeps each task's objects together in the
//! kernel). The Linux policies ignore hints.
//!
//! Classes allocating in turn interleave page by page by default: a class
//! that needs a new region takes the first free pages, often right after
//! another class's last object, and each switch leaves a page partly used.
//! With a few long-lived classes, `Policy::keep_room` keeps the free room
//! after the most recently used classes' objects for them (a class finding
//! free space only there maps a new chunk instead: address space, not
//! memory; when mapping fails it takes the room after all). Leave it off
//! with one lifetime per request: each request would then go to another
//! chunk, and pages freed by finished requests would be given back and
//! populated again instead of reused.
//!
//! # Call sites
//!
//! Every allocating call (`per_cpu`, `per_cpu_zeroed`, `counter`,
//! `alloc_raw`, `PerCpuCounter::new*`) passes its caller's source location
//! to the policy (`#[track_caller]`), as the kernel's tracepoint gives each
//! allocation its `call_site`. The `pcpu` policy learns per call site from a
//! thread's first object: whether the threads starting there stay at one
//! object (their objects then share the long-lived pages instead of each
//! pinning one), whether their first objects die young, and how large a
//! burst they place (`Policy::long_lived`, `short_lived`, `tile_bursts`).
//! The site is the line that calls the allocator: objects made by one
//! helper function share its site, whoever calls the helper (as the
//! kernel's `percpu_ref_init` does). Under class placement a thread's
//! first request of a size and alignment takes one area (later misses of
//! its thread cache refill several), so that a thread allocating one
//! object is one allocation to the predictions. Small typed objects that
//! a thread drops wait in its cache until the next flush, so their deaths
//! reach the short-lived prediction late; raw objects' do not.
//!
//! A class takes whole pages: each live class holds at least one page per
//! CPU, however small its objects. A class per object costs a page per
//! object per CPU (5,000 live `u64`s in 5,000 classes take 40 MB on 2
//! CPUs): use a class for a group of objects that die together, not as an
//! object's identity.
//!
//! ```
//! use pcpu::{with_lifetime, Lifetime, PerCpuAllocator, Policy};
//!
//! let alloc = PerCpuAllocator::builder().policy(Policy::pcpu()).build().unwrap();
//! // Long-lived statistics in one class, per-request counters in another.
//! let stats = with_lifetime(Lifetime(1), || alloc.per_cpu_zeroed::<u64>()).unwrap();
//! let request = with_lifetime(Lifetime(2), || alloc.per_cpu_zeroed::<u64>()).unwrap();
//! assert_ne!(stats.get(0) as *const u64, request.get(0) as *const u64);
//! ```

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pcpu_core::ClassHint;

/// A lifetime class: objects expected to be freed together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lifetime(pub u64);

thread_local! {
    static SCOPE: Cell<Option<u64>> = const { Cell::new(None) };
    static THREAD: Cell<u64> = const { Cell::new(0) };
    /// This thread's name, looked up once (`thread_name`).
    static NAME: RefCell<Option<ThreadName>> = const { RefCell::new(None) };
    /// This thread's locals are being destroyed (its thread cache frees
    /// its areas at exit): `std::thread::current()` may no longer be
    /// callable there (it panics on older toolchains, MSRV included).
    static EXITING: Cell<bool> = const { Cell::new(false) };
}

/// A thread's name, as owner reports and traces print it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ThreadName {
    /// Named (`std::thread::Builder::name`).
    Named(Arc<str>),
    /// Not named.
    Unnamed,
    /// Not known: first asked while the thread's locals were being
    /// destroyed.
    Unknown,
}

/// The calling thread is exiting (`cache`'s thread-exit path): from now on
/// its name is not looked up.
pub(crate) fn thread_exiting() {
    // (`try_with`: another local's destructor may run after this one's.)
    let _ = EXITING.try_with(|e| e.set(true));
}

/// The calling thread's name, looked up at its first call (never while it
/// is exiting, see [`thread_exiting`], nor once its locals are gone: then
/// [`ThreadName::Unknown`], and not remembered).
pub(crate) fn thread_name() -> ThreadName {
    if EXITING.try_with(Cell::get).unwrap_or(true) {
        return NAME
            .try_with(|n| n.borrow().clone())
            .ok()
            .flatten()
            .unwrap_or(ThreadName::Unknown);
    }
    NAME.try_with(|n| {
        n.borrow_mut()
            .get_or_insert_with(|| match std::thread::current().name() {
                Some(name) => ThreadName::Named(Arc::from(name)),
                None => ThreadName::Unnamed,
            })
            .clone()
    })
    .unwrap_or(ThreadName::Unknown)
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

/// Run `f` with every per-CPU allocation made on this thread in lifetime
/// class `class` (scopes nest; the outer class is restored afterwards, also
/// when `f` panics).
pub fn with_lifetime<R>(class: Lifetime, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u64>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPE.with(|s| s.replace(Some(class.0))));
    f()
}

/// Is a lifetime scope active on this thread?
#[inline]
pub(crate) fn in_scope() -> bool {
    SCOPE.with(Cell::get).is_some()
}

/// This thread's number: 1, 2, ... in the order threads first asked (the
/// task class of its objects, and its name in owner reports).
pub(crate) fn thread_number() -> u64 {
    THREAD.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

/// The class of an allocation made now on this thread, from the source
/// location `site` (the caller of the public allocating call: see the module
/// docs).
pub(crate) fn current_class(site: &'static Location<'static>) -> ClassHint {
    let class = match SCOPE.with(Cell::get) {
        Some(id) => ClassHint::lifetime(id),
        None => ClassHint::task(thread_number()),
    };
    class.at_site(site_id(site))
}

/// A call site's id for the core's predictions: the address of its
/// `Location`, which is static, so stable, and never 0 (the core's
/// "unknown"). Two source locations never share one; the compiler may emit
/// one location more than once (in each monomorphisation of a generic
/// caller), which then learns under each id apart.
fn site_id(loc: &'static Location<'static>) -> u64 {
    ptr::from_ref(loc) as usize as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_thread<T: Send + 'static>(name: Option<&str>, f: fn() -> T) -> T {
        let mut b = std::thread::Builder::new();
        if let Some(n) = name {
            b = b.name(n.into());
        }
        b.spawn(f).unwrap().join().unwrap()
    }

    #[test]
    fn a_thread_is_named_once_and_never_looked_up_while_exiting() {
        let named = on_thread(Some("worker 1"), thread_name);
        assert_eq!(named, ThreadName::Named(Arc::from("worker 1")));
        assert_eq!(on_thread(None, thread_name), ThreadName::Unnamed);
        // First asked on its way out: unknown.
        let exiting = on_thread(Some("late"), || {
            thread_exiting();
            thread_name()
        });
        assert_eq!(exiting, ThreadName::Unknown);
        // Asked before: the name it had.
        let known = on_thread(Some("early"), || {
            let before = thread_name();
            thread_exiting();
            (before, thread_name())
        });
        assert_eq!(known.0, known.1);
        assert_eq!(known.1, ThreadName::Named(Arc::from("early")));
    }
}
