//! `exfilmon prune`: delete what is past its `[retention]`, and give the space back.

use anyhow::Result;
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::session;
use crate::store::Store;
use crate::units::{human_bytes, wall_clock_us};

#[derive(Debug, Args)]
#[command(after_help = "\
Each kind of data is kept as long as [retention] says (defaults: egress and dns 60 days,
alerts, events, file reads and runs 400 days), by the time of the data. The tamper-evident
trail loses only a prefix whose every row is past its retention; where it now starts is
recorded, signed with [trail] signing_key when set, so `exfilmon verify` still proves the
rest. A trail broken within that prefix is not pruned (exit 1). The live monitor prunes once a
day by itself.

Databases made before retention existed reuse the space pruning frees but keep their size:
--vacuum rewrites one once so that later prunes give space back. It needs free disk as large
as the database and holds the write lock while it runs: stop the monitor first.")]
pub struct PruneArgs {
    /// Also rewrite the database so that freed space is given back from now on (once, for
    /// databases made before retention existed).
    #[arg(long)]
    pub vacuum: bool,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &PruneArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let signer = session::signer(&config)?;
    let mut store = Store::open(&args.common.db_path(&config))?;
    let pruned = store.prune(&config.retention, wall_clock_us(), signer.as_deref())?;
    println!("{}", pruned.summary());
    if args.vacuum {
        let saved = store.vacuum()?;
        println!("rewrote the database: {} smaller; pruned space is given back from now on", human_bytes(saved));
    } else if pruned.needs_vacuum {
        println!(
            "the freed space is reused but not given back: this database predates retention; run `exfilmon prune \
             --vacuum` once (with the monitor stopped)"
        );
    }
    Ok(())
}
