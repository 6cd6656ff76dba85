//! `exfilmon report timeline`: egress over time in a terminal. One row per sender with a
//! sparkline of its bytes (Unicode blocks, each row scaled to its own peak, its total beside
//! it), a row of marks under it where it raised alerts, fitted to the terminal's width.
//!
//! Labels pass through the same terminal escaping as every table; colour (alert columns in
//! red or yellow) only on a terminal and never with `NO_COLOR` set. `--format json|csv` gives
//! the numbers behind the rows instead.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::chart::utc;
use super::db::Db;
use super::series::{self, Buckets, Mark, Span, DAY_US, OTHERS};
use super::table::{col, hidden, Cell, Table};
use super::{Filter, ReportError};
use crate::principal::UserNames;
use crate::units::human_duration;

/// Eighths of a cell, lowest first; an empty bucket is a space.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// Widest sender label; longer ones are cut.
const LABEL_MAX: usize = 28;
/// Room for `monitor` and `99 others` whatever the senders are called.
const LABEL_MIN: usize = 10;
/// `1023.9 MiB`.
const BYTES_WIDTH: usize = 10;
const ALERTS_WIDTH: usize = 6;
/// The sparkline never gets narrower than this, whatever the terminal says.
const MIN_SPARK: usize = 10;

const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

/// One row: a sender, the senders beyond `--top` together, or the monitor itself (its own
/// alerts, no egress).
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    /// The sender's host (none for the others' and the monitor's rows).
    pub observer: Option<String>,
    pub uid: Option<i64>,
    pub host: Option<String>,
    pub bytes: Vec<i64>,
    /// Per bucket: the highest alert severity (0 none) and the alerts.
    pub alerts: Vec<(u8, i64)>,
    pub kinds: Vec<String>,
    /// False for the monitor's own row: alerts only.
    pub egress: bool,
}

#[derive(Debug, Clone)]
pub struct Timeline {
    pub span: Option<Span>,
    pub buckets: Option<Buckets>,
    pub rows: Vec<Row>,
    /// Senders beyond the rows shown (summed into the last row).
    pub hidden: usize,
    /// Columns for the labels (longer ones are cut).
    pub label_width: usize,
    /// The width to fit.
    pub width: usize,
}

/// Columns besides the label and the sparkline: the gaps, bytes and alerts.
const FIXED: usize = 2 + 2 + BYTES_WIDTH + 2 + ALERTS_WIDTH;
/// The narrowest width a timeline fits.
pub const MIN_WIDTH: usize = 40;

/// The columns left for the sparkline in a terminal `width` wide, with labels `label` wide.
fn spark_width(width: usize, label: usize) -> usize {
    width.saturating_sub(label + FIXED).max(MIN_SPARK)
}

pub fn timeline(
    db: &Db,
    f: &Filter,
    names: &mut UserNames,
    width: usize,
    top: usize,
    now_us: i64,
) -> Result<Timeline, ReportError> {
    let Some(span) = series::span(db, f, now_us)? else {
        return Ok(Timeline { span: None, buckets: None, rows: Vec::new(), hidden: 0, label_width: LABEL_MIN, width });
    };
    let senders = series::senders(db, f, names, top)?;
    // Labels give way to the sparkline on a narrow terminal.
    let label_width =
        senders.top.iter().map(|s| printable(&s.label).len()).max().unwrap_or(0).clamp(LABEL_MIN, LABEL_MAX);
    let label_width = label_width.min(width.saturating_sub(FIXED + MIN_SPARK)).max(6);
    let b = Buckets::fit(span, spark_width(width, label_width));
    let egress = series::egress(db, f, &b, &senders)?;
    let marks = series::marks(db, f, &b)?;
    // Per series; alerts of senders not shown go to the "others" row, the monitor's to None.
    let mut by_series: BTreeMap<Option<i64>, Vec<&Mark>> = BTreeMap::new();
    for m in &marks {
        by_series.entry(m.principal.as_deref().map(|k| senders.series(k))).or_default().push(m);
    }
    let row = |label: String, observer: Option<String>, uid, host, bytes: Vec<i64>, marks: Option<&Vec<&Mark>>| {
        let mut alerts = vec![(0u8, 0i64); b.count];
        let mut kinds: Vec<String> = Vec::new();
        for m in marks.into_iter().flatten() {
            let a = &mut alerts[m.bucket];
            *a = (a.0.max(m.severity), a.1 + m.count);
            if !kinds.contains(&m.kind) {
                kinds.push(m.kind.clone());
            }
        }
        Row { label, observer, uid, host, bytes, alerts, kinds, egress: true }
    };
    let empty = vec![0; b.count];
    let mut rows: Vec<Row> = senders
        .top
        .iter()
        .map(|s| {
            let bytes = egress.bytes.get(&s.id).unwrap_or(&empty).clone();
            let observer = Some(s.observer.clone());
            row(s.label.clone(), observer, s.uid, s.host.clone(), bytes, by_series.get(&Some(s.id)))
        })
        .collect();
    let hidden = senders.count.saturating_sub(senders.top.len());
    if hidden > 0 || by_series.contains_key(&Some(OTHERS)) {
        let bytes = egress.bytes.get(&OTHERS).unwrap_or(&empty).clone();
        let label = format!("{hidden} other{}", if hidden == 1 { "" } else { "s" });
        rows.push(row(label, None, None, None, bytes, by_series.get(&Some(OTHERS))));
    }
    if let Some(own) = by_series.get(&None) {
        rows.push(Row { egress: false, ..row("monitor".into(), None, None, None, empty.clone(), Some(own)) });
    }
    Ok(Timeline { span: Some(span), buckets: Some(b), rows, hidden, label_width, width })
}

