//! Per-thread caches of freed small areas ("magazines"): the allocation and
//! free fast path of typed handles.
//!
//! Dropping a [`PerCpu<T>`](crate::PerCpu) of at most [`MAX_CACHED_SIZE`]
//! bytes does not free its area: the area, still allocated in the core, goes
//! to the dropping thread's cache, keyed by allocator and by the request
//! `(size, align)`. The next request of that size and alignment on the thread
//! takes it back without locking, so an alloc+free pair costs no lock, no
//! atomic read-modify-write and no bookkeeping (the `Arc` of the allocator
//! travels with the cached area). A miss allocates [`refill_len`]
//! neighbouring areas under one lock and caches all but the first (under
//! class placement, from the thread's second miss of the request on:
//! [`first_miss`]), so that
//! one thread's hot area is at least 128 bytes from another's: creating an
//! object writes its copy in every unit, and neighbours in one cache line
//! would make two threads' creations contend for it.
//!
//! # Bounds and flushes
//! - At most `thread_cache` areas per class
//!   ([`Builder::thread_cache`](crate::Builder::thread_cache)); a push onto
//!   a full class frees the older half in one lock acquisition.
//! - At most [`MAX_CLASSES`] classes (allocator, size, alignment) per
//!   thread; the least recently added one is freed to make room.
//! - Everything is freed when the thread exits (the thread-local's
//!   destructor; in a `fork()`ed child, only if the allocator's lock is
//!   free, since a parent thread may have held it at the fork), and a thread's cache of an allocator is freed at its next
//!   allocation or drop of that allocator's objects once the allocator's
//!   *cache epoch* moved: every background balance run,
//!   [`PerCpuAllocator::trim_thread_caches`](crate::PerCpuAllocator::trim_thread_caches),
//!   `balance_now` and `settle` move it (the last three also flush the
//!   caller's own cache at once).
//!
//! A cached area is a live allocation without an owner: its pages stay
//! populated (the core never depopulates allocated pages) and its chunk
//! mapped, and the allocator stays alive (the entry holds a handle, which
//! moves between the entry and the area without touching a reference
//! count). The memory so held is bounded by the limits above. When a
//! thread drops an allocator's last other handle (a clone, an object freed
//! rather than cached) while its own entries hold the rest, it frees them
//! at once. When a thread's entries become the last handles otherwise (the
//! user dropped every clone and object on other threads), the thread frees
//! them at its next cold cache operation (a new class, a class whose
//! allocator's epoch moved, a flush), so a long-lived thread does not keep a
//! dropped allocator alive (mapped, and on the balance worker); entries
//! spread over several threads go when those threads exit or evict them.
//! Under class placement, requests made inside a lifetime scope
//! ([`with_lifetime`](crate::with_lifetime)) bypass the cache, and their
//! areas are freed, not cached, when dropped (wherever that happens), so
//! that their class placement holds: a cached area would give the class's
//! place to an object of another lifetime, which would pin the class's pages.
//!
//! This module has no `unsafe`: it only moves owned values around.

mod stack;

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use pcpu_core::ChunkId;

use crate::inner::Inner;
use crate::raw::Area;
use crate::PerCpuAllocator;
use stack::Stack;

/// Largest request (bytes) whose areas are cached.
pub(crate) const MAX_CACHED_SIZE: usize = 256;
/// Classes (allocator, size, alignment) cached per thread.
pub(crate) const MAX_CLASSES: usize = 16;

/// A freed area kept allocated for reuse: `[offset, offset + size)` of every
/// unit of `chunk` is allocated in `alloc`'s core and referenced by nobody;
/// unit `u`'s copy is at `base + u × stride` (the fields of a
/// [`raw::Area`](crate::raw::Area), laid out alike: see there).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Entry {
    pub(crate) alloc: PerCpuAllocator,
    pub(crate) base: NonNull<u8>,
    pub(crate) stride: u32,
    pub(crate) offset: u32,
    pub(crate) chunk: ChunkId,
    pub(crate) units: u16,
}

/// Cached areas of one request `(size, align)` of one allocator.
///
/// # Invariants
/// Every entry's `alloc` has the identity `id`; `entries` has at least
/// one slot; every entry was cached while the allocator's cache epoch was
/// `epoch` (a class whose `epoch` is behind is flushed before use).
#[derive(Debug)]
struct Class {
    id: u64,
    size: usize,
    align: usize,
    epoch: u64,
    entries: Stack,
}

