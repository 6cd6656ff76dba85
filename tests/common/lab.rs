//! A two-namespace lab for live tests: `inside` (10.77.N.2, runs the ruleset and the monitor)
//! and `outside` (10.77.N.1, runs sshd and a DNS resolver), joined by a veth pair. Neither has a
//! default route, so no packet can leave the machine. Everything started here is killed and
//! both namespaces are deleted when the lab is dropped, also when a test fails. Where it cannot
//! be built (not root, a tool missing) [`Lab::new`] skips through [`super::skip`].

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{skip, EXFILMON};

/// Test users, created when missing (they are shared by the tests, hence the lock).
pub const USERS: [&str; 2] = ["exfmon-t1", "exfmon-t2"];
const TOOLS: [&str; 15] = [
    "ip",
    "ss",
    "nft",
    "sshd",
    "ssh",
    "scp",
    "ssh-keygen",
    "dig",
    "dnsmasq",
    "tcpdump",
    "socat",
    "useradd",
    "runuser",
    "setpriv",
    "sysctl",
];

static LOCK: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Why the lab cannot run here, or `None` when it can.
fn unavailable() -> Option<String> {
    if !nix_is_root() {
        return Some("needs root (network namespaces, nftables, test users)".into());
    }
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| which(t).is_none()).collect();
    if !missing.is_empty() {
        return Some(format!("missing tools: {} (see scripts/test.sh for the packages)", missing.join(", ")));
    }
    let probe = format!("exfmon-probe-{}", std::process::id());
    if !succeeds(&["ip", "netns", "add", &probe]) {
        return Some("cannot create a network namespace".into());
    }
    let _ = exec(&["ip", "netns", "del", &probe]);
    None
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|u| u.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs a program (`args[0]`) with its arguments; checking the status is the caller's business.
pub fn exec(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn succeeds(args: &[&str]) -> bool {
    exec(args).status.success()
}

/// Runs a command and panics with its stderr when it fails.
pub fn must(args: &[&str]) -> String {
    let out = exec(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Lab {
    pub inside: String,
    pub outside: String,
    /// 10.77.N.1 (outside) — the only peer the inside can reach.
    pub peer: String,
    pub dir: tempfile::TempDir,
    children: Vec<Child>,
    _lock: MutexGuard<'static, ()>,
}

/// The monitor started by [`Lab::start_monitor`].
pub struct Monitor {
    pub child: Child,
    pub log: PathBuf,
}

impl Lab {
    /// Builds the lab, or prints why not (failing under CI) and returns `None`.
    pub fn new() -> Option<Lab> {
        let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = unavailable() {
            skip(&reason);
            return None;
        }
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let net = 100 + n % 100;
        let lab = Lab {
            inside: format!("exfmon-{id}-in"),
            outside: format!("exfmon-{id}-out"),
            peer: format!("10.77.{net}.1"),
            dir: tempfile::Builder::new().prefix("exfmon-live").tempdir().unwrap(),
            children: Vec::new(),
            _lock: lock,
        };
        // Test users reach their keys and files through it.
        fs::set_permissions(lab.dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
        let (vin, vout) = (format!("xmi{id}"), format!("xmo{id}"));
        let (i, o) = (lab.inside.as_str(), lab.outside.as_str());
        for args in [
            vec!["ip", "netns", "add", i],
            vec!["ip", "netns", "add", o],
            vec!["ip", "link", "add", &vin, "netns", i, "type", "veth", "peer", "name", &vout, "netns", o],
            vec!["ip", "-n", i, "link", "set", "lo", "up"],
            vec!["ip", "-n", o, "link", "set", "lo", "up"],
        ] {
            must(&args);
        }
        // IPv4 only: no router or neighbour solicitations logged behind the tests' backs, so
        // rule counters and the monitor's totals can be compared exactly.
        for ns in [i, o] {
            must(&["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
            must(&["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        }
        must(&["ip", "-n", i, "addr", "add", &format!("10.77.{net}.2/24"), "dev", &vin]);
        must(&["ip", "-n", o, "addr", "add", &format!("10.77.{net}.1/24"), "dev", &vout]);
        must(&["ip", "-n", i, "link", "set", &vin, "up"]);
        must(&["ip", "-n", o, "link", "set", &vout, "up"]);
        assert!(
            must(&["ip", "-n", i, "route", "show", "default"]).trim().is_empty(),
            "inside must have no default route"
        );
        for u in USERS {
            if !succeeds(&["id", u]) {
                must(&["useradd", "-m", "-s", "/bin/bash", u]);
            }
            // sshd with UsePAM no refuses locked accounts ("!" in the password field).
            must(&["usermod", "-p", "*", u]);
        }
        Some(lab)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn uid(user: &str) -> u32 {
        must(&["id", "-u", user]).trim().parse().unwrap()
    }

    /// `ip netns exec <inside> <args>`
    pub fn inside(&self, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", &self.inside];
        full.extend_from_slice(args);
        exec(&full)
    }

    /// Runs `args` inside as `user`; panics when it fails.
    pub fn as_user(&self, user: &str, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.inside, "runuser", "-u", user, "--"];
        full.extend_from_slice(args);
        must(&full)
    }

    fn spawn(&mut self, args: &[&str], log: &Path) -> u32 {
        let child = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(fs::File::create(log).unwrap())
            .stderr(fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Starts a background command in a namespace; killed when the lab is dropped.
    pub fn spawn_in(&mut self, ns: &str, args: &[&str], log: &str) -> u32 {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        let log = self.path(log);
        self.spawn(&full, &log)
    }

    /// Signals a child started by [`spawn_in`](Self::spawn_in) and waits for it.
    pub fn stop_child(&mut self, pid: u32, sig: &str) {
        must(&["kill", &format!("-{sig}"), &pid.to_string()]);
        if let Some(c) = self.children.iter_mut().find(|c| c.id() == pid) {
            wait_exit(c, Duration::from_secs(15));
        }
    }

    /// Loads the project's ruleset (as `exfilmon nft --apply` renders it) inside.
    pub fn load_ruleset(&self, config: &Path) {
        let out = self.inside(&[EXFILMON, "nft", "--apply", "--config", config.to_str().unwrap()]);
        assert!(out.status.success(), "nft --apply: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts `exfilmon run` inside and waits until it has bound its group.
    pub fn start_monitor(&self, config: &Path, db: &Path, log: &str) -> Monitor {
        self.start_monitor_with(config, db, log, &[])
    }

    /// [`Lab::start_monitor`] with further arguments to `exfilmon run`.
    pub fn start_monitor_with(&self, config: &Path, db: &Path, log: &str, extra: &[&std::ffi::OsStr]) -> Monitor {
        self.start_monitor_under(&[], config, db, log, extra)
    }

    /// [`start_monitor_with`](Self::start_monitor_with), started through `wrapper` (a command
    /// that runs its last arguments: `setpriv ...` to run it as another user with chosen
    /// capabilities).
    pub fn start_monitor_under(
        &self,
        wrapper: &[&str],
        config: &Path,
        db: &Path,
        log: &str,
        extra: &[&std::ffi::OsStr],
    ) -> Monitor {
        let log = self.path(log);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.inside])
            .args(wrapper)
            .args([EXFILMON, "run", "--config"])
            .arg(config)
            .arg("--db")
            .arg(db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let m = Monitor { child, log };
        wait_for(Duration::from_secs(10), "the monitor to bind its group", || {
            fs::read_to_string(&m.log).unwrap_or_default().contains("monitoring NFLOG group")
        });
        m
    }

    /// sshd in the outside namespace, key auth for the test users; returns `ssh` options.
    pub fn start_sshd(&mut self) -> Vec<String> {
        fs::create_dir_all("/run/sshd").unwrap();
        let host_key = self.path("hostkey");
        must(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key.to_str().unwrap()]);
        let keys = self.path("keys");
        fs::create_dir_all(&keys).unwrap();
        fs::set_permissions(&keys, fs::Permissions::from_mode(0o755)).unwrap();
        for u in USERS {
            let home = self.path(u);
            fs::create_dir_all(&home).unwrap();
            let id = home.join("id");
            must(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", id.to_str().unwrap()]);
            fs::copy(home.join("id.pub"), keys.join(u)).unwrap();
            must(&["chown", "-R", &format!("{u}:"), home.to_str().unwrap()]);
            fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).unwrap();
        }
        let recv = self.path("recv");
        fs::create_dir_all(&recv).unwrap();
        fs::set_permissions(&recv, fs::Permissions::from_mode(0o1777)).unwrap();
        let config = self.path("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress {peer}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {keys}/%u\nStrictModes no\n\
                 UsePAM no\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin no\nAllowUsers {users}\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
                peer = self.peer,
                hk = host_key.display(),
                pid = self.path("sshd.pid").display(),
                keys = keys.display(),
                users = USERS.join(" ")
            ),
        )
        .unwrap();
        let sshd = which("sshd").unwrap();
        let outside = self.outside.clone();
        self.spawn_in(&outside, &[sshd.to_str().unwrap(), "-D", "-e", "-f", config.to_str().unwrap()], "sshd.log");
        self.wait_listening("t", 22);
        [
            "BatchMode=yes",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "IdentitiesOnly=yes",
            "LogLevel=ERROR",
        ]
        .iter()
        .flat_map(|o| ["-o".to_string(), o.to_string()])
        .collect()
    }

    /// sshd in the monitored (inside) namespace with PAM as Debian ships it (pam_loginuid sets
    /// a session's login uid), key auth for `user`; returns the client's `ssh` arguments and
    /// `user@address` for a client in the outside namespace.
    pub fn start_sshd_inside(&mut self, user: &str) -> (Vec<String>, String) {
        let pam = fs::read_to_string("/etc/pam.d/sshd").unwrap_or_default();
        assert!(pam.lines().any(|l| l.trim_start().starts_with("session") && l.contains("pam_loginuid.so")), "{pam}");
        fs::create_dir_all("/run/sshd").unwrap();
        let dir = self.path("ssh-in");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let (host_key, client_key) = (dir.join("hostkey"), dir.join("id"));
        for k in [&host_key, &client_key] {
            must(&["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k.to_str().unwrap()]);
        }
        fs::copy(dir.join("id.pub"), dir.join(user)).unwrap();
        fs::set_permissions(dir.join(user), fs::Permissions::from_mode(0o644)).unwrap();
        let me = format!("{}.2", self.peer.rsplit_once('.').unwrap().0);
        let config = dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress {me}\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {keys}/%u\nStrictModes no\n\
                 UsePAM yes\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin no\nAllowUsers {user}\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
                hk = host_key.display(),
                pid = dir.join("sshd.pid").display(),
                keys = dir.display(),
            ),
        )
        .unwrap();
        let sshd = ["/usr/sbin/sshd", "/sbin/sshd"].into_iter().find(|p| Path::new(p).exists()).unwrap();
        let inside = self.inside.clone();
        self.spawn_in(&inside, &[sshd, "-D", "-e", "-f", config.to_str().unwrap()], "sshd-in.log");
        wait_for(Duration::from_secs(10), "sshd to listen inside", || {
            !self.inside(&["ss", "-Hltn", "sport = :22"]).stdout.is_empty()
        });
        let ssh = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            .into_iter()
            .chain(["-o", "LogLevel=ERROR", "-i", client_key.to_str().unwrap()])
            .map(String::from)
            .collect();
        (ssh, format!("{user}@{me}"))
    }

    /// A resolver in the outside namespace answering *.example.test and *.other.test.
    pub fn start_dns(&mut self) {
        let outside = self.outside.clone();
        let listen = format!("--listen-address={}", self.peer);
        let answer = format!("--address=/example.test/{}", self.peer);
        let other = format!("--address=/other.test/{}", self.peer);
        self.dnsmasq(&outside, &[&listen, &answer, &other], "dnsmasq");
        self.wait_listening("u", 53);
    }

    /// A caching resolver's stand-in inside (dnsmasq on 127.0.0.53, running as `nobody`, no
    /// cache) forwarding to [`start_dns`](Self::start_dns)'s: the upstream queries leave as
    /// `nobody`, the users' queries stay on loopback.
    pub fn start_local_resolver(&mut self) {
        let server = format!("--server={}", self.peer);
        let inside = self.inside.clone();
        self.dnsmasq(&inside, &["--listen-address=127.0.0.53", "--user=nobody", "--cache-size=0", &server], "resolver");
        wait_for(Duration::from_secs(10), "the local resolver", || {
            !must(&["ip", "netns", "exec", &inside, "ss", "-Hlnu", "sport = :53"]).trim().is_empty()
        });
    }

    /// dnsmasq in `ns` with only the options given (no config file, hosts or resolv.conf),
    /// logging to `<name>.log`.
    fn dnsmasq(&mut self, ns: &str, options: &[&str], name: &str) {
        let pid = format!("--pid-file={}", self.path(&format!("{name}.pid")).display());
        let mut args = vec!["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts"];
        args.extend(["--bind-interfaces", &pid, "--log-facility=-"]);
        args.extend_from_slice(options);
        self.spawn_in(ns, &args, &format!("{name}.log"));
    }

    /// Waits until something in the outside namespace listens on `port` (`proto` t or u).
    pub fn wait_listening(&self, proto: &str, port: u16) {
        let flag = format!("-Hln{proto}");
        let filter = format!("sport = :{port}");
        wait_for(Duration::from_secs(10), &format!("a listener on {proto}/{port}"), || {
            !must(&["ip", "netns", "exec", &self.outside, "ss", &flag, &filter]).trim().is_empty()
        });
    }

    /// `scp` of `file` as `user` to the peer's `recv/<user>.bin`, with the `ssh` options of
    /// [`start_sshd`](Self::start_sshd).
    pub fn scp(&self, ssh: &[String], user: &str, file: &Path) {
        self.scp_with(ssh, user, file, &[]);
    }

    /// [`Lab::scp`] with further options to scp (`-l KBIT` paces it, so the owner lookup
    /// names the process before the file is through).
    pub fn scp_with(&self, ssh: &[String], user: &str, file: &Path, options: &[&str]) {
        let key = self.path(user).join("id");
        let dest = format!("{user}@{}:{}", self.peer, self.path("recv").join(format!("{user}.bin")).display());
        let mut args = vec!["scp", "-q"];
        args.extend_from_slice(options);
        args.extend(ssh.iter().map(String::as_str));
        args.extend(["-i", key.to_str().unwrap(), file.to_str().unwrap(), &dest]);
        self.as_user(user, &args);
    }

    /// From the outside namespace, `scp` of `from` (`user@address:path`, see
    /// [`start_sshd_inside`](Self::start_sshd_inside)) to `to`: a pull over ssh.
    pub fn pull(&self, ssh: &[String], from: &str, to: &Path) {
        let mut args = vec!["ip", "netns", "exec", &self.outside, "scp", "-q"];
        args.extend(ssh.iter().map(String::as_str));
        args.extend([from, to.to_str().unwrap()]);
        must(&args);
    }

    /// `ssh <peer> true` as `user`.
    pub fn ssh_true(&self, ssh: &[String], user: &str) {
        let key = self.path(user).join("id");
        let host = format!("{user}@{}", self.peer);
        let mut args = vec!["ssh"];
        args.extend(ssh.iter().map(String::as_str));
        args.extend(["-i", key.to_str().unwrap(), &host, "true"]);
        self.as_user(user, &args);
    }

    /// A file of `bytes` pseudo-random bytes owned by `user`, in the user's directory.
    pub fn secret(&self, user: &str, bytes: usize) -> PathBuf {
        let path = self.path(user).join("secret.bin");
        let mut data = vec![0u8; bytes];
        fs::File::open("/dev/urandom").unwrap().read_exact(&mut data).unwrap();
        fs::write(&path, data).unwrap();
        must(&["chown", &format!("{user}:"), path.to_str().unwrap()]);
        path
    }

    /// Sum of the packets counted by every logging rule of the table, per `nft -j`.
    pub fn logged_by_ruleset(&self, table: &str) -> u64 {
        let out = self.inside(&["nft", "-j", "list", "table", "inet", table]);
        assert!(out.status.success(), "nft list: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| item["rule"]["expr"].as_array())
            .filter(|expr| expr.iter().any(|e| e.get("log").is_some()))
            .flat_map(|expr| expr.iter().filter_map(|e| e["counter"]["packets"].as_u64()))
            .sum()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = exec(&["ip", "netns", "del", &self.inside]);
        let _ = exec(&["ip", "netns", "del", &self.outside]);
    }
}

impl Monitor {
    pub fn signal(&self, sig: &str) {
        must(&["kill", &format!("-{sig}"), &self.child.id().to_string()]);
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then the exit status and the log.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let status = wait_exit(&mut self.child, Duration::from_secs(15));
        (status, fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(start.elapsed() < limit, "process {} did not exit within {limit:?}", child.id());
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}
