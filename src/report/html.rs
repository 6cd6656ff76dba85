//! `exfilmon report html`: one self-contained page to look at rather than read: egress per
//! sender over time with the alerts on the same axis, top destinations and domains, DNS pairs
//! with their suspicion, the monitor's health, and a section per sender linked from the
//! summary.
//!
//! The page makes no request: styles and charts are inline, charts are SVG drawn here
//! ([`super::chart`]), there is no script, and a Content-Security-Policy meta tag forbids
//! loading anything, so it opens offline from a disk or a mail attachment. Every text from
//! the database, the wire or the system's user names goes through [`crate::escape::html`]
//! (after the terminal escaping every table applies), in text nodes and attributes alike.
//!
//! Size is bounded by design, not by the data: everything is summed in SQL, charts have at
//! most [`series::MAX_BUCKETS`] buckets, and every list is capped (the caps below), with a
//! note saying which `exfilmon report` lists the rest.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use rusqlite::params;

use super::chart::{self, bucket_time, severity_class, Chart, Flag, Layer, Scale};
use super::series::{self, Buckets, Egress, Mark, Sender, Span, OTHERS};
use super::table::{col, Cell, Table};
use super::{select, Filter};
use crate::escape;
use crate::principal::{endpoint, proto_name, UserNames};
use crate::store::{Store, StoreError};
use crate::units::rfc3339;

/// Senders with a section of their own (the rest are summed as "others").
pub const SENDER_SECTIONS: usize = 25;
/// Senders stacked one by one in the main chart.
const STACKED: usize = 8;
const ALERTS_SHOWN: usize = 100;
const ALERTS_PER_SENDER: usize = 20;
const TOP_DESTINATIONS: usize = 15;
const DESTINATIONS_PER_SENDER: usize = 5;
const TOP_DOMAINS: usize = 15;
const DNS_PAIRS: usize = 40;
const DNS_PER_SENDER: usize = 10;
const RUNS: usize = 20;
/// Flags on a chart at most (neighbouring buckets share one past it).
const MAX_FLAGS: usize = 200;
/// What a flag's tooltip lists at most (kind and sender, most severe first).
const FLAG_ITEMS: usize = 5;

/// Nothing may be loaded: no script, image, font, frame or connection; inline styles only.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// Series colours, by rank in the main chart; none is the alert red.
const PALETTE: [&str; STACKED] =
    ["#4e79a7", "#f28e2b", "#59a14f", "#76b7b2", "#b07aa1", "#edc948", "#9c755f", "#ff9da7"];
const OTHERS_COLOR: &str = "#bab0ac";
const PACKETS_COLOR: &str = "#8aa9c9";

/// The alerts under one flag: (kind, principal) → (highest severity, alerts).
type FlagGroup<'a> = BTreeMap<(&'a str, Option<i64>), (u8, i64)>;

/// Where and when the page was made.
pub struct Page {
    pub generated_on: String,
    pub now_us: i64,
}

/// Text for the page: shown as every terminal table shows it, then escaped for HTML.
fn text(c: Cell) -> String {
    escape::html(&c.human()).into_owned()
}

/// Plain text made here or by the system (labels, user names): see [`text`].
fn plain(s: &str) -> String {
    text(Cell::Text(s.to_string()))
}

/// Text stored already escaped for terminals (DNS names, alert summaries): see [`text`].
fn wire(s: &str) -> String {
    text(Cell::Escaped(s.to_string()))
}

/// The printable form handed to the chart renderer, which escapes it for HTML itself.
fn printable(s: &str) -> String {
    Cell::Text(s.to_string()).human()
}

fn esc(s: &str) -> Cow<'_, str> {
    escape::html(s)
}

pub fn html(store: &Store, f: &Filter, names: &mut UserNames, page: &Page) -> Result<String, StoreError> {
    let span = series::span(store, f, page.now_us)?;
    let mut out = String::with_capacity(256 * 1024);
    head(&mut out, span, f, page);
    let Some(span) = span else {
        out.push_str("<p class=\"note\">No egress or alert recorded in this range.</p></main></body></html>\n");
        return Ok(out);
    };
    let d = Data::load(store, f, names, span)?;
    d.nav(&mut out);
    d.summary(&mut out);
    d.egress_chart(&mut out);
    d.alerts(&mut out);
    d.destinations(&mut out);
    d.dns(&mut out);
    d.health(&mut out);
    for (rank, s) in d.senders.iter().enumerate() {
        d.sender(&mut out, rank, s);
    }
    let _ = writeln!(
        out,
        "<footer class=\"note\">Made by exfilmon {} on {} at {}. Times are UTC. No script runs in this page and it \
         loads nothing.</footer></main></body></html>",
        esc(env!("CARGO_PKG_VERSION")),
        plain(&page.generated_on),
        esc(&rfc3339(page.now_us))
    );
    Ok(out)
}

fn head(out: &mut String, span: Option<Span>, f: &Filter, page: &Page) {
    let range = match span {
        Some(s) => format!("{} to {}", rfc3339(s.start_us), rfc3339(s.end_us)),
        None => "(no data)".into(),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>exfilmon: egress from {host}, {range}</title><style>{css}</style></head>\
         <body><main><header><h1>Egress from {host}</h1><p class=\"meta\">{range}{user}</p></header>",
        csp = esc(CSP),
        host = plain(&page.generated_on),
        range = esc(&range),
        user = f.uid.map(|u| format!(", uid {u} only")).unwrap_or_default(),
        css = CSS,
    );
}

