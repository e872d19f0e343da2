//! SVG plots of resident percpu memory over trace time.

use std::path::Path;

use pcpu_replay::Report;
use plotters::prelude::*;

use crate::error::{CliError, CliResult};

/// Plot size in pixels.
const SIZE: (u32, u32) = (1200, 700);
/// Width of the legend column right of the chart.
const LEGEND_WIDTH: u32 = 230;

/// Line colours for the policies (resident memory), in order.
const POLICY_COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// The kernel's figure.
const KERNEL: RGBColor = RGBColor(0, 0, 0);
/// The placement floor.
const FLOOR: RGBColor = RGBColor(120, 120, 120);
/// The ideal.
const IDEAL: RGBColor = RGBColor(23, 190, 207);
/// Phase markers.
const PHASE: RGBColor = RGBColor(150, 110, 160);

/// One line of a plot.
#[derive(Debug, Clone)]
struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    width: u32,
    dashed: bool,
    /// Drawn before the other lines (a wide reference that others may cover).
    underneath: bool,
}

/// What to draw.
#[derive(Debug, Clone, Default)]
struct Plot {
    title: String,
    lines: Vec<Line>,
    /// The kernel's `/proc/meminfo` figure at each phase marker.
    meminfo: Vec<(f64, f64)>,
    /// Phase markers: `(name, time)`.
    phases: Vec<(String, f64)>,
}

/// `(t, kB)` of one timeline field.
fn series(r: &Report, f: impl Fn(&pcpu_replay::Sample) -> Option<u64>) -> Vec<(f64, f64)> {
    r.timeline
        .iter()
        .filter_map(|s| f(s).map(|v| (s.t, v as f64)))
        .collect()
}

/// Floor, ideal, kernel (kprobes) lines and meminfo points from `r`.
fn reference_lines(plot: &mut Plot, r: &Report, phases: &[(String, f64)]) {
    let kernel = series(r, |s| s.kernel_percpu_kb);
    if !kernel.is_empty() {
        plot.lines.push(Line {
            label: "kernel (kprobes)".into(),
            points: kernel,
            colour: KERNEL,
            width: 4,
            dashed: false,
            underneath: true,
        });
    }
    plot.lines.push(Line {
        label: format!("floor ({})", r.placement),
        points: series(r, |s| Some(s.floor_kb)),
        colour: FLOOR,
        width: 1,
        dashed: true,
        underneath: false,
    });
    plot.lines.push(Line {
        label: "ideal".into(),
        points: series(r, |s| Some(s.ideal_kb)),
        colour: IDEAL,
        width: 1,
        dashed: true,
        underneath: false,
    });
    plot.meminfo = phases
        .iter()
        .zip(&r.phases)
        .filter_map(|((_, t), p)| p.kernel_percpu_kb.map(|kb| (*t, kb as f64)))
        .collect();
    plot.phases = phases.to_vec();
}

/// Writes the plot of one replay: our resident memory, floor, ideal and the
/// kernel's figure over time, with phase markers.
pub(crate) fn replay_plot(path: &Path, r: &Report, phases: &[(String, f64)]) -> CliResult {
    let mut plot = Plot {
        title: format!(
            "{}: Percpu over time ({}, {} placement)",
            r.trace, r.policy, r.placement
        ),
        ..Plot::default()
    };
    plot.lines.push(Line {
        label: format!("ours ({})", r.policy),
        points: series(r, |s| Some(s.resident_kb)),
        colour: POLICY_COLOURS[0],
        width: 2,
        dashed: false,
        underneath: false,
    });
    reference_lines(&mut plot, r, phases);
    write_svg(path, &plot)
}

