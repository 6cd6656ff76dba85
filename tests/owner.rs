//! Owner lookups (`source::owner`) on the real kernel: processes of the test users holding
//! TCP and UDP sockets, an sshd session whose socket is root's while its login user is the
//! test user, and sockets that are closed or never accepted by the time they are looked up.
//!
//! The lookups run in this test process: the thread that starts [`Owners`] enters the lab's
//! `inside` namespace (`setns`) just long enough to open the sock_diag socket there, which
//! keeps its namespace afterwards; /proc is the host's, which shows every process.
//!
//! Needs root and the lab's tools (see tests/common/lab.rs); otherwise each test skips with a
//! printed reason, and under CI=true a skip fails.
//!
//! Run: `sudo -E cargo test --test owner -- --nocapture`

mod common;

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::{wait_for, Lab, USERS};
use exfilmon::source::owner::{FlowKey, Lookup, OwnerConfig, Owners, Why};

const TCP: u8 = 6;
const UDP: u8 = 17;
/// The listener's port in `outside`.
const ECHO_PORT: u16 = 9100;

/// Starts [`Owners`] with its netlink socket in network namespace `ns`.
fn owners_in(ns: &str) -> Owners {
    use nix::sched::{setns, CloneFlags};
    let home = fs::File::open("/proc/thread-self/ns/net").unwrap();
    let target = fs::File::open(format!("/run/netns/{ns}")).unwrap();
    setns(&target, CloneFlags::CLONE_NEWNET).unwrap();
    let owners = Owners::start(&OwnerConfig::default());
    setns(&home, CloneFlags::CLONE_NEWNET).unwrap();
    owners.unwrap()
}