fn printable(s: &str) -> String {
    Cell::Text(s.to_string()).human()
}

/// A row's bytes as blocks, scaled to its own peak; any traffic shows as at least `▁`.
pub fn sparkline(values: &[i64]) -> Vec<char> {
    let peak = values.iter().copied().max().unwrap_or(0).max(1) as u128;
    values
        .iter()
        .map(|&v| match v {
            ..=0 => ' ',
            v => BLOCKS[((v as u128 * 8).div_ceil(peak) as usize).clamp(1, 8) - 1],
        })
        .collect()
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut out: String = s.chars().take(width.saturating_sub(1)).collect();
    out.push('~');
    out
}

impl Timeline {
    /// The timeline for people: `color` for alert columns (a terminal without NO_COLOR).
    pub fn write(&self, out: &mut dyn Write, color: bool) -> io::Result<()> {
        let (Some(span), Some(b)) = (self.span, self.buckets) else {
            writeln!(out, "Egress timeline")?;
            return writeln!(out, "(none)");
        };
        let labels: Vec<String> = self.rows.iter().map(|r| printable(&r.label)).collect();
        let lw = self.label_width;
        let step = human_duration(std::time::Duration::from_micros(b.width_us.max(0) as u64));
        let title = cut(
            &format!(
                "Egress timeline, {} to {} UTC",
                utc(span.start_us, "%Y-%m-%d %H:%M"),
                utc(span.end_us, "%Y-%m-%d %H:%M")
            ),
            self.width,
        );
        writeln!(out, "{title}")?;
        writeln!(out, "{}", "=".repeat(title.chars().count()))?;
        let legend = format!("one column = {step}, each row scaled to its own peak; alerts: ▲ high, △ medium or low");
        writeln!(out, "{}", cut(&legend, self.width))?;
        let w = b.count;
        writeln!(out, "{:<lw$}  {:<w$}  {:>BYTES_WIDTH$}  {:>ALERTS_WIDTH$}", "SENDER", "EGRESS", "BYTES", "ALERTS")?;
        if self.rows.is_empty() {
            writeln!(out, "(none)")?;
        }
        for (row, label) in self.rows.iter().zip(&labels) {
            let spark = sparkline(&row.bytes);
            let total: i64 = row.bytes.iter().sum();
            let alerts: i64 = row.alerts.iter().map(|a| a.1).sum();
            write!(out, "{:<lw$}  ", cut(label, lw))?;
            for (c, (severity, _)) in spark.iter().zip(&row.alerts) {
                match (color, severity) {
                    (true, 3) => write!(out, "{RED}{}{RESET}", if *c == ' ' { '▁' } else { *c })?,
                    (true, 1..) => write!(out, "{YELLOW}{}{RESET}", if *c == ' ' { '▁' } else { *c })?,
                    _ => write!(out, "{c}")?,
                }
            }
            let bytes = if row.egress { Cell::Bytes(total).human() } else { "-".into() };
            writeln!(out, "  {bytes:>BYTES_WIDTH$}  {alerts:>ALERTS_WIDTH$}")?;
            if alerts > 0 {
                // Under the columns with alerts: ▲ high, △ medium or low; then the kinds.
                write!(out, "{:lw$}  ", "")?;
                for (severity, _) in &row.alerts {
                    match (color, severity) {
                        (_, 0) => write!(out, " ")?,
                        (true, 3) => write!(out, "{RED}▲{RESET}")?,
                        (false, 3) => write!(out, "▲")?,
                        (true, _) => write!(out, "{YELLOW}△{RESET}")?,
                        (false, _) => write!(out, "△")?,
                    }
                }
                let kinds: Vec<String> = row.kinds.iter().map(|k| printable(k)).collect();
                let room = self.width.saturating_sub(lw + 2 + w + 2).max(8);
                writeln!(out, "  {}", cut(&kinds.join(", "), room))?;
            }
        }
        // The time axis: start under the first column, end under the last.
        let fmt = if span.end_us - span.start_us >= DAY_US { "%Y-%m-%d %H:%M" } else { "%H:%M" };
        let (start, end) = (utc(b.start_us, fmt), utc(b.end_us(), fmt));
        if start.len() + end.len() < w {
            writeln!(out, "{:lw$}  {start}{end:>gap$}", "", gap = w - start.len())?;
        }
        if self.hidden > 0 {
            writeln!(
                out,
                "{}",
                cut("(--top shows more senders; `exfilmon report users` lists every one)", self.width)
            )?;
        }
        Ok(())
    }