/// A thread's cache: at most [`MAX_CLASSES`] classes, oldest first, with
/// distinct `(id, size, align)` keys.
#[derive(Debug)]
struct ThreadCache {
    classes: Vec<Class>,
}

impl ThreadCache {
    /// What a cold cache operation on allocator `id` (now at `epoch`) gives
    /// back, into `out`: the classes of `id` cached before its epoch moved
    /// ([`Self::take_stale`]), and the allocators only this cache still
    /// holds ([`Self::take_orphaned`], which may remove classes).
    fn take_cold(&mut self, id: u64, epoch: u64, out: &mut Option<Vec<Entry>>) {
        self.take_stale(id, epoch, out);
        self.take_orphaned(out);
    }

    /// Areas of allocator `id` in this cache.
    fn count(&self, id: u64) -> usize {
        self.classes
            .iter()
            .filter(|k| k.id == id)
            .map(|k| k.entries.len())
            .sum()
    }

    /// The entries of allocator `id` cached before its epoch moved to
    /// `epoch` (the classes whose epoch is behind), into `out`; those classes
    /// are current again.
    fn take_stale(&mut self, id: u64, epoch: u64, out: &mut Option<Vec<Entry>>) {
        for k in self
            .classes
            .iter_mut()
            .filter(|k| k.id == id && k.epoch != epoch)
        {
            k.entries.take_all(out.get_or_insert_with(Vec::new));
            k.epoch = epoch;
        }
    }

    /// The entries of allocators whose only handles left are this
    /// thread's entries (their users dropped every clone and object), into
    /// `out`; their classes are removed. Off the fast path: it reads
    /// reference counts.
    fn take_orphaned(&mut self, out: &mut Option<Vec<Entry>>) {
        let mut orphaned: Vec<u64> = Vec::new();
        for k in &self.classes {
            let Some(e) = k.entries.first() else { continue };
            if orphaned.contains(&k.id) {
                continue;
            }
            if e.alloc.handles() == self.count(k.id) {
                orphaned.push(k.id);
            }
        }
        if orphaned.is_empty() {
            return;
        }
        self.classes.retain_mut(|k| {
            let gone = orphaned.contains(&k.id);
            if gone {
                k.entries.take_all(out.get_or_insert_with(Vec::new));
            }
            !gone
        });
    }

    /// Every entry of allocator `id`, leaving its classes empty.
    fn take_all(&mut self, id: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        for c in self.classes.iter_mut().filter(|c| c.id == id) {
            c.entries.take_all(&mut out);
        }
        out
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        // Thread exit: give every area back (in a forked child, only if
        // no lock is in the way: `Inner::free_many_at_exit`).
        crate::hint::thread_exiting();
        let mut all = Vec::new();
        for c in &mut self.classes {
            c.entries.take_all(&mut all);
        }
        release_with(all, |inner, areas| inner.free_many_at_exit(areas));
    }
}

crate::sync::const_thread_local! {
    static CACHE: RefCell<ThreadCache> = RefCell::new(ThreadCache {
        classes: Vec::new(),
    });
}

/// Free `entries` in their allocators: one lock acquisition per run of
/// entries of one allocator. Their handles are dropped afterwards (dropping
/// an allocator's last one takes it off the balance worker and unmaps its
/// memory).
fn release(entries: Vec<Entry>) {
    release_with(entries, |inner, areas| inner.free_many(areas));
}

/// [`release`], freeing the areas of each run of entries of one allocator
/// with `free`.
fn release_with(
    entries: Vec<Entry>,
    free: impl Fn(&Inner, &mut dyn Iterator<Item = (ChunkId, usize)>),
) {
    let mut rest = entries.as_slice();
    while let Some(first) = rest.first() {
        let id = first.alloc.inner().id;
        let n = rest.iter().take_while(|e| e.alloc.inner().id == id).count();
        let (run, tail) = rest.split_at(n);
        free(
            first.alloc.inner(),
            &mut run.iter().map(|e| (e.chunk, e.offset as usize)),
        );
        rest = tail;
    }
}

