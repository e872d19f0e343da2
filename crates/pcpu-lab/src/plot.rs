//! SVG charts (plotters' SVG backend): resident percpu memory over trace
//! time with phase markers (also used by `pcpu replay --plot` and
//! `pcpu compare --plot`), and category charts for sweeps.

use std::path::Path;

use pcpu_replay::Sample;
use plotters::prelude::*;

/// Plot size in pixels.
const SIZE: (u32, u32) = (1200, 700);
/// Width of the legend column right of the chart.
const LEGEND_WIDTH: u32 = 230;

/// Line colours for series (policies, workloads), in order.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
/// The kernel's figure.
pub const KERNEL: RGBColor = RGBColor(0, 0, 0);
/// The placement floor.
pub const FLOOR: RGBColor = RGBColor(120, 120, 120);
/// The ideal.
pub const IDEAL: RGBColor = RGBColor(23, 190, 207);
/// Phase markers.
pub const PHASE: RGBColor = RGBColor(150, 110, 160);

/// One line of a plot.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub colour: RGBColor,
    /// Stroke width.
    pub width: u32,
    /// Dashed.
    pub dashed: bool,
    /// Drawn before the other lines (a wide reference that others may cover).
    pub underneath: bool,
}

impl Line {
    /// A solid line of width 2.
    pub fn solid(label: impl Into<String>, points: Vec<(f64, f64)>, colour: RGBColor) -> Self {
        Line {
            label: label.into(),
            points,
            colour,
            width: 2,
            dashed: false,
            underneath: false,
        }
    }
}

/// A plot over trace time.
#[derive(Debug, Clone, Default)]
pub struct TimePlot {
    /// Title.
    pub title: String,
    /// Lines.
    pub lines: Vec<Line>,
    /// The kernel's `/proc/meminfo` figure at each phase marker (dots).
    pub meminfo: Vec<(f64, f64)>,
    /// Phase markers: `(name, time)`.
    pub phases: Vec<(String, f64)>,
}

/// `(t, kB)` of one timeline field.
///
/// Drawn as steps: each value holds until the next sample. The figures
/// change only at trace events, and a sample comes every few hundred of
/// them, so a straight line between two samples across an idle stretch of
/// the trace would show a change that happened at its end as a slope over
/// the whole of it.
pub fn series(timeline: &[Sample], f: impl Fn(&Sample) -> Option<u64>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(timeline.len() * 2);
    for (t, v) in timeline
        .iter()
        .filter_map(|s| f(s).map(|v| (s.t, v as f64)))
    {
        if let Some(&(_, prev)) = out.last() {
            if prev != v {
                out.push((t, prev));
            }
        }
        out.push((t, v));
    }
    out
}

/// Adds the kernel (kprobes) line when the timeline has it, the floor and
/// ideal lines, the meminfo dots and the phase markers.
pub fn reference_lines(
    plot: &mut TimePlot,
    timeline: &[Sample],
    floor_label: String,
    meminfo: Vec<(f64, f64)>,
    phases: &[(String, f64)],
) {
    let kernel = series(timeline, |s| s.kernel_percpu_kb);
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
        label: floor_label,
        points: series(timeline, |s| Some(s.floor_kb)),
        colour: FLOOR,
        width: 1,
        dashed: true,
        underneath: false,
    });
    plot.lines.push(Line {
        label: "ideal".into(),
        points: series(timeline, |s| Some(s.ideal_kb)),
        colour: IDEAL,
        width: 1,
        dashed: true,
        underneath: false,
    });
    plot.meminfo = meminfo;
    plot.phases = phases.to_vec();
}

/// Writes `svg` to `path`.
pub fn write_svg(path: &Path, svg: &str) -> std::io::Result<()> {
    std::fs::write(path, svg)
}

/// Draws the legend (one entry per line, then the meminfo dot) into `legend`.
fn draw_legend<DB: DrawingBackend>(
    legend: &DrawingArea<DB, plotters::coord::Shift>,
    lines: &[Line],
    dots: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let font = ("sans-serif", 14).into_font();
    let mut y = 60;
    for line in lines {
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
    if let Some(label) = dots {
        legend.draw(&Circle::new((22, y), 4, KERNEL.filled()))?;
        legend.draw(&Text::new(label, (44, y - 8), font.clone()))?;
    }
    Ok(())
}

/// The plotting area of a chart and, to its right, the legend's.
type Areas<'a> = (
    DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
);

