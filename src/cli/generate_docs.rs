//! `exfilmon generate-docs DIR` (hidden): man pages for every command and bash, zsh and fish
//! completions, from the argument definitions themselves, for `scripts/deb.sh`.
//!
//! A subcommand of the packaged binary rather than a separate program: the pages and
//! completions then describe exactly the binary in the package, and packaging needs no
//! second build (an `examples/` program would compile the whole crate again, a long LTO link on
//! the release profile) and no running of the build's own code by a build script.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
pub struct GenerateDocsArgs {
    /// Writes DIR/man1/exfilmon*.1 and DIR/completions/{exfilmon.bash,_exfilmon,exfilmon.fish}.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn run(args: &GenerateDocsArgs) -> Result<()> {
    let man = args.dir.join("man1");
    let completions = args.dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut cmd = Cli::command();
    cmd.build();
    // One page per command and subcommand: exfilmon.1, exfilmon-report.1, exfilmon-report-alerts.1...
    clap_mangen::generate_to(cmd.clone(), &man)
        .with_context(|| format!("cannot write man pages to {}", man.display()))?;
    // clap's `help` subcommands are not commands of their own.
    for entry in std::fs::read_dir(&man)? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.contains("-help") || name.starts_with("exfilmon-generate-docs") {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "exfilmon", &completions)
            .with_context(|| format!("cannot write {shell} completions to {}", completions.display()))?;
    }
    Ok(())
}
