//! Where the log goes: the journal, with priorities, when systemd connected standard error to
//! it (`JOURNAL_STREAM` names stderr's device and inode); else standard error in tracing's
//! format, coloured only on a terminal (a file or pipe gets no escape codes).

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::prelude::*;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: `warn`, or `info` (-v) or `debug` (-vv); `RUST_LOG`
/// overrides.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    if stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            // SYSLOG_IDENTIFIER as the unit's other lines; priorities from the levels (warn 4).
            let journal = journal.with_syslog_identifier("exfilmon".into());
            tracing_subscriber::registry().with(filter).with(journal).init();
            return;
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Whether standard error is the stream systemd opened to the journal for this service:
/// `JOURNAL_STREAM=DEV:INODE` matches stderr (a child whose stderr was redirected keeps the
/// variable but not the stream).
pub fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}
