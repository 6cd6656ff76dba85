//! The process side: which process holds socket inode N, and who that process is.
//!
//! [`SocketIndex`] maps socket inodes to a holding `(pid, fd)`, learnt from `/proc/PID/fd`
//! links (`socket:[N]`). An entry is a hint, checked with one `readlink` before it is used, so
//! a stale entry costs a syscall, never a wrong answer. Misses are resolved in batches: first
//! the fd tables of the few processes that owned recent flows (a busy client opens many
//! sockets in a row; at most 16,384 descriptors each), at most once per `2 × the last
//! rescan's duration` (2..50 ms), then the whole of `/proc`, at most once per `5 × the last full
//! scan's duration` (10 ms..10 s), so a burst's misses gather and one read of a table serves
//! many of them, and scanning cannot take the whole thread. The index holds at most `cap`
//! inodes; a full scan still resolves the inodes it was asked for when the index is full.
//!
//! [`read_process`] reads what we keep about a process; the parsers beside it take the
//! kernel's text as it is and return `None` on anything unexpected, never panic.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

/// `/proc/PID/loginuid` of a process no login session has touched ("unset").
const UNSET_LOGINUID: u32 = u32::MAX;
/// How many recent owner pids are rescanned before the whole of /proc.
const HOT_PIDS: usize = 8;
/// At most this many descriptors of a recent owner are read per rescan; the rest of a larger
/// table is left to the full scans. (A lower limit only moves the work: a socket a rescan
/// does not reach waits for a full scan, which reads the same table and all the others.)
const HOT_FD_LIMIT: usize = 16_384;
/// Shortest and longest interval between two rescans of recent owners (the longest bounds
/// the wait when a rescan was slow only because the thread was kept off the CPU).
const MIN_HOT_INTERVAL: Duration = Duration::from_millis(2);
const MAX_HOT_INTERVAL: Duration = Duration::from_millis(50);
/// Rescans of recent owners are spaced at least this many times their own duration apart.
const HOT_SPACING: u32 = 2;
/// Shortest interval between two full scans.
pub(super) const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(10);
/// Full scans are spaced at least this many times their own duration apart (at most 10 s).
const SCAN_SPACING: u32 = 5;
const MAX_SCAN_INTERVAL: Duration = Duration::from_secs(10);

/// One process holding a socket: the descriptor that named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub fd: u32,
}

/// What the index did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Lookups answered from the index (after the readlink check).
    pub hits: u64,
    /// Entries found stale by the readlink check.
    pub stale: u64,
    /// Fd tables of recent owners rescanned, and the time those rescans took, microseconds.
    pub pid_scans: u64,
    pub pid_scan_us: u64,
    /// Scans of every process.
    pub full_scans: u64,
    /// Total time spent in full scans, microseconds.
    pub full_scan_us: u64,
    /// Duration of the last full scan, microseconds.
    pub last_full_scan_us: u64,
    /// Socket descriptors not indexed because the index was full.
    pub not_indexed: u64,
    /// Inodes indexed now.
    pub size: u64,
}

/// Socket inode → holder, with the scan policy described in the module doc.
pub struct SocketIndex {
    root: PathBuf,
    map: FxHashMap<u64, Holder>,
    cap: usize,
    hot: VecDeque<u32>,
    last_hot: Option<Instant>,
    last_hot_cost: Duration,
    last_full: Option<Instant>,
    last_full_cost: Duration,
    /// The last full scan was refused some process's descriptors (no CAP_DAC_READ_SEARCH or
    /// CAP_SYS_PTRACE): a socket it did not find may be one of theirs.
    denied: bool,
    pub stats: IndexStats,
}

