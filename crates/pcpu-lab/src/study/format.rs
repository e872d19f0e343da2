//! Text helpers of the document: percentages, ranges of changes, the verbs
//! that describe them, plurals and markdown tables.

use std::fmt::Write as _;

/// Percent change of `a` against `b`.
pub(super) use crate::run::percent_change as change;

/// `+12.3%` of `a` against `b`.
pub(super) fn pct(a: u64, b: u64) -> String {
    change(a, b).map_or_else(|| "n/a".into(), |c| format!("{c:+.1}%"))
}

/// A question's section heading, then its answer in bold.
pub(super) fn question(md: &mut String, heading: &str, answer: &str) {
    let _ = writeln!(md, "{heading}\n");
    let _ = writeln!(md, "**Answer.** {answer}\n");
}

/// A markdown table; the first column left-aligned, the others right.
pub(crate) fn md_table(out: &mut String, headers: &[String], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let aligns: Vec<&str> = (0..headers.len())
        .map(|i| if i == 0 { ":---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", aligns.join(" | "));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// `−3.1%`, or `−3.1% to +4.0%` for a range.
pub(super) fn span(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "n/a".into()
    } else if (hi - lo).abs() < 0.05 {
        format!("{lo:+.1}%")
    } else {
        format!("{lo:+.1}% to {hi:+.1}%")
    }
}

/// "lowers … by", "raises … by" or "changes … by" depending on the signs.
pub(super) fn verb(v: &[f64], what: &str) -> String {
    if v.iter().all(|x| *x < -0.05) {
        format!("lowers {what} on every workload ({})", span(v))
    } else if v.iter().all(|x| *x > 0.05) {
        format!("raises {what} on every workload ({})", span(v))
    } else {
        format!("changes {what} by {}", span(v))
    }
}

/// `n` followed by `one` or `many`.
pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
