//! DNS queries: a bounded, zero-copy view of what a query carries out.
//!
//! Written here rather than taken from a general DNS crate because the detector needs what
//! those crates hide or refuse: the raw label bytes (tunnels put binary in labels), oddities
//! reported as [`Flags`] rather than errors (Suricata's approach), and no allocation per
//! packet. `simple-dns` checks this parser's results on the same fixtures in the tests.
//!
//! Guarantees: no panic and no allocation on any input; every length is checked before use;
//! names are capped at [`MAX_LABELS`] labels and [`MAX_NAME_LEN`] presentation bytes; a
//! compression pointer is followed only if it points strictly backwards (smoltcp's rule), so
//! no byte is read twice in one name and pointer loops end as a flag.
//! Limits: only the first question is decoded (more set [`Flags::MULTI_QUESTION`]); answer and
//! authority records are skipped, additional records only read for the EDNS OPT record.
//! [`answer_addresses`] reads the A/AAAA records of a response's answer section, for the
//! names a principal resolved.

use std::fmt;

/// Labels in one name at most (Suricata's cap); more set [`Flags::TOO_MANY_LABELS`].
pub const MAX_LABELS: usize = 255;
/// Presentation bytes in one name at most (Suricata's cap); more set [`Flags::NAME_TOO_LONG`].
pub const MAX_NAME_LEN: usize = 1025;
/// Wire bytes a legitimate name can have (RFC 1035); more set [`Flags::OVERSIZED_NAME`].
const WIRE_NAME_LIMIT: usize = 255;
const HEADER_LEN: usize = 12;

pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

/// Oddities of a message that still parsed. A detector may treat them as evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u16);

impl Flags {
    /// QR bit set: a response, not a query.
    pub const RESPONSE: Flags = Flags(1 << 0);
    /// More than one question (resolvers reject these).
    pub const MULTI_QUESTION: Flags = Flags(1 << 1);
    /// A compression pointer that does not point strictly backwards; the name ends there.
    pub const POINTER_LOOP: Flags = Flags(1 << 2);
    /// The question name uses compression (never needed in a query).
    pub const COMPRESSED: Flags = Flags(1 << 3);
    /// More than [`MAX_LABELS`] labels; the name is cut.
    pub const TOO_MANY_LABELS: Flags = Flags(1 << 4);
    /// More than [`MAX_NAME_LEN`] presentation bytes; the name is cut.
    pub const NAME_TOO_LONG: Flags = Flags(1 << 5);
    /// More than 255 wire bytes (illegal, but parsed).
    pub const OVERSIZED_NAME: Flags = Flags(1 << 6);
    /// The records after the question end before their counts say.
    pub const TRUNCATED: Flags = Flags(1 << 7);
    /// Bytes after the last record.
    pub const TRAILING: Flags = Flags(1 << 8);
    /// A label contains a `.` byte, which makes the name ambiguous when written out.
    pub const DOT_IN_LABEL: Flags = Flags(1 << 9);

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

/// Why a payload is not a DNS message. Counted by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotDns {
    #[error("shorter than a DNS header")]
    Short,
    #[error("no question")]
    NoQuestion,
    /// The question name runs past the end or uses a reserved label type.
    #[error("bad question name")]
    BadName,
    /// The question's type and class are cut off.
    #[error("question cut short")]
    Truncated,
}

impl NotDns {
    pub fn name(self) -> &'static str {
        match self {
            NotDns::Short => "dns_short",
            NotDns::NoQuestion => "dns_no_question",
            NotDns::BadName => "dns_bad_name",
            NotDns::Truncated => "dns_truncated",
        }
    }
}

/// A name inside a message: borrowed, walked label by label.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name<'a> {
    msg: &'a [u8],
    start: usize,
    /// Labels kept after the caps.
    labels: u16,
    /// Presentation length: label bytes plus a dot between labels, without the final dot.
    len: u16,
    longest: u8,
}

impl<'a> Name<'a> {
    pub fn label_count(&self) -> usize {
        usize::from(self.labels)
    }

    /// Presentation length in bytes (`www.example.com` is 15; the root is 0).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.labels == 0
    }

    pub fn longest_label(&self) -> usize {
        usize::from(self.longest)
    }

    /// The labels, left to right, as raw bytes.
    pub fn labels(&self) -> Labels<'a> {
        Labels { msg: self.msg, pos: self.start, left: self.labels }
    }
}