impl SocketIndex {
    /// An empty index over the process tree at `root` (`/proc`, or a fake one in tests).
    pub fn new(root: impl Into<PathBuf>, cap: usize) -> SocketIndex {
        SocketIndex {
            root: root.into(),
            map: FxHashMap::default(),
            cap: cap.max(1),
            hot: VecDeque::with_capacity(HOT_PIDS),
            last_hot: None,
            last_hot_cost: Duration::ZERO,
            last_full: None,
            last_full_cost: Duration::ZERO,
            denied: false,
            stats: IndexStats::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The indexed holder of `inode`, if the index has one and its descriptor still names it.
    pub fn cached(&mut self, inode: u64) -> Option<Holder> {
        let h = *self.map.get(&inode)?;
        if fd_inode(&self.root, h.pid, h.fd) == Some(inode) {
            self.stats.hits += 1;
            Some(h)
        } else {
            self.map.remove(&inode);
            self.stats.stale += 1;
            None
        }
    }

    /// Notes `pid` as the owner of a recent flow: its table is rescanned first on a miss.
    pub fn note_owner(&mut self, pid: u32) {
        if self.hot.front() == Some(&pid) {
            return;
        }
        self.hot.retain(|&p| p != pid);
        if self.hot.len() == HOT_PIDS {
            self.hot.pop_back();
        }
        self.hot.push_front(pid);
    }

    /// Forgets `inode` (its entry proved wrong after use).
    pub fn forget(&mut self, inode: u64) {
        self.map.remove(&inode);
    }

    /// Rescans the fd tables of recent owners; returns the holders found for `wanted`, which
    /// loses the inodes found.
    pub fn scan_hot(&mut self, wanted: &mut FxHashSet<u64>) -> FxHashMap<u64, Holder> {
        let start = Instant::now();
        let mut found = FxHashMap::default();
        if self.hot.is_empty() {
            return found;
        }
        let hot: Vec<u32> = self.hot.iter().copied().collect();
        for pid in hot {
            if wanted.is_empty() {
                break;
            }
            self.stats.pid_scans += 1;
            if self.scan_pid(pid, wanted, &mut found, HOT_FD_LIMIT, true).is_err() {
                // Gone or unreadable: not worth rescanning next time.
                self.hot.retain(|&p| p != pid);
            }
            wanted.retain(|i| !found.contains_key(i));
        }
        self.last_hot = Some(Instant::now());
        self.last_hot_cost = start.elapsed();
        self.stats.pid_scan_us += self.last_hot_cost.as_micros() as u64;
        found
    }

    /// When the next rescan of recent owners is allowed (now, if it is). Spacing them lets
    /// the misses of a burst gather, so one read of a busy process's table serves many.
    pub fn next_hot_scan(&self) -> Instant {
        next_allowed(self.last_hot, self.last_hot_cost, HOT_SPACING, MIN_HOT_INTERVAL, MAX_HOT_INTERVAL)
    }

    /// When the next full scan is allowed (now, if it is).
    pub fn next_full_scan(&self) -> Instant {
        next_allowed(self.last_full, self.last_full_cost, SCAN_SPACING, MIN_SCAN_INTERVAL, MAX_SCAN_INTERVAL)
    }

    /// Scans every process's fd table, indexing every socket seen (up to the cap) and
    /// returning the holders of `wanted`, which loses the inodes found. The index is rebuilt
    /// from what this scan saw, so entries of closed sockets do not pile up.
    pub fn full_scan(&mut self, wanted: &mut FxHashSet<u64>) -> FxHashMap<u64, Holder> {
        let start = Instant::now();
        let mut found = FxHashMap::default();
        self.map.clear();
        // Without both, other users' processes are unreadable or (ProtectProc=invisible) not
        // even listed, so a scan that sees no refusal can still be blind to them.
        const DAC_READ_SEARCH: u64 = 1 << 2;
        const SYS_PTRACE: u64 = 1 << 19;
        let needed = DAC_READ_SEARCH | SYS_PTRACE;
        self.denied = self.root == Path::new("/proc")
            && crate::source::effective_capabilities().is_some_and(|caps| caps & needed != needed);
        if let Ok(dir) = fs::read_dir(&self.root) {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                // A process that exits mid-scan, or a kernel thread: nothing to index.
                if let Err(e) = self.scan_pid(pid, wanted, &mut found, usize::MAX, false) {
                    self.denied |= e.kind() == io::ErrorKind::PermissionDenied;
                }
            }
        }
        wanted.retain(|i| !found.contains_key(i));
        let cost = start.elapsed();
        self.last_full = Some(Instant::now());
        self.last_full_cost = cost;
        self.stats.full_scans += 1;
        self.stats.full_scan_us += cost.as_micros() as u64;
        self.stats.last_full_scan_us = cost.as_micros() as u64;
        self.stats.size = self.map.len() as u64;
        found
    }

    /// Whether the last full scan was refused some process's descriptors.
    pub fn denied(&self) -> bool {
        self.denied
    }

    /// Indexes the socket descriptors of one process (at most `limit` descriptors read);
    /// holders of `wanted` inodes go to `found`. With `until_found`, stops once every wanted
    /// inode has a holder (a rescan of a busy table rarely needs all of it).
    fn scan_pid(
        &mut self,
        pid: u32,
        wanted: &FxHashSet<u64>,
        found: &mut FxHashMap<u64, Holder>,
        limit: usize,
        until_found: bool,
    ) -> io::Result<()> {
        let mut missing = wanted.iter().filter(|i| !found.contains_key(i)).count();
        let dir = self.root.join(pid.to_string()).join("fd");
        // readlinkat against the open directory: one path component per descriptor instead
        // of walking /proc/PID/fd again each time.
        let dir_fd = fs::File::open(&dir)?;
        for entry in fs::read_dir(&dir)?.flatten().take(limit) {
            let name = entry.file_name();
            let Some(fd) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let target = nix::fcntl::readlinkat(&dir_fd, name.as_os_str());
            self.denied |= matches!(target, Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM));
            let Some(inode) = target.ok().as_deref().and_then(|t| t.to_str()).and_then(parse_socket_link) else {
                continue;
            };
            // Where several processes hold a socket, the last one seen (usually the youngest,
            // e.g. the child a server forked for the connection) is named.
            let holder = Holder { pid, fd };
            if wanted.contains(&inode) && found.insert(inode, holder).is_none() {
                missing -= 1;
            }
            if self.map.len() < self.cap || self.map.contains_key(&inode) {
                self.map.insert(inode, holder);
            } else {
                self.stats.not_indexed += 1;
            }
            if until_found && missing == 0 {
                break;
            }
        }
        self.stats.size = self.map.len() as u64;
        Ok(())
    }
}

