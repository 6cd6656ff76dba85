//! `exfilmon report`: aureport-style summaries.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{Common, FormatArg};
use crate::config::Config;
use crate::principal::UserNames;
use crate::report::stream::TableWriter;
use crate::report::table::{Column, Format};
use crate::report::{self, when, Filter, ReportError};
use crate::store::Store;

#[derive(Debug, Args)]
#[command(after_help = "\
Times (--since, --until) take RFC 3339 (2026-11-22T08:00:00Z), a date (2026-11-22), an age
(2h, 30m, 7d) or now, recent (10 minutes ago), today, yesterday, this-week, this-month,
this-year. Table output shows user names for uids; JSON and CSV carry uid and user both.")]
pub struct ReportArgs {
    #[command(subcommand)]
    pub what: Option<What>,
    #[command(flatten)]
    pub opts: ReportOpts,
}

#[derive(Debug, Args)]
pub struct ReportOpts {
    /// Only what happened at or after this time.
    #[arg(long, short = 's', global = true, value_name = "TIME")]
    pub since: Option<String>,
    /// Only what happened before this time.
    #[arg(long, short = 'u', global = true, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this uid.
    #[arg(long, global = true, value_name = "UID", conflicts_with = "user")]
    pub uid: Option<u32>,
    /// Only this user (name from the system's user database).
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Subcommand, Clone, Copy)]
pub enum What {
    /// Totals, alerts by kind, top senders and destinations (the default).
    Summary,
    /// Every alert, oldest first.
    Alerts,
    /// Egress per user (or source host when no uid is known).
    Users,
    /// Egress per destination address and port.
    Destinations,
    /// The live monitor: running or not, uptime, packets received and lost, queue depth.
    Health,
    /// DNS per user: the registered domains with the most unique names and name bytes, with
    /// suspicious ones (encoded-looking names, tunnel alerts) marked.
    Dns(DnsArgs),
    /// Sensitive files ([sensitive]): who read each, when, with what program, and what each
    /// reader sent out in the window after (needs the monitor or replay run with --audit-log).
    Files,
    /// The monitor's own events, oldest first: started, stopped, reloaded, ruleset missing or
    /// changed, sink failures, database errors, packet loss.
    Events,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct DnsArgs {
    /// Domains shown per user.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,
}

/// Events shown under `report health` in a table.
const RECENT_EVENTS: usize = 20;

pub fn run(args: &ReportArgs) -> Result<()> {
    let o = &args.opts;
    let config = Config::load(o.common.config.as_deref())?;
    let store = Store::open_read(&o.common.db_path(&config))?;
    let now = chrono::Local::now();
    let bound = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref().map(|s| when::parse(s, now).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))).transpose()
    };
    let uid = match (&o.user, o.uid) {
        (Some(name), _) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
                .with_context(|| format!("--user: no user named {:?} on this system (try --uid)", name))?,
        ),
        (None, uid) => uid,
    };
    let filter = Filter { since_us: bound("since", &o.since)?, until_us: bound("until", &o.until)?, uid };
    let mut names = UserNames::default();
    let format = o.format.format;
    let mut out = std::io::stdout().lock();
    match args.what.unwrap_or(What::Summary) {
        What::Summary => {
            let s = report::summary(&store, &filter, &mut names).map_err(plain)?;
            match format {
                Format::Json => {
                    serde_json::to_writer_pretty(&mut out, &s.json())?;
                    writeln!(out)?;
                }
                Format::Csv => s.totals.write(format, &mut out)?,
                Format::Table => {
                    s.totals.write(format, &mut out)?;
                    writeln!(out)?;
                    s.top_users.write(format, &mut out)?;
                    writeln!(out)?;
                    s.top_destinations.write(format, &mut out)?;
                }
            }
        }
        // Reports whose rows grow with the data stream them out as they are read.
        What::Alerts => stream(report::ALERTS.title, report::ALERTS.columns, format, &mut out, |w| {
            report::alerts(&store, &filter, &mut names, w)
        })?,
        What::Users => stream(report::USERS.title, report::USERS.columns, format, &mut out, |w| {
            report::users(&store, &filter, &mut names, None, w)
        })?,
        What::Destinations => {
            stream(report::DESTINATIONS.title, report::DESTINATIONS.columns, format, &mut out, |w| {
                report::destinations(&store, &filter, None, w)
            })?
        }
        What::Health => {
            report::health::health(&store, &filter)?.write(format, &mut out)?;
            // People also get the latest events; programs ask `report events`.
            if format == Format::Table {
                writeln!(out)?;
                report::events::events(&store, &filter, Some(RECENT_EVENTS))?.write(format, &mut out)?;
            }
        }
        What::Events => report::events::events(&store, &filter, None)?.write(format, &mut out)?,
        What::Dns(a) => stream(&report::dns::title(a.top), report::dns::COLUMNS, format, &mut out, |w| {
            report::dns::dns(&store, &filter, &mut names, a.top, w)
        })?,
        What::Files => {
            report::files::files(&store, &filter, &mut names, config.sensitive.window)?.write(format, &mut out)?
        }
    }
    out.flush()?;
    Ok(())
}

/// Writes a report's rows in `format` as `rows` reads them.
fn stream(
    title: &str,
    columns: &[Column],
    format: Format,
    out: &mut dyn Write,
    rows: impl FnOnce(&mut TableWriter<'_>) -> Result<(), ReportError>,
) -> Result<()> {
    let mut w = TableWriter::new(title, columns, format, out)?;
    rows(&mut w).map_err(plain)?;
    w.finish()?;
    Ok(())
}

/// The error itself, so a closed pipe is still seen as one (`main` makes it success).
fn plain(e: ReportError) -> anyhow::Error {
    match e {
        ReportError::Store(e) => e.into(),
        ReportError::Output(e) => e.into(),
    }
}
