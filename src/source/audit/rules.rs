//! The auditd rules for `[sensitive]`: one `-w PATH -p r -k KEY` watch per path, so the kernel
//! records every open-for-read of those files (or of files under those directories).
//!
//! `--apply` writes them to [`RULES_FILE`] and loads them the way the system does at boot
//! (`augenrules --load`, which merges every file in `/etc/audit/rules.d/`), or with
//! `auditctl -R` where augenrules is missing. `--remove` deletes the file and every loaded rule
//! carrying the key. Paths and key were validated with the config (absolute, no whitespace).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::SensitivePath;

pub const RULES_FILE: &str = "/etc/audit/rules.d/exfilmon.rules";

pub fn render(paths: &[SensitivePath], key: &str) -> String {
    let mut s = format!(
        "## exfilmon: reads of sensitive files ([sensitive] paths), rendered by `exfilmon audit-rules`.\n\
         ## `exfilmon run --audit-log /var/log/audit/audit.log` ties each read (key {key}) to the\n\
         ## reader's egress. Load: exfilmon audit-rules --apply (or augenrules --load).\n",
        key = key
    );
    if paths.is_empty() {
        s.push_str("## No [sensitive] paths configured: nothing to watch.\n");
    }
    for p in paths {
        s.push_str(&format!("-w {} -p r -k {}\n", p.path.display(), key));
    }
    s
}

/// Writes the rules file and loads it; returns what was done, one line each.
pub fn apply(paths: &[SensitivePath], key: &str, file: &Path) -> Result<Vec<String>> {
    if paths.is_empty() {
        bail!("no [sensitive] paths in the configuration: nothing to watch (see exfilmon.example.toml)");
    }
    let mut done = Vec::new();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {} (run as root)", dir.display()))?;
    }
    std::fs::write(file, render(paths, key))
        .with_context(|| format!("cannot write {} (run as root)", file.display()))?;
    done.push(format!("wrote {} ({} watch rules, key {})", file.display(), paths.len(), key));
    for p in paths {
        if !p.path.exists() {
            done.push(format!(
                "note: {} does not exist yet; the kernel watches it from when it appears",
                p.path.display()
            ));
        }
    }
    // augenrules merges rules.d into audit.rules and loads it: the same as at boot.
    if which("augenrules") {
        tool(&["augenrules", "--load"])?;
        done.push("loaded the rules with `augenrules --load`".into());
    } else {
        tool(&["auditctl", "-R", &file.to_string_lossy()])?;
        done.push(format!("loaded the rules with `auditctl -R {}` (augenrules not found)", file.display()));
    }
    let status = tool(&["auditctl", "-s"])?;
    if status.lines().any(|l| l.trim() == "enabled 0") {
        done.push("warning: auditing is disabled (auditctl -e 1 enables it)".into());
    }
    if status.lines().any(|l| l.trim() == "pid 0") {
        done.push("warning: auditd is not running: records go to the kernel log, not to audit.log".into());
    }
    Ok(done)
}

/// Removes the rules file and every loaded rule with the key.
pub fn remove(key: &str, file: &Path) -> Result<Vec<String>> {
    let mut done = Vec::new();
    match std::fs::remove_file(file) {
        Ok(()) => done.push(format!("removed {}", file.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {} (run as root)", file.display())),
    }
    if which("augenrules") {
        // Regenerates /etc/audit/audit.rules without the file, so a reboot does not bring them back.
        tool(&["augenrules"])?;
        done.push("regenerated /etc/audit/audit.rules with `augenrules`".into());
    }
    tool(&["auditctl", "-D", "-k", key])?;
    done.push(format!("deleted the loaded rules with key {}", key));
    Ok(done)
}

fn which(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).any(|d| d.join(tool).is_file())
}

/// Runs an audit tool; its stdout, or an error quoting its stderr.
fn tool(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("{} is not installed (apt-get install auditd)", args[0])
        } else {
            anyhow::anyhow!("cannot run {}: {e}", args[0])
        }
    })?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_watch_per_path() {
        let paths = [
            SensitivePath { path: "/data/sensitive1.csv".into(), size: None },
            SensitivePath { path: "/data/dir".into(), size: Some(5) },
        ];
        let rules: Vec<String> =
            render(&paths, "exfilmon-sensitive").lines().filter(|l| !l.starts_with('#')).map(String::from).collect();
        assert_eq!(
            rules,
            ["-w /data/sensitive1.csv -p r -k exfilmon-sensitive", "-w /data/dir -p r -k exfilmon-sensitive"]
        );
    }
}
