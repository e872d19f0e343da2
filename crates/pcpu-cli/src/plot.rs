//! SVG plots of resident percpu memory over trace time (drawn by
//! `pcpu_lab::plot`, shared with `pcpu study`).

use std::path::Path;

use pcpu_lab::plot::{self, Line, TimePlot, PALETTE};
use pcpu_replay::Report;

use crate::error::{CliError, CliResult};

/// The kernel's `/proc/meminfo` figure at each phase marker.
fn meminfo(r: &Report, phases: &[(String, f64)]) -> Vec<(f64, f64)> {
    phases
        .iter()
        .zip(&r.phases)
        .filter_map(|((_, t), p)| p.kernel_percpu_kb.map(|kb| (*t, kb as f64)))
        .collect()
}

/// Floor, ideal, kernel (kprobes) lines and meminfo points from `r`.
fn reference_lines(plot: &mut TimePlot, r: &Report, phases: &[(String, f64)]) {
    plot::reference_lines(
        plot,
        &r.timeline,
        format!("floor ({}, {} placement)", r.policy, r.placement),
        meminfo(r, phases),
        phases,
    );
}

/// Writes the plot of one replay: our resident memory, floor, ideal and the
/// kernel's figure over time, with phase markers.
pub(crate) fn replay_plot(path: &Path, r: &Report, phases: &[(String, f64)]) -> CliResult {
    let mut p = TimePlot {
        title: format!(
            "{}: Percpu over time ({}, {} placement)",
            r.trace, r.policy, r.placement
        ),
        ..TimePlot::default()
    };
    p.lines.push(Line::solid(
        format!("ours ({})", r.policy),
        plot::series(&r.timeline, |s| Some(s.resident_kb)),
        PALETTE[0],
    ));
    reference_lines(&mut p, r, phases);
    write_svg(path, &p)
}

/// Writes the plot comparing policies: resident memory of every report, plus
/// floor, ideal and kernel figure of the first.
pub(crate) fn compare_plot(path: &Path, reports: &[Report], phases: &[(String, f64)]) -> CliResult {
    let Some(first) = reports.first() else {
        return Err(CliError::usage("nothing to plot"));
    };
    let mut p = TimePlot {
        title: format!("{}: Percpu over time by policy", first.trace),
        ..TimePlot::default()
    };
    for (i, r) in reports.iter().enumerate() {
        p.lines.push(Line::solid(
            r.policy.clone(),
            plot::series(&r.timeline, |s| Some(s.resident_kb)),
            PALETTE[i % PALETTE.len()],
        ));
    }
    reference_lines(&mut p, first, phases);
    write_svg(path, &p)
}

/// Renders `plot` as SVG into `path`.
fn write_svg(path: &Path, p: &TimePlot) -> CliResult {
    let svg = plot::render_time_plot(p)
        .map_err(|e| CliError::replay(format!("cannot draw the plot: {e}")))?;
    plot::write_svg(path, &svg)
        .map_err(|e| CliError::usage(format!("{}: cannot write the plot: {e}", path.display())))
}
