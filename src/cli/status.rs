//! `exfilmon status`: one line and a Nagios exit status, for monitoring systems and people.
//!
//! Reads what `report health` reads (the newest run's heartbeat row, its sink and ruleset
//! events) and asks nft whether the table is loaded when it can (root).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::nft;
use crate::report::health::{self, Run};
use crate::report::Filter;
use crate::store::Store;
use crate::units::human_duration;

#[derive(Debug, Args)]
#[command(after_help = "\
Prints one line, `EXFILMON OK|WARNING|CRITICAL - ...` with performance data after `|`, as
Nagios, Icinga and Sensu plugins do.

Exit status: 0 OK; 1 WARNING (packets lost, a sink failing, the ruleset cannot be checked);
2 CRITICAL (no monitor running, the database unreadable, the ruleset missing or changed, loss
at or above --critical-loss).")]
pub struct StatusArgs {
    /// Lost packets, as a percentage of those received by the newest run, at which the status
    /// is CRITICAL (any loss is a WARNING).
    #[arg(long, value_name = "PERCENT", default_value_t = 1.0)]
    pub critical_loss: f64,
    #[command(flatten)]
    pub common: Common,
}

/// Nagios plugin states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
        }
    }
}

pub fn run(args: &StatusArgs) -> ExitCode {
    let (level, line) = match status(args) {
        Ok(s) => s,
        Err(e) => (Level::Critical, crate::escape::message(&format!("{e:#}")).into_owned()),
    };
    let mut out = super::stdout();
    let _ = writeln!(out, "EXFILMON {} - {line}", level.as_str()).and_then(|()| out.flush());
    ExitCode::from(level as u8)
}

fn status(args: &StatusArgs) -> Result<(Level, String)> {
    let config = Config::load(args.common.config.as_deref())?;
    let store = Store::open_read(&args.common.db_path(&config))?;
    let Some(run) = health::runs(&store, &Filter::default())?.into_iter().next() else {
        return Ok((Level::Critical, "no monitor has run on this database (systemctl start exfilmon)".into()));
    };
    let mut level = Level::Ok;
    let mut parts = Vec::new();
    let raise = |l: Level, level: &mut Level| *level = (*level).max(l);

    if run.running() {
        parts.push(format!("monitor running (run {}, pid {}, up {})", run.run, run.pid, human_duration(run.uptime)));
    } else {
        raise(Level::Critical, &mut level);
        parts.push(format!("monitor not running (run {} {})", run.run, run.state));
    }
    let pct = loss_percent(&run);
    if run.lost > 0 {
        raise(if pct >= args.critical_loss { Level::Critical } else { Level::Warning }, &mut level);
        parts.push(format!("{} of {} packets lost ({pct:.2}%)", run.lost, run.received + run.lost));
    } else {
        parts.push("no loss".into());
    }
    let failing = health::failing_sinks(&store, run.run)?;
    if failing.is_empty() {
        parts.push("sinks ok".into());
    } else {
        raise(Level::Warning, &mut level);
        parts.push(format!("sinks failing: {}", failing.join(", ")));
    }
    let (l, ruleset) = ruleset(&store, &run)?;
    raise(l, &mut level);
    parts.push(ruleset);
    let perf = format!("received={} lost={} failing_sinks={}", run.received, run.lost, failing.len());
    Ok((level, format!("{} | {perf}", parts.join(", "))))
}

fn loss_percent(run: &Run) -> f64 {
    let seen = (run.received + run.lost).max(1) as f64;
    run.lost as f64 * 100.0 / seen
}

/// Asks nft when it can; else what the running monitor's self-watch last recorded.
fn ruleset(store: &Store, run: &Run) -> Result<(Level, String)> {
    match nft::loaded() {
        Ok(true) => return Ok((Level::Ok, "ruleset loaded".into())),
        Ok(false) => return Ok((Level::Critical, format!("ruleset missing (table {})", nft::TABLE))),
        // Not root, or no nft here: fall back on the monitor's own check.
        Err(_) => {}
    }
    Ok(match health::ruleset_event(store, run.run)?.as_deref() {
        None | Some("ruleset_restored") => (Level::Ok, "ruleset loaded (as the monitor last saw it)".into()),
        Some("ruleset_missing") => (Level::Critical, "ruleset missing (as the monitor last saw it)".into()),
        Some("ruleset_changed") => (Level::Critical, "ruleset changed (as the monitor last saw it)".into()),
        Some(_) => (Level::Warning, "ruleset not checked (nft missing or not permitted)".into()),
    })
}