/// Everything the page shows, summed in SQL and capped.
struct Data {
    buckets: Buckets,
    senders: Vec<Sender>,
    totals: series::Senders,
    /// Runs recorded, malformed frames skipped, frames ignored.
    runs_recorded: (i64, i64, i64),
    egress: Egress,
    marks: Vec<Mark>,
    lost: Vec<i64>,
    alert_counts: Vec<(String, String, i64)>,
    newest: Vec<AlertRow>,
    per_sender_alerts: Vec<AlertRow>,
    destinations: Vec<DstRow>,
    per_sender_dsts: Vec<DstRow>,
    domains: Vec<DomainRow>,
    dns: Table,
    runs: Table,
    /// Labels of principals met outside the sections (alerts of small senders).
    labels: BTreeMap<i64, String>,
}

struct AlertRow {
    ts: i64,
    kind: String,
    severity: String,
    principal: Option<i64>,
    dst: Option<String>,
    bytes: i64,
    summary: String,
}

struct DstRow {
    principal: i64,
    dst: String,
    proto: u8,
    packets: i64,
    bytes: i64,
    senders: i64,
}

struct DomainRow {
    domain: String,
    queries: i64,
    unique: i64,
    name_bytes: i64,
    suspicious: i64,
    alerted: bool,
    senders: i64,
}

