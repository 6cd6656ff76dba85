//! Exact socket lookups over NETLINK_SOCK_DIAG: a flow's 4-tuple → the socket's state, uid
//! and inode (`include/uapi/linux/inet_diag.h`, `net/ipv4/inet_diag.c`, `udp_diag.c`).
//!
//! One `SOCK_DIAG_BY_FAMILY` request per flow, without `NLM_F_DUMP`, so the kernel looks the
//! socket up in its hash tables instead of walking them: it answers with one
//! `inet_diag_msg`, or an `NLMSG_ERROR` carrying ENOENT when no socket matches. Up to
//! [`BATCH`] requests go out in one datagram (the kernel handles each message of it in turn)
//! and the answers are matched back by sequence number.
//!
//! The structs are written out by hand with their byte layout: a header and two fixed-size
//! structs do not need a crate. Host byte order except the ports and addresses of
//! `inet_diag_sockid`, which are network order. [`parse_datagram`] checks every length before
//! reading and returns errors; no input makes it panic.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use netlink_sys::constants::NETLINK_SOCK_DIAG;
use netlink_sys::Socket;
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use super::FlowKey;

pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_HDR_LEN: usize = 16;
/// `struct inet_diag_req_v2`
pub const REQ_LEN: usize = 56;
/// `struct inet_diag_msg`
pub const MSG_LEN: usize = 72;
/// One request: header and body.
pub const REQUEST_LEN: usize = NLMSG_HDR_LEN + REQ_LEN;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// `INET_DIAG_NOCOOKIE`: match any socket cookie.
const NO_COOKIE: u32 = u32::MAX;
/// Requests sent in one datagram. Each answer is its own skb of about 1 KiB of receive
/// buffer (truesize), so a batch stays well inside the default 208 KiB.
pub const BATCH: usize = 64;
/// Answers to one batch must come within this; the kernel answers at once, so this only
/// bounds a wait that should not happen.
const RECV_TIMEOUT_MS: i64 = 1000;

/// TCP states as `inet_diag_msg.idiag_state` gives them (`include/net/tcp_states.h`).
pub mod state {
    pub const ESTABLISHED: u8 = 1;
    pub const SYN_SENT: u8 = 2;
    pub const SYN_RECV: u8 = 3;
    pub const FIN_WAIT1: u8 = 4;
    pub const FIN_WAIT2: u8 = 5;
    pub const TIME_WAIT: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const CLOSE_WAIT: u8 = 8;
    pub const LAST_ACK: u8 = 9;
    pub const LISTEN: u8 = 10;
    pub const CLOSING: u8 = 11;
    pub const NEW_SYN_RECV: u8 = 12;
}

/// What the kernel said about one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockInfo {
    pub family: u8,
    pub state: u8,
    /// The socket's local port (to check the answer is about the socket asked for).
    pub local_port: u16,
    pub uid: u32,
    /// The socket's inode; 0 when no file holds it (time-wait, request, orphaned, or not yet
    /// accepted sockets).
    pub inode: u64,
}

/// The answer to one request: the socket, or the kernel's errno (ENOENT: no such socket).
pub type Answer = Result<SockInfo, i32>;

/// Why a datagram could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("netlink message header cut short")]
    ShortHeader,
    #[error("netlink message length {0} outside the datagram")]
    BadLength(u32),
    #[error("inet_diag_msg cut short ({0} bytes)")]
    ShortBody(usize),
    #[error("NLMSG_ERROR cut short")]
    ShortError,
}

/// Appends one request for `key` with sequence number `seq` to `out`.
///
/// The kernel reads the 4-tuple in opposite orientations per protocol: for TCP
/// (`inet_diag_find_one_icsk`) `src`/`sport` are the socket's local end; for UDP
/// (`udp_dump_one`, "src and dst are swapped for historical reasons") they are the remote end.
pub fn encode_request(key: &FlowKey, seq: u32, out: &mut Vec<u8>) {
    let family = match (key.local.ip(), key.remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => AF_INET,
        _ => AF_INET6,
    };
    let (src, dst) = if key.proto == PROTO_UDP { (key.remote, key.local) } else { (key.local, key.remote) };
    // nlmsghdr: len, type, flags, seq, pid (0: the kernel fills ours in).
    out.extend_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext (no extras), pad, states (all).
    out.extend_from_slice(&[family, key.proto, 0, 0]);
    out.extend_from_slice(&u32::MAX.to_ne_bytes());
    // inet_diag_sockid: sport, dport, src[16], dst[16], if, cookie[2].
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&addr_bytes(src.ip(), family));
    out.extend_from_slice(&addr_bytes(dst.ip(), family));
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    out.extend_from_slice(&NO_COOKIE.to_ne_bytes());
}

