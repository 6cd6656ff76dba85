//! Who and what is behind a flow: the process holding the socket, found off the packet path.
//!
//! NFLOG's uid is the socket file's owner, so every connection sshd accepts is root's whatever
//! user the session runs as. For a new flow, [`Owners`] finds the socket by its 4-tuple over
//! netlink `sock_diag` ([`sock_diag`]: state, uid, inode), the process holding that inode in
//! `/proc/*/fd` ([`procfs::SocketIndex`]), and what we keep about it ([`Owner`]: pid, exe,
//! comm, login uid, systemd unit and cgroup). The principal of a flow opened inside a login
//! session is the login user ([`Owner::principal_uid`]): sshd's session process carries it in
//! `/proc/PID/loginuid` (pam_loginuid sets it), so session traffic is the user's.
//!
//! Use: [`Owners::start`] where the flows are; [`Owners::ask_new`] on a connection's first
//! packet (a 4-tuple is reused by later connections), [`Owners::ask`] on later ones (cached);
//! [`Owners::poll`] now and then to collect answers; [`Owners::stats`] for the counters. A
//! server's first packet (the SYN-ACK) comes before any process has accepted the connection,
//! so that lookup waits for the accept (retries up to about 1.5 s); and sshd sets the login
//! uid only once the user has authenticated, so the first answer for an ssh session may name
//! sshd without one: ask again later (`ask` refreshes it after `recheck`).
//!
//! Guarantees and limits:
//! - [`Owners::ask`] and [`Owners::ask_new`] never block: a bounded queue (`try_send`); a full
//!   queue is counted and answered `Unknown(QueueFull)`. One worker thread does the lookups;
//!   answers come back through [`Owners::poll`] over a bounded channel, so a caller that stops
//!   polling fills the queue instead of memory.
//! - Repeated asks are answered from a bounded cache of `cache` flows (two generations: at
//!   most `cache` entries, the least recently used generation goes first). An answer is kept
//!   `ttl`; one that may still change (a process without a login uid yet — sshd before the
//!   user has authenticated —, a socket not accepted yet, an error) only `recheck`, after
//!   which the next ask refreshes it in the background and returns the old answer meanwhile.
//! - Nothing is guessed: an answer that names no process says why ([`Why`], each with a
//!   stable counter name) and is counted; a pid reused or a holder that let go while it was
//!   read is detected (start time and descriptor checked before and after) and retried.
//! - No panic on anything the kernel or /proc hands us; unexpected bytes or text are errors.
//! - Memory: the queue, the answer channel, the cache, the socket index (`max_sockets`
//!   inodes), the process cache and the retry list are all capped.
//! - The netlink socket is opened by [`Owners::start`] in the calling thread's network
//!   namespace: start it where the flows are.
//! - Only TCP and UDP (IPv4, IPv6 and v4-mapped) sockets can be looked up; the lookup names
//!   no interface, so a socket bound to a device (IPv6 link-local) is not found.
//! - Where several processes hold the socket (a forked server, sshd's monitor and session
//!   processes), the one the /proc scan saw last is named, usually the youngest.
//! - Cost: mostly rescanning the descriptor tables of processes that opened recent flows
//!   (2.5–5 µs per open descriptor here); BENCHMARKS.md, "Owner lookups".

pub mod procfs;
pub mod sock_diag;
mod stats;
mod worker;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use rustc_hash::FxHashMap;
use serde::Deserialize;

pub use stats::{Latency, OwnerStats, WorkerStats};
use worker::{Done, Job, Worker};

use crate::escape::printable;
use crate::units::de::{duration, positive_usize};

