//! Parses a trace file (plain or gzip) or capture folder and prints throughput.
//!
//! ```text
//! cargo run --release -p pcpu-trace --example parse_file -- <trace.txt.gz | folder> [--lenient] [--stream]
//! ```
//!
//! `--stream` iterates without collecting the records into a `Vec`; `--read-only` only
//! decompresses and splits lines (the floor for parsing); `--round-trip` also checks that
//! every record prints back as its original line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use pcpu_trace::{Capture, ParseOptions};

/// Prints `out` to stdout, ignoring a closed pipe (`| head`).
fn emit(out: &str) {
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

fn main() -> ExitCode {
    let mut out = String::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: parse_file <trace file or capture folder> [--lenient] [--stream]");
        return ExitCode::from(2);
    };
    let options = if args.iter().any(|a| a == "--lenient") {
        ParseOptions::lenient()
    } else {
        ParseOptions::strict()
    };
    let stream = args.iter().any(|a| a == "--stream");
    let capture = match Capture::open(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Instant::now();
    if args.iter().any(|a| a == "--read-only") {
        use std::io::BufRead;
        let file = std::fs::File::open(&capture.trace_path).expect("open trace");
        let mut r = pcpu_trace::decompress(std::io::BufReader::with_capacity(1 << 18, file))
            .expect("read trace");
        let (mut lines, mut bytes, mut buf) = (0u64, 0usize, Vec::new());
        while r.read_until(b'\n', &mut buf).expect("read") > 0 {
            lines += 1;
            bytes += buf.len();
            buf.clear();
        }
        let secs = start.elapsed().as_secs_f64();
        let _ = writeln!(
            out,
            "read-only: {lines} lines, {bytes} bytes in {secs:.3} s"
        );
        emit(&out);
        return ExitCode::SUCCESS;
    }
    let (records, stats, header) = if stream {
        let mut reader = match capture.reader() {
            Ok(r) => r.with_options(options),
            Err(e) => {
                eprintln!("error: {}: {e}", capture.trace_path.display());
                return ExitCode::FAILURE;
            }
        };
        let mut n = 0u64;
        for r in &mut reader {
            if let Err(e) = r {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            n += 1;
        }
        (n, reader.stats().clone(), reader.header().clone())
    } else {
        match capture.parse(options) {
            Ok(t) => (t.records.len() as u64, t.stats, t.header),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    let secs = start.elapsed().as_secs_f64();
    if args.iter().any(|a| a == "--round-trip") {
        let trace = capture.parse(options).expect("parse");
        let file = std::fs::File::open(&capture.trace_path).expect("open trace");
        let text = pcpu_trace::decompress(std::io::BufReader::new(file)).expect("read trace");
        let lines: Vec<String> = std::io::BufRead::lines(text)
            .map(|l| l.expect("read"))
            .collect();
        let bad = trace
            .records
            .iter()
            .filter(|r| r.to_string() != lines[(r.line - 1) as usize])
            .inspect(|r| {
                eprintln!(
                    "differs at line {}:\n  {}\n  {r}",
                    r.line,
                    lines[(r.line - 1) as usize]
                )
            })
            .count();
        let _ = writeln!(
            out,
            "round trip: {} records, {bad} differ",
            trace.records.len()
        );
    }
    let _ = writeln!(
        out,
        "{}: {} lines, {records} events in {secs:.3} s",
        capture.trace_path.display(),
        stats.lines
    );
    let _ = writeln!(
        out,
        "{:.0} events/s, {:.0} lines/s",
        records as f64 / secs,
        stats.lines as f64 / secs
    );
    let _ = write!(out, "{}", stats.counts);
    let _ = writeln!(
        out,
        "unknown: {}, malformed: {}, header: {:?}, lost events: {:?}",
        stats.unknown,
        stats.malformed,
        header,
        header.lost_events()
    );
    for e in &stats.errors {
        let _ = writeln!(out, "  {e}");
    }
    if let Some(g) = &capture.geometry {
        let _ = writeln!(out, "geometry: {g:?}, units: {:?}", g.nr_units());
    }
    for p in &capture.phases {
        let _ = writeln!(
            out,
            "phase {}: {} kB (uptime {:?})",
            p.name, p.percpu_kb, p.uptime
        );
    }
    emit(&out);
    ExitCode::SUCCESS
}
