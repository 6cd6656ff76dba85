//! `exfilmon check-config`: what `exfilmon run` checks when it starts, without starting.
//!
//! Each check prints one line (`ok`, `warning` or `error` and what was checked); the exit
//! status is 0 when nothing is an error, else 1 with the first error as the message. Run it as
//! the user the daemon starts as (root under the shipped unit): writability is that user's.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use nix::unistd::{access, AccessFlags};

use super::Common;
use crate::config::Config;
use crate::nft::{self, NftError};
use crate::sink::config::SyslogTarget;
use crate::sink::SinkKind;

/// The configuration the packaged unit runs with.
pub const DEFAULT_CONFIG: &str = "/etc/exfilmon/exfilmon.toml";

#[derive(Debug, Args)]
#[command(after_help = "\
Checks: the file parses (unknown keys, bad values, with file:line), `user` exists, the
[trail] signing key loads, each sink's file, program or socket is usable, the database's
directory is writable, and nft accepts the rendered ruleset (`nft -c`, needs root; skipped with
a warning without it). Without --config it checks /etc/exfilmon/exfilmon.toml when it exists.

Exit status: 0 no errors (warnings allowed); 1 an error, named on the last line.")]
pub struct CheckConfigArgs {
    #[command(flatten)]
    pub common: Common,
}

/// What one check found.
enum Found {
    Ok(String),
    Warning(String),
    Error(String),
}

pub fn run(args: &CheckConfigArgs) -> Result<()> {
    let path: Option<PathBuf> =
        args.common.config.clone().or_else(|| Path::new(DEFAULT_CONFIG).exists().then(|| DEFAULT_CONFIG.into()));
    let mut out = super::stdout();
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            writeln!(out, "error: {e}")?;
            out.flush()?;
            bail!("{e}");
        }
    };
    let name = path.as_ref().map_or_else(|| "built-in defaults".to_string(), |p| p.display().to_string());
    let mut found = vec![Found::Ok(format!("{name} parses"))];
    found.extend(checks(&config, &args.common.db_path(&config)));
    let mut first_error = None;
    for f in &found {
        let line = match f {
            Found::Ok(m) => format!("ok: {m}"),
            Found::Warning(m) => format!("warning: {m}"),
            Found::Error(m) => {
                first_error.get_or_insert_with(|| m.clone());
                format!("error: {m}")
            }
        };
        writeln!(out, "{}", crate::escape::message(&line))?;
    }
    out.flush()?;
    match first_error {
        Some(e) => bail!("{name}: {e}"),
        None => Ok(()),
    }
}

fn checks(config: &Config, db: &Path) -> Vec<Found> {
    let mut found = Vec::new();
    if let Some(user) = &config.user {
        found.push(match nix::unistd::User::from_name(user) {
            Ok(Some(u)) => Found::Ok(format!("user {user} exists (uid {})", u.uid)),
            Ok(None) => {
                Found::Error(format!("user {user:?} does not exist (useradd --system {user}, or remove `user`)"))
            }
            Err(e) => Found::Error(format!("cannot look up user {user:?}: {e}")),
        });
    }
    if let Some(key) = &config.trail.signing_key {
        found.push(match crate::session::signer(config) {
            Ok(_) => Found::Ok(format!("signing key {} loads", key.display())),
            Err(e) => Found::Error(e.to_string()),
        });
    }
    found.push(writable_file("database", db));
    for s in &config.sink {
        let what = format!("sink {}", s.name);
        found.push(match &s.kind {
            SinkKind::Jsonl { path, .. } => writable_file(&what, path),
            SinkKind::Exec { program, .. } => executable(&what, program),
            SinkKind::Email { sendmail, .. } => executable(&what, sendmail),
            SinkKind::Syslog { target: SyslogTarget::Unix(path), .. } => match std::fs::metadata(path) {
                Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                    Found::Ok(format!("{what}: socket {} exists", path.display()))
                }
                Ok(_) => Found::Error(format!("{what}: {} is not a socket", path.display())),
                Err(e) => Found::Error(format!("{what}: socket {}: {e}", path.display())),
            },
            SinkKind::Syslog { target: SyslogTarget::Udp(a) | SyslogTarget::Tcp(a), .. } => {
                match std::net::ToSocketAddrs::to_socket_addrs(a.as_str()) {
                    Ok(_) => Found::Ok(format!("{what}: collector {a} resolves")),
                    Err(e) => Found::Error(format!("{what}: collector {a}: {e}")),
                }
            }
            // Connecting also brings the central schema up to date, as the first round would.
            SinkKind::Postgres { .. } => {
                let target = crate::ship::Target::all(config).into_iter().find(|t| t.name == s.name);
                match target.map(|t| t.connect()) {
                    Some(Ok(_)) => Found::Ok(format!("{what}: server reached, schema up to date")),
                    Some(Err(e)) => Found::Error(e.to_string()),
                    None => Found::Error(format!("{what}: not a postgres sink")),
                }
            }
        });
    }
    if config.response.dns_queue {
        let version = std::process::Command::new("iptables").arg("--version").output();
        found.push(match version {
            Ok(o) if o.status.success() => Found::Ok("[response] dns_queue: iptables found for the queue rules".into()),
            _ => Found::Error(nft::NftError::NoIptables.to_string()),
        });
    }
    if config.user.is_some() && !config.response.block.is_empty() {
        found.push(Found::Warning(
            "[response] block runs nft, which needs CAP_NET_ADMIN: `user` drops it, so blocks would fail \
             (the shipped unit keeps it without `user`)"
                .into(),
        ));
    }
    found.push(match nft::nft(&["-c", "-f", "-"], Some(&nft::render(config))) {
        Ok(_) => Found::Ok("nft accepts the ruleset (nft -c)".into()),
        Err(e @ (NftError::NotInstalled | NftError::NotPermitted)) => {
            Found::Warning(format!("ruleset not checked: {e}"))
        }
        Err(e) => Found::Error(e.to_string()),
    });
    found
}

/// A file the daemon appends to or creates: writable if it exists, else its directory is.
fn writable_file(what: &str, path: &Path) -> Found {
    if path.exists() {
        return match access(path, AccessFlags::W_OK) {
            Ok(()) => Found::Ok(format!("{what}: {} is writable", path.display())),
            Err(e) => Found::Error(format!("{what}: {} is not writable: {e}", path.display())),
        };
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match access(dir, AccessFlags::W_OK | AccessFlags::X_OK) {
        Ok(()) => Found::Ok(format!("{what}: {} can be created", path.display())),
        Err(e) => Found::Error(format!(
            "{what}: cannot create {} (directory {}: {e}); create the directory or fix its permissions",
            path.display(),
            dir.display()
        )),
    }
}

fn executable(what: &str, program: &Path) -> Found {
    match access(program, AccessFlags::X_OK) {
        Ok(()) if program.is_file() => Found::Ok(format!("{what}: {} is executable", program.display())),
        Ok(()) => Found::Error(format!("{what}: {} is not a file", program.display())),
        Err(e) => Found::Error(format!("{what}: {} is not executable: {e}", program.display())),
    }
}
