//! `[dns]`: the detector's settings and the built-in allow-list.

use std::time::Duration;

use serde::Deserialize;

use crate::units::de::{byte_size, domains, duration, positive, positive_usize};

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
    /// Unique names within `burst_window` (machine speed: short-lived tunnels with short names).
    #[serde(deserialize_with = "positive")]
    pub burst_names: u32,
    /// The span a burst of unique names is counted over (judged in halves of it).
    #[serde(deserialize_with = "duration")]
    pub burst_window: Duration,
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

/// Heavy legitimate users of odd names: CDNs, anti-virus and blocklists; and private suffixes
/// (AD's GUID names under `_msdcs.corp.local`). A private suffix appended to a public name
/// does not hide it: the name inside is judged. Reverse lookups of addresses are never judged
/// without an entry here, and `arpa` is not one: data under a delegated reverse zone is judged
/// (see `domain.rs`).
pub const DEFAULT_DNS_ALLOW: &[&str] = &[
    "home.arpa",
    "local",
    "localdomain",
    "lan",
    "internal",
    "corp",
    "home",
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
            burst_names: 40,
            burst_window: Duration::from_secs(2),
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
