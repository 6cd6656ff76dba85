//! Dropping root: the daemon binds the NFLOG group and reads root-only files first, then runs
//! as the configured `user`.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::unistd::{chown, setgid, setgroups, setuid, User};

/// Switches to `name` after the group is bound, handing it the database directory first.
pub fn become_user(name: &str, db: &Path) -> Result<()> {
    let user = User::from_name(name)
        .ok()
        .flatten()
        .with_context(|| format!("config `user`: no user named {name:?} on this system"))?;
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_owned);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&dir)
        .with_context(|| format!("cannot create database directory {}", dir.display()))?;
    let mut owned = vec![dir];
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if Path::new(&p).exists() {
            owned.push(PathBuf::from(p));
        }
    }
    for p in &owned {
        chown(p, Some(user.uid), Some(user.gid))
            .with_context(|| format!("cannot hand {} to user {name} (needs CAP_CHOWN)", p.display()))?;
    }
    setgroups(&[user.gid]).context("cannot drop supplementary groups (needs CAP_SETGID)")?;
    setgid(user.gid).with_context(|| format!("cannot switch to group {}", user.gid))?;
    setuid(user.uid).with_context(|| format!("cannot switch to user {name}"))?;
    Ok(())
}