/// A white, titled SVG canvas, split into [`Areas`].
fn canvas<'a>(svg: &'a mut String, title: &str) -> Result<Areas<'a>, Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 24))?;
    Ok(root.split_horizontally(SIZE.0 - LEGEND_WIDTH))
}

/// The chart builder every plot uses, on `area`.
fn chart_on<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.margin(12).x_label_area_size(50).y_label_area_size(80);
    b
}

/// Top of the y axis: 12% above the largest value (1 for an empty plot).
fn headroom(ymax: f64) -> f64 {
    if ymax > 0.0 {
        ymax * 1.12
    } else {
        1.0
    }
}

/// Renders a [`TimePlot`] as SVG text.
pub fn render_time_plot(plot: &TimePlot) -> Result<String, String> {
    let mut svg = String::new();
    draw_time_plot(&mut svg, plot).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw_time_plot(svg: &mut String, plot: &TimePlot) -> Result<(), Box<dyn std::error::Error>> {
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
    let ytop = headroom(ymax);
    let (area, legend) = canvas(svg, &plot.title)?;
    let mut chart = chart_on(&area).build_cartesian_2d(x0..x1, 0.0..ytop)?;
    chart
        .configure_mesh()
        .x_desc("trace time (s)")
        .y_desc("Percpu (kB, all units)")
        // Whole seconds print without a fraction ("10", not "10.0").
        .x_label_formatter(&|x| {
            if x.fract() == 0.0 {
                format!("{x:.0}")
            } else {
                format!("{x}")
            }
        })
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
    draw_legend(
        &legend,
        &plot.lines,
        (!plot.meminfo.is_empty()).then_some("kernel /proc/meminfo"),
    )?;
    area.present()?; // the canvas's areas share one backend
    Ok(())
}

/// A chart of values over categories (a swept knob): one line with markers
/// per series.
#[derive(Debug, Clone, Default)]
pub struct CategoryPlot {
    /// Title.
    pub title: String,
    /// X axis description.
    pub x_desc: String,
    /// Y axis description.
    pub y_desc: String,
    /// Category labels, left to right.
    pub categories: Vec<String>,
    /// `(label, value per category)`; `None` leaves a gap.
    pub series: Vec<(String, Vec<Option<f64>>)>,
    /// A horizontal reference line `(label, y)`, e.g. 100 % of a baseline.
    pub reference: Option<(String, f64)>,
}

/// Renders a [`CategoryPlot`] as SVG text.
pub fn render_category_plot(plot: &CategoryPlot) -> Result<String, String> {
    let mut svg = String::new();
    draw_category_plot(&mut svg, plot).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw_category_plot(
    svg: &mut String,
    plot: &CategoryPlot,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = plot.categories.len().max(1);
    let ymax = plot
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().copied())
        .chain(plot.reference.iter().map(|r| r.1))
        .fold(0.0f64, f64::max);
    let (area, legend) = canvas(svg, &plot.title)?;
    let mut chart =
        chart_on(&area).build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..headroom(ymax))?;
    let cats = plot.categories.clone();
    chart
        .configure_mesh()
        .x_desc(plot.x_desc.as_str())
        .y_desc(plot.y_desc.as_str())
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                cats.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| format!("{v:.0}"))
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .light_line_style(WHITE.mix(0.0))
        .disable_x_mesh()
        .draw()?;
    if let Some((_, y)) = &plot.reference {
        chart.draw_series(DashedLineSeries::new(
            [(-0.5, *y), (n as f64 - 0.5, *y)],
            6,
            4,
            FLOOR.stroke_width(1),
        ))?;
    }
    let mut lines = Vec::new();
    for (k, (label, values)) in plot.series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let pts: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|y| (i as f64, y)))
            .collect();
        chart.draw_series(LineSeries::new(pts.iter().copied(), colour.stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, colour.filled())))?;
        lines.push(Line::solid(label.clone(), Vec::new(), colour));
    }
    if let Some((label, _)) = &plot.reference {
        lines.push(Line {
            label: label.clone(),
            points: Vec::new(),
            colour: FLOOR,
            width: 1,
            dashed: true,
            underneath: false,
        });
    }
    draw_legend(&legend, &lines, None)?;
    area.present()?; // the canvas's areas share one backend
    Ok(())
}
