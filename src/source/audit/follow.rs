//! Following a live audit log (`tail -F` for auditd): complete lines as they are appended,
//! through rotation and truncation.
//!
//! - Rotation (auditd renames `audit.log` to `audit.log.1` and starts a new file): noticed when
//!   the path names another inode; the rest of the old file is read through the still-open
//!   descriptor first, so no record is lost, then the new file is read from its start.
//! - Truncation (`: > audit.log`, `copytruncate`): noticed when the file is shorter than what
//!   was read; reading starts again from the top.
//! - A missing file (between a rename and the new file) is waited for.
//!
//! Memory is bounded: a line longer than [`MAX_LINE`] is dropped as it streams by (counted),
//! and one poll reads at most [`MAX_POLL`] bytes so the caller's loop stays responsive.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::parse::MAX_LINE;

/// Bytes read per [`Follower::poll`] at most.
pub const MAX_POLL: usize = 4 << 20;
const CHUNK: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
#[error("cannot read audit log {}: {source} (it is written by auditd; reading it needs root or its log_group)", path.display())]
pub struct FollowError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// What the follower counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FollowStats {
    pub bytes: u64,
    pub rotations: u64,
    pub truncations: u64,
    /// Lines over [`MAX_LINE`], dropped.
    pub too_long: u64,
    /// An unterminated last line of a rotated file, dropped.
    pub cut_lines: u64,
    /// Polls that found a new file at the path but could not open it (warned once).
    pub reopen_failures: u64,
}

impl FollowStats {
    /// Adds these to a source's counters (see `Reader::counters`).
    pub fn add_to(&self, c: &mut std::collections::BTreeMap<&'static str, u64>) {
        *c.entry("audit_line_too_long").or_default() += self.too_long;
        c.insert("audit_log_rotations", self.rotations);
        c.insert("audit_log_truncations", self.truncations);
        c.insert("audit_log_cut_lines", self.cut_lines);
        c.insert("audit_log_reopen_failures", self.reopen_failures);
    }
}

pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of the open file.
    id: (u64, u64),
    pos: u64,
    partial: Vec<u8>,
    /// Inside a line that grew past MAX_LINE: skip to its newline.
    discarding: bool,
    buf: Vec<u8>,
    pub stats: FollowStats,
}

impl Follower {
    /// Opens `path` at its start: the records already there are read too (the caller decides
    /// what is too old to matter), so a restart does not forget a read made just before it.
    pub fn open(path: &Path) -> Result<Follower, FollowError> {
        let file = File::open(path).map_err(|source| FollowError { path: path.to_owned(), source })?;
        let meta = file.metadata().map_err(|source| FollowError { path: path.to_owned(), source })?;
        Ok(Follower {
            path: path.to_owned(),
            file: Some(file),
            id: (meta.dev(), meta.ino()),
            pos: 0,
            partial: Vec::new(),
            discarding: false,
            buf: vec![0; CHUNK],
            stats: FollowStats::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands every complete line appended since the last call to `line` (without its newline);
    /// returns the bytes read. Errors are I/O errors on the open file.
    pub fn poll(&mut self, line: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        let mut total = 0;
        loop {
            total += self.read_available(line, MAX_POLL - total)?;
            if total >= MAX_POLL {
                return Ok(total);
            }
            // At the end of the open file: has the path moved on?
            match std::fs::metadata(&self.path) {
                Ok(meta) if (meta.dev(), meta.ino()) != self.id => {
                    let file = match File::open(&self.path) {
                        Ok(f) => f,
                        Err(e) => {
                            // E.g. the monitor dropped to a user the new file is not readable by.
                            if self.stats.reopen_failures == 0 {
                                tracing::warn!("cannot open the rotated audit log {}: {e}", self.path.display());
                            }
                            self.stats.reopen_failures += 1;
                            return Ok(total);
                        }
                    };
                    if !self.partial.is_empty() {
                        self.stats.cut_lines += 1;
                    }
                    self.reset(Some(file), (meta.dev(), meta.ino()));
                    self.stats.rotations += 1;
                }
                Ok(meta) if meta.len() < self.pos => {
                    if let Some(f) = &mut self.file {
                        f.seek(SeekFrom::Start(0))?;
                    }
                    self.reset(None, self.id);
                    self.stats.truncations += 1;
                }
                // Unchanged, or missing between a rename and the new file.
                _ => return Ok(total),
            }
        }
    }

    fn reset(&mut self, file: Option<File>, id: (u64, u64)) {
        if file.is_some() {
            self.file = file;
        }
        self.id = id;
        self.pos = 0;
        self.partial.clear();
        self.discarding = false;
    }

    fn read_available(&mut self, line: &mut dyn FnMut(&[u8]), budget: usize) -> io::Result<usize> {
        let Some(file) = &mut self.file else {
            return Ok(0);
        };
        let mut total = 0;
        while total < budget {
            let n = match file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n;
            self.pos += n as u64;
            self.stats.bytes += n as u64;
            let mut chunk = &self.buf[..n];
            while let Some(nl) = chunk.iter().position(|&b| b == b'\n') {
                if self.discarding {
                    self.discarding = false;
                } else if self.partial.is_empty() {
                    line(&chunk[..nl]);
                } else {
                    self.partial.extend_from_slice(&chunk[..nl]);
                    line(&self.partial);
                    self.partial.clear();
                }
                chunk = &chunk[nl + 1..];
            }
            if !self.discarding {
                if self.partial.len() + chunk.len() > MAX_LINE {
                    self.partial.clear();
                    self.discarding = true;
                    self.stats.too_long += 1;
                } else {
                    self.partial.extend_from_slice(chunk);
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn collect(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        f.poll(&mut |l| out.push(String::from_utf8_lossy(l).into_owned())).unwrap();
        out
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_as_they_are_appended_partial_lines_wait() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(&log, "one\ntw");
        let mut f = Follower::open(&log).unwrap();
        assert_eq!(collect(&mut f), ["one"]);
        assert!(collect(&mut f).is_empty());
        append(&log, "o\nthree\n");
        assert_eq!(collect(&mut f), ["two", "three"]);
    }

    #[test]
    fn rotation_reads_the_old_file_to_its_end_then_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(&log, "a\n");
        let mut f = Follower::open(&log).unwrap();
        assert_eq!(collect(&mut f), ["a"]);
        append(&log, "b\n");
        std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
        assert_eq!(collect(&mut f), ["b"], "missing new file: wait");
        append(&log, "c\n");
        assert_eq!(collect(&mut f), ["c"]);
        assert_eq!(f.stats.rotations, 1);
    }

    #[test]
    fn truncation_starts_again_from_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(&log, "first line\nsecond line\n");
        let mut f = Follower::open(&log).unwrap();
        assert_eq!(collect(&mut f).len(), 2);
        std::fs::write(&log, "new\n").unwrap();
        assert_eq!(collect(&mut f), ["new"]);
        assert_eq!(f.stats.truncations, 1);
    }

    #[test]
    fn over_long_lines_are_dropped_without_growing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let long = "x".repeat(MAX_LINE * 3);
        append(&log, &format!("ok\n{long}\nafter\n"));
        let mut f = Follower::open(&log).unwrap();
        assert_eq!(collect(&mut f), ["ok", "after"]);
        assert_eq!(f.stats.too_long, 1);
        assert!(f.partial.capacity() <= 2 * MAX_LINE);
    }
}
