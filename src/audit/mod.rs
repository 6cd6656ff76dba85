//! The Linux audit trail as a second source: auditd's log, read as it grows (`exfilmon run
//! --audit-log`) or saved (`exfilmon replay --audit-log`).
//!
//! [`parse`] views one line, [`event`] assembles records into events by serial, [`follow`]
//! tails a live log through rotation, [`rules`] renders the watch rules. [`Reader`] puts the
//! first two together and adds what only the file system knows (a read file's size);
//! [`Merge`] interleaves saved events with a capture's packets by time, so a replay sees them
//! in the order they happened.

pub mod event;
pub mod follow;
pub mod parse;
pub mod rules;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use event::{AuditEvent, AuditNote, FileRead, NetPkt};

use crate::config::{SensitiveConfig, SensitivePath};
use crate::pipeline::{Output, Pipeline};
use crate::decode::Frame;
use crate::source::FrameSink;

/// Lines to events, with each read's file size filled in.
pub struct Reader {
    assembler: event::Assembler,
    paths: Vec<SensitivePath>,
}

impl Reader {
    pub fn new(cfg: &SensitiveConfig) -> Reader {
        Reader {
            assembler: event::Assembler::new(&cfg.audit_key),
            paths: cfg.paths.clone(),
        }
    }

    pub fn line(&mut self, line: &[u8], out: &mut dyn FnMut(AuditEvent)) {
        let paths = &self.paths;
        self.assembler.line(line, &mut |ev| out(complete(ev, paths)));
    }

    /// Emits the events still being assembled (end of a saved log).
    pub fn finish(&mut self, out: &mut dyn FnMut(AuditEvent)) {
        let paths = &self.paths;
        self.assembler.finish(&mut |ev| out(complete(ev, paths)));
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
                .map_err(|source| follow::FollowError {
                    path: path.to_owned(),
                    source,
                })?;
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
fn complete(ev: AuditEvent, paths: &[SensitivePath]) -> AuditEvent {
    let AuditEvent::Read(mut r) = ev else {
        return ev;
    };
    use std::os::unix::ffi::OsStrExt;
    if r.path.first() != Some(&b'/') {
        let name = Path::new(std::ffi::OsStr::from_bytes(&r.path))
            .file_name()
            .map(|n| n.as_bytes().to_vec());
        let mut same = paths
            .iter()
            .filter(|p| p.path.file_name().map(|n| n.as_bytes().to_vec()) == name);
        if let (Some(p), None) = (same.next(), same.next()) {
            r.path = p.path.as_os_str().as_bytes().to_vec();
        }
    }
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(&r.path));
    r.size = std::fs::metadata(&path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .or_else(|| paths.iter().find(|p| p.path == path).and_then(|p| p.size));
    AuditEvent::Read(r)
}

/// Feeds a pipeline frames and saved audit events in time order: before each frame, the
/// events up to its time. [`Merge::finish`] hands over the rest.
pub struct Merge<'a, O: Output> {
    pipeline: &'a mut Pipeline<O>,
    events: std::iter::Peekable<std::vec::IntoIter<AuditEvent>>,
}

impl<'a, O: Output> Merge<'a, O> {
    /// `events` in any order; they are sorted by time (stable, so one event's order holds).
    pub fn new(pipeline: &'a mut Pipeline<O>, mut events: Vec<AuditEvent>) -> Merge<'a, O> {
        events.sort_by_key(AuditEvent::ts_us);
        Merge {
            pipeline,
            events: events.into_iter().peekable(),
        }
    }

    fn until(&mut self, ts_us: i64) {
        while let Some(ev) = self.events.next_if(|e| e.ts_us() <= ts_us) {
            self.pipeline.audit(ev);
        }
    }

    /// Feeds the events after the last frame and flushes, so the pipeline's counters are final.
    pub fn finish(mut self) {
        self.until(i64::MAX);
        self.pipeline.flush();
    }
}

impl<O: Output> FrameSink for Merge<'_, O> {
    fn frame(&mut self, frame: Frame<'_>) {
        self.until(frame.ts_us);
        self.pipeline.frame(frame);
    }

    fn damaged_record(&mut self) {
        self.pipeline.damaged_record();
    }
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
        let cfg = SensitiveConfig {
            paths: vec![
                SensitivePath {
                    path: here.clone(),
                    size: Some(5),
                },
                SensitivePath {
                    path: gone.clone(),
                    size: Some(99),
                },
            ],
            ..SensitiveConfig::default()
        };
        let mut reader = Reader::new(&cfg);
        let mut got = Vec::new();
        for (serial, name) in [
            (1, here.to_str().unwrap()),
            (2, gone.to_str().unwrap()),
            (3, "here.csv"),
        ] {
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
