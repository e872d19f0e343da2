//! Plain aligned text tables.
//!
//! A table has columns (title and alignment), optionally a row of group
//! labels above the titles (each spanning some columns, with ` | ` between
//! groups), and rows of cells or horizontal rules.

/// Cell alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    /// Pad on the right.
    Left,
    /// Pad on the left (numbers).
    Right,
}

/// One body row.
#[derive(Debug, Clone)]
enum Row {
    /// Cells, one per column (missing ones are blank).
    Cells(Vec<String>),
    /// A horizontal rule.
    Rule,
}

/// A text table under construction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    titles: Vec<String>,
    align: Vec<Align>,
    /// `(label, number of columns)`, covering the columns from the left.
    groups: Vec<(String, usize)>,
    rows: Vec<Row>,
}

/// Space between two columns of one group.
const GAP: &str = "  ";
/// Between two groups.
const GROUP_SEP: &str = " | ";

impl Table {
    /// A table with these columns.
    pub(crate) fn new(columns: &[(&str, Align)]) -> Self {
        Table {
            titles: columns.iter().map(|(t, _)| (*t).to_string()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            ..Table::default()
        }
    }

    /// Adds a group label spanning the next `span` columns.
    pub(crate) fn group(&mut self, label: &str, span: usize) -> &mut Self {
        self.groups.push((label.to_string(), span));
        self
    }

    /// Adds a row of cells.
    pub(crate) fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        self.rows
            .push(Row::Cells(cells.into_iter().map(Into::into).collect()));
        self
    }

    /// Adds a horizontal rule.
    pub(crate) fn rule(&mut self) -> &mut Self {
        self.rows.push(Row::Rule);
        self
    }

    /// Index of the group holding each column (0 when there are no groups).
    fn group_of(&self) -> Vec<usize> {
        let n = self.titles.len();
        let mut out = Vec::with_capacity(n);
        for (g, (_, span)) in self.groups.iter().enumerate() {
            out.extend(std::iter::repeat(g).take(*span));
        }
        let last = self.groups.len().saturating_sub(1);
        out.resize(n, last);
        out.truncate(n);
        out
    }

    /// The separator printed before column `i`.
    fn sep(&self, groups: &[usize], i: usize) -> &'static str {
        if i == 0 {
            ""
        } else if !self.groups.is_empty() && groups[i] != groups[i - 1] {
            GROUP_SEP
        } else {
            GAP
        }
    }

    /// Renders the table; every line ends with a newline and has no trailing
    /// spaces.
    pub(crate) fn render(&self) -> String {
        let n = self.titles.len();
        let groups = self.group_of();
        let mut width: Vec<usize> = self.titles.iter().map(|t| t.chars().count()).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (i, c) in cells.iter().enumerate().take(n) {
                    width[i] = width[i].max(c.chars().count());
                }
            }
        }
        // Widen the last column of a group whose label is wider than it.
        let mut first = 0;
        for (label, span) in &self.groups {
            let span = (*span).min(n - first.min(n));
            if span == 0 {
                continue;
            }
            let cols = first..first + span;
            let have: usize = width[cols.clone()].iter().sum::<usize>() + GAP.len() * (span - 1);
            let need = label.chars().count();
            if need > have {
                width[cols.end - 1] += need - have;
            }
            first += span;
        }

        let mut out = String::new();
        if !self.groups.is_empty() {
            let mut line = String::new();
            let mut col = 0;
            for (label, span) in &self.groups {
                let span = (*span).min(n - col.min(n));
                if span == 0 {
                    continue;
                }
                line.push_str(self.sep(&groups, col));
                let w: usize =
                    width[col..col + span].iter().sum::<usize>() + GAP.len() * (span - 1);
                line.push_str(&pad(label, w, Align::Left));
                col += span;
            }
            push_line(&mut out, &line);
        }
        let cells_line = |cells: &[String]| {
            let mut line = String::new();
            for (i, (&w, &align)) in width.iter().zip(&self.align).enumerate() {
                line.push_str(self.sep(&groups, i));
                let c = cells.get(i).map_or("", String::as_str);
                line.push_str(&pad(c, w, align));
            }
            line
        };
        let rule_line = || {
            let mut line = String::new();
            for (i, w) in width.iter().enumerate() {
                let s = self.sep(&groups, i);
                line.push_str(if s == GROUP_SEP {
                    "-+-"
                } else {
                    &"--"[..s.len()]
                });
                line.push_str(&"-".repeat(*w));
            }
            line
        };
        push_line(&mut out, &cells_line(&self.titles));
        push_line(&mut out, &rule_line());
        for row in &self.rows {
            match row {
                Row::Cells(cells) => push_line(&mut out, &cells_line(cells)),
                Row::Rule => push_line(&mut out, &rule_line()),
            }
        }
        out
    }
}

/// Pads `s` to `width` characters.
fn pad(s: &str, width: usize, align: Align) -> String {
    let fill = " ".repeat(width.saturating_sub(s.chars().count()));
    match align {
        Align::Left => format!("{s}{fill}"),
        Align::Right => format!("{fill}{s}"),
    }
}

/// Appends `line` without trailing spaces, and a newline.
fn push_line(out: &mut String, line: &str) {
    out.push_str(line.trim_end());
    out.push('\n');
}

/// `(a - b) / b` as a signed percentage with one decimal (`+1.2`), or `-`
/// when `b` is unknown or zero.
pub(crate) fn diff_pct(a: u64, b: Option<u64>) -> String {
    match b {
        Some(b) if b > 0 => format!("{:+.1}", (a as f64 - b as f64) / b as f64 * 100.0),
        Some(_) if a == 0 => "+0.0".to_string(),
        _ => "-".to_string(),
    }
}

/// An optional number, `-` when unknown.
pub(crate) fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(&[("name", Align::Left), ("kB", Align::Right)]);
        t.row(["a", "1"]).row(["bbb", "12345"]);
        assert_eq!(
            t.render(),
            "name     kB\n-----------\na         1\nbbb   12345\n"
        );
    }

    #[test]
    fn groups_span_columns() {
        let mut t = Table::new(&[
            ("phase", Align::Left),
            ("kB", Align::Right),
            ("diff", Align::Right),
        ]);
        t.group("", 1).group("a-long-policy", 2);
        t.row(["A", "1", "+0.0"]).rule().row(["B", "2", "-"]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "      | a-long-policy");
        assert_eq!(lines[1], "phase | kB       diff");
        assert_eq!(lines[2], "------+--------------");
        assert_eq!(lines[3], "A     |  1       +0.0");
        assert_eq!(lines[4], lines[2]);
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn percentages() {
        assert_eq!(diff_pct(110, Some(100)), "+10.0");
        assert_eq!(diff_pct(90, Some(100)), "-10.0");
        assert_eq!(diff_pct(5, None), "-");
        assert_eq!(diff_pct(0, Some(0)), "+0.0");
        assert_eq!(diff_pct(3, Some(0)), "-");
    }
}