impl Data {
    fn load(store: &Store, f: &Filter, names: &mut UserNames, span: Span) -> Result<Data, StoreError> {
        let buckets = Buckets::rollup(span);
        let mut totals = series::senders(store, f, names, SENDER_SECTIONS)?;
        let senders = std::mem::take(&mut totals.top);
        let ids: Vec<i64> = senders.iter().map(|s| s.id).collect();
        let runs_recorded = select(
            store,
            "SELECT count(*), coalesce(sum(malformed), 0), coalesce(sum(ignored), 0) FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .first()
        .copied()
        .unwrap_or((0, 0, 0));
        let egress = series::egress(store, f, &buckets, &ids)?;
        let marks = series::marks(store, f, &buckets)?;
        let lost = series::losses(store, f, &buckets)?;
        let bounds = params![f.since(), f.until(), f.uid()];
        let alert_counts = select(
            store,
            "SELECT a.kind, a.severity, count(*) FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id
             WHERE a.ts >= ?1 AND a.ts < ?2 AND (?3 IS NULL OR p.uid = ?3)
             GROUP BY a.kind, a.severity ORDER BY a.kind, a.severity",
            bounds,
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let alert_row = |r: &rusqlite::Row<'_>| {
            Ok(AlertRow {
                ts: r.get(0)?,
                kind: r.get(1)?,
                severity: r.get(2)?,
                principal: r.get(3)?,
                dst: r.get(4)?,
                bytes: r.get(5)?,
                summary: r.get(6)?,
            })
        };
        let newest = select(
            store,
            "SELECT a.ts, a.kind, a.severity, a.principal_id, a.dst, a.bytes, a.summary
             FROM alerts a LEFT JOIN principals p ON p.id = a.principal_id
             WHERE a.ts >= ?1 AND a.ts < ?2 AND (?3 IS NULL OR p.uid = ?3)
             ORDER BY a.ts DESC, a.id DESC LIMIT ?4",
            params![f.since(), f.until(), f.uid(), ALERTS_SHOWN as i64],
            alert_row,
        )?;
        let per_sender_alerts = select(
            store,
            "SELECT x.ts, x.kind, x.severity, x.principal_id, x.dst, x.bytes, x.summary FROM (
                 SELECT a.ts, a.kind, a.severity, a.principal_id, a.dst, a.bytes, a.summary, a.id,
                        row_number() OVER (PARTITION BY a.principal_id ORDER BY a.ts DESC, a.id DESC) AS rn
                 FROM alerts a JOIN principals p ON p.id = a.principal_id
                 WHERE a.ts >= ?1 AND a.ts < ?2 AND (?3 IS NULL OR p.uid = ?3)) x
             WHERE x.rn <= ?4 ORDER BY x.ts DESC, x.id DESC",
            params![f.since(), f.until(), f.uid(), ALERTS_PER_SENDER as i64],
            alert_row,
        )?;
        let dst_row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<DstRow> {
            let (addr, port, proto): (String, u16, u8) = (r.get(1)?, r.get(2)?, r.get(3)?);
            Ok(DstRow {
                principal: r.get(0)?,
                dst: addr.parse().map_or_else(|_| addr.clone(), |a| endpoint(a, port, proto)),
                proto,
                packets: r.get(4)?,
                bytes: r.get(5)?,
                senders: r.get(6)?,
            })
        };
        // One pass over the egress rows for both lists: per (sender, destination) once, then
        // ranked per sender and summed per destination.
        let (per_sender_dsts, destinations): (Vec<_>, Vec<_>) = select(
            store,
            "WITH agg AS (
                 SELECT e.principal_id, e.dst, e.dport, e.proto, sum(e.packets) AS pk, sum(e.bytes) AS b
                 FROM egress e JOIN principals p ON p.id = e.principal_id
                 WHERE e.minute >= ?1 / 60000000 * 60000000 AND e.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
                 GROUP BY e.principal_id, e.dst, e.dport, e.proto),
             ranked AS (
                 SELECT agg.*, row_number() OVER (PARTITION BY principal_id ORDER BY b DESC, dst, dport, proto) AS rn
                 FROM agg),
             total AS (
                 SELECT dst, dport, proto, sum(pk) AS pk, sum(b) AS b, count(*) AS senders FROM agg
                 GROUP BY dst, dport, proto ORDER BY sum(b) DESC, dst, dport, proto LIMIT ?4)
             SELECT principal_id, dst, dport, proto, pk, b, 1, 0 AS scope FROM ranked WHERE rn <= ?5
             UNION ALL
             SELECT 0, dst, dport, proto, pk, b, senders, 1 FROM total",
            params![f.since(), f.until(), f.uid(), TOP_DESTINATIONS as i64, DESTINATIONS_PER_SENDER as i64],
            |r| Ok((dst_row(r)?, r.get::<_, i64>(7)? == 1)),
        )?
        .into_iter()
        .partition(|(_, total)| !*total);
        let strip = |v: Vec<(DstRow, bool)>| v.into_iter().map(|(d, _)| d).collect::<Vec<_>>();
        let (per_sender_dsts, mut destinations) = (strip(per_sender_dsts), strip(destinations));
        destinations.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.dst.cmp(&b.dst)));
        let domains = select(
            store,
            "SELECT d.domain, sum(d.queries), sum(d.unique_names), sum(d.name_bytes), sum(d.suspicious),
                    max(d.flags & 4), count(DISTINCT d.principal_id)
             FROM dns d JOIN principals p ON p.id = d.principal_id
             WHERE d.minute >= ?1 / 60000000 * 60000000 AND d.minute < ?2 AND (?3 IS NULL OR p.uid = ?3)
             GROUP BY d.domain ORDER BY sum(d.queries) DESC, d.domain LIMIT ?4",
            params![f.since(), f.until(), f.uid(), TOP_DOMAINS as i64],
            |r| {
                Ok(DomainRow {
                    domain: r.get(0)?,
                    queries: r.get(1)?,
                    unique: r.get(2)?,
                    name_bytes: r.get(3)?,
                    suspicious: r.get(4)?,
                    alerted: r.get::<_, i64>(5)? != 0,
                    senders: r.get(6)?,
                })
            },
        )?;
        let mut dns =
            Table { title: super::dns::title(DNS_PER_SENDER), columns: super::dns::COLUMNS.to_vec(), rows: Vec::new() };
        // One host's page: no HOST column.
        let local = super::db::Db::Local { store, observer: String::new() };
        super::dns::dns(&local, f, names, DNS_PER_SENDER, &mut dns).map_err(|e| match e {
            super::ReportError::Store(e) => e,
            other => StoreError::Sql {
                path: store.path().to_owned(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(std::io::Error::other(other.to_string()))),
            },
        })?;
        dns.columns.iter_mut().filter(|c| c.name == "observer").for_each(|c| c.in_table = false);
        let mut runs = super::health::health(store, f)?;
        runs.rows.truncate(RUNS);

        let mut labels = BTreeMap::new();
        let unknown: Vec<i64> =
            newest.iter().filter_map(|a| a.principal).filter(|p| !senders.iter().any(|s| s.id == *p)).collect();
        for id in unknown {
            if let std::collections::btree_map::Entry::Vacant(v) = labels.entry(id) {
                let who: Vec<(Option<i64>, Option<String>)> =
                    select(store, "SELECT uid, host FROM principals WHERE id = ?1", [id], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?;
                let (uid, host) = who.into_iter().next().unwrap_or((None, None));
                v.insert(series::label(names, uid, host.as_deref()));
            }
        }
        Ok(Data {
            buckets,
            senders,
            totals,
            runs_recorded,
            egress,
            marks,
            lost,
            alert_counts,
            newest,
            per_sender_alerts,
            destinations,
            per_sender_dsts,
            domains,
            dns,
            runs,
            labels,
        })
    }

    fn section_of(&self, principal: i64) -> Option<&Sender> {
        self.senders.iter().find(|s| s.id == principal)
    }

    /// A sender's name, linked to its section when it has one.
    fn who(&self, principal: Option<i64>) -> String {
        match principal {
            None => "<span class=\"note\">monitor</span>".into(),
            Some(id) => match self.section_of(id) {
                Some(s) => format!("<a href=\"#u{id}\">{}</a>", plain(&s.label)),
                None => plain(self.labels.get(&id).map_or("?", String::as_str)),
            },
        }
    }

    fn nav(&self, out: &mut String) {
        out.push_str(
            "<nav><a href=\"#summary\">Summary</a><a href=\"#egress\">Egress over time</a><a href=\"#alerts\">Alerts</a>\
             <a href=\"#destinations\">Destinations and domains</a><a href=\"#dns\">DNS</a><a href=\"#health\">Monitor \
             health</a></nav>",
        );
    }

    /// What `report summary` shows, from the numbers already summed for the charts.
    fn totals(&self) -> Table {
        let t = &self.totals;
        let item = |name: &str, value: Cell| vec![Cell::Text(name.into()), value];
        let mut rows = vec![
            item("first packet", t.first_us.map_or(Cell::Null, Cell::Time)),
            item("last packet", t.last_us.map_or(Cell::Null, Cell::Time)),
            item("packets", Cell::Int(t.packets)),
            item("bytes", Cell::Bytes(t.bytes)),
            item("senders", Cell::Int(t.count as i64)),
            item("alerts", Cell::Int(self.alert_counts.iter().map(|c| c.2).sum())),
        ];
        let mut by_kind: BTreeMap<&str, i64> = BTreeMap::new();
        for (kind, _, n) in &self.alert_counts {
            *by_kind.entry(kind).or_default() += n;
        }
        rows.extend(by_kind.into_iter().map(|(kind, n)| item(&format!("alerts: {kind}"), Cell::Int(n))));
        let (runs, malformed, ignored) = self.runs_recorded;
        rows.push(item("runs recorded", Cell::Int(runs)));
        rows.push(item("malformed frames skipped", Cell::Int(malformed)));
        rows.push(item("frames ignored (not IP, inbound)", Cell::Int(ignored)));
        Table { title: String::new(), columns: vec![col("item"), col("value")], rows }
    }

    fn summary(&self, out: &mut String) {
        out.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cols\"><div>");
        table_of(out, &self.totals());
        out.push_str("</div><div><h3>Senders</h3>");
        let most = self.senders.first().map_or(0, |s| s.bytes).max(1);
        let alerts = self.alerts_per_principal();
        let rows = self.senders.iter().enumerate().map(|(rank, s)| {
            vec![
                format!("{}<a href=\"#u{}\">{}</a>", swatch(color(rank)), s.id, plain(&s.label)),
                text(Cell::Bytes(s.bytes)),
                bar(s.bytes, most),
                text(Cell::Int(s.packets)),
                text(Cell::Int(alerts.get(&s.id).copied().unwrap_or(0))),
            ]
        });
        grid(out, &[("sender", Text), ("bytes", Num), ("", Word), ("packets", Num), ("alerts", Num)], rows);
        if self.totals.count > self.senders.len() {
            let _ = write!(
                out,
                "<p class=\"note\">{} senders in all; the {} with the most bytes are shown. <code>exfilmon report \
                 users</code> lists every one.</p>",
                self.totals.count,
                self.senders.len()
            );
        }
        out.push_str("</div></div></section>");
    }

    fn alerts_per_principal(&self) -> BTreeMap<i64, i64> {
        let mut n = BTreeMap::new();
        for m in &self.marks {
            if let Some(p) = m.principal {
                *n.entry(p).or_insert(0) += m.count;
            }
        }
        n
    }

    /// One flag per bucket with alerts (of `principal` only, when given); past [`MAX_FLAGS`]
    /// such buckets, neighbouring buckets share a flag, so a chart's flags stay a few KB.
    fn flags(&self, principal: Option<i64>, href: &str) -> Vec<Flag> {
        let b = &self.buckets;
        let marks: Vec<&Mark> = self.marks.iter().filter(|m| principal.is_none() || m.principal == principal).collect();
        let flagged: BTreeSet<usize> = marks.iter().map(|m| m.bucket).collect();
        let per_flag = if flagged.len() > MAX_FLAGS { b.count.div_ceil(MAX_FLAGS) } else { 1 };
        let mut groups: BTreeMap<usize, FlagGroup<'_>> = BTreeMap::new();
        for m in marks {
            let e = groups.entry(m.bucket / per_flag).or_default().entry((&m.kind, m.principal)).or_insert((0, 0));
            *e = (e.0.max(m.severity), e.1 + m.count);
        }
        groups
            .into_iter()
            .map(|(g, kinds)| {
                let first = g * per_flag;
                let last = (first + per_flag - 1).min(b.count.saturating_sub(1));
                let when = if first == last {
                    bucket_time(b, first)
                } else {
                    format!("{} to {}", bucket_time(b, first), bucket_time(b, last))
                };
                let total: i64 = kinds.values().map(|v| v.1).sum();
                let severity = kinds.values().map(|v| v.0).max().unwrap_or(1);
                let mut items: Vec<_> = kinds.into_iter().collect();
                items.sort_by_key(|(_, (sev, n))| std::cmp::Reverse((*sev, *n)));
                let mut title = format!("{when}: {total} alert{}", if total == 1 { "" } else { "s" });
                for ((kind, p), (sev, n)) in items.iter().take(FLAG_ITEMS) {
                    let who = match (principal, p) {
                        (None, Some(p)) => format!(
                            " from {}",
                            self.section_of(*p)
                                .map(|s| s.label.as_str())
                                .or(self.labels.get(p).map(String::as_str))
                                .unwrap_or("another sender")
                        ),
                        _ => String::new(),
                    };
                    let _ = write!(title, "; {n} {kind} ({}){who}", severity_class(*sev));
                }
                if items.len() > FLAG_ITEMS {
                    let _ = write!(title, "; {} more", items.len() - FLAG_ITEMS);
                }
                Flag { bucket: first + (last - first) / 2, severity, title: printable(&title), href: href.to_string() }
            })
            .collect()
    }

    fn egress_chart(&self, out: &mut String) {
        let b = &self.buckets;
        let _ = write!(
            out,
            "<section id=\"egress\"><h2>Egress over time</h2><p class=\"note\">Bytes per {} by sender, stacked; \
             triangles under the axis mark alerts, with a dashed line while there are few (hover for what, click for the list).</p>",
            esc(&b.label())
        );
        // The top senders one by one, the rest together.
        let mut others = vec![0i64; b.count];
        let mut layers_data: Vec<(String, &[i64], &'static str)> = Vec::new();
        for (rank, s) in self.senders.iter().enumerate() {
            let Some(values) = self.egress.bytes.get(&s.id) else { continue };
            if rank < STACKED {
                layers_data.push((printable(&s.label), values, color(rank)));
            } else {
                add(&mut others, values);
            }
        }
        if let Some(rest) = self.egress.bytes.get(&OTHERS) {
            add(&mut others, rest);
        }
        let others_label = "others".to_string();
        let has_others = others.iter().any(|&v| v > 0);
        let mut layers: Vec<Layer<'_>> =
            layers_data.iter().map(|(label, values, color)| Layer { label, values, color }).collect();
        if has_others {
            layers.push(Layer { label: &others_label, values: &others, color: OTHERS_COLOR });
        }
        let svg = Chart {
            title: &format!("Egress per {} by sender", b.label()),
            buckets: b,
            layers,
            flags: self.flags(None, "alerts"),
            scale: Scale::Bytes,
            height: 300.0,
            hover: true,
        }
        .svg();
        out.push_str(&svg);
        out.push_str("<ul class=\"legend\">");
        for (rank, s) in self.senders.iter().enumerate().take(STACKED) {
            let _ = write!(
                out,
                "<li>{}<a href=\"#u{}\">{}</a> {}</li>",
                swatch(color(rank)),
                s.id,
                plain(&s.label),
                text(Cell::Bytes(s.bytes))
            );
        }
        if has_others {
            let _ = write!(out, "<li>{}others {}</li>", swatch(OTHERS_COLOR), text(Cell::Bytes(others.iter().sum())));
        }
        out.push_str("</ul></section>");
    }

    fn alerts(&self, out: &mut String) {
        out.push_str("<section id=\"alerts\"><h2>Alerts</h2>");
        if self.alert_counts.is_empty() {
            out.push_str("<p class=\"note\">No alert in this range.</p></section>");
            return;
        }
        let total: i64 = self.alert_counts.iter().map(|c| c.2).sum();
        let rows = self
            .alert_counts
            .iter()
            .map(|(kind, severity, n)| vec![plain(kind), severity_badge(severity), text(Cell::Int(*n))]);
        grid(out, &[("kind", Word), ("severity", Word), ("alerts", Num)], rows);
        if total as usize > self.newest.len() {
            let _ = write!(out, "<h3>The newest {} of {total}</h3>", self.newest.len());
        } else {
            let _ = write!(out, "<h3>All {total}, newest first</h3>");
        }
        self.alert_table(out, self.newest.iter(), true);
        if total as usize > self.newest.len() {
            out.push_str("<p class=\"note\"><code>exfilmon report alerts</code> lists every alert.</p>");
        }
        out.push_str("</section>");
    }

    fn alert_table<'a>(&self, out: &mut String, alerts: impl Iterator<Item = &'a AlertRow>, with_sender: bool) {
        let rows = alerts.map(|a| {
            let mut row = vec![text(Cell::Time(a.ts)), plain(&a.kind), severity_badge(&a.severity)];
            if with_sender {
                row.push(self.who(a.principal));
            }
            row.push(a.dst.as_deref().map_or_else(|| text(Cell::Null), wire));
            row.push(text(Cell::Bytes(a.bytes)));
            row.push(wire(&a.summary));
            row
        });
        let mut head = vec![("time (UTC)", Word), ("kind", Word), ("severity", Word)];
        if with_sender {
            head.push(("sender", Text));
        }
        head.extend([("dst", Text), ("bytes", Num), ("summary", Text)]);
        grid(out, &head, rows);
    }

    fn destinations(&self, out: &mut String) {
        out.push_str("<section id=\"destinations\"><h2>Top destinations</h2>");
        dst_table(out, &self.destinations, true);
        out.push_str("<h3>Top domains (DNS)</h3>");
        let most = self.domains.first().map_or(0, |d| d.queries).max(1);
        let rows = self.domains.iter().map(|d| {
            let suspicious = d.suspicious >= super::dns::SUSPICIOUS_NAMES;
            vec![
                wire(&d.domain),
                text(Cell::Int(d.queries)),
                bar(d.queries, most),
                text(Cell::Int(d.unique)),
                text(Cell::Bytes(d.name_bytes)),
                text(Cell::Int(d.suspicious)),
                mark(if d.alerted {
                    "ALERT"
                } else if suspicious {
                    "suspicious"
                } else {
                    ""
                }),
                text(Cell::Int(d.senders)),
            ]
        });
        grid(
            out,
            &[
                ("domain", Text),
                ("queries", Num),
                ("", Word),
                ("unique names", Num),
                ("name bytes", Num),
                ("suspicious", Num),
                ("mark", Word),
                ("senders", Num),
            ],
            rows,
        );
        out.push_str(
            "<p class=\"note\">Registered domains by queries. <code>exfilmon report destinations</code> lists every \
             destination.</p></section>",
        );
    }

    /// DNS pairs (sender, registered domain), the suspicious first.
    fn dns(&self, out: &mut String) {
        out.push_str(
            "<section id=\"dns\"><h2>DNS: senders and domains</h2><p class=\"note\">Per sender and registered \
             domain: unique names and the bytes they hold (the data a tunnel carries out), names that looked \
             encoded; ALERT where a dns_tunnel episode was open.</p>",
        );
        let mut rows: Vec<&Vec<Cell>> = self.dns.rows.iter().collect();
        let at = |name: &str| self.dns.columns.iter().position(|c| c.name == name);
        let rank = |r: &Vec<Cell>| -> (u8, i64, i64) {
            let get = |name: &str| at(name).and_then(|i| r.get(i));
            let mark = match get("mark") {
                Some(Cell::Text(m)) if m == "ALERT" => 2,
                Some(Cell::Text(m)) if m == "suspicious" => 1,
                _ => 0,
            };
            let int = |name: &str| match get(name) {
                Some(Cell::Int(n)) => *n,
                _ => 0,
            };
            (mark, int("suspicious"), int("unique"))
        };
        rows.sort_by_key(|r| std::cmp::Reverse(rank(r)));
        let shown = rows.len().min(DNS_PAIRS);
        self.dns_table(out, rows.into_iter().take(DNS_PAIRS), true);
        if self.dns.rows.len() > shown {
            out.push_str("<p class=\"note\"><code>exfilmon report dns</code> lists every pair.</p>");
        }
        out.push_str("</section>");
    }

    fn dns_table<'a>(&self, out: &mut String, rows: impl Iterator<Item = &'a Vec<Cell>>, with_sender: bool) {
        let col = |name: &str| self.dns.columns.iter().position(|c| c.name == name);
        let (uid, host) = (col("uid"), col("host"));
        let shown = ["domain", "queries", "unique", "name_bytes", "suspicious", "mark", "sample"];
        let rows = rows.map(|r| {
            let mut row = Vec::new();
            if with_sender {
                let id = self.principal_of(uid.and_then(|i| r.get(i)), host.and_then(|i| r.get(i)));
                row.push(match id {
                    Some(id) => self.who(Some(id)),
                    None => {
                        let u = col("user").and_then(|i| r.get(i)).cloned().unwrap_or(Cell::Null);
                        text(u)
                    }
                });
            }
            for name in shown {
                let cell = col(name).and_then(|i| r.get(i)).cloned().unwrap_or(Cell::Null);
                row.push(match (name, cell) {
                    ("mark", Cell::Text(m)) => mark(&m),
                    (_, c) => text(c),
                });
            }
            row
        });
        let mut head = Vec::new();
        if with_sender {
            head.push(("sender", Text));
        }
        head.extend([
            ("domain", Text),
            ("queries", Num),
            ("unique names", Num),
            ("name bytes", Num),
            ("suspicious", Num),
            ("mark", Word),
            ("sample", Text),
        ]);
        grid(out, &head, rows);
    }

    /// The sender a DNS row (uid or host cell) belongs to, among those with a section.
    fn principal_of(&self, uid: Option<&Cell>, host: Option<&Cell>) -> Option<i64> {
        let (uid, host) = match (uid, host) {
            (Some(Cell::Int(u)), _) => (Some(*u), None),
            (_, Some(Cell::Text(h))) => (None, Some(h.as_str())),
            _ => return None,
        };
        self.senders
            .iter()
            .find(|s| s.uid == uid && s.host.as_deref() == host && (uid.is_some() || host.is_some()))
            .map(|s| s.id)
    }

    fn health(&self, out: &mut String) {
        let b = &self.buckets;
        let _ = write!(
            out,
            "<section id=\"health\"><h2>Monitor health</h2><p class=\"note\">Packets accounted per {}; red marks: \
             packets the live monitor lost (receive buffer overruns, sequence gaps).</p>",
            esc(&b.label())
        );
        let flags: Vec<Flag> = self
            .lost
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| Flag {
                bucket: i,
                severity: 3,
                title: format!("{}: {} packets lost", bucket_time(b, i), n),
                href: "health".into(),
            })
            .collect();
        let lost: i64 = self.lost.iter().sum();
        let layer = [Layer { label: "packets", values: &self.egress.packets, color: PACKETS_COLOR }];
        out.push_str(
            &Chart {
                title: &format!("Packets per {}", b.label()),
                buckets: b,
                layers: layer.into_iter().collect(),
                flags,
                scale: Scale::Count,
                height: 200.0,
                hover: false,
            }
            .svg(),
        );
        let _ = write!(
            out,
            "<p>{}</p>",
            if lost == 0 {
                "No packet loss recorded in this range.".to_string()
            } else {
                format!("{} packets lost in this range.", chart::count(lost))
            }
        );
        out.push_str("<h3>Monitor runs</h3>");
        table_of(out, &self.runs);
        out.push_str("</section>");
    }

    fn sender(&self, out: &mut String, rank: usize, s: &Sender) {
        let alerts = self.alerts_per_principal().get(&s.id).copied().unwrap_or(0);
        let _ = write!(
            out,
            "<section id=\"u{id}\" class=\"sender\"><h2>{sw}{label}</h2><p class=\"meta\">{bytes} in {packets} \
             packets, {alerts} alert{plural} · <a href=\"#summary\">back to the summary</a></p>",
            id = s.id,
            sw = swatch(color(rank)),
            label = plain(&s.label),
            bytes = text(Cell::Bytes(s.bytes)),
            packets = text(Cell::Int(s.packets)),
            plural = if alerts == 1 { "" } else { "s" },
        );
        let empty = vec![0; self.buckets.count];
        let values = self.egress.bytes.get(&s.id).unwrap_or(&empty);
        let label = printable(&s.label);
        out.push_str(
            &Chart {
                title: &format!("Egress of {} per {}", s.label, self.buckets.label()),
                buckets: &self.buckets,
                layers: vec![Layer { label: &label, values, color: color(rank) }],
                flags: self.flags(Some(s.id), &format!("u{}-alerts", s.id)),
                scale: Scale::Bytes,
                height: 180.0,
                hover: false,
            }
            .svg(),
        );
        out.push_str("<h3>Top destinations</h3>");
        let dsts: Vec<&DstRow> = self.per_sender_dsts.iter().filter(|d| d.principal == s.id).collect();
        dst_table(out, dsts, false);
        let dns: Vec<&Vec<Cell>> = {
            let col = |name: &str| self.dns.columns.iter().position(|c| c.name == name);
            let (uid, host) = (col("uid"), col("host"));
            self.dns
                .rows
                .iter()
                .filter(|r| self.principal_of(uid.and_then(|i| r.get(i)), host.and_then(|i| r.get(i))) == Some(s.id))
                .collect()
        };
        if !dns.is_empty() {
            out.push_str("<h3>DNS</h3>");
            self.dns_table(out, dns.into_iter(), false);
        }
        let _ = write!(out, "<h3 id=\"u{}-alerts\">Alerts</h3>", s.id);
        let alerts_here: Vec<&AlertRow> = self.per_sender_alerts.iter().filter(|a| a.principal == Some(s.id)).collect();
        if alerts_here.is_empty() {
            out.push_str("<p class=\"note\">None in this range.</p>");
        } else {
            self.alert_table(out, alerts_here.iter().copied(), false);
            if alerts as usize > alerts_here.len() {
                let _ = write!(
                    out,
                    "<p class=\"note\">The newest {} of {alerts}; <code>exfilmon report alerts</code> lists every \
                     one.</p>",
                    alerts_here.len()
                );
            }
        }
        out.push_str("</section>");
    }
}

