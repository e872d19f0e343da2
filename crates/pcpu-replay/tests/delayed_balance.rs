//! `BalanceTiming::Delayed`, and `Auto` on a trace of a real kernel
//! without balance events: the balance work runs by the kernel's rules, but
//! a while of the trace's clock after an allocation or free schedules it,
//! as a work item does; what the events in between do, it sees done.

use pcpu_core::Policy;
use pcpu_replay::*;
use pcpu_trace::{parse_dmesg, ParseOptions, Record, TraceReader};

const PCPU_BASE: u64 = 0xffff_8dc3_bbc0_0000;
/// A dynamic chunk the trace creates: above the first chunk's four units.
const CHUNK: u64 = PCPU_BASE + (4 << 20);

fn line(us: u64, event: &str) -> String {
    format!("  mkdir-100 [001] .....  1.{us:06}: {event}\n")
}

fn alloc(us: u64, off: u64) -> String {
    line(
        us,
        &format!(
            "percpu_alloc_percpu: call_site=f+0x1/0x2 reserved=0 is_atomic=0 size=4096 align=4096 base_addr={CHUNK:x} off={off} ptr={:016x} bytes_alloc=16384 gfp_flags=",
            CHUNK + off - PCPU_BASE
        ),
    )
}

fn free(us: u64, off: u64) -> String {
    line(
        us,
        &format!(
            "percpu_free_percpu: base_addr={CHUNK:x} off={off} ptr={:016x}",
            CHUNK + off - PCPU_BASE
        ),
    )
}

/// 48 pages of a chunk filled, emptied at once, and filled again `gap_us`
/// after the last free.
fn trace(gap_us: u64) -> Vec<Record> {
    let mut t = line(0, &format!("percpu_create_chunk: base_addr={CHUNK:x}"));
    let offs: Vec<u64> = (0..48).map(|i| i * 4096).collect();
    for &o in &offs {
        t += &alloc(1, o);
    }
    for &o in &offs {
        t += &free(2, o);
    }
    for &o in &offs {
        t += &alloc(2 + gap_us, o);
    }
    t += &line(900_000, "tracing_mark_write: PHASE END Percpu: 0 kB");
    TraceReader::new(t.as_bytes())
        .with_options(ParseOptions::strict())
        .collect_trace()
        .unwrap()
        .records
}

fn run(records: &[Record], balance: BalanceTiming) -> Report {
    let geo = parse_dmesg("percpu: Embedded 62 pages/cpu s217088 r8192 d28672 u524288").unwrap();
    let setup = Setup::derive(&geo, 4, records, true).unwrap();
    let cfg = ReplayConfig {
        policy: "linux-6.1".parse::<Policy>().unwrap(),
        placement: Placement::Kernel,
        balance,
        check_invariants: true,
        ..ReplayConfig::default()
    };
    replay("t", records, setup, cfg, &mut |_, _| {}).unwrap().0
}

#[test]
fn a_work_items_latency_lets_the_next_allocations_reuse_the_pages() {
    // On demand: the frees isolate the chunk and reclaim runs at once; the
    // next allocations populate its pages again.
    let now = run(&trace(10), BalanceTiming::Modelled);
    assert_eq!(now.balance, "modelled");
    assert!(now.repopulated_pages >= 40, "{now:?}");
    // 50 µs later: the allocations 10 µs after the frees find the pages
    // still there.
    let later = run(&trace(10), BalanceTiming::Delayed { us: 50 });
    assert_eq!(later.balance, "delay=50");
    assert_eq!(later.repopulated_pages, 0, "{later:?}");
    assert!(later.populated_pages < now.populated_pages);
    // Allocations 100 µs later come after the work: as on demand.
    let after = run(&trace(100), BalanceTiming::Delayed { us: 50 });
    assert_eq!(after.repopulated_pages, now.repopulated_pages);
    // `Auto` on this trace of a real kernel (no balance events) is the
    // 50 µs delay.
    let auto = run(&trace(10), BalanceTiming::Auto);
    assert_eq!(auto.balance, format!("delay={AUTO_DELAY_US}"));
    assert_eq!(auto.repopulated_pages, later.repopulated_pages);
}