impl fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for label in self.labels() {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            f.write_str(&crate::escape::printable_bytes(label))?;
        }
        Ok(())
    }
}

/// Iterator over a [`Name`]'s labels. Follows the same backward pointers the parser
/// validated and stops after the labels it counted, so it cannot loop or read out of bounds.
pub struct Labels<'a> {
    msg: &'a [u8],
    pos: usize,
    left: u16,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.left > 0 {
            let b = *self.msg.get(self.pos)?;
            if b & 0xc0 == 0xc0 {
                let lo = *self.msg.get(self.pos + 1)?;
                self.pos = usize::from(u16::from_be_bytes([b & 0x3f, lo]));
                continue;
            }
            let len = usize::from(b);
            let label = self.msg.get(self.pos + 1..self.pos + 1 + len)?;
            self.pos += 1 + len;
            self.left -= 1;
            return Some(label);
        }
        None
    }
}

/// The part of a DNS message a detector needs: header bits, the first question, EDNS size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    pub opcode: u8,
    pub qname: Name<'a>,
    pub qtype: u16,
    pub qclass: u16,
    /// The requestor's UDP payload size from an EDNS OPT record, if any.
    pub edns_size: Option<u16>,
    pub flags: Flags,
}

impl Query<'_> {
    /// Parsed without any oddity: the bar for payloads that are not on port 53.
    pub fn is_clean_query(&self) -> bool {
        self.opcode == 0 && self.qclass == CLASS_IN && self.flags.is_empty()
    }
}

fn be16(msg: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*msg.get(at)?, *msg.get(at + 1)?]))
}

/// Parses one DNS message (no TCP length prefix).
pub fn parse(msg: &[u8]) -> Result<Query<'_>, NotDns> {
    if msg.len() < HEADER_LEN {
        return Err(NotDns::Short);
    }
    let [id_hi, id_lo, b2, _, qd_hi, qd_lo, an_hi, an_lo, ns_hi, ns_lo, ar_hi, ar_lo, ..] = *msg else {
        return Err(NotDns::Short);
    };
    let qdcount = u16::from_be_bytes([qd_hi, qd_lo]);
    let mut flags = Flags::default();
    if b2 & 0x80 != 0 {
        flags |= Flags::RESPONSE;
    }
    match qdcount {
        0 => return Err(NotDns::NoQuestion),
        1 => {}
        _ => flags |= Flags::MULTI_QUESTION,
    }
    let (qname, mut pos) = read_name(msg, HEADER_LEN, &mut flags)?;
    let (Some(qtype), Some(qclass)) = (be16(msg, pos), be16(msg, pos + 2)) else {
        return Err(NotDns::Truncated);
    };
    pos += 4;

    // The rest only matters for the EDNS size and to notice oddities.
    let mut edns_size = None;
    let skip = |pos: &mut usize, question: bool| -> Option<(u16, u16)> {
        *pos = skip_name(msg, *pos)?;
        let rtype = be16(msg, *pos)?;
        let class = be16(msg, *pos + 2)?;
        if question {
            *pos += 4;
        } else {
            let rdlen = usize::from(be16(msg, *pos + 8)?);
            *pos += 10 + rdlen;
            if *pos > msg.len() {
                return None;
            }
        }
        Some((rtype, class))
    };
    let counts = [
        (qdcount.saturating_sub(1), true, false),
        (u16::from_be_bytes([an_hi, an_lo]), false, false),
        (u16::from_be_bytes([ns_hi, ns_lo]), false, false),
        (u16::from_be_bytes([ar_hi, ar_lo]), false, true),
    ];
    'sections: for (count, question, additional) in counts {
        for _ in 0..count {
            match skip(&mut pos, question) {
                Some((TYPE_OPT, class)) if additional => edns_size = Some(class),
                Some(_) => {}
                None => {
                    flags |= Flags::TRUNCATED;
                    break 'sections;
                }
            }
        }
    }
    if !flags.contains(Flags::TRUNCATED) && pos < msg.len() {
        flags |= Flags::TRAILING;
    }
    Ok(Query {
        id: u16::from_be_bytes([id_hi, id_lo]),
        opcode: (b2 >> 3) & 0x0f,
        qname,
        qtype,
        qclass,
        edns_size,
        flags,
    })
}

