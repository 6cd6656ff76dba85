//! `exfilmon report` options that choose, order and follow rows (`--kind`, `--severity`,
//! `--dst`, `--sort`, `--reverse`, `--limit`, `--follow`, `--utc`), and the check that refuses
//! an option meaning nothing for the report asked for.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use super::report::{ReportOpts, What};
use crate::principal::UserNames;
use crate::report::db::Db;
use crate::report::select::Select;
use crate::report::table::{Format, Table};
use crate::report::{self, Filter};

/// How often `--follow` looks for new alerts.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct SelectOpts {
    /// Only alerts or events of this kind (volume, dns_tunnel, sink_failed, ...); repeat or
    /// separate with commas for several.
    #[arg(long, short = 'k', global = true, value_name = "KIND", value_delimiter = ',')]
    pub kind: Vec<String>,
    /// Only alerts or events of this severity or higher (as journalctl -p).
    #[arg(long, short = 'p', global = true, value_name = "LEVEL", value_parser = ["low", "medium", "high"])]
    pub severity: Option<String>,
    /// Only this destination: an address (any port), address:port, or a domain and the names
    /// below it.
    #[arg(long, global = true, value_name = "DST")]
    pub dst: Option<String>,
    /// Order by this column (one of the report's JSON fields): numbers and sizes biggest first,
    /// times oldest first, severities highest first, text A to Z.
    #[arg(long, global = true, value_name = "COLUMN")]
    pub sort: Option<String>,
    /// Reverse the order (after --sort).
    #[arg(long, short = 'r', global = true)]
    pub reverse: bool,
    /// At most N rows (after sorting), as journalctl -n.
    #[arg(long, short = 'n', global = true, value_name = "N")]
    pub limit: Option<usize>,
    /// `report alerts`: keep printing alerts as they are stored, like `tail -f` (Ctrl-C ends).
    /// JSON becomes one object per line.
    #[arg(long, short = 'f', global = true)]
    pub follow: bool,
    /// Show times in UTC, and read dates and times without a zone (--since 2026-11-22) as UTC.
    /// Without it both are local time.
    #[arg(long, global = true)]
    pub utc: bool,
}

impl SelectOpts {
    pub fn select(&self) -> Select {
        Select {
            kinds: self.kind.iter().map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
            min_severity: self.severity.clone(),
            dst: self.dst.clone(),
            sort: self.sort.clone(),
            reverse: self.reverse,
            limit: self.limit,
        }
    }
}

/// The report kind's name, as typed.
pub fn name(what: &What) -> &'static str {
    match what {
        What::Summary => "summary",
        What::Alerts => "alerts",
        What::Users => "users",
        What::Destinations => "destinations",
        What::Health => "health",
        What::Dns(_) => "dns",
        What::Files => "files",
        What::Events => "events",
        What::Html(_) => "html",
        What::Timeline(_) => "timeline",
    }
}

/// Refuses options that mean nothing for `what`, naming the reports they work with.
pub fn check(what: &What, o: &ReportOpts) -> Result<()> {
    let s = &o.select;
    let given: [(&str, bool, &[&str]); 10] = [
        (
            "--observer",
            o.observer.is_some(),
            &["summary", "alerts", "users", "destinations", "dns", "events", "health"],
        ),
        (
            "--uid/--user",
            o.uid.is_some() || o.user.is_some(),
            &["summary", "alerts", "users", "destinations", "dns", "files", "html", "timeline"],
        ),
        ("--direction", o.direction.is_some(), &["users", "destinations"]),
        ("--kind", !s.kind.is_empty(), &["alerts", "events"]),
        ("--severity", s.severity.is_some(), &["alerts", "events"]),
        ("--dst", s.dst.is_some(), &["alerts", "destinations"]),
        ("--sort", s.sort.is_some(), &["alerts", "users", "destinations", "health", "dns", "files", "events"]),
        ("--reverse", s.reverse, &["alerts", "users", "destinations", "health", "dns", "files", "events"]),
        ("--limit", s.limit.is_some(), &["alerts", "users", "destinations", "health", "dns", "files", "events"]),
        ("--follow", s.follow, &["alerts"]),
    ];
    let name = name(what);
    for (option, set, kinds) in given {
        if set && !kinds.contains(&name) {
            bail!("{option} means nothing for `report {name}`; it works with report {}", kinds.join(", "));
        }
    }
    Ok(())
}

/// `report alerts --follow`: what matches now, then each alert as it is committed.
pub fn follow(
    db: &Db,
    filter: &Filter,
    select: &Select,
    format: Format,
    names: &mut UserNames,
    out: &mut dyn Write,
) -> Result<()> {
    let mut last = i64::MIN;
    let mut first = true;
    loop {
        // Ids grow in commit order (one writer), so every alert up to the newest id is complete.
        let through: Option<i64> = db.local()?.conn().query_row("SELECT max(id) FROM alerts", [], |r| r.get(0))?;
        let through = through.unwrap_or(last);
        if first || through > last {
            let f = Filter { alert_ids: Some((last, through)), ..filter.clone() };
            let mut t = report::ALERTS.table();
            report::alerts(db, &f, names, &mut t)?;
            let mut s = select.clone();
            // --limit counts the alerts shown at the start, as tail -n does.
            if !first {
                s.limit = None;
            }
            s.apply(&mut t).map_err(anyhow::Error::msg)?;
            if first || !t.rows.is_empty() {
                write_batch(&t, format, first, out)?;
            }
            first = false;
            last = through;
        }
        out.flush()?;
        std::thread::sleep(FOLLOW_POLL);
    }
}

fn write_batch(t: &Table, format: Format, first: bool, out: &mut dyn Write) -> Result<()> {
    match format {
        Format::Json => {
            for row in t.json().as_array().into_iter().flatten() {
                serde_json::to_writer(&mut *out, row)?;
                writeln!(out)?;
            }
        }
        _ if first => t.write(format, out)?,
        // Later batches: the rows without the title and header.
        _ => {
            let mut buf = Vec::new();
            Table { title: String::new(), ..t.clone() }.write(format, &mut buf)?;
            let start = buf.iter().position(|&b| b == b'\n').map_or(buf.len(), |i| i + 1);
            out.write_all(&buf[start..])?;
        }
    }
    Ok(())
}
