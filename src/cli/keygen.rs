//! `exfilmon keygen`: an Ed25519 key pair for signing trail checkpoints.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::trail::sign;

#[derive(Debug, Args)]
#[command(after_help = "\
Writes PREFIX.key (private, mode 0600; PKCS#8 PEM) and PREFIX.pub (public; SPKI PEM, which
OpenSSL reads too). Existing files are never overwritten. Put the private key's path in
[trail] signing_key; keep a copy of the public key off the machine for `exfilmon verify
--pubkey`.")]
pub struct KeygenArgs {
    /// Path prefix of the two files [default: /etc/exfilmon/trail as root, else ./exfilmon-trail].
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<PathBuf>,
}

pub fn run(args: &KeygenArgs) -> Result<()> {
    let prefix = args.out.clone().unwrap_or_else(|| {
        if nix::unistd::geteuid().is_root() {
            PathBuf::from("/etc/exfilmon/trail")
        } else {
            PathBuf::from("exfilmon-trail")
        }
    });
    if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let (private, public, id) = sign::keygen(&prefix)?;
    let mut out = super::stdout();
    writeln!(
        out,
        "private key: {} (mode 0600)\npublic key:  {}\nkey id:      {id}",
        private.display(),
        public.display()
    )?;
    writeln!(out, "\nIn the configuration:\n[trail]\nsigning_key = {:?}", private.display().to_string())?;
    out.flush()?;
    Ok(())
}
