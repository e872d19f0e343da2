//! Helpers for tests that must run in a child process (a fault that kills the
//! process, a lowered resource limit, a glibc tunable read at start-up).
//!
//! The pattern: one `#[test]` function plays both roles. In the parent it
//! re-executes the current test binary with `--exact <its own name>` and an
//! environment variable naming the test; in the child (`is_child` is true) it
//! does the dangerous part. The child prints [`CHILD_READY`] before the
//! dangerous part so that the parent can tell "the child ran and then died as
//! expected" from "the filter matched no test and the harness exited 0".
//!
//! Also: pinning the calling thread to a CPU ([`Pin`], [`allowed_cpus`]).

use std::process::{Command, Output};

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// Environment variable that carries the name of the test to run as child.
const CHILD_ENV: &str = "PCPU_TEST_CHILD";

/// The environment that turns glibc's rseq registration off (tunables are
/// read at process start, hence a child).
pub(crate) const NO_RSEQ: (&str, &str) = ("GLIBC_TUNABLES", "glibc.pthread.rseq=0");

/// Printed by a child (on stderr) right before the part under test.
pub(crate) const CHILD_READY: &str = "PCPU-CHILD-READY";

/// Printed by a child (on stderr) when it reached its end without dying.
pub(crate) const CHILD_DONE: &str = "PCPU-CHILD-DONE";

/// The harness name of test `name` declared in module `module`
/// (`module_path!()`), i.e. the module path without the crate name.
pub(crate) fn test_name(module: &str, name: &str) -> String {
    let path = module.split_once("::").map_or("", |(_, rest)| rest);
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}::{name}")
    }
}

/// True when this process is the re-executed child for `test`.
pub(crate) fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).as_deref() == Ok(test)
}

/// Marks the start of the child's part under test.
pub(crate) fn child_ready() {
    eprintln!("{CHILD_READY}");
}

/// Marks the successful end of the child's part under test.
pub(crate) fn child_done() {
    eprintln!("{CHILD_DONE}");
}

/// Re-executes the test binary running only `test`, with `env` added.
pub(crate) fn run_child(test: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .envs(env.iter().copied())
        .output()
        .expect("spawn child test process")
}

/// The whole pattern for a child that must pass: in the parent, re-executes
/// the binary for `test` with `env` added and asserts that the child ran to
/// its end; in that child, runs `body` between [`child_ready`] and
/// [`child_done`].
pub(crate) fn in_child(test: &str, env: &[(&str, &str)], body: impl FnOnce()) {
    if is_child(test) {
        child_ready();
        body();
        child_done();
    } else {
        assert_child_passed(&run_child(test, env));
    }
}

/// Child's stderr as text (for assertions and failure messages).
pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Panics unless the child printed `CHILD_READY`.
pub(crate) fn assert_child_started(out: &Output) {
    let err = stderr(out);
    assert!(
        err.contains(CHILD_READY),
        "child never reached its test body (status {:?}); stderr:\n{err}\nstdout:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Panics unless the child ran to its end and exited successfully.
pub(crate) fn assert_child_passed(out: &Output) {
    assert_child_started(out);
    let err = stderr(out);
    assert!(
        out.status.success() && err.contains(CHILD_DONE),
        "child failed (status {:?}); stderr:\n{err}",
        out.status
    );
}

/// Panics unless the child was killed by `signal` after starting.
pub(crate) fn assert_child_killed_by(out: &Output, signal: i32) {
    use std::os::unix::process::ExitStatusExt;
    assert_child_started(out);
    let err = stderr(out);
    assert!(
        !err.contains(CHILD_DONE),
        "child survived the access; stderr:\n{err}"
    );
    assert_eq!(
        out.status.signal(),
        Some(signal),
        "child status {:?}; stderr:\n{err}",
        out.status
    );
}

/// Call first thing in a child that expects to crash: no core dump.
///
/// Only ever called in a child process, never in the shared test process.
pub(crate) fn child_disable_core_dumps() {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let _ = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
}

/// CPUs the calling thread may run on.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    let set = sched_getaffinity(None).unwrap();
    (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

/// Pins the calling thread to one CPU; restores the old mask on drop.
pub(crate) struct Pin {
    saved: CpuSet,
}

impl Pin {
    /// Pins the calling thread to `cpu`.
    pub(crate) fn to(cpu: usize) -> Pin {
        let saved = sched_getaffinity(None).unwrap();
        let mut one = CpuSet::new();
        one.set(cpu);
        sched_setaffinity(None, &one).unwrap();
        Pin { saved }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        sched_setaffinity(None, &self.saved).unwrap();
    }
}
