//! Records to events: the kernel writes one audit event as several records sharing a serial
//! (`SYSCALL`, `CWD`, `PATH`..., `PROCTITLE`), and records of concurrent events can interleave.
//! The [`Assembler`] collects them per serial and emits what exfilmon uses:
//!
//! - [`FileRead`]: a successful syscall carrying our rule key (`-k exfilmon-sensitive`), with
//!   the file's path (relative names joined with the `CWD` record), who (uid, login uid, fsuid,
//!   the resolved user name of ENRICHED logs) and which program (`exe`, `comm`, `proctitle`);
//! - [`NetPkt`]: a `NETFILTER_PKT` record from `log level audit` in the ruleset;
//! - [`Login`]: a `LOGIN` record, the kernel setting a process's login uid (pam_loginuid at
//!   a session's start), so a flow of that session counts for its user even when the session
//!   ended before the owner lookup saw the login uid;
//! - [`AuditNote`]: the audit trail itself changing (auditd stopping, auditing switched off,
//!   our rules removed), which silences the file-read trail.
//!
//! An event is complete at its `PROCTITLE` or `EOE` record; one still open when a record two
//! seconds newer arrives (auditd's own `end_of_event_timeout`), or when more than
//! [`MAX_OPEN`] are open, is emitted as it is. Memory is bounded: [`MAX_OPEN`] open events of
//! at most [`MAX_PATHS`] paths each. Everything not used is counted by reason.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::parse::{LineError, Record, Value};
use crate::escape::printable_bytes;

/// Events being assembled at most; interleaving deeper than this is not seen in practice.
pub const MAX_OPEN: usize = 64;
/// PATH records kept per event (a rename has 4, an execve a handful).
pub const MAX_PATHS: usize = 8;
/// An open event is complete when a record this much newer arrives (auditd's default).
const EVENT_TIMEOUT_US: i64 = 2_000_000;
/// `proctitle` is cut to this many bytes: it is shown, not parsed.
const MAX_PROCTITLE: usize = 256;
/// `AT_FDCWD` as the kernel prints `a0` of `openat`: relative names are relative to the CWD.
const AT_FDCWD: &[u8] = b"ffffff9c";

/// A successful read of a watched file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRead {
    pub ts_us: i64,
    pub serial: u64,
    /// Absolute and lexically normalised when the record allows it; raw bytes.
    pub path: Vec<u8>,
    /// Real uid.
    pub uid: Option<u32>,
    /// Login uid (`auid`): who logged in, kept across su and sudo.
    pub auid: Option<u32>,
    /// File-system uid: the credential the kernel checked for this open, and the one it
    /// stamps on the sockets the process opens (what NFLOG reports as the packet's uid).
    pub fsuid: Option<u32>,
    /// The user name auditd resolved on the recording host (ENRICHED logs), escaped.
    pub user: Option<String>,
    pub pid: Option<u32>,
    /// Escaped for terminals; these come from the user.
    pub exe: Option<String>,
    pub comm: Option<String>,
    pub proctitle: Option<String>,
    /// The file's size, filled by the reader (from the file system or the config).
    pub size: Option<u64>,
}

/// One `NETFILTER_PKT` record: a packet the ruleset sent to the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetPkt {
    pub ts_us: i64,
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub proto: u8,
    /// 0 when the kernel does not report ports (older kernels, other protocols).
    pub sport: u16,
    pub dport: u16,
}

/// A process got a login uid (`LOGIN` with `res=1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    pub ts_us: i64,
    pub pid: u32,
    pub auid: u32,
}

/// The audit trail changed in a way that silences it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditNote {
    pub ts_us: i64,
    /// One line a person reads.
    pub what: String,
    /// Who did it: the record's login uid, else its uid.
    pub by: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditEvent {
    Read(FileRead),
    Packet(NetPkt),
    Login(Login),
    Note(AuditNote),
}

