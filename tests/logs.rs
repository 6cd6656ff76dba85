//! Where exfilmon's own log and its syslog sink go (issue 14): colour only on a terminal, the
//! journal's native protocol (with priorities) when systemd connected stderr to it, and a
//! syslog sink a real rsyslogd (Debian's `rsyslog`) parses over a unix socket, UDP and TCP.

mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A config whose signing key is readable by others: loading it logs a warning.
fn warning_config(dir: &Scratch) -> PathBuf {
    let key = dir.path("trail");
    run_ok(&["keygen", "--out", key.to_str().unwrap()]);
    let key = dir.path("trail.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let config = dir.path("warn.toml");
    std::fs::write(&config, format!("[trail]\nsigning_key = {:?}\n", key.to_str().unwrap())).unwrap();
    config
}

#[test]
fn log_is_coloured_only_on_a_terminal() {
    let dir = Scratch::new();
    let config = warning_config(&dir);
    let args = |db: &str| {
        ["replay", "-c", config.to_str().unwrap(), "--db", db, fixture("raw.pcap").to_str().unwrap()].map(String::from)
    };

    let o = bin().args(args(&dir.path("a.db").to_string_lossy())).output().unwrap();
    let err = stderr(&o);
    assert!(err.contains("WARN") && err.contains("readable by others"), "{err}");
    assert!(!err.contains('\x1b'), "escape codes in a pipe: {err:?}");

    let size = nix::pty::Winsize { ws_row: 24, ws_col: 200, ws_xpixel: 0, ws_ypixel: 0 };
    let pty = nix::pty::openpty(&size, None).unwrap();
    let mut child = bin()
        .args(args(&dir.path("b.db").to_string_lossy()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::from(pty.slave))
        .spawn()
        .unwrap();
    let mut terminal = std::fs::File::from(pty.master);
    let (mut shown, mut buf) = (Vec::new(), [0; 4096]);
    while let Ok(n @ 1..) = terminal.read(&mut buf) {
        shown.extend_from_slice(&buf[..n]);
    }
    assert!(child.wait().unwrap().success());
    let shown = String::from_utf8_lossy(&shown);
    assert!(shown.contains("\x1b[33m WARN\x1b[0m"), "a terminal gets colour: {shown:?}");
}

/// With JOURNAL_STREAM naming stderr, log records go to the journal socket in its native
/// protocol with PRIORITY (warning: 4) and the identifier; without a journal, stderr as ever.
/// The journal is a socket of the test's, bind-mounted on /run/systemd/journal/socket in a
/// private mount namespace (root).
#[test]
fn under_systemd_the_log_goes_to_the_journal_with_priorities() {
    let dir = Scratch::new();
    let config = warning_config(&dir);
    let err_path = dir.path("stderr");
    let err = std::fs::File::create(&err_path).unwrap();
    let m = err.metadata().unwrap();
    let stream = format!("{}:{}", m.dev(), m.ino());
    let replay = |db: &str| -> Vec<String> {
        vec![
            EXFILMON.into(),
            "replay".into(),
            "-c".into(),
            config.to_string_lossy().into(),
            "--db".into(),
            db.into(),
            fixture("raw.pcap").to_string_lossy().into(),
        ]
    };

    // A JOURNAL_STREAM that is not stderr's (a child's redirected stderr) is ignored.
    let o =
        bin().args(&replay(&dir.path("a.db").to_string_lossy())[1..]).env("JOURNAL_STREAM", "1:2").output().unwrap();
    assert!(stderr(&o).contains("readable by others"), "{}", stderr(&o));

    if !nix::unistd::geteuid().is_root() || Command::new("unshare").arg("--version").output().is_err() {
        return skip("the journal test needs root and unshare (util-linux) for a private mount namespace");
    }
    let journal = dir.path("journal.socket");
    let sock = UnixDatagram::bind(&journal).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
         touch /run/systemd/journal/socket && mount --bind {} /run/systemd/journal/socket && exec \"$@\"",
        journal.display()
    );
    let status = Command::new("unshare")
        .args(["-m", "sh", "-c", &script, "sh"])
        .args(replay(&dir.path("b.db").to_string_lossy()))
        .env("JOURNAL_STREAM", &stream)
        .stderr(err)
        .status()
        .unwrap();
    assert!(status.success());
    let mut buf = vec![0; 65536];
    let mut records = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        if n > 0 {
            records.push(native_fields(&buf[..n]));
        }
        if records.iter().flatten().any(|(k, v)| k == "MESSAGE" && v.contains("readable by others")) {
            break;
        }
    }
    let record = records
        .iter()
        .find(|r| r.iter().any(|(k, v)| k == "MESSAGE" && v.starts_with("signing key")))
        .unwrap_or_else(|| panic!("{records:?}"));
    let field = |name: &str| record.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(field("PRIORITY"), Some("4"), "{record:?}");
    assert_eq!(field("SYSLOG_IDENTIFIER"), Some("exfilmon"), "{record:?}");
    let on_stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(!on_stderr.contains("readable by others"), "logged twice: {on_stderr}");
}