    /// The numbers behind the rows, one per sender and non-empty bucket, for `--format json|csv`.
    pub fn table(&self) -> Table {
        let mut rows = Vec::new();
        if let Some(b) = self.buckets {
            for r in &self.rows {
                for (i, (&bytes, &(_, alerts))) in r.bytes.iter().zip(&r.alerts).enumerate() {
                    if bytes == 0 && alerts == 0 {
                        continue;
                    }
                    rows.push(vec![
                        Cell::Text(r.label.clone()),
                        Cell::opt_int(r.uid),
                        Cell::opt_text(r.host.clone()),
                        Cell::Time(b.bucket_start(i)),
                        Cell::Int(b.width_us / 1_000_000),
                        Cell::Bytes(bytes),
                        Cell::Int(alerts),
                        Cell::opt_text(r.observer.clone()),
                    ]);
                }
            }
        }
        Table {
            title: "Egress timeline".into(),
            columns: vec![
                col("sender"),
                hidden("uid"),
                hidden("host"),
                col("start"),
                col("seconds"),
                col("bytes"),
                col("alerts"),
                // Last, so CSV columns keep their places (issue 12).
                col("observer"),
            ],
            rows,
        }
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything but empty
/// (<https://no-color.org>).
pub fn use_color(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::series::HOUR_US;

    fn timeline() -> Timeline {
        let b = Buckets::fit(Span { start_us: 0, end_us: 8 * HOUR_US }, 40);
        let mut alerts = vec![(0, 0); b.count];
        alerts[3] = (3, 2);
        let mut bytes = vec![0; b.count];
        bytes[3] = 8000;
        bytes[10] = 1000;
        bytes[11] = 1;
        Timeline {
            span: Some(Span { start_us: 0, end_us: 8 * HOUR_US }),
            buckets: Some(b),
            rows: vec![Row {
                label: "evil\x1b[2J\rname".into(),
                observer: None,
                uid: Some(1001),
                host: None,
                bytes,
                alerts,
                kinds: vec!["volume".into()],
                egress: true,
            }],
            hidden: 0,
            label_width: LABEL_MAX,
            width: 80,
        }
    }

    #[test]
    fn sparkline_scales_to_the_peak_and_shows_any_traffic() {
        assert_eq!(sparkline(&[0, 1, 4, 8, 1000]).into_iter().collect::<String>(), " ▁▁▁█");
        assert_eq!(sparkline(&[0, 0]).into_iter().collect::<String>(), "  ");
        assert_eq!(sparkline(&[1, 2, 3, 4, 5, 6, 7, 8]).into_iter().collect::<String>(), "▁▂▃▄▅▆▇█");
    }

    #[test]
    fn no_colour_means_no_escape_and_labels_are_escaped() {
        let mut out = Vec::new();
        timeline().write(&mut out, false).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains('\x1b') && !s.contains('\r'), "{s}");
        assert!(s.contains("evil\\x1b[2J\\x0dname"), "{s}");
        assert!(s.contains('▲') && s.contains("volume"), "{s}");
        // Every line fits the sparkline's columns plus the fixed ones.
        let b = timeline().buckets.unwrap();
        for line in s.lines().skip(2) {
            assert!(line.chars().count() <= LABEL_MAX + 4 + b.count + BYTES_WIDTH + 2 + ALERTS_WIDTH, "{line}");
        }
    }

    #[test]
    fn colour_marks_the_alert_columns_only() {
        let mut out = Vec::new();
        timeline().write(&mut out, true).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches(RED).count(), 2, "{s}");
        // The label's own escape sequence is still escaped.
        assert!(s.contains("evil\\x1b[2J"));
    }

    #[test]
    fn no_color_is_respected() {
        use std::ffi::OsStr;
        assert!(use_color(true, None));
        assert!(use_color(true, Some(OsStr::new(""))));
        assert!(!use_color(true, Some(OsStr::new("1"))));
        assert!(!use_color(false, None));
    }

    #[test]
    fn the_sparkline_fits_the_width() {
        assert_eq!(spark_width(80, 20), 80 - 20 - 2 - 2 - 10 - 2 - 6);
        assert_eq!(spark_width(20, 28), MIN_SPARK);
        assert_eq!(MIN_WIDTH, 8 + FIXED + MIN_SPARK);
    }
}
