//! Sensitive files: a read recorded by auditd, then egress by the same user.
//!
//! A state machine over event time. A [`FileRead`] opens a window of `[sensitive] window` for
//! the reader (a re-read extends it); egress by that uid inside the window accumulates, per
//! destination; when it reaches the file's threshold a `sensitive_egress` alert names the
//! file, the reader, the program, the destinations and the bytes. One alert per window; files
//! crossing on the same packet share one alert.
//!
//! **Threshold** = a quarter of the file's size, clamped to `[min_bytes, max_bytes]`:
//! - a quarter, because a copy may be compressed: zlib + base85 of a CSV is about a third of
//!   it, gzip of typical CSV a fifth to a third; a quarter catches those whole copies;
//! - at least `min_bytes` (16 KiB), because a short ssh command or a few HTTPS requests send a
//!   few KiB: for files smaller than 64 KiB only a near-whole copy is told apart from them;
//! - at most `max_bytes` (1 MiB), because a MiB of any sensitive file is already a meaningful
//!   part of it (ten thousand CSV rows), however large the file;
//! - with no size known (file gone, none in the config), `max_bytes`.
//!
//! **Which uid.** NFLOG stamps a packet with the fsuid of whoever opened its socket; auditd's
//! `fsuid` is the same credential at the time of the read, so a window opens for the `fsuid`.
//! When the login uid (`auid`) is set and differs (`sudo cat f | nc ...`: cat runs as root,
//! nc as the user), a window opens for it too. `uid`/`euid` are kept for the report only.
//!
//! **Closed sockets.** Packets a program's socket sends after close() carry no uid; the
//! pipeline credits them to their flow's uid before any detector sees them
//! ([`crate::attribute`]), so a script's send-and-close upload counts here whole.
//!
//! **Order.** The live monitor reads auditd's log a little after the kernel wrote it, so a read
//! may arrive after the first packets it explains. Each uid's egress of the last [`LOOKBACK_US`]
//! is kept (per second and destination, at most [`MAX_RECENT`] entries per uid) and credited
//! to a window opened late. Replays merge both sources by time and never need it.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde_json::json;

use super::{Detector, Findings, Seen, Tick};
use crate::alert::Severity;
use crate::alert::{Alert, AlertKind};
use crate::escape::printable_bytes;
use crate::principal::{Dst, Principal};
use crate::rows::{EgressRow, Recredit};
use crate::source::audit::AuditEvent;
use crate::source::audit::FileRead;
use crate::source::audit::{Reader, SensitivePath};
use crate::source::owner::Owner;
use crate::units::counters;
use crate::units::de::{byte_size, duration};
use crate::units::{human_bytes, human_duration};
use serde::{de, Deserialize, Deserializer};

/// How late a read may arrive after its first packets and still be credited with them.
pub const LOOKBACK_US: i64 = 120_000_000;
/// Recent-egress entries kept per uid (one per second and destination).
pub const MAX_RECENT: usize = 4096;
/// Destinations kept per window; the rest are added up as "other".
const MAX_DSTS: usize = 16;
/// A quarter: see the module documentation.
const SIZE_DIVISOR: u64 = 4;

counters! {
    /// What the detector counted.
    pub struct SensitiveCounters {
        reads => "sensitive_reads",
        /// Reads without any uid to attribute them to.
        reads_without_uid => "sensitive_reads_without_uid",
        windows_opened => "sensitive_windows",
        alerts => "sensitive_alerts",
        /// Recent-egress entries dropped because a uid had more than MAX_RECENT.
        recent_evicted => "sensitive_recent_evicted",
    }
}

#[derive(Debug)]
struct Window {
    read: FileRead,
    start_us: i64,
    end_us: i64,
    threshold: u64,
    bytes: u64,
    last_us: i64,
    dsts: Vec<(Dst, u64)>,
    other_bytes: u64,
    alerted: bool,
}

impl Window {
    fn add(&mut self, ts_us: i64, dst: Dst, bytes: u64) -> bool {
        if ts_us < self.start_us || ts_us > self.end_us {
            return false;
        }
        self.bytes += bytes;
        self.last_us = self.last_us.max(ts_us);
        if let Some((_, b)) = self.dsts.iter_mut().find(|(d, _)| *d == dst) {
            *b += bytes;
        } else if self.dsts.len() < MAX_DSTS {
            self.dsts.push((dst, bytes));
        } else {
            self.other_bytes += bytes;
        }
        !self.alerted && self.bytes >= self.threshold
    }
}

