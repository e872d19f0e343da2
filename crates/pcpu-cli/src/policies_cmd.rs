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

/// One line on the named policy of `kind`, with where it is the default.
fn about(kind: PolicyKind) -> String {
    let mut line = String::from(kind.summary());
    if kind == PolicyKind::Linux61 {
        line.push_str(" (the default of replay, stats and pins)");
    }
    line
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
