//! The lookup thread: batches of flows → sock_diag → socket index → /proc → answers.
//!
//! Each pass takes what is queued (up to [`MAX_BATCH`]) plus the retries that are due, asks
//! the kernel about all of them in a few datagrams, resolves the inodes together (one scan
//! serves the whole batch), then reads each holding process. A lookup that cannot be answered
//! yet is retried on a fixed schedule and then answered with its reason:
//! - a socket no process has accepted yet (the handshake is still on, or it waits in the
//!   listener's queue): after 20, 100, 400 and 1000 ms;
//! - a socket no process was seen holding: once more after the next full scan;
//! - a holder that exited or let go while it was read: twice more at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rustc_hash::{FxHashMap, FxHashSet};

use super::procfs::{self, Holder, ProcError, SocketIndex};
use super::sock_diag::{self, state, Answer, SockDiag, SockInfo};
use super::stats::{SharedStats, WorkerStats};
use super::{FlowKey, Lookup, Owner, Why};

/// Most new lookups taken into one pass (retries that are due come on top). Large, because
/// a pass's dearest step, the rescan of a busy process's descriptors, serves the whole pass.
pub const MAX_BATCH: usize = 2048;
/// Most lookups waiting for a retry; beyond it they are answered `Overloaded`.
const MAX_DEFERRED: usize = 16_384;
/// When to try again a socket that no process has accepted yet, by attempt.
const NOT_ACCEPTED_DELAYS: [u64; 4] = [20, 100, 400, 1000];
/// Tries in all for a holder that changed while it was read.
const HOLDER_ATTEMPTS: u8 = 3;
/// A process read from /proc serves other sockets of the same process this long (its login
/// uid and name can change: pam_loginuid sets the uid once the session opens).
const PROCESS_FRESH: Duration = Duration::from_secs(1);
/// Processes kept in that cache.
const PROCESS_CACHE: usize = 4096;
/// The longest the worker sleeps with nothing to do.
const IDLE: Duration = Duration::from_secs(1);

/// A lookup on its way to the worker.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    pub key: FlowKey,
    pub asked: Instant,
    /// When the kernel was last asked about it (an answer older than a newer flow on the
    /// same 4-tuple may be about the previous socket).
    pub queried: Instant,
    pub attempt: u8,
}

impl Job {
    pub fn new(key: FlowKey, asked: Instant) -> Job {
        Job { key, asked, queried: asked, attempt: 0 }
    }
}

/// A finished lookup on its way back.
#[derive(Debug, Clone)]
pub struct Done {
    pub key: FlowKey,
    pub lookup: Lookup,
    pub asked: Instant,
    pub queried: Instant,
    pub answered: Instant,
}

/// The kernel side, a trait so that tests can stand in for the kernel.
pub trait Diag: Send {
    /// One answer per key, in order.
    fn query(&mut self, keys: &[FlowKey], answers: &mut Vec<Answer>);
    fn bad_answers(&self) -> u64;
}

impl Diag for SockDiag {
    fn query(&mut self, keys: &[FlowKey], answers: &mut Vec<Answer>) {
        SockDiag::query(self, keys, answers)
    }

    fn bad_answers(&self) -> u64 {
        self.bad_answers
    }
}

/// What a sock_diag answer means for the lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Answer(Why),
    /// Not owned yet; ask again later.
    NotYet,
    Resolve(SockInfo),
}