/// `spacing` times the last run's cost after it (within `min..=max`), and not before now.
fn next_allowed(last: Option<Instant>, cost: Duration, spacing: u32, min: Duration, max: Duration) -> Instant {
    let now = Instant::now();
    last.map_or(now, |t| (t + cost.saturating_mul(spacing).clamp(min, max)).max(now))
}

/// The socket inode `/proc/PID/fd/FD` names; `None` when it names no socket or is gone.
pub fn fd_inode(root: &Path, pid: u32, fd: u32) -> Option<u64> {
    let target = fs::read_link(root.join(pid.to_string()).join("fd").join(fd.to_string())).ok()?;
    target.to_str().and_then(parse_socket_link)
}

/// `socket:[12345]` → 12345.
pub fn parse_socket_link(target: &str) -> Option<u64> {
    target.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// `/proc/PID/loginuid`: the login user, or `None` when unset (4294967295) or unreadable text.
pub fn parse_loginuid(text: &str) -> Option<u32> {
    text.trim().parse::<u32>().ok().filter(|&u| u != UNSET_LOGINUID)
}

/// Field 22 of `/proc/PID/stat`, the start time in clock ticks since boot. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; field 22 is the twentieth.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Field 4 (the parent's pid) of `/proc/PID/stat`.
pub fn parse_parent(stat: &str) -> Option<u32> {
    stat[stat.rfind(')')? + 1..].split_ascii_whitespace().nth(1)?.parse().ok()
}

/// The cgroup path of a process from `/proc/PID/cgroup`: the unified (v2) hierarchy's line
/// `0::/path`, unless that is the bare root and systemd keeps its own v1 hierarchy (legacy
/// setups: `N:name=systemd:/path`); else the first line's.
pub fn parse_cgroup(text: &str) -> Option<&str> {
    let (mut unified, mut systemd, mut first) = (None, None, None);
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            unified.get_or_insert(path);
        } else if controllers == "name=systemd" {
            systemd.get_or_insert(path);
        }
        first.get_or_insert(path);
    }
    match (unified, systemd) {
        (Some("/"), Some(s)) => Some(s),
        (Some(u), _) => Some(u),
        (None, s) => s.or(first),
    }
}

/// The systemd unit a cgroup path belongs to, as `systemctl status PID` names it: the first
/// component below the slices that is a unit (`.service`, `.scope`, …), e.g. `ssh.service`,
/// `session-3.scope`, or `user@1000.service` for everything in a user's manager.
pub fn unit_of(cgroup: &str) -> Option<&str> {
    const UNITS: [&str; 6] = [".service", ".scope", ".socket", ".mount", ".swap", ".device"];
    cgroup
        .split('/')
        .filter(|c| !c.is_empty())
        .find(|c| !c.ends_with(".slice"))
        .filter(|c| UNITS.iter().any(|u| c.len() > u.len() && c.ends_with(u)))
}