/// Writes the plot comparing policies: resident memory of every report, plus
/// floor, ideal and kernel figure of the first.
pub(crate) fn compare_plot(path: &Path, reports: &[Report], phases: &[(String, f64)]) -> CliResult {
    let Some(first) = reports.first() else {
        return Err(CliError::usage("nothing to plot"));
    };
    let mut plot = Plot {
        title: format!("{}: Percpu over time by policy", first.trace),
        ..Plot::default()
    };
    for (i, r) in reports.iter().enumerate() {
        plot.lines.push(Line {
            label: r.policy.clone(),
            points: series(r, |s| Some(s.resident_kb)),
            colour: POLICY_COLOURS[i % POLICY_COLOURS.len()],
            width: 2,
            dashed: false,
            underneath: false,
        });
    }
    reference_lines(&mut plot, first, phases);
    write_svg(path, &plot)
}

/// Renders `plot` as SVG into `path`.
fn write_svg(path: &Path, plot: &Plot) -> CliResult {
    let mut svg = String::new();
    render(&mut svg, plot).map_err(|e| CliError::replay(format!("cannot draw the plot: {e}")))?;
    std::fs::write(path, svg)
        .map_err(|e| CliError::usage(format!("{}: cannot write the plot: {e}", path.display())))
}

/// Draws `plot` into `svg`.
fn render(svg: &mut String, plot: &Plot) -> Result<(), Box<dyn std::error::Error>> {
    let xs = plot
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .chain(plot.phases.iter().map(|p| p.1))
        .chain(plot.meminfo.iter().map(|p| p.0));
    let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 - x0 < 1e-6 {
        x1 = x0 + 1.0;
    }
    let pad = (x1 - x0) * 0.01;
    let (x0, x1) = (x0 - pad, x1 + pad);
    let ymax = plot
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .chain(plot.meminfo.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let ytop = if ymax > 0.0 { ymax * 1.12 } else { 1.0 };

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&plot.title, ("sans-serif", 24))?;
    let (area, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
    let mut chart = ChartBuilder::on(&area)
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, 0.0..ytop)?;
    chart
        .configure_mesh()
        .x_desc("trace time (s)")
        .y_desc("Percpu (kB, all units)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE.mix(0.0))
        .disable_x_mesh()
        .draw()?;

    for (i, (name, t)) in plot.phases.iter().enumerate() {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(*t, 0.0), (*t, ytop)],
            PHASE.stroke_width(1),
        )))?;
        // Stagger labels of neighbouring phases so that close ones stay readable.
        let y = ytop * (0.985 - 0.035 * (i % 3) as f64);
        chart.draw_series(std::iter::once(Text::new(
            format!(" {name}"),
            (*t, y),
            ("sans-serif", 15).into_font().color(&PHASE),
        )))?;
    }
    let under = plot.lines.iter().filter(|l| l.underneath);
    for line in under.chain(plot.lines.iter().filter(|l| !l.underneath)) {
        let style = line.colour.stroke_width(line.width);
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(
                line.points.iter().copied(),
                6,
                4,
                style,
            ))?;
        } else {
            chart.draw_series(LineSeries::new(line.points.iter().copied(), style))?;
        }
    }
    chart.draw_series(
        plot.meminfo
            .iter()
            .map(|&p| Circle::new(p, 4, KERNEL.filled())),
    )?;

    // The legend, in its own column right of the chart.
    let font = ("sans-serif", 14).into_font();
    let mut y = 60;
    for line in &plot.lines {
        let style = line.colour.stroke_width(line.width.max(2));
        if line.dashed {
            for x in [8, 20] {
                legend.draw(&PathElement::new(vec![(x, y), (x + 8, y)], style))?;
            }
        } else {
            legend.draw(&PathElement::new(vec![(8, y), (36, y)], style))?;
        }
        legend.draw(&Text::new(line.label.as_str(), (44, y - 8), font.clone()))?;
        y += 24;
    }
    if !plot.meminfo.is_empty() {
        legend.draw(&Circle::new((22, y), 4, KERNEL.filled()))?;
        legend.draw(&Text::new(
            "kernel /proc/meminfo",
            (44, y - 8),
            font.clone(),
        ))?;
    }
    root.present()?;
    Ok(())
}
