//! The synchronisation primitives behind the allocator's shared state
//! (`inner`, `balance`, `worker`, `cache`, `allocator`): std's, or, when built with
//! `RUSTFLAGS="--cfg loom"`, loom's models of them, so that `tests/loom.rs`
//! can explore every interleaving of the lock protocol (the two locks, the
//! balance worker's wake-ups and stop, page operations with the bookkeeping
//! lock dropped, thread caches).
//!
//! Only what the protocol is made of goes through here. The typed handles'
//! atomics are the user's (`PerCpu<AtomicU64>`), the mappings' own leaf lock
//! (`sys::mmap`) is never held across a switch point, and the lifetime-scope
//! thread-locals (`hint`) are plain `Cell`s: those stay std's. Lock results
//! (`PoisonError`, `TryLockError`) are std's types under loom too.
//!
//! Limits of the loom build: loom runs all its threads on one OS thread, so
//! the std thread-locals left (`hint`'s task class and lifetime scope,
//! `owners`' last-named allocator, `trace`'s exiting flag, the
//! fault-injection knobs) are shared by
//! every loom thread (under `pcpu`'s class placement all threads are one
//! task; no loom model tracks owners); and loom's `wait_timeout`
//! never times out, so `wait_idle` waits for a notification.

#[cfg(not(loom))]
pub(crate) use std::sync::{atomic::AtomicU64, Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread;

#[cfg(loom)]
pub(crate) use loom::sync::{atomic::AtomicU64, Arc, Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread;

/// A thread-local with a constant initializer: std's `const` form, or under
/// loom (whose threads share one OS thread) loom's, one value per loom
/// thread.
macro_rules! const_thread_local {
    ($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;) => {
        #[cfg(not(loom))]
        std::thread_local! {
            $(#[$attr])* static $name: $t = const { $init };
        }
        #[cfg(loom)]
        loom::thread_local! {
            $(#[$attr])* static $name: $t = $init;
        }
    };
}
pub(crate) use const_thread_local;

/// A lock that guards no data (`pcpu_alloc_mutex`), with a `try_lock` that
/// never blocks: std's `Mutex<()>` (poisoning ignored: there is no data to
/// leave inconsistent).
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct SerialMutex(Mutex<()>);

/// Holding a [`SerialMutex`]; unlocks on drop.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct SerialGuard<'a> {
    _held: MutexGuard<'a, ()>,
}

#[cfg(not(loom))]
impl SerialMutex {
    pub(crate) fn lock(&self) -> SerialGuard<'_> {
        SerialGuard {
            _held: self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    pub(crate) fn try_lock(&self) -> Option<SerialGuard<'_>> {
        match self.0.try_lock() {
            Ok(g) => Some(SerialGuard { _held: g }),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(SerialGuard {
                _held: p.into_inner(),
            }),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

/// Under loom, a flag under a mutex and a condition variable: loom's own
/// `Mutex::try_lock` can block the trying thread when another thread takes
/// the lock at the same step (tokio-rs/loom#376), a deadlock std never has.
/// The inner mutex is only ever held for a moment, never while waiting for
/// anything else, so `try_lock` cannot block for long here either.
#[cfg(loom)]
#[derive(Debug, Default)]
pub(crate) struct SerialMutex {
    held: Mutex<bool>,
    freed: Condvar,
}

/// Holding a [`SerialMutex`]; unlocks on drop.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct SerialGuard<'a>(&'a SerialMutex);

#[cfg(loom)]
impl SerialMutex {
    pub(crate) fn lock(&self) -> SerialGuard<'_> {
        let mut held = self.held.lock().unwrap();
        while *held {
            held = self.freed.wait(held).unwrap();
        }
        *held = true;
        SerialGuard(self)
    }

    pub(crate) fn try_lock(&self) -> Option<SerialGuard<'_>> {
        let mut held = self.held.lock().unwrap();
        if *held {
            return None;
        }
        *held = true;
        Some(SerialGuard(self))
    }
}

#[cfg(loom)]
impl Drop for SerialGuard<'_> {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap() = false;
        self.0.freed.notify_one();
    }
}
