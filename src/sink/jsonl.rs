//! JSON Lines file: one object per line, appended, for a log shipper to pick up: exfilmon's
//! records as they are, or (`format = "ecs"`) as Elastic Common Schema documents.
//!
//! Each record is written with a single `write` on an `O_APPEND` descriptor, so lines from
//! two processes never interleave. The file is reopened when it was rotated away (its inode
//! changed) or after a failed write. A symbolic link at the path is refused, at every open:
//! whoever can make one must not get the monitor to append to a file of its choice.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::config::JsonlFormat;
use super::{Deliver, Record};

pub(super) struct Jsonl {
    path: PathBuf,
    format: JsonlFormat,
    file: Option<(File, u64)>,
}

fn open(path: &Path) -> Result<(File, u64), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => format!(
                "{} is a symbolic link; the jsonl sink appends only to the file its path names (set `path` to the target)",
                path.display()
            ),
            _ => format!("cannot open {} for appending: {e}", path.display()),
        })?;
    let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
    Ok((file, inode))
}

impl Jsonl {
    pub(super) fn open(path: &Path, format: JsonlFormat) -> Result<Jsonl, String> {
        Ok(Jsonl { path: path.to_owned(), format, file: Some(open(path)?) })
    }
}

impl Deliver for Jsonl {
    fn deliver(&mut self, r: &Record) -> Result<(), String> {
        let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
        if self.file.as_ref().is_none_or(|(_, ino)| current != Some(*ino)) {
            self.file = Some(open(&self.path)?);
        }
        let mut line = match self.format {
            JsonlFormat::Native => r.json.to_string(),
            JsonlFormat::Ecs => super::ecs::document(r).to_string(),
        };
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    fn record() -> Record {
        super::super::record::heartbeat_record(serde_json::json!({ "up": true }))
    }

    #[test]
    fn a_symlink_at_the_path_is_refused_at_every_open() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep\n").unwrap();
        let path = dir.path().join("alerts.jsonl");
        symlink(&victim, &path).unwrap();
        let e = Jsonl::open(&path, JsonlFormat::Native).err().unwrap();
        assert!(e.contains("alerts.jsonl is a symbolic link"), "{e}");

        // A file of its own, 0640 at most; then rotated away and replaced by a link.
        std::fs::remove_file(&path).unwrap();
        let mut sink = Jsonl::open(&path, JsonlFormat::Native).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7137, 0);
        sink.deliver(&record()).unwrap();
        std::fs::rename(&path, dir.path().join("alerts.jsonl.1")).unwrap();
        symlink(&victim, &path).unwrap();
        let e = sink.deliver(&record()).unwrap_err();
        assert!(e.contains("is a symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    }
}