/// Reads the name at `start`; returns it and the offset after it in the message.
fn read_name<'a>(msg: &'a [u8], start: usize, flags: &mut Flags) -> Result<(Name<'a>, usize), NotDns> {
    let mut pos = start;
    // Where parsing continues after the name: after the first pointer, else after the root.
    let mut after = None;
    let mut labels = 0u16;
    let mut len = 0usize;
    let mut wire = 0usize;
    let mut longest = 0u8;
    loop {
        let b = *msg.get(pos).ok_or(NotDns::BadName)?;
        match b & 0xc0 {
            0x00 if b == 0 => {
                let after = after.unwrap_or(pos + 1);
                return Ok((finish(msg, start, labels, len, longest), after));
            }
            0x00 => {
                let n = usize::from(b);
                let label = msg.get(pos + 1..pos + 1 + n).ok_or(NotDns::BadName)?;
                if usize::from(labels) >= MAX_LABELS || len + usize::from(labels > 0) + n > MAX_NAME_LEN {
                    // Keep what fits; find where the name ends so the question still parses.
                    *flags |=
                        if usize::from(labels) >= MAX_LABELS { Flags::TOO_MANY_LABELS } else { Flags::NAME_TOO_LONG };
                    let end = match after {
                        Some(a) => a,
                        None => skip_name(msg, pos).ok_or(NotDns::BadName)?,
                    };
                    return Ok((finish(msg, start, labels, len, longest), end));
                }
                if label.contains(&b'.') {
                    *flags |= Flags::DOT_IN_LABEL;
                }
                len += usize::from(labels > 0) + n;
                wire += 1 + n;
                if wire > WIRE_NAME_LIMIT {
                    *flags |= Flags::OVERSIZED_NAME;
                }
                labels += 1;
                longest = longest.max(b);
                pos += 1 + n;
            }
            0xc0 => {
                let target = usize::from(be16(msg, pos).ok_or(NotDns::BadName)? & 0x3fff);
                *flags |= Flags::COMPRESSED;
                if after.is_none() {
                    after = Some(pos + 2);
                }
                if target >= pos {
                    *flags |= Flags::POINTER_LOOP;
                    return Ok((finish(msg, start, labels, len, longest), after.unwrap_or(pos + 2)));
                }
                pos = target;
            }
            // 0x40 and 0x80: extended / reserved label types, not in use.
            _ => return Err(NotDns::BadName),
        }
    }
}

fn finish(msg: &[u8], start: usize, labels: u16, len: usize, longest: u8) -> Name<'_> {
    Name { msg, start, labels, len: len as u16, longest }
}

/// The offset after the name at `pos`, without following pointers.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let b = *msg.get(pos)?;
        match b & 0xc0 {
            0x00 if b == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(b),
            0xc0 => return (pos + 2 <= msg.len()).then_some(pos + 2),
            _ => return None,
        }
    }
}

/// Addresses a response gives for its question: the A and AAAA records of its answer section
/// (whatever their owner: a CNAME chain's last name answers the question), at most
/// `out.len()` of them, in order. Returns how many were written; 0 for anything that is not a
/// response or whose records end early. Bounded like [`parse`]: names are skipped, not read.
pub fn answer_addresses(msg: &[u8], out: &mut [std::net::IpAddr]) -> usize {
    let (Some(flags), Some(qd), Some(an)) = (msg.get(2), be16(msg, 4), be16(msg, 6)) else {
        return 0;
    };
    if flags & 0x80 == 0 {
        return 0;
    }
    let mut pos = HEADER_LEN;
    for _ in 0..qd {
        match skip_name(msg, pos) {
            Some(p) if p + 4 <= msg.len() => pos = p + 4,
            _ => return 0,
        }
    }
    let mut n = 0;
    for _ in 0..an {
        if n == out.len() {
            break;
        }
        let Some(p) = skip_name(msg, pos) else { break };
        let (Some(rtype), Some(class), Some(rdlen)) = (be16(msg, p), be16(msg, p + 2), be16(msg, p + 8)) else {
            break;
        };
        let start = p + 10;
        let Some(rdata) = msg.get(start..start + usize::from(rdlen)) else { break };
        let addr = match (rtype, class, rdata.len()) {
            (1, CLASS_IN, 4) => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(rdata).unwrap_or_default())),
            (28, CLASS_IN, 16) => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(rdata).unwrap_or_default())),
            _ => None,
        };
        if let Some(a) = addr {
            out[n] = a;
            n += 1;
        }
        pos = start + usize::from(rdlen);
    }
    n
}

