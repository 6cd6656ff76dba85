//! `exfilmon report`: aureport-style summaries.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::{Common, FormatArg};
use crate::config::Config;
use crate::decode::Direction;
use crate::principal::UserNames;
use crate::report::db::Db;
use crate::report::stream::{Rows, TableWriter};
use crate::report::table::{Column, Format, Table};
use crate::report::{self, when, Filter, ReportError};
use crate::store::Store;

#[derive(Debug, Args)]
#[command(after_help = "\
Times (--since, --until) take a date (2026-11-22, local midnight), a date and time
(\"2026-11-22 08:00\", 2026-11-22T08:00, local), RFC 3339 (2026-11-22T08:00:00Z), a time today
(14:00), a day and time (\"yesterday 14:00\"), an age (2h, \"1h ago\", \"30 minutes ago\") or one
of now, recent (10 minutes ago), boot, today, yesterday, this-week, week-ago, this-month,
this-year. Tables show local time with its zone (--utc: UTC, and times typed without a zone
are UTC too); JSON and CSV carry RFC 3339 UTC. Table output shows user names for uids; JSON and
CSV carry uid and user both. An option that means nothing for the report asked for is refused.
`html` writes one page that loads nothing (open it offline); times in it are UTC.

--db postgresql://USER@HOST:PORT/DB reads the fleet store every host ships into (docs/fleet.md):
summary, alerts, users, destinations, dns, events, files, html, timeline, and health (each host's last
round); rows carry their host (observer; HOST in tables; senders in html and timeline are named
HOST: USER), --observer NAME keeps one host's. The password is the config's postgres sink's of
that URL, else $PGPASSWORD.

Examples:
  exfilmon report alerts -S \"yesterday 14:00\" -p high     high alerts since yesterday 14:00
  exfilmon report alerts -k volume --dst 203.0.113.9       volume alerts to one address
  exfilmon report alerts -f -o json                        alerts as JSON lines, following
  exfilmon report users --sort bytes -n 5                  the five biggest senders
  exfilmon report users --db postgresql://soc@fleet-db/exfilmon    the whole fleet's senders")]
pub struct ReportArgs {
    #[command(subcommand)]
    pub what: Option<What>,
    #[command(flatten)]
    pub opts: ReportOpts,
}

#[derive(Debug, Args)]
pub struct ReportOpts {
    /// Only what happened at or after this time (-S as journalctl; -s too).
    #[arg(long, short = 'S', short_alias = 's', global = true, value_name = "TIME")]
    pub since: Option<String>,
    /// Only what happened before this time (-U as journalctl).
    #[arg(long, short = 'U', global = true, value_name = "TIME")]
    pub until: Option<String>,
    /// Only the rows of this host: its `observer` name (the fleet store, --db postgresql://...).
    #[arg(long, global = true, value_name = "NAME")]
    pub observer: Option<String>,
    /// Only this uid.
    #[arg(long, global = true, value_name = "UID", conflicts_with = "user")]
    pub uid: Option<u32>,
    /// Only this user: a name from the system's user database, or a uid.
    #[arg(long, short = 'u', global = true, value_name = "NAME|UID")]
    pub user: Option<String>,
    /// Only egress of connections opened here (initiated), or only replies on connections remote
    /// peers opened (served: a web server's answers). Captures without the ruleset's log
    /// prefixes say neither (unknown).
    #[arg(long, global = true, value_enum, value_name = "WHICH")]
    pub direction: Option<DirectionArg>,
    #[command(flatten)]
    pub format: FormatArg,
    #[command(flatten)]
    pub select: super::report_select::SelectOpts,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DirectionArg {
    Initiated,
    Served,
    Unknown,
}

impl From<DirectionArg> for Direction {
    fn from(d: DirectionArg) -> Direction {
        match d {
            DirectionArg::Initiated => Direction::Initiated,
            DirectionArg::Served => Direction::Served,
            DirectionArg::Unknown => Direction::Unknown,
        }
    }
}

#[derive(Debug, Subcommand, Clone)]
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
    /// --format json gives the list of runs; --shipping the fleet store's shipping state.
    Health(HealthArgs),
    /// DNS per user: the registered domains with the most unique names and name bytes, with
    /// suspicious ones (encoded-looking names, tunnel alerts) marked.
    Dns(DnsArgs),
    /// Sensitive files ([sensitive]): who read each, when, with what program, and what each
    /// reader sent out in the window after (needs the monitor or replay run with --audit-log).
    Files,
    /// The monitor's own events, oldest first: started, stopped, reloaded, ruleset missing or
    /// changed, sink failures, database errors, packet loss.
    Events,
    /// One self-contained HTML page to look at: egress per sender over time with alerts marked,
    /// top destinations and domains, DNS pairs, monitor health, a section per sender. It runs no
    /// script and loads nothing, so it opens offline or from a mail attachment.
    Html(HtmlArgs),
    /// Egress over time in the terminal: a sparkline per sender (its total beside it), marks
    /// under the columns where it raised alerts. --format json|csv gives the numbers instead.
    Timeline(TimelineArgs),
}

#[derive(Debug, Args, Clone, Copy)]
pub struct HealthArgs {
    /// Only where each postgres sink stands: trail position shipped through, backlog, last
    /// round that reached the server, last error (in JSON: an array of those, one per target).
    #[arg(long)]
    pub shipping: bool,
}

#[derive(Debug, Args, Clone)]
pub struct HtmlArgs {
    /// Write the page to FILE [default: standard output, unless it is a terminal].
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct TimelineArgs {
    /// Columns to fit [default: the terminal's width, else $COLUMNS, else 80].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(40..))]
    pub width: Option<u16>,
    /// Senders shown, most bytes first; the rest share one row.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub top: usize,
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
    let what = args.what.clone().unwrap_or(What::Summary);
    super::report_select::check(&what, o)?;
    report::zone::show_utc(o.select.utc);
    let config = Config::load(o.common.config.as_deref())?;
    let path = o.common.db_path(&config);
    let local;
    let db = match path.to_str().filter(|p| p.starts_with("postgresql://") || p.starts_with("postgres://")) {
        Some(url) => central(url, &config)?,
        None => {
            local = Store::open_read(&path)?;
            Db::Local { store: &local, observer: config.observer() }
        }
    };
    let now = chrono::Local::now();
    let bound = |flag: &str, v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| match o.select.utc {
                true => when::parse(s, now.with_timezone(&chrono::Utc)),
                false => when::parse(s, now),
            })
            .map(|r| r.map_err(|e| anyhow::anyhow!("--{flag}: {e}")))
            .transpose()
    };
    let uid = match (&o.user, o.uid) {
        (Some(name), _) => Some(
            nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .map(|u| u.uid.as_raw())
                .or_else(|| name.parse().ok())
                .with_context(|| format!("--user: no user named {:?} on this system (try --uid)", name))?,
        ),
        (None, uid) => uid,
    };
    let filter = Filter {
        since_us: bound("since", &o.since)?,
        until_us: bound("until", &o.until)?,
        uid,
        direction: o.direction.map(Direction::from),
        observer: o.observer.clone(),
        ..Filter::default()
    };
    let select = o.select.select();
    let mut names = UserNames::default();
    let format = o.format.format;
    let mut out = super::stdout();
    if o.select.follow {
        return super::report_select::follow(&db, &filter, &select, format, &mut names, &mut out);
    }
    // Every report that is one table takes --kind, --sort, --limit and the rest the same way.
    let sel = |t: Table| -> Result<Table> {
        let mut t = t;
        select.apply(&mut t).map_err(anyhow::Error::msg)?;
        Ok(t)
    };
    match what {
        What::Summary => {
            let s = report::summary(&db, &filter, &mut names).map_err(plain)?;
            match format {
                Format::Json => {
                    serde_json::to_writer_pretty(&mut out, &s.json())?;
                    writeln!(out)?;
                }
                // The three tables, each with its header, a blank line between them.
                Format::Csv => {
                    s.totals.write(format, &mut out)?;
                    writeln!(out)?;
                    s.top_users.write(format, &mut out)?;
                    writeln!(out)?;
                    s.top_destinations.write(format, &mut out)?;
                }
                Format::Table => {
                    s.totals.write(format, &mut out)?;
                    writeln!(out)?;
                    s.top_users.write(format, &mut out)?;
                    writeln!(out)?;
                    s.top_destinations.write(format, &mut out)?;
                }
            }
        }
        // Reports whose rows grow with the data stream out as they are read, unless rows are
        // to be picked or sorted (--kind, --sort, --limit...): then they are collected first.
        What::Alerts => {
            table_or_stream(report::ALERTS.title, report::ALERTS.columns, &select, format, &mut out, |w| {
                report::alerts(&db, &filter, &mut names, w)
            })?
        }
        What::Users => table_or_stream(report::USERS.title, report::USERS.columns, &select, format, &mut out, |w| {
            report::users(&db, &filter, &mut names, None, w)
        })?,
        What::Destinations => {
            table_or_stream(report::DESTINATIONS.title, report::DESTINATIONS.columns, &select, format, &mut out, |w| {
                report::destinations(&db, &filter, None, w)
            })?
        }
        What::Health(h) if h.shipping => sel(report::health::shipping(db.local()?)?)?.write(format, &mut out)?,
        What::Health(_) if db.central() => sel(report::health::fleet(&db, &filter)?)?.write(format, &mut out)?,
        What::Health(_) => {
            sel(report::health::health(db.local()?, &filter)?)?.write(format, &mut out)?;
            // People also get the shipping state and the latest events; programs ask `report
            // events` and `report health --shipping`, and `report health --format csv` ends with
            // the shipping table (the JSON stays the list of runs, which scripts read).
            let shipping = report::health::shipping(db.local()?)?;
            if format != Format::Json && !shipping.rows.is_empty() {
                writeln!(out)?;
                shipping.write(format, &mut out)?;
            }
            if format == Format::Table {
                let blocks = report::health::blocks(db.local()?)?;
                if !blocks.rows.is_empty() {
                    writeln!(out)?;
                    blocks.write(format, &mut out)?;
                }
                writeln!(out)?;
                report::events::events(&db, &filter, Some(RECENT_EVENTS))?.write(format, &mut out)?;
            }
        }
        What::Events => sel(report::events::events(&db, &filter, None)?)?.write(format, &mut out)?,
        What::Dns(a) => {
            table_or_stream(&report::dns::title(a.top), report::dns::COLUMNS, &select, format, &mut out, |w| {
                report::dns::dns(&db, &filter, &mut names, a.top, w)
            })?
        }
        What::Files => {
            let t = report::files::files(&db, &filter, &mut names, config.sensitive.window).map_err(plain)?;
            sel(t)?.write(format, &mut out)?
        }
        What::Html(a) => {
            let page = report::html::Page { generated_on: crate::sink::hostname(), now_us: now.timestamp_micros() };
            let text = report::html::html(&db, &filter, &mut names, &page).map_err(plain)?;
            match &a.output {
                Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
                None if out.is_terminal() => {
                    anyhow::bail!("report html writes a page, not a terminal's text: give --output FILE or redirect it")
                }
                None => out.write_all(text.as_bytes())?,
            }
        }
        What::Timeline(a) => {
            let width = a.width.map(usize::from).unwrap_or_else(terminal_width);
            let t = report::timeline::timeline(&db, &filter, &mut names, width, a.top, now.timestamp_micros())
                .map_err(plain)?;
            match format {
                Format::Table => {
                    let color = report::timeline::use_color(out.is_terminal(), std::env::var_os("NO_COLOR").as_deref());
                    t.write(&mut out, color)?
                }
                _ => t.table().write(format, &mut out)?,
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// The fleet store at `url` (`--db postgresql://...`), with the password of the postgres sink
/// of that URL in the config, else `$PGPASSWORD`.
fn central(url: &str, config: &Config) -> Result<Db<'static>> {
    let target = crate::ship::Target::all(config)
        .into_iter()
        .find(|t| t.url_is(url))
        .unwrap_or_else(|| crate::ship::Target::url(url));
    let mut client = target.open()?;
    // A report only reads, so it brings no schema: a store no shipper has brought to version
    // 4 has no programs to name.
    let programs = client
        .query_one("SELECT to_regclass('egress_programs') IS NOT NULL", &[])
        .map_err(|e| anyhow::anyhow!("{}: {}", target.name, crate::ship::pg_text(&e)))?
        .get(0);
    Ok(Db::Central { client: Box::new(std::cell::RefCell::new(client)), name: target.name, programs })
}

/// The terminal's width on standard output, else `$COLUMNS`, else 80; never below what a
/// timeline fits in.
fn terminal_width() -> usize {
    terminal_size::terminal_size_of(std::io::stdout())
        .map(|(w, _)| usize::from(w.0))
        .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
        .unwrap_or(80)
        .max(report::timeline::MIN_WIDTH)
}

/// Writes a report's rows in `format` as `rows` reads them; collected and then picked and
/// sorted first when `select` asks for it.
fn table_or_stream(
    title: &str,
    columns: &[Column],
    select: &report::select::Select,
    format: Format,
    out: &mut dyn Write,
    rows: impl FnOnce(&mut dyn Rows) -> Result<(), ReportError>,
) -> Result<()> {
    if *select != report::select::Select::default() {
        let mut t = Table { title: title.into(), columns: columns.to_vec(), rows: Vec::new() };
        rows(&mut t).map_err(plain)?;
        select.apply(&mut t).map_err(anyhow::Error::msg)?;
        return Ok(t.write(format, out)?);
    }
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
        e @ ReportError::Central { .. } => e.into(),
    }
}
