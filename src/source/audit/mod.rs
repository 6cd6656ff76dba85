//! The Linux audit trail as a second source: auditd's log, read as it grows (`exfilmon run
//! --audit-log`) or saved (`exfilmon replay --audit-log`).
//!
//! [`parse`] views one line, [`event`] assembles records into events by serial, [`follow`]
//! tails a live log through rotation, [`rules`] renders the watch rules. [`Reader`] puts the
//! first two together and adds a read file's size: live from the file system, from a saved
//! log only from the configuration, so a replay gives the same verdicts on any machine.
//! (`pipeline::Merge` interleaves saved events with a capture's packets by time.)

pub mod event;
pub mod follow;
pub mod parse;
pub mod rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use event::{AuditEvent, AuditNote, FileRead, Login, NetPkt};

/// A watched file, with the size to judge its reads by when the file system cannot say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitivePath {
    pub path: PathBuf,
    pub size: Option<u64>,
}

/// Lines to events, with each read's file size filled in.
pub struct Reader {
    assembler: event::Assembler,
    paths: Vec<SensitivePath>,
    /// Ask the file system for sizes (a live log); a saved log may be replayed elsewhere.
    live: bool,
}

impl Reader {
    /// Records carrying `key` are reads of `paths`.
    pub fn new(key: &str, paths: &[SensitivePath], live: bool) -> Reader {
        Reader { assembler: event::Assembler::new(key), paths: paths.to_vec(), live }
    }

    pub fn line(&mut self, line: &[u8], out: &mut dyn FnMut(AuditEvent)) {
        let (paths, live) = (&self.paths, self.live);
        self.assembler.line(line, &mut |ev| out(complete(ev, paths, live)));
    }

    /// Emits the events still being assembled (end of a saved log).
    pub fn finish(&mut self, out: &mut dyn FnMut(AuditEvent)) {
        let (paths, live) = (&self.paths, self.live);
        self.assembler.finish(&mut |ev| out(complete(ev, paths, live)));
    }

    /// Lines read (`audit_lines`), and the lines and events not used, by reason.
    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        let mut c = self.assembler.skipped.clone();
        c.insert("audit_lines", self.assembler.lines);
        c
    }

    /// Every event of a saved log, in file order.
    pub fn read_file(&mut self, path: &Path) -> Result<Vec<AuditEvent>, follow::FollowError> {
        let mut f = follow::Follower::open(path)?;
        let mut events = Vec::new();
        loop {
            let n = f
                .poll(&mut |line| self.line(line, &mut |ev| events.push(ev)))
                .map_err(|source| follow::FollowError { path: path.to_owned(), source })?;
            if n == 0 {
                break;
            }
        }
        self.finish(&mut |ev| events.push(ev));
        Ok(events)
    }
}

/// A read's size: the file's, read now; else the size the config gives for that path. A name
/// the record left relative (opened through a directory descriptor) is matched to the
/// configured file of that name.
fn complete(ev: AuditEvent, paths: &[SensitivePath], live: bool) -> AuditEvent {
    let AuditEvent::Read(mut r) = ev else {
        return ev;
    };
    use std::os::unix::ffi::OsStrExt;
    if r.path.first() != Some(&b'/') {
        let name = Path::new(std::ffi::OsStr::from_bytes(&r.path)).file_name().map(|n| n.as_bytes().to_vec());
        let mut same = paths.iter().filter(|p| p.path.file_name().map(|n| n.as_bytes().to_vec()) == name);
        if let (Some(p), None) = (same.next(), same.next()) {
            r.path = p.path.as_os_str().as_bytes().to_vec();
        }
    }
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&r.path));
    r.size = live
        .then(|| std::fs::metadata(&path).ok())
        .flatten()
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .or_else(|| paths.iter().find(|p| p.path == path).and_then(|p| p.size));
    AuditEvent::Read(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_from_the_file_system_else_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("here.csv");
        std::fs::write(&here, vec![b'x'; 1234]).unwrap();
        let gone = dir.path().join("gone.csv");
        let paths = vec![
            SensitivePath { path: here.clone(), size: Some(5) },
            SensitivePath { path: gone.clone(), size: Some(99) },
        ];
        let mut reader = Reader::new("exfilmon-sensitive", &paths, true);
        let mut got = Vec::new();
        for (serial, name) in [(1, here.to_str().unwrap()), (2, gone.to_str().unwrap()), (3, "here.csv")] {
            for line in [
                format!("type=SYSCALL msg=audit(1.000:{serial}): syscall=257 success=yes a0=4 uid=7 fsuid=7 key=\"exfilmon-sensitive\""),
                format!("type=PATH msg=audit(1.000:{serial}): item=0 name=\"{name}\" nametype=NORMAL"),
                format!("type=PROCTITLE msg=audit(1.000:{serial}): proctitle=\"cat\""),
            ] {
                reader.line(line.as_bytes(), &mut |e| got.push(e));
            }
        }
        let sizes: Vec<(Option<u64>, Vec<u8>)> = got
            .iter()
            .map(|e| match e {
                AuditEvent::Read(r) => (r.size, r.path.clone()),
                _ => panic!(),
            })
            .collect();
        assert_eq!(sizes[0].0, Some(1234));
        assert_eq!(sizes[1].0, Some(99));
        assert_eq!(
            sizes[2],
            (Some(1234), here.to_str().unwrap().as_bytes().to_vec()),
            "relative name matched by file name"
        );
    }
}
