//! One line of an auditd log: `type=KIND msg=audit(SECONDS.MILLIS:SERIAL): key=value ...`.
//!
//! A zero-copy view: [`Record::parse`] checks the header once; fields are found by walking the
//! body on demand. Both of auditd's log formats are read: RAW, and ENRICHED, where a `0x1d`
//! byte separates the raw fields from upper-case fields resolved on the recording host
//! (`UID="alice"`). Lines forwarded by audisp carry a `node=HOST ` prefix, which is skipped.
//!
//! Values come in three shapes (auditd's `audit_log_untrustedstring`): `"quoted"` when the
//! string is plain printable text, upper-case hex when it holds a space, quote or control byte
//! (`name=2F746D702F61206220`), and `(null)` / `?` for nothing. [`Value`] tells them apart;
//! a malformed hex string is a value of its own ([`Value::BadHex`]), not a failure.
//!
//! Guarantees: any byte sequence is accepted without panicking; lines longer than [`MAX_LINE`]
//! are refused before they are looked at; invalid UTF-8 is carried as bytes.

use std::borrow::Cow;

/// Longest line accepted. The kernel caps a record at 8970 bytes (`MAX_AUDIT_MESSAGE_LENGTH`);
/// ENRICHED lines add the resolved names, so this leaves room for both several times over.
pub const MAX_LINE: usize = 64 * 1024;

/// The field separator auditd's ENRICHED format puts before the resolved fields.
const ENRICHED_SEP: u8 = 0x1d;

/// Why a line is not a record. Every one is counted under its [`name`](LineError::name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    #[error("line longer than 64 KiB")]
    TooLong,
    #[error("no type= field")]
    NoType,
    #[error("no msg=audit(...) stamp")]
    NoStamp,
    #[error("bad msg=audit(...) stamp")]
    BadStamp,
}

impl LineError {
    pub fn name(self) -> &'static str {
        match self {
            LineError::TooLong => "audit_line_too_long",
            LineError::NoType => "audit_no_type",
            LineError::NoStamp => "audit_no_stamp",
            LineError::BadStamp => "audit_bad_stamp",
        }
    }
}

/// One audit record, borrowed from its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// `SYSCALL`, `PATH`, `CWD`, `PROCTITLE`, `NETFILTER_PKT`, ...
    pub kind: &'a [u8],
    /// Event time, microseconds since the Unix epoch (the stamp has millisecond resolution).
    pub ts_us: i64,
    /// Event serial: the records of one event share it (and the stamp).
    pub serial: u64,
    /// The raw fields after the stamp.
    body: &'a [u8],
    /// The ENRICHED fields after `0x1d`; empty in the RAW format.
    enriched: &'a [u8],
}

impl<'a> Record<'a> {
    pub fn parse(line: &'a [u8]) -> Result<Record<'a>, LineError> {
        if line.len() > MAX_LINE {
            return Err(LineError::TooLong);
        }
        let line = trim_end(line);
        let line = match line.strip_prefix(b"node=") {
            Some(rest) => rest.iter().position(|&b| b == b' ').map_or(&[][..], |i| &rest[i + 1..]),
            None => line,
        };
        let rest = line.strip_prefix(b"type=").ok_or(LineError::NoType)?;
        let sp = rest.iter().position(|&b| b == b' ').ok_or(LineError::NoStamp)?;
        let kind = &rest[..sp];
        if kind.is_empty() {
            return Err(LineError::NoType);
        }
        let rest = rest[sp + 1..].strip_prefix(b"msg=audit(").ok_or(LineError::NoStamp)?;
        let close = rest.iter().position(|&b| b == b')').ok_or(LineError::BadStamp)?;
        let (ts_us, serial) = stamp(&rest[..close]).ok_or(LineError::BadStamp)?;
        let rest = &rest[close + 1..];
        let rest = rest.strip_prefix(b":").unwrap_or(rest);
        let (body, enriched) = match rest.iter().position(|&b| b == ENRICHED_SEP) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        Ok(Record { kind, ts_us, serial, body, enriched })
    }

    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind.as_bytes()
    }

