//! `exfilmon nft`: print, load or remove the nftables ruleset for the current configuration.

use std::io::Write;

use anyhow::Result;
use clap::Args;

use crate::config::Config;
use crate::nft;

#[derive(Debug, Args)]
#[command(after_help = "\
Without --apply or --remove the ruleset is printed; `exfilmon nft > nft/exfilmon.nft` with the
default configuration gives the shipped file. The table is `inet exfilmon`; other tables
(firewalld, docker, your own) are left alone.")]
pub struct NftArgs {
    /// Load the ruleset into the kernel in one transaction (replaces an earlier one).
    #[arg(long, conflicts_with = "remove")]
    pub apply: bool,
    /// Delete the table; nothing is logged afterwards.
    #[arg(long)]
    pub remove: bool,
    /// Configuration file (TOML); built-in defaults without it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

pub fn run(args: &NftArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref())?;
    if args.remove {
        if !nft::remove()? {
            eprintln!("exfilmon: table {} was not loaded; nothing to remove", nft::TABLE);
        }
    } else if args.apply {
        nft::apply(&config)?;
        eprintln!("exfilmon: loaded table {} (NFLOG group {})", nft::TABLE, config.nflog.group);
    } else {
        let mut out = super::stdout();
        out.write_all(nft::render(&config).as_bytes())?;
        out.flush()?;
    }
    Ok(())
}
