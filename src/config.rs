//! The configuration file: typed, unknown keys rejected, errors point at `file:line:column`.
//!
//! Every section has defaults that suit a real server, so running without `--config` works.
//! `exfilmon.example.toml` at the top of the repository shows every key; a test parses it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use crate::detect::baseline::BaselineConfig;
use crate::detect::dns::DnsConfig;
use crate::detect::icmp::IcmpConfig;
use crate::detect::names_seen::NamesConfig;
use crate::detect::scope::{AccountsConfig, System};
use crate::detect::sensitive::SensitiveConfig;
use crate::detect::volume::VolumeRule;
use crate::respond::ResponseConfig;
use crate::source::nflog::NflogConfig;
use crate::source::owner::OwnerConfig;
use crate::store::RetentionConfig;
use crate::units::de::duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Database file; `--db` overrides it.
    #[serde(default)]
    pub db: Option<PathBuf>,
    /// This host's name in every row and record it ships; unset: the machine's host name.
    #[serde(default, deserialize_with = "observer")]
    pub observer: Option<String>,
    /// Egress volume thresholds, each a sliding window per principal, scoped to whom,
    /// which direction and which destinations they concern.
    #[serde(default = "crate::detect::volume::default_rules")]
    pub volume: Vec<VolumeRule>,
    /// Which uids are people (login users) and which services.
    #[serde(default)]
    pub accounts: AccountsConfig,
    /// "Unusual for this principal": hours far above its usual ones.
    #[serde(default)]
    pub baseline: BaselineConfig,
    /// The live monitor's lookups of who is behind each flow.
    #[serde(default)]
    pub owner: OwnerConfig,
    /// `exfilmon run` switches to this user after binding the NFLOG group.
    #[serde(default)]
    pub user: Option<String>,
    /// The live monitor's NFLOG socket.
    #[serde(default)]
    pub nflog: NflogConfig,
    /// The nftables ruleset `exfilmon nft` renders.
    #[serde(default)]
    pub nft: NftConfig,
    /// DNS tunnel detection.
    #[serde(default)]
    pub dns: DnsConfig,
    /// ICMP tunnel detection.
    #[serde(default)]
    pub icmp: IcmpConfig,
    /// Sensitive files: reads recorded by auditd tied to the egress that follows.
    #[serde(default)]
    pub sensitive: SensitiveConfig,
    /// Destination names (DNS answers, TLS server names) shown with addresses in alerts.
    #[serde(default)]
    pub names: NamesConfig,
    /// Where alerts, monitor events and checkpoints are delivered (`[[sink]]`, any number).
    #[serde(default)]
    pub sink: Vec<crate::sink::SinkConfig>,
    /// Signed checkpoints of the alert trail.
    #[serde(default)]
    pub trail: TrailConfig,
    /// The live monitor watching itself.
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// How long each kind of data is kept (`exfilmon prune`, and the daemon once a day).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Containment: which alerts block their principal's egress, DNS verdicts (opt-in).
    #[serde(default)]
    pub response: ResponseConfig,
}

/// An observer name: printable, no spaces, at most 255 bytes (a host name's limit), so it is
/// safe in tables, logs and keys as it is.
fn observer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(d)?;
    if name.is_empty() || name.len() > 255 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(de::Error::custom(
            "observer must be 1 to 255 printable ASCII characters without spaces, e.g. \"web-01\"",
        ));
    }
    Ok(Some(name))
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: None,
            observer: None,
            volume: crate::detect::volume::default_rules(),
            accounts: AccountsConfig::default(),
            baseline: BaselineConfig::default(),
            owner: OwnerConfig::default(),
            user: None,
            nflog: NflogConfig::default(),
            nft: NftConfig::default(),
            dns: DnsConfig::default(),
            icmp: IcmpConfig::default(),
            sensitive: SensitiveConfig::default(),
            names: NamesConfig::default(),
            sink: Vec::new(),
            trail: TrailConfig::default(),
            monitor: MonitorConfig::default(),
            retention: RetentionConfig::default(),
            response: ResponseConfig::default(),
        }
    }
}

/// `[trail]`: checkpoints of the hash-chained alert trail, signed with an Ed25519 key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrailConfig {
    /// Private key from `exfilmon keygen`; unset: no checkpoints are made.
    pub signing_key: Option<PathBuf>,
    /// How often `exfilmon run` signs one (and always when it stops).
    #[serde(deserialize_with = "duration")]
    pub checkpoint_interval: Duration,
}

impl Default for TrailConfig {
    fn default() -> Self {
        TrailConfig { signing_key: None, checkpoint_interval: Duration::from_secs(300) }
    }
}

