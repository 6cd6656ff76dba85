//! The configuration file: typed, unknown keys rejected, errors point at `file:line:column`.
//!
//! Every section has defaults that suit a real server, so running without `--config` works.
//! `exfilmon.example.toml` at the top of the repository shows every key; a test parses it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de, Deserialize, Deserializer};

use crate::alert::Severity;
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
    /// Where alerts, monitor events and checkpoints are delivered (`[[sink]]`, any number).
    #[serde(default)]
    pub sink: Vec<crate::sink::SinkConfig>,
    /// Signed checkpoints of the alert trail.
    #[serde(default)]
    pub trail: TrailConfig,
    /// The live monitor watching itself.
    #[serde(default)]
    pub monitor: MonitorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db: None,
            volume: default_volume_rules(),
            user: None,
            nflog: NflogConfig::default(),
            nft: NftConfig::default(),
            dns: DnsConfig::default(),
            icmp: IcmpConfig::default(),
            sensitive: SensitiveConfig::default(),
            sink: Vec::new(),
            trail: TrailConfig::default(),
            monitor: MonitorConfig::default(),
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

/// A few MB within minutes is a file leaving, not a user's terminal session; tens of MB over
/// a day catches the same done slowly. Backup and update servers belong in the nft allow-list.
fn default_volume_rules() -> Vec<VolumeRule> {
    vec![
        VolumeRule { window: Duration::from_secs(600), bytes: 4 << 20, severity: Severity::Medium },
        VolumeRule { window: Duration::from_secs(86_400), bytes: 64 << 20, severity: Severity::High },
    ]
}

/// `[nflog]`: the NFLOG group the ruleset logs to and how the kernel batches it to us.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NflogConfig {
    pub group: u16,
    /// Socket receive buffer (SO_RCVBUFFORCE); what absorbs bursts while the reader is busy.
    #[serde(deserialize_with = "rcvbuf")]
    pub rcvbuf: u64,
    /// Bytes of non-DNS packets copied to us: IP and transport headers are enough to count.
    #[serde(deserialize_with = "snaplen")]
    pub snaplen: u16,
    /// Packets the kernel batches into one message before sending it.
    #[serde(deserialize_with = "queue_threshold")]
    pub queue_threshold: u16,
    /// Longest a partial batch waits in the kernel (10 ms resolution).
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for NflogConfig {
    fn default() -> Self {
        NflogConfig {
            group: 7,
            rcvbuf: 16 << 20,
            snaplen: 128,
            queue_threshold: 64,
            timeout: Duration::from_millis(100),
        }
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

/// `[dns]`: DNS tunnel detection per (principal, registered domain) over a sliding window.
/// An episode opens when any rule is met; see `exfilmon.example.toml` for the reasoning.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Unique names that look encoded (or are binary, over-long, or of a type ordinary
    /// programs do not ask for) within the window.
    #[serde(deserialize_with = "positive")]
    pub encoded_names: u32,
    /// Unique names within the window, whatever they look like (polling tunnels).
    #[serde(deserialize_with = "positive")]
    pub unique_names: u32,
    /// Bytes of unique subdomain names within the window: the information carried out.
    #[serde(deserialize_with = "byte_size")]
    pub unique_bytes: u64,
    /// Subdomain characters a name needs before its alphabet and entropy can call it encoded.
    #[serde(deserialize_with = "positive_usize")]
    pub min_encoded_chars: usize,
    /// A name longer than this (presentation bytes) counts as suspicious by itself.
    #[serde(deserialize_with = "positive_usize")]
    pub long_name: usize,
    /// UDP packets to port 53 that are not DNS, per destination, within the window.
    #[serde(deserialize_with = "positive")]
    pub raw_packets: u32,
    /// An open episode escalates when its estimated carried bytes reach this, then 4x that...
    #[serde(deserialize_with = "byte_size")]
    pub escalate_bytes: u64,
    /// Also parse payloads that look like DNS queries on ports other than 53.
    pub other_ports: bool,
    /// Domains (and their subdomains) never counted as suspicious; replaces the built-in list.
    #[serde(deserialize_with = "domains")]
    pub allow: Vec<String>,
    /// Domains added to `allow`.
    #[serde(deserialize_with = "domains")]
    pub allow_extra: Vec<String>,
    /// (principal, registered domain) states kept at most; idle ones are evicted first.
    #[serde(deserialize_with = "positive_usize")]
    pub max_pairs: usize,
    /// Query names remembered for uniqueness at most.
    #[serde(deserialize_with = "positive_usize")]
    pub max_names: usize,
}

/// Heavy legitimate users of odd names: reverse lookups, CDNs, anti-virus and blocklists.
pub const DEFAULT_DNS_ALLOW: &[&str] = &[
    "arpa",
    "local",
    "akadns.net",
    "akamai.net",
    "akamaiedge.net",
    "akamaihd.net",
    "edgekey.net",
    "edgesuite.net",
    "cloudfront.net",
    "fastly.net",
    "azureedge.net",
    "trafficmanager.net",
    "cdn77.org",
    "mcafee.com",
    "e5.sk",
    "eset.com",
    "sophosxl.net",
    "trendmicro.com",
    "spamhaus.org",
    "spamhaus.net",
    "spamcop.net",
    "surbl.org",
    "uribl.com",
    "barracudacentral.org",
    "sorbs.net",
    "dnswl.org",
    "mailspike.net",
    "senderbase.org",
    "abuseat.org",
    "cymru.com",
];

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            window: Duration::from_secs(3600),
            encoded_names: 10,
            unique_names: 100,
            unique_bytes: 4096,
            min_encoded_chars: 20,
            long_name: 100,
            raw_packets: 5,
            escalate_bytes: 64 << 10,
            other_ports: true,
            allow: DEFAULT_DNS_ALLOW.iter().map(|d| d.to_string()).collect(),
            allow_extra: Vec::new(),
            max_pairs: 100_000,
            max_names: 1_000_000,
        }
    }
}

