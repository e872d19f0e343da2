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

/// One line on the named policy of `kind`.
fn about(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Linux511 => "depopulates only whole free chunks (before the 5.14 series)",
        PolicyKind::SeedRfc => {
            "the RFC of the seed thread: marks chunks with more than 1/4 empty pages, shrinks them once 2 or more are marked"
        }
        PolicyKind::Linux514 => {
            "partial depopulation as merged: isolates chunks with 1/4 empty pages, reclaims them, sidelines them"
        }
        PolicyKind::Linux61 => {
            "the traced kernel: the same algorithm as 5.14 (the default of replay, stats and pins)"
        }
        PolicyKind::Pcpu => {
            "this project's policy: task/lifetime class placement with long-lived prediction, reclaim at the first empty page, refill by room"
        }
    }
}

/// Runs `pcpu policies`.
pub(crate) fn run(_args: PoliciesArgs) -> CliResult {
    // The named policies, in the order the other commands list them.
    let named = Policy::all();
    let mut out = String::from("Policies (NAME or NAME:knob=value:knob=value...):\n\n");
    for p in &named {
        let _ = writeln!(out, "  {:<11} {}", p.name(), about(p.kind));
    }
    out.push_str("\nKnobs and their defaults:\n\n");
    let mut columns: Vec<(&str, Align)> = vec![("knob", Align::Left)];
    columns.extend(named.iter().map(|p| (p.name(), Align::Right)));
    columns.push(("affects", Align::Left));
    let mut t = Table::new(&columns);
    for knob in KNOBS {
        let mut row = vec![knob.to_string()];
        row.extend(
            named
                .iter()
                .map(|p| p.knob_value(knob).unwrap_or_else(|| "-".into())),
        );
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