/// `[monitor]`: how `exfilmon run` checks on itself.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// How often the loaded ruleset is compared with the one the configuration renders.
    #[serde(deserialize_with = "duration")]
    pub ruleset_check: Duration,
    /// How long a stopping monitor waits for its sinks to deliver what is queued.
    #[serde(deserialize_with = "duration")]
    pub delivery_grace: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig { ruleset_check: Duration::from_secs(60), delivery_grace: Duration::from_secs(5) }
    }
}

/// `[nft]`: what the ruleset logs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NftConfig {
    /// IPv4 destinations (addresses or CIDR ranges) never logged: backup and update servers.
    #[serde(deserialize_with = "v4_ranges")]
    pub allow_v4: Vec<String>,
    #[serde(deserialize_with = "v6_ranges")]
    pub allow_v6: Vec<String>,
    /// Only log packets leaving through these interfaces; empty means every one but `lo`.
    #[serde(deserialize_with = "interface_names")]
    pub interfaces: Vec<String>,
    /// Also send new outbound connections to the kernel audit trail (`log level audit`).
    pub audit: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
}

impl Config {
    /// The name this host goes by in shipped rows and records.
    pub fn observer(&self) -> String {
        self.observer.clone().unwrap_or_else(crate::sink::hostname)
    }

    /// Loads `path`, or the built-in defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
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
            let (offset, message) = crate::config_errors::refine(text, offset, e.message().trim().to_string());
            invalid(offset, message)
        })?;
        if config.volume.is_empty() {
            return Err(invalid(0, "at least one [[volume]] rule is needed".into()));
        }
        // User and group names become ids here, once: detectors never ask the system.
        let mut config = config;
        for (i, rule) in config.volume.iter_mut().enumerate() {
            if let Err(e) = rule.scope.resolve(&System) {
                let at = text.match_indices("[[volume]]").nth(i).map_or(0, |(at, _)| at);
                return Err(invalid(at, format!("[[volume]] rule {}: {e}", i + 1)));
            }
        }
        if let Err(e) = config.baseline.scope.resolve(&System) {
            return Err(invalid(text.find("[baseline").unwrap_or(0), format!("[baseline] scope: {e}")));
        }
        if let Err(e) = config.response.resolve(&System) {
            return Err(invalid(text.find("[response").unwrap_or(0), format!("[response] {e}")));
        }
        Ok(config)
    }
}

fn v4_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    ranges::<D, std::net::Ipv4Addr>(d, 32)
}

fn v6_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    ranges::<D, std::net::Ipv6Addr>(d, 128)
}

/// Addresses or `address/prefix` ranges, normalised, so the rendered ruleset can trust them.
fn ranges<'de, D: Deserializer<'de>, A: std::str::FromStr + std::fmt::Display>(
    d: D,
    max_prefix: u8,
) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            let bad = || de::Error::custom(format!("{s:?} is not an address or address/prefix of this family"));
            let (addr, prefix) = match s.trim().split_once('/') {
                Some((a, p)) => (a, Some(p.parse::<u8>().ok().filter(|p| *p <= max_prefix).ok_or_else(bad)?)),
                None => (s.trim(), None),
            };
            let addr = addr.parse::<A>().map_err(|_| bad())?;
            Ok(prefix.map_or_else(|| addr.to_string(), |p| format!("{addr}/{p}")))
        })
        .collect()
}