pub struct SensitiveDetector {
    window_us: i64,
    min_bytes: u64,
    max_bytes: u64,
    open: FxHashMap<u32, Vec<Window>>,
    recent: FxHashMap<u32, VecDeque<(i64, Dst, u64)>>,
    pub counters: SensitiveCounters,
}

impl SensitiveDetector {
    pub fn new(cfg: &SensitiveConfig) -> SensitiveDetector {
        SensitiveDetector {
            window_us: i64::try_from(cfg.window.as_micros()).unwrap_or(i64::MAX),
            min_bytes: cfg.min_bytes,
            max_bytes: cfg.max_bytes.max(cfg.min_bytes),
            open: FxHashMap::default(),
            recent: FxHashMap::default(),
            counters: SensitiveCounters::default(),
        }
    }

    /// The bytes of egress that make a read of a file of `size` bytes an alert.
    pub fn threshold(&self, size: Option<u64>) -> u64 {
        size.map_or(self.max_bytes, |s| (s / SIZE_DIVISOR).clamp(self.min_bytes, self.max_bytes))
    }

    /// A read: opens (or extends) the reader's window, credits egress already seen after it.
    pub fn read(&mut self, r: &FileRead, alerts: &mut Vec<Alert>) {
        self.counters.reads += 1;
        let mut uids: Vec<u32> = r.fsuid.or(r.uid).into_iter().collect();
        if let Some(a) = r.auid.filter(|a| !uids.contains(a)) {
            uids.push(a);
        }
        if uids.is_empty() {
            self.counters.reads_without_uid += 1;
        }
        let end_us = r.ts_us.saturating_add(self.window_us);
        let threshold = self.threshold(r.size);
        for uid in uids {
            let windows = self.open.entry(uid).or_default();
            if let Some(w) = windows.iter_mut().find(|w| w.read.path == r.path && w.end_us >= r.ts_us) {
                w.end_us = w.end_us.max(end_us);
                continue;
            }
            self.counters.windows_opened += 1;
            let mut w = Window {
                read: r.clone(),
                start_us: r.ts_us,
                end_us,
                threshold,
                bytes: 0,
                last_us: r.ts_us,
                dsts: Vec::new(),
                other_bytes: 0,
                alerted: false,
            };
            let mut crossed = false;
            for &(ts, dst, bytes) in self.recent.get(&uid).into_iter().flatten() {
                crossed |= w.add(ts, dst, bytes);
            }
            windows.push(w);
            if crossed {
                let i = windows.len() - 1;
                let ts = windows[i].last_us;
                self.alert(uid, &[i], ts, alerts);
            }
        }
    }

    /// Egress by `uid`.
    pub fn egress(&mut self, uid: u32, ts_us: i64, dst: Dst, bytes: u64, alerts: &mut Vec<Alert>) {
        let recent = self.recent.entry(uid).or_default();
        let second = ts_us.div_euclid(1_000_000);
        match recent.back_mut() {
            Some((t, d, b)) if t.div_euclid(1_000_000) == second && *d == dst => {
                *t = (*t).max(ts_us);
                *b += bytes;
            }
            _ => {
                if recent.len() >= MAX_RECENT {
                    recent.pop_front();
                    self.counters.recent_evicted += 1;
                }
                // Entries are credited by their last packet's time: at most a second late.
                recent.push_back((ts_us, dst, bytes));
            }
        }
        while recent.front().is_some_and(|(t, _, _)| *t < ts_us - LOOKBACK_US) {
            recent.pop_front();
        }
        let Some(windows) = self.open.get_mut(&uid) else {
            return;
        };
        let crossed: Vec<usize> =
            windows.iter_mut().enumerate().filter_map(|(i, w)| w.add(ts_us, dst, bytes).then_some(i)).collect();
        if !crossed.is_empty() {
            self.alert(uid, &crossed, ts_us, alerts);
        }
    }