/// One flow as this host sees it: the socket's local end and the peer. For an outbound
/// packet the local end is its source ([`FlowKey::egress`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// IP protocol number: 6 (TCP) and 17 (UDP) can be looked up.
    pub proto: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl FlowKey {
    /// The flow of an outbound packet from `src:sport` to `dst:dport`.
    pub fn egress(proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> FlowKey {
        FlowKey { proto, local: SocketAddr::new(src, sport), remote: SocketAddr::new(dst, dport) }
    }
}

/// The process holding a flow's socket, as it was when looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: u32,
    /// The parent's pid when read: sshd's pre-auth child's is the session's monitor, which
    /// gets the login uid at the login (an audit `LOGIN` record names it).
    pub ppid: Option<u32>,
    /// Clock ticks since boot; with the pid it names the process even after pid reuse.
    pub start_time: u64,
    /// The socket's uid (what NFLOG reports): whoever created the socket.
    pub uid: u32,
    /// `/proc/PID/loginuid`: the user of the login session the process runs in; `None` when
    /// unset (4294967295: daemons started by systemd, anything outside a login).
    pub login_uid: Option<u32>,
    /// `/proc/PID/comm` (at most 15 bytes, set by the process itself).
    pub comm: String,
    /// `/proc/PID/exe`; empty when unreadable (kernel thread, or no permission).
    pub exe: String,
    /// The systemd unit of the cgroup (`ssh.service`, `session-3.scope`, `user@1000.service`).
    pub unit: Option<String>,
    /// The cgroup path (unified hierarchy, else systemd's v1 one); empty when unknown.
    pub cgroup: String,
}

impl Owner {
    /// Who the flow is charged to: the login user when set, else the socket's uid.
    pub fn principal_uid(&self) -> u32 {
        self.login_uid.unwrap_or(self.uid)
    }

    /// `, by sshd (pid 4242, socket uid 0, login uid 1001, session-3.scope)` for a summary line;
    /// what the process chose (its name) is made terminal-safe.
    pub fn describe(&self) -> String {
        let login = self.login_uid.map_or_else(String::new, |l| format!(", login uid {l}"));
        let unit = self.unit.as_deref().map_or_else(String::new, |u| format!(", {}", printable(u)));
        format!(", by {} (pid {}, socket uid {}{login}{unit})", printable(&self.comm), self.pid, self.uid)
    }

    /// The process for a record's details (JSON).
    pub fn record(&self) -> serde_json::Value {
        serde_json::json!({
            "pid": self.pid,
            "comm": self.comm,
            "exe": self.exe,
            "uid": self.uid,
            "login_uid": self.login_uid,
            "unit": self.unit,
            "cgroup": self.cgroup,
        })
    }
}

/// Why a lookup names no process. Each has a stable name for counters and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Why {
    /// No socket with this 4-tuple: closed and gone before the lookup.
    SocketGone,
    /// Only the kernel's TIME_WAIT remnant of a closed connection is left.
    TimeWait,
    /// Closed by its process; the kernel is still finishing the connection (FIN_WAIT,
    /// LAST_ACK, CLOSING), or a UDP socket being torn down.
    Closed,
    /// A connection no process had accepted yet (handshake, or the listener's queue), still
    /// after about 1.5 s of retries.
    NotAccepted,
    /// The socket has a file but no process in /proc holds it: a kernel socket, one in
    /// flight over a unix socket, or one of a process in another pid namespace.
    NoProcess,
    /// The process holding it exited, or let go of the socket, while it was being read.
    ProcessGone,
    /// The pid was reused while it was being read.
    PidReused,
    /// Not permitted to ask the kernel or read the process, or not found while other users'
    /// processes could not be read (needs root, or CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE).
    Denied,
    /// Neither TCP nor UDP.
    Unsupported,
    /// The queue to the worker was full when asked.
    QueueFull,
    /// Too many lookups waiting for a retry.
    Overloaded,
    /// The kernel's answer was an error other than the above, or could not be read.
    Failed,
}

impl Why {
    pub const ALL: [Why; 12] = [
        Why::SocketGone,
        Why::TimeWait,
        Why::Closed,
        Why::NotAccepted,
        Why::NoProcess,
        Why::ProcessGone,
        Why::PidReused,
        Why::Denied,
        Why::Unsupported,
        Why::QueueFull,
        Why::Overloaded,
        Why::Failed,
    ];

