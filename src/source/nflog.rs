//! The live source: an NFLOG group read over netlink.
//!
//! The socket binds one group, asks for whole packets (the rules' snaplen does the cutting),
//! the per-instance sequence flag, and the queue threshold and flush timeout of the config.
//! Each NFULNL_MSG_PACKET body goes to the pipeline unchanged as a [`LinkType::Nflog`] frame —
//! the same bytes `tcpdump -i nflog:N` writes to a capture file, so replay sees what we saw.
//!
//! Loss is measured, never guessed: a full receive buffer makes the kernel drop a whole batch
//! and the next `recv` fail with ENOBUFS (counted as an overrun), and the sequence numbers
//! then jump by the packets dropped (counted as lost). The kernel never sends a packet twice,
//! so `received + lost` is what the ruleset logged, up to the last packet received. Blind spot:
//! a packet the kernel cannot even allocate a batch buffer for (atomic allocation failure under
//! memory pressure) is dropped before it gets a sequence number; only the rule counters see it.
//!
//! Requests are built with `netlink-packet-netfilter`; received batches are walked in place
//! with `netlink-packet-core`'s checked header view, because the crate's owned message types
//! would copy every packet. Packets logged at the output hook carry no kernel timestamp:
//! each batch is stamped with its receipt time.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use netlink_packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP};
use netlink_packet_netfilter::nflog::{config_request, ConfigCmd, ConfigFlags, ConfigMode, ConfigNla, Timeout};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::constants::NETLINK_NETFILTER;
use netlink_sys::Socket;
use nix::errno::Errno;
use nix::sys::socket::{getsockopt, setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

use super::FrameSink;
use crate::decode::nflog;
use crate::decode::{Frame, LinkType};
use crate::units::de::{byte_size, duration};
use serde::{de, Deserialize, Deserializer};

/// `(NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET`
const NFLOG_PACKET: u16 = 4 << 8;
/// The kernel's largest batch buffer (`nfulnl_set_nlbufsiz`): fewer, fuller wakeups.
const KERNEL_BATCH: u32 = 131_072;
/// One recv holds a whole batch: up to KERNEL_BATCH, or one packet of up to 64 KiB plus headers
/// when a single packet is larger than the batch buffer.
const RECV_BUF: usize = 512 * 1024;
/// The reader wakes at least this often to flush, heartbeat and notice signals.
pub const TICK: Duration = Duration::from_millis(200);
/// Linux `CAP_NET_ADMIN`.
const CAP_NET_ADMIN: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum NflogError {
    #[error(
        "binding NFLOG group {group} needs CAP_NET_ADMIN: run as root or from the systemd unit (dist/exfilmon.service)"
    )]
    NotPermitted { group: u16 },
    #[error("NFLOG group {group} is already bound by another program{owner}; stop it, or log to another group ([nflog] group, then `exfilmon nft --apply`)")]
    GroupBusy { group: u16, owner: String },
    #[error("cannot open a netfilter netlink socket: {0}")]
    Socket(io::Error),
    #[error("the kernel refused the NFLOG configuration for group {group}: {source}")]
    Config { group: u16, source: io::Error },
    #[error("reading NFLOG group {group}: {source}")]
    Recv { group: u16, source: io::Error },
}

/// What the source counted. `records + lost` is what the ruleset logged.
#[derive(Debug, Default, Clone)]
pub struct SourceStats {
    /// NFLOG packet records received.
    pub records: u64,
    /// Records the kernel dropped, from gaps in the sequence numbers.
    pub lost: u64,
    /// recv() calls that failed with ENOBUFS: batches dropped on a full receive buffer.
    pub overruns: u64,
    /// Records without a sequence number (cannot be checked for gaps).
    pub unsequenced: u64,
    /// Sequence numbers that went backwards (instance re-created); counting restarted.
    pub seq_resets: u64,
    /// Netlink messages that were neither packets nor control messages, or were cut.
    pub bad_messages: u64,
    /// Receipt time of the last record, microseconds since the epoch.
    pub last_record_us: Option<i64>,
}

pub struct NflogSource {
    sock: Socket,
    group: u16,
    buf: Vec<u8>,
    seq: Sequence,
    request_seq: u32,
    pub stats: SourceStats,
}

