//! The server name (SNI) of a TLS ClientHello: the first record a client sends.
//!
//! Bounded and borrowed like the rest of `decode`: every length is checked against the bytes
//! captured before it is used, at most one record and the extensions it holds are walked, and
//! nothing allocates. A name is returned only when it is a plausible host name (1..=253 bytes
//! of letters, digits, `-`, `_` and `.`), so what reaches a report is never control bytes.
//! Anything else, including a ClientHello split over several TCP segments or cut by the
//! snaplen before its SNI, is an `Err` with the reason.

/// Why no server name came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSni {
    /// Not a TLS handshake record holding a ClientHello.
    NotClientHello,
    /// The bytes end before the server name (snaplen, or a hello over several segments).
    Truncated,
    /// A length field points past its enclosing structure.
    Malformed,
    /// A ClientHello without a server_name extension (or with an unusable name).
    Absent,
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;
/// Longest name returned (a DNS name in presentation form).
pub const MAX_SNI: usize = 253;

/// Reads big-endian lengths from a slice, never past its end.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a `width`-byte length prefix; nothing is consumed when it is not all here.
    fn vec(&mut self, width: usize) -> Option<&'a [u8]> {
        let before = self.b;
        let n = match width {
            1 => self.u8().map(usize::from),
            _ => self.u16().map(usize::from),
        };
        let v = n.and_then(|n| self.take(n));
        if v.is_none() {
            self.b = before;
        }
        v
    }
}

/// The server name in `payload`, the start of a client's TCP stream.
pub fn server_name(payload: &[u8]) -> Result<&[u8], NoSni> {
    let [kind, major, _minor, hi, lo, rest @ ..] = payload else {
        return Err(if payload.len() >= 2 && payload[..2] != [HANDSHAKE, 3] {
            NoSni::NotClientHello
        } else {
            NoSni::Truncated
        });
    };
    if (*kind, *major) != (HANDSHAKE, 3) {
        return Err(NoSni::NotClientHello);
    }
    let record_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    // The record as far as it was captured; `cut` when it goes on past what is here (the
    // snaplen, or a hello spanning records), so running out of bytes is not malformation.
    let mut r = Reader { b: &rest[..record_len.min(rest.len())] };
    let mut cut = record_len > rest.len();
    match r.u8() {
        Some(CLIENT_HELLO) => {}
        Some(_) => return Err(NoSni::NotClientHello),
        None => return Err(NoSni::Truncated),
    }
    let body_len = r.u24().ok_or(NoSni::Truncated)?;
    cut |= body_len > r.b.len();
    r.b = &r.b[..body_len.min(r.b.len())];
    let short = |cut: bool| if cut { NoSni::Truncated } else { NoSni::Malformed };
    // client_version, random, session_id, cipher_suites, compression_methods
    if r.take(2 + 32).and_then(|_| r.vec(1)).and_then(|_| r.vec(2)).and_then(|_| r.vec(1)).is_none() {
        return Err(short(cut));
    }
    if r.b.is_empty() {
        return Err(if cut { NoSni::Truncated } else { NoSni::Absent });
    }
    let exts = match r.vec(2) {
        Some(exts) => exts,
        // Cut inside the extensions: read those that are here.
        None if cut => std::mem::take(&mut r.b).get(2..).unwrap_or(&[]),
        None => return Err(NoSni::Malformed),
    };
    let mut e = Reader { b: exts };
    while !e.b.is_empty() {
        let (Some(kind), Some(data)) = (e.u16(), e.vec(2)) else { return Err(short(cut)) };
        if kind != EXT_SERVER_NAME {
            continue;
        }
        let mut list = Reader { b: data };
        let Some(entries) = list.vec(2) else { return Err(NoSni::Malformed) };
        let mut names = Reader { b: entries };
        while !names.b.is_empty() {
            let (Some(kind), Some(name)) = (names.u8(), names.vec(2)) else { return Err(NoSni::Malformed) };
            if kind == HOST_NAME {
                return if plausible(name) { Ok(name) } else { Err(NoSni::Absent) };
            }
        }
        return Err(NoSni::Absent);
    }
    Err(if cut { NoSni::Truncated } else { NoSni::Absent })
}