/// Interface names as the kernel allows them (up to 15 bytes), with nft's trailing `*` wildcard.
fn interface_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    for n in &names {
        let body = n.strip_suffix('*').unwrap_or(n);
        let ok =
            !n.is_empty() && n.len() <= 15 && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:@".contains(&b));
        if !ok {
            return Err(de::Error::custom(format!(
                "{n:?} is not an interface name (letters, digits, . _ - : @, up to 15, optional trailing *)"
            )));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::Severity;
    use crate::source::audit::SensitivePath;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn issue_2_volume_form() {
        let c = parse("[[volume]]\nwindow = \"10m\"      # sliding window\nbytes = \"256KiB\"\n").unwrap();
        assert_eq!(
            c.volume,
            vec![VolumeRule {
                name: None,
                window: Duration::from_secs(600),
                bytes: 262_144,
                severity: Severity::Medium,
                scope: Default::default()
            }]
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
    fn nflog_and_nft_sections() {
        let c = parse(
            "user = \"nobody\"\n[nflog]\ngroup = 9\nrcvbuf = \"4MiB\"\ntimeout = \"1s\"\n\
             [nft]\nallow_v4 = [\"192.0.2.10\", \" 198.51.100.0/24\"]\nallow_v6 = [\"2001:db8:0::/48\"]\ninterfaces = [\"eth*\"]\n",
        )
        .unwrap();
        assert_eq!(c.user.as_deref(), Some("nobody"));
        assert_eq!((c.nflog.group, c.nflog.rcvbuf, c.nflog.snaplen), (9, 4 << 20, 128));
        assert_eq!(c.nflog.timeout, Duration::from_secs(1));
        assert_eq!(c.nft.allow_v4, ["192.0.2.10", "198.51.100.0/24"]);
        assert_eq!(c.nft.allow_v6, ["2001:db8::/48"]);
        assert_eq!(c.nft.interfaces, ["eth*"]);
    }

    #[test]
    fn nft_injection_is_rejected_with_line() {
        let err = parse("[nft]\nallow_v4 = [\"1.2.3.4 } ; flush ruleset\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
        let err = parse("[nft]\ninterfaces = [\"eth0\\\" accept\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
        let err = parse("[nft]\nallow_v4 = [\"2001:db8::1\"]\n").unwrap_err().to_string();
        assert!(err.contains("not an address"), "{err}");
        let err = parse("[nflog]\nsnaplen = 20\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:"), "{err}");
    }

    #[test]
    fn example_config_parses() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/exfilmon.example.toml"));
        Config::load(Some(path)).unwrap();
    }

    #[test]
    fn example_volume_dns_and_icmp_sections_are_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/exfilmon.example.toml"));
        let c = Config::load(Some(path)).unwrap();
        assert_eq!(c.dns, DnsConfig::default());
        assert_eq!(c.icmp, IcmpConfig::default());
        assert_eq!(c.volume, crate::detect::volume::default_rules());
        assert_eq!(c.baseline, BaselineConfig::default());
        assert_eq!(c.owner, OwnerConfig::default());
        assert_eq!(c.response, ResponseConfig::default(), "containment is opt-in, root exempt");
    }

    #[test]
    fn sensitive_section() {
        let c = parse(
            "[sensitive]\npaths = [\"/data/sensitive1.csv\", { path = \"/data/gone.csv\", size = \"20MiB\" }]\nwindow = \"10m\"\n",
        )
        .unwrap();
        let s = &c.sensitive;
        assert_eq!(s.paths[0], SensitivePath { path: "/data/sensitive1.csv".into(), size: None });
        assert_eq!(s.paths[1].size, Some(20 << 20));
        assert_eq!((s.audit_key.as_str(), s.window), ("exfilmon-sensitive", Duration::from_secs(600)));
        for bad in
            ["paths = [\"relative.csv\"]", "paths = [\"/a b\"]", "audit_key = \"a b\"", "paths = [{ path = \"/x\" }]"]
        {
            let err = parse(&format!("[sensitive]\n{bad}\n")).unwrap_err().to_string();
            assert!(err.starts_with("test.toml:2:"), "{bad}: {err}");
        }
    }

    #[test]
    fn example_sensitive_section_parses_with_default_knobs() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/exfilmon.example.toml"));
        let s = Config::load(Some(path)).unwrap().sensitive;
        assert_eq!(s.paths.len(), 2);
        assert_eq!(SensitiveConfig { paths: Vec::new(), ..s }, SensitiveConfig::default());
    }

    #[test]
    fn retention_section_defaults_and_limits() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/exfilmon.example.toml"));
        assert_eq!(Config::load(Some(path)).unwrap().retention, RetentionConfig::default());
        let c = parse("[retention]\negress = \"14d\"\nalerts = \"2y\"\n").unwrap();
        assert_eq!(c.retention.egress, Duration::from_secs(14 * 86_400));
        assert_eq!(c.retention.dns, RetentionConfig::default().dns);
        let err = parse("[retention]\ndns = \"2h\"\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:") && err.contains("at least 1d"), "{err}");
        let err = parse("[retention]\nflows = \"2d\"\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:") && err.contains("unknown field"), "{err}");
    }

    #[test]
    fn dns_allow_list_extends_or_replaces() {
        let c = parse("[dns]\nallow_extra = [\"Corp.Example.\"]\n").unwrap();
        assert_eq!(c.dns.allow_extra, ["corp.example"]);
        assert!(c.dns.allow.iter().any(|d| d == "home.arpa"));
        let c = parse("[dns]\nallow = [\"only.example\"]\n").unwrap();
        assert_eq!(c.dns.allow, ["only.example"]);
        let err = parse("[dns]\nallow = [\"bad name\\u001b\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:") && err.contains("\\x1b"), "{err}");
        let err = parse("[icmp]\nsignature_packets = 0\n").unwrap_err().to_string();
        assert!(err.contains("at least 1"), "{err}");
    }
}
