//! `pcpu policies`: the named policies, every knob's default under each, and
//! what each knob does.

use std::fmt::Write as _;

use clap::Args;
use pcpu_core::{knob_doc, Policy, PolicyKind, KNOBS};

use crate::error::{emit, CliResult};
use crate::table::{Align, Table};

/// `pcpu policies` arguments.
#[derive(Args, Debug)]
pub(crate) struct PoliciesArgs {}

/// The named policies, in the order the other commands list them.
const NAMED: [PolicyKind; 5] = [
    PolicyKind::Linux511,
    PolicyKind::SeedRfc,
    PolicyKind::Linux514,
    PolicyKind::Linux61,
    PolicyKind::Pcpu,
];

/// One line per named policy.
const ABOUT: [(&str, &str); 5] = [
    ("linux-5.11", "depopulates only whole free chunks (before the 5.14 series)"),
    (
        "seed-rfc",
        "the RFC of the seed thread: marks chunks with more than 1/4 empty pages, shrinks them once 2 or more are marked",
    ),
    (
        "linux-5.14",
        "partial depopulation as merged: isolates chunks with 1/4 empty pages, reclaims them, sidelines them",
    ),
    (
        "linux-6.1",
        "the traced kernel: the same algorithm as 5.14 (the default of replay, stats and pins)",
    ),
    (
        "pcpu",
        "this project's policy: task/lifetime class placement, reclaim at the first empty page, refill by room",
    ),
];

/// Runs `pcpu policies`.
pub(crate) fn run(_args: PoliciesArgs) -> CliResult {
    let mut out = String::from("Policies (NAME or NAME:knob=value:knob=value...):\n\n");
    for (name, about) in ABOUT {
        let _ = writeln!(out, "  {name:<11} {about}");
    }
    out.push_str("\nKnobs and their defaults:\n\n");
    let mut columns: Vec<(&str, Align)> = vec![("knob", Align::Left)];
    columns.extend(
        NAMED
            .iter()
            .map(|&k| (Policy::named(k).name(), Align::Right)),
    );
    columns.push(("affects", Align::Left));
    let mut t = Table::new(&columns);
    for knob in KNOBS {
        let mut row = vec![knob.to_string()];
        row.extend(NAMED.iter().map(|&k| {
            Policy::named(k)
                .knob_value(knob)
                .unwrap_or_else(|| "-".into())
        }));
        row.push(knob_doc(knob).map_or("", |(_, who)| who).to_string());
        t.row(row);
    }
    out.push_str(&t.render());
    out.push_str("\nWhat each knob does:\n\n");
    for knob in KNOBS {
        if let Some((what, _)) = knob_doc(knob) {
            let _ = writeln!(out, "  {knob}: {what}");
        }
    }
    out.push_str(
        "\nA knob a policy does not use is accepted and changes nothing (see `affects`).\n",
    );
    emit(&out)
}
