//! Writes a deterministic mixed capture that looks like a busy server's egress, for the replay
//! benchmark (`benches/replay.sh`) and memory measurements.
//!
//! ```sh
//! cargo run --release --example gen_capture -- --packets 1000000 --out target/bench/mixed.pcap
//! ```
//!
//! The default output is LINKTYPE_NFLOG (239) records laid out as `tcpdump -i nflog:7` writes
//! them from `nft/exfilmon.nft`: PACKET_HDR, PREFIX, IFINDEX_OUTDEV, UID, GID, PAYLOAD, with
//! the payload cut to 128 bytes except DNS, which is logged whole. Kernel-made packets carry no
//! UID/GID. `--link raw` writes the same IP packets as LINKTYPE_RAW (101) instead.
//!
//! The mix: a web server answering clients (TSO-size TCP responses), root's backup over ssh,
//! postgres replication to a standby, two users on ssh/https, DNS queries (real wire format,
//! names under a few domains), ICMP echo, a share of IPv6. Like the ruleset, records of
//! connections a remote peer opened (web answers, the replication the standby asked for) carry
//! the prefix `srv`, the rest `out`. Same arguments, same bytes: the generator uses its
//! own seeded PRNG. It depends on nothing in exfilmon, so the benchmark input cannot follow a
//! bug in the code it measures.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