/// What one [`NflogSource::poll`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// A batch arrived (this many records).
    Records(usize),
    /// Nothing within [`TICK`] (or a signal interrupted the wait).
    Idle,
    /// The receive buffer overflowed and the kernel dropped at least one batch.
    Overrun,
}

impl NflogSource {
    /// Opens a socket, sizes its receive buffer and binds `cfg.group`.
    pub fn open(cfg: &NflogConfig) -> Result<NflogSource, NflogError> {
        if !has_net_admin() {
            return Err(NflogError::NotPermitted { group: cfg.group });
        }
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(NflogError::Socket)?;
        sock.bind_auto().map_err(NflogError::Socket)?;
        setsockopt(&sock.as_fd(), sockopt::ReceiveTimeout, &TimeVal::milliseconds(TICK.as_millis() as i64))
            .map_err(|e| NflogError::Socket(e.into()))?;
        let mut src = NflogSource {
            sock,
            group: cfg.group,
            buf: vec![0; RECV_BUF],
            seq: Sequence::default(),
            request_seq: 0,
            stats: SourceStats::default(),
        };
        src.set_rcvbuf(cfg.rcvbuf);
        // One request binds and configures, so there is one ack to wait for.
        let mut nlas = vec![ConfigCmd::Bind.into()];
        nlas.extend(settings(cfg));
        src.request(nlas)?;
        src.await_ack().map_err(|e| match e.raw_os_error() {
            // Only the socket that bound a group may touch it; with CAP_NET_ADMIN held, EPERM
            // means another program got there first.
            Some(code) if code == Errno::EPERM as i32 || code == Errno::EBUSY as i32 => {
                NflogError::GroupBusy { group: cfg.group, owner: group_owner(cfg.group) }
            }
            _ => NflogError::Config { group: cfg.group, source: e },
        })?;
        Ok(src)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    /// Applies new batching settings and buffer size to the bound group (SIGHUP). The kernel's
    /// answer arrives among the packets and is logged by [`poll`](Self::poll) if it is an error.
    pub fn reconfigure(&mut self, cfg: &NflogConfig) -> Result<(), NflogError> {
        self.set_rcvbuf(cfg.rcvbuf);
        self.request(settings(cfg))
    }

    /// The receive buffer the kernel granted, in bytes (it doubles what is asked for).
    pub fn rcvbuf(&self) -> u64 {
        getsockopt(&self.sock.as_fd(), sockopt::RcvBuf).map_or(0, |n| n as u64)
    }

    fn set_rcvbuf(&self, bytes: u64) {
        let want = usize::try_from(bytes / 2).unwrap_or(usize::MAX >> 1).max(1);
        // SO_RCVBUFFORCE passes net.core.rmem_max; plain SO_RCVBUF is the fallback without it.
        if setsockopt(&self.sock.as_fd(), sockopt::RcvBufForce, &want).is_err() {
            let _ = setsockopt(&self.sock.as_fd(), sockopt::RcvBuf, &want);
            tracing::warn!(
                "could not force the receive buffer to {bytes} bytes; got {} (net.core.rmem_max caps it)",
                self.rcvbuf()
            );
        }
    }

    fn request(&mut self, nlas: Vec<ConfigNla>) -> Result<(), NflogError> {
        let mut msg = config_request(NetfilterProtoFamily::Unspec, self.group, nlas);
        self.request_seq += 1;
        msg.header.sequence_number = self.request_seq;
        let mut bytes = vec![0; msg.buffer_len()];
        msg.serialize(&mut bytes);
        self.sock.send(&bytes, 0).map_err(|source| NflogError::Config { group: self.group, source })?;
        Ok(())
    }

    /// Waits for the answer to the last request. Nothing is bound before the first answer,
    /// so no packet can be missed here; if one came anyway it would show as a sequence gap.
    fn await_ack(&mut self) -> io::Result<()> {
        for _ in 0..50 {
            let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => n.min(self.buf.len()),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                Err(e) => return Err(e),
            };
            let mut rest = &self.buf[..n];
            while let Ok(msg) = NetlinkBuffer::new_checked(rest) {
                if msg.message_type() == NLMSG_ERROR && msg.sequence_number() == self.request_seq {
                    return ack_result(&rest[..msg.length() as usize]);
                }
                rest = rest.get(align(msg.length())..).unwrap_or(&[]);
            }
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no answer from the kernel within 10 s"))
    }

    /// Receives one batch (waiting at most [`TICK`]) and hands its packets to `sink`, each
    /// stamped with the receipt time.
    pub fn poll(&mut self, sink: &mut impl FrameSink) -> Result<Poll, NflogError> {
        let n = match self.sock.recv(&mut &mut self.buf[..], 0) {
            Ok(n) => n.min(self.buf.len()),
            Err(e) => {
                return match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
                    Errno::ENOBUFS => {
                        self.stats.overruns += 1;
                        Ok(Poll::Overrun)
                    }
                    Errno::EAGAIN | Errno::EINTR => Ok(Poll::Idle),
                    _ => Err(NflogError::Recv { group: self.group, source: e }),
                };
            }
        };
        let ts_us = crate::units::wall_clock_us();
        let records = read_datagram(&self.buf[..n], ts_us, self.group, &mut self.seq, &mut self.stats, sink);
        Ok(Poll::Records(records))
    }
}

