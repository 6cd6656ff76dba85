//! `exfilmon audit-rules`: the auditd watch rules for `[sensitive]` paths.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::source::audit::rules::{self, RULES_FILE};

#[derive(Debug, Args)]
#[command(after_help = "\
Prints one `-w PATH -p r -k KEY` rule per [sensitive] path. --apply writes them to
/etc/audit/rules.d/exfilmon.rules and loads them (augenrules --load, else auditctl -R); needs
root and the auditd package. Then run the monitor with --audit-log /var/log/audit/audit.log.")]
pub struct AuditRulesArgs {
    /// Write the rules to /etc/audit/rules.d/exfilmon.rules and load them.
    #[arg(long, conflicts_with = "remove")]
    pub apply: bool,
    /// Delete that file and every loaded rule with the configured key.
    #[arg(long)]
    pub remove: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &AuditRulesArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let file = std::path::Path::new(RULES_FILE);
    let done = if args.apply {
        rules::apply(&config.sensitive.paths, &config.sensitive.audit_key, file)?
    } else if args.remove {
        rules::remove(&config.sensitive.audit_key, file)?
    } else {
        let mut out = super::stdout();
        out.write_all(rules::render(&config.sensitive.paths, &config.sensitive.audit_key).as_bytes())?;
        out.flush()?;
        return Ok(());
    };
    for line in done {
        eprintln!("exfilmon: {line}");
    }
    Ok(())
}
