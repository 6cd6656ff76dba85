//! `exfilmon block`: contain a user's egress by hand, for a while.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::nft;
use crate::principal::Principal;
use crate::respond::{blocked_event, Block};
use crate::sink::{self, Dispatcher};
use crate::store::Store;
use crate::trail::Event;
use crate::units::{human_duration, parse_duration, rfc3339, wall_clock_us};

#[derive(Debug, Args)]
#[command(after_help = "\
Puts the user into the ruleset's `blocked` set with a timeout: the kernel drops the user's
egress (connections already open included; loopback is never blocked) until the timeout passes
or `exfilmon unblock USER` lifts it. Works whether or not the monitor runs; needs root and the
ruleset loaded (`exfilmon nft --apply`). The block is a `blocked` event in the trail, delivered
to the sinks; `exfilmon report health` lists active blocks. Users in [response] exempt (root by
default) are refused.

Examples:
  exfilmon block alice --for 30m
  exfilmon block 1001                  for [response] block_for (default 1h)")]
pub struct BlockArgs {
    /// User name or uid.
    #[arg(value_name = "USER|UID")]
    pub who: String,
    /// How long (e.g. 30m, 2h, 1d; at most 30d) [default: [response] block_for].
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    pub time: Option<Duration>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &BlockArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let who = principal(&args.who, false)?;
    let time = args.time.unwrap_or(config.response.block_for);
    if time > Duration::from_secs(30 * 86_400) {
        bail!("--for {}: at most 30d (a block nobody remembers is an outage)", human_duration(time));
    }
    if config.response.exempt(who, who.uid().and_then(crate::principal::login_group)) {
        bail!("{who} is exempt ([response] exempt; root by default): not blocked");
    }
    nft::block(who, time).with_context(|| format!("cannot block {who}"))?;
    let now = wall_clock_us();
    let until = now.saturating_add(i64::try_from(time.as_micros()).unwrap_or(i64::MAX));
    let by = nix::unistd::getuid();
    let reason = format!("by hand (exfilmon block, run by uid {by})");
    record(
        &config,
        &args.common,
        blocked_event(&Block { principal: who, since_us: now, until_us: until, reason }, false),
    )?;
    eprintln!("exfilmon: blocked {who} until {}; lift it with `exfilmon unblock {}`", rfc3339(until), args.who);
    Ok(())
}

/// A user name, a uid, or (with `address`) an IP address.
pub(super) fn principal(arg: &str, address: bool) -> Result<Principal> {
    if let Ok(uid) = arg.parse::<u32>() {
        return Ok(Principal::Uid(uid));
    }
    if let Ok(ip) = arg.parse::<IpAddr>() {
        if address {
            return Ok(Principal::Host(ip));
        }
        bail!("{arg}: block takes a user name or uid (addresses are blocked by [response] for routed traffic)");
    }
    match nix::unistd::User::from_name(arg) {
        Ok(Some(u)) => Ok(Principal::Uid(u.uid.as_raw())),
        _ => bail!("no user named {:?} on this system (give a user name, a uid or an address)", arg),
    }
}

/// Appends `event` to the trail and hands it to the configured sinks.
pub(super) fn record(config: &Config, common: &Common, event: Event) -> Result<()> {
    let db = common.db_path(config);
    let mut store =
        Store::open(&db).with_context(|| format!("the block is set, but not recorded in {}", db.display()))?;
    let links = store.append_events(std::slice::from_ref(&event), None)?;
    if let Some(d) = Dispatcher::start(&config.sink, &config.observer())? {
        d.push(sink::event_record(&event, links.first(), None));
        for e in d.close(config.monitor.delivery_grace) {
            eprintln!("exfilmon: {}", e.summary);
        }
    }
    Ok(())
}
