//! The one place the stages meet: frames in (from any source), decode, detect, aggregate,
//! and rows and alerts out to the store. Live capture and replay differ only in the source.

use std::collections::BTreeMap;

use serde_json::json;

use crate::alert::Severity;
use crate::alert::{Alert, AlertKind};
use crate::config::Config;
use crate::decode::Frame;
use crate::decode::{self, DecodeError};
use crate::detect::crosscheck::{AuditCrossCheck, CrossCounters};
use crate::detect::dns::{DnsCounters, DnsDetector};
use crate::detect::icmp::{IcmpCounters, IcmpDetector};
use crate::detect::sensitive::{SensitiveCounters, SensitiveDetector};
use crate::detect::volume::{Crossing, VolumeCounters, VolumeDetector};
use crate::flows::FlowTable;
use crate::principal::{Dst, Principal};
use crate::rows::{DnsRow, EgressRow, MINUTE_US};
use crate::source::audit::{AuditEvent, FileRead};
use crate::source::FrameSink;
use crate::store::RunTotals;
use crate::units::{human_bytes, human_duration};

/// Rows are handed to the output in batches of about this many.
const ROW_BATCH: usize = 4096;

/// Where the pipeline's results go: the store's writer, or a test's collector.
pub trait Output {
    fn rows(&mut self, rows: Vec<EgressRow>);
    fn alert(&mut self, alert: &Alert);
    /// DNS aggregates per (principal, registered domain, minute). Collectors that only look
    /// at egress may leave this out.
    fn dns_rows(&mut self, rows: Vec<DnsRow>) {
        let _ = rows;
    }
    /// A sensitive file's read, from the audit trail (for `report files`).
    fn file_read(&mut self, read: &FileRead) {
        let _ = read;
    }
}

/// What the pipeline counted. Every frame lands in exactly one of: packets, `skipped` by
/// reason, or damaged records.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub packets: u64,
    pub bytes: u64,
    pub alerts: u64,
    pub damaged_records: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub dns: DnsCounters,
    pub icmp: IcmpCounters,
    pub sensitive: SensitiveCounters,
    pub crosscheck: CrossCounters,
    pub volume: VolumeCounters,
    /// Times the flow table's cap forced its rows out before their minute ended.
    pub flows_early_flushes: u64,
    /// Audit log lines and events not used, by reason (set by the audit source).
    pub audit_skipped: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Frames that were damaged (as opposed to fine but not egress).
    pub fn malformed(&self) -> u64 {
        self.damaged_records
            + [
                DecodeError::Truncated,
                DecodeError::BadIp,
                DecodeError::BadNflog,
            ]
            .iter()
            .map(|e| self.skipped.get(e.name()).copied().unwrap_or(0))
            .sum::<u64>()
    }

    pub fn ignored(&self) -> u64 {
        self.skipped.values().sum::<u64>() + self.damaged_records - self.malformed()
    }

    pub fn totals(&self) -> RunTotals {
        let mut counters: serde_json::Map<String, serde_json::Value> = self
            .skipped
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        counters.insert("damaged_record".into(), json!(self.damaged_records));
        self.dns
            .each(|k, v| drop(counters.insert(k.into(), json!(v))));
        self.icmp
            .each(|k, v| drop(counters.insert(k.into(), json!(v))));
        self.sensitive
            .each(|k, v| drop(counters.insert(k.into(), json!(v))));
        self.crosscheck
            .each(|k, v| drop(counters.insert(k.into(), json!(v))));
        self.volume
            .each(|k, v| drop(counters.insert(k.into(), json!(v))));
        counters.insert(
            "flows_early_flushes".into(),
            json!(self.flows_early_flushes),
        );
        counters.extend(
            self.audit_skipped
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v))),
        );
        RunTotals {
            packets: self.packets,
            bytes: self.bytes,
            malformed: self.malformed(),
            ignored: self.ignored(),
            alerts: self.alerts,
            counters: serde_json::Value::Object(counters),
        }
    }
}

pub struct Pipeline<O: Output> {
    volume: VolumeDetector,
    flows: FlowTable,
    pending: Vec<EgressRow>,
    /// Rows of minutes before this one have been swept out of the flow table.
    swept_minute: i64,
    /// Covert-channel detectors; `None` when switched off in the config.
    dns: Option<DnsDetector>,
    icmp: Option<IcmpDetector>,
    /// Their alerts from the current packet.
    covert: Vec<Alert>,
    /// Reads of sensitive files (audit trail) tied to egress; `None` without `[sensitive]`
    /// paths until an audit source is attached.
    sensitive: Option<SensitiveDetector>,
    /// NETFILTER_PKT records against NFLOG; only with an audit source and `[nft] audit`.
    crosscheck: Option<AuditCrossCheck>,
    /// Newest packet or audit event time.
    latest_us: i64,
    out: O,
    pub stats: Stats,
}

