//! The one place the stages meet: frames in (from any source), decode, detect, aggregate,
//! and rows and alerts out to the store. Live capture and replay differ only in the source.
//!
//! The pipeline only routes: every detector sits behind [`Detector`] and is listed once, in
//! [`registry`]. It decodes each frame, works out who sent it where ([`Seen`]), aggregates
//! egress per minute ([`FlowTable`]), hands the packet, audit events and the passing of time
//! to the detectors and passes on what they find, rows always before the alerts about them.

use std::collections::BTreeMap;

use serde_json::json;

use crate::alert::Alert;
use crate::attribute::{Attribution, Lookups};
use crate::config::Config;
use crate::decode::{self, DecodeError, Direction, Frame};
use crate::detect::audit_off::AuditOff;
use crate::detect::baseline::BaselineDetector;
use crate::detect::crosscheck::AuditCrossCheck;
use crate::detect::dns::DnsDetector;
use crate::detect::icmp::IcmpDetector;
use crate::detect::names_seen::NamesSeen;
use crate::detect::sensitive::SensitiveDetector;
use crate::detect::volume::VolumeDetector;
use crate::detect::{Detector, Findings, Past, Seen, Tick};
use crate::flows::FlowTable;
use crate::principal::{Dst, Principal};
use crate::rows::{DnsRow, EgressRow, IcmpRow, ProgramRow, Recredit, RunTotals, Sent, MINUTE_US};
use crate::source::audit::{AuditEvent, FileRead};
use crate::source::FrameSink;

/// Rows are handed to the output in batches of about this many.
const ROW_BATCH: usize = 4096;

/// Frames of one [`FrameSink::frames`] call decoded ahead at most (more are taken one by one).
const MAX_BATCH: usize = 32;
/// How many packets ahead a flow's memory is fetched: enough to hide a miss to DRAM, few
/// enough that the fetches in flight do not queue behind each other.
const LEAD: usize = 8;

/// One registered detector: when the configuration wants it, how to build it, and whether
/// a running one can carry on under a new configuration (a reload keeps its state then).
struct Entry {
    name: &'static str,
    /// `audit`: an audit source is attached.
    wanted: fn(&Config, bool) -> bool,
    build: fn(&Config) -> Box<dyn Detector>,
    same: fn(&Config, &Config) -> bool,
    /// Also sees what is not egress: inbound DNS answers and queries to a resolver on this
    /// host (never counted as sent; the other detectors never see them).
    not_egress: bool,
}

/// Every detector, in the order each sees a packet. A new detector is one entry here (and its
/// config section in [`Config`]).
const REGISTRY: &[Entry] = &[
    Entry {
        name: "volume",
        wanted: |_, _| true,
        build: |c| Box::new(VolumeDetector::new(&c.volume, c.accounts.people)),
        same: |a, b| a.volume == b.volume && a.accounts == b.accounts,
        not_egress: false,
    },
    Entry {
        name: "dns",
        wanted: |c, _| c.dns.enabled,
        build: |c| Box::new(DnsDetector::new(&c.dns)),
        same: |a, b| a.dns == b.dns,
        not_egress: true,
    },
    Entry {
        name: "icmp",
        wanted: |c, _| c.icmp.enabled,
        build: |c| Box::new(IcmpDetector::new(&c.icmp)),
        same: |a, b| a.icmp == b.icmp,
        not_egress: false,
    },
    // Sensitive paths without an audit source still tie uid-less packets to their flows.
    Entry {
        name: "sensitive",
        wanted: |c, audit| audit || !c.sensitive.paths.is_empty(),
        build: |c| Box::new(SensitiveDetector::new(&c.sensitive)),
        same: |a, b| a.sensitive == b.sensitive,
        not_egress: false,
    },
    Entry {
        name: "crosscheck",
        wanted: |c, audit| audit && c.nft.audit,
        build: |_| Box::new(AuditCrossCheck::default()),
        same: |_, _| true,
        not_egress: false,
    },
    Entry {
        name: "audit_off",
        wanted: |_, audit| audit,
        build: |_| Box::new(AuditOff),
        same: |_, _| true,
        not_egress: false,
    },
    Entry {
        name: "baseline",
        wanted: |c, _| c.baseline.enabled,
        build: |c| Box::new(BaselineDetector::new(&c.baseline, c.accounts.people)),
        same: |a, b| a.baseline == b.baseline && a.accounts == b.accounts,
        not_egress: false,
    },
    // Last: it names the destinations of what the others raised on the same input.
    Entry {
        name: "names",
        wanted: |c, _| c.names.enabled,
        build: |c| Box::new(NamesSeen::new(&c.names)),
        same: |a, b| a.names == b.names,
        not_egress: true,
    },
];

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
    /// The ICMP detector's window per (principal, peer, minute), read back on restart.
    fn icmp_rows(&mut self, rows: Vec<IcmpRow>) {
        let _ = rows;
    }
    /// Live: egress split by the program that sent it.
    fn programs(&mut self, rows: Vec<ProgramRow>) {
        let _ = rows;
    }
    /// Live: bytes of rows already handed over that belong to another principal; they come
    /// after the rows they correct.
    fn recredits(&mut self, moves: Vec<Recredit>) {
        let _ = moves;
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
    /// Of those, the ones whose source said why (`pcapng_no_interface`), by reason.
    pub damaged_reasons: BTreeMap<&'static str, u64>,
    pub skipped: BTreeMap<&'static str, u64>,
    /// Times the flow table's cap forced its rows out before their minute ended.
    pub flows_early_flushes: u64,
    /// The detectors' counters as of the last flush, by stored name; with those of detectors
    /// a reload replaced added in.
    pub detectors: BTreeMap<&'static str, u64>,
    /// Audit log lines and events not used, by reason (set by the audit source).
    pub audit_skipped: BTreeMap<&'static str, u64>,
}

