//! The balance worker: one background thread (`pcpu-balance`) that runs the
//! balance work of every allocator built with background balancing, as the
//! kernel's one work item runs `pcpu_balance_workfn` on a shared workqueue.
//!
//! The worker starts with the first such allocator and exits when the last
//! one is dropped, so a process has at most one balance thread, and none
//! once its allocators are gone. Allocators whose work is scheduled wait in
//! a queue and get one balance run at a time, in turn: a run that leaves
//! work pending queues its allocator again at the back.
//!
//! # Locks
//!
//! [`WORKER`] (which worker new allocators join) before [`Worker::state`];
//! an allocator's `Inner::state` before [`Worker::state`] (a kick queues the
//! allocator with its state held). The worker thread holds its own state
//! only to take the next allocator off the queue, and never while it takes
//! an allocator's locks.
//!
//! # Protocol, per allocator (`Inner`)
//!
//! - A kick (`Inner::kick`, the kernel's `pcpu_schedule_balance_work`) sets
//!   `State::kicked` and queues the allocator's id, unless `kicked` was set
//!   already; a run clears `kicked` when it starts, so work scheduled during
//!   a run queues the allocator again and is never lost.
//! - The worker takes an id off the queue and, under the allocator's state
//!   lock, starts a run only if the allocator is not being dropped
//!   (`State::stop`) and work is pending, setting `State::worker_busy` until
//!   the run is over.
//! - Dropping the allocator's last handle ([`Balancer`]) sets `stop`, leaves
//!   the worker (the last one to leave stops it and joins the thread), and
//!   waits while `worker_busy`: once it returns, no run is in progress on
//!   that allocator and none will start.
//!
//! A `fork()`ed child has none of the parent's threads: its allocators queue
//! nothing and their drops touch neither the worker nor its locks; a child
//! that builds an allocator with background balancing gets a worker of its
//! own.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

use crate::error::Error;
use crate::inner::Inner;
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{Arc, Condvar, Mutex};

const POISONED: &str = "pcpu: balance worker state poisoned by an internal panic";

/// The shared balance thread's queue and the allocators it serves.
#[derive(Debug)]
pub(crate) struct Worker {
    state: Mutex<WorkerState>,
    /// Wakes the thread (paired with `state`).
    wake: Condvar,
    /// The process whose thread this is: a `fork()`ed child has none.
    pid: u32,
}

/// The bookkeeping behind [`Worker::state`].
///
/// # Invariants
/// - Every allocator in `allocators` has `background_balance` on, is not
///   dropped (`State::stop` unset), and `stop` is unset while it is
///   non-empty.
/// - Every id in `queue` was queued by a kick; an id may appear twice (a
///   kick after an explicit run cleared `kicked`) or belong to an allocator
///   that left since: the thread skips what has nothing pending.
#[derive(Debug, Default)]
struct WorkerState {
    /// The allocators served, by id.
    allocators: HashMap<u64, Arc<Inner>>,
    /// Allocators whose balance work was scheduled, oldest first.
    queue: VecDeque<u64>,
    /// The last allocator left: the thread exits.
    stop: bool,
    /// The thread, joined by whoever stops it.
    thread: Option<JoinHandle<()>>,
}

/// The worker new allocators join: this process's, while it has
/// allocators to serve. Under loom there is none: every allocator starts a
/// worker of its own (loom drops its per-execution statics when the model's
/// main thread returns, while another thread's thread-local destructor may
/// still drop an allocator), so the models check the protocol with one
/// allocator per worker and `tests/shared_worker.rs` the sharing.
#[cfg(not(loom))]
static WORKER: Mutex<Option<Arc<Worker>>> = Mutex::new(None);

crate::sync::const_thread_local! {
    /// Set on the worker thread. Read with `try_with`, and a constant
    /// `Cell<bool>` (no destructor) under std: a [`Balancer`] may be dropped
    /// in a thread-local destructor (a thread cache holding an allocator's
    /// last handle, at thread exit), where std does not promise
    /// `thread::current()`.
    static ON_WORKER: Cell<bool> = Cell::new(false);
}

fn on_worker() -> bool {
    ON_WORKER.try_with(Cell::get).unwrap_or(false)
}

impl Worker {
    /// Queue allocator `id`, whose balance work was just scheduled (called
    /// with its state lock held).
    pub(crate) fn schedule(&self, id: u64) {
        let mut ws = self.state.lock().expect(POISONED);
        ws.queue.push_back(id);
        self.wake.notify_one();
    }