/// Is the cache worth asking for a request of `size` bytes? Not for large
/// ones (nor for a hinted one: [`hinted`], which the caller reads once).
#[inline]
pub(crate) fn serves(size: usize) -> bool {
    size <= MAX_CACHED_SIZE
}

/// Does an allocation of `alloc` made now follow a lifetime scope? Only
/// with class placement (the Linux policies ignore hints): its objects then
/// get the class's own placement, which neither the cache's areas nor a
/// recycled one would respect.
#[inline]
pub(crate) fn hinted(alloc: &PerCpuAllocator) -> bool {
    alloc.inner().config.policy.class_placement && crate::hint::in_scope()
}

/// Bytes of neighbouring areas a cache miss allocates at once: a thread's
/// hot area then sits at least this far from another thread's, so their
/// copies never share a 64-byte cache line (creating an object writes its
/// copy in every unit).
const REFILL_BYTES: usize = 128;

/// Areas to allocate on a miss for a request of `size` bytes: enough to
/// cover [`REFILL_BYTES`], at most half the class capacity, at least 1.
#[inline]
pub(crate) fn refill_len(alloc: &PerCpuAllocator, size: usize) -> usize {
    let cap = alloc.inner().config.thread_cache;
    (REFILL_BYTES / size.next_multiple_of(4))
        .min(cap / 2)
        .max(1)
}

/// May an area of this size be cached when its owner is done with it?
#[inline]
pub(crate) fn keeps(size: usize) -> bool {
    size <= MAX_CACHED_SIZE
}

/// A cached area of `alloc` for `(size, align)`, if this thread has one.
#[inline]
pub(crate) fn take(alloc: &PerCpuAllocator, size: usize, align: usize) -> Option<Entry> {
    let inner = alloc.inner();
    let (id, epoch) = (inner.id, inner.cache_epoch.load(Ordering::Relaxed));
    // Filled only off the fast path (areas cached before the epoch moved).
    let mut stale: Option<Vec<Entry>> = None;
    let found = CACHE
        .try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            let class = c
                .classes
                .iter_mut()
                .find(|k| k.size == size && k.align == align && k.id == id)?;
            if class.epoch == epoch {
                return class.entries.pop();
            }
            c.take_cold(id, epoch, &mut stale);
            None
        })
        .ok()
        .flatten();
    if let Some(v) = stale {
        release(v);
    }
    found
}

/// A miss of `alloc`'s `(size, align)` on this thread: is it the first
/// (the thread has no class for it yet)? The class is then added, empty, so
/// that the next miss refills. With the cache off, every miss is a first.
/// Class placement asks this to allocate one area at a first miss
/// (`Area::new`): a thread that allocates one object is then one allocation
/// to the core's predictions, not a batch.
pub(crate) fn first_miss(alloc: &PerCpuAllocator, size: usize, align: usize) -> bool {
    let inner = alloc.inner();
    let (id, cap) = (inner.id, inner.config.thread_cache);
    if cap == 0 {
        return true;
    }
    let epoch = inner.cache_epoch.load(Ordering::Relaxed);
    let mut spill: Option<Vec<Entry>> = None;
    let first = CACHE
        .try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return true;
            };
            let known = c
                .classes
                .iter()
                .any(|k| k.size == size && k.align == align && k.id == id);
            if !known {
                add_class(&mut c, &mut spill, Key { id, size, align }, epoch, cap);
            }
            !known
        })
        .unwrap_or(true);
    if let Some(v) = spill {
        release(v);
    }
    first
}