    /// Stable name for counters and reports.
    pub fn name(self) -> &'static str {
        match self {
            Why::SocketGone => "socket_gone",
            Why::TimeWait => "time_wait",
            Why::Closed => "closed",
            Why::NotAccepted => "not_accepted",
            Why::NoProcess => "no_process",
            Why::ProcessGone => "process_gone",
            Why::PidReused => "pid_reused",
            Why::Denied => "denied",
            Why::Unsupported => "unsupported",
            Why::QueueFull => "queue_full",
            Why::Overloaded => "overloaded",
            Why::Failed => "failed",
        }
    }

    /// The counter of this reason: `owner_unknown_<name>`.
    pub fn counter(self) -> &'static str {
        match self {
            Why::SocketGone => "owner_unknown_socket_gone",
            Why::TimeWait => "owner_unknown_time_wait",
            Why::Closed => "owner_unknown_closed",
            Why::NotAccepted => "owner_unknown_not_accepted",
            Why::NoProcess => "owner_unknown_no_process",
            Why::ProcessGone => "owner_unknown_process_gone",
            Why::PidReused => "owner_unknown_pid_reused",
            Why::Denied => "owner_unknown_denied",
            Why::Unsupported => "owner_unknown_unsupported",
            Why::QueueFull => "owner_unknown_queue_full",
            Why::Overloaded => "owner_unknown_overloaded",
            Why::Failed => "owner_unknown_failed",
        }
    }

    /// Whether a later lookup could give another answer (worth a recheck).
    fn may_change(self) -> bool {
        matches!(self, Why::NotAccepted | Why::Denied | Why::QueueFull | Why::Overloaded | Why::Failed)
    }
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The answer about one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Arc<Owner>),
    Unknown(Why),
}

impl Lookup {
    /// An answer that may still change and is rechecked sooner (see the module doc).
    pub fn provisional(&self) -> bool {
        match self {
            Lookup::Found(o) => o.login_uid.is_none(),
            Lookup::Unknown(why) => why.may_change(),
        }
    }
}

/// `[owner]`: sizes and ages of the owner lookups.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OwnerConfig {
    /// Look owners up in `exfilmon run` (needs root, or CAP_SYS_PTRACE and
    /// CAP_DAC_READ_SEARCH to read other users' /proc/PID/fd; without them lookups are
    /// counted as `owner_unknown_denied`).
    pub enabled: bool,
    /// Lookups waiting for the worker; beyond it asks are answered `Unknown(QueueFull)`.
    #[serde(deserialize_with = "positive_usize")]
    pub queue: usize,
    /// Flows whose answers are kept.
    #[serde(deserialize_with = "positive_usize")]
    pub cache: usize,
    /// How long a settled answer is kept.
    #[serde(deserialize_with = "duration")]
    pub ttl: Duration,
    /// How long an answer that may still change is kept before an ask refreshes it.
    #[serde(deserialize_with = "duration")]
    pub recheck: Duration,
    /// Socket inodes the process index holds (about 40 bytes each).
    #[serde(deserialize_with = "positive_usize")]
    pub max_sockets: usize,
}

impl Default for OwnerConfig {
    fn default() -> Self {
        OwnerConfig {
            enabled: true,
            queue: 8192,
            cache: 65_536,
            ttl: Duration::from_secs(300),
            recheck: Duration::from_secs(2),
            max_sockets: 262_144,
        }
    }
}

/// A cached answer and when it was given.
#[derive(Debug, Clone)]
struct Entry {
    lookup: Lookup,
    at: Instant,
}

/// A bounded map in two generations: new and used entries go to `young`; when it reaches
/// half the capacity it becomes `old` and the previous `old` is dropped. At most `cap`
/// entries; an entry used within the last `cap / 2` insertions survives.
struct Cache {
    young: FxHashMap<FlowKey, Entry>,
    old: FxHashMap<FlowKey, Entry>,
    half: usize,
}

impl Cache {
    fn new(cap: usize) -> Cache {
        Cache { young: FxHashMap::default(), old: FxHashMap::default(), half: (cap / 2).max(1) }
    }

    fn get(&mut self, key: &FlowKey) -> Option<&Entry> {
        if !self.young.contains_key(key) {
            let e = self.old.remove(key)?;
            self.insert(*key, e);
        }
        self.young.get(key)
    }