    /// Takes back egress counted for `uid` that was `row`'s (the owner lookup answered late:
    /// the flow's bytes move to another principal), from its recent egress and open windows.
    /// A window that alerted stays alerted.
    fn take(&mut self, uid: u32, row: &EgressRow) {
        let during = |t: i64| t >= row.first_us && t <= row.last_us;
        let mut left = row.bytes;
        for (_, _, b) in
            self.recent.get_mut(&uid).into_iter().flatten().rev().filter(|(t, d, _)| *d == row.dst && during(*t))
        {
            let n = left.min(*b);
            (*b, left) = (*b - n, left - n);
        }
        let overlaps = |w: &&mut Window| w.start_us <= row.last_us && w.end_us >= row.first_us;
        for w in self.open.get_mut(&uid).into_iter().flatten().filter(overlaps) {
            let n = w.dsts.iter_mut().find(|(d, _)| *d == row.dst).map_or(0, |(_, b)| {
                let n = row.bytes.min(*b);
                *b -= n;
                n
            });
            w.bytes = w.bytes.saturating_sub(n);
        }
    }

    /// Forgets windows closed and egress too old to be credited, as of `now_us`.
    pub fn sweep(&mut self, now_us: i64) {
        self.open.retain(|_, ws| {
            ws.retain(|w| w.end_us >= now_us);
            !ws.is_empty()
        });
        self.recent.retain(|_, r| r.back().is_some_and(|(t, _, _)| *t >= now_us - LOOKBACK_US));
    }