/// Hands the NFLOG packet records of one netlink datagram to `sink`, each stamped `ts_us`, and
/// counts them; returns how many. A message that cannot be framed ends the datagram (counted
/// in `bad_messages`). Public for the fuzz target: no panic on any bytes.
pub fn read_datagram(
    datagram: &[u8],
    ts_us: i64,
    group: u16,
    seq: &mut Sequence,
    stats: &mut SourceStats,
    sink: &mut impl FrameSink,
) -> usize {
    let mut records = 0;
    let mut rest = datagram;
    while !rest.is_empty() {
        let Ok(msg) = NetlinkBuffer::new_checked(rest) else {
            stats.bad_messages += 1;
            break;
        };
        let whole = &rest[..msg.length() as usize];
        match msg.message_type() {
            NFLOG_PACKET => {
                let body = msg.payload();
                seq.observe(nflog::parse(body).ok().and_then(|r| r.seq), stats);
                sink.frame(Frame { ts_us, link: LinkType::Nflog, data: body });
                records += 1;
            }
            NLMSG_DONE | NLMSG_NOOP => {}
            NLMSG_ERROR => {
                if let Err(e) = ack_result(whole) {
                    tracing::warn!("the kernel refused an NFLOG setting for group {group}: {e}");
                }
            }
            _ => stats.bad_messages += 1,
        }
        rest = rest.get(align(msg.length())..).unwrap_or(&[]);
    }
    if records > 0 {
        stats.records += records as u64;
        stats.last_record_us = Some(ts_us);
    }
    records
}

/// Gap counting over the per-instance sequence numbers, which start at 0 when we bind.
#[derive(Debug, Default)]
pub struct Sequence {
    next: u32,
}

impl Sequence {
    fn observe(&mut self, seq: Option<u32>, stats: &mut SourceStats) {
        let Some(seq) = seq else {
            stats.unsequenced += 1;
            return;
        };
        let gap = seq.wrapping_sub(self.next);
        if gap < 1 << 31 {
            stats.lost += u64::from(gap);
        } else {
            stats.seq_resets += 1;
        }
        self.next = seq.wrapping_add(1);
    }
}

/// Copy whole packets, sequence numbers on, and the config's batching.
fn settings(cfg: &NflogConfig) -> Vec<ConfigNla> {
    vec![
        ConfigMode::new_packet(0xffff).into(),
        ConfigNla::QThresh(u32::from(cfg.queue_threshold)),
        Timeout::from(cfg.timeout).into(),
        ConfigNla::NlBufSiz(KERNEL_BATCH),
        ConfigFlags::SEQ.into(),
    ]
}

fn align(len: u32) -> usize {
    (len as usize + 3) & !3
}

/// The errno of an NLMSG_ERROR message (0 is an ack).
fn ack_result(bytes: &[u8]) -> io::Result<()> {
    match NetlinkMessage::<NetfilterMessage>::deserialize(bytes) {
        Ok(NetlinkMessage { payload: NetlinkPayload::Error(e), .. }) => match e.code {
            None => Ok(()),
            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
        },
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "unreadable answer from the kernel")),
    }
}

