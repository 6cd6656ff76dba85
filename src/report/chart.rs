//! Charts as SVG text, for `report html`: a stacked step area over time buckets with alert
//! flags on the same time axis. Hand-written (about the size of a chart library's config) so
//! the page needs no script and no dependency: the browser draws it as markup.
//!
//! Every piece of text (labels, titles) passes through [`crate::escape::html`]; callers hand
//! in plain text. Coordinates have one decimal at most, and a step edge is one `V`/`H` pair
//! per bucket, so a 1,000-bucket layer is about 12 KB.

use std::fmt::Write;

use super::series::{Buckets, DAY_US, HOUR_US};
use crate::escape::html;
use crate::rows::MINUTE_US;
use crate::units::human_bytes;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
/// Below the plot: alert flags, then the time labels.
const BELOW: f64 = 42.0;
/// Flags beyond this many get no line across the plot, only their triangle.
const MAX_FLAG_LINES: usize = 60;

/// What the y axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Bytes,
    Count,
}

impl Scale {
    pub fn format(self, v: i64) -> String {
        match self {
            Scale::Bytes => human_bytes(v.max(0) as u64),
            Scale::Count => count(v),
        }
    }

    fn base(self) -> f64 {
        match self {
            Scale::Bytes => 1024.0,
            Scale::Count => 1000.0,
        }
    }
}

/// A count as people read it: `950`, `12.5k`, `3.1M`.
pub fn count(v: i64) -> String {
    let f = v as f64;
    match v.abs() {
        0..=9_999 => v.to_string(),
        10_000..=999_999 => format!("{:.1}k", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", f / 1e6),
        _ => format!("{:.1}G", f / 1e9),
    }
}

/// One stacked series: a value per bucket.
pub struct Layer<'a> {
    pub label: &'a str,
    pub values: &'a [i64],
    /// A CSS colour from this module's code (never from data).
    pub color: &'static str,
}

/// Something that happened in one bucket: a vertical line and a triangle under the axis,
/// with `title` as its tooltip and `href` (a fragment) as its link.
pub struct Flag {
    pub bucket: usize,
    /// 1 low, 2 medium, 3 high: the colour.
    pub severity: u8,
    pub title: String,
    pub href: String,
}

pub struct Chart<'a> {
    /// What the chart shows, for screen readers and the tooltip of the whole.
    pub title: &'a str,
    pub buckets: &'a Buckets,
    /// Bottom first.
    pub layers: Vec<Layer<'a>>,
    pub flags: Vec<Flag>,
    pub scale: Scale,
    pub height: f64,
    /// A tooltip per non-empty bucket with its time, total and largest layers (costs about
    /// 100 bytes a bucket: for the one main chart).
    pub hover: bool,
}

/// `12.5` → `12.5`, `12.0` → `12`.
fn n(v: f64) -> String {
    let s = format!("{v:.1}");
    match s.strip_suffix(".0") {
        Some(int) => int.to_string(),
        None => s,
    }
}

/// A tick step of 1, 2 or 5 times a power of `base` (then 10, 20, 50 ... of that power) that
/// gives at most five ticks up to `max`.
fn tick_step(max: f64, base: f64) -> f64 {
    let raw = (max / 5.0).max(1.0);
    let mut unit = 1.0;
    while raw >= unit * base {
        unit *= base;
    }
    [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
        .into_iter()
        .map(|m| m * unit)
        .find(|&s| s >= raw)
        .unwrap_or(unit * base)
}

/// Time ticks: the smallest step giving at most eight, on UTC multiples of it.
fn time_step(span_us: i64) -> i64 {
    const STEPS: [i64; 17] = [
        MINUTE_US,
        2 * MINUTE_US,
        5 * MINUTE_US,
        10 * MINUTE_US,
        15 * MINUTE_US,
        30 * MINUTE_US,
        HOUR_US,
        2 * HOUR_US,
        3 * HOUR_US,
        6 * HOUR_US,
        12 * HOUR_US,
        DAY_US,
        2 * DAY_US,
        7 * DAY_US,
        14 * DAY_US,
        28 * DAY_US,
        91 * DAY_US,
    ];
    STEPS.into_iter().find(|&s| span_us / s <= 8).unwrap_or_else(|| (span_us / 8 / DAY_US + 1) * DAY_US)
}

/// A UTC time in `fmt` (chrono's strftime).
pub fn utc(us: i64, fmt: &str) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(|| us.to_string(), |d| d.format(fmt).to_string())
}

/// How a bucket's start is written in tooltips.
pub fn bucket_time(b: &Buckets, i: usize) -> String {
    let t = b.bucket_start(i);
    if b.width_us >= DAY_US {
        utc(t, "%Y-%m-%d")
    } else {
        utc(t, "%Y-%m-%d %H:%M UTC")
    }
}

