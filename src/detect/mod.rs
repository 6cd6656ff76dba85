//! Detectors: state machines driven by decoded packets, audit events and their own timestamps,
//! never the wall clock, so a test or a replay drives them deterministically.
//!
//! Every detector sits behind [`Detector`]: the pipeline hands each one every packet
//! ([`Seen`]), every audit event and the passing of time ([`Tick`]), and each builds its own
//! alerts (and stored rows) into [`Findings`]. A detector owns its config section (declared
//! beside it), its state, its [`counters!`](crate::units::counters) and its alert wording; the pipeline only routes.
//! Adding one is a new file here plus an entry in `pipeline::REGISTRY` (and its config field).

pub mod audit_off;
pub mod baseline;
pub mod crosscheck;
pub mod dns;
pub mod icmp;
pub mod names;
pub mod names_seen;
pub mod scope;
pub mod sensitive;
pub mod tally;
pub mod volume;

use crate::alert::Alert;
use crate::decode::Packet;
use crate::flows::FlowTable;
use crate::principal::Principal;
use crate::rows::{DnsRow, EgressRow, IcmpRow, Recredit, Sent};
use crate::source::audit::AuditEvent;
use crate::source::owner::Owner;

/// One decoded packet and what the pipeline already worked out about it.
pub struct Seen<'a, 'p> {
    pub packet: &'a Packet<'p>,
    /// Who sent how many bytes (from the IP length) where: the principal as
    /// [`crate::attribute`] worked it out.
    pub sent: Sent,
    /// The process behind the flow, when the live lookups found it.
    pub owner: Option<&'a Owner>,
    /// This minute's flows, the packet included: where a principal's bytes went.
    pub flows: &'a FlowTable,
}

/// Time passing, in packet (or audit event) time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Packet time entered the minute starting at this time: earlier minutes are complete.
    Minute(i64),
    /// Everything is handed on (live: every heartbeat; replay: at the end). Time is at least
    /// this; what waits for packets that can no longer come late may be judged.
    Flush(i64),
}

/// A stored record from an earlier run, for [`Detector::resume`].
#[derive(Debug, Clone, Copy)]
pub enum Past<'a> {
    Egress(&'a EgressRow),
    Dns(&'a DnsRow),
    Icmp(&'a IcmpRow),
    Alert(&'a Alert),
}

/// What detectors produce: alerts, and rows of their own to store.
#[derive(Debug, Default)]
pub struct Findings {
    pub alerts: Vec<Alert>,
    pub dns_rows: Vec<DnsRow>,
    pub icmp_rows: Vec<IcmpRow>,
}

/// A detector. Every method but [`counters`](Detector::counters) has a do-nothing default, so
/// each implements only the inputs it reads.
pub trait Detector: Send {
    fn packet(&mut self, seen: &Seen<'_, '_>, out: &mut Findings) {
        let _ = (seen, out);
    }

    fn audit(&mut self, event: &AuditEvent, out: &mut Findings) {
        let _ = (event, out);
    }

    fn tick(&mut self, tick: Tick, out: &mut Findings) {
        let _ = (tick, out);
    }

    /// What the store kept from before this process started, oldest first: a restarted
    /// monitor picks its windows up where the last one left them. Whatever crossed a threshold
    /// then is taken as alerted then; nothing is raised from the past.
    fn resume(&mut self, past: Past<'_>) {
        let _ = past;
    }

    /// Live: bytes already seen for `moved.from` were `moved.rows`' principal's (the owner
    /// lookup answered after they were counted; `owner` is the flow's process): detectors
    /// that sum bytes per principal move them.
    fn recredit(&mut self, moved: &Recredit, owner: Option<&Owner>, out: &mut Findings) {
        let _ = (moved, owner, out);
    }

    /// A principal's bytes in one past hour, for detectors that learn what is usual; the
    /// live monitor hands them the stored history before its first packet.
    fn history(&mut self, principal: Principal, hour_us: i64, bytes: u64) {
        let _ = (principal, hour_us, bytes);
    }

    /// Each counter with its stored name (see [`counters!`](crate::units::counters)).
    fn counters(&self, f: &mut dyn FnMut(&'static str, u64));

    /// The name `who` used for `addr` (a DNS answer, a TLS server name), for stored egress
    /// rows; only the destination-names detector knows any.
    fn name_of(&self, who: crate::principal::Principal, addr: std::net::IpAddr) -> Option<&str> {
        let _ = (who, addr);
        None
    }
}