/// `[icmp]`: ICMP tunnel detection per (principal, peer) over a sliding window.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IcmpConfig {
    pub enabled: bool,
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// Echo payload bytes whose content differs from the peer's recent packets: data carried.
    #[serde(deserialize_with = "byte_size")]
    pub carried_bytes: u64,
    /// Echo packets with a known tunnel signature (ptunnel magic, IP inside).
    #[serde(deserialize_with = "positive")]
    pub signature_packets: u32,
    #[serde(deserialize_with = "byte_size")]
    pub escalate_bytes: u64,
    /// (principal, peer) states kept at most; idle ones are evicted first.
    #[serde(deserialize_with = "positive_usize")]
    pub max_pairs: usize,
}

impl Default for IcmpConfig {
    fn default() -> Self {
        IcmpConfig {
            enabled: true,
            window: Duration::from_secs(600),
            carried_bytes: 8 << 10,
            signature_packets: 3,
            escalate_bytes: 256 << 10,
            max_pairs: 65_536,
        }
    }
}

/// `[sensitive]`: files whose reads (recorded by auditd) open a window in which the reader's
/// egress is weighed against the file's size. See `src/detect/sensitive.rs` for the threshold.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveConfig {
    /// Files or directories to watch (`-w PATH -p r` audit rules).
    #[serde(deserialize_with = "sensitive_paths")]
    pub paths: Vec<SensitivePath>,
    /// The audit rules' key (`-k`): records with it are reads of these paths.
    #[serde(deserialize_with = "audit_key")]
    pub audit_key: String,
    /// How long after a read the reader's egress counts.
    #[serde(deserialize_with = "duration")]
    pub window: Duration,
    /// The threshold is a quarter of the file's size, but at least this...
    #[serde(deserialize_with = "byte_size")]
    pub min_bytes: u64,
    /// ...and at most this (a part this large of any file is worth an alert).
    #[serde(deserialize_with = "byte_size")]
    pub max_bytes: u64,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            paths: Vec::new(),
            audit_key: "exfilmon-sensitive".into(),
            window: Duration::from_secs(1800),
            min_bytes: 16 << 10,
            max_bytes: 1 << 20,
        }
    }
}

/// A watched path, with the size to assume when the file is gone by the time its read is seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitivePath {
    pub path: PathBuf,
    pub size: Option<u64>,
}