fn classify(key: &FlowKey, answer: Answer) -> Step {
    const ENOENT: i32 = nix::errno::Errno::ENOENT as i32;
    const EACCES: i32 = nix::errno::Errno::EACCES as i32;
    const EPERM: i32 = nix::errno::Errno::EPERM as i32;
    let info = match answer {
        Ok(info) => info,
        Err(ENOENT) => return Step::Answer(Why::SocketGone),
        Err(EACCES | EPERM) => return Step::Answer(Why::Denied),
        Err(_) => return Step::Answer(Why::Failed),
    };
    // With the connection's socket gone, the kernel's exact lookup falls back to the socket
    // listening on its port, as packet demultiplexing does: that one is not the flow's (its
    // holder is the server's listener, not the session's process).
    if info.state == state::LISTEN && key.proto == sock_diag::PROTO_TCP {
        return Step::Answer(Why::SocketGone);
    }
    if info.inode != 0 {
        return Step::Resolve(info);
    }
    // No file holds the socket. For TCP the state says why.
    match info.state {
        state::TIME_WAIT => Step::Answer(Why::TimeWait),
        state::SYN_RECV | state::NEW_SYN_RECV => Step::NotYet,
        // Established (or already closed by the peer) without a file: waiting in a listener's
        // accept queue. A socket its process closed has left these states.
        state::ESTABLISHED | state::CLOSE_WAIT if key.proto == sock_diag::PROTO_TCP => Step::NotYet,
        _ => Step::Answer(Why::Closed),
    }
}

/// One process's owner record per socket uid, reused for a short while.
struct ProcessCache {
    map: FxHashMap<(u32, u64, u32), (Instant, Arc<Owner>)>,
}

impl ProcessCache {
    fn get(&self, pid: u32, start: u64, uid: u32, now: Instant) -> Option<Arc<Owner>> {
        let (at, owner) = self.map.get(&(pid, start, uid))?;
        (now.duration_since(*at) < PROCESS_FRESH).then(|| owner.clone())
    }

    fn put(&mut self, owner: Arc<Owner>, now: Instant) {
        if self.map.len() >= PROCESS_CACHE {
            self.map.retain(|_, (at, _)| now.duration_since(*at) < PROCESS_FRESH);
            if self.map.len() >= PROCESS_CACHE {
                self.map.clear();
            }
        }
        self.map.insert((owner.pid, owner.start_time, owner.uid), (now, owner));
    }
}

pub struct Worker<D: Diag> {
    diag: D,
    index: SocketIndex,
    procs: ProcessCache,
    /// Lookups to try again, with when.
    deferred: Vec<(Instant, Job)>,
    stats: WorkerStats,
    shared: Arc<SharedStats>,
    keys: Vec<FlowKey>,
    answers: Vec<Answer>,
}

