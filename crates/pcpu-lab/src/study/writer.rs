//! The files beside the document: the [`Writer`] that writes them, each
//! sweep's tables and chart, and the timeline charts.

use std::fmt::Write as _;
use std::path::PathBuf;

use pcpu_replay::ClassMode;

use super::format::{md_table, pct};
use super::subjects::{after_kb, Subject};
use super::sweeps::baseline;
use super::StudyConfig;
use crate::plot::{self, CategoryPlot, Line, TimePlot, PALETTE};
use crate::run::{LabError, RunResult};
use crate::sweep::{self, SweepResults};

/// Writes the study's files (charts, JSON) into the output folder and
/// remembers them.
pub(super) struct Writer<'a> {
    pub(super) cfg: &'a StudyConfig,
    pub(super) subjects: &'a [Subject],
    /// Files written so far, in order.
    pub(super) files: Vec<PathBuf>,
}

impl Writer<'_> {
    /// Writes `text` to `name` in the output folder.
    pub(super) fn write(&mut self, name: &str, text: &str) -> Result<(), LabError> {
        let path = self.cfg.out.join(name);
        std::fs::write(&path, text).map_err(|error| LabError::Io {
            path: path.clone(),
            error,
        })?;
        self.files.push(path);
        Ok(())
    }

    /// Resident-after-removals table (kB, and % against the baseline) of a
    /// sweep, plus a traffic table, plus a chart; returns the markdown.
    pub(super) fn sweep_section(
        &mut self,
        res: &SweepResults,
        what: &str,
    ) -> Result<String, LabError> {
        let mut md = String::new();
        let base = baseline(&res.sweep.id);
        let mut headers = vec![res.sweep.knob.clone()];
        headers.extend(self.subjects.iter().map(|s| s.short.clone()));
        let mut rows = Vec::new();
        let mut traffic = Vec::new();
        let cats: Vec<String> = res.sweep.variants.iter().map(|v| v.label.clone()).collect();
        let mut series: Vec<(String, Vec<Option<f64>>)> = self
            .subjects
            .iter()
            .map(|s| (s.short.clone(), vec![None; cats.len()]))
            .collect();
        for (ci, v) in res.sweep.variants.iter().enumerate() {
            let label = if v.label == base {
                format!("**{}**", v.label)
            } else {
                v.label.clone()
            };
            let mut row = vec![label.clone()];
            let mut trow = vec![label];
            for (si, s) in self.subjects.iter().enumerate() {
                let base_r = res.get(&s.input.name, base);
                match res.get(&s.input.name, &v.label) {
                    Some(r) => {
                        let a = after_kb(s, r);
                        let b = base_r.map_or(0, |b| after_kb(s, b));
                        row.push(format!("{a} ({})", pct(a, b)));
                        if b > 0 {
                            series[si].1[ci] = Some(a as f64 / b as f64 * 100.0);
                        }
                        trow.push(format!(
                            "{} / {} / {}",
                            r.depopulated_pages, r.thrash_runs_pages, r.balance_runs
                        ));
                    }
                    None => {
                        row.push("–".into());
                        trow.push("–".into());
                    }
                }
            }
            rows.push(row);
            traffic.push(trow);
        }
        let _ = writeln!(
            md,
            "Resident memory after removals ({what}), kB, and the change against **{base}**:\n"
        );
        md_table(&mut md, &headers, &rows);
        let _ = writeln!(
            md,
            "Page traffic (pages per unit): depopulated / re-populated within {} balance runs of their depopulation / balance runs:\n",
            self.cfg.options.thrash_runs
        );
        md_table(&mut md, &headers, &traffic);
        let svg_name = format!("study-{}.svg", res.sweep.id);
        let chart = CategoryPlot {
            title: format!("Resident after removals by {} ({what})", res.sweep.knob),
            x_desc: res.sweep.knob.clone(),
            y_desc: format!("% of {base}"),
            categories: cats,
            series,
            reference: Some((format!("{base} = 100 %"), 100.0)),
        };
        let svg = plot::render_category_plot(&chart).map_err(LabError::Plot)?;
        self.write(&svg_name, &svg)?;
        let _ = writeln!(md, "![{}]({svg_name})\n", chart.title);
        Ok(md)
    }
}

/// A timeline chart of several results on one input.
pub(super) fn timeline_chart(
    title: String,
    s: &Subject,
    rs: &[&RunResult],
) -> Result<String, LabError> {
    let mut p = TimePlot {
        title,
        ..TimePlot::default()
    };
    for (i, r) in rs.iter().enumerate() {
        p.lines.push(Line::solid(
            r.label.clone(),
            plot::series(&r.timeline, |x| Some(x.resident_kb)),
            PALETTE[i % PALETTE.len()],
        ));
    }
    if let Some(first) = rs.first() {
        let marks = s.input.phase_marks();
        let meminfo = marks
            .iter()
            .zip(&first.phases)
            .filter_map(|((_, t), p)| p.kernel_percpu_kb.map(|kb| (*t, kb as f64)))
            .collect();
        plot::reference_lines(
            &mut p,
            &first.timeline,
            format!("floor ({})", sweep::placement_label(ClassMode::None)),
            meminfo,
            &marks,
        );
    }
    plot::render_time_plot(&p).map_err(LabError::Plot)
}
