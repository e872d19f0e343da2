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
//! [`WORKER`] (which worker new allocators join) is swapped, never locked.
//! An allocator's `Inner::state` comes before [`Worker::state`] (a kick
//! queues the allocator with its state held). The worker thread holds its
//! own state only to take the next allocator off the queue and to let go of
//! it, never while it takes an allocator's locks.
//!
//! # Protocol, per allocator (`Inner`)
//!
//! - A kick (`Inner::kick`, the kernel's `pcpu_schedule_balance_work`) sets
//!   `State::kicked` and queues the allocator's id, unless `kicked` was set
//!   already; a run clears `kicked` when it starts, so work scheduled during
//!   a run queues the allocator again and is never lost.
//! - The worker takes an id off the queue and a reference to the allocator,
//!   and records it as the one it is serving. It starts a run if work is
//!   pending; the run returns at once, once it holds `alloc_mutex` and the
//!   state lock, if the allocator is being dropped (`State::stop`). After
//!   the run it drops its reference, then clears `serving`.
//! - Dropping the allocator's last handle ([`Balancer`]) sets `stop`, leaves
//!   the worker, and waits while the worker is serving it (the last one to
//!   leave stops the thread and joins it instead). Once the drop returns no
//!   run is in progress on that allocator, none will start, and the worker
//!   holds no reference to it: its memory is unmapped by the dropping
//!   thread, before the drop returns, as when it had a thread of its own.
//!
//! A `fork()`ed child has none of the parent's threads: its allocators queue
//! nothing and their drops touch neither the worker nor its locks; a child
//! that builds an allocator with background balancing starts a worker of its
//! own (the slot, holding the parent's, is swapped without a lock). A panic
//! in one allocator's run (an internal bug, which poisons that allocator)
//! does not end the worker.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

use crate::error::Error;
use crate::inner::Inner;
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{Arc, Condvar, Mutex};
use crate::sys::fork::process_tag;

const POISONED: &str = "pcpu: balance worker state poisoned by an internal panic";

/// The shared balance thread's queue and the allocators it serves.
#[derive(Debug)]
pub(crate) struct Worker {
    state: Mutex<WorkerState>,
    /// Wakes the thread (paired with `state`).
    wake: Condvar,
    /// Signalled when the thread lets go of an allocator (paired with
    /// `state`).
    served: Condvar,
    /// The process whose thread this is, as `process_tag` names it: a
    /// `fork()`ed child has none (and does not join it). Under loom, where
    /// no worker is shared, nothing reads it.
    #[cfg_attr(loom, allow(dead_code))]
    process: u64,
}

/// The bookkeeping behind [`Worker::state`].
///
/// # Invariants
/// - Every allocator in `allocators` has `background_balance` on and has
///   not finished leaving (its `Balancer` drop sets `State::stop`, then
///   removes it here); `stop` is unset while `allocators` is non-empty.
/// - `serving` is the id of the allocator the thread holds a reference to
///   (a run in progress, or about to start or to end), if any: while it is
///   set that allocator's memory cannot be unmapped, so a leaving
///   allocator waits for it to clear.
/// - Every id in `queue` was queued by a kick; an id may appear twice (a
///   kick after an explicit run cleared `kicked`) or belong to an allocator
///   that left since: the thread skips what has nothing pending.
#[derive(Debug, Default)]
struct WorkerState {
    /// The allocators served, by id.
    allocators: HashMap<u64, Arc<Inner>>,
    /// Allocators whose balance work was scheduled, oldest first.
    queue: VecDeque<u64>,
    /// The allocator the thread holds a reference to.
    serving: Option<u64>,
    /// The last allocator left: the thread exits.
    stop: bool,
    /// The thread, joined by whoever stops it.
    thread: Option<JoinHandle<()>>,
}

