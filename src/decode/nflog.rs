//! NFLOG records: the `nfgenmsg` header followed by netlink TLVs.
//!
//! The same bytes arrive two ways: as the body of an NFULNL_MSG_PACKET netlink message on our
//! own socket, and as a LINKTYPE_NFLOG (239) record written by `tcpdump -i nflog:N`, which
//! stores the netlink body unchanged. One parser serves both.
//!
//! Layout (`include/uapi/linux/netfilter/nfnetlink_log.h`): family u8, version u8, resource id
//! (the group) u16 big-endian; then TLVs of {length u16, type u16} in host byte order, the
//! length counting the 4-byte TLV header, each padded to 4 bytes. Values are big-endian.
//! The parser never panics: every length is checked before use, and a malformed TLV ends the
//! record with an error.

use super::DecodeError;

const NFULA_PACKET_HDR: u16 = 1;
const NFULA_TIMESTAMP: u16 = 3;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;
const NFULA_UID: u16 = 11;
const NFULA_SEQ: u16 = 12;
const NFULA_SEQ_GLOBAL: u16 = 13;
const NFULA_GID: u16 = 14;
/// The top two bits of a netlink attribute type are flags (nested, net byte order).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The fields of one NFLOG record that exfilmon uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NflogRecord<'a> {
    /// AF_INET (2) or AF_INET6 (10); AF_UNSPEC/bridge for other families.
    pub family: u8,
    pub group: u16,
    /// Link-layer protocol from NFULA_PACKET_HDR (0x0800 IPv4, 0x86dd IPv6).
    pub hw_protocol: Option<u16>,
    /// Kernel timestamp, microseconds since the epoch. Absent at the output hook.
    pub ts_us: Option<i64>,
    /// The packet from its network header on, cut to the rule's snaplen.
    pub payload: Option<&'a [u8]>,
    pub prefix: Option<&'a [u8]>,
    /// fsuid/fsgid of the sending socket's file, when the packet has a full local socket.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Per-instance sequence number (with the SEQ config flag); gaps mean lost packets.
    pub seq: Option<u32>,
    pub seq_global: Option<u32>,
}

/// Parses one NFLOG record.
pub fn parse(data: &[u8]) -> Result<NflogRecord<'_>, DecodeError> {
    let (&[family, _version, g0, g1], mut rest) = data.split_first_chunk::<4>().ok_or(DecodeError::Truncated)?;
    let mut rec = NflogRecord { family, group: u16::from_be_bytes([g0, g1]), ..Default::default() };
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let kind = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            return Err(DecodeError::BadNflog);
        }
        let value = &rest[4..len];
        match kind {
            NFULA_PACKET_HDR => rec.hw_protocol = be16(value),
            NFULA_TIMESTAMP => rec.ts_us = timestamp(value),
            NFULA_PAYLOAD => rec.payload = Some(value),
            NFULA_PREFIX => rec.prefix = Some(value.split(|&b| b == 0).next().unwrap_or(value)),
            NFULA_UID => rec.uid = be32(value),
            NFULA_GID => rec.gid = be32(value),
            NFULA_SEQ => rec.seq = be32(value),
            NFULA_SEQ_GLOBAL => rec.seq_global = be32(value),
            _ => {}
        }
        let padded = (len + 3) & !3;
        rest = rest.get(padded..).unwrap_or(&[]);
    }
    Ok(rec)
}

fn be16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

/// `struct nfulnl_msg_packet_timestamp { __be64 sec; __be64 usec; }`
fn timestamp(v: &[u8]) -> Option<i64> {
    let sec = i64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let usec = i64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    sec.checked_mul(1_000_000)?.checked_add(usec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an NFLOG record the way the kernel does (host-endian TLV headers, 4-byte padding).
    pub(crate) fn record(family: u8, group: u16, tlvs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut out = vec![family, 0];
        out.extend_from_slice(&group.to_be_bytes());
        for (kind, value) in tlvs {
            out.extend_from_slice(&((value.len() + 4) as u16).to_ne_bytes());
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(value);
            while out.len() % 4 != 0 {
                out.push(0);
            }
        }
        out
    }

    #[test]
    fn uid_gid_prefix_payload() {
        let data = record(
            2,
            7,
            &[
                (NFULA_PACKET_HDR, &[0x08, 0x00, 3, 0]),
                (NFULA_PREFIX, b"exfil\0"),
                (NFULA_UID, &1001u32.to_be_bytes()),
                (NFULA_GID, &1002u32.to_be_bytes()),
                (NFULA_SEQ, &5u32.to_be_bytes()),
                (NFULA_PAYLOAD, &[0x45, 1, 2]),
            ],
        );
        let r = parse(&data).unwrap();
        assert_eq!((r.family, r.group), (2, 7));
        assert_eq!(r.hw_protocol, Some(0x0800));
        assert_eq!(r.prefix, Some(&b"exfil"[..]));
        assert_eq!((r.uid, r.gid, r.seq), (Some(1001), Some(1002), Some(5)));
        assert_eq!(r.payload, Some(&[0x45, 1, 2][..]));
    }

    #[test]
    fn kernel_timestamp() {
        let mut ts = Vec::new();
        ts.extend_from_slice(&1_700_000_000i64.to_be_bytes());
        ts.extend_from_slice(&250_000i64.to_be_bytes());
        let buf = record(2, 0, &[(NFULA_TIMESTAMP, &ts)]);
        let r = parse(&buf).unwrap();
        assert_eq!(r.ts_us, Some(1_700_000_000_250_000));
    }

    #[test]
    fn tlv_longer_than_record_is_an_error() {
        let mut data = record(2, 0, &[(NFULA_UID, &[0, 0, 0, 1])]);
        data[4] = 200;
        assert_eq!(parse(&data), Err(DecodeError::BadNflog));
    }

    #[test]
    fn tlv_shorter_than_its_header_is_an_error() {
        let mut data = record(2, 0, &[(NFULA_UID, &[0, 0, 0, 1])]);
        data[4] = 2;
        data[5] = 0;
        assert_eq!(parse(&data), Err(DecodeError::BadNflog));
    }

    #[test]
    fn short_uid_value_is_ignored_not_misread() {
        let buf = record(2, 0, &[(NFULA_UID, &[0, 1])]);
        let r = parse(&buf).unwrap();
        assert_eq!(r.uid, None);
    }

    #[test]
    fn header_only_and_empty() {
        assert_eq!(parse(&[]), Err(DecodeError::Truncated));
        assert_eq!(parse(&[2, 0, 0, 7]).unwrap().group, 7);
    }
}
