//! `exfilmon metrics`: the database as Prometheus text exposition, for node_exporter's
//! textfile collector (or any scraper of `.prom` files).
//!
//! Counters are totals over the database (every run's health row, every alert and egress row
//! kept), so they only grow while nothing is pruned. Cardinality is bounded: one series per
//! alert kind, per configured sink, and per principal of the `--top` senders, the rest summed
//! under `principal="other"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::principal::UserNames;
use crate::report::health;
use crate::report::Filter;
use crate::store::Store;

#[derive(Debug, Args)]
#[command(after_help = "\
For node_exporter's textfile collector, write the file atomically with --output, e.g. from the
exfilmon-metrics.timer shipped in dist/ (every minute):
  exfilmon metrics --output /var/lib/prometheus/node-exporter/exfilmon.prom")]
pub struct MetricsArgs {
    /// Principals (users, or hosts without a uid) with their own egress series; the rest are
    /// summed as principal=\"other\".
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
    /// Write to FILE (through a temporary file and a rename, so a scrape never sees half of
    /// it) instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &MetricsArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let store = Store::open_read(&args.common.db_path(&config))?;
    let text = exposition(&store, args.top)?;
    match &args.output {
        None => {
            let mut out = super::stdout();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
        Some(path) => {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(format!(".{}.tmp", std::process::id()));
            let tmp = PathBuf::from(tmp);
            std::fs::write(&tmp, &text).with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        }
    }
    Ok(())
}

/// A label value, escaped as the exposition format says (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }
}

pub fn exposition(store: &Store, top: usize) -> Result<String> {
    let conn = store.conn();
    let runs = health::runs(store, &Filter::default())?;
    let mut o = Out(String::new());

    let newest = runs.first();
    o.family("exfilmon_up", "gauge", "1 when the newest monitor run is running (fresh heartbeat), else 0.");
    o.sample("exfilmon_up", &[], u8::from(newest.is_some_and(|r| r.running())));
    if let Some(r) = newest {
        o.family("exfilmon_run_start_time_seconds", "gauge", "Start of the newest monitor run, Unix time.");
        o.sample("exfilmon_run_start_time_seconds", &[], r.started_us / 1_000_000);
        o.family("exfilmon_heartbeat_time_seconds", "gauge", "Last heartbeat of the newest monitor run, Unix time.");
        o.sample("exfilmon_heartbeat_time_seconds", &[], r.updated_us / 1_000_000);
        o.family("exfilmon_queue_depth", "gauge", "Writes waiting for the database in the newest run.");
        o.sample("exfilmon_queue_depth", &[], r.queue);
    }
    o.family("exfilmon_packets_received_total", "counter", "Packets the monitor received from NFLOG, all runs.");
    o.sample("exfilmon_packets_received_total", &[], runs.iter().map(|r| r.received).sum::<i64>());
    o.family("exfilmon_packets_lost_total", "counter", "Packets the kernel logged but the monitor lost, all runs.");
    o.sample("exfilmon_packets_lost_total", &[], runs.iter().map(|r| r.lost).sum::<i64>());

    o.family("exfilmon_alerts_total", "counter", "Alerts raised, by kind.");
    let mut stmt = conn.prepare("SELECT kind, count(*) FROM alerts GROUP BY kind ORDER BY kind")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (kind, n) = row?;
        o.sample("exfilmon_alerts_total", &[("kind", &kind)], n);
    }

    o.family(
        "exfilmon_egress_bytes_total",
        "counter",
        "Bytes sent, for the top principals by bytes and the rest as principal=\"other\".",
    );
    let mut stmt = conn.prepare(
        "SELECT p.uid, p.host, sum(e.bytes) FROM egress e JOIN principals p ON p.id = e.principal_id
         GROUP BY p.id ORDER BY sum(e.bytes) DESC, p.id",
    )?;
    let mut names = UserNames::default();
    let mut by_name = BTreeMap::<String, i64>::new();
    let mut other = 0i64;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, i64>(2)?)))?;
    for (i, row) in rows.enumerate() {
        let (uid, host, bytes) = row?;
        if i >= top {
            other += bytes;
            continue;
        }
        let name = match (uid, host) {
            (Some(u), _) => u32::try_from(u).ok().and_then(|u| names.get(u)).unwrap_or_else(|| format!("uid {u}")),
            (None, Some(h)) => h,
            (None, None) => "unknown".into(),
        };
        *by_name.entry(name).or_default() += bytes;
    }
    for (name, bytes) in &by_name {
        o.sample("exfilmon_egress_bytes_total", &[("principal", name)], bytes);
    }
    o.sample("exfilmon_egress_bytes_total", &[("principal", "other")], other);

    o.family("exfilmon_sink_failures_total", "counter", "Times a sink went from working to failing, by sink.");
    let mut stmt = conn.prepare(
        "SELECT coalesce(json_extract(details, '$.sink'), ''), count(*) FROM events WHERE kind = 'sink_failed'
         GROUP BY 1 ORDER BY 1",
    )?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (sink, n) = row?;
        o.sample("exfilmon_sink_failures_total", &[("sink", &sink)], n);
    }
    if let Some(r) = newest {
        o.family("exfilmon_sink_failing", "gauge", "1 while a sink of the newest run is failing, by sink.");
        let failing = health::failing_sinks(store, r.run)?;
        for (sink, _) in r.sinks() {
            o.sample("exfilmon_sink_failing", &[("sink", sink)], u8::from(failing.iter().any(|f| f == sink)));
        }
        o.family("exfilmon_sink_dropped_total", "counter", "Records a sink dropped in the newest run, by sink.");
        for (sink, s) in r.sinks() {
            let dropped = s["failed"].as_u64().unwrap_or(0) + s["overflow"].as_u64().unwrap_or(0);
            o.sample("exfilmon_sink_dropped_total", &[("sink", sink)], dropped);
        }
    }

    let shipping = store.ship_states()?;
    if !shipping.is_empty() {
        o.family("exfilmon_ship_backlog", "gauge", "Trail rows and checkpoints not yet in the fleet store, by target.");
        for s in &shipping {
            o.sample("exfilmon_ship_backlog", &[("target", &s.target)], s.backlog);
        }
        o.family("exfilmon_ship_failing", "gauge", "1 while the last round to a fleet store failed, by target.");
        for s in &shipping {
            o.sample("exfilmon_ship_failing", &[("target", &s.target)], u8::from(s.last_error.is_some()));
        }
    }

    o.family("exfilmon_database_size_bytes", "gauge", "The database file and its write-ahead log.");
    o.sample("exfilmon_database_size_bytes", &[], health::database_size(store.path()));
    o.family("exfilmon_blocks_active", "gauge", "Principals whose egress [response] or exfilmon block holds blocked.");
    o.sample("exfilmon_blocks_active", &[], store.active_blocks(crate::units::wall_clock_us())?.len());
    Ok(o.0)
}