fn add(into: &mut [i64], values: &[i64]) {
    for (a, v) in into.iter_mut().zip(values) {
        *a += v;
    }
}

fn color(rank: usize) -> &'static str {
    PALETTE.get(rank).copied().unwrap_or(OTHERS_COLOR)
}

fn swatch(color: &'static str) -> String {
    format!("<span class=\"sw\" style=\"background:{color}\"></span>")
}

/// A bar `value / max` of the column's width.
fn bar(value: i64, max: i64) -> String {
    let pct = (value.max(0) as f64 * 100.0 / max.max(1) as f64).clamp(0.0, 100.0);
    format!("<span class=\"bar\" style=\"width:{pct:.1}%\"></span>")
}

fn severity_badge(severity: &str) -> String {
    let class = match severity {
        "high" => "high",
        "medium" => "medium",
        _ => "low",
    };
    format!("<span class=\"sev {class}\">{}</span>", plain(severity))
}

fn mark(m: &str) -> String {
    match m {
        "ALERT" => "<span class=\"mark alert\">ALERT</span>".into(),
        "suspicious" => "<span class=\"mark suspicious\">suspicious</span>".into(),
        other => plain(other),
    }
}

fn dst_table<'a>(out: &mut String, rows: impl IntoIterator<Item = &'a DstRow>, with_senders: bool) {
    let rows: Vec<&DstRow> = rows.into_iter().collect();
    let most = rows.first().map_or(0, |d| d.bytes).max(1);
    let cells = rows.iter().map(|d| {
        let mut row = vec![
            plain(&d.dst),
            plain(&proto_name(d.proto)),
            text(Cell::Bytes(d.bytes)),
            bar(d.bytes, most),
            text(Cell::Int(d.packets)),
        ];
        if with_senders {
            row.push(text(Cell::Int(d.senders)));
        }
        row
    });
    let mut head = vec![("destination", Word), ("proto", Word), ("bytes", Num), ("", Word), ("packets", Num)];
    if with_senders {
        head.push(("senders", Num));
    }
    grid(out, &head, cells);
}