/// The journal's native protocol: `KEY=value\n`, or `KEY\n` then a 64-bit little-endian length,
/// the value and `\n`.
fn native_fields(mut b: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    while let Some(nl) = b.iter().position(|&c| c == b'\n') {
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            fields.push((String::from_utf8_lossy(&line[..eq]).into(), String::from_utf8_lossy(&line[eq + 1..]).into()));
            b = &b[nl + 1..];
        } else {
            let rest = &b[nl + 1..];
            let Some(len) = rest.get(..8).map(|l| u64::from_le_bytes(l.try_into().unwrap()) as usize) else { break };
            let Some(value) = rest.get(8..8 + len) else { break };
            fields.push((String::from_utf8_lossy(line).into(), String::from_utf8_lossy(value).into()));
            b = rest.get(8 + len + 1..).unwrap_or_default();
        }
    }
    fields
}

/// rsyslogd with a private config: a unix socket, a UDP and a TCP port on loopback, every
/// message written as `input|program|pid|msgid|severity|msg`.
struct Rsyslog {
    child: Child,
    out: PathBuf,
    socket: PathBuf,
    udp: u16,
    tcp: u16,
}

impl Rsyslog {
    fn start(dir: &Path) -> Option<Rsyslog> {
        let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"].into_iter().find(|p| Path::new(p).exists())?;
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (udp, tcp) = (free(), free());
        let (out, socket) = (dir.join("rsyslog.out"), dir.join("log.socket"));
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{dir}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{socket}\")\n\
                 module(load=\"imudp\")\ninput(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
                 module(load=\"imtcp\")\ninput(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")\n\
                 template(name=\"t\" type=\"string\" \
                   string=\"%inputname%|%programname%|%procid%|%msgid%|%syslogseverity-text%|%msg%\\n\")\n\
                 *.* action(type=\"omfile\" file=\"{out}\" template=\"t\")\n",
                dir = dir.display(),
                socket = socket.display(),
                out = out.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslog.err")).unwrap())
            .spawn()
            .unwrap();
        let r = Rsyslog { child, out, socket, udp, tcp };
        let start = Instant::now();
        while !(r.socket.exists() && std::net::TcpStream::connect(("127.0.0.1", tcp)).is_ok()) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "rsyslogd did not start: {}",
                std::fs::read_to_string(dir.join("rsyslog.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(r)
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out).unwrap_or_default().lines().map(String::from).collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rsyslog_parses_the_sink_over_unix_udp_and_tcp() {
    let dir = Scratch::new();
    let Some(rsyslog) = Rsyslog::start(dir.root()) else {
        return skip("rsyslogd is not installed (apt-get install rsyslog)");
    };
    let config = dir.path("sinks.toml");
    std::fs::write(
        &config,
        format!(
            "[[sink]]\nname = \"local\"\ntype = \"syslog\"\naddress = \"unix:{}\"\napp_name = \"exfil-unix\"\n\
             [[sink]]\nname = \"udp\"\ntype = \"syslog\"\naddress = \"udp:127.0.0.1:{}\"\napp_name = \"exfil-udp\"\n\
             [[sink]]\nname = \"tcp\"\ntype = \"syslog\"\naddress = \"tcp:127.0.0.1:{}\"\napp_name = \"exfil-tcp\"\n",
            rsyslog.socket.display(),
            rsyslog.udp,
            rsyslog.tcp
        ),
    )
    .unwrap();
    run_ok(&[
        "replay",
        "-c",
        config.to_str().unwrap(),
        "--db",
        &dir.db(),
        fixture("nflog-sample.pcap").to_str().unwrap(),
    ]);
    let start = Instant::now();
    let want = ["imuxsock", "imudp", "imtcp"];
    while !want.iter().all(|i| rsyslog.lines().iter().any(|l| l.starts_with(&format!("{i}|")))) {
        assert!(start.elapsed() < Duration::from_secs(20), "not every input got the alert: {:?}", rsyslog.lines());
        std::thread::sleep(Duration::from_millis(100));
    }
    for (input, program) in [("imuxsock", "exfil-unix"), ("imudp", "exfil-udp"), ("imtcp", "exfil-tcp")] {
        let line = rsyslog.lines().into_iter().find(|l| l.starts_with(&format!("{input}|"))).unwrap();
        let f: Vec<&str> = line.splitn(6, '|').collect();
        assert_eq!(f[1], program, "program name parsed from {input}: {line}");
        assert!(f[2].parse::<u32>().is_ok(), "pid parsed from {input}: {line}");
        assert_eq!(f[4], "warning", "a medium alert is a warning: {line}");
        let json: serde_json::Value = serde_json::from_str(f[5].trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(json["type"], "alert");
        assert_eq!(json["kind"], "volume");
        if input != "imuxsock" {
            assert_eq!(f[3], "alert", "RFC 5424 MSGID to a collector: {line}");
        }
    }
}