impl<D: Diag> Worker<D> {
    pub fn new(diag: D, index: SocketIndex, shared: Arc<SharedStats>) -> Worker<D> {
        Worker {
            diag,
            index,
            procs: ProcessCache { map: FxHashMap::default() },
            deferred: Vec::new(),
            stats: WorkerStats::default(),
            shared,
            keys: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// Runs until the asking side goes away.
    pub fn run(mut self, jobs: Receiver<Job>, done: Sender<Done>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut out = Vec::with_capacity(MAX_BATCH);
        loop {
            let now = Instant::now();
            let wait = self.deferred.iter().map(|(due, _)| due.saturating_duration_since(now)).min().unwrap_or(IDLE);
            match jobs.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < MAX_BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.take_due(Instant::now(), &mut batch);
            if batch.is_empty() {
                continue;
            }
            self.process(&mut batch, &mut out);
            for d in out.drain(..) {
                // The asking side is gone: nothing left to do.
                if done.send(d).is_err() {
                    return;
                }
            }
        }
    }

    /// Moves the retries that are due into `batch`.
    pub fn take_due(&mut self, now: Instant, batch: &mut Vec<Job>) {
        let mut i = 0;
        while i < self.deferred.len() {
            if self.deferred[i].0 <= now {
                batch.push(self.deferred.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
    }

    /// Lookups waiting for a retry.
    #[cfg(test)]
    fn deferred(&self) -> usize {
        self.deferred.len()
    }

    /// Handles one batch (emptied); finished lookups go to `out`.
    pub fn process(&mut self, batch: &mut Vec<Job>, out: &mut Vec<Done>) {
        let finish = |out: &mut Vec<Done>, job: &Job, lookup: Lookup| {
            out.push(Done { key: job.key, lookup, asked: job.asked, queried: job.queried, answered: Instant::now() })
        };
        batch.retain(|job| {
            let ok = matches!(job.key.proto, sock_diag::PROTO_TCP | sock_diag::PROTO_UDP);
            if !ok {
                finish(out, job, Lookup::Unknown(Why::Unsupported));
            }
            ok
        });
        let queried = Instant::now();
        self.keys.clear();
        for job in batch.iter_mut() {
            job.queried = queried;
            self.keys.push(job.key);
        }
        self.diag.query(&self.keys, &mut self.answers);
        self.stats.diag_queries += self.keys.len() as u64;
        self.stats.diag_bad_answers = self.diag.bad_answers();

        let mut resolve: Vec<(Job, SockInfo, Option<Holder>)> = Vec::new();
        let answers = std::mem::take(&mut self.answers);
        for (i, job) in batch.drain(..).enumerate() {
            // One answer per key; a missing one would be a bug in the kernel side, not a hang.
            let answer = answers.get(i).copied().unwrap_or(Err(nix::errno::Errno::EIO as i32));
            match classify(&job.key, answer) {
                Step::Answer(why) => finish(out, &job, Lookup::Unknown(why)),
                Step::NotYet => match NOT_ACCEPTED_DELAYS.get(job.attempt as usize) {
                    Some(&ms) => self.retry(job, Duration::from_millis(ms), out),
                    None => finish(out, &job, Lookup::Unknown(Why::NotAccepted)),
                },
                Step::Resolve(info) => resolve.push((job, info, None)),
            }
        }
        self.answers = answers;

        // Holders: the index first, then recent owners' tables, then (when allowed) all of /proc.
        let mut wanted = FxHashSet::default();
        for (_, info, holder) in &mut resolve {
            *holder = self.index.cached(info.inode);
            if holder.is_none() {
                wanted.insert(info.inode);
            }
        }
        let mut found: FxHashMap<u64, Holder> = FxHashMap::default();
        // Recent owners are looked at before all of /proc, so while their rescan is not
        // due the misses wait for it rather than for a dearer full scan.
        let hot_due = self.index.next_hot_scan() <= Instant::now();
        let mut scanned = false;
        if !wanted.is_empty() && hot_due {
            found.extend(self.index.scan_hot(&mut wanted));
            if !wanted.is_empty() && self.index.next_full_scan() <= Instant::now() {
                found.extend(self.index.full_scan(&mut wanted));
                scanned = true;
            }
        }
        let next_scan = self.index.next_full_scan();
        let next_look = if hot_due { next_scan } else { self.index.next_hot_scan() };
        // Start times read once per process per batch (stat is the dearest file to read).
        let mut starts = FxHashMap::default();
        for (job, info, holder) in resolve {
            let Some(holder) = holder.or_else(|| found.get(&info.inode).copied()) else {
                if !scanned {
                    self.defer(job, next_look, out);
                } else if job.attempt == 0 {
                    // Just created or just passed on: one more try after the next scan.
                    self.retry_at(job, next_scan, out);
                } else {
                    // Not found where we could look: say so rather than "no process".
                    let why = if self.index.denied() { Why::Denied } else { Why::NoProcess };
                    finish(out, &job, Lookup::Unknown(why));
                }
                continue;
            };
            match self.describe(holder, info, &mut starts) {
                Ok(owner) => {
                    // A holder without a login uid may be sshd's pre-auth child, which exits
                    // at the login while its parent (the session's monitor) keeps the socket:
                    // the parent's table is rescanned with the recent owners', not only at the
                    // next full scan (up to 10 s away on a busy host, after a quick pull ended).
                    let parent = owner.ppid.filter(|_| owner.login_uid.is_none());
                    if let Some(parent) = parent.filter(|&p| p > 1) {
                        self.index.note_owner(parent);
                    }
                    self.index.note_owner(owner.pid);
                    finish(out, &job, Lookup::Found(owner));
                }
                Err(why) => {
                    self.index.forget(info.inode);
                    if job.attempt + 1 < HOLDER_ATTEMPTS && why != Why::Denied {
                        self.retry(job, Duration::ZERO, out);
                    } else {
                        finish(out, &job, Lookup::Unknown(why));
                    }
                }
            }
        }
        let idx = self.index.stats;
        self.stats.index_hits = idx.hits;
        self.stats.index_stale = idx.stale;
        self.stats.pid_scans = idx.pid_scans;
        self.stats.pid_scan_us = idx.pid_scan_us;
        self.stats.full_scans = idx.full_scans;
        self.stats.full_scan_us = idx.full_scan_us;
        self.stats.last_full_scan_us = idx.last_full_scan_us;
        self.stats.index_size = idx.size;
        self.stats.not_indexed = idx.not_indexed;
        self.stats.waiting = self.deferred.len() as u64;
        self.shared.store(&self.stats);
    }

    /// Tries `job` again after `delay`, as its next attempt.
    fn retry(&mut self, job: Job, delay: Duration, out: &mut Vec<Done>) {
        self.retry_at(job, Instant::now() + delay, out);
    }

    fn retry_at(&mut self, mut job: Job, due: Instant, out: &mut Vec<Done>) {
        job.attempt = job.attempt.saturating_add(1);
        self.stats.retries += 1;
        self.defer(job, due, out);
    }

    /// Parks `job` until `due` (not an attempt of its own).
    fn defer(&mut self, job: Job, due: Instant, out: &mut Vec<Done>) {
        if self.deferred.len() >= MAX_DEFERRED {
            out.push(Done {
                key: job.key,
                lookup: Lookup::Unknown(Why::Overloaded),
                asked: job.asked,
                queried: job.queried,
                answered: Instant::now(),
            });
        } else {
            self.deferred.push((due, job));
        }
    }

    /// Who `holder` is. The start time is read first (once per batch, `starts`) and again
    /// last, and the descriptor is checked after the start time and again after reading: a
    /// pid reused meanwhile, or a process that let go of the socket, is noticed rather than
    /// named.
    fn describe(
        &mut self,
        holder: Holder,
        info: SockInfo,
        starts: &mut FxHashMap<u32, Result<u64, ProcError>>,
    ) -> Result<Arc<Owner>, Why> {
        let root = self.index.root().to_path_buf();
        let proc_err = |e: ProcError| match e {
            ProcError::Denied => Why::Denied,
            ProcError::Gone | ProcError::Garbled => Why::ProcessGone,
        };
        let holds = |root: &std::path::Path| procfs::fd_inode(root, holder.pid, holder.fd) == Some(info.inode);
        let start =
            (*starts.entry(holder.pid).or_insert_with(|| procfs::start_time(&root, holder.pid))).map_err(proc_err)?;
        if !holds(&root) {
            return Err(Why::ProcessGone);
        }
        let now = Instant::now();
        // A process without a login uid may be sshd just before pam_loginuid sets it: its
        // cached answer holds only while the uid is still unset (one small read), so the
        // session is seen as the user's at once, not a cache age later.
        let cached = self.procs.get(holder.pid, start, info.uid, now);
        if let Some(owner) = cached.filter(|o| o.login_uid.is_some() || procfs::login_uid(&root, o.pid).is_none()) {
            self.stats.process_cache_hits += 1;
            return Ok(owner);
        }
        self.stats.process_reads += 1;
        let p = procfs::read_process(&root, holder.pid, start).map_err(proc_err)?;
        match procfs::start_time(&root, holder.pid) {
            Ok(s) if s == start => {}
            Ok(_) => return Err(Why::PidReused),
            Err(e) => return Err(proc_err(e)),
        }
        if !holds(&root) {
            return Err(Why::ProcessGone);
        }
        let owner = Arc::new(Owner {
            pid: p.pid,
            ppid: procfs::parent(&root, holder.pid),
            start_time: p.start_time,
            uid: info.uid,
            login_uid: p.login_uid,
            comm: p.comm,
            exe: p.exe,
            unit: p.unit,
            cgroup: p.cgroup,
        });
        self.procs.put(owner.clone(), now);
        Ok(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// Answers from a table: key → answer; unknown keys → ENOENT.
    struct FakeDiag(FxHashMap<FlowKey, Answer>);

    impl Diag for FakeDiag {
        fn query(&mut self, keys: &[FlowKey], answers: &mut Vec<Answer>) {
            answers.clear();
            answers.extend(keys.iter().map(|k| self.0.get(k).copied().unwrap_or(Err(2))));
        }

        fn bad_answers(&self) -> u64 {
            0
        }
    }

    fn key(n: u16) -> FlowKey {
        FlowKey { proto: 6, local: format!("10.0.0.2:{n}").parse().unwrap(), remote: "192.0.2.1:443".parse().unwrap() }
    }

    fn sock(state: u8, uid: u32, inode: u64) -> Answer {
        Ok(SockInfo { family: 2, state, local_port: 0, uid, inode })
    }

    /// A fake /proc with one process `pid` holding `fds` (fd → inode).
    fn process(root: &std::path::Path, pid: u32, start: u64, loginuid: &str, fds: &[(u32, u64)]) {
        let dir = root.join(pid.to_string());
        fs::create_dir_all(dir.join("fd")).unwrap();
        let fields: Vec<String> = (3..=52).map(|i| if i == 22 { start.to_string() } else { "0".into() }).collect();
        fs::write(dir.join("stat"), format!("{pid} (curl) {}", fields.join(" "))).unwrap();
        fs::write(dir.join("comm"), "curl\n").unwrap();
        fs::write(dir.join("loginuid"), loginuid).unwrap();
        fs::write(dir.join("cgroup"), "0::/user.slice/user-1000.slice/session-2.scope\n").unwrap();
        let _ = fs::remove_file(dir.join("exe"));
        symlink("/usr/bin/curl", dir.join("exe")).unwrap();
        for (fd, inode) in fds {
            let link = dir.join("fd").join(fd.to_string());
            let _ = fs::remove_file(&link);
            symlink(format!("socket:[{inode}]"), link).unwrap();
        }
    }

    fn worker(answers: &[(FlowKey, Answer)], root: &std::path::Path) -> Worker<FakeDiag> {
        Worker::new(
            FakeDiag(answers.iter().copied().collect()),
            SocketIndex::new(root, 1000),
            Arc::new(SharedStats::default()),
        )
    }

    fn run(w: &mut Worker<FakeDiag>, keys: &[FlowKey]) -> Vec<Done> {
        let now = Instant::now();
        let mut batch: Vec<Job> = keys.iter().map(|&key| Job::new(key, now)).collect();
        let mut out = Vec::new();
        w.process(&mut batch, &mut out);
        out
    }

    /// Runs the deferred lookups as if their time had come, until none is left.
    fn drain(w: &mut Worker<FakeDiag>) -> Vec<Done> {
        let mut all = Vec::new();
        for _ in 0..10 {
            let mut batch = Vec::new();
            w.take_due(Instant::now() + Duration::from_secs(5), &mut batch);
            if batch.is_empty() {
                break;
            }
            // Full scans are spaced: let the spacing pass.
            std::thread::sleep(Duration::from_millis(15));
            w.process(&mut batch, &mut all);
        }
        all
    }

    #[test]
    fn found_with_login_uid_and_socket_uid() {
        let proc = tempfile::tempdir().unwrap();
        process(proc.path(), 300, 777, "1000", &[(4, 5555)]);
        let mut w = worker(&[(key(1), sock(state::ESTABLISHED, 0, 5555))], proc.path());
        let out = run(&mut w, &[key(1)]);
        let [Done { lookup: Lookup::Found(o), .. }] = &out[..] else { panic!("{out:?}") };
        assert_eq!((o.pid, o.start_time, o.uid, o.login_uid), (300, 777, 0, Some(1000)));
        assert_eq!(o.principal_uid(), 1000);
        assert_eq!((o.comm.as_str(), o.exe.as_str()), ("curl", "/usr/bin/curl"));
        assert_eq!(o.unit.as_deref(), Some("session-2.scope"));
        assert_eq!(w.stats.full_scans, 1);
        // A second socket of the same process: the index knows it after the scan, the
        // process cache serves the rest.
        process(proc.path(), 300, 777, "1000", &[(4, 5555), (5, 5556)]);
        w.diag.0.insert(key(2), sock(state::SYN_SENT, 0, 5556));
        let out = run(&mut w, &[key(2)]);
        assert!(matches!(&out[..], [Done { lookup: Lookup::Found(o), .. }] if o.pid == 300), "{out:?}");
        assert_eq!(w.stats.pid_scans, 1, "found in the hot pid's table");
        assert_eq!(w.stats.process_cache_hits, 1);
    }

    /// sshd's session: the login uid appears after the first lookup; the process cache must
    /// not hide it for its age (that took about a second, and an scp pull on veth is over by then).
    #[test]
    fn a_login_uid_set_after_a_lookup_is_seen_at_once() {
        let proc = tempfile::tempdir().unwrap();
        process(proc.path(), 300, 777, "4294967295", &[(4, 5555), (5, 5556)]);
        let mut w = worker(
            &[(key(1), sock(state::ESTABLISHED, 0, 5555)), (key(2), sock(state::ESTABLISHED, 0, 5556))],
            proc.path(),
        );
        let out = run(&mut w, &[key(1)]);
        assert!(matches!(&out[..], [Done { lookup: Lookup::Found(o), .. }] if o.login_uid.is_none()), "{out:?}");
        std::fs::write(proc.path().join("300").join("loginuid"), "1001").unwrap();
        let out = run(&mut w, &[key(2)]);
        assert!(matches!(&out[..], [Done { lookup: Lookup::Found(o), .. }] if o.login_uid == Some(1001)), "{out:?}");
        assert_eq!(w.stats.process_cache_hits, 0);
    }

    /// sshd: the pre-auth child (no login uid) is named first; at the login it exits and its
    /// parent, which holds the same socket and now has the login uid, is found by the rescan
    /// of recent owners, without waiting for another full scan.
    #[test]
    fn a_holder_that_exits_is_followed_to_its_parent_without_a_full_scan() {
        let proc = tempfile::tempdir().unwrap();
        process(proc.path(), 200, 100, "4294967295", &[]);
        process(proc.path(), 300, 200, "4294967295", &[(4, 7777)]);
        // The child's stat names its parent (field 4) and its start time (field 22).
        let fields: Vec<&str> = (4..=52).map(|i| if i == 4 || i == 22 { "200" } else { "0" }).collect();
        fs::write(proc.path().join("300/stat"), format!("300 (sshd) S {}", fields.join(" "))).unwrap();
        let mut w = worker(&[(key(1), sock(state::ESTABLISHED, 0, 7777))], proc.path());
        let out = run(&mut w, &[key(1)]);
        assert!(matches!(&out[..], [Done { lookup: Lookup::Found(o), .. }] if o.pid == 300), "{out:?}");
        // The login: the child exits, the parent (holding the socket all along) has the uid.
        std::os::unix::fs::symlink("socket:[7777]", proc.path().join("200/fd/5")).unwrap();
        fs::write(proc.path().join("200/loginuid"), "1001").unwrap();
        fs::remove_dir_all(proc.path().join("300")).unwrap();
        let out = run(&mut w, &[key(1)]);
        assert!(
            matches!(&out[..], [Done { lookup: Lookup::Found(o), .. }] if o.pid == 200 && o.login_uid == Some(1001)),
            "{out:?}"
        );
        assert_eq!(w.stats.full_scans, 1, "found among the recent owners");
    }

    #[test]
    fn socket_gone_time_wait_closed_unsupported() {
        let proc = tempfile::tempdir().unwrap();
        let mut w = worker(
            &[
                (key(2), sock(state::TIME_WAIT, 0, 0)),
                (key(3), sock(state::FIN_WAIT1, 0, 0)),
                (key(4), Err(13)),
                (key(6), sock(state::LISTEN, 0, 77)),
            ],
            proc.path(),
        );
        let mut icmp = key(5);
        icmp.proto = 1;
        let out = run(&mut w, &[key(1), key(2), key(3), key(4), icmp, key(6)]);
        let got: Vec<(u16, Lookup)> = out.iter().map(|d| (d.key.local.port(), d.lookup.clone())).collect();
        assert_eq!(
            got,
            vec![
                (5, Lookup::Unknown(Why::Unsupported)),
                (1, Lookup::Unknown(Why::SocketGone)),
                (2, Lookup::Unknown(Why::TimeWait)),
                (3, Lookup::Unknown(Why::Closed)),
                (4, Lookup::Unknown(Why::Denied)),
                // The listener the kernel falls back to once the connection is gone.
                (6, Lookup::Unknown(Why::SocketGone)),
            ]
        );
    }

    #[test]
    fn not_accepted_is_retried_then_answered() {
        let proc = tempfile::tempdir().unwrap();
        let mut w = worker(&[(key(1), sock(state::SYN_RECV, 0, 0))], proc.path());
        assert!(run(&mut w, &[key(1)]).is_empty());
        assert_eq!(w.deferred(), 1);
        let out = drain(&mut w);
        assert!(matches!(&out[..], [Done { lookup: Lookup::Unknown(Why::NotAccepted), .. }]), "{out:?}");
        assert_eq!(w.stats.retries, NOT_ACCEPTED_DELAYS.len() as u64);
    }

    #[test]
    fn accepted_meanwhile_is_found() {
        let proc = tempfile::tempdir().unwrap();
        let mut w = worker(&[(key(1), sock(state::ESTABLISHED, 0, 0))], proc.path());
        assert!(run(&mut w, &[key(1)]).is_empty());
        process(proc.path(), 41, 9, "4294967295", &[(7, 8080)]);
        w.diag.0.insert(key(1), sock(state::ESTABLISHED, 0, 8080));
        let out = drain(&mut w);
        let [Done { lookup: Lookup::Found(o), .. }] = &out[..] else { panic!("{out:?}") };
        assert_eq!((o.pid, o.login_uid, o.principal_uid()), (41, None, 0));
    }

    #[test]
    fn nobody_holding_is_no_process_after_a_second_scan() {
        let proc = tempfile::tempdir().unwrap();
        let mut w = worker(&[(key(1), sock(state::ESTABLISHED, 0, 4242))], proc.path());
        assert!(run(&mut w, &[key(1)]).is_empty());
        let out = drain(&mut w);
        assert!(matches!(&out[..], [Done { lookup: Lookup::Unknown(Why::NoProcess), .. }]), "{out:?}");
        assert_eq!(w.stats.full_scans, 2);
    }

    #[test]
    fn scans_are_spaced_and_lookups_wait_for_the_next() {
        // Spacing is wall time: a try whose second lookup came later than the shortest
        // interval between full scans (a loaded machine) proves nothing and is made again.
        for _ in 0..20 {
            let proc = tempfile::tempdir().unwrap();
            process(proc.path(), 50, 1, "0", &[(3, 1), (4, 2)]);
            let mut w = worker(&[(key(1), sock(1, 0, 1)), (key(2), sock(1, 0, 2))], proc.path());
            let scanned = Instant::now();
            assert_eq!(run(&mut w, &[key(1)]).len(), 1);
            // A new socket of another process right after the scan: parked, not scanned for.
            process(proc.path(), 60, 1, "0", &[(3, 3)]);
            w.diag.0.insert(key(3), sock(1, 0, 3));
            let parked = run(&mut w, &[key(3)]);
            if scanned.elapsed() >= crate::source::owner::procfs::MIN_SCAN_INTERVAL {
                continue;
            }
            assert!(parked.is_empty());
            assert_eq!(w.stats.full_scans, 1);
            let out = drain(&mut w);
            assert!(matches!(&out[..], [Done { lookup: Lookup::Found(o), .. }] if o.pid == 60), "{out:?}");
            assert_eq!(w.stats.full_scans, 2);
            return;
        }
        panic!("no try ran its two lookups within the shortest interval between full scans");
    }

    #[test]
    fn pid_reused_while_read_is_not_named() {
        let proc = tempfile::tempdir().unwrap();
        process(proc.path(), 70, 100, "1000", &[(3, 9)]);
        let mut w = worker(&[], proc.path());
        let holder = Holder { pid: 70, fd: 3 };
        let info = SockInfo { family: 2, state: 1, local_port: 1, uid: 1000, inode: 9 };
        // The race made deterministic: `comm` is a FIFO, and whoever answers the read
        // replaces the process (a new start time) before giving the name.
        let comm = proc.path().join("70/comm");
        fs::remove_file(&comm).unwrap();
        nix::unistd::mkfifo(&comm, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let stat = proc.path().join("70/stat");
        let racer = std::thread::spawn(move || {
            let mut w = fs::OpenOptions::new().write(true).open(&comm).unwrap();
            let fields: Vec<String> = (3..=52).map(|i| if i == 22 { "101".into() } else { "0".into() }).collect();
            fs::write(stat, format!("70 (curl) {}", fields.join(" "))).unwrap();
            std::io::Write::write_all(&mut w, b"curl\n").unwrap();
        });
        assert_eq!(w.describe(holder, info, &mut FxHashMap::default()), Err(Why::PidReused));
        racer.join().unwrap();
        // A process that let go of the socket is not named.
        fs::remove_file(proc.path().join("70/fd/3")).unwrap();
        assert_eq!(w.describe(holder, info, &mut FxHashMap::default()), Err(Why::ProcessGone));
        // Nor is a pid that vanished.
        fs::remove_dir_all(proc.path().join("70")).unwrap();
        assert_eq!(w.describe(holder, info, &mut FxHashMap::default()), Err(Why::ProcessGone));
    }

    #[test]
    fn a_descriptor_reused_for_something_else_ends_in_no_process() {
        let proc = tempfile::tempdir().unwrap();
        process(proc.path(), 80, 5, "0", &[(3, 11)]);
        let mut w = worker(&[(key(1), sock(1, 0, 11))], proc.path());
        // Indexed, then the fd names a pipe: the stale entry is dropped, and two scans find
        // no holder.
        w.index.full_scan(&mut FxHashSet::default());
        let link = proc.path().join("80/fd/3");
        fs::remove_file(&link).unwrap();
        symlink("pipe:[1]", &link).unwrap();
        let mut out = run(&mut w, &[key(1)]);
        out.extend(drain(&mut w));
        assert!(matches!(&out[..], [Done { lookup: Lookup::Unknown(Why::NoProcess), .. }]), "{out:?}");
        assert_eq!(w.stats.index_stale, 1);
    }

    #[test]
    fn deferred_lookups_are_bounded() {
        let proc = tempfile::tempdir().unwrap();
        let mut w = worker(&[], proc.path());
        let now = Instant::now();
        let mut out = Vec::new();
        for i in 0..MAX_DEFERRED + 3 {
            w.defer(Job::new(key(i as u16), now), now, &mut out);
        }
        assert_eq!(w.deferred(), MAX_DEFERRED);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|d| d.lookup == Lookup::Unknown(Why::Overloaded)));
    }
}