#[derive(Debug, Parser)]
#[command(about = "Write a deterministic mixed egress capture for benchmarks")]
struct Args {
    /// Packets to write.
    #[arg(long, default_value_t = 1_000_000)]
    packets: u64,
    /// Output capture file.
    #[arg(long)]
    out: PathBuf,
    /// Link type of the records.
    #[arg(long, value_enum, default_value_t = Link::Nflog)]
    link: Link,
    /// Send every non-DNS packet to the next of N distinct destinations (cycling), to measure
    /// memory per destination. 0: the ordinary mix of a few thousand destinations.
    #[arg(long, default_value_t = 0)]
    unique_dsts: u64,
    /// Make every DNS query name the next of N distinct names (cycling). 0: the ordinary mix.
    #[arg(long, default_value_t = 0)]
    unique_names: u64,
    /// Percentage of packets that are DNS queries.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(0..=100))]
    dns_percent: u64,
    /// PRNG seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean packets per second of packet time: with fewer, the same packets span longer (a
    /// month of egress for report sizes: `--rate 10 --packets 25920000`). The default 1000
    /// writes the same bytes as before this option existed.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=500_000))]
    rate: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Link {
    Nflog,
    Raw,
}

/// NFLOG rule snaplen for everything but DNS (see nft/exfilmon.nft).
const SNAPLEN: usize = 128;
/// 2023-11-14T22:13:20Z.
const START_US: u64 = 1_700_000_000_000_000;
const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const RESOLVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const RESOLVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
/// Web clients the server answers, each an address and an ephemeral port.
const CLIENTS: u64 = 5_000;
/// TCP MSS with timestamps on a 1500-byte MTU.
const MSS: u32 = 1448;

fn main() -> Result<()> {
    let args = Args::parse();
    let file = File::create(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let linktype: u32 = match args.link {
        Link::Nflog => 239,
        Link::Raw => 101,
    };
    // pcap header: magic, version 2.4, thiszone, sigfigs, snaplen, link type.
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&262_144u32.to_le_bytes());
    header.extend_from_slice(&linktype.to_le_bytes());
    out.write_all(&header)?;

    let mut g = Generator::new(&args);
    let mut ip = Vec::with_capacity(2048);
    let mut record = Vec::with_capacity(2048);
    let mut bytes = 0u64;
    for _ in 0..args.packets {
        ip.clear();
        let p = g.next_packet(&mut ip);
        let data: &[u8] = match args.link {
            Link::Raw => &ip,
            Link::Nflog => {
                nflog_record(&mut record, &p, &ip);
                &record
            }
        };
        let len = data.len() as u32;
        let ts_us = g.ts_us;
        out.write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
        out.write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(data)?;
        bytes += u64::from(p.wire_len);
    }
    out.flush().with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!(
        "gen_capture: wrote {} packets ({} bytes on the wire, {:.0} s of packet time) to {}",
        args.packets,
        bytes,
        (g.ts_us - START_US) as f64 / 1e6,
        args.out.display()
    );
    Ok(())
}

/// What the NFLOG record says about a packet besides its bytes.
struct Meta {
    uid: Option<u32>,
    /// A reply on a connection the remote end opened.
    served: bool,
    v6: bool,
    wire_len: u32,
}

/// `nfgenmsg` then TLVs {len u16, type u16} in host order, values big-endian, padded to 4.
fn nflog_record(out: &mut Vec<u8>, p: &Meta, ip: &[u8]) {
    fn tlv(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        out.extend_from_slice(&((value.len() + 4) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out.clear();
    out.extend_from_slice(&[if p.v6 { 10 } else { 2 }, 0, 0, 7]);
    let ethertype: u16 = if p.v6 { 0x86dd } else { 0x0800 };
    let [e0, e1] = ethertype.to_be_bytes();
    tlv(out, 1, &[e0, e1, 3, 0]); // PACKET_HDR: hw protocol, hook NF_INET_LOCAL_OUT
    tlv(out, 10, if p.served { b"srv\0" } else { b"out\0" }); // PREFIX
    tlv(out, 5, &2u32.to_be_bytes()); // IFINDEX_OUTDEV
    if let Some(uid) = p.uid {
        tlv(out, 11, &uid.to_be_bytes()); // UID
        tlv(out, 14, &uid.to_be_bytes()); // GID: each service user has its own group
    }
    tlv(out, 9, ip); // PAYLOAD
}

/// xorshift64* seeded through SplitMix64: fast, deterministic, good enough for traffic shapes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(mix(seed).max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Index in `0..n` skewed towards 0, as popularity is.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        let b = self.below(n);
        a * b / n
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// SplitMix64's finaliser: a bijection on u64, so distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Who sends what: weight (per mille of non-DNS packets), uid, and the traffic shape.
#[derive(Clone, Copy)]
enum Shape {
    /// www-data answering web clients: responses of all sizes to many client ports.
    WebReplies,
    /// Long bulk transfer to one peer (backup over ssh, replication).
    Bulk { peer: u8, port: u16 },
    /// Interactive users: ssh and https to a few dozen places.
    User,
    /// ICMP echo requests.
    Ping,
}

/// (weight, uid, shape, served: the remote end opened the connection).
const PROFILES: &[(u64, Option<u32>, Shape, bool)] = &[
    (560, Some(33), Shape::WebReplies, true),
    (150, Some(0), Shape::Bulk { peer: 10, port: 22 }, false),
    // The standby connected to us: WAL leaves from port 5432 to its port.
    (120, Some(998), Shape::Bulk { peer: 12, port: 5432 }, true),
    (60, Some(1000), Shape::User, false),
    (40, Some(1001), Shape::User, false),
    (40, None, Shape::WebReplies, true), // kernel-made: final ACKs and RSTs of closed sockets
    (30, Some(0), Shape::Ping, false),
];

/// Names the server looks up: (weight, suffix). Some get a random first label.
const DOMAINS: &[(u64, &str)] = &[
    (30, "example.com"),
    (20, "deb.debian.org"),
    (15, "api.github.com"),
    (15, "cdn.example.net"),
    (10, "in-addr.arpa"),
    (10, "s3.amazonaws.com"),
];

/// Distinct random-looking host labels per domain in the ordinary mix.
const HOSTS_PER_DOMAIN: u64 = 24;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

struct Generator {
    rng: Rng,
    ts_us: u64,
    unique_dsts: u64,
    unique_names: u64,
    dns_percent: u64,
    /// Twice the mean gap between packets, µs.
    gap_span_us: u64,
    next_dst: u64,
    next_name: u64,
    name: Vec<u8>,
}

impl Generator {
    fn new(args: &Args) -> Generator {
        Generator {
            rng: Rng::new(args.seed),
            ts_us: START_US,
            unique_dsts: args.unique_dsts,
            unique_names: args.unique_names,
            dns_percent: args.dns_percent,
            gap_span_us: 2_000_000 / args.rate,
            next_dst: 0,
            next_name: 0,
            name: Vec::with_capacity(256),
        }
    }

    /// Appends the next packet (as captured) to `ip` and says who sent it.
    fn next_packet(&mut self, ip: &mut Vec<u8>) -> Meta {
        // About --rate packets per second of packet time (1,000: a million span ~17 minutes).
        self.ts_us += self.rng.below(self.gap_span_us);
        if self.rng.percent(self.dns_percent) {
            return self.dns(ip);
        }
        let mut pick = self.rng.below(PROFILES.iter().map(|p| p.0).sum());
        let &(_, uid, shape, served) = PROFILES
            .iter()
            .find(|p| {
                let hit = pick < p.0;
                pick = pick.saturating_sub(p.0);
                hit
            })
            .unwrap_or(&PROFILES[0]);
        let v6 = self.rng.percent(15);
        let (mut dst, dport, len) = match shape {
            Shape::WebReplies => {
                let client = self.rng.skewed(CLIENTS);
                (client_addr(client, v6), 32_768 + (mix(client) % 28_000) as u16, self.tcp_len())
            }
            Shape::Bulk { peer, port } => {
                let len = if self.rng.percent(90) { self.tso_len() } else { 52 };
                (peer_addr(peer, v6), port, len)
            }
            Shape::User => {
                let place = self.rng.skewed(40);
                let port = if place % 3 == 0 { 22 } else { 443 };
                (client_addr(100_000 + place, v6), port, self.tcp_len())
            }
            Shape::Ping => (client_addr(200_000 + self.rng.below(8), v6), 0, 0),
        };
        if self.unique_dsts > 0 {
            dst = unique_addr(self.next_dst % self.unique_dsts);
            self.next_dst += 1;
        }
        let src = if dst.is_ipv4() { IpAddr::V4(SERVER_V4) } else { IpAddr::V6(SERVER_V6) };
        match shape {
            Shape::Ping => {
                // Linux ping: 8-byte timestamp then the pattern 0x10.. up to 56 bytes.
                let mut payload = [0u8; 56];
                payload[..8].copy_from_slice(&self.ts_us.to_be_bytes());
                for (i, b) in payload.iter_mut().enumerate().skip(8) {
                    *b = i as u8;
                }
                let seq = self.rng.below(1 << 16) as u16;
                let mut icmp = vec![if dst.is_ipv4() { 8 } else { 128 }, 0, 0, 0, 0x12, 0x34];
                icmp.extend_from_slice(&seq.to_be_bytes());
                icmp.extend_from_slice(&payload);
                ip_packet(ip, src, dst, if dst.is_ipv4() { 1 } else { 58 }, &icmp, icmp.len() as u32);
            }
            _ => {
                let ephemeral = 40_000 + self.rng.below(20_000) as u16;
                let (sport, dport) = match shape {
                    Shape::WebReplies => (443, dport),
                    // One connection, which the peer opened from one port of its own.
                    Shape::Bulk { peer, port } if served => (port, 40_000 + u16::from(peer)),
                    _ => (ephemeral, dport),
                };
                // `len` counts a 20-byte IP header; the TCP segment is the rest.
                let seg_len = len - 20;
                let seg = self.tcp_segment(sport, dport);
                ip_packet(ip, src, dst, 6, &seg[..seg.len().min(seg_len as usize)], seg_len);
            }
        }
        let wire_len = ip_wire_len(ip);
        ip.truncate(SNAPLEN);
        Meta { uid, served, v6: dst.is_ipv6(), wire_len }
    }

    /// A DNS query, captured whole.
    fn dns(&mut self, ip: &mut Vec<u8>) -> Meta {
        let uid = [Some(33), Some(1000), Some(0), Some(1001), Some(101)][self.rng.skewed(5) as usize];
        let v6 = self.rng.percent(15);
        self.query_name();
        let qtype: u16 = match self.rng.below(10) {
            0..=5 => 1,  // A
            6..=8 => 28, // AAAA
            _ => 16,     // TXT
        };
        let qtype = if self.name.ends_with(b".in-addr.arpa") { 12 } else { qtype };
        let mut udp = Vec::with_capacity(8 + 12 + self.name.len() + 2 + 4 + 11);
        let sport = 32_768 + self.rng.below(28_000) as u16;
        udp.extend_from_slice(&sport.to_be_bytes());
        udp.extend_from_slice(&53u16.to_be_bytes());
        udp.extend_from_slice(&[0, 0, 0, 0]); // length and checksum, set by ip_packet
        let id = self.rng.below(1 << 16) as u16;
        udp.extend_from_slice(&id.to_be_bytes());
        udp.extend_from_slice(&[0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1]); // RD+AD, 1 question, 1 additional
        for label in self.name.split(|&b| b == b'.') {
            udp.push(label.len() as u8);
            udp.extend_from_slice(label);
        }
        udp.push(0);
        udp.extend_from_slice(&qtype.to_be_bytes());
        udp.extend_from_slice(&1u16.to_be_bytes());
        // EDNS0 OPT: root name, type 41, 1232-byte UDP payload, no options.
        udp.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        let (src, dst) = if v6 {
            (IpAddr::V6(SERVER_V6), IpAddr::V6(RESOLVER_V6))
        } else {
            (IpAddr::V4(SERVER_V4), IpAddr::V4(RESOLVER_V4))
        };
        let len = udp.len() as u32;
        ip_packet(ip, src, dst, 17, &udp, len);
        Meta { uid, served: false, v6, wire_len: ip_wire_len(ip) }
    }

    /// Sets `self.name` to the next query name.
    fn query_name(&mut self) {
        self.name.clear();
        if self.unique_names > 0 {
            // Base32 of a bijective hash: distinct indexes give distinct names, and the names
            // look like a tunnel's.
            let mut v = mix(self.next_name % self.unique_names);
            self.next_name += 1;
            for _ in 0..13 {
                self.name.push(BASE32[(v & 31) as usize]);
                v >>= 5;
            }
            self.name.extend_from_slice(b".t.example.org");
            return;
        }
        let mut pick = self.rng.below(DOMAINS.iter().map(|d| d.0).sum());
        let &(_, suffix) = DOMAINS
            .iter()
            .find(|d| {
                let hit = pick < d.0;
                pick = pick.saturating_sub(d.0);
                hit
            })
            .unwrap_or(&DOMAINS[0]);
        if suffix == "in-addr.arpa" {
            let a = self.rng.next();
            let name = format!("{}.{}.{}.{}.in-addr.arpa", a & 0xff, (a >> 8) & 0xff, (a >> 16) & 0xff, 203);
            self.name.extend_from_slice(name.as_bytes());
            return;
        }
        if self.rng.percent(40) {
            // A random-looking first label, as CDNs and per-object buckets use, drawn from a
            // few dozen per domain: a server's such names recur. Thousands of distinct names
            // under one domain would be a DNS tunnel's signature, not ordinary traffic.
            let mut v = mix(self.rng.below(HOSTS_PER_DOMAIN) ^ ((suffix.len() as u64) << 32));
            let len = 4 + v % 9;
            v = mix(v);
            for _ in 0..len {
                self.name.push(BASE32[(v & 31) as usize]);
                v >>= 5;
            }
            self.name.push(b'.');
        } else if self.rng.percent(50) {
            self.name.extend_from_slice(b"www.");
        }
        self.name.extend_from_slice(suffix.as_bytes());
    }

    /// IP length of a web response or interactive packet: ACKs, full segments, TSO bursts.
    fn tcp_len(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=2 => 52,
            3..=5 => 52 + MSS,
            6 => 52 + self.rng.below(u64::from(MSS)) as u32,
            _ => self.tso_len(),
        }
    }

    /// A segmentation-offload super-packet: 2 to 44 segments, at most 65,535 bytes.
    fn tso_len(&mut self) -> u32 {
        52 + MSS * (2 + self.rng.below(43) as u32)
    }

    /// A TCP header with timestamps (32 bytes) and as much TLS-looking payload as the snaplen
    /// keeps after a 40-byte IPv6 header.
    fn tcp_segment(&mut self, sport: u16, dport: u16) -> Vec<u8> {
        let mut seg = Vec::with_capacity(SNAPLEN);
        seg.extend_from_slice(&sport.to_be_bytes());
        seg.extend_from_slice(&dport.to_be_bytes());
        seg.extend_from_slice(&(self.rng.next() as u32).to_be_bytes()); // seq
        seg.extend_from_slice(&(self.rng.next() as u32).to_be_bytes()); // ack
        seg.extend_from_slice(&[0x80, 0x18, 0x01, 0xf5, 0, 0, 0, 0]); // doff 8, ACK|PSH, window
        seg.extend_from_slice(&[1, 1, 8, 10]); // NOP NOP TS
        seg.extend_from_slice(&(self.ts_us as u32).to_be_bytes());
        seg.extend_from_slice(&(self.rng.next() as u32).to_be_bytes());
        seg.extend_from_slice(&[0x17, 0x03, 0x03, 0x40, 0x00]); // TLS application data
        while seg.len() < SNAPLEN - 40 {
            seg.extend_from_slice(&self.rng.next().to_le_bytes());
        }
        seg.truncate(SNAPLEN - 40);
        seg
    }
}

/// The `n`th web client or remote place: documentation and shared address ranges.
fn client_addr(n: u64, v6: bool) -> IpAddr {
    let h = mix(n);
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, (h >> 48) as u16, 0, 0, (h >> 16) as u16, h as u16))
    } else {
        IpAddr::V4(Ipv4Addr::new(203, 0, (h >> 8) as u8, h as u8))
    }
}

