//! `exfilmon verify`: recompute the trail's hash chain, check its checkpoints, and check the
//! egress rows against the digests the trail holds.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::Common;
use crate::config::Config;
use crate::store::{Store, StoreError};
use crate::trail::sign;
use crate::trail::verify::{checkpoints_in, verify, verify_egress};
use crate::units::rfc3339;

#[derive(Debug, Args)]
#[command(after_help = "\
Exit status: 0 the trail is intact (every link recomputes, every checkpoint is reached, every
signature checked is good) and so is the egress table (every run's rows of every minute match
the digest the trail holds for them); 1 either is not, or could not be read (the message says
which).

Without a checkpoint, rows cut off the end of the trail cannot be noticed: configure
[trail] signing_key (see `exfilmon keygen`) and keep the checkpoints the sinks send elsewhere;
pass such a copy with --checkpoint to check the trail against it.")]
pub struct VerifyArgs {
    /// Public key from `exfilmon keygen`: checkpoint signatures must be good.
    #[arg(long, value_name = "FILE")]
    pub pubkey: Option<PathBuf>,
    /// A file holding checkpoints that left the machine (the JSON Lines sink's file, or
    /// syslog lines), checked like the stored ones; may be repeated.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: &VerifyArgs) -> Result<()> {
    let config = Config::load(args.common.config.as_deref())?;
    let store = Store::open_read(&args.common.db_path(&config))?;
    let key = args.pubkey.as_deref().map(sign::load_public).transpose()?;
    let mut external = Vec::new();
    for path in &args.checkpoint {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let found = checkpoints_in(&text);
        if found.is_empty() {
            anyhow::bail!(
                "{} holds no checkpoint (a line with a JSON object whose type is \"checkpoint\")",
                path.display()
            );
        }
        external.extend(found);
    }
    let out = verify(store.conn(), key.as_ref(), &external)
        .map_err(|source| StoreError::Sql { path: store.path().to_owned(), source })?;

    // Collected first: the trail's state decides the exit status before output nobody could
    // take does.
    let mut text = String::new();
    let _ = writeln!(
        text,
        "trail: {} rows ({} alerts, {} events, {} egress digests), head {}",
        out.rows, out.alerts, out.events, out.digests, out.head
    );
    if let Some(a) = &out.anchor {
        let signature = match (a.signature_ok, &a.anchor.signature) {
            (_, None) => "unsigned",
            (None, Some(_)) => "signature not checked (no --pubkey)",
            (Some(true), Some(_)) => "signature good",
            (Some(false), Some(_)) => "signature BAD (forged, edited, or another key)",
        };
        let _ = writeln!(
            text,
            "start: rows 1 to {} were pruned on {} (anchor {}, head {})",
            a.anchor.rows,
            rfc3339(a.anchor.ts_us),
            signature,
            a.anchor.head
        );
    }
    match &out.first_break {
        None => drop(writeln!(text, "links: intact")),
        Some(b) => drop(writeln!(text, "links: BROKEN at {b} ({} broken links in all)", out.breaks)),
    }
    if out.checkpoints.is_empty() {
        let _ = writeln!(text, "checkpoints: none; rows cut off the end would go unnoticed (set [trail] signing_key)");
    }
    for r in &out.checkpoints {
        let c = &r.checkpoint;
        let signature = match r.signature_ok {
            None => "signature not checked (no --pubkey)",
            Some(true) => "signature good",
            Some(false) => "signature BAD (forged, edited, or another key)",
        };
        let _ = writeln!(
            text,
            "checkpoint {} ({}): {} rows, key {}, {signature}, {}",
            rfc3339(c.ts_us),
            if r.stored { "stored" } else { "from file" },
            c.rows,
            c.key_id,
            match (&r.problem, r.pruned) {
                (_, true) => "before the trail's pruned start, not checked".to_string(),
                (None, false) => "reached".to_string(),
                (Some(p), false) => format!("NOT REACHED: {p}"),
            }
        );
    }
    if let Some(newest) = out.checkpoints.iter().filter(|r| r.stored).map(|r| r.checkpoint.rows).max() {
        if out.rows > newest {
            let _ = writeln!(
                text,
                "{} rows after the newest stored checkpoint are covered by their links only",
                out.rows - newest
            );
        }
    }
    // Runs that did not finish are not tampering, but a reader of the trail should know.
    let (unfinished, abandoned) = store.unfinished_runs()?;
    for u in &unfinished {
        let _ = writeln!(text, "unfinished: {}", u.describe());
    }
    if abandoned > 0 {
        let _ = writeln!(text, "{abandoned} replay(s) rolled back (their run_rolled_back events say why)");
    }

    // What was seen: each run's egress rows of each minute against their digest in the trail.
    let from_run = store.digests_from_run()?;
    let exempt = |run: i64, _minute: i64| -> Option<&'static str> {
        if run < from_run {
            return Some("written before egress digests existed");
        }
        let u = unfinished.iter().find(|u| u.id == run && u.state == "running")?;
        Some(match (u.mode.as_str(), u.alive) {
            ("replay", _) => "of a replay not committed (not counted)",
            (_, true) => "of the running monitor's last minutes (digested two minutes after they end)",
            (_, false) => "of a monitor that died (digested when the next exfilmon finds it dead)",
        })
    };
    let egress = verify_egress(store.conn(), &exempt)
        .map_err(|source| StoreError::Sql { path: store.path().to_owned(), source })?;
    match &egress.first_break {
        None => drop(writeln!(
            text,
            "egress: intact ({} rows in {} run-minutes match their digests)",
            egress.rows, egress.minutes
        )),
        Some(b) => drop(writeln!(text, "egress: BROKEN: {b} ({} minutes in all)", egress.breaks)),
    }
    if egress.pruned > 0 {
        let _ =
            writeln!(text, "egress: {} digests of pruned minutes (their rows are gone by retention)", egress.pruned);
    }
    for (why, rows) in &egress.uncovered {
        let _ = writeln!(text, "egress: {rows} rows not covered by a digest: {why}");
    }

    let mut stdout = super::stdout();
    let printed = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    if out.intact() && egress.intact() {
        return Ok(printed?);
    }
    if let (true, Some(b)) = (out.intact(), &egress.first_break) {
        anyhow::bail!("the egress table is not intact: {b}");
    }
    let why =
        match (&out.first_break, out.checkpoints.iter().find(|r| r.problem.is_some() || r.signature_ok == Some(false)))
        {
            (Some(b), _) => b.to_string(),
            (None, Some(r)) => format!(
                "checkpoint {}: {}",
                rfc3339(r.checkpoint.ts_us),
                r.problem.as_deref().unwrap_or("its signature is bad")
            ),
            (None, None) if out.anchor.as_ref().is_some_and(|a| a.signature_ok == Some(false)) => {
                "the anchor of the pruned start has a bad signature: it was forged or edited".into()
            }
            (None, None) => "unknown".into(),
        };
    anyhow::bail!("the trail is not intact: {why}")
}
