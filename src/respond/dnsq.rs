//! DNS verdicts through NFQUEUE (`[response] dns_queue = true`).
//!
//! The ruleset sends outbound DNS queries (UDP and TCP to port 53) to queue [`QUEUE`] with the
//! `bypass` flag, so while nothing listens the kernel accepts them: a stopped or killed
//! monitor never takes DNS down. This thread gives one verdict per packet: drop when the
//! question's name is under a domain [`Holds`] holds for the sending uid, accept everything
//! else (TCP handshakes, anything that does not parse, packets without a uid).
//!
//! How long a query can be held: the verdict thread does nothing but decode the packet and
//! look the name up in `Holds` under a mutex that the respond thread takes only to insert an
//! entry (never while doing I/O); it never touches the store, the pipeline or `nft`. So a
//! query waits for the queries ahead of it and no more (microseconds each; `benches/dnsqueue.sh`
//! measures it). The kernel queue is capped at [`MAX_QUEUED`] packets with the fail-open flag:
//! were the thread ever stalled, queries past that are accepted unjudged rather than dropped.
//!
//! The `nfq` crate (pure Rust over libc's netlink socket) does the netlink part: binding,
//! flags, uid/gid attributes and batched verdicts. It is small and maintained and has every
//! flag needed here (`fail-open`, queue length, uid/gid), so writing the netlink by hand would
//! repeat it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nfq::{Queue, Verdict};

use super::Holds;
use crate::decode::{self, L4};
use crate::principal::Principal;

/// The NFQUEUE number the ruleset sends DNS queries to.
pub const QUEUE: u16 = 7117;
/// Packets the kernel keeps waiting for a verdict; past that it accepts (fail-open).
pub const MAX_QUEUED: u32 = 1024;
/// Bytes of each packet copied to us: IP and UDP or TCP headers plus a query of any
/// legitimate length (names are at most 255 bytes).
const COPY: u16 = 1024;

/// What the verdict thread did, for the health row.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub accepted: AtomicU64,
    pub dropped: AtomicU64,
    /// Packets accepted without a judgement: no uid, or not a parsable query.
    pub unjudged: AtomicU64,
    /// Receive errors (the kernel's ENOBUFS: verdicts it could not queue to us).
    pub errors: AtomicU64,
}

impl QueueStats {
    pub fn json(&self) -> serde_json::Value {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "accepted": n(&self.accepted),
            "dropped": n(&self.dropped),
            "unjudged": n(&self.unjudged),
            "errors": n(&self.errors),
        })
    }
}

/// Binds the queue (needs CAP_NET_ADMIN: done before privileges are dropped).
pub fn open() -> std::io::Result<Queue> {
    let mut q = Queue::open()?;
    q.bind(QUEUE)?;
    q.set_fail_open(QUEUE, true)?;
    q.set_queue_max_len(QUEUE, MAX_QUEUED)?;
    q.set_recv_uid_gid(QUEUE, true)?;
    q.set_copy_range(QUEUE, COPY)?;
    Ok(q)
}

/// Gives verdicts until the process ends (its socket then closes and `bypass` takes over).
pub fn serve(mut q: Queue, holds: Arc<Mutex<Holds>>, stats: Arc<QueueStats>) {
    loop {
        let mut msg = match q.recv() {
            Ok(m) => m,
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let now = crate::units::wall_clock_us();
        let verdict = match (msg.get_uid(), name(msg.get_payload())) {
            (Some(uid), Some(name)) => {
                let held = holds.lock().unwrap_or_else(PoisonError::into_inner).held(Principal::Uid(uid), &name, now);
                let counter = if held { &stats.dropped } else { &stats.accepted };
                counter.fetch_add(1, Ordering::Relaxed);
                if held {
                    Verdict::Drop
                } else {
                    Verdict::Accept
                }
            }
            _ => {
                stats.unjudged.fetch_add(1, Ordering::Relaxed);
                Verdict::Accept
            }
        };
        msg.set_verdict(verdict);
        if q.verdict(msg).is_err() {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The first question's name of the DNS query in an IP packet, lower-case, without the final
/// dot; `None` for anything else (a TCP handshake, a damaged packet).
pub fn name(ip: &[u8]) -> Option<String> {
    let p = decode::ip::decode(ip, 0, None, None).ok()?;
    let msg = match p.l4 {
        L4::Udp { payload } => payload,
        L4::Tcp { payload } => decode::dns::tcp_messages(payload).next()?,
        _ => return None,
    };
    let q = decode::dns::parse(msg).ok()?;
    let mut out = String::with_capacity(q.qname.len());
    for label in q.qname.labels() {
        if !out.is_empty() {
            out.push('.');
        }
        // Names compare as the detector stores domains: ASCII lower-case, other bytes escaped.
        out.push_str(&crate::escape::printable_bytes(&label.to_ascii_lowercase()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let mut dns = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            dns.push(l.len() as u8);
            dns.extend_from_slice(l.as_bytes());
        }
        dns.extend_from_slice(&[0, 0, 1, 0, 1]);
        let udp_len = 8 + dns.len() as u16;
        let total = 20 + udp_len;
        let mut ip =
            vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1];
        ip.extend_from_slice(&[0x30, 0x39, 0, 53, (udp_len >> 8) as u8, udp_len as u8, 0, 0]);
        ip.extend_from_slice(&dns);
        ip
    }

    #[test]
    fn names_of_queries_and_nothing_for_other_packets() {
        assert_eq!(name(&query("AbC.Example.TEST")).as_deref(), Some("abc.example.test"));
        assert_eq!(name(&[]), None);
        assert_eq!(name(&query("x")[..30]), None, "cut inside the question");
        let mut garbage = query("a.b");
        garbage[28] = 0xff;
        let _ = name(&garbage);
    }
}