/// Paths as plain strings or `{ path = "...", size = "20MiB" }`. They go into audit rules,
/// which are split on whitespace: absolute, without whitespace or control characters.
fn sensitive_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SensitivePath>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Path(String),
        Sized {
            path: String,
            #[serde(deserialize_with = "byte_size")]
            size: u64,
        },
    }
    Vec::<Entry>::deserialize(d)?
        .into_iter()
        .map(|e| {
            let (path, size) = match e {
                Entry::Path(p) => (p, None),
                Entry::Sized { path, size } => (path, Some(size)),
            };
            let ok = path.starts_with('/')
                && path.len() < 4096
                && !path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
            if !ok {
                return Err(de::Error::custom(format!(
                    "{:?} is not usable in an audit rule: give an absolute path without spaces or control characters",
                    crate::escape::printable(&path)
                )));
            }
            Ok(SensitivePath { path: PathBuf::from(path), size })
        })
        .collect()
}

/// auditctl takes keys of up to 31 characters; letters, digits, - and _ keep them greppable.
fn audit_key<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let key = String::deserialize(d)?;
    if key.is_empty() || key.len() > 31 || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(de::Error::custom(format!(
            "audit_key {:?}: use 1 to 31 letters, digits, - or _",
            crate::escape::printable(&key)
        )));
    }
    Ok(key)
}

fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(de::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

fn positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(de::Error::custom("must be at least 1")),
        n => Ok(n),
    }
}

/// Domain names, lower-cased, without a trailing dot.
fn domains<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| {
            let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)));
            if ok {
                Ok(name)
            } else {
                Err(de::Error::custom(format!("{:?} is not a domain name (labels of letters, digits, - and _)", crate::escape::printable(&s))))
            }
        })
        .collect()
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

/// The kernel takes the buffer size as an int and doubles it; beyond 1 GiB is a typo.
fn rcvbuf<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = byte_size(d)?;
    if n > 1 << 30 {
        return Err(de::Error::custom("rcvbuf above 1GiB; a few MiB to a few hundred MiB is plenty"));
    }
    Ok(n)
}

/// IPv4 + TCP headers with options need 60 + 60 bytes; below 40 not even ports are seen.
fn snaplen<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match u16::deserialize(d)? {
        n @ 40.. => Ok(n),
        n => Err(de::Error::custom(format!("snaplen {n} is too small to see IP and ports; use at least 40 (default 128)"))),
    }
}

fn queue_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match u16::deserialize(d)? {
        0 => Err(de::Error::custom("queue_threshold must be at least 1")),
        n => Ok(n),
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
        let ok = !n.is_empty()
            && n.len() <= 15
            && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:@".contains(&b));
        if !ok {
            return Err(de::Error::custom(format!("{n:?} is not an interface name (letters, digits, . _ - : @, up to 15, optional trailing *)")));
        }
    }
    Ok(names)
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
    fn example_dns_and_icmp_sections_are_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/exfilmon.example.toml"));
        let c = Config::load(Some(path)).unwrap();
        assert_eq!(c.dns, DnsConfig::default());
        assert_eq!(c.icmp, IcmpConfig::default());
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
        for bad in ["paths = [\"relative.csv\"]", "paths = [\"/a b\"]", "audit_key = \"a b\"", "paths = [{ path = \"/x\" }]"] {
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
    fn dns_allow_list_extends_or_replaces() {
        let c = parse("[dns]\nallow_extra = [\"Corp.Example.\"]\n").unwrap();
        assert_eq!(c.dns.allow_extra, ["corp.example"]);
        assert!(c.dns.allow.iter().any(|d| d == "arpa"));
        let c = parse("[dns]\nallow = [\"only.example\"]\n").unwrap();
        assert_eq!(c.dns.allow, ["only.example"]);
        let err = parse("[dns]\nallow = [\"bad name\\u001b\"]\n").unwrap_err().to_string();
        assert!(err.starts_with("test.toml:2:") && err.contains("\\x1b"), "{err}");
        let err = parse("[icmp]\nsignature_packets = 0\n").unwrap_err().to_string();
        assert!(err.contains("at least 1"), "{err}");
    }
}