/// Keep `area`, of request `(size, align)`, whose owner is gone, in this
/// thread's cache: its entry is written straight into its class's free slot
/// ([`Stack`]) and the area left without its allocator. The area is left as
/// it was (for its `Drop` to free) when the cache is off, or gone (thread
/// exit), or in use.
#[inline]
pub(crate) fn put(area: &mut Area, size: usize, align: usize) {
    let Some(alloc) = area.alloc_if_live() else {
        return;
    };
    let inner = alloc.inner();
    let (id, cap) = (inner.id, inner.config.thread_cache);
    if cap == 0 {
        return;
    }
    let epoch = inner.cache_epoch.load(Ordering::Relaxed);
    // Filled only off the fast path (stale, spilled or evicted areas).
    let mut spill: Option<Vec<Entry>> = None;
    let _ = CACHE.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        let c = &mut *c;
        let k = match c
            .classes
            .iter()
            .position(|k| k.size == size && k.align == align && k.id == id)
        {
            Some(k) if c.classes[k].epoch == epoch => k,
            Some(_) => {
                // Off the fast path; may remove classes before ours.
                c.take_cold(id, epoch, &mut spill);
                c.classes
                    .iter()
                    .position(|k| k.size == size && k.align == align && k.id == id)
                    .expect("the class of a live allocator stays")
            }
            None => add_class(c, &mut spill, Key { id, size, align }, epoch, cap),
        };
        let class = &mut c.classes[k];
        let (len, cap) = (class.entries.len(), class.entries.cap());
        if len >= cap {
            // Full: free the older half (the bottom of the stack) at once.
            let older = len - cap / 2;
            class
                .entries
                .take_oldest(older, spill.get_or_insert_with(Vec::new));
        }
        class.entries.push_with(|| area.take_entry());
    });
    if let Some(v) = spill {
        release(v);
    }
}

/// A class's identity: allocator and request.
struct Key {
    id: u64,
    size: usize,
    align: usize,
}

/// Add class `key` with `epoch` and `cap` (evicting the least recently added
/// one into `spill` if the cache is full); its index.
#[cold]
fn add_class(
    c: &mut ThreadCache,
    spill: &mut Option<Vec<Entry>>,
    key: Key,
    epoch: u64,
    cap: usize,
) -> usize {
    let Key { id, size, align } = key;
    // Other classes of this allocator cached before the epoch moved go too,
    // and so do the classes of allocators only this cache still holds.
    c.take_cold(id, epoch, spill);
    if c.classes.len() == MAX_CLASSES {
        let mut old = c.classes.remove(0).entries;
        old.take_all(spill.get_or_insert_with(Vec::new));
    }
    c.classes.push(Class {
        id,
        size,
        align,
        epoch,
        entries: Stack::new(cap),
    });
    c.classes.len() - 1
}

/// Free this thread's cached areas of `alloc` now, and those of allocators
/// only this cache still holds.
pub(crate) fn flush(alloc: &PerCpuAllocator) {
    let id = alloc.inner().id;
    let entries = CACHE
        .try_with(|c| {
            let Ok(mut c) = c.try_borrow_mut() else {
                return Vec::new();
            };
            let mut out = c.take_all(id);
            c.classes.retain(|k| k.id != id);
            let mut orphaned = None;
            c.take_orphaned(&mut orphaned);
            out.extend(orphaned.into_iter().flatten());
            out
        })
        .unwrap_or_default();
    release(entries);
}

/// [`flush`], when `alloc` (a handle being dropped) and this thread's cached
/// areas are the allocator's only handles left: nobody can make another
/// (a handle comes only from cloning one), so the allocator would live on,
/// unused, until this thread's next cold cache operation.
/// Not in a `fork()`ed child, where dropping an allocator takes no lock (a
/// parent thread may have held one at the fork).
pub(crate) fn flush_if_only_cached(alloc: &PerCpuAllocator) {
    let handles = alloc.handles();
    // More handles than a thread can cache: no need to look (the common
    // case of a program with many live objects, which skips the lookup).
    let most = MAX_CLASSES * alloc.inner().config.thread_cache;
    if handles > 1
        && handles <= 1 + most
        && handles == 1 + cached_here(alloc)
        && !alloc.inner().in_forked_child()
    {
        flush(alloc);
    }
}

/// Areas of `alloc` cached by this thread.
pub(crate) fn cached_here(alloc: &PerCpuAllocator) -> usize {
    let id = alloc.inner().id;
    CACHE
        .try_with(|c| c.try_borrow().map_or(0, |c| c.count(id)))
        .unwrap_or(0)
}

/// Ask every thread to free its cached areas of `inner`'s allocator at its
/// next cache operation.
pub(crate) fn move_epoch(inner: &Inner) {
    inner.cache_epoch.fetch_add(1, Ordering::Relaxed);
}

/// [`move_epoch`], and free the caller's cached areas at once.
pub(crate) fn trim(alloc: &PerCpuAllocator) {
    move_epoch(alloc.inner());
    flush(alloc);
}
