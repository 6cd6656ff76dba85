//! Command-line interface: argument definitions and the commands behind them.

pub mod audit_rules;
pub mod block;
pub mod check_config;
pub mod generate_docs;
pub mod keygen;
pub mod metrics;
pub mod nft;
pub mod prune;
pub mod replay;
pub mod report;
pub mod report_select;
pub mod run;
pub mod ship;
pub mod status;
pub mod unblock;
pub mod verify;

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::report::table::Format;

const AFTER_HELP: &str = "\
Exit status: 0 success; 1 an error (a message starting with 'exfilmon:' says what failed and on
what); 2 invalid arguments.

Examples:
  exfilmon replay capture.pcap --db ./exfilmon.db     account a capture
  exfilmon report alerts --since today                 alerts raised today
  exfilmon report alerts -p high -f                    high alerts, then new ones as they come
  exfilmon report users --format json                  per-user egress as JSON
  exfilmon status                                      one line, Nagios exit status";

/// exfilmon: who sent how many bytes where. A boundary monitor for Linux servers that
/// attributes outbound traffic to the sending user and alerts on large or covert egress.
#[derive(Debug, Parser)]
#[command(name = "exfilmon", version, after_help = AFTER_HELP, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Feed capture files through the pipeline into the database.
    ///
    /// Reads pcap and pcapng with link types NFLOG (239, from `tcpdump -i nflog:N`; carries
    /// the sending uid), Ethernet (1, with VLAN tags), Linux cooked (113, 276) and raw IP
    /// (101, 228, 229). Packets are attributed to their uid when the capture has one, else to
    /// their source address. Alerts use the packets' own timestamps, so a replay is
    /// deterministic. A capture already replayed into the database is skipped unless --force.
    Replay(replay::ReplayArgs),
    /// What left the machine and what the monitor saw: summary (the default), alerts, users,
    /// destinations, dns, files, health, events. `exfilmon report --help` lists them with
    /// their options; `report alerts --follow` prints alerts as they are stored.
    Report(report::ReportArgs),
    /// Print the nftables ruleset for the configuration, or load (--apply) or remove it.
    Nft(nft::NftArgs),
    /// The live monitor: read the NFLOG group and feed the same pipeline as replay.
    ///
    /// Packets are stamped on receipt and attributed to the sending uid; packets without one
    /// (kernel-made, forwarded) to their source address. Loss (receive buffer overruns,
    /// sequence gaps) is counted, stored and raised as a monitor_loss alert.
    Run(run::RunArgs),
    /// Print the auditd rules watching the [sensitive] files, or install them (--apply).
    AuditRules(audit_rules::AuditRulesArgs),
    /// Recompute the tamper-evident trail, check its signed checkpoints and the egress rows.
    ///
    /// Every alert, monitor event and digest of a minute's egress rows is hash-chained to the
    /// one before; an edited, deleted, inserted or reordered row breaks a link, reported with its
    /// position, and egress rows that no longer match their digest are reported with their
    /// minute. Exit 0 only for an intact trail and egress table.
    Verify(verify::VerifyArgs),
    /// Make an Ed25519 key pair for signing trail checkpoints ([trail] signing_key).
    Keygen(keygen::KeygenArgs),
    /// Check the configuration as `exfilmon run` would at start: the file, `user`, the signing
    /// key, the sinks' files and programs, the database directory and the ruleset (`nft -c`).
    CheckConfig(check_config::CheckConfigArgs),
    /// One line and a Nagios exit status (0 OK, 1 WARNING, 2 CRITICAL): monitor running,
    /// packet loss, sinks failing, ruleset loaded.
    Status(status::StatusArgs),
    /// Prometheus text exposition (node_exporter textfile collector): packets received and
    /// lost, alerts by kind, egress of the top senders, sink failures, run state, database size.
    Metrics(metrics::MetricsArgs),
    /// Write man pages and shell completions (for packaging).
    #[command(hide = true)]
    GenerateDocs(generate_docs::GenerateDocsArgs),
    /// Delete what is past its [retention] and give the space back (the monitor does it daily).
    Prune(prune::PruneArgs),
    /// Send what the postgres sinks (the fleet store) have not had yet: alerts, events,
    /// checkpoints, egress and DNS rows, with this host's observer name and user names.
    Ship(ship::ShipArgs),
    /// Block a user's egress for a while (kernel drop, expires by itself); see [response].
    Block(block::BlockArgs),
    /// Lift a block set by [response] or `exfilmon block` before it expires.
    Unblock(unblock::UnblockArgs),
}

/// Options shared by commands that use the database and configuration.
#[derive(Debug, Args)]
pub struct Common {
    /// Database file [default: /var/lib/exfilmon/exfilmon.db as root, else
    /// $XDG_STATE_HOME/exfilmon/exfilmon.db]; `db` in the config file also sets it.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Configuration file (TOML); built-in defaults without it. See exfilmon.example.toml.
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl Common {
    /// The database path: --db, else the config's `db`, else the default location.
    pub fn db_path(&self, config: &crate::config::Config) -> PathBuf {
        self.db.clone().or_else(|| config.db.clone()).unwrap_or_else(default_db)
    }
}

fn default_db() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/exfilmon/exfilmon.db");
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    state.join("exfilmon/exfilmon.db")
}

/// Standard output for what commands print, where `println!` would panic on a failed write.
/// Errors name standard output and keep their kind: `main` turns a reader that has gone away
/// (`BrokenPipe`, `exfilmon report | head`) into success, anything else (a full disk) into
/// the one-line error. Flush it at the end to see the error of the last line.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

pub struct Stdout(io::StdoutLock<'static>);

impl Stdout {
    pub fn is_terminal(&self) -> bool {
        io::IsTerminal::is_terminal(&self.0)
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(named)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(named)
    }
}

fn named(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot write to standard output: {e}"))
}

/// Output format option shared by reports.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format: an aligned table for people, JSON or CSV for programs (-o as journalctl).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Clap's own consistency checks (unique short flags across every subcommand, ...), which
    /// otherwise only fire when that subcommand is parsed.
    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