    fn insert(&mut self, key: FlowKey, e: Entry) {
        if self.young.len() >= self.half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, e);
    }

    fn remove(&mut self, key: &FlowKey) {
        self.young.remove(key);
        self.old.remove(key);
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// Owner lookups: ask from the packet path, collect answers when convenient.
pub struct Owners {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    worker: Option<JoinHandle<()>>,
    cache: Cache,
    /// Flows under lookup → when the newest flow on that 4-tuple was asked about.
    pending: FxHashMap<FlowKey, Instant>,
    ttl: Duration,
    recheck: Duration,
    stats: OwnerStats,
    shared: Arc<stats::SharedStats>,
}

impl Owners {
    /// Opens the sock_diag socket in this thread's network namespace and starts the worker.
    pub fn start(cfg: &OwnerConfig) -> io::Result<Owners> {
        Owners::start_with(cfg, sock_diag::SockDiag::open()?, "/proc")
    }

    fn start_with(cfg: &OwnerConfig, diag: impl worker::Diag + 'static, proc_root: &str) -> io::Result<Owners> {
        let (jobs_tx, jobs_rx) = crossbeam_channel::bounded(cfg.queue.max(1));
        // Room for every answer the worker can owe at once, so it rarely waits on a slow poller.
        let (done_tx, done_rx) = crossbeam_channel::bounded(cfg.queue.max(1) + worker::MAX_BATCH);
        let shared = Arc::new(stats::SharedStats::default());
        let w = Worker::new(diag, procfs::SocketIndex::new(proc_root, cfg.max_sockets), shared.clone());
        let handle = std::thread::Builder::new().name("owner-lookup".into()).spawn(move || w.run(jobs_rx, done_tx))?;
        Ok(Owners {
            jobs: Some(jobs_tx),
            done: done_rx,
            worker: Some(handle),
            cache: Cache::new(cfg.cache),
            pending: FxHashMap::default(),
            ttl: cfg.ttl,
            recheck: cfg.recheck,
            stats: OwnerStats::default(),
            shared,
        })
    }

    /// Asks who is behind `key`. Never blocks. Returns the cached answer when there is one
    /// (refreshing it in the background when it has aged), `Unknown(QueueFull)` when the
    /// queue is full, and `None` when the answer will come through [`poll`](Self::poll).
    ///
    /// For the first packet of a connection use [`ask_new`](Self::ask_new): a 4-tuple is
    /// reused by later connections, and the cache would answer with the previous one's owner.
    pub fn ask(&mut self, key: FlowKey) -> Option<Lookup> {
        self.stats.asked += 1;
        let now = Instant::now();
        let (ttl, recheck) = (self.ttl, self.recheck);
        let cached = self.cache.get(&key).map(|e| {
            let age = now.saturating_duration_since(e.at);
            let fresh = age < if e.lookup.provisional() { recheck } else { ttl };
            (e.lookup.clone(), fresh)
        });
        if let Some((lookup, true)) = cached {
            self.stats.cache_hits += 1;
            return Some(lookup);
        }
        if self.pending.contains_key(&key) {
            self.stats.joined += 1;
            return cached.map(|(l, _)| l);
        }
        let stale = cached.map(|(l, _)| l);
        match self.queue(key, now) {
            true => stale,
            false => Some(stale.unwrap_or(Lookup::Unknown(Why::QueueFull))),
        }
    }

    /// Asks about a new connection on `key`: what is cached about the 4-tuple belongs to an
    /// earlier connection and is dropped. A lookup already under way answers only if the
    /// kernel was asked after this call; otherwise it is repeated. Never blocks; returns
    /// `Unknown(QueueFull)` when the queue is full, else `None` (the answer comes through
    /// [`poll`](Self::poll)).
    pub fn ask_new(&mut self, key: FlowKey) -> Option<Lookup> {
        self.stats.asked += 1;
        let now = Instant::now();
        self.cache.remove(&key);
        if let Some(newest) = self.pending.get_mut(&key) {
            self.stats.joined += 1;
            *newest = now;
            return None;
        }
        (!self.queue(key, now)).then_some(Lookup::Unknown(Why::QueueFull))
    }

    /// Asks again about a connection asked about before, whose answer may have changed (sshd
    /// before the login): a fresh lookup, or the one under way, which was asked about this
    /// same connection and so answers it (unlike [`ask_new`](Self::ask_new), it does not make
    /// that answer stale). Never blocks; `Unknown(QueueFull)` when the queue is full.
    pub fn ask_again(&mut self, key: FlowKey) -> Option<Lookup> {
        self.stats.asked += 1;
        if self.pending.contains_key(&key) {
            self.stats.joined += 1;
            return None;
        }
        (!self.queue(key, Instant::now())).then_some(Lookup::Unknown(Why::QueueFull))
    }

    /// Hands a lookup to the worker; false (counted) when the queue is full.
    fn queue(&mut self, key: FlowKey, now: Instant) -> bool {
        match self.jobs.as_ref().map(|tx| tx.try_send(Job::new(key, now))) {
            Some(Ok(())) => {
                self.stats.queued += 1;
                self.pending.insert(key, now);
                true
            }
            Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None => {
                self.stats.queue_full += 1;
                false
            }
        }
    }

    /// Hands every answer that has arrived to `f` (and to the cache). Never blocks.
    pub fn poll(&mut self, mut f: impl FnMut(&FlowKey, &Lookup)) -> usize {
        let mut n = 0;
        while let Ok(d) = self.done.try_recv() {
            self.take(d, &mut f);
            n += 1;
        }
        n
    }

    /// Like [`poll`](Self::poll), but waits up to `timeout` for the first answer when none
    /// has arrived (for a thread of its own, or tests).
    pub fn poll_timeout(&mut self, timeout: Duration, mut f: impl FnMut(&FlowKey, &Lookup)) -> usize {
        match self.done.recv_timeout(timeout) {
            Ok(d) => {
                self.take(d, &mut f);
                1 + self.poll(f)
            }
            Err(_) => 0,
        }
    }

    fn take(&mut self, d: Done, f: &mut impl FnMut(&FlowKey, &Lookup)) {
        let newest = self.pending.remove(&d.key).unwrap_or(d.asked);
        if d.queried < newest {
            // A new connection on this 4-tuple was asked about after the kernel was: the
            // answer may be about the previous one. Ask again for the new one.
            self.stats.superseded += 1;
            if self.queue(d.key, newest) {
                return;
            }
            let full = Lookup::Unknown(Why::QueueFull);
            f(&d.key, &full);
            return;
        }
        self.stats.latency.record(d.answered.saturating_duration_since(d.asked));
        match &d.lookup {
            Lookup::Found(_) => self.stats.found += 1,
            Lookup::Unknown(why) => self.stats.unknown[*why as usize] += 1,
        }
        f(&d.key, &d.lookup);
        self.cache.insert(d.key, Entry { lookup: d.lookup, at: d.answered });
    }

    /// Lookups asked and not answered yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Flows in the cache.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The counters and latency so far.
    pub fn stats(&self) -> OwnerStats {
        let mut s = self.stats.clone();
        s.pending = self.pending.len() as u64;
        s.worker = self.shared.load();
        s
    }
}

impl Drop for Owners {
    fn drop(&mut self) {
        // Closing both channels ends the worker whether it waits for work or to hand back.
        self.jobs = None;
        self.done = crossbeam_channel::never();
        if let Some(h) = self.worker.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sock_diag::{Answer, SockInfo};
    use super::*;
    use rustc_hash::FxHashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Every socket is in TIME_WAIT, except port 1 (gone); counts the queries.
    struct Kernel(Arc<AtomicUsize>, Duration);

    impl worker::Diag for Kernel {
        fn query(&mut self, keys: &[FlowKey], answers: &mut Vec<Answer>) {
            std::thread::sleep(self.1);
            self.0.fetch_add(keys.len(), Ordering::Relaxed);
            answers.clear();
            answers.extend(keys.iter().map(|k| {
                if k.local.port() == 1 {
                    Err(2)
                } else {
                    Ok(SockInfo { family: 2, state: 6, local_port: k.local.port(), uid: 0, inode: 0 })
                }
            }));
        }

        fn bad_answers(&self) -> u64 {
            0
        }
    }

    fn key(port: u16) -> FlowKey {
        FlowKey::egress(6, [10, 0, 0, 2].into(), port, [192, 0, 2, 1].into(), 443)
    }

    fn owners(cfg: &OwnerConfig, delay: Duration) -> (Owners, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        (Owners::start_with(cfg, Kernel(n.clone(), delay), "/nonexistent").unwrap(), n)
    }

    fn wait_all(o: &mut Owners) -> Vec<(FlowKey, Lookup)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while o.pending() > 0 && Instant::now() < deadline {
            o.poll_timeout(Duration::from_millis(100), |k, l| got.push((*k, l.clone())));
        }
        got
    }

    #[test]
    fn answers_come_back_and_repeats_are_free() {
        let (mut o, queries) = owners(&OwnerConfig::default(), Duration::ZERO);
        assert_eq!(o.ask(key(1)), None);
        assert_eq!(o.ask(key(2)), None);
        assert_eq!(o.ask(key(2)), None, "joined the lookup under way");
        let mut got = wait_all(&mut o);
        got.sort_by_key(|(k, _)| *k);
        assert_eq!(got, vec![(key(1), Lookup::Unknown(Why::SocketGone)), (key(2), Lookup::Unknown(Why::TimeWait))]);
        assert_eq!(o.ask(key(2)), Some(Lookup::Unknown(Why::TimeWait)));
        assert_eq!(queries.load(Ordering::Relaxed), 2);
        let s = o.stats();
        assert_eq!((s.asked, s.cache_hits, s.joined, s.queued, s.queue_full), (4, 1, 1, 2, 0));
        assert_eq!((s.unknown(Why::SocketGone), s.unknown(Why::TimeWait), s.found, s.pending), (1, 1, 0, 0));
        assert_eq!(s.latency.count(), 2);
        let c = s.counters();
        assert!(c.contains(&("owner_unknown_time_wait", 1)) && c.contains(&("owner_asked", 4)), "{c:?}");
        assert!(s.worker.diag_queries >= 2);
    }

    #[test]
    fn a_full_queue_is_answered_and_counted_never_waited_for() {
        let cfg = OwnerConfig { queue: 2, ..OwnerConfig::default() };
        // A slow kernel: the worker holds one batch while the queue fills behind it.
        let (mut o, _) = owners(&cfg, Duration::from_millis(200));
        let start = Instant::now();
        let answers: Vec<Option<Lookup>> = (10..30).map(|p| o.ask(key(p))).collect();
        assert!(start.elapsed() < Duration::from_millis(100), "ask blocked: {:?}", start.elapsed());
        let full = answers.iter().filter(|a| **a == Some(Lookup::Unknown(Why::QueueFull))).count();
        let s = o.stats();
        assert!(full >= 15, "{answers:?}");
        assert_eq!(s.queue_full as usize, full);
        assert_eq!(s.queued as usize + full, 20);
        let got = wait_all(&mut o);
        assert_eq!(got.len() as u64, s.queued);
        let s = o.stats();
        assert_eq!(s.queued, s.found + s.unknown_total() + s.superseded + s.pending);
    }

    #[test]
    fn a_new_connection_on_a_reused_4_tuple_is_looked_up_again() {
        let (mut o, queries) = owners(&OwnerConfig::default(), Duration::from_millis(100));
        assert_eq!(o.ask_new(key(7)), None);
        assert_eq!(wait_all(&mut o), vec![(key(7), Lookup::Unknown(Why::TimeWait))]);
        assert_eq!(o.ask(key(7)), Some(Lookup::Unknown(Why::TimeWait)), "cached for the same connection");
        // A new connection on the same 4-tuple: not the cached answer.
        assert_eq!(o.ask_new(key(7)), None);
        // And another one while the kernel is being asked about the previous: that answer
        // is dropped and the lookup repeated.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(o.ask_new(key(7)), None);
        assert_eq!(wait_all(&mut o), vec![(key(7), Lookup::Unknown(Why::TimeWait))]);
        let s = o.stats();
        assert_eq!((s.asked, s.cache_hits, s.joined, s.superseded, s.queued), (4, 1, 1, 1, 3));
        assert_eq!(queries.load(Ordering::Relaxed), 3);
        assert_eq!(s.queued, s.found + s.unknown_total() + s.superseded + s.pending);
    }

    #[test]
    fn provisional_answers_are_refreshed_when_asked_after_recheck() {
        let cfg = OwnerConfig { recheck: Duration::from_millis(50), ..OwnerConfig::default() };
        let (mut o, queries) = owners(&cfg, Duration::ZERO);
        let daemon = Arc::new(Owner {
            pid: 1,
            ppid: None,
            start_time: 1,
            uid: 0,
            login_uid: None,
            comm: "sshd".into(),
            exe: "/usr/sbin/sshd".into(),
            unit: Some("ssh.service".into()),
            cgroup: "/system.slice/ssh.service".into(),
        });
        o.cache.insert(key(5), Entry { lookup: Lookup::Found(daemon.clone()), at: Instant::now() });
        assert_eq!(o.ask(key(5)), Some(Lookup::Found(daemon.clone())), "fresh");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(o.ask(key(5)), Some(Lookup::Found(daemon)), "stale, still given while refreshed");
        assert_eq!(wait_all(&mut o), vec![(key(5), Lookup::Unknown(Why::TimeWait))]);
        assert_eq!(queries.load(Ordering::Relaxed), 1);
        // A settled answer is kept for the ttl.
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(o.ask(key(5)), Some(Lookup::Unknown(Why::TimeWait)));
        assert_eq!(queries.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_what_is_used() {
        let mut c = Cache::new(100);
        let e = Entry { lookup: Lookup::Unknown(Why::TimeWait), at: Instant::now() };
        c.insert(key(0), e.clone());
        for p in 1..1000 {
            c.insert(key(p), e.clone());
            assert!(c.len() <= 100);
            // Port 0 is used all the time.
            assert!(c.get(&key(0)).is_some(), "{p}");
        }
        assert!(c.get(&key(1)).is_none());
        assert!(c.get(&key(999)).is_some());
    }

    #[test]
    fn why_names_are_unique_and_counters_match() {
        let names: FxHashSet<&str> = Why::ALL.iter().map(|w| w.name()).collect();
        assert_eq!(names.len(), Why::ALL.len());
        for (i, w) in Why::ALL.iter().enumerate() {
            assert_eq!(*w as usize, i, "ALL is in declaration order (counters are indexed by it)");
            assert_eq!(w.counter(), format!("owner_unknown_{}", w.name()));
        }
    }

    #[test]
    fn principal_is_the_login_user_when_set() {
        let mut o = Owner {
            pid: 9,
            ppid: None,
            start_time: 1,
            uid: 0,
            login_uid: Some(1000),
            comm: "sshd".into(),
            exe: String::new(),
            unit: None,
            cgroup: String::new(),
        };
        assert_eq!(o.principal_uid(), 1000);
        o.login_uid = None;
        assert_eq!(o.principal_uid(), 0);
    }

    #[test]
    fn config_rejects_unknown_keys_and_zero_sizes() {
        let c: OwnerConfig = toml::from_str("queue = 10\nrecheck = \"5s\"\n").unwrap();
        assert_eq!((c.queue, c.recheck, c.cache), (10, Duration::from_secs(5), 65_536));
        assert!(toml::from_str::<OwnerConfig>("queu = 10\n").is_err());
        assert!(toml::from_str::<OwnerConfig>("cache = 0\n").is_err());
    }

    #[test]
    fn dropping_owners_stops_the_worker() {
        let (mut o, _) = owners(&OwnerConfig::default(), Duration::from_millis(20));
        for p in 10..20 {
            o.ask(key(p));
        }
        let start = Instant::now();
        drop(o);
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
