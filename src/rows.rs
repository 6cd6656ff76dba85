//! What the pipeline hands the store: per-minute aggregates and a run's totals. Domain types, so the store
//! depends on them and not on the detectors or the flow table that make them.

use crate::decode::Direction;
use crate::principal::{Dst, Principal};

/// One packet as the aggregates and rules see it: who sent how many bytes where, when.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub principal: Principal,
    /// The sending socket's group, for rules naming groups.
    pub gid: Option<u32>,
    pub direction: Direction,
    pub dst: Dst,
    pub ts_us: i64,
    pub bytes: u64,
}

/// Aggregates are per minute of packet time.
pub const MINUTE_US: i64 = 60_000_000;

/// One stored egress aggregate: a principal's packets to one destination in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRow {
    pub principal: Principal,
    pub gid: Option<u32>,
    pub dst: Dst,
    /// Start of the minute, microseconds since the epoch.
    pub minute_us: i64,
    pub packets: u64,
    pub bytes: u64,
    pub first_us: i64,
    pub last_us: i64,
    pub direction: Direction,
    /// The name the sender used for the address (DNS answer, TLS server name), if known.
    pub dst_name: Option<Box<str>>,
}

impl EgressRow {
    /// The row as one packet at its last time, for windows rebuilt from rows.
    pub fn sent(&self) -> Sent {
        Sent {
            principal: self.principal,
            gid: self.gid,
            direction: self.direction,
            dst: self.dst,
            ts_us: self.last_us,
            bytes: self.bytes,
        }
    }
}

/// One stored aggregate: a principal's queries under one registered domain in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRow {
    pub principal: Principal,
    pub gid: Option<u32>,
    /// Registered domain, terminal-safe (see [`crate::escape`]).
    pub domain: String,
    pub minute_us: i64,
    pub queries: u32,
    /// Names not seen from this principal within the last half window or more.
    pub unique: u32,
    /// Bytes of those unique names left of the registered domain.
    pub name_bytes: u64,
    /// Unique names that were suspicious (the DNS detector's `row_flags::SUSPICIOUS`).
    pub suspicious: u32,
    pub flags: u32,
    /// A few suspicious names, terminal-safe.
    pub samples: Vec<String>,
}

/// What a run counted, for the `runs` table.
#[derive(Debug, Default, Clone)]
pub struct RunTotals {
    pub packets: u64,
    pub bytes: u64,
    pub malformed: u64,
    pub ignored: u64,
    pub alerts: u64,
    pub counters: serde_json::Value,
}

/// The program behind a live flow, as the owner lookup found it, or why it found none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Program {
    Found {
        /// `/proc/PID/exe` (empty when unreadable) and `comm`, as the process set them: raw.
        exe: Box<str>,
        comm: Box<str>,
        /// The socket's uid, and the login session's user when set.
        uid: u32,
        login_uid: Option<u32>,
    },
    /// A stable reason name (`source::owner::Why::name`, or `unanswered`).
    Unknown(&'static str),
}

/// One stored program aggregate (live only): a principal's packets to one destination in one
/// minute, sent by one program. The egress row of the same key holds the sum over programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramRow {
    pub principal: Principal,
    pub dst: Dst,
    pub minute_us: i64,
    pub program: Program,
    pub packets: u64,
    pub bytes: u64,
}

/// Bytes of one flow already counted for `from`, which the owner lookup has since shown to be
/// someone else's (a login user's, known about a second after sshd forked): each row, one per
/// minute, is taken off `from`'s row of its key and added to the row's principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recredit {
    pub from: Principal,
    pub rows: Vec<EgressRow>,
}

/// One stored ICMP aggregate: a principal's echoes to one peer in one minute, as the ICMP
/// detector's window counts them, so a restarted monitor picks the window up (payload hashes
/// are per process and not stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpRow {
    pub principal: Principal,
    pub peer: std::net::IpAddr,
    pub minute_us: i64,
    pub requests: u32,
    pub replies: u32,
    /// Payload bytes not among the peer's recent payloads: the data an echo tunnel carries.
    pub carried: u64,
    /// Echoes with a known tunnel signature.
    pub signed: u32,
}