impl<O: Output> Pipeline<O> {
    pub fn new(config: &Config, out: O) -> Pipeline<O> {
        Pipeline {
            volume: VolumeDetector::new(&config.volume),
            flows: FlowTable::default(),
            pending: Vec::with_capacity(ROW_BATCH),
            swept_minute: i64::MIN,
            dns: config.dns.enabled.then(|| DnsDetector::new(&config.dns)),
            icmp: config.icmp.enabled.then(|| IcmpDetector::new(&config.icmp)),
            covert: Vec::new(),
            sensitive: (!config.sensitive.paths.is_empty())
                .then(|| SensitiveDetector::new(&config.sensitive)),
            crosscheck: None,
            latest_us: i64::MIN,
            out,
            stats: Stats::default(),
        }
    }

    /// Closes all open aggregates and hands everything pending to the output.
    pub fn flush(&mut self) {
        if let Some(c) = &mut self.crosscheck {
            c.check(self.latest_us, &mut self.covert);
            self.stats.crosscheck = c.counters.clone();
        }
        if let Some(s) = &self.sensitive {
            self.stats.sensitive = s.counters.clone();
        }
        self.raise_pending();
        self.flows.drain(&mut self.pending);
        if let Some(dns) = &mut self.dns {
            dns.drain();
        }
        self.emit_rows();
    }

    /// An audit source is attached: reads are tied to egress (with the configured or default
    /// `[sensitive]` settings) and, with `[nft] audit`, NETFILTER_PKT records checked.
    pub fn enable_audit(&mut self, config: &Config) {
        if self.sensitive.is_none() {
            self.sensitive = Some(SensitiveDetector::new(&config.sensitive));
        }
        if config.nft.audit && self.crosscheck.is_none() {
            self.crosscheck = Some(AuditCrossCheck::default());
        }
    }

    /// One event from the audit trail, in time order with the packets (replay merges them;
    /// live, both are now).
    pub fn audit(&mut self, ev: AuditEvent) {
        self.latest_us = self.latest_us.max(ev.ts_us());
        match ev {
            AuditEvent::Read(r) => {
                self.out.file_read(&r);
                if let Some(s) = &mut self.sensitive {
                    s.read(&r, &mut self.covert);
                    self.stats.sensitive = s.counters.clone();
                }
            }
            AuditEvent::Packet(n) => {
                if let Some(c) = &mut self.crosscheck {
                    c.audit(n);
                }
            }
            AuditEvent::Note(n) => self.covert.push(Alert {
                ts_us: n.ts_us,
                kind: AlertKind::AuditOff,
                severity: Severity::High,
                // Only root changes the audit configuration; the record says which login did.
                principal: Principal::Uid(n.by.unwrap_or(0)),
                dst: None,
                bytes: 0,
                summary: format!(
                    "audit trail: {}; reads of sensitive files are no longer recorded",
                    n.what
                ),
                details: json!({ "what": n.what }),
            }),
        }
        self.raise_pending();
    }

    /// Live: time has moved on to `now_us` even without packets, so audit records waiting for
    /// their NFLOG packets are judged at the next [`flush`](Self::flush).
    pub fn advance(&mut self, now_us: i64) {
        self.latest_us = self.latest_us.max(now_us);
    }

    fn raise_pending(&mut self) {
        if !self.covert.is_empty() {
            for alert in std::mem::take(&mut self.covert) {
                self.raise(alert);
            }
        }
    }

    /// Distinct principals seen so far.
    pub fn principals(&self) -> usize {
        self.volume.principals()
    }

    pub fn output(&mut self) -> &mut O {
        &mut self.out
    }

    pub fn into_output(mut self) -> O {
        self.flush();
        self.out
    }