impl AuditEvent {
    pub fn ts_us(&self) -> i64 {
        match self {
            AuditEvent::Read(r) => r.ts_us,
            AuditEvent::Packet(p) => p.ts_us,
            AuditEvent::Login(l) => l.ts_us,
            AuditEvent::Note(t) => t.ts_us,
        }
    }
}

/// An event being assembled.
#[derive(Debug, Default)]
struct Partial {
    ts_us: i64,
    serial: u64,
    /// Set by the SYSCALL record: whether it carries our key.
    keyed: Option<bool>,
    success: bool,
    relative_to_cwd: bool,
    uid: Option<u32>,
    auid: Option<u32>,
    fsuid: Option<u32>,
    user: Option<String>,
    pid: Option<u32>,
    exe: Option<String>,
    comm: Option<String>,
    cwd: Option<Vec<u8>>,
    /// (name, is a directory), PARENT items left out.
    paths: Vec<(Vec<u8>, bool)>,
    proctitle: Option<String>,
}

pub struct Assembler {
    key: Vec<u8>,
    open: Vec<Partial>,
    /// Newest record time seen: drives the event timeout.
    newest_us: i64,
    /// Lines and events not used, by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    pub lines: u64,
}

impl Assembler {
    /// Assembles events whose SYSCALL record carries `key`.
    pub fn new(key: &str) -> Assembler {
        Assembler {
            key: key.as_bytes().to_vec(),
            open: Vec::new(),
            newest_us: i64::MIN,
            skipped: BTreeMap::new(),
            lines: 0,
        }
    }

