//! JSON Lines file: one object per line, appended, for a log shipper to pick up.
//!
//! Each record is written with a single `write` on an `O_APPEND` descriptor, so lines from
//! two processes never interleave. The file is reopened when it was rotated away (its inode
//! changed) or after a failed write.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Deliver, Record};

pub(super) struct Jsonl {
    path: PathBuf,
    file: Option<(File, u64)>,
}

fn open(path: &Path) -> Result<(File, u64), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| format!("cannot open {} for appending: {e}", path.display()))?;
    let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
    Ok((file, inode))
}

impl Jsonl {
    pub(super) fn open(path: &Path) -> Result<Jsonl, String> {
        Ok(Jsonl { path: path.to_owned(), file: Some(open(path)?) })
    }
}

impl Deliver for Jsonl {
    fn deliver(&mut self, r: &Record) -> Result<(), String> {
        let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if self.file.as_ref().is_none_or(|(_, ino)| current != Some(*ino)) {
            self.file = Some(open(&self.path)?);
        }
        let mut line = r.json.to_string();
        line.push('\n');
        let Some((file, _)) = self.file.as_mut() else {
            return Err("not open".into());
        };
        file.write_all(line.as_bytes()).map_err(|e| {
            self.file = None;
            format!("cannot write {}: {e}", self.path.display())
        })
    }
}