/// Cheap test for a payload on a port other than 53: the header of a plain query with one
/// question and a first label. A handful of byte compares; the full parse follows only if
/// this passes.
pub fn looks_like_query(p: &[u8]) -> bool {
    // 12-byte header, a 1-byte label, the root, type and class.
    p.len() >= 18
        && p[2] & 0xf8 == 0 // QR = 0, opcode = QUERY
        && p[4..8] == [0, 1, 0, 0]
        && p[8..10] == [0, 0]
        && p[10] == 0
        && p[11] <= 1
        && (1..=63).contains(&p[12])
}

/// The DNS messages in a TCP segment's payload: each behind a two-byte length prefix, several
/// possibly in one segment. A message cut by the segment end is yielded as far as it goes
/// (its records then parse as truncated).
pub fn tcp_messages(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = payload;
    std::iter::from_fn(move || {
        let len = usize::from(be16(rest, 0)?);
        if len == 0 {
            return None;
        }
        let end = (2 + len).min(rest.len());
        let msg = rest.get(2..end)?;
        rest = rest.get(end..).unwrap_or(&[]);
        Some(msg)
    })
}

/// A query type's conventional name, for type mixes and reports.
pub fn type_name(qtype: u16) -> std::borrow::Cow<'static, str> {
    let s = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        10 => "NULL",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        25 => "KEY",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        43 => "DS",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        n => return format!("TYPE{n}").into(),
    };
    s.into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a query: header with the given counts, then `body`.
    pub(crate) fn message(qd: u16, ar: u16, body: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00];
        for c in [qd, 0, 0, ar] {
            m.extend_from_slice(&c.to_be_bytes());
        }
        m.extend_from_slice(body);
        m
    }

    /// Wire form of a dotted name.
    pub(crate) fn wire(name: &str) -> Vec<u8> {
        let mut w = Vec::new();
        for l in name.split('.').filter(|l| !l.is_empty()) {
            w.push(l.len() as u8);
            w.extend_from_slice(l.as_bytes());
        }
        w.push(0);
        w
    }

    pub(crate) fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut body = wire(name);
        body.extend_from_slice(&qtype.to_be_bytes());
        body.extend_from_slice(&CLASS_IN.to_be_bytes());
        message(1, 0, &body)
    }

    /// A response to `query(name, 1)` with a CNAME then A records (compressed owners).
    pub(crate) fn response(name: &str, addrs: &[std::net::IpAddr]) -> Vec<u8> {
        let mut m = query(name, 1);
        m[2] |= 0x80;
        m[7] = addrs.len() as u8 + 1;
        // CNAME from the question to "cdn.<name>", then the addresses on the target.
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'c', b'd', b'n', 0xc0, 12]);
        let target = (m.len() - 6) as u8;
        for a in addrs {
            let (t, rd): (u16, Vec<u8>) = match a {
                std::net::IpAddr::V4(v4) => (1, v4.octets().to_vec()),
                std::net::IpAddr::V6(v6) => (28, v6.octets().to_vec()),
            };
            m.extend_from_slice(&[0xc0, target]);
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(rd.len() as u16).to_be_bytes());
            m.extend_from_slice(&rd);
        }
        m
    }

    #[test]
    fn answer_addresses_of_a_response() {
        let addrs: [std::net::IpAddr; 2] = ["10.77.0.2".parse().unwrap(), "fd77::2".parse().unwrap()];
        let m = response("files.exfil-drop.example", &addrs);
        assert!(parse(&m).unwrap().flags.contains(Flags::RESPONSE));
        let mut out = [std::net::IpAddr::from([0u8; 4]); 8];
        assert_eq!(answer_addresses(&m, &mut out), 2);
        assert_eq!(out[..2], addrs);
        // Capped by the output; queries and cut records give nothing more.
        assert_eq!(answer_addresses(&m, &mut out[..1]), 1);
        assert_eq!(answer_addresses(&query("a.example", 1), &mut out), 0);
        for cut in 0..m.len() {
            assert!(answer_addresses(&m[..cut], &mut out) <= 1, "cut at {cut}");
        }
    }

    fn dotted(n: &Name<'_>) -> String {
        format!("{n:?}")
    }

    // A real `dig www.example.test A` query from pcaps/nflog-sample.pcap (EDNS, cookie).
    const DIG_A: &[u8] = &[
        0x5c, 0x1f, 0x01, 0x20, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, b'w', b'w', b'w', 0x07, b'e',
        b'x', b'a', b'm', b'p', b'l', b'e', 0x04, b't', b'e', b's', b't', 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
        0x29, 0x04, 0xd0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x08, 0x01, 0x02, 0x03, 0x04, 0x05,
        0x06, 0x07, 0x08,
    ];

    #[test]
    fn dig_query_with_edns_cookie() {
        let q = parse(DIG_A).unwrap();
        assert_eq!(dotted(&q.qname), "www.example.test");
        assert_eq!((q.qtype, q.qclass, q.edns_size, q.id), (1, 1, Some(1232), 0x5c1f));
        assert_eq!((q.qname.len(), q.qname.label_count(), q.qname.longest_label()), (16, 3, 7));
        assert!(q.is_clean_query(), "{:?}", q.flags);
        assert!(looks_like_query(DIG_A));
    }

    #[test]
    fn agrees_with_simple_dns() {
        let long = format!("{}.{}.t.example.test", "a".repeat(63), "b2c3".repeat(15));
        for (name, qtype) in [("www.example.test", 1u16), ("x.co.uk", 16), (long.as_str(), 10), ("a.b.c.d.e.f", 255)] {
            let m = query(name, qtype);
            let ours = parse(&m).unwrap();
            let theirs = simple_dns::Packet::parse(&m).unwrap();
            let q = &theirs.questions[0];
            assert_eq!(dotted(&ours.qname), q.qname.to_string(), "{name}");
            assert_eq!(ours.qtype, u16::from(q.qtype), "{name}");
            assert_eq!(ours.qname.label_count(), q.qname.get_labels().len(), "{name}");
        }
        let ours = parse(DIG_A).unwrap();
        let theirs = simple_dns::Packet::parse(DIG_A).unwrap();
        assert_eq!(ours.edns_size, theirs.opt().map(|o| o.udp_packet_size));
    }

    #[test]
    fn root_query() {
        let m = query(".", 2);
        let q = parse(&m).unwrap();
        assert!(q.qname.is_empty());
        assert_eq!(q.qname.len(), 0);
        assert_eq!(dotted(&q.qname), "");
    }

    #[test]
    fn binary_label_bytes_are_kept_raw() {
        let mut body = vec![4, 0x1b, b'[', 0xff, 0x00, 3, b'c', b'o', b'm', 0];
        body.extend_from_slice(&[0, 10, 0, 1]);
        let m = message(1, 0, &body);
        let q = parse(&m).unwrap();
        assert_eq!(q.qname.labels().next(), Some(&[0x1b, b'[', 0xff, 0x00][..]));
        assert_eq!(dotted(&q.qname), "\\x1b[\\xff\\x00.com");
    }

    #[test]
    fn hostile_pointer_to_itself_is_a_flag() {
        // The question name is a pointer to its own offset.
        let m = message(1, 0, &[0xc0, 12, 0, 1, 0, 1]);
        let q = parse(&m).unwrap();
        assert!(q.flags.contains(Flags::POINTER_LOOP));
        assert!(q.qname.is_empty());
        assert_eq!(q.qtype, 1);
    }

    #[test]
    fn hostile_forward_pointer_is_a_flag() {
        let m = message(1, 0, &[1, b'a', 0xc0, 40, 0, 1, 0, 1]);
        let q = parse(&m).unwrap();
        assert!(q.flags.contains(Flags::POINTER_LOOP));
        assert_eq!(dotted(&q.qname), "a");
    }

    #[test]
    fn hostile_backward_pointer_chain_terminates() {
        // A pointer into the header: followed (backwards), reads whatever is there, ends.
        let mut m = message(1, 0, &[1, b'a', 0xc0, 4, 0, 1, 0, 1]);
        m[4..6].copy_from_slice(&[0, 1]);
        let q = parse(&m).unwrap();
        assert!(q.flags.contains(Flags::COMPRESSED));
        assert_eq!(q.qtype, 1);
        let _ = q.qname.labels().count();
    }

    #[test]
    fn hostile_too_many_labels_is_capped() {
        let name = vec!["a"; 300].join(".");
        let m = query(&name, 1);
        let q = parse(&m).unwrap();
        assert!(q.flags.contains(Flags::TOO_MANY_LABELS));
        assert!(q.flags.contains(Flags::OVERSIZED_NAME));
        assert_eq!(q.qname.label_count(), MAX_LABELS);
        assert_eq!(q.qname.labels().count(), MAX_LABELS);
        assert_eq!(q.qtype, 1, "the question still parses after a capped name");
    }

    #[test]
    fn hostile_name_over_1025_bytes_is_capped() {
        let name = vec!["x".repeat(63); 20].join(".");
        let m = query(&name, 1);
        let q = parse(&m).unwrap();
        assert!(q.flags.contains(Flags::NAME_TOO_LONG));
        assert!(q.qname.len() <= MAX_NAME_LEN);
        assert_eq!(q.qname.labels().map(|l| l.len() + 1).sum::<usize>() - 1, q.qname.len());
    }

    #[test]
    fn hostile_reserved_label_type_is_not_dns() {
        assert_eq!(parse(&message(1, 0, &[0x41, 0, 0, 1, 0, 1])), Err(NotDns::BadName));
    }

    #[test]
    fn hostile_label_past_the_end_is_not_dns() {
        assert_eq!(parse(&message(1, 0, &[60, b'a', b'b'])), Err(NotDns::BadName));
    }

    #[test]
    fn hostile_question_cut_before_type() {
        assert_eq!(parse(&message(1, 0, &[1, b'a', 0, 0])), Err(NotDns::Truncated));
    }

    #[test]
    fn hostile_counts_larger_than_message_set_truncated() {
        let mut body = wire("a.test");
        body.extend_from_slice(&[0, 1, 0, 1]);
        let m = message(1, 65535, &body);
        let q = parse(&m).unwrap();
        assert!(q.flags.contains(Flags::TRUNCATED));
        assert!(!q.is_clean_query());
    }

    #[test]
    fn hostile_dot_inside_label_is_flagged() {
        let mut body = vec![3, b'a', b'.', b'b', 0];
        body.extend_from_slice(&[0, 1, 0, 1]);
        assert!(parse(&message(1, 0, &body)).unwrap().flags.contains(Flags::DOT_IN_LABEL));
    }

    #[test]
    fn short_and_empty_payloads() {
        assert_eq!(parse(&[]), Err(NotDns::Short));
        assert_eq!(parse(&[0; 11]), Err(NotDns::Short));
        assert_eq!(parse(&[0; 12]), Err(NotDns::NoQuestion));
        assert!(!looks_like_query(&[0; 64]));
    }

    #[test]
    fn trailing_bytes_are_flagged() {
        let mut m = query("a.test", 1);
        m.push(0);
        assert!(parse(&m).unwrap().flags.contains(Flags::TRAILING));
    }

    #[test]
    fn tcp_segment_with_two_messages_and_a_cut_third() {
        let a = query("one.test", 1);
        let b = query("two.test", 28);
        let mut seg = Vec::new();
        for m in [&a, &b] {
            seg.extend_from_slice(&(m.len() as u16).to_be_bytes());
            seg.extend_from_slice(m);
        }
        seg.extend_from_slice(&100u16.to_be_bytes());
        seg.extend_from_slice(&a[..14]);
        let msgs: Vec<_> = tcp_messages(&seg).collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(dotted(&parse(msgs[1]).unwrap().qname), "two.test");
        assert!(parse(msgs[2]).is_err());
        assert_eq!(tcp_messages(&[0]).count(), 0);
        assert_eq!(tcp_messages(&[0, 0, 1]).count(), 0);
    }

    #[test]
    fn every_prefix_of_a_query_is_safe() {
        let m = query(&format!("{}.example.test", "q".repeat(60)), 16);
        for end in 0..=m.len() {
            let _ = parse(&m[..end]);
            let _ = looks_like_query(&m[..end]);
            let _ = tcp_messages(&m[..end]).count();
        }
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut buf = [0u8; 96];
        for _ in 0..20_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Make every case reach the name parser.
            buf[4..6].copy_from_slice(&[0, 1]);
            let n = (x % 96) as usize;
            if let Ok(q) = parse(&buf[..n]) {
                assert!(q.qname.labels().count() <= MAX_LABELS);
            }
        }
    }
}
