//! `exfilmon unblock`: lift a block before its time.

use anyhow::{Context, Result};
use clap::Args;

use super::block::{principal, record};
use super::Common;
use crate::config::Config;
use crate::nft;
use crate::respond::lifted_event;
use crate::units::wall_clock_us;

#[derive(Debug, Args)]
#[command(after_help = "\
Removes the user (or, for routed traffic, the source address) from the ruleset's blocked set:
egress flows again at once. Records an `unblocked` event in the trail, delivered to the sinks.
Works whether or not the monitor runs; needs root and the ruleset loaded. Unblocking someone
who is not blocked changes nothing and says so.

Examples:
  exfilmon unblock alice
  exfilmon unblock 192.0.2.7")]
pub struct UnblockArgs {
    /// User name, uid, or source address.
    #[arg(value_name = "USER|UID|ADDRESS")]
    pub who: String,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &UnblockArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let who = principal(&args.who, true)?;
    if !nft::unblock(who).with_context(|| format!("cannot unblock {who}"))? {
        eprintln!("exfilmon: {who} was not blocked; nothing to do");
        return Ok(());
    }
    record(&config, &args.common, lifted_event(who, wall_clock_us(), false))?;
    eprintln!("exfilmon: lifted the block of {who}");
    Ok(())
}
