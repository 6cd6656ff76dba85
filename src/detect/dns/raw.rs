//! Raw-mode state: UDP to port 53 that is not DNS (iodine's raw mode and the like), judged
//! per (principal, destination address).

use serde_json::json;

use super::alert::{escalated, severity};
use super::{DnsCounters, DnsDetector};

use crate::alert::{Alert, AlertKind};
use crate::decode::Packet;
use crate::detect::tally::{Episode, Tally};
use crate::principal::{endpoint, Principal};
use crate::units::{human_bytes, human_duration};

#[derive(Default)]
pub(super) struct Raw {
    pub(super) tally: Tally<2>,
    pub(super) episode: Episode,
    pub(super) bytes: u64,
    pub(super) last_us: i64,
}

impl DnsDetector {
    pub(super) fn raw(&mut self, p: &Packet<'_>, who: Principal, c: &mut DnsCounters, alerts: &mut Vec<Alert>) {
        c.not_dns += 1;
        let key = (who, p.dst);
        if !self.raw.contains_key(&key) && self.raw.len() >= self.cfg.max_pairs {
            c.pairs_full += 1;
            return;
        }
        let ts = p.ts_us;
        let r = self.raw.entry(key).or_default();
        r.last_us = r.last_us.max(ts);
        r.bytes += u64::from(p.wire_len);
        let sums = r.tally.add(ts, self.bucket_us, [1, p.wire_len]);
        let cfg = &self.cfg;
        let over = sums[0] >= cfg.raw_packets;
        let quiet = sums[0] < cfg.raw_packets.div_ceil(2);
        let was_open = r.episode.is_open();
        let step = r.episode.update(over, quiet, r.bytes, cfg.escalate_bytes);
        if was_open && !r.episode.is_open() {
            r.bytes = 0;
        }
        let Some(step) = step else { return };
        let dst = endpoint(p.dst, 53, p.proto) + "/udp";
        let (severity, escalation) = severity(step);
        alerts.push(Alert {
            ts_us: ts,
            kind: AlertKind::DnsTunnel,
            severity,
            principal: who,
            dst: Some(dst.clone()),
            bytes: r.bytes,
            summary: format!(
                "{who} sent {} packets ({}) to {dst} within {} that are not DNS: a raw DNS tunnel{}",
                sums[0],
                human_bytes(u64::from(sums[1])),
                human_duration(cfg.window),
                escalated(escalation, r.bytes),
            ),
            details: json!({
                "raw": true,
                "resolver": p.dst.to_string(),
                "window_secs": cfg.window.as_secs(),
                "packets": sums[0],
                "bytes": sums[1],
                "estimated_bytes": r.bytes,
                "escalation": escalation,
            }),
        });
    }
}
