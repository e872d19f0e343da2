//! A program's own allocations, traced by the userspace allocator
//! (`pcpu::Builder::trace_dir`), read by the `pcpu` command as a kernel
//! capture: replayed exactly under the policy that made it, compared
//! across policies, and who pins its pages named by source line.

use std::path::Path;
use std::process::{Command, Output};

use pcpu::{PerCpuAllocator, Policy, RawPerCpu};

fn pcpu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pcpu"))
        .args(args)
        .output()
        .expect("run pcpu")
}

/// A counter and a larger block per connection, nine of ten closed; marks
/// B (all open) and C (after the balance work). Returns the line of the
/// counters' allocation.
fn workload(dir: &Path, policy: Policy) -> u32 {
    let a = PerCpuAllocator::builder()
        .policy(policy)
        .unit_size(64 << 10)
        .background_balance(false)
        .thread_cache(0)
        .trace_dir(dir)
        .build()
        .unwrap();
    let mut conns: Vec<(RawPerCpu, RawPerCpu)> = Vec::new();
    let line = line!() + 2;
    for _ in 0..2000 {
        let counter = a.alloc_raw(8, 8).unwrap();
        conns.push((counter, a.alloc_raw(128, 8).unwrap()));
    }
    a.mark("B").unwrap();
    for (i, (c, s)) in conns.into_iter().enumerate() {
        if i % 10 != 0 {
            a.free_raw(c).unwrap();
            a.free_raw(s).unwrap();
        }
    }
    a.settle();
    a.mark("C").unwrap();
    line
}

#[test]
fn a_traced_program_is_a_capture() {
    let dir = std::env::temp_dir().join(format!("pcpu-cli-utrace-{}", std::process::id()));
    let line = workload(&dir, Policy::pcpu());
    let d = dir.to_str().unwrap();

    let o = pcpu(&["replay", d, "--policy", "pcpu", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["placement_agreement"], 1.0);
    assert_eq!(r["balance"], "recorded");
    for p in r["phases"].as_array().unwrap() {
        assert_eq!(p["percpu_kb"], p["kernel_percpu_kb"], "{p}");
    }
    assert_eq!(r["populated_pages"], r["kernel_populated_pages"]);

    let o = pcpu(&["compare", d]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("linux-5.14") && text.contains("pcpu"),
        "{text}"
    );

    let o = pcpu(&["pins", d, "--at", "C"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let site = format!("userspace_trace.rs:{line}:");
    assert!(text.contains(&site), "{site} not in\n{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
