//! `exfilmon run`: the live monitor's arguments; the monitor itself is [`crate::daemon`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::daemon;

#[derive(Debug, Args)]
#[command(after_help = "\
Needs CAP_NET_ADMIN (root, or the systemd unit in dist/). Load the ruleset first with
`exfilmon nft --apply`. Signals: TERM/INT flush and exit, HUP reloads the configuration
(detector windows restart), a second TERM/INT exits at once. Health: `exfilmon report health`.

Alerts, monitor events and checkpoints go to the config's [[sink]]s as they are stored, named
by `observer` (default: the host name). A jsonl sink writes exfilmon's records, or with
format = \"ecs\" Elastic Common Schema documents for Filebeat or Vector (README.md, \"Sinks\").")]
pub struct RunArgs {
    /// Follow auditd's log (e.g. /var/log/audit/audit.log, through rotation) and tie reads
    /// of [sensitive] files to the egress that follows. Install the rules with
    /// `exfilmon audit-rules --apply`. With `user` in the config, that user must be able to
    /// read the log after a rotation (auditd's log_group).
    #[arg(long = "audit-log", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let db = args.common.db_path(&config);
    daemon::run(daemon::Options {
        config,
        config_path: args.common.config.clone(),
        db,
        audit_log: args.audit_log.clone(),
    })
}
