//! Terminal-safe rendering of strings that came from the wire or from other users.
//!
//! Anything an attacker controls (DNS names, audit fields, file and user names) passes through
//! [`printable`] before it reaches a terminal, a CSV cell or a log line: control bytes,
//! non-ASCII bytes and backslashes become `\xNN` / `\\`, so the output is plain ASCII and the
//! original bytes can be recovered. What goes into an HTML page passes through [`html`]
//! instead, in text nodes and attribute values alike.

use std::borrow::Cow;

/// Escapes bytes into printable ASCII. Borrows when nothing needs escaping.
pub fn printable_bytes(b: &[u8]) -> Cow<'_, str> {
    if b.iter().all(|&c| is_plain(c)) {
        // All bytes are printable ASCII, so this cannot fail.
        return Cow::Borrowed(std::str::from_utf8(b).unwrap_or_default());
    }
    let mut out = String::with_capacity(b.len() + 8);
    for &c in b {
        push_escaped(&mut out, c);
    }
    Cow::Owned(out)
}

/// Escapes a string into printable ASCII (see [`printable_bytes`]).
pub fn printable(s: &str) -> Cow<'_, str> {
    printable_bytes(s.as_bytes())
}

/// Escapes what a terminal would act on in a message line (error text quoting file names
/// and values): control characters (C0, DEL, C1, so ESC and CR) and the bidirectional
/// overrides that reorder what is shown. Other text, backslashes and non-ASCII letters
/// included, is left alone, so messages stay readable; not reversible, unlike [`printable`].
pub fn message(s: &str) -> Cow<'_, str> {
    let acts = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(acts) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if c.is_ascii_control() => push_escaped(&mut out, c as u8),
            c if acts(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes text for HTML: `&`, `<`, `>`, `"` and `'` become character references, so the
/// result is inert in a text node and in a quoted attribute value (and in SVG, which shares
/// the rules). Borrows when nothing needs escaping.
pub fn html(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_plain(c: u8) -> bool {
    (0x20..0x7f).contains(&c) && c != b'\\'
}

fn push_escaped(out: &mut String, c: u8) {
    use std::fmt::Write;
    if is_plain(c) {
        out.push(c as char);
    } else if c == b'\\' {
        out.push_str("\\\\");
    } else {
        let _ = write!(out, "\\x{c:02x}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(printable("www.example.com"), Cow::Borrowed(_)));
    }

    #[test]
    fn ansi_escape_and_carriage_return_are_escaped() {
        assert_eq!(printable("a\x1b[31mb\rc"), "a\\x1b[31mb\\x0dc");
    }

    #[test]
    fn message_escapes_only_what_a_terminal_acts_on() {
        assert_eq!(message("cannot open C:\\dos \u{e9}t\u{e9}.pcap"), "cannot open C:\\dos \u{e9}t\u{e9}.pcap");
        assert_eq!(message("x\x1b[2J\ry\u{9b}z\u{202e}w"), "x\\x1b[2J\\x0dy\\u{9b}z\\u{202e}w");
    }

    #[test]
    fn html_markup_in_a_dns_name_becomes_text() {
        assert!(matches!(html("www.example.com"), Cow::Borrowed(_)));
        assert_eq!(
            html("<img src=x onerror=alert(1)>.evil.example"),
            "&lt;img src=x onerror=alert(1)&gt;.evil.example"
        );
        assert_eq!(html(r#"a" onmouseover='x' & b"#), "a&quot; onmouseover=&#39;x&#39; &amp; b");
        // Escaping twice shows the first escape as text rather than undoing it.
        assert_eq!(html(&html("<")), "&amp;lt;");
    }

    #[test]
    fn invalid_utf8_and_backslash_are_escaped() {
        assert_eq!(printable_bytes(b"\xff\\x"), "\\xff\\\\x");
    }
}