fn plausible(name: &[u8]) -> bool {
    (1..=MAX_SNI).contains(&name.len())
        && name.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name[0] != b'.'
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ClientHello record with the given extensions (type, data).
    pub(crate) fn client_hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[0x11; 32]); // random
        body.push(32);
        body.extend_from_slice(&[0x22; 32]); // session id
        body.extend_from_slice(&[0, 6, 0x13, 1, 0x13, 2, 0x13, 3]); // cipher suites
        body.extend_from_slice(&[1, 0]); // compression: null
        let mut e = Vec::new();
        for (kind, data) in exts {
            e.extend_from_slice(&kind.to_be_bytes());
            e.extend_from_slice(&(data.len() as u16).to_be_bytes());
            e.extend_from_slice(data);
        }
        body.extend_from_slice(&(e.len() as u16).to_be_bytes());
        body.extend_from_slice(&e);
        let mut hs = vec![CLIENT_HELLO, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![HANDSHAKE, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    pub(crate) fn sni_ext(name: &[u8]) -> (u16, Vec<u8>) {
        let mut entry = vec![HOST_NAME, (name.len() >> 8) as u8, name.len() as u8];
        entry.extend_from_slice(name);
        let mut data = (entry.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&entry);
        (EXT_SERVER_NAME, data)
    }

    #[test]
    fn server_name_after_other_extensions() {
        let hello = client_hello(&[(23, vec![]), (10, vec![0, 2, 0, 29]), sni_ext(b"files.exfil-drop.example")]);
        assert_eq!(server_name(&hello), Ok(&b"files.exfil-drop.example"[..]));
    }

    #[test]
    fn no_server_name_extension_is_absent() {
        assert_eq!(server_name(&client_hello(&[(10, vec![0, 2, 0, 29])])), Err(NoSni::Absent));
        assert_eq!(server_name(&client_hello(&[])), Err(NoSni::Absent));
    }

    #[test]
    fn cut_before_the_name_is_truncated_and_cut_after_still_reads() {
        let hello = client_hello(&[(10, vec![0; 300]), sni_ext(b"example.org")]);
        for cut in [0, 1, 3, 5, 9, 60, 128, hello.len() - 3] {
            assert_eq!(server_name(&hello[..cut]), Err(NoSni::Truncated), "cut at {cut}");
        }
        let first = client_hello(&[sni_ext(b"example.org"), (10, vec![0; 300])]);
        assert_eq!(server_name(&first[..first.len() - 200]), Ok(&b"example.org"[..]));
    }

    #[test]
    fn other_records_and_handshakes_are_not_client_hellos() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Err(NoSni::NotClientHello));
        let mut server_hello = client_hello(&[sni_ext(b"example.org")]);
        server_hello[5] = 2;
        assert_eq!(server_name(&server_hello), Err(NoSni::NotClientHello));
        let mut app = client_hello(&[]);
        app[0] = 23;
        assert_eq!(server_name(&app), Err(NoSni::NotClientHello));
    }

    #[test]
    fn hostile_names_and_lengths_are_refused() {
        for name in [&b"evil\x1b[31m.example"[..], b"", b".example", &[b'a'; 254][..]] {
            assert_eq!(server_name(&client_hello(&[sni_ext(name)])), Err(NoSni::Absent), "{name:?}");
        }
        // An extension length past the end of the extensions.
        let mut hello = client_hello(&[sni_ext(b"example.org")]);
        let at = hello.len() - (b"example.org".len() + 3 + 2 + 2);
        hello[at..at + 2].copy_from_slice(&[0xff, 0xff]);
        assert!(server_name(&hello).is_err());
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        let hello = client_hello(&[(10, vec![1, 2, 3, 4]), sni_ext(b"example.org")]);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..20_000 {
            let mut b = hello.clone();
            for _ in 0..(i % 4 + 1) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % b.len();
                b[at] = (x >> 32) as u8;
            }
            b.truncate((x >> 40) as usize % (b.len() + 1));
            let _ = server_name(&b);
        }
    }
}