    /// The raw value of the first field `name` (quotes kept; see [`value`](Self::value)).
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        Fields(self.body).find(|(k, _)| *k == name.as_bytes()).map(|(_, v)| v)
    }

    pub fn value(&self, name: &str) -> Option<Value<'a>> {
        self.raw(name).map(Value::of)
    }

    /// A decimal field (`uid=1000`); `None` when absent or not a number.
    pub fn number(&self, name: &str) -> Option<u64> {
        number(self.raw(name)?)
    }

    /// An id field (`uid`, `auid`, ...); the unset id `4294967295` (-1) is `None`.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.number(name).and_then(|n| u32::try_from(n).ok()).filter(|&n| n != u32::MAX)
    }

    /// A resolved ENRICHED field (`UID`), unquoted; `None` in RAW logs.
    pub fn enriched(&self, name: &str) -> Option<&'a [u8]> {
        Fields(self.enriched).find(|(k, _)| *k == name.as_bytes()).map(|(_, v)| unquote(v))
    }

    /// Every raw field in order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        Fields(self.body)
    }
}

/// A field value by shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `"text"` (without the quotes) or a bare token that is not hex (`x86_64`, `(none)`).
    Text(&'a [u8]),
    /// Hex-encoded bytes, decoded.
    Hex(Vec<u8>),
    /// `(null)` or `?`.
    Null,
    /// Looked like hex but was not (odd length or a non-hex digit): kept as written.
    BadHex(&'a [u8]),
}

impl<'a> Value<'a> {
    /// Classifies a raw value. Only a value auditd could have hex-encoded is decoded: bare,
    /// even-length, upper-case hex (`audit_log_n_hex` writes upper case).
    pub fn of(raw: &'a [u8]) -> Value<'a> {
        if raw.len() >= 2 && raw[0] == b'"' {
            return Value::Text(unquote(raw));
        }
        if raw == b"(null)" || raw == b"?" || raw.is_empty() {
            return Value::Null;
        }
        let hexish = raw.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b));
        if !hexish {
            return Value::Text(raw);
        }
        match hex(raw) {
            Some(bytes) => Value::Hex(bytes),
            None => Value::BadHex(raw),
        }
    }

    /// The string's bytes; `None` for [`Value::Null`] and [`Value::BadHex`].
    pub fn bytes(&self) -> Option<Cow<'a, [u8]>> {
        match self {
            Value::Text(t) => Some(Cow::Borrowed(t)),
            Value::Hex(h) => Some(Cow::Owned(h.clone())),
            Value::Null | Value::BadHex(_) => None,
        }
    }
}

/// Walks `key=value` pairs separated by spaces. A value may be `"double"` or `'single'`
/// quoted (user-space records nest a whole `msg='op=... acct="x"'`); an unterminated quote
/// runs to the end of the line. Tokens without `=` are skipped.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let s = self.0;
            let start = s.iter().position(|&b| b != b' ')?;
            let s = &s[start..];
            let eq = s.iter().position(|&b| b == b'=' || b == b' ');
            let Some(eq) = eq.filter(|&i| s[i] == b'=') else {
                // A bare token: skip it.
                let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
                self.0 = &s[end..];
                continue;
            };
            let key = &s[..eq];
            let v = &s[eq + 1..];
            let end = match v.first() {
                Some(&q @ (b'"' | b'\'')) => v[1..].iter().position(|&b| b == q).map_or(v.len(), |i| i + 2),
                _ => v.iter().position(|&b| b == b' ').unwrap_or(v.len()),
            };
            self.0 = &v[end..];
            return Some((key, &v[..end]));
        }
    }
}