    fn packet(&mut self, p: &decode::Packet<'_>) {
        let principal = Principal::of(p);
        let dst = Dst::of(p);
        let bytes = u64::from(p.wire_len);
        self.stats.packets += 1;
        self.stats.bytes += bytes;
        self.latest_us = self.latest_us.max(p.ts_us);

        let minute = p.ts_us.div_euclid(MINUTE_US) * MINUTE_US;
        if minute > self.swept_minute {
            // A new minute of packet time: earlier minutes' rows are complete.
            self.flows.sweep(minute, &mut self.pending);
            self.swept_minute = minute;
            if let Some(dns) = &mut self.dns {
                dns.sweep(minute);
            }
            if let Some(icmp) = &mut self.icmp {
                icmp.sweep(minute);
            }
            if let Some(s) = &mut self.sensitive {
                s.sweep(minute);
            }
            self.emit_rows();
        }
        self.flows
            .add(principal, p.gid, dst, p.ts_us, bytes, &mut self.pending);
        self.stats.flows_early_flushes = self.flows.early_flushes;
        if self.pending.len() >= ROW_BATCH {
            self.emit_rows();
        }

        let mut crossings = Vec::new();
        self.volume
            .observe(principal, p.ts_us, bytes, &mut self.stats.volume, |c| {
                crossings.push(c)
            });
        for c in crossings {
            let alert = self.volume_alert(c, dst);
            self.raise(alert);
        }

        if let Some(dns) = &mut self.dns {
            dns.observe(p, principal, &mut self.stats.dns, &mut self.covert);
        }
        if let Some(icmp) = &mut self.icmp {
            icmp.observe(p, principal, &mut self.stats.icmp, &mut self.covert);
        }
        if let Some(s) = &mut self.sensitive {
            s.packet(p, dst, bytes, &mut self.covert);
        }
        if let Some(c) = &mut self.crosscheck {
            c.packet(p);
        }
        self.raise_pending();
    }

    fn volume_alert(&self, c: Crossing, packet_dst: Dst) -> Alert {
        let dst = self.flows.top_dst(c.principal).unwrap_or(packet_dst);
        let window = human_duration(c.window);
        Alert {
            ts_us: c.ts_us,
            kind: AlertKind::Volume,
            severity: c.severity,
            principal: c.principal,
            dst: Some(dst.to_string()),
            bytes: c.bytes,
            summary: format!(
                "{} sent {} within {window} (threshold {}), most to {dst}",
                c.principal,
                human_bytes(c.bytes),
                human_bytes(c.threshold)
            ),
            details: json!({ "window_secs": c.window.as_secs(), "threshold_bytes": c.threshold }),
        }
    }

    fn raise(&mut self, alert: Alert) {
        self.stats.alerts += 1;
        // Rows first, so an alert never refers to traffic the store has not seen.
        self.emit_rows();
        self.out.alert(&alert);
    }

    fn emit_rows(&mut self) {
        if !self.pending.is_empty() {
            let rows = std::mem::replace(&mut self.pending, Vec::with_capacity(ROW_BATCH));
            self.out.rows(rows);
        }
        if let Some(dns) = self.dns.as_mut().filter(|d| d.pending_rows() > 0) {
            self.out.dns_rows(dns.take_rows());
        }
    }
}

/// Feeds a pipeline frames and saved audit events in time order: before each frame, the
/// events up to its time. [`Merge::finish`] hands over the rest.
pub struct Merge<'a, O: Output> {
    pipeline: &'a mut Pipeline<O>,
    events: std::iter::Peekable<std::vec::IntoIter<AuditEvent>>,
}

impl<'a, O: Output> Merge<'a, O> {
    /// `events` in any order; they are sorted by time (stable, so one event's order holds).
    pub fn new(pipeline: &'a mut Pipeline<O>, mut events: Vec<AuditEvent>) -> Merge<'a, O> {
        events.sort_by_key(AuditEvent::ts_us);
        Merge {
            pipeline,
            events: events.into_iter().peekable(),
        }
    }

    fn until(&mut self, ts_us: i64) {
        while let Some(ev) = self.events.next_if(|e| e.ts_us() <= ts_us) {
            self.pipeline.audit(ev);
        }
    }

    /// Feeds the events after the last frame and flushes, so the pipeline's counters are final.
    pub fn finish(mut self) {
        self.until(i64::MAX);
        self.pipeline.flush();
    }
}

impl<O: Output> FrameSink for Merge<'_, O> {
    fn frame(&mut self, frame: Frame<'_>) {
        self.until(frame.ts_us);
        self.pipeline.frame(frame);
    }

    fn damaged_record(&mut self) {
        self.pipeline.damaged_record();
    }
}

impl<O: Output> FrameSink for Pipeline<O> {
    fn frame(&mut self, frame: Frame<'_>) {
        match decode::decode(&frame) {
            Ok(p) => self.packet(&p),
            Err(e) => *self.stats.skipped.entry(e.name()).or_default() += 1,
        }
    }

    fn damaged_record(&mut self) {
        self.stats.damaged_records += 1;
    }
}