    fn count(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    /// Feeds one log line (with or without its newline).
    pub fn line(&mut self, line: &[u8], out: &mut dyn FnMut(AuditEvent)) {
        self.lines += 1;
        match Record::parse(line) {
            Ok(r) => self.record(&r, out),
            Err(LineError::NoType) if line.iter().all(u8::is_ascii_whitespace) => {}
            Err(e) => self.count(e.name()),
        }
    }

    /// Emits every event still open (end of a file).
    pub fn finish(&mut self, out: &mut dyn FnMut(AuditEvent)) {
        for p in std::mem::take(&mut self.open) {
            self.emit(p, out);
        }
    }

    pub fn record(&mut self, r: &Record<'_>, out: &mut dyn FnMut(AuditEvent)) {
        if r.ts_us > self.newest_us {
            self.newest_us = r.ts_us;
            self.expire(out);
        }
        match r.kind {
            b"NETFILTER_PKT" => match net_pkt(r) {
                Some(p) => out(AuditEvent::Packet(p)),
                None => self.count("audit_netfilter_pkt_malformed"),
            },
            b"LOGIN" => match (r.number("res"), r.id("pid"), r.id("auid")) {
                (Some(1), Some(pid), Some(auid)) => out(AuditEvent::Login(Login { ts_us: r.ts_us, pid, auid })),
                _ => self.count("audit_login_unused"),
            },
            b"DAEMON_END" | b"DAEMON_ABORT" => {
                out(AuditEvent::Note(AuditNote { ts_us: r.ts_us, what: "auditd stopped".into(), by: by(r) }))
            }
            b"CONFIG_CHANGE" => {
                if let Some(what) = self.config_change(r) {
                    out(AuditEvent::Note(AuditNote { ts_us: r.ts_us, what, by: by(r) }));
                }
            }
            b"SYSCALL" | b"CWD" | b"PATH" | b"PROCTITLE" | b"EOE" => self.part(r, out),
            _ => {}
        }
    }

    /// Auditing switched off, or a rule with our key removed.
    fn config_change(&self, r: &Record<'_>) -> Option<String> {
        if r.number("audit_enabled") == Some(0) {
            return Some("auditing switched off (audit_enabled=0)".into());
        }
        let op = r.value("op")?.bytes()?;
        if op.as_ref() == b"remove_rule" && r.value("key").and_then(|k| k.bytes()).is_some_and(|k| self.has_key(&k)) {
            return Some(format!("audit rule with key {} removed", printable_bytes(&self.key)));
        }
        None
    }

    /// Keys are joined with 0x01 when a rule has several.
    fn has_key(&self, keys: &[u8]) -> bool {
        keys.split(|&b| b == 1).any(|k| k == self.key.as_slice())
    }

    fn part(&mut self, r: &Record<'_>, out: &mut dyn FnMut(AuditEvent)) {
        let i = match self.open.iter().position(|p| p.serial == r.serial && p.ts_us == r.ts_us) {
            Some(i) => i,
            None => {
                if r.is("EOE") {
                    return;
                }
                if self.open.len() >= MAX_OPEN {
                    self.count("audit_event_evicted");
                    let oldest = self.open.remove(0);
                    self.emit(oldest, out);
                }
                self.open.push(Partial { ts_us: r.ts_us, serial: r.serial, ..Partial::default() });
                self.open.len() - 1
            }
        };
        let keyed = r.is("SYSCALL") && r.value("key").and_then(|k| k.bytes()).is_some_and(|k| self.has_key(&k));
        if let Some(Value::BadHex(_)) = r.value("name") {
            self.count("audit_bad_hex");
        }
        let p = &mut self.open[i];
        match r.kind {
            b"SYSCALL" => {
                p.keyed = Some(keyed);
                p.success = r.raw("success") == Some(b"yes");
                // openat(dirfd, "name") with a real dirfd: the name is relative to that directory.
                p.relative_to_cwd = r.raw("syscall") != Some(b"257") || r.raw("a0") == Some(AT_FDCWD);
                p.uid = r.id("uid");
                p.auid = r.id("auid");
                p.fsuid = r.id("fsuid");
                p.user = r.enriched("FSUID").or_else(|| r.enriched("UID")).map(|u| printable_bytes(u).into_owned());
                p.pid = r.number("pid").and_then(|n| u32::try_from(n).ok());
                p.exe = text(r, "exe");
                p.comm = text(r, "comm");
            }
            b"CWD" => p.cwd = r.value("cwd").and_then(|v| v.bytes()).map(|c| c.into_owned()),
            b"PATH" => {
                let parent = r.raw("nametype") == Some(b"PARENT");
                if let (false, Some(name)) = (parent, r.value("name").and_then(|v| v.bytes())) {
                    // mode=040755: a directory (listing a watched directory is not reading a file).
                    let dir = r.raw("mode").is_some_and(|m| m.starts_with(b"040"));
                    if p.paths.len() < MAX_PATHS {
                        p.paths.push((name.into_owned(), dir));
                    }
                }
            }
            b"PROCTITLE" => {
                p.proctitle = r.value("proctitle").and_then(|v| v.bytes()).map(|t| {
                    let t: Vec<u8> = t.iter().take(MAX_PROCTITLE).map(|&b| if b == 0 { b' ' } else { b }).collect();
                    printable_bytes(t.trim_ascii_end()).into_owned()
                });
            }
            _ => {}
        }
        if r.is("PROCTITLE") || r.is("EOE") {
            let done = self.open.remove(i);
            self.emit(done, out);
        }
    }

    /// Emits events older than the timeout, relative to the newest record.
    fn expire(&mut self, out: &mut dyn FnMut(AuditEvent)) {
        let limit = self.newest_us.saturating_sub(EVENT_TIMEOUT_US);
        while let Some(i) = self.open.iter().position(|p| p.ts_us < limit) {
            let p = self.open.remove(i);
            self.emit(p, out);
        }
    }

    fn emit(&mut self, p: Partial, out: &mut dyn FnMut(AuditEvent)) {
        match p.keyed {
            Some(true) => {}
            Some(false) => return,
            None => return self.count("audit_event_without_syscall"),
        }
        if !p.success {
            return self.count("audit_read_failed");
        }
        let mut any = false;
        for (name, dir) in &p.paths {
            if *dir {
                self.count("audit_directory_read");
                continue;
            }
            any = true;
            let path = match (name.first(), &p.cwd) {
                (Some(b'/'), _) => normalize(name),
                (_, Some(cwd)) if p.relative_to_cwd => normalize(&[cwd.as_slice(), b"/", name].concat()),
                _ => name.clone(),
            };
            out(AuditEvent::Read(FileRead {
                ts_us: p.ts_us,
                serial: p.serial,
                path,
                uid: p.uid,
                auid: p.auid,
                fsuid: p.fsuid,
                user: p.user.clone(),
                pid: p.pid,
                exe: p.exe.clone(),
                comm: p.comm.clone(),
                proctitle: p.proctitle.clone(),
                size: None,
            }));
        }
        if !any && p.paths.is_empty() {
            self.count("audit_event_without_path");
        }
    }
}

fn by(r: &Record<'_>) -> Option<u32> {
    r.id("auid").or_else(|| r.id("uid"))
}

fn text(r: &Record<'_>, name: &str) -> Option<String> {
    r.value(name).and_then(|v| v.bytes()).map(|b| printable_bytes(&b).into_owned())
}

/// `saddr=10.77.1.2 daddr=10.77.1.1 proto=6 sport=40000 dport=22` (ports on newer kernels).
fn net_pkt(r: &Record<'_>) -> Option<NetPkt> {
    let addr = |name| std::str::from_utf8(r.raw(name)?).ok()?.parse::<IpAddr>().ok();
    let port = |name| r.number(name).and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
    Some(NetPkt {
        ts_us: r.ts_us,
        saddr: addr("saddr")?,
        daddr: addr("daddr")?,
        proto: u8::try_from(r.number("proto")?).ok()?,
        sport: port("sport"),
        dport: port("dport"),
    })
}

/// Removes `.` and `..` components and doubled slashes, without touching the file system
/// (the file may be gone, and symlinks are what the kernel resolved already).
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for c in parts {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "exfilmon-sensitive";

    fn events(lines: &[&[u8]]) -> (Vec<AuditEvent>, Assembler) {
        let mut a = Assembler::new(KEY);
        let mut out = Vec::new();
        for l in lines {
            a.line(l, &mut |e| out.push(e));
        }
        a.finish(&mut |e| out.push(e));
        (out, a)
    }

    fn syscall(serial: u32, ts: &str, extra: &str) -> Vec<u8> {
        format!(
            "type=SYSCALL msg=audit({ts}:{serial}): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=1 a2=0 \
             a3=0 items=1 ppid=1 pid=4242 auid=1001 uid=1001 gid=1001 euid=1001 suid=1001 fsuid=1001 egid=1001 \
             sgid=1001 fsgid=1001 tty=pts0 ses=3 comm=\"python3\" exe=\"/usr/bin/python3.11\" key=\"{KEY}\"{extra}"
        )
        .into_bytes()
    }

    fn read(e: &AuditEvent) -> &FileRead {
        match e {
            AuditEvent::Read(r) => r,
            other => panic!("not a read: {other:?}"),
        }
    }

    #[test]
    fn relative_path_is_joined_with_cwd() {
        let (ev, _) = events(&[
            &syscall(10, "100.250", ""),
            b"type=CWD msg=audit(100.250:10): cwd=\"/data/sub\"",
            b"type=PATH msg=audit(100.250:10): item=0 name=\"../sensitive1.csv\" inode=5 dev=fe:00 mode=0100644 nametype=NORMAL",
            b"type=PROCTITLE msg=audit(100.250:10): proctitle=707974686F6E33007365742E7079",
        ]);
        assert_eq!(ev.len(), 1);
        let r = read(&ev[0]);
        assert_eq!(r.path, b"/data/sensitive1.csv");
        assert_eq!((r.uid, r.auid, r.fsuid, r.pid), (Some(1001), Some(1001), Some(1001), Some(4242)));
        assert_eq!(r.exe.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(r.proctitle.as_deref(), Some("python3 set.py"));
        assert_eq!(r.ts_us, 100_250_000);
    }

    #[test]
    fn enriched_event_with_hex_name_and_user() {
        let mut sys = syscall(11, "100.000", "");
        sys.extend_from_slice(b"\x1dARCH=x86_64 SYSCALL=openat AUID=\"alice\" UID=\"alice\" FSUID=\"alice\"");
        let (ev, _) = events(&[
            &sys,
            b"type=CWD msg=audit(100.000:11): cwd=\"/home/alice\"",
            b"type=PATH msg=audit(100.000:11): item=0 name=2F646174612F6120622E637376 nametype=NORMAL mode=0100644\x1dOUID=\"root\"",
            b"type=PROCTITLE msg=audit(100.000:11): proctitle=\"cat\"",
        ]);
        let r = read(&ev[0]);
        assert_eq!(r.path, b"/data/a b.csv");
        assert_eq!(r.user.as_deref(), Some("alice"));
    }

    #[test]
    fn interleaved_events_are_kept_apart() {
        let (ev, _) = events(&[
            &syscall(20, "5.000", ""),
            b"type=SYSCALL msg=audit(5.001:21): syscall=257 success=yes a0=ffffff9c uid=0 fsuid=0 key=(null)",
            b"type=CWD msg=audit(5.001:21): cwd=\"/root\"",
            b"type=CWD msg=audit(5.000:20): cwd=\"/tmp\"",
            b"type=PATH msg=audit(5.001:21): item=0 name=\"other\" nametype=NORMAL",
            b"type=PATH msg=audit(5.000:20): item=0 name=\"mine.csv\" nametype=NORMAL",
            b"type=PROCTITLE msg=audit(5.001:21): proctitle=\"x\"",
            b"type=PROCTITLE msg=audit(5.000:20): proctitle=\"y\"",
        ]);
        assert_eq!(ev.len(), 1, "only the keyed event: {ev:?}");
        assert_eq!(read(&ev[0]).path, b"/tmp/mine.csv");
    }

    #[test]
    fn event_split_without_proctitle_is_emitted_on_timeout_and_at_the_end() {
        let (ev, _) = events(&[
            &syscall(30, "10.000", ""),
            b"type=PATH msg=audit(10.000:30): item=0 name=\"/data/s.csv\" nametype=NORMAL",
            b"type=SYSCALL msg=audit(13.000:31): syscall=2 success=yes uid=0 key=(null)",
            &syscall(32, "14.000", ""),
            b"type=PATH msg=audit(14.000:32): item=0 name=\"/data/t.csv\" nametype=NORMAL",
        ]);
        let paths: Vec<&[u8]> = ev.iter().map(|e| read(e).path.as_slice()).collect();
        assert_eq!(paths, [&b"/data/s.csv"[..], b"/data/t.csv"]);
    }

    #[test]
    fn failed_reads_directories_and_parents_are_not_reads() {
        let failed = String::from_utf8(syscall(40, "1.000", "")).unwrap().replace("success=yes", "success=no");
        let (ev, a) = events(&[
            failed.as_bytes(),
            b"type=PATH msg=audit(1.000:40): item=0 name=\"/data/s.csv\" nametype=NORMAL",
            b"type=PROCTITLE msg=audit(1.000:40): proctitle=\"cat\"",
            &syscall(41, "1.000", ""),
            b"type=PATH msg=audit(1.000:41): item=0 name=\"/data/\" mode=040755 nametype=NORMAL",
            b"type=PROCTITLE msg=audit(1.000:41): proctitle=\"ls\"",
            &syscall(42, "1.000", ""),
            b"type=PATH msg=audit(1.000:42): item=0 name=\"/data/\" nametype=PARENT",
            b"type=PATH msg=audit(1.000:42): item=1 name=\"/data/new.csv\" nametype=CREATE mode=0100644",
            b"type=PROCTITLE msg=audit(1.000:42): proctitle=\"touch\"",
        ]);
        assert_eq!(ev.len(), 1);
        assert_eq!(read(&ev[0]).path, b"/data/new.csv");
        assert_eq!(a.skipped.get("audit_read_failed"), Some(&1));
        assert_eq!(a.skipped.get("audit_directory_read"), Some(&1));
    }

    #[test]
    fn openat_relative_to_a_directory_fd_is_not_joined_with_cwd() {
        let sys = String::from_utf8(syscall(50, "1.000", "")).unwrap().replace("a0=ffffff9c", "a0=5");
        let (ev, _) = events(&[
            sys.as_bytes(),
            b"type=CWD msg=audit(1.000:50): cwd=\"/home/u\"",
            b"type=PATH msg=audit(1.000:50): item=0 name=\"s.csv\" nametype=NORMAL",
            b"type=PROCTITLE msg=audit(1.000:50): proctitle=\"find\"",
        ]);
        assert_eq!(read(&ev[0]).path, b"s.csv");
    }

    #[test]
    fn hostile_lines_are_counted_never_fatal() {
        let mut huge = b"type=PATH msg=audit(1.000:60): name=".to_vec();
        huge.resize(super::super::parse::MAX_LINE + 10, b'4');
        let (ev, a) = events(&[
            b"garbage",
            b"type=SYSCALL msg=audit(x):",
            &huge,
            b"\xff\xfe\x00",
            b"",
            &syscall(61, "1.000", ""),
            b"type=PATH msg=audit(1.000:61): item=0 name=2F6 nametype=NORMAL",
            b"type=PROCTITLE msg=audit(1.000:61): proctitle=ZZ",
            b"type=CWD msg=audit(1.000:62): cwd=\"/orphan\"",
            b"type=PROCTITLE msg=audit(1.000:62): proctitle=\"orphan\"",
            b"type=NETFILTER_PKT msg=audit(1.000:63): mark=0 saddr=not-an-ip daddr=10.0.0.1 proto=6",
        ]);
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(a.skipped.get("audit_no_type"), Some(&2));
        assert_eq!(a.skipped.get("audit_bad_stamp"), Some(&1));
        assert_eq!(a.skipped.get("audit_line_too_long"), Some(&1));
        assert_eq!(a.skipped.get("audit_bad_hex"), Some(&1));
        assert_eq!(a.skipped.get("audit_event_without_path"), Some(&1));
        assert_eq!(a.skipped.get("audit_event_without_syscall"), Some(&1));
        assert_eq!(a.skipped.get("audit_netfilter_pkt_malformed"), Some(&1));
    }

    /// pam_loginuid's `LOGIN` records (RAW, and ENRICHED with the names after 0x1d): a login
    /// uid set is an event; a failed or unset one is counted.
    #[test]
    fn login_records_name_the_process_and_its_login_uid() {
        let (ev, a) = events(&[
            b"type=LOGIN msg=audit(1700000000.250:456): pid=2470 uid=0 subj=unconfined old-auid=4294967295 \
              auid=1001 tty=(none) old-ses=4294967295 ses=5 res=1",
            b"type=LOGIN msg=audit(1700000001.000:457): pid=2471 uid=0 old-auid=4294967295 auid=1002 tty=(none) \
              old-ses=4294967295 ses=6 res=1\x1dUID=\"root\" OLD-AUID=\"unset\" AUID=\"bob\"",
            b"type=LOGIN msg=audit(1700000002.000:458): pid=2472 uid=0 old-auid=4294967295 auid=1003 res=0",
            b"type=LOGIN msg=audit(1700000003.000:459): pid=2473 uid=0 old-auid=1003 auid=4294967295 res=1",
        ]);
        let logins: Vec<Login> =
            ev.iter().filter_map(|e| if let AuditEvent::Login(l) = e { Some(*l) } else { None }).collect();
        assert_eq!(
            logins,
            [
                Login { ts_us: 1_700_000_000_250_000, pid: 2470, auid: 1001 },
                Login { ts_us: 1_700_000_001_000_000, pid: 2471, auid: 1002 }
            ]
        );
        assert_eq!(a.skipped.get("audit_login_unused"), Some(&2));
    }

    #[test]
    fn open_events_are_capped() {
        let mut lines = Vec::new();
        for s in 0..(MAX_OPEN as u32 + 5) {
            lines.push(syscall(s, "1.000", ""));
        }
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let (_, a) = events(&refs);
        assert_eq!(a.skipped.get("audit_event_evicted"), Some(&5));
        assert_eq!(a.skipped.get("audit_event_without_path"), Some(&(MAX_OPEN as u64 + 5)));
    }

    #[test]
    fn netfilter_pkt_and_trail_changes() {
        let (ev, _) = events(&[
            b"type=NETFILTER_PKT msg=audit(7.500:70): mark=0x0 saddr=10.77.1.2 daddr=10.77.1.1 proto=6 sport=40000 dport=22",
            b"type=NETFILTER_PKT msg=audit(7.600:71): mark=0 saddr=fd77::2 daddr=fd77::1 proto=17",
            b"type=CONFIG_CHANGE msg=audit(8.000:72): op=set audit_enabled=0 old=1 auid=0 ses=1 res=1",
            b"type=CONFIG_CHANGE msg=audit(8.000:73): auid=0 ses=1 op=remove_rule key=\"exfilmon-sensitive\" list=4 res=1",
            b"type=CONFIG_CHANGE msg=audit(8.000:74): auid=0 ses=1 op=remove_rule key=\"other\" list=4 res=1",
            b"type=DAEMON_END msg=audit(9.000:75): op=terminate auid=0 pid=1 res=success",
        ]);
        assert_eq!(ev.len(), 5, "{ev:?}");
        match &ev[0] {
            AuditEvent::Packet(p) => {
                assert_eq!((p.proto, p.sport, p.dport, p.ts_us), (6, 40000, 22, 7_500_000));
                assert_eq!(p.daddr.to_string(), "10.77.1.1");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&ev[1], AuditEvent::Packet(p) if p.sport == 0 && p.saddr.is_ipv6()));
        let notes: Vec<String> =
            ev[2..].iter().map(|e| if let AuditEvent::Note(t) = e { t.what.clone() } else { panic!() }).collect();
        assert!(notes[0].contains("switched off") && notes[1].contains("removed") && notes[2] == "auditd stopped");
    }

    #[test]
    fn several_keys_on_one_rule() {
        // "audit" 0x01 KEY, hex-encoded as the kernel writes several keys.
        let hex: String = [b"audit\x01", KEY.as_bytes()].concat().iter().map(|b| format!("{b:02X}")).collect();
        let sys = String::from_utf8(syscall(80, "1.000", ""))
            .unwrap()
            .replace(&format!("key=\"{KEY}\""), &format!("key={hex}"));
        let (ev, _) = events(&[
            sys.as_bytes(),
            b"type=PATH msg=audit(1.000:80): item=0 name=\"/d/s\" nametype=NORMAL",
            b"type=PROCTITLE msg=audit(1.000:80): proctitle=\"cat\"",
        ]);
        assert_eq!(ev.len(), 1);
    }

    #[test]
    fn normalize_paths() {
        assert_eq!(normalize(b"/a/./b//c/../d"), b"/a/b/d");
        assert_eq!(normalize(b"/../.."), b"/");
        assert_eq!(normalize(b"/data/s.csv"), b"/data/s.csv");
    }
}