/// What is kept about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    /// Clock ticks since boot (`/proc/PID/stat` field 22): with the pid, names the process.
    pub start_time: u64,
    pub login_uid: Option<u32>,
    pub comm: String,
    /// `/proc/PID/exe`; empty when it cannot be read (kernel thread, or no permission).
    pub exe: String,
    pub cgroup: String,
    pub unit: Option<String>,
}

/// Why a process could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcError {
    /// It exited (or was never there).
    Gone,
    /// Not permitted to read it.
    Denied,
    /// Its files said something unexpected.
    Garbled,
}

impl From<io::Error> for ProcError {
    fn from(e: io::Error) -> ProcError {
        // EACCES and EPERM are both PermissionDenied; ENOENT and ESRCH mean it exited.
        match e.kind() {
            io::ErrorKind::PermissionDenied => ProcError::Denied,
            _ => ProcError::Gone,
        }
    }
}

/// The start time of `pid`, the cheap identity check.
pub fn start_time(root: &Path, pid: u32) -> Result<u64, ProcError> {
    let stat = fs::read_to_string(root.join(pid.to_string()).join("stat"))?;
    parse_start_time(&stat).ok_or(ProcError::Garbled)
}

/// `/proc/PID/loginuid` alone (`None`: unset or unreadable).
pub fn login_uid(root: &Path, pid: u32) -> Option<u32> {
    parse_loginuid(&fs::read_to_string(root.join(pid.to_string()).join("loginuid")).ok()?)
}

/// The parent's pid, from `/proc/PID/stat` (`None`: gone or unreadable).
pub fn parent(root: &Path, pid: u32) -> Option<u32> {
    parse_parent(&fs::read_to_string(root.join(pid.to_string()).join("stat")).ok()?)
}