    fn alert(&mut self, uid: u32, crossed: &[usize], ts_us: i64, alerts: &mut Vec<Alert>) {
        let Some(windows) = self.open.get_mut(&uid) else {
            return;
        };
        let mut files = Vec::new();
        let mut dsts: Vec<(Dst, u64)> = Vec::new();
        let mut other = 0;
        let mut bytes = 0;
        for &i in crossed {
            let w = &mut windows[i];
            w.alerted = true;
            bytes = bytes.max(w.bytes);
            other = other.max(w.other_bytes);
            for &(d, b) in &w.dsts {
                match dsts.iter_mut().find(|(x, _)| *x == d) {
                    Some((_, have)) => *have = (*have).max(b),
                    None => dsts.push((d, b)),
                }
            }
            let r = &w.read;
            files.push(json!({
                "path": printable_bytes(&r.path),
                "size": r.size,
                "read_at_us": r.ts_us,
                "uid": r.uid,
                "auid": r.auid,
                "fsuid": r.fsuid,
                "user": r.user,
                "pid": r.pid,
                "exe": r.exe,
                "comm": r.comm,
                "proctitle": r.proctitle,
                "threshold_bytes": w.threshold,
                "bytes_after_read": w.bytes,
            }));
        }
        self.counters.alerts += 1;
        dsts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let first = &windows[crossed[0]];
        let r = &first.read;
        let names: Vec<String> = crossed.iter().map(|&i| printable_bytes(&windows[i].read.path).into_owned()).collect();
        let who = match &r.user {
            Some(u) => format!("uid {uid} ({u})"),
            None => format!("uid {uid}"),
        };
        let program = r.exe.as_deref().or(r.comm.as_deref()).unwrap_or("an unknown program");
        let size = r.size.map_or_else(|| "size unknown".to_string(), human_bytes);
        let after = human_duration(std::time::Duration::from_micros((ts_us - r.ts_us).max(0) as u64));
        let top = dsts.first().map(|(d, _)| d.to_string());
        let to = match (&top, dsts.len()) {
            (Some(d), 1) => format!("to {d}"),
            (Some(d), n) => format!("to {n} destinations, most to {d}"),
            (None, _) => String::new(),
        };
        alerts.push(Alert {
            ts_us,
            kind: AlertKind::SensitiveEgress,
            severity: Severity::High,
            principal: Principal::Uid(uid),
            dst: top,
            bytes,
            summary: format!(
                "{who} sent {} {to} within {after} of reading {} ({size}) with {program}",
                human_bytes(bytes),
                names.join(", ")
            ),
            details: json!({
                "files": files,
                "destinations": dsts.iter().map(|(d, b)| json!({ "dst": d.to_string(), "bytes": b })).collect::<Vec<_>>(),
                "other_destinations_bytes": other,
                "window_secs": self.window_us / 1_000_000,
            }),
        });
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

impl SensitiveConfig {
    /// The audit source for these paths; `live` lets it ask the file system for sizes.
    pub fn audit_reader(&self, live: bool) -> Reader {
        Reader::new(&self.audit_key, &self.paths, live)
    }
}

impl Detector for SensitiveDetector {
    fn packet(&mut self, seen: &Seen<'_, '_>, out: &mut Findings) {
        if let Some(uid) = seen.sent.principal.uid() {
            self.egress(uid, seen.packet.ts_us, seen.sent.dst, seen.sent.bytes, &mut out.alerts);
        }
    }

    fn audit(&mut self, event: &AuditEvent, out: &mut Findings) {
        if let AuditEvent::Read(r) = event {
            self.read(r, &mut out.alerts);
        }
    }

    fn tick(&mut self, tick: Tick, _out: &mut Findings) {
        if let Tick::Minute(minute_us) = tick {
            self.sweep(minute_us);
        }
    }

    /// A pull over ssh: sshd's socket is root's until the lookup sees the session's login
    /// uid; the bytes then move to the user, and so into the user's windows.
    fn recredit(&mut self, moved: &Recredit, _owner: Option<&Owner>, out: &mut Findings) {
        for row in &moved.rows {
            if let Some(from) = moved.from.uid() {
                self.take(from, row);
            }
            if let Some(uid) = row.principal.uid() {
                self.egress(uid, row.last_us, row.dst, row.bytes, &mut out.alerts);
            }
        }
    }

    fn counters(&self, f: &mut dyn FnMut(&'static str, u64)) {
        self.counters.each(f)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use super::*;

    const S: i64 = 1_000_000;

    fn det() -> SensitiveDetector {
        SensitiveDetector::new(&SensitiveConfig { window: Duration::from_secs(1800), ..SensitiveConfig::default() })
    }

    fn read(ts_us: i64, fsuid: u32, auid: Option<u32>, size: Option<u64>) -> FileRead {
        FileRead {
            ts_us,
            serial: 1,
            path: b"/data/sensitive1.csv".to_vec(),
            uid: Some(fsuid),
            auid,
            fsuid: Some(fsuid),
            user: Some("alice".into()),
            pid: Some(42),
            exe: Some("/usr/bin/scp".into()),
            comm: Some("scp".into()),
            proctitle: None,
            size,
        }
    }

    fn dst(last: u8) -> Dst {
        Dst { addr: IpAddr::V4(Ipv4Addr::new(10, 77, 1, last)), port: 22, proto: 6 }
    }

    #[test]
    fn threshold_is_a_quarter_clamped() {
        let d = det();
        assert_eq!(d.threshold(Some(2 << 20)), 512 << 10);
        assert_eq!(d.threshold(Some(1000)), 16 << 10);
        assert_eq!(d.threshold(Some(1 << 30)), 1 << 20);
        assert_eq!(d.threshold(None), 1 << 20);
    }

    #[test]
    fn read_then_a_third_of_the_file_out_alerts_once() {
        let mut d = det();
        let mut alerts = Vec::new();
        d.read(&read(10 * S, 1001, Some(1001), Some(3 << 20)), &mut alerts);
        for i in 0..20 {
            d.egress(1001, 20 * S + i, dst(1), 64 << 10, &mut alerts);
        }
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.kind.as_str(), a.principal, a.dst.as_deref()),
            ("sensitive_egress", Principal::Uid(1001), Some("10.77.1.1:22/tcp"))
        );
        assert_eq!(a.bytes, 768 << 10);
        assert!(a.summary.contains("/data/sensitive1.csv") && a.summary.contains("/usr/bin/scp"), "{}", a.summary);
        assert!(a.summary.contains("uid 1001 (alice)"), "{}", a.summary);
        assert_eq!(a.details["files"][0]["exe"], "/usr/bin/scp");
    }

    #[test]
    fn little_or_nothing_sent_or_sent_by_someone_else_or_too_late_is_quiet() {
        let mut d = det();
        let mut alerts = Vec::new();
        d.read(&read(0, 1001, None, Some(2 << 20)), &mut alerts);
        d.egress(1001, S, dst(1), 5 << 10, &mut alerts);
        d.egress(1002, 2 * S, dst(1), 10 << 20, &mut alerts);
        d.egress(1001, 1801 * S, dst(1), 10 << 20, &mut alerts);
        assert!(alerts.is_empty(), "{alerts:?}");
    }

    #[test]
    fn egress_before_the_read_does_not_count_but_a_late_read_is_credited() {
        let mut d = det();
        let mut alerts = Vec::new();
        d.egress(1001, 5 * S, dst(1), 1 << 20, &mut alerts);
        d.egress(1001, 11 * S, dst(2), 1 << 20, &mut alerts);
        // The read (at 10 s) reaches the detector after the packets.
        d.read(&read(10 * S, 1001, None, Some(2 << 20)), &mut alerts);
        assert_eq!(alerts.len(), 1);
        assert_eq!((alerts[0].bytes, alerts[0].dst.as_deref()), (1 << 20, Some("10.77.1.2:22/tcp")));
    }

    /// A pull over ssh: the bytes count for root (sshd's socket) until the owner lookup moves
    /// them to the session's user, whose read of the file then explains them.
    #[test]
    fn bytes_moved_to_the_reader_count_for_the_reader_and_no_longer_for_root() {
        let mut d = det();
        let mut alerts = Vec::new();
        d.read(&read(10 * S, 1001, Some(1001), Some(2 << 20)), &mut alerts);
        d.read(&read(10 * S, 0, None, Some(2 << 20)), &mut alerts);
        d.egress(0, 11 * S, dst(1), 100 << 10, &mut alerts);
        assert!(alerts.is_empty(), "{alerts:?}");
        let row = EgressRow {
            principal: Principal::Uid(1001),
            gid: None,
            dst: dst(1),
            minute_us: 0,
            packets: 1000,
            bytes: 700 << 10,
            first_us: 9 * S,
            last_us: 12 * S,
            direction: Default::default(),
            dst_name: None,
        };
        let mut out = Findings::default();
        d.recredit(&Recredit { from: Principal::Uid(0), rows: vec![row] }, None, &mut out);
        assert_eq!(out.alerts.len(), 1, "{:?}", out.alerts);
        assert_eq!((out.alerts[0].principal, out.alerts[0].bytes), (Principal::Uid(1001), 700 << 10));
        // Root's window and recent egress no longer hold the bytes.
        assert_eq!(d.open[&0][0].bytes, 0);
        assert!(d.recent[&0].iter().all(|(_, _, b)| *b == 0));
    }

    #[test]
    fn login_uid_gets_a_window_too() {
        let mut d = det();
        let mut alerts = Vec::new();
        d.read(&read(0, 0, Some(1001), Some(100 << 10)), &mut alerts);
        d.egress(1001, S, dst(1), 30 << 10, &mut alerts);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].principal, Principal::Uid(1001));
    }

    #[test]
    fn two_files_crossing_together_share_one_alert_and_windows_expire() {
        let mut d = det();
        let mut alerts = Vec::new();
        d.read(&read(0, 7, None, Some(100 << 10)), &mut alerts);
        let mut other = read(S, 7, None, Some(80 << 10));
        other.path = b"/data/sensitive2.csv".to_vec();
        d.read(&other, &mut alerts);
        d.egress(7, 2 * S, dst(1), 40 << 10, &mut alerts);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].details["files"].as_array().unwrap().len(), 2);
        assert!(alerts[0].summary.contains("sensitive1.csv, /data/sensitive2.csv"), "{}", alerts[0].summary);
        d.sweep(4000 * S);
        assert!(d.open.is_empty() && d.recent.is_empty());
    }

    #[test]
    fn recent_egress_is_bounded() {
        let mut d = det();
        let mut alerts = Vec::new();
        for i in 0..(MAX_RECENT as i64 + 10) {
            d.egress(1, S, Dst { port: i as u16, ..dst(1) }, 1, &mut alerts);
        }
        assert_eq!(d.recent[&1].len(), MAX_RECENT);
        assert_eq!(d.counters.recent_evicted, 10);
    }
}
