//! `exfilmon ship`: send what the postgres sinks have not had yet.

use anyhow::Result;
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::ship;
use crate::store::Store;

#[derive(Debug, Args)]
#[command(after_help = "\
Sends the database's alerts, events, checkpoints, and egress and DNS rows of finished minutes
to every [[sink]] with type = \"postgres\", from where each last stopped, in batches. The
database is the spool: while the server is unreachable rows wait here, and the next round
sends them. Sending twice changes nothing on the server (rows are keyed by observer and trail
position, or observer, minute, principal and destination). `exfilmon run` ships every few
seconds and `replay` at its end by themselves; this catches up after an outage or moves an
old database. Where each target stands: `exfilmon report health`.

The password comes from the sink's password_file, else $PGPASSWORD; never from the url.
Exit status 1 when a target could not be reached (its rows wait for the next round).

Example:
  exfilmon ship --db /var/lib/exfilmon/exfilmon.db --config /etc/exfilmon/exfilmon.toml")]
pub struct ShipArgs {
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &ShipArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    if ship::Target::all(&config).is_empty() {
        anyhow::bail!(
            "no [[sink]] with type = \"postgres\" in the configuration (pass --config FILE; see exfilmon.example.toml)"
        );
    }
    let store = Store::open(&args.common.db_path(&config))?;
    let mut failed = 0;
    for (name, result) in ship::ship_all(&config, &store) {
        match result {
            Ok(s) => println!(
                "{name}: shipped {} trail rows and {} checkpoints ({} rows in {} batches); backlog {}",
                s.trail, s.checkpoints, s.rows, s.batches, s.backlog
            ),
            Err(e) => {
                eprintln!("exfilmon: {e}; the rows wait in the database for the next round");
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => anyhow::bail!("{n} target(s) could not be shipped to"),
    }
}