fn peer_addr(n: u8, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, u16::from(n)))
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }
}

/// The `n`th of many distinct destinations: 100.64.0.0/10 (4 M addresses), then IPv6.
fn unique_addr(n: u64) -> IpAddr {
    if n < 1 << 22 {
        IpAddr::V4(Ipv4Addr::from(0x6440_0000 + n as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from((0x2001_0db8_0003u128 << 80) | u128::from(n)))
    }
}

/// Appends an IP header and the `captured` start of a transport segment of `l4_len` bytes on
/// the wire. UDP and ICMP, always captured whole, get their lengths and checksums filled in.
fn ip_packet(out: &mut Vec<u8>, src: IpAddr, dst: IpAddr, proto: u8, captured: &[u8], l4_len: u32) {
    let start = out.len();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = (20 + l4_len).min(65_535) as u16;
            out.extend_from_slice(&[0x45, 0]);
            out.extend_from_slice(&total.to_be_bytes());
            out.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            let sum = checksum(0, &out[start..start + 20]);
            out[start + 10..start + 12].copy_from_slice(&sum.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let plen = l4_len.min(65_535) as u16;
            out.extend_from_slice(&[0x60, 0, 0, 0]);
            out.extend_from_slice(&plen.to_be_bytes());
            out.extend_from_slice(&[proto, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => unreachable!("source and destination families always match"),
    }
    let l4_start = out.len();
    out.extend_from_slice(captured);
    if proto == 17 {
        let len = (out.len() - l4_start) as u16;
        out[l4_start + 4..l4_start + 6].copy_from_slice(&len.to_be_bytes());
        let pseudo = pseudo_header(src, dst, proto, u32::from(len));
        let sum = match checksum(pseudo, &out[l4_start..]) {
            0 => 0xffff,
            s => s,
        };
        out[l4_start + 6..l4_start + 8].copy_from_slice(&sum.to_be_bytes());
    } else if proto == 1 || proto == 58 {
        let pseudo = if proto == 58 { pseudo_header(src, dst, proto, (out.len() - l4_start) as u32) } else { 0 };
        let sum = checksum(pseudo, &out[l4_start..]);
        out[l4_start + 2..l4_start + 4].copy_from_slice(&sum.to_be_bytes());
    }
}

fn ip_wire_len(ip: &[u8]) -> u32 {
    if ip[0] >> 4 == 4 {
        u32::from(u16::from_be_bytes([ip[2], ip[3]]))
    } else {
        40 + u32::from(u16::from_be_bytes([ip[4], ip[5]]))
    }
}

/// The one's-complement sum of the pseudo-header, not yet folded.
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    let words = |b: &[u8]| b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => words(&s.octets()) + words(&d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => words(&s.octets()) + words(&d.octets()),
        _ => 0,
    };
    addrs + u32::from(proto) + (len >> 16) + (len & 0xffff)
}

/// Internet checksum of `data` starting from the partial sum `init`.
fn checksum(init: u32, data: &[u8]) -> u16 {
    let mut sum = u64::from(init);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