pub fn severity_class(severity: u8) -> &'static str {
    match severity {
        3 => "high",
        2 => "medium",
        _ => "low",
    }
}

impl Chart<'_> {
    pub fn svg(&self) -> String {
        let b = self.buckets;
        let count = b.count.max(1);
        let bottom = self.height - BELOW;
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = bottom - TOP;
        let x = |i: usize| LEFT + plot_w * i as f64 / count as f64;

        // Cumulative sums, bottom layer first.
        let mut stacked: Vec<Vec<i64>> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let below = stacked.last();
            let sums = (0..count)
                .map(|i| layer.values.get(i).copied().unwrap_or(0).max(0) + below.map_or(0, |s| s[i]))
                .collect();
            stacked.push(sums);
        }
        let top_max = stacked.last().map_or(0, |s| s.iter().copied().max().unwrap_or(0));
        let step = tick_step(top_max as f64, self.scale.base());
        let y_max = ((top_max as f64 / step).ceil() * step).max(step);
        let y = |v: i64| bottom - plot_h * v as f64 / y_max;

        let mut s = String::with_capacity(4096 + self.layers.len() * count * 12);
        let _ = write!(
            s,
            r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{t}" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
            w = n(WIDTH),
            h = n(self.height),
            t = html(self.title)
        );

        // Grid and y labels.
        let mut v = 0.0;
        while v <= y_max + 0.5 {
            let yy = n(y(v as i64));
            let _ = write!(
                s,
                r#"<line class="grid" x1="{l}" x2="{r}" y1="{yy}" y2="{yy}"/><text class="yl" x="{tx}" y="{ty}">{label}</text>"#,
                l = n(LEFT),
                r = n(WIDTH - RIGHT),
                tx = n(LEFT - 6.0),
                ty = n(y(v as i64) + 4.0),
                label = html(&self.scale.format(v as i64)),
            );
            v += step;
        }

        // Layers: each drawn from the baseline up to its cumulative sum, the top one first, so
        // the ones below paint over it and no lower edge is needed.
        for (layer, sums) in self.layers.iter().zip(&stacked).rev() {
            let total: i64 = layer.values.iter().map(|v| (*v).max(0)).sum();
            let _ = write!(s, r#"<path fill="{}" d="M{},{}"#, layer.color, n(LEFT), n(bottom));
            let mut last_y = bottom;
            for (i, &sum) in sums.iter().enumerate() {
                let yy = y(sum);
                if (yy - last_y).abs() >= 0.05 {
                    let _ = write!(s, "V{}", n(yy));
                    last_y = yy;
                }
                // Runs of equal height become one horizontal line.
                if sums.get(i + 1).is_none_or(|&next| (y(next) - yy).abs() >= 0.05) {
                    let _ = write!(s, "H{}", n(x(i + 1)));
                }
            }
            let _ = write!(
                s,
                r#"V{}Z"><title>{}: {}</title></path>"#,
                n(bottom),
                html(layer.label),
                html(&self.scale.format(total))
            );
        }

        // Time axis.
        let _ = write!(
            s,
            r#"<line class="axis" x1="{l}" x2="{r}" y1="{b}" y2="{b}"/>"#,
            l = n(LEFT),
            r = n(WIDTH - RIGHT),
            b = n(bottom)
        );
        let span = b.end_us() - b.start_us;
        let tick = time_step(span);
        let fmt = if tick >= DAY_US {
            "%Y-%m-%d"
        } else if span > DAY_US {
            "%m-%d %H:%M"
        } else {
            "%H:%M"
        };
        let mut t = (b.start_us + tick - 1).div_euclid(tick) * tick;
        while t <= b.end_us() {
            let tx = LEFT + plot_w * (t - b.start_us) as f64 / span as f64;
            // Labels at the ends stay inside the picture.
            let anchor = if tx > WIDTH - RIGHT - 40.0 {
                " xr"
            } else if tx < LEFT + 20.0 {
                " xs"
            } else {
                ""
            };
            let _ = write!(
                s,
                r#"<line class="tick" x1="{tx}" x2="{tx}" y1="{b}" y2="{b4}"/><text class="xl{anchor}" x="{tx}" y="{ly}">{label}</text>"#,
                tx = n(tx),
                b = n(bottom),
                b4 = n(bottom + 4.0),
                ly = n(bottom + 32.0),
                label = html(&utc(t, fmt)),
            );
            t += tick;
        }

        // Alert flags on the same axis: a triangle under it, and a line across the plot while
        // there are few enough for lines to stay apart (a month of hourly alerts would hide
        // the data behind them).
        let lines = self.flags.len() <= MAX_FLAG_LINES;
        let half = (plot_w / count as f64 / 2.0).clamp(2.0, 5.0);
        for f in &self.flags {
            if f.bucket >= count {
                continue;
            }
            let cx = (x(f.bucket) + x(f.bucket + 1)) / 2.0;
            let line = if lines {
                format!(r#"<line x1="{cx}" x2="{cx}" y1="{top}" y2="{b}"/>"#, cx = n(cx), top = n(TOP), b = n(bottom))
            } else {
                String::new()
            };
            let _ = write!(
                s,
                r##"<a href="#{href}"><g class="flag {sev}"><title>{title}</title>{line}<path d="M{cx},{b2}l{half},9h-{w}Z"/></g></a>"##,
                href = html(&f.href),
                sev = severity_class(f.severity),
                title = html(&f.title),
                cx = n(cx),
                b2 = n(bottom + 2.0),
                half = n(half),
                w = n(2.0 * half),
            );
        }

        if self.hover {
            self.hover_boxes(&mut s, &stacked, x, TOP, plot_h);
        }
        s.push_str("</svg>");
        s
    }

    /// Transparent columns whose tooltips give a bucket's time, total and largest layers.
    fn hover_boxes(&self, s: &mut String, stacked: &[Vec<i64>], x: impl Fn(usize) -> f64, top: f64, plot_h: f64) {
        let Some(totals) = stacked.last() else { return };
        for (i, &total) in totals.iter().enumerate() {
            if total <= 0 {
                continue;
            }
            let mut parts: Vec<(i64, &str)> = self
                .layers
                .iter()
                .filter_map(|l| l.values.get(i).copied().filter(|&v| v > 0).map(|v| (v, l.label)))
                .collect();
            parts.sort_by_key(|p| std::cmp::Reverse(p.0));
            let mut title = format!("{}: {}", bucket_time(self.buckets, i), self.scale.format(total));
            if parts.len() > 1 {
                for (v, label) in parts.iter().take(3) {
                    let _ = write!(title, "; {label} {}", self.scale.format(*v));
                }
            }
            let _ = write!(
                s,
                r#"<rect class="hv" x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
                n(x(i)),
                n(top),
                n(x(i + 1) - x(i)),
                n(plot_h),
                html(&title)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::series::{Span, Unit};

    fn buckets(count: usize) -> Buckets {
        Buckets { start_us: 1_700_000_000_000_000 / HOUR_US * HOUR_US, width_us: HOUR_US, count, unit: Unit::Hour }
    }

    #[test]
    fn labels_and_titles_are_escaped() {
        let b = buckets(3);
        let svg = Chart {
            title: "egress <b>",
            buckets: &b,
            layers: vec![Layer { label: "<script>alert(1)</script>", values: &[1, 2, 3], color: "#123456" }],
            flags: vec![Flag { bucket: 1, severity: 3, title: "x\"><img src=x>".into(), href: "a\"b".into() }],
            scale: Scale::Bytes,
            height: 200.0,
            hover: true,
        }
        .svg();
        assert!(!svg.contains("<script") && !svg.contains("<img") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains(r##"href="#a&quot;b""##));
    }

    #[test]
    fn a_step_edge_is_one_pair_per_change() {
        let b = buckets(4);
        let svg = Chart {
            title: "t",
            buckets: &b,
            layers: vec![Layer { label: "a", values: &[0, 5, 5, 0], color: "#000" }],
            flags: vec![],
            scale: Scale::Count,
            height: 200.0,
            hover: false,
        }
        .svg();
        let d = svg.split(r#"d=""#).nth(1).unwrap().split('"').next().unwrap();
        // Baseline to the end of bucket 0, up, across two buckets, down, across, close.
        assert_eq!(d.matches('V').count(), 3, "{d}");
        assert_eq!(d.matches('H').count(), 3, "{d}");
    }

    #[test]
    fn many_flags_keep_their_triangles_but_lose_their_lines() {
        let b = buckets(200);
        let values = [1; 200];
        let svg = |n: usize| {
            Chart {
                title: "t",
                buckets: &b,
                layers: vec![Layer { label: "a", values: &values, color: "#000" }],
                flags: (0..n)
                    .map(|i| Flag { bucket: i, severity: 2, title: "x".into(), href: "alerts".into() })
                    .collect(),
                scale: Scale::Bytes,
                height: 200.0,
                hover: false,
            }
            .svg()
        };
        let few = svg(MAX_FLAG_LINES);
        assert_eq!((few.matches("<line x1=").count(), few.matches("class=\"flag").count()), (60, 60));
        let many = svg(150);
        assert_eq!((many.matches("<line x1=").count(), many.matches("class=\"flag").count()), (0, 150));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1000.0, 1000.0), 200.0);
        assert_eq!(tick_step(3.0 * 1024.0 * 1024.0, 1024.0), 1024.0 * 1024.0);
        assert_eq!(time_step(7 * DAY_US), DAY_US);
        assert_eq!(time_step(HOUR_US), 10 * MINUTE_US);
        let s = Span { start_us: 0, end_us: 1 };
        assert_eq!(Buckets::rollup(s).count, 1);
    }
}