/// How a column is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    /// Names and sentences: wrap anywhere (a tunnel's name has no space to wrap at).
    Text,
    /// Short words and times: never wrapped.
    Word,
    /// Numbers: right-aligned, never wrapped.
    Num,
}

use Col::{Num, Text, Word};

/// A table of HTML cells (each already escaped by the helpers above).
fn grid(out: &mut String, head: &[(&str, Col)], rows: impl Iterator<Item = Vec<String>>) {
    let num = |c: Col| match c {
        Text => " class=\"t\"",
        Word => " class=\"w\"",
        Num => " class=\"n\"",
    };
    out.push_str("<table><thead><tr>");
    for (h, c) in head {
        let _ = write!(out, "<th{}>{}</th>", num(*c), esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    let mut any = false;
    for row in rows {
        any = true;
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(out, "<td{}>{cell}</td>", num(head.get(i).map_or(Text, |h| h.1)));
        }
        out.push_str("</tr>");
    }
    if !any {
        let _ = write!(out, "<tr><td colspan=\"{}\" class=\"note\">(none)</td></tr>", head.len().max(1));
    }
    out.push_str("</tbody></table>");
}

/// A report [`Table`] as HTML: the columns a terminal table shows, cells as it shows them.
fn table_of(out: &mut String, t: &Table) {
    let shown: Vec<usize> = (0..t.columns.len()).filter(|&i| t.columns[i].in_table).collect();
    let numeric = |i: usize| t.rows.iter().any(|r| matches!(r.get(i), Some(Cell::Int(_) | Cell::Bytes(_))));
    let head: Vec<(&str, Col)> = shown
        .iter()
        .map(|&i| match t.rows.first().and_then(|r| r.get(i)) {
            _ if numeric(i) && t.columns.len() > 2 => (t.columns[i].name, Num),
            Some(Cell::Time(_)) => (t.columns[i].name, Word),
            _ => (t.columns[i].name, Text),
        })
        .collect();
    let rows = t.rows.iter().map(|r| shown.iter().map(|&i| text(r.get(i).cloned().unwrap_or(Cell::Null))).collect());
    grid(out, &head, rows);
}

const CSS: &str = "\
:root{--fg:#1d1d1f;--muted:#5f6368;--bg:#fff;--line:#d9d9de;--zebra:#f5f5f7;--link:#1f5fa8}\
@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--muted:#a0a4a8;--bg:#17181a;--line:#3a3b3e;\
--zebra:#1f2023;--link:#8ab4f8}}\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0}\
main{max-width:1120px;margin:0 auto;padding:12px 24px 40px}\
h1{font-size:22px;margin:.3em 0 .1em}h2{font-size:18px;margin:1.8em 0 .4em;padding-bottom:.2em;\
border-bottom:1px solid var(--line)}h3{font-size:15px;margin:1.2em 0 .3em}\
a{color:var(--link)}.meta,.note{color:var(--muted)}.note{font-size:13px}code{font-size:12.5px}\
nav{display:flex;flex-wrap:wrap;gap:4px 16px;padding:.4em 0;border-bottom:1px solid var(--line)}\
.cols{display:flex;flex-wrap:wrap;gap:8px 40px;align-items:flex-start}\
table{border-collapse:collapse;margin:.3em 0;font-size:13px}\
th,td{padding:3px 12px 3px 0;text-align:left;vertical-align:top}\
th{border-bottom:1px solid var(--line);font-weight:600;white-space:nowrap}\
tbody tr:nth-child(even){background:var(--zebra)}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
td.w{white-space:nowrap}td.t{overflow-wrap:anywhere;min-width:12ch;max-width:520px}\
.bar{display:inline-block;height:10px;min-width:1px;background:#4e79a7;vertical-align:middle}\
td:has(>.bar){width:120px}\
.sw{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px;vertical-align:baseline}\
.legend{list-style:none;padding:0;margin:.4em 0;display:flex;flex-wrap:wrap;gap:2px 18px}\
.high{--c:#c62828}.medium{--c:#e67e00}.low{--c:#8d8b1f}.sev{color:var(--c);font-weight:600}\
.mark{padding:0 5px;border-radius:3px;font-size:12px}.mark.alert{background:#c62828;color:#fff}\
.mark.suspicious{background:#ffe0b2;color:#6d4100}\
svg.chart{display:block;width:100%;height:auto;margin:.4em 0}\
svg text{font:11px system-ui,sans-serif;fill:var(--muted)}svg .yl{text-anchor:end}svg .xl{text-anchor:middle}svg .xr{text-anchor:end}svg .xs{text-anchor:start}\
svg .grid{stroke:var(--line)}svg .axis,svg .tick{stroke:var(--muted)}\
svg .flag line{stroke:var(--c);stroke-width:1.2;stroke-dasharray:3 2}svg .flag path{fill:var(--c)}\
svg .hv{fill:transparent}svg .hv:hover{fill:rgba(127,127,127,.18)}\
@media print{nav{display:none}section{break-inside:avoid-page}}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_no_load_and_no_script() {
        assert!(CSP.starts_with("default-src 'none';"));
        assert!(!CSP.contains("script-src") && !CSP.contains("img-src"));
    }

    #[test]
    fn every_cell_helper_escapes() {
        let name = "<img src=x onerror=alert(1)>.evil.example";
        for s in [plain(name), wire(name), text(Cell::Escaped(name.into())), mark(name), severity_badge(name)] {
            assert!(!s.contains("<img"), "{s}");
            assert!(s.contains("&lt;img src=x onerror=alert(1)&gt;"), "{s}");
        }
        // Terminal escapes stay escaped, and a stored escape is not escaped twice.
        assert_eq!(plain("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(wire("a\\x1b[2Jb"), "a\\x1b[2Jb");
    }

    #[test]
    fn a_grid_with_no_rows_says_so() {
        let mut out = String::new();
        grid(&mut out, &[("a", Text), ("b", Num)], std::iter::empty());
        assert!(out.contains("(none)") && out.contains("colspan=\"2\""));
    }
}