/// CAP_NET_ADMIN in the effective set (assumed when unreadable).
fn has_net_admin() -> bool {
    super::effective_capabilities().is_none_or(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Names the program holding `group`, from `/proc/net/netfilter/nfnetlink_log` (group and
/// netlink port id per line); a process's first netlink socket has its pid as port id.
fn group_owner(group: u16) -> String {
    let Ok(table) = std::fs::read_to_string("/proc/net/netfilter/nfnetlink_log") else {
        return String::new();
    };
    let port = table.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        (f.next()?.parse::<u16>().ok()? == group).then(|| f.next()?.parse::<u32>().ok())?
    });
    match port {
        Some(port) => match std::fs::read_to_string(format!("/proc/{port}/comm")) {
            Ok(comm) => format!(" ({}, pid {port})", crate::escape::printable(comm.trim())),
            Err(_) => format!(" (netlink port {port})"),
        },
        None => String::new(),
    }
}

/// `[nflog]`: the NFLOG group the ruleset logs to and how the kernel batches it to us.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NflogConfig {
    pub group: u16,
    /// Socket receive buffer (SO_RCVBUFFORCE); what absorbs bursts while the reader is busy.
    #[serde(deserialize_with = "rcvbuf")]
    pub rcvbuf: u64,
    /// Bytes of non-DNS packets copied to us: IP and transport headers are enough to count.
    #[serde(deserialize_with = "snaplen")]
    pub snaplen: u16,
    /// Bytes of ICMP and ICMPv6 packets copied to us (connections we open: echo requests):
    /// enough echo payload for the ICMP detector to judge. Ordinary pings are 84 bytes and
    /// cost nothing more; only large echoes, tunnels' among them, do. 1500 sees a whole
    /// Ethernet-MTU echo.
    #[serde(deserialize_with = "snaplen")]
    pub icmp_snaplen: u16,
    /// Bytes of TLS handshake records on TCP connections we open (the ruleset matches a
    /// payload starting 0x16 0x03): the ClientHello's server name names the destination.
    /// Hellos with large key shares are near 2 KB.
    #[serde(deserialize_with = "snaplen")]
    pub hello_snaplen: u16,
    /// Packets the kernel batches into one message before sending it.
    #[serde(deserialize_with = "queue_threshold")]
    pub queue_threshold: u16,
    /// Longest a partial batch waits in the kernel (10 ms resolution).
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
}

impl Default for NflogConfig {
    fn default() -> Self {
        NflogConfig {
            group: 7,
            rcvbuf: 16 << 20,
            snaplen: 128,
            icmp_snaplen: 1500,
            hello_snaplen: 2048,
            queue_threshold: 64,
            timeout: Duration::from_millis(100),
        }
    }
}

/// The kernel takes the buffer size as an int and doubles it; beyond 1 GiB is a typo.
fn rcvbuf<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = byte_size(d)?;
    if n > 1 << 30 {
        return Err(de::Error::custom("rcvbuf above 1GiB; a few MiB to a few hundred MiB is plenty"));
    }
    Ok(n)
}

/// IPv4 + TCP headers with options need 60 + 60 bytes; below 40 not even ports are seen.
fn snaplen<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match u16::deserialize(d)? {
        n @ 40.. => Ok(n),
        n => Err(de::Error::custom(format!(
            "snaplen {n} is too small to see IP and ports; use at least 40 (default 128)"
        ))),
    }
}

fn queue_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match u16::deserialize(d)? {
        0 => Err(de::Error::custom("queue_threshold must be at least 1")),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_gaps_count_lost_records() {
        let (mut seq, mut stats) = (Sequence::default(), SourceStats::default());
        for n in [0, 1, 2, 10, 11, 11, 12] {
            seq.observe(Some(n), &mut stats);
        }
        // 3..=9 missing; the repeated 11 looks like a restart.
        assert_eq!((stats.lost, stats.seq_resets), (7, 1));
        seq.observe(None, &mut stats);
        assert_eq!(stats.unsequenced, 1);
        seq.next = u32::MAX;
        seq.observe(Some(1), &mut stats);
        assert_eq!(stats.lost, 9, "wraps around");
    }
}
