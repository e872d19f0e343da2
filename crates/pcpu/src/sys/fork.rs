//! Which process this is, as `fork()` sees it: a tag that differs between a
//! process and every child it forks, so that an allocator (and the balance
//! worker) can tell that it runs in a child, which has none of the parent's
//! threads.
//!
//! The tag is a fork generation: 0 in the process that first asked, one
//! more in each child forked after that (a `pthread_atfork` child handler).
//! Unlike the pid it also tells a child that got its parent's pid apart: a
//! pid reused by a descendant after the parent exited (double-forking
//! daemons), or pid 1 forking into a new PID namespace. Reading it is one
//! atomic load, no system call. Should the handler fail to register (only
//! `ENOMEM`), the tag falls back to the pid.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Forks seen by this process's line of ancestors since registration.
static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();
/// Set if `pthread_atfork` failed: the tag is then the pid.
static BY_PID: AtomicU64 = AtomicU64::new(0);

/// The child handler: runs in the child, after `fork()`, on the one thread
/// the child has. One atomic add, which is async-signal-safe, as a handler
/// called in the child of a multi-threaded process must be.
extern "C" fn forked_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's tag: equal in a process at any two times, different in a
/// child forked in between.
pub(crate) fn process_tag() -> u64 {
    REGISTER.call_once(|| {
        // SAFETY: `pthread_atfork` only records the handlers, to be called
        // around later `fork()`s; `forked_child` has the `extern "C" fn()`
        // signature it expects, lives for the whole program, and does
        // nothing but an atomic add on a static (async-signal-safe).
        let r = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        if r != 0 {
            BY_PID.store(1, Ordering::Relaxed);
        }
    });
    if BY_PID.load(Ordering::Relaxed) != 0 {
        // Disjoint from generations (which never reach 2^63).
        return (1 << 63) | u64::from(std::process::id());
    }
    GENERATION.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::process_tag;
    use crate::sys::testutil;

    /// In a child process of its own: while a `fork()` child lives, every
    /// private page of the forking process is shared with it, and other
    /// tests' counts of pages backed by memory of their own would see none.
    #[test]
    fn the_tag_is_stable_and_a_child_has_another() {
        let test = testutil::test_name(module_path!(), "the_tag_is_stable_and_a_child_has_another");
        testutil::in_child(&test, &[], tag_in_child);
    }

    fn tag_in_child() {
        let tag = process_tag();
        assert_eq!(process_tag(), tag);
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: `fds` is a valid array of two descriptors to fill.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        // SAFETY: the child only computes its tag, writes it to the pipe and
        // leaves with `_exit`; `process_tag`'s `Once` completed above.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let child = process_tag().to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to our pipe, then
            // ends the child without the parent's exit handlers.
            unsafe {
                libc::write(w, child.as_ptr().cast(), child.len());
                libc::_exit(0);
            }
        }
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer of 8; waits for
        // our own child.
        let n = unsafe {
            let n = libc::read(r, buf.as_mut_ptr().cast(), buf.len());
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(r);
            libc::close(w);
            n
        };
        assert_eq!(n, 8);
        assert_ne!(u64::from_ne_bytes(buf), tag, "the child's tag");
        assert_eq!(process_tag(), tag, "the parent's is unchanged");
    }
}