/// Asks about `key` and waits for the worker's answer.
fn lookup(owners: &mut Owners, key: FlowKey) -> Lookup {
    if let Some(l) = owners.ask(key) {
        return l;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answer = None;
    while answer.is_none() && Instant::now() < deadline {
        owners.poll_timeout(Duration::from_millis(100), |k, l| {
            if *k == key {
                answer = Some(l.clone());
            }
        });
    }
    answer.unwrap_or_else(|| panic!("no answer about {key:?} within 10 s"))
}

/// The inside end of the lab's veth (the peer is .1).
fn inside_addr(lab: &Lab) -> IpAddr {
    let (net, _) = lab.peer.rsplit_once('.').unwrap();
    format!("{net}.2").parse().unwrap()
}

fn peer(lab: &Lab) -> IpAddr {
    lab.peer.parse().unwrap()
}

/// Waits until `log` has a first line and returns its whitespace-separated fields.
fn first_line(log: &Path) -> Vec<String> {
    let mut line = String::new();
    wait_for(Duration::from_secs(15), &format!("a line in {}", log.display()), || {
        line = fs::read_to_string(log).unwrap_or_default().lines().next().unwrap_or("").to_string();
        !line.is_empty()
    });
    line.split_whitespace().map(str::to_string).collect()
}

/// A listener in `ns` on `addr:port` that reads each connection until EOF (`accept` false:
/// one that never accepts, so connections wait in its queue).
fn start_listener(lab: &mut Lab, ns: &str, addr: IpAddr, port: u16, accept: bool, log: &str) {
    let script = format!(
        "import socket, threading\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port}))\n\
         s.listen(64)\n\
         print('listening', flush=True)\n\
         def serve(c):\n    while c.recv(65536):\n        pass\n    c.close()\n\
         while {accept}:\n    c, _ = s.accept()\n    threading.Thread(target=serve, args=(c,), daemon=True).start()\n\
         threading.Event().wait()\n",
        accept = if accept { "True" } else { "False" }
    );
    let ns = ns.to_string();
    lab.spawn_in(&ns, &["/usr/bin/python3", "-c", &script], log);
    first_line(&lab.path(log));
}

/// A client that connects over TCP to the listener, sends one UDP datagram without
/// connecting, prints `pid tcp_port udp_port`, and holds both sockets.
fn client_script(peer: IpAddr) -> String {
    format!(
        "import os, socket, time\n\
         t = socket.create_connection(('{peer}', {ECHO_PORT}))\n\
         u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         u.sendto(b'x', ('{peer}', 9999))\n\
         print(os.getpid(), t.getsockname()[1], u.getsockname()[1], flush=True)\n\
         time.sleep(60)\n"
    )
}

fn loginuid_of(pid: &str) -> Option<u32> {
    fs::read_to_string(format!("/proc/{pid}/loginuid")).ok()?.trim().parse().ok().filter(|&u| u != u32::MAX)
}

#[test]
fn a_test_users_process_is_found_with_its_uid_and_login_uid() {
    let Some(mut lab) = Lab::new() else { return };
    let (inside, outside) = (lab.inside.clone(), lab.outside.clone());
    let (me, them) = (inside_addr(&lab), peer(&lab));
    start_listener(&mut lab, &outside, them, ECHO_PORT, true, "listener.log");
    let python = fs::canonicalize("/usr/bin/python3").unwrap();

    // (a) Run as the user from a root shell outside any login: no login uid of its own.
    let script = client_script(them);
    lab.spawn_in(&inside, &["runuser", "-u", USERS[0], "--", "/usr/bin/python3", "-c", &script], "a.log");
    let a = first_line(&lab.path("a.log"));
    // (b) Inside USERS[0]'s login (what pam_loginuid does), running as USERS[1]: `sudo -u`.
    let uid0 = Lab::uid(USERS[0]);
    let switch = format!(
        "echo {uid0} > /proc/self/loginuid && exec setpriv --reuid={u} --regid={u} --init-groups /usr/bin/python3 -c \"$0\"",
        u = USERS[1]
    );
    lab.spawn_in(&inside, &["sh", "-c", &switch, &script], "b.log");
    let b = first_line(&lab.path("b.log"));

    let mut owners = owners_in(&inside);
    for (fields, user, login) in [(&a, USERS[0], loginuid_of(&a[0])), (&b, USERS[1], Some(uid0))] {
        let pid: u32 = fields[0].parse().unwrap();
        let uid = Lab::uid(user);
        let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        for (proto, port) in [(TCP, &fields[1]), (UDP, &fields[2])] {
            let key =
                FlowKey::egress(proto, me, port.parse().unwrap(), them, if proto == TCP { ECHO_PORT } else { 9999 });
            let Lookup::Found(o) = lookup(&mut owners, key) else {
                panic!("{user} proto {proto}: {:?}", owners.ask(key));
            };
            eprintln!("{user} proto {proto}: {o:?}");
            assert_eq!(o.pid, pid);
            assert_eq!(o.comm, "python3");
            assert_eq!(Path::new(&o.exe), python);
            assert_eq!(o.uid, uid, "the socket's uid is the process's");
            assert_eq!(o.login_uid, login);
            assert_eq!(o.principal_uid(), login.unwrap_or(uid));
            assert!(cgroup.contains(&o.cgroup), "{cgroup:?} vs {:?}", o.cgroup);
        }
    }
    assert_eq!(loginuid_of(&b[0]), Some(uid0), "the login uid was set for (b)");
    // Asked again: from the cache.
    let key = FlowKey::egress(TCP, me, a[1].parse().unwrap(), them, ECHO_PORT);
    assert!(matches!(owners.ask(key), Some(Lookup::Found(_))));
    let s = owners.stats();
    eprintln!("{s:?}");
    assert_eq!((s.found, s.unknown_total(), s.cache_hits), (4, 0, 1));
    assert!(s.latency.count() == 4 && s.latency.max().unwrap() < Duration::from_secs(2));
}

#[test]
fn an_sshd_session_is_the_login_users_while_its_socket_is_roots() {
    let Some(mut lab) = Lab::new() else { return };
    let (inside, outside) = (lab.inside.clone(), lab.outside.clone());
    let me = inside_addr(&lab);
    let user = USERS[0];
    let (ssh, host) = lab.start_sshd_inside(user);
    // The client in the other namespace logs in and keeps the session open.
    let mut args = vec!["ssh"];
    args.extend(ssh.iter().map(String::as_str));
    args.extend([host.as_str(), "echo ready; sleep 30"]);
    lab.spawn_in(&outside, &args, "ssh.log");
    let ready = first_line(&lab.path("ssh.log"));
    assert_eq!(ready, ["ready"], "sshd: {}", fs::read_to_string(lab.path("sshd-in.log")).unwrap_or_default());
    let conns = String::from_utf8_lossy(&lab.inside(&["ss", "-Htn", "state", "established", "sport = :22"]).stdout)
        .into_owned();
    let remote: SocketAddr = conns.split_whitespace().nth(3).unwrap_or_else(|| panic!("{conns}")).parse().unwrap();
    let key = FlowKey::egress(TCP, me, 22, remote.ip(), remote.port());

    let mut owners = owners_in(&inside);
    let Lookup::Found(o) = lookup(&mut owners, key) else { panic!("{:?}", owners.ask(key)) };
    let cmdline = fs::read_to_string(format!("/proc/{}/cmdline", o.pid)).unwrap_or_default().replace('\0', " ");
    eprintln!("sshd session: {o:?}, cmdline {cmdline:?}");
    assert_eq!(o.comm, "sshd");
    assert!(o.exe.ends_with("sshd"), "{}", o.exe);
    assert_eq!(o.uid, 0, "sshd accepted the connection: the socket is root's (what NFLOG says)");
    assert_eq!(o.login_uid, Some(Lab::uid(user)), "pam_loginuid set the session's login uid");
    assert_eq!(o.principal_uid(), Lab::uid(user));
    assert!(cmdline.contains(user), "{cmdline}");
    // Whichever process holding the socket is named, the principal is the same: every holder
    // (ss -p lists them) runs in the session.
    let users = String::from_utf8_lossy(&lab.inside(&["ss", "-Htnp", "state", "established", "sport = :22"]).stdout)
        .into_owned();
    let holders: Vec<&str> =
        users.split("pid=").skip(1).map(|r| r.split(|c: char| !c.is_ascii_digit()).next().unwrap()).collect();
    eprintln!("holders: {users}");
    assert!(holders.contains(&o.pid.to_string().as_str()), "{users}");
    for pid in holders {
        assert_eq!(loginuid_of(pid), Some(Lab::uid(user)), "holder {pid}");
    }
}

#[test]
fn closed_and_unaccepted_sockets_are_unknown_with_their_reason() {
    let Some(mut lab) = Lab::new() else { return };
    let (inside, outside) = (lab.inside.clone(), lab.outside.clone());
    let (me, them) = (inside_addr(&lab), peer(&lab));
    start_listener(&mut lab, &outside, them, ECHO_PORT, true, "listener.log");
    // A listener inside that never accepts: the server end waits in its queue.
    start_listener(&mut lab, &inside, me, 9200, false, "lazy.log");

    // A connection closed (by the client, so it is left in TIME_WAIT) before the lookup.
    let closed = format!(
        "import socket\n\
         t = socket.create_connection(('{them}', {ECHO_PORT}))\n\
         port = t.getsockname()[1]\n\
         t.shutdown(socket.SHUT_WR)\n\
         t.recv(1)\n\
         t.close()\n\
         print(port, flush=True)\n"
    );
    let out = lab.as_user(USERS[0], &["/usr/bin/python3", "-c", &closed]);
    let closed_port: u16 = out.trim().parse().unwrap();
    // A connection from outside to the lazy listener, held open.
    let waiting = format!(
        "import socket, time\n\
         t = socket.create_connection(('{me}', 9200))\n\
         print(t.getsockname()[1], flush=True)\n\
         time.sleep(30)\n"
    );
    lab.spawn_in(&outside, &["/usr/bin/python3", "-c", &waiting], "waiting.log");
    let waiting_port: u16 = first_line(&lab.path("waiting.log"))[0].parse().unwrap();

    let mut owners = owners_in(&inside);
    let gone = lookup(&mut owners, FlowKey::egress(TCP, me, closed_port, them, ECHO_PORT));
    assert_eq!(gone, Lookup::Unknown(Why::TimeWait));
    let never = lookup(&mut owners, FlowKey::egress(TCP, me, 1, them, 2));
    assert_eq!(never, Lookup::Unknown(Why::SocketGone));
    let started = Instant::now();
    let queued = lookup(&mut owners, FlowKey::egress(TCP, me, 9200, them, waiting_port));
    assert_eq!(queued, Lookup::Unknown(Why::NotAccepted));
    assert!(started.elapsed() >= Duration::from_millis(1500), "retried first: {:?}", started.elapsed());
    let icmp = lookup(&mut owners, FlowKey::egress(1, me, 0, them, 0));
    assert_eq!(icmp, Lookup::Unknown(Why::Unsupported));

    let s = owners.stats();
    eprintln!("{s:?}");
    for why in [Why::TimeWait, Why::SocketGone, Why::NotAccepted, Why::Unsupported] {
        assert_eq!(s.unknown(why), 1, "{why}");
    }
    assert_eq!((s.found, s.unknown_total()), (0, 4));
    assert!(s.worker.retries >= 4, "{:?}", s.worker);
    let counters = s.counters();
    assert!(counters.contains(&("owner_unknown_time_wait", 1)), "{counters:?}");
}