impl Stats {
    /// Frames that were damaged (as opposed to fine but not egress).
    pub fn malformed(&self) -> u64 {
        self.damaged_records
            + [DecodeError::Truncated, DecodeError::BadIp, DecodeError::BadNflog]
                .iter()
                .map(|e| self.skipped.get(e.name()).copied().unwrap_or(0))
                .sum::<u64>()
    }

    pub fn ignored(&self) -> u64 {
        self.skipped.values().sum::<u64>() + self.damaged_records - self.malformed()
    }

    pub fn totals(&self) -> RunTotals {
        let mut counters: serde_json::Map<String, serde_json::Value> =
            self.skipped.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        counters.insert("damaged_record".into(), json!(self.damaged_records));
        counters.extend(self.damaged_reasons.iter().map(|(k, v)| (k.to_string(), json!(v))));
        counters.extend(self.detectors.iter().map(|(k, v)| (k.to_string(), json!(v))));
        counters.insert("flows_early_flushes".into(), json!(self.flows_early_flushes));
        counters.extend(self.audit_skipped.iter().map(|(k, v)| (k.to_string(), json!(v))));
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
    /// The registry's entries in use, with their detectors.
    detectors: Vec<(&'static Entry, Box<dyn Detector>)>,
    /// What they were built from.
    config: Config,
    audit: bool,
    /// Counters of detectors a reload replaced, so totals never go backwards.
    retired: BTreeMap<&'static str, u64>,
    attribution: Attribution,
    flows: FlowTable,
    pending: Vec<EgressRow>,
    /// Moves of counted bytes to hand over after `pending`.
    recredits: Vec<Recredit>,
    /// Rows of minutes before this one have been swept out of the flow table.
    swept_minute: i64,
    /// What the detectors found on the current input, not yet passed on.
    found: Findings,
    /// Newest packet or audit event time.
    latest_us: i64,
    out: O,
    pub stats: Stats,
}

impl<O: Output> Pipeline<O> {
    pub fn new(config: &Config, out: O) -> Pipeline<O> {
        let mut pipeline = Pipeline {
            detectors: Vec::new(),
            config: config.clone(),
            audit: false,
            retired: BTreeMap::new(),
            attribution: Attribution::default(),
            flows: FlowTable::default(),
            pending: Vec::with_capacity(ROW_BATCH),
            recredits: Vec::new(),
            swept_minute: i64::MIN,
            found: Findings::default(),
            latest_us: i64::MIN,
            out,
            stats: Stats::default(),
        };
        pipeline.configure(config, false);
        pipeline
    }

    /// An audit source is attached: reads are tied to egress (with the configured or default
    /// `[sensitive]` settings) and, with `[nft] audit`, NETFILTER_PKT records checked.
    pub fn enable_audit(&mut self, config: &Config) {
        self.configure(config, true);
    }

    /// A new configuration (SIGHUP): detectors whose settings did not change carry on with
    /// their windows and episodes; the others start afresh.
    pub fn reconfigure(&mut self, config: &Config) {
        self.configure(config, self.audit);
    }

    fn configure(&mut self, config: &Config, audit: bool) {
        let mut old = std::mem::take(&mut self.detectors);
        for entry in REGISTRY.iter().filter(|e| (e.wanted)(config, audit)) {
            let running = old.iter().position(|(e, _)| e.name == entry.name && (e.same)(&self.config, config));
            let detector = match running {
                Some(i) => old.swap_remove(i).1,
                None => (entry.build)(config),
            };
            self.detectors.push((entry, detector));
        }
        for (_, d) in old {
            d.counters(&mut |k, v| *self.retired.entry(k).or_default() += v);
        }
        self.config = config.clone();
        self.audit = audit;
    }

    /// Closes all open aggregates and hands everything pending to the output.
    pub fn flush(&mut self) {
        self.flush_held(false);
    }

    /// [`flush`](Self::flush); `all`: the end, so program rows still held go out too.
    fn flush_held(&mut self, all: bool) {
        self.tick(Tick::Flush(self.latest_us));
        self.flows.drain(&mut self.pending);
        self.pass_on();
        let programs = self.attribution.drain_programs(self.latest_us, all);
        if !programs.is_empty() {
            self.out.programs(programs);
        }
        let mut counters = self.retired.clone();
        self.attribution.each(&mut |k, v| *counters.entry(k).or_default() += v);
        for (_, d) in &self.detectors {
            d.counters(&mut |k, v| *counters.entry(k).or_default() += v);
        }
        self.stats.detectors = counters;
    }

    /// One event from the audit trail, in time order with the packets (replay merges them;
    /// live, both are now).
    pub fn audit(&mut self, ev: AuditEvent) {
        self.latest_us = self.latest_us.max(ev.ts_us());
        match &ev {
            AuditEvent::Read(r) => self.out.file_read(r),
            AuditEvent::Login(l) => {
                self.attribution.login(l.pid, l.auid, l.ts_us);
                self.recredit();
            }
            _ => {}
        }
        for (_, d) in &mut self.detectors {
            d.audit(&ev, &mut self.found);
        }
        self.pass_on();
    }

    /// What an earlier run stored, oldest first, before the first packet of this one.
    pub fn resume(&mut self, past: Past<'_>) {
        for (_, d) in &mut self.detectors {
            d.resume(past);
        }
    }

    /// A principal's stored bytes in one past hour, oldest first, before the first packet.
    pub fn history(&mut self, principal: Principal, hour_us: i64, bytes: u64) {
        for (_, d) in &mut self.detectors {
            d.history(principal, hour_us, bytes);
        }
    }

    /// Live: who is behind each new flow is asked of `lookups` (see [`crate::attribute`]).
    pub fn set_lookups(&mut self, lookups: Box<dyn Lookups>) {
        self.attribution = Attribution::with_lookups(lookups);
    }

    /// Live: takes the owner lookups' answers that arrived.
    pub fn poll_owners(&mut self) {
        self.attribution.poll();
        self.recredit();
    }

    /// Moves bytes an answer showed to be another principal's, in the rows and the detectors:
    /// the old principal's open row of the flow's destination goes out first, so the store
    /// takes the bytes off a row it has.
    fn recredit(&mut self) {
        if !self.attribution.moved() {
            return;
        }
        let moves = self.attribution.take_moves();
        for (m, owner) in &moves {
            for row in &m.rows {
                self.flows.close(m.from, row.dst, &mut self.pending);
            }
            for (_, d) in &mut self.detectors {
                d.recredit(m, owner.as_deref(), &mut self.found);
            }
        }
        self.recredits.extend(moves.into_iter().map(|(m, _)| m));
        self.pass_on();
    }

    /// Live: time has moved on to `now_us` even without packets, so audit records waiting for
    /// their NFLOG packets are judged at the next [`flush`](Self::flush).
    pub fn advance(&mut self, now_us: i64) {
        self.latest_us = self.latest_us.max(now_us);
    }

    /// Distinct principals seen so far (the volume detector's count).
    pub fn principals(&self) -> u64 {
        self.stats.detectors.get("volume_principals").copied().unwrap_or(0)
    }

    pub fn output(&mut self) -> &mut O {
        &mut self.out
    }

    pub fn into_output(mut self) -> O {
        self.flush_held(true);
        self.out
    }

    /// Starts fetching what the packet's flow will touch: its flow memory, and the open row of
    /// its uid and destination (a uid-less packet's principal is not known before its turn).
    fn prefetch(&self, p: &decode::Packet<'_>) {
        self.attribution.prefetch(p);
        if let (Some(uid), true) = (p.uid, p.direction.is_egress()) {
            self.flows.prefetch(Principal::Uid(uid), Dst::of(p));
        }
    }

    fn decoded(&mut self, d: &Result<decode::Packet<'_>, DecodeError>) {
        match d {
            Ok(p) => self.packet(p),
            Err(e) => *self.stats.skipped.entry(e.name()).or_default() += 1,
        }
    }

    fn tick(&mut self, tick: Tick) {
        for (_, d) in &mut self.detectors {
            d.tick(tick, &mut self.found);
        }
    }

    fn packet(&mut self, p: &decode::Packet<'_>) {
        if !p.direction.is_egress() {
            return self.not_egress(p);
        }
        let (principal, owner) = self.attribution.principal(p);
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
            self.attribution.sweep(minute);
            self.tick(Tick::Minute(minute));
            self.pass_on();
        }
        let sent = Sent { principal, gid: p.gid, direction: p.direction, dst, ts_us: p.ts_us, bytes };
        self.flows.add(&sent, &mut self.pending);
        self.stats.flows_early_flushes = self.flows.early_flushes;

        let seen = Seen { packet: p, sent, owner: owner.as_deref(), flows: &self.flows };
        for (_, d) in &mut self.detectors {
            d.packet(&seen, &mut self.found);
        }
        self.recredit();
        if self.pending.len() >= ROW_BATCH || !self.found.alerts.is_empty() || !self.found.dns_rows.is_empty() {
            self.pass_on();
        }
    }

    /// An inbound DNS answer or a query to a resolver on this host: not egress (no flow, no
    /// totals), handed only to the detectors that read them. An answer is credited to whoever
    /// asked (the query's flow, mirrored).
    fn not_egress(&mut self, p: &decode::Packet<'_>) {
        self.latest_us = self.latest_us.max(p.ts_us);
        let query = match p.direction {
            Direction::Answer => decode::Packet { src: p.dst, dst: p.src, sport: p.dport, dport: p.sport, ..*p },
            _ => *p,
        };
        let (principal, owner) = self.attribution.principal(&query);
        let sent =
            Sent { principal, gid: p.gid, direction: p.direction, dst: Dst::of(&query), ts_us: p.ts_us, bytes: 0 };
        let seen = Seen { packet: p, sent, owner: owner.as_deref(), flows: &self.flows };
        for (entry, d) in &mut self.detectors {
            if entry.not_egress {
                d.packet(&seen, &mut self.found);
            }
        }
    }

    /// Hands rows, then alerts, to the output: an alert never refers to traffic the store has
    /// not seen.
    fn pass_on(&mut self) {
        if !self.pending.is_empty() {
            let mut rows = std::mem::replace(&mut self.pending, Vec::with_capacity(ROW_BATCH));
            for row in rows.iter_mut().filter(|r| r.dst_name.is_none()) {
                row.dst_name =
                    self.detectors.iter().find_map(|(_, d)| d.name_of(row.principal, row.dst.addr)).map(Into::into);
            }
            self.out.rows(rows);
        }
        if !self.recredits.is_empty() {
            self.out.recredits(std::mem::take(&mut self.recredits));
        }
        if !self.found.dns_rows.is_empty() {
            self.out.dns_rows(std::mem::take(&mut self.found.dns_rows));
        }
        if !self.found.icmp_rows.is_empty() {
            self.out.icmp_rows(std::mem::take(&mut self.found.icmp_rows));
        }
        for alert in self.found.alerts.drain(..) {
            self.stats.alerts += 1;
            self.out.alert(&alert);
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
        Merge { pipeline, events: events.into_iter().peekable() }
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

    fn frames(&mut self, frames: &[Frame<'_>]) {
        let last = frames.iter().map(|f| f.ts_us).max().unwrap_or(i64::MIN);
        if self.events.peek().is_some_and(|e| e.ts_us() <= last) {
            frames.iter().for_each(|f| self.frame(*f));
        } else {
            self.pipeline.frames(frames);
        }
    }

    fn damaged_record(&mut self) {
        self.pipeline.damaged_record();
    }

    fn unusable_record(&mut self, reason: &'static str) {
        self.pipeline.unusable_record(reason);
    }
}

impl<O: Output> FrameSink for Pipeline<O> {
    fn frame(&mut self, frame: Frame<'_>) {
        self.decoded(&decode::decode(&frame));
    }

    /// Decodes the frames first, then has the memory of each packet's flow fetched while the
    /// [`LEAD`] packets before it are processed: on a flow-heavy capture that memory is rarely
    /// in the CPU's cache, and waiting for it cost a replay a tenth of its time.
    fn frames(&mut self, frames: &[Frame<'_>]) {
        let (now, later) = frames.split_at(frames.len().min(MAX_BATCH));
        let mut decoded = [const { Err(DecodeError::Truncated) }; MAX_BATCH];
        for (slot, f) in decoded.iter_mut().zip(now) {
            *slot = decode::decode(f);
        }
        let decoded = &decoded[..now.len()];
        for p in decoded.iter().take(LEAD).flatten() {
            self.prefetch(p);
        }
        for (i, d) in decoded.iter().enumerate() {
            if let Some(Ok(ahead)) = decoded.get(i + LEAD) {
                self.prefetch(ahead);
            }
            self.decoded(d);
        }
        for f in later {
            self.frame(*f);
        }
    }

    fn damaged_record(&mut self) {
        self.stats.damaged_records += 1;
    }

    fn unusable_record(&mut self, reason: &'static str) {
        self.damaged_record();
        *self.stats.damaged_reasons.entry(reason).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::decode::LinkType;

    #[derive(Default)]
    struct Kept {
        rows: Vec<EgressRow>,
        alerts: Vec<(i64, String)>,
    }

    impl Output for Kept {
        fn rows(&mut self, rows: Vec<EgressRow>) {
            self.rows.extend(rows);
        }
        fn alert(&mut self, alert: &Alert) {
            self.alerts.push((alert.ts_us, alert.summary.clone()));
        }
    }

    /// A capture's frames, owned.
    #[derive(Default)]
    struct Owned(Vec<(i64, LinkType, Vec<u8>)>);

    impl FrameSink for Owned {
        fn frame(&mut self, f: Frame<'_>) {
            self.0.push((f.ts_us, f.link, f.data.to_vec()));
        }
        fn damaged_record(&mut self) {}
    }

    /// Frames handed over in batches (with prefetches, longer than a batch, with frames that
    /// do not decode) count exactly as the same frames one by one.
    #[test]
    fn frames_in_batches_count_as_one_by_one() {
        for name in ["nflog-sample.pcap", "nflog-synth.pcap", "many-hosts.pcap", "truncated.pcap"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pcaps").join(name);
            let mut owned = Owned::default();
            crate::source::pcap::read_file(&path, &mut owned, &mut |_| {}).unwrap();
            let frames: Vec<Frame<'_>> =
                owned.0.iter().map(|(ts_us, link, data)| Frame { ts_us: *ts_us, link: *link, data }).collect();
            let config = Config::default();
            let mut one = Pipeline::new(&config, Kept::default());
            frames.iter().for_each(|f| one.frame(*f));
            let mut batched = Pipeline::new(&config, Kept::default());
            frames.chunks(MAX_BATCH + 13).for_each(|c| batched.frames(c));
            let (mut one, mut batched) = (one.into_output(), batched.into_output());
            assert!(!one.rows.is_empty(), "{name}");
            for kept in [&mut one, &mut batched] {
                kept.rows.sort_by_key(|r| (r.minute_us, r.principal, r.dst, r.first_us));
            }
            assert_eq!(one.rows, batched.rows, "{name}");
            assert_eq!(one.alerts, batched.alerts, "{name}");
        }
    }
}