/// Reads a process. The caller checks afterwards that it is still the process it meant
/// (start time, descriptor), since the pid may be reused while this runs.
pub fn read_process(root: &Path, pid: u32, start_time: u64) -> Result<ProcInfo, ProcError> {
    let dir = root.join(pid.to_string());
    let comm = fs::read_to_string(dir.join("comm"))?;
    let login_uid = match fs::read_to_string(dir.join("loginuid")) {
        Ok(t) => parse_loginuid(&t),
        // Kernels without CONFIG_AUDIT have no loginuid: unset, not an error.
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir.exists() => None,
        Err(e) => return Err(e.into()),
    };
    let cgroup_text = fs::read_to_string(dir.join("cgroup"))?;
    let cgroup = parse_cgroup(&cgroup_text).unwrap_or("").to_string();
    let exe = fs::read_link(dir.join("exe")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(ProcInfo {
        pid,
        start_time,
        login_uid,
        comm: comm.trim_end_matches('\n').to_string(),
        exe,
        unit: unit_of(&cgroup).map(str::to_string),
        cgroup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn loginuid_unset_is_none() {
        assert_eq!(parse_loginuid("4294967295"), None);
        assert_eq!(parse_loginuid("1000"), Some(1000));
        assert_eq!(parse_loginuid("1000\n"), Some(1000));
        assert_eq!(parse_loginuid("0"), Some(0));
        assert_eq!(parse_loginuid(""), None);
        assert_eq!(parse_loginuid("-1"), None);
        assert_eq!(parse_loginuid("99999999999"), None);
        assert_eq!(parse_loginuid("12ab"), None);
    }

    #[test]
    fn start_time_after_a_hostile_command_name() {
        let fields: Vec<String> = (3..=52).map(|i| i.to_string()).collect();
        let stat = format!("4242 (a) b) (c ) {}\n", fields.join(" "));
        assert_eq!(parse_start_time(&stat), Some(22));
        assert_eq!(parse_start_time("1 (x) S 0 1"), None, "cut short");
        assert_eq!(parse_start_time("no parenthesis at all"), None);
        assert_eq!(parse_start_time(""), None);
        assert_eq!(parse_start_time(")"), None);
    }

    #[test]
    fn start_time_of_a_real_stat_line() {
        let stat = "1234 (sshd) S 1 1234 1234 0 -1 4194560 1002 0 0 0 1 2 0 0 20 0 1 0 98765 16523264 2252 \
                    18446744073709551615 1 1 0 0 0 0 0 4096 81925 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert_eq!(parse_start_time(stat), Some(98765));
    }

    #[test]
    fn cgroup_lines() {
        assert_eq!(parse_cgroup("0::/system.slice/ssh.service\n"), Some("/system.slice/ssh.service"));
        let hybrid = "12:cpu,cpuacct:/\n1:name=systemd:/user.slice/user-1000.slice/session-3.scope\n\
                      0::/user.slice/user-1000.slice/session-3.scope\n";
        assert_eq!(parse_cgroup(hybrid), Some("/user.slice/user-1000.slice/session-3.scope"));
        let v1 = "4:memory:/x\n1:name=systemd:/system.slice/cron.service\n";
        assert_eq!(parse_cgroup(v1), Some("/system.slice/cron.service"));
        let legacy = "4:memory:/x\n1:name=systemd:/system.slice/cron.service\n0::/\n";
        assert_eq!(parse_cgroup(legacy), Some("/system.slice/cron.service"));
        assert_eq!(parse_cgroup("1:name=systemd:/\n0::/\n"), Some("/"));
        assert_eq!(parse_cgroup("4:memory:/x\n"), Some("/x"));
        assert_eq!(parse_cgroup("3:pids:/a:b\n"), Some("/a:b"), "a colon in the path");
        assert_eq!(parse_cgroup(""), None);
        assert_eq!(parse_cgroup("garbage\n::\n"), Some(""));
    }

    #[test]
    fn units_from_cgroup_paths() {
        assert_eq!(unit_of("/system.slice/ssh.service"), Some("ssh.service"));
        assert_eq!(unit_of("/user.slice/user-1000.slice/session-3.scope"), Some("session-3.scope"));
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service"),
            Some("user@1000.service")
        );
        assert_eq!(unit_of("/system.slice/docker-0123abcd.scope/inner"), Some("docker-0123abcd.scope"));
        assert_eq!(unit_of("/init.scope"), Some("init.scope"));
        assert_eq!(unit_of("/"), None);
        assert_eq!(unit_of(""), None);
        assert_eq!(unit_of("/user.slice"), None);
        assert_eq!(unit_of("/lxc/container1"), None, "not systemd's");
        assert_eq!(unit_of("/.service"), None, "no name");
    }

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link("socket:[12345]"), Some(12345));
        assert_eq!(parse_socket_link("socket:[]"), None);
        assert_eq!(parse_socket_link("socket:[12"), None);
        assert_eq!(parse_socket_link("pipe:[12]"), None);
        assert_eq!(parse_socket_link("/dev/null"), None);
        assert_eq!(parse_socket_link("socket:[99999999999999999999999]"), None);
    }

    /// A fake /proc: `procs` are (pid, [(fd, link target)]).
    fn fake_proc(procs: &[(u32, &[(u32, &str)])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, fds) in procs {
            let fd_dir = dir.path().join(pid.to_string()).join("fd");
            fs::create_dir_all(&fd_dir).unwrap();
            for (fd, target) in *fds {
                symlink(target, fd_dir.join(fd.to_string())).unwrap();
            }
        }
        fs::create_dir_all(dir.path().join("sys")).unwrap();
        dir
    }

    #[test]
    fn full_scan_finds_wanted_and_indexes_the_rest() {
        let proc = fake_proc(&[
            (10, &[(0, "/dev/null"), (3, "socket:[100]"), (4, "pipe:[7]")]),
            (20, &[(5, "socket:[200]"), (6, "socket:[201]")]),
        ]);
        let mut idx = SocketIndex::new(proc.path(), 100);
        let mut wanted: FxHashSet<u64> = [200, 999].into_iter().collect();
        let found = idx.full_scan(&mut wanted);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![(200, Holder { pid: 20, fd: 5 })]);
        assert_eq!(wanted, [999].into_iter().collect());
        assert_eq!(idx.stats.size, 3);
        assert_eq!(idx.cached(100), Some(Holder { pid: 10, fd: 3 }));
        assert_eq!(idx.cached(201), Some(Holder { pid: 20, fd: 6 }));
        assert_eq!(idx.cached(999), None);
    }

    #[test]
    fn stale_entries_are_dropped_after_the_readlink_check() {
        let proc = fake_proc(&[(10, &[(3, "socket:[100]")])]);
        let mut idx = SocketIndex::new(proc.path(), 100);
        idx.full_scan(&mut FxHashSet::default());
        // The process closed fd 3 and opened another socket on it.
        let link = proc.path().join("10/fd/3");
        fs::remove_file(&link).unwrap();
        symlink("socket:[101]", &link).unwrap();
        assert_eq!(idx.cached(100), None);
        assert_eq!(idx.stats.stale, 1);
        assert_eq!(idx.cached(100), None, "and forgotten");
        assert_eq!(idx.stats.stale, 1);
    }

    #[test]
    fn a_shared_socket_is_named_after_its_last_holder() {
        let proc = fake_proc(&[(10, &[(3, "socket:[100]")]), (11, &[(0, "socket:[100]")])]);
        let mut idx = SocketIndex::new(proc.path(), 100);
        let mut wanted: FxHashSet<u64> = [100].into_iter().collect();
        let found = idx.full_scan(&mut wanted);
        assert!(wanted.is_empty());
        // read_dir order is the file system's: either way index and answer agree.
        assert_eq!(Some(found[&100]), idx.cached(100));
    }

    #[test]
    fn a_full_index_still_resolves_what_was_asked() {
        let proc = fake_proc(&[(10, &[(3, "socket:[1]"), (4, "socket:[2]"), (5, "socket:[3]")])]);
        let mut idx = SocketIndex::new(proc.path(), 1);
        let mut wanted: FxHashSet<u64> = [3].into_iter().collect();
        let found = idx.full_scan(&mut wanted);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![(3, Holder { pid: 10, fd: 5 })]);
        assert_eq!(idx.stats.size, 1);
        assert_eq!(idx.stats.not_indexed, 2);
    }

    #[test]
    fn hot_pids_are_rescanned_first() {
        let proc = fake_proc(&[(10, &[(3, "socket:[100]")]), (20, &[(3, "socket:[200]")])]);
        let mut idx = SocketIndex::new(proc.path(), 100);
        idx.note_owner(20);
        let mut wanted: FxHashSet<u64> = [200, 100].into_iter().collect();
        let found = idx.scan_hot(&mut wanted);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), vec![(200, Holder { pid: 20, fd: 3 })]);
        assert_eq!(wanted, [100].into_iter().collect(), "pid 10 is not hot");
        assert_eq!(idx.stats.pid_scans, 1);
        assert_eq!(idx.stats.full_scans, 0);
        // A hot pid that is gone is dropped from the list.
        idx.note_owner(30);
        idx.scan_hot(&mut wanted);
        assert_eq!(idx.hot.iter().copied().collect::<Vec<_>>(), vec![20]);
    }

    #[test]
    fn full_scans_are_spaced() {
        let proc = fake_proc(&[]);
        let mut idx = SocketIndex::new(proc.path(), 10);
        assert!(idx.next_full_scan() <= Instant::now());
        idx.full_scan(&mut FxHashSet::default());
        assert!(idx.next_full_scan() >= Instant::now() + MIN_SCAN_INTERVAL / 2);
        assert!(idx.next_hot_scan() <= Instant::now());
        idx.note_owner(1);
        idx.scan_hot(&mut FxHashSet::default());
        assert!(idx.next_hot_scan() >= Instant::now() + MIN_HOT_INTERVAL / 2);
    }

    #[test]
    fn process_files_are_read_and_parsed() {
        let proc = fake_proc(&[(77, &[])]);
        let dir = proc.path().join("77");
        fs::write(dir.join("comm"), "sshd\n").unwrap();
        fs::write(dir.join("loginuid"), "1001").unwrap();
        fs::write(dir.join("cgroup"), "0::/user.slice/user-1001.slice/session-4.scope\n").unwrap();
        symlink("/usr/sbin/sshd", dir.join("exe")).unwrap();
        let p = read_process(proc.path(), 77, 5).unwrap();
        assert_eq!(p.comm, "sshd");
        assert_eq!(p.login_uid, Some(1001));
        assert_eq!(p.exe, "/usr/sbin/sshd");
        assert_eq!(p.unit.as_deref(), Some("session-4.scope"));
        assert_eq!(p.cgroup, "/user.slice/user-1001.slice/session-4.scope");
        assert_eq!(read_process(proc.path(), 78, 5), Err(ProcError::Gone));
        fs::write(dir.join("stat"), "77 (sshd) S").unwrap();
        assert_eq!(start_time(proc.path(), 77), Err(ProcError::Garbled));
        assert_eq!(start_time(proc.path(), 78), Err(ProcError::Gone));
    }
}
