//! Parser throughput on the embedded `memcg-head` fixture (2,512 lines of a real trace).
//!
//! `cargo bench -p pcpu-trace` (for the full shared trace use `examples/parse_file.rs`).

use std::hint::black_box;
use std::io::Read;

use criterion::{criterion_main, Criterion, Throughput};
use pcpu_trace::{from_reader, parse_all, ParseOptions, TraceReader};

static FIXTURE_GZ: &[u8] = include_bytes!("../tests/fixtures/memcg-head/trace.txt.gz");

fn bench_parse(c: &mut Criterion) {
    let mut plain = Vec::new();
    pcpu_trace::decompress(FIXTURE_GZ)
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    let events = TraceReader::new(&plain[..]).count() as u64;

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(events));
    g.bench_function("stream_plain", |b| {
        b.iter(|| {
            TraceReader::new(black_box(&plain[..]))
                .filter(Result::is_ok)
                .count()
        })
    });
    g.bench_function("stream_gzip", |b| {
        b.iter(|| {
            from_reader(black_box(FIXTURE_GZ))
                .unwrap()
                .filter(Result::is_ok)
                .count()
        })
    });
    g.bench_function("parse_all_gzip", |b| {
        b.iter(|| {
            parse_all(black_box(FIXTURE_GZ), ParseOptions::strict())
                .unwrap()
                .records
                .len()
        })
    });
    g.finish();
}

// `criterion_group!` generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench_parse);
}
criterion_main!(group::benches);