/// The worker new allocators join: this process's, while it has
/// allocators to serve. Swapped without a lock, so that a `fork()`ed child
/// (whose slot may hold the parent's worker) never waits for a lock that a
/// parent thread held at the fork. Under loom there is none: every
/// allocator starts a worker of its own (loom drops its per-execution
/// statics when the model's main thread returns, while another thread's
/// thread-local destructor may still drop an allocator), so the models
/// check the protocol with one allocator per worker and
/// `tests/shared_worker.rs` the sharing.
#[cfg(not(loom))]
static WORKER: arc_swap::ArcSwapOption<Worker> = arc_swap::ArcSwapOption::const_empty();

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
        #[cfg(not(loom))]
        loop {
            let current = WORKER.load_full();
            if let Some(w) = current.as_ref().filter(|w| w.process == process_tag()) {
                let mut ws = w.state.lock().expect(POISONED);
                if !ws.stop {
                    ws.allocators.insert(inner.id, Arc::clone(inner));
                    return Ok(Arc::clone(w));
                }
            }
            // None yet, a stopping one, or the parent's (in a `fork()`ed
            // child): start a new one and install it, unless another thread
            // installed one first (then stop ours and try again). Started
            // before it is installed, so that no allocator ever joins a
            // worker without a thread.
            let w = Worker::new(inner);
            Worker::spawn(&w)?;
            let before = WORKER.compare_and_swap(&current, Some(Arc::clone(&w)));
            if same(&before, &current) {
                return Ok(w);
            }
            Worker::leave(&w, inner.id);
        }
        #[cfg(loom)]
        {
            let w = Worker::new(inner);
            Worker::spawn(&w)?;
            Ok(w)
        }
    }

    /// A worker serving `inner` alone, without its thread yet.
    fn new(inner: &Arc<Inner>) -> Arc<Worker> {
        let mut ws = WorkerState::default();
        ws.allocators.insert(inner.id, Arc::clone(inner));
        Arc::new(Worker {
            state: Mutex::new(ws),
            wake: Condvar::new(),
            served: Condvar::new(),
            process: process_tag(),
        })
    }

    /// Start `w`'s thread.
    fn spawn(w: &Arc<Worker>) -> Result<(), Error> {
        let for_thread = Arc::clone(w);
        let thread = thread::Builder::new()
            .name("pcpu-balance".into())
            .spawn(move || {
                ON_WORKER.with(|on| on.set(true));
                worker_thread(&for_thread);
            })
            .map_err(Error::Spawn)?;
        w.state.lock().expect(POISONED).thread = Some(thread);
        Ok(())
    }

    /// `id` is dropped: stop serving it, and wait until the thread holds no
    /// reference to it (so that its memory is unmapped by the caller, before
    /// the drop returns). Stops and joins the thread if `id` was the last
    /// allocator served.
    fn leave(this: &Arc<Worker>, id: u64) {
        let thread = {
            let mut ws = this.state.lock().expect(POISONED);
            ws.allocators.remove(&id);
            if ws.allocators.is_empty() {
                ws.stop = true;
                this.wake.notify_all();
                ws.thread.take()
            } else {
                // Never wait for ourselves (cannot happen by construction:
                // the thread holds no allocator handle; kept as a guard).
                while ws.serving == Some(id) && !on_worker() {
                    ws = this.served.wait(ws).expect(POISONED);
                }
                None
            }
        };
        #[cfg(not(loom))]
        if thread.is_some() {
            let _ = WORKER.compare_and_swap(&Some(Arc::clone(this)), None);
        }
        // Joining waits for a run in progress, whichever allocator's.
        if let Some(t) = thread.filter(|_| !on_worker()) {
            let _ = t.join();
        }
    }
}

/// Do `a` and `b` hold the same worker (or both none)?
#[cfg(not(loom))]
fn same(a: &Option<Arc<Worker>>, b: &Option<Arc<Worker>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
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
        ws.serving = Some(id);
        drop(ws);
        // A panic of one allocator's run (an internal bug: its state lock is
        // then poisoned, and every later call on it panics) must not end
        // the balancing of the others.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_once(&inner)));
        if run.is_err() {
            // Whoever waits for the run to end (`wait_idle`) finds the
            // allocator poisoned.
            inner.idle.notify_all();
        }
        // Never the last reference: the allocator's drop waits for
        // `serving` to clear before it lets go of its own.
        drop(inner);
        ws = w.state.lock().expect(POISONED);
        ws.serving = None;
        w.served.notify_all();
    }
}

/// One balance run on `inner`, if work is pending (the run itself returns
/// at once if the allocator is being dropped).
fn run_once(inner: &Inner) {
    {
        let mut st = inner.state();
        if !st.core.balance_pending() {
            st.kicked = false;
            return;
        }
    }
    // Threads give their cached areas back at their next operation, so that
    // what they hold can be reclaimed by a later run.
    crate::cache::move_epoch(inner);
    inner.balance_run();
}

/// An allocator's membership of the worker (`State::worker`): taken when
/// it is built with background balancing, left when its last handle is
/// dropped.
#[derive(Debug)]
pub(crate) struct Balancer {
    inner: Arc<Inner>,
}

impl Balancer {
    /// Join (or start) the worker for `inner`.
    pub(crate) fn start(inner: Arc<Inner>) -> Result<Balancer, Error> {
        let worker = Worker::join(&inner)?;
        {
            let mut st = inner.state();
            st.worker = Some(worker);
            // Work the core scheduled before there was a worker to tell.
            inner.kick(&mut st);
        }
        Ok(Balancer { inner })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.inner.in_forked_child() {
            // A `fork()`ed child: the worker and its thread, and any lock
            // held at the fork, are the parent's (the worker joined in the
            // process that built the allocator). The worker's reference
            // keeps the chunks mapped.
            return;
        }
        // Even if a panic poisoned the allocator: it must still leave. From
        // here on kicks queue nothing, and the worker starts no run on it.
        let worker = {
            let mut st = self.inner.state_for_drop();
            st.stop = true;
            st.worker.take()
        };
        // Waits for a run in progress on this allocator.
        if let Some(w) = worker {
            Worker::leave(&w, self.inner.id);
        }
    }
}