    /// Serve `inner` from now on: join the running worker of this process,
    /// or start one.
    fn join(inner: &Arc<Inner>) -> Result<Arc<Worker>, Error> {
        let pid = std::process::id();
        #[cfg(not(loom))]
        let mut slot = WORKER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        #[cfg(not(loom))]
        if let Some(w) = slot.as_ref().filter(|w| w.pid == pid) {
            let mut ws = w.state.lock().expect(POISONED);
            debug_assert!(!ws.stop, "a stopped worker stays in the slot");
            ws.allocators.insert(inner.id, Arc::clone(inner));
            return Ok(Arc::clone(w));
        }
        let w = Arc::new(Worker {
            state: Mutex::new(WorkerState::default()),
            wake: Condvar::new(),
            pid,
        });
        let for_thread = Arc::clone(&w);
        let thread = thread::Builder::new()
            .name("pcpu-balance".into())
            .spawn(move || {
                ON_WORKER.with(|on| on.set(true));
                worker_thread(&for_thread);
            })
            .map_err(Error::Spawn)?;
        {
            let mut ws = w.state.lock().expect(POISONED);
            ws.thread = Some(thread);
            ws.allocators.insert(inner.id, Arc::clone(inner));
        }
        #[cfg(not(loom))]
        {
            *slot = Some(Arc::clone(&w));
        }
        Ok(w)
    }

    /// `id` is dropped: stop serving it; stop and join the thread if it was
    /// the last allocator served.
    fn leave(this: &Arc<Worker>, id: u64) {
        let thread = {
            #[cfg(not(loom))]
            let mut slot = WORKER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut ws = this.state.lock().expect(POISONED);
            ws.allocators.remove(&id);
            if !ws.allocators.is_empty() {
                return;
            }
            ws.stop = true;
            this.wake.notify_all();
            #[cfg(not(loom))]
            if slot.as_ref().is_some_and(|w| Arc::ptr_eq(w, this)) {
                *slot = None;
            }
            ws.thread.take()
        };
        // Never join ourselves (cannot happen by construction: the thread
        // holds no allocator handle; kept as a guard).
        if let Some(t) = thread.filter(|_| !on_worker()) {
            let _ = t.join();
        }
    }
}

/// The thread: take the next queued allocator and give it one balance run,
/// until the last allocator leaves.
fn worker_thread(w: &Worker) {
    let mut ws = w.state.lock().expect(POISONED);
    loop {
        if ws.stop {
            return;
        }
        let Some(id) = ws.queue.pop_front() else {
            ws = w.wake.wait(ws).expect(POISONED);
            continue;
        };
        let Some(inner) = ws.allocators.get(&id).cloned() else {
            continue;
        };
        drop(ws);
        run_once(&inner);
        // The last reference may be this one (the allocator left meanwhile):
        // its memory is unmapped here.
        drop(inner);
        ws = w.state.lock().expect(POISONED);
    }
}

/// One balance run on `inner`, if it is not being dropped and work is
/// pending.
fn run_once(inner: &Inner) {
    {
        let mut st = inner.state();
        if st.stop || !st.core.balance_pending() {
            st.kicked = false;
            return;
        }
        st.worker_busy = true;
    }
    // Threads give their cached areas back at their next operation, so that
    // what they hold can be reclaimed by a later run.
    crate::cache::move_epoch(inner);
    inner.balance_run();
    let mut st = inner.state();
    st.worker_busy = false;
    inner.idle.notify_all();
}

/// An allocator's membership of the worker: taken when it is built with
/// background balancing, left when its last handle is dropped.
#[derive(Debug)]
pub(crate) struct Balancer {
    inner: Arc<Inner>,
    worker: Arc<Worker>,
}

impl Balancer {
    /// Join (or start) the worker for `inner`.
    pub(crate) fn start(inner: Arc<Inner>) -> Result<Balancer, Error> {
        let worker = Worker::join(&inner)?;
        {
            let mut st = inner.state();
            st.worker = Some(Arc::clone(&worker));
            // Work the core scheduled before there was a worker to tell.
            inner.kick(&mut st);
        }
        Ok(Balancer { inner, worker })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.inner.in_forked_child() || self.worker.pid != std::process::id() {
            // A `fork()`ed child: the worker and its thread, and any lock
            // held at the fork, are the parent's. The worker's reference
            // keeps the chunks mapped.
            return;
        }
        self.inner.state().stop = true;
        Worker::leave(&self.worker, self.inner.id);
        // A run the worker started before `stop` was set.
        if !on_worker() {
            let mut st = self.inner.state();
            while st.worker_busy {
                st = self.inner.idle.wait(st).expect(POISONED);
            }
        }
        // The worker's reference went with `leave`: drop the cycle.
        let _: Option<Arc<Worker>> = self.inner.state().worker.take();
    }
}
