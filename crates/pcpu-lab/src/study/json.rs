//! The JSON dump of every result (`policy-study.json`).

use serde::Serialize;

use super::writer::Writer;
use crate::run::{LabError, RunResult};
use crate::sweep::SweepResults;

/// JSON dump of the results.
#[derive(Serialize)]
struct Dump<'a> {
    sweeps: Vec<DumpSweep<'a>>,
}

#[derive(Serialize)]
struct DumpSweep<'a> {
    id: &'a str,
    knob: &'a str,
    results: Vec<&'a RunResult>,
}

/// Replaces the value of every `"wall_s":` field by 0 so that the JSON is
/// deterministic.
fn strip_wall(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("\"wall_s\":") {
        let (head, tail) = rest.split_at(i + "\"wall_s\":".len());
        out.push_str(head);
        let end = tail.find([',', '}', '\n']).unwrap_or(tail.len());
        out.push('0');
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Writes every result of `results` to `policy-study.json` (wall times
/// zeroed unless `timings`).
pub(super) fn write_json(
    w: &mut Writer,
    results: &[SweepResults],
    timings: bool,
) -> Result<(), LabError> {
    let dump = Dump {
        sweeps: results
            .iter()
            .map(|r| DumpSweep {
                id: &r.sweep.id,
                knob: &r.sweep.knob,
                results: r.per_input.iter().flat_map(|(_, v)| v.iter()).collect(),
            })
            .collect(),
    };
    let mut json = serde_json::to_string(&dump).expect("results serialise");
    json.push('\n');
    if !timings {
        json = strip_wall(&json);
    }
    w.write("policy-study.json", &json)?;
    Ok(())
}