/// `1795315530.008:7` → (microseconds, serial).
fn stamp(s: &[u8]) -> Option<(i64, u64)> {
    let colon = s.iter().rposition(|&b| b == b':')?;
    let (time, serial) = (&s[..colon], &s[colon + 1..]);
    let dot = time.iter().position(|&b| b == b'.')?;
    let secs = i64::try_from(number(&time[..dot])?).ok()?;
    let frac = &time[dot + 1..];
    if frac.is_empty() || frac.len() > 6 {
        return None;
    }
    let mut micros = i64::try_from(number(frac)?).ok()?;
    for _ in frac.len()..6 {
        micros *= 10;
    }
    Some((secs.checked_mul(1_000_000)?.checked_add(micros)?, number(serial)?))
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

fn unquote(v: &[u8]) -> &[u8] {
    let v = v.strip_prefix(b"\"").unwrap_or(v);
    v.strip_suffix(b"\"").unwrap_or(v)
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSCALL: &[u8] = b"type=SYSCALL msg=audit(1795315530.008:7): arch=c000003e syscall=257 success=yes exit=3 \
a0=ffffff9c a1=7ffc14648ac0 a2=0 a3=0 items=1 ppid=17947 pid=17948 auid=4294967295 uid=65534 gid=65534 euid=65534 \
suid=65534 fsuid=65534 egid=65534 sgid=65534 fsgid=65534 tty=(none) ses=4294967295 comm=\"cat\" exe=\"/usr/bin/cat\" \
key=\"exfilmon-test\"\x1dARCH=x86_64 SYSCALL=openat AUID=\"unset\" UID=\"nobody\" GID=\"nogroup\" FSUID=\"nobody\"\n";

    #[test]
    fn enriched_syscall_record() {
        let r = Record::parse(SYSCALL).unwrap();
        assert!(r.is("SYSCALL"));
        assert_eq!((r.ts_us, r.serial), (1_795_315_530_008_000, 7));
        assert_eq!(r.id("fsuid"), Some(65534));
        assert_eq!(r.id("auid"), None, "unset login uid");
        assert_eq!(r.value("exe"), Some(Value::Text(b"/usr/bin/cat")));
        assert_eq!(r.value("key"), Some(Value::Text(b"exfilmon-test")));
        assert_eq!(r.raw("tty"), Some(&b"(none)"[..]));
        assert_eq!(r.enriched("FSUID"), Some(&b"nobody"[..]));
        assert_eq!(r.enriched("SYSCALL"), Some(&b"openat"[..]));
        // Resolved fields are not raw fields, and vice versa.
        assert_eq!(r.raw("FSUID"), None);
        assert_eq!(r.enriched("fsuid"), None);
    }

    #[test]
    fn raw_format_has_no_enriched_fields() {
        let line = b"type=CWD msg=audit(1795315530.008:7): cwd=\"/work/main\"";
        let r = Record::parse(line).unwrap();
        assert_eq!(r.value("cwd"), Some(Value::Text(b"/work/main")));
        assert_eq!(r.enriched("UID"), None);
    }

    #[test]
    fn hex_encoded_values_are_decoded() {
        let r = Record::parse(b"type=PATH msg=audit(1.5:9): item=0 name=2F746D702F61206220 nametype=NORMAL").unwrap();
        assert_eq!(r.value("name").unwrap().bytes().unwrap().as_ref(), b"/tmp/a b ");
        let r =
            Record::parse(b"type=PROCTITLE msg=audit(1.5:9): proctitle=636174002F6574632F686F73746E616D65").unwrap();
        assert_eq!(r.value("proctitle").unwrap().bytes().unwrap().as_ref(), b"cat\0/etc/hostname");
        assert_eq!(r.ts_us, 1_500_000);
    }

    #[test]
    fn bad_hex_is_a_value_not_a_failure() {
        let r = Record::parse(b"type=PATH msg=audit(1.000:9): name=2F7 inode=12 exe=ZZ").unwrap();
        assert_eq!(r.value("name"), Some(Value::BadHex(b"2F7")));
        assert_eq!(r.value("name").unwrap().bytes(), None);
        assert_eq!(r.value("exe"), Some(Value::Text(b"ZZ")));
        assert_eq!(r.number("inode"), Some(12));
    }

    #[test]
    fn null_values() {
        let r = Record::parse(b"type=SYSCALL msg=audit(1.000:9): key=(null) exe=? comm=").unwrap();
        assert_eq!(r.value("key"), Some(Value::Null));
        assert_eq!(r.value("exe"), Some(Value::Null));
        assert_eq!(r.value("comm"), Some(Value::Null));
    }

    #[test]
    fn missing_fields_and_headers() {
        assert_eq!(Record::parse(b""), Err(LineError::NoType));
        assert_eq!(Record::parse(b"hello world"), Err(LineError::NoType));
        assert_eq!(Record::parse(b"type=SYSCALL"), Err(LineError::NoStamp));
        assert_eq!(Record::parse(b"type= msg=audit(1.0:1):"), Err(LineError::NoType));
        assert_eq!(Record::parse(b"type=SYSCALL arch=x"), Err(LineError::NoStamp));
        assert_eq!(Record::parse(b"type=SYSCALL msg=audit(1.0:1"), Err(LineError::BadStamp));
        assert_eq!(Record::parse(b"type=SYSCALL msg=audit(abc):"), Err(LineError::BadStamp));
        assert_eq!(Record::parse(b"type=SYSCALL msg=audit(1:2):"), Err(LineError::BadStamp));
        assert_eq!(Record::parse(b"type=SYSCALL msg=audit(99999999999999999999.0:2):"), Err(LineError::BadStamp));
        assert_eq!(Record::parse(b"type=SYSCALL msg=audit(1.0000001:2):"), Err(LineError::BadStamp));
        let r = Record::parse(b"type=SYSCALL msg=audit(1.000:2):").unwrap();
        assert_eq!((r.raw("uid"), r.id("uid"), r.fields().count()), (None, None, 0));
        let r = Record::parse(b"type=SYSCALL msg=audit(1.000:2): uid=abc fsuid= =5 bare").unwrap();
        assert_eq!((r.id("uid"), r.id("fsuid")), (None, None));
    }

    #[test]
    fn huge_lines_are_refused() {
        let mut line = b"type=PATH msg=audit(1.000:2): name=".to_vec();
        line.resize(MAX_LINE + 1, b'A');
        assert_eq!(Record::parse(&line), Err(LineError::TooLong));
    }

    #[test]
    fn invalid_utf8_is_carried_as_bytes() {
        let r = Record::parse(b"type=PATH msg=audit(1.000:2): name=\"/tmp/\xff\xfe\" nametype=NORMAL").unwrap();
        assert_eq!(r.value("name"), Some(Value::Text(b"/tmp/\xff\xfe")));
        let r = Record::parse(b"type=\xff msg=audit(1.000:2): a=\xc3").unwrap();
        assert_eq!(r.kind, b"\xff");
        assert_eq!(r.raw("a"), Some(&b"\xc3"[..]));
    }

    #[test]
    fn nested_single_quoted_message_and_unterminated_quotes() {
        let line =
            b"node=web1 type=USER_START msg=audit(1.000:5): pid=1 uid=0 msg='op=PAM:session_open acct=\"nobody\" \
exe=\"/usr/sbin/runuser\" res=success'\x1dUID=\"root\"";
        let r = Record::parse(line).unwrap();
        assert!(r.is("USER_START"));
        assert_eq!(r.raw("exe"), None, "inside msg='...', not a field of its own");
        assert_eq!(r.enriched("UID"), Some(&b"root"[..]));
        let r = Record::parse(b"type=CWD msg=audit(1.000:5): cwd=\"/never/closed x=1").unwrap();
        assert_eq!(r.raw("cwd"), Some(&b"\"/never/closed x=1"[..]));
        assert_eq!(r.raw("x"), None);
    }

    #[test]
    fn no_panic_on_any_prefix_of_a_real_line() {
        for n in 0..SYSCALL.len() {
            if let Ok(r) = Record::parse(&SYSCALL[..n]) {
                let _ = (r.fields().count(), r.value("exe"), r.enriched("UID"));
            }
        }
    }
}
