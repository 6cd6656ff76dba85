//! The configuration file: typed, unknown keys rejected, errors point at `file:line:column`.
//!
//! Every section has defaults that suit a real server, so running without `--config` works.
//! `exfilmon.example.toml` at the top of the repository shows every key; a test parses it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use crate::units;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Database file; `--db` overrides it.
    #[serde(default)]
    pub db: Option<PathBuf>,
    /// Egress volume thresholds, each a sliding window per principal.
    #[serde(default = "default_volume_rules")]
    pub volume: Vec<VolumeRule>,
}

impl Default for Config {
    fn default() -> Self {
        Config { db: None, volume: default_volume_rules() }
    }
}

/// Alert when a principal's outbound bytes within `window` reach `bytes`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VolumeRule {
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    #[serde(deserialize_with = "byte_size")]
    pub bytes: u64,
    #[serde(default = "Severity::medium")]
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    fn medium() -> Self {
        Severity::Medium
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

/// A few MB within minutes is a file leaving, not a user's terminal session; tens of MB over
/// a day catches the same done slowly. Backup and update servers belong in the nft allow-list.
fn default_volume_rules() -> Vec<VolumeRule> {
    vec![
        VolumeRule { window: Duration::from_secs(600), bytes: 4 << 20, severity: Severity::Medium },
        VolumeRule { window: Duration::from_secs(86_400), bytes: 64 << 20, severity: Severity::High },
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

impl Config {
    /// Loads `path`, or the built-in defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::parse(&text, path)
    }

    /// Parses config text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            ConfigError::Invalid { path: path.to_owned(), line, column, message }
        };
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, e.message().trim().to_string())
        })?;
        if config.volume.is_empty() {
            return Err(invalid(0, "at least one [[volume]] rule is needed".into()));
        }
        Ok(config)
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    units::parse_duration(&s).map_err(de::Error::custom)
}

fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(0) => Err(de::Error::custom("size must be greater than zero")),
        Size::Number(n) => Ok(n),
        Size::Text(s) => units::parse_bytes(&s).map_err(de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn issue_2_volume_form() {
        let c = parse("[[volume]]\nwindow = \"10m\"      # sliding window\nbytes = \"256KiB\"\n").unwrap();
        assert_eq!(
            c.volume,
            vec![VolumeRule { window: Duration::from_secs(600), bytes: 262_144, severity: Severity::Medium }]
        );
    }

    #[test]
    fn unknown_key_names_line() {
        let err = parse("[[volume]]\nwindow = \"10m\"\nbytes = 5\nbites = 6\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:4:1:"), "{err}");
        assert!(err.contains("bites"), "{err}");
    }

    #[test]
    fn bad_duration_names_line() {
        let err = parse("[[volume]]\nwindow = \"soon\"\nbytes = 5\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/exfilmon.example.toml"));
        Config::load(Some(path)).unwrap();
    }
}