/// An address as the 16 bytes of `idiag_src`/`idiag_dst`: IPv4 in the first four; for an
/// IPv6 request an IPv4 address is written v4-mapped (the kernel then looks in the IPv4 table).
fn addr_bytes(ip: IpAddr, family: u8) -> [u8; 16] {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(v4) if family == AF_INET => b[..4].copy_from_slice(&v4.octets()),
        IpAddr::V4(v4) => b = v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => b = v6.octets(),
    }
    b
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses an `inet_diag_msg` (the body of a SOCK_DIAG_BY_FAMILY answer; attributes after
/// it are ignored).
pub fn parse_diag_msg(body: &[u8]) -> Result<SockInfo, ParseError> {
    if body.len() < MSG_LEN {
        return Err(ParseError::ShortBody(body.len()));
    }
    let port = body.get(4..6).and_then(|p| p.try_into().ok()).map(u16::from_be_bytes);
    let (Some(uid), Some(inode), Some(local_port)) = (u32_at(body, 64), u32_at(body, 68), port) else {
        return Err(ParseError::ShortBody(body.len()));
    };
    Ok(SockInfo { family: body[0], state: body[1], local_port, uid, inode: u64::from(inode) })
}

/// Walks one received datagram, calling `f(seq, answer)` per answer. Acks (error 0) and
/// NLMSG_DONE are skipped; messages of other types are ignored. The first message that cannot
/// be framed ends the walk with an error (answers before it have been delivered).
pub fn parse_datagram(mut rest: &[u8], mut f: impl FnMut(u32, Answer)) -> Result<(), ParseError> {
    while !rest.is_empty() {
        let (Some(len), Some(kind), Some(seq)) = (u32_at(rest, 0), u16_at(rest, 4), u32_at(rest, 8)) else {
            return Err(ParseError::ShortHeader);
        };
        let n = len as usize;
        if n < NLMSG_HDR_LEN || n > rest.len() {
            return Err(ParseError::BadLength(len));
        }
        let body = &rest[NLMSG_HDR_LEN..n];
        match kind {
            SOCK_DIAG_BY_FAMILY => f(seq, Ok(parse_diag_msg(body)?)),
            NLMSG_ERROR => {
                let errno = u32_at(body, 0).ok_or(ParseError::ShortError)? as i32;
                if errno != 0 {
                    f(seq, Err(errno.saturating_neg()));
                }
            }
            // NLMSG_DONE, and anything else the kernel may add: nothing to answer.
            _ => {}
        }
        // Messages are 4-byte aligned; the last one may end the datagram unpadded.
        rest = rest.get(n.next_multiple_of(4)..).unwrap_or(&[]);
    }
    Ok(())
}

/// A NETLINK_SOCK_DIAG socket in the network namespace of the thread that opened it.
pub struct SockDiag {
    sock: Socket,
    seq: u32,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Datagrams that could not be parsed, answers whose port did not match the question.
    pub bad_answers: u64,
}

impl SockDiag {
    pub fn open() -> io::Result<SockDiag> {
        let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
        sock.bind_auto()?;
        sock.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        setsockopt(&sock.as_fd(), sockopt::ReceiveTimeout, &TimeVal::milliseconds(RECV_TIMEOUT_MS))
            .map_err(io::Error::from)?;
        Ok(SockDiag {
            sock,
            seq: 0,
            out: Vec::with_capacity(BATCH * REQUEST_LEN),
            buf: vec![0; 64 * 1024],
            bad_answers: 0,
        })
    }

    /// Asks about each key (TCP or UDP only), up to [`BATCH`] per datagram; `answers` gets
    /// one answer per key, in order. A batch the kernel does not answer in time, or whose
    /// answers were dropped on a full buffer, gets the errno of that failure.
    pub fn query(&mut self, keys: &[FlowKey], answers: &mut Vec<Answer>) {
        answers.clear();
        for chunk in keys.chunks(BATCH) {
            let base = answers.len();
            answers.extend(std::iter::repeat_n(Err(nix::errno::Errno::ETIMEDOUT as i32), chunk.len()));
            if let Err(e) = self.query_chunk(chunk, &mut answers[base..]) {
                let errno = e.raw_os_error().unwrap_or(nix::errno::Errno::EIO as i32);
                for a in &mut answers[base..] {
                    if *a == Err(nix::errno::Errno::ETIMEDOUT as i32) {
                        *a = Err(errno);
                    }
                }
            }
        }
    }

    fn query_chunk(&mut self, keys: &[FlowKey], answers: &mut [Answer]) -> io::Result<()> {
        // Sequence numbers of this chunk are first..first+len; a late answer to an earlier
        // chunk falls outside and is dropped.
        let first = self.seq.wrapping_add(1);
        self.seq = self.seq.wrapping_add(keys.len() as u32);
        self.out.clear();
        for (i, key) in keys.iter().enumerate() {
            encode_request(key, first.wrapping_add(i as u32), &mut self.out);
        }
        self.sock.send(&self.out, 0)?;
        let mut missing = keys.len();
        while missing > 0 {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n.min(self.buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let bad = &mut self.bad_answers;
            let parsed = parse_datagram(&self.buf[..n], |seq, answer| {
                let i = seq.wrapping_sub(first) as usize;
                let Some(slot) = answers.get_mut(i) else { return };
                let answer = match answer {
                    // The kernel answered about another socket than the one asked for.
                    Ok(info) if info.local_port != keys[i].local.port() => {
                        *bad += 1;
                        Err(nix::errno::Errno::EBADMSG as i32)
                    }
                    a => a,
                };
                if *slot == Err(nix::errno::Errno::ETIMEDOUT as i32) {
                    missing -= 1;
                }
                *slot = answer;
            });
            if parsed.is_err() {
                self.bad_answers += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    /// The address of an `idiag_src`/`idiag_dst` field.
    fn field_addr(b: [u8; 16], family: u8) -> IpAddr {
        if family == AF_INET {
            IpAddr::from([b[0], b[1], b[2], b[3]])
        } else {
            IpAddr::V6(Ipv6Addr::from(b))
        }
    }

    fn key(proto: u8, local: &str, remote: &str) -> FlowKey {
        FlowKey { proto, local: local.parse().unwrap(), remote: remote.parse().unwrap() }
    }

    /// The real kernel: a served connection's socket is found while it is open; once it is
    /// gone, the exact lookup of its 4-tuple answers with the listener on its port (which
    /// `worker::classify` therefore takes as gone).
    #[test]
    fn a_closed_connections_lookup_falls_back_to_the_listener() {
        use std::io::Read;
        let mut diag = SockDiag::open().expect("a sock_diag socket (any user may open one)");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut served, _) = listener.accept().unwrap();
        let flow =
            FlowKey { proto: PROTO_TCP, local: served.local_addr().unwrap(), remote: client.local_addr().unwrap() };
        let mut answers = Vec::new();
        diag.query(&[flow], &mut answers);
        assert!(matches!(answers[..], [Ok(SockInfo { state: state::ESTABLISHED, .. })]), "{answers:?}");
        // The client closes first, so the served end leaves no time-wait socket behind.
        drop(client);
        let _ = served.read(&mut [0; 1]);
        drop(served);
        std::thread::sleep(std::time::Duration::from_millis(50));
        diag.query(&[flow], &mut answers);
        assert!(matches!(answers[..], [Ok(SockInfo { state: state::LISTEN, .. })]), "{answers:?}");
    }

    #[test]
    fn tcp_request_bytes() {
        let mut b = Vec::new();
        encode_request(&key(PROTO_TCP, "10.0.0.2:40000", "192.0.2.7:443"), 0x0102_0304, &mut b);
        let mut want = Vec::new();
        want.extend_from_slice(&72u32.to_ne_bytes());
        want.extend_from_slice(&20u16.to_ne_bytes());
        want.extend_from_slice(&1u16.to_ne_bytes());
        want.extend_from_slice(&0x0102_0304u32.to_ne_bytes());
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&[2, 6, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]); // 40000, 443
        want.extend_from_slice(&[10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[192, 0, 2, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0; 4]);
        want.extend_from_slice(&[0xff; 8]);
        assert_eq!(b, want);
        assert_eq!(b.len(), REQUEST_LEN);
    }

    #[test]
    fn udp_request_names_the_remote_end_first() {
        let mut b = Vec::new();
        encode_request(&key(PROTO_UDP, "10.0.0.2:5353", "192.0.2.53:53"), 1, &mut b);
        assert_eq!(&b[16..20], &[2, 17, 0, 0]);
        assert_eq!(&b[24..28], &[0, 53, 0x14, 0xe9], "sport = remote 53, dport = local 5353");
        assert_eq!(&b[28..32], &[192, 0, 2, 53]);
        assert_eq!(&b[44..48], &[10, 0, 0, 2]);
    }

    #[test]
    fn ipv6_request_and_mixed_families() {
        let mut b = Vec::new();
        encode_request(&key(PROTO_TCP, "[2001:db8::2]:22", "[2001:db8::9]:50000"), 1, &mut b);
        assert_eq!(b[16], AF_INET6);
        assert_eq!(field_addr(b[28..44].try_into().unwrap(), AF_INET6), "2001:db8::2".parse::<IpAddr>().unwrap());
        let mut b = Vec::new();
        encode_request(&key(PROTO_TCP, "10.0.0.2:22", "[2001:db8::9]:50000"), 1, &mut b);
        assert_eq!(b[16], AF_INET6);
        assert_eq!(field_addr(b[28..44].try_into().unwrap(), AF_INET6), "::ffff:10.0.0.2".parse::<IpAddr>().unwrap());
    }

    /// An answer as the kernel sends it: header, inet_diag_msg, and one attribute after it.
    fn answer(seq: u32, state: u8, sport: u16, uid: u32, inode: u32) -> Vec<u8> {
        let mut body = vec![AF_INET, state, 0, 0];
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&443u16.to_be_bytes());
        body.extend_from_slice(&[0; 32]); // addresses
        body.extend_from_slice(&[0; 4]); // if
        body.extend_from_slice(&[0xaa; 8]); // cookie
        body.extend_from_slice(&[0; 12]); // expires, rqueue, wqueue
        body.extend_from_slice(&uid.to_ne_bytes());
        body.extend_from_slice(&inode.to_ne_bytes());
        assert_eq!(body.len(), MSG_LEN);
        body.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]); // INET_DIAG_SHUTDOWN-ish, 5 bytes + pad
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR_LEN + body.len() - 3) as u32).to_ne_bytes());
        m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend(body);
        m
    }

    fn error(seq: u32, errno: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&(-errno).to_ne_bytes());
        m.extend_from_slice(&[0; 16]); // the start of the request's header
        m
    }

    fn collect(d: &[u8]) -> (Vec<(u32, Answer)>, Result<(), ParseError>) {
        let mut got = Vec::new();
        let r = parse_datagram(d, |s, a| got.push((s, a)));
        (got, r)
    }

    #[test]
    fn answers_and_errors_in_one_datagram() {
        let mut d = answer(7, state::ESTABLISHED, 40000, 1001, 123_456);
        d.extend(error(8, 2));
        d.extend(error(9, 0)); // an ack: skipped
        let (got, r) = collect(&d);
        assert_eq!(r, Ok(()));
        assert_eq!(
            got,
            vec![
                (7, Ok(SockInfo { family: AF_INET, state: 1, local_port: 40000, uid: 1001, inode: 123_456 })),
                (8, Err(2)),
            ]
        );
    }

    #[test]
    fn hostile_datagrams_never_panic() {
        let good = answer(1, 1, 1, 0, 1);
        // Every truncation of a good answer.
        for cut in 0..good.len() {
            let _ = collect(&good[..cut]);
        }
        let (got, r) = collect(&good[..NLMSG_HDR_LEN + 10]);
        assert!(got.is_empty());
        assert_eq!(r, Err(ParseError::BadLength(good.len() as u32 - 3)));
        // A header whose length is below the header's own.
        let mut d = good.clone();
        d[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert_eq!(collect(&d).1, Err(ParseError::BadLength(4)));
        // A length that claims the whole address space.
        d[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(collect(&d).1, Err(ParseError::BadLength(u32::MAX)));
        // A framed answer with a body too short for inet_diag_msg.
        let mut d = good[..NLMSG_HDR_LEN + 20].to_vec();
        d[..4].copy_from_slice(&((NLMSG_HDR_LEN + 20) as u32).to_ne_bytes());
        assert_eq!(collect(&d).1, Err(ParseError::ShortBody(20)));
        // An error message without its errno.
        let mut e = error(1, 2)[..NLMSG_HDR_LEN + 2].to_vec();
        e[..4].copy_from_slice(&((NLMSG_HDR_LEN + 2) as u32).to_ne_bytes());
        assert_eq!(collect(&e).1, Err(ParseError::ShortError));
        assert_eq!(collect(&[1, 2, 3]).1, Err(ParseError::ShortHeader));
        assert_eq!(collect(&[]), (vec![], Ok(())));
        // Pseudo-random bytes.
        let mut x: u32 = 0x1234_5678;
        for len in 0..300 {
            let d: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = collect(&d);
        }
    }

    #[test]
    fn errno_of_int_min_does_not_overflow() {
        let mut e = error(3, 0);
        e[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert_eq!(collect(&e).0, vec![(3, Err(i32::MAX))]);
    }

    #[test]
    fn other_message_types_are_skipped() {
        let mut d = answer(1, 1, 1, 0, 1);
        d[4..6].copy_from_slice(&0x99u16.to_ne_bytes());
        d.extend(error(2, 2));
        assert_eq!(collect(&d), (vec![(2, Err(2))], Ok(())));
    }
}
