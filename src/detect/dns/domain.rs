//! Which registered domain a query name is judged under, and which of its labels are judged.
//!
//! Names that need more than the public suffix list:
//! - **Appended search suffixes.** Windows and AD hosts append their DNS search suffix, so a
//!   tunnel's queries can read `<data>.tunnel.example.com.corp.local`. Trailing labels the
//!   list does not know (`local`, `lan`, `internal`, `corp`, `home`, any private TLD) and
//!   `home.arpa` are suffixes, not a domain: when a name with a known public suffix is left
//!   after removing them, that name is judged (its registered domain, its allow-list entry,
//!   the labels left of it). Names with no public domain inside stay under the private one.
//! - **Reverse zones.** A reverse lookup of a real address (`4.3.2.1.in-addr.arpa`, 32 nibbles
//!   under `ip6.arpa`, digits under `e164.arpa`) is ordinary and never judged. Anything else
//!   under those zones (a delegated reverse zone carrying data) is judged under the list's
//!   registered domain, e.g. `<data>.0.10.in-addr.arpa` under `10.in-addr.arpa`: coarse, but
//!   a tunnel cannot spread over many pairs by making its labels look like address parts.
//! - Everything else: the registered domain from the list, the labels left of it.
//!
//! Cost: one suffix-list lookup per name as before; the stripping loop (one lookup per label
//! removed) runs only for names under a suffix the list does not know, the reverse check only
//! for names ending in `arpa`.

/// Private suffixes that sit under a public one, so the suffix list cannot tell.
const PRIVATE: &[&[u8]] = &[b"home.arpa"];

/// Whether one label can be part of an address in a reverse zone.
type IsPart = fn(&[u8]) -> bool;

/// Reverse zones whose names are addresses: the zone, the labels an address has at most, and
/// what one label of an address looks like.
const REVERSE: &[(&[u8], usize, IsPart)] =
    &[(b"in-addr.arpa", 4, octet), (b"ip6.arpa", 32, nibble), (b"e164.arpa", 20, digit)];

/// How a name is judged; every slice is a suffix or prefix of the lower-cased name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split<'a> {
    /// The name without an appended private suffix: what the allow-list sees.
    pub judged: &'a [u8],
    /// The domain the name is counted under (a suffix of `judged`).
    pub registered: &'a [u8],
    /// A private suffix removed from the end, if any (e.g. `corp.local`).
    pub appended: &'a [u8],
    /// A reverse lookup of an address: never judged.
    pub reverse: bool,
}

fn known_domain(name: &[u8]) -> Option<&[u8]> {
    let d = psl::domain(name)?;
    (d.suffix().is_known() && !PRIVATE.iter().any(|p| ends_with_label(name, p))).then(|| d.as_bytes())
}

fn ends_with_label(name: &[u8], suffix: &[u8]) -> bool {
    name == suffix || name.len() > suffix.len() && name.ends_with(suffix) && name[name.len() - suffix.len() - 1] == b'.'
}

fn octet(l: &[u8]) -> bool {
    (1..=3).contains(&l.len()) && l.iter().all(u8::is_ascii_digit) && (l == b"0" || l[0] != b'0') && {
        l.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 255
    }
}

fn nibble(l: &[u8]) -> bool {
    l.len() == 1 && l[0].is_ascii_hexdigit()
}

fn digit(l: &[u8]) -> bool {
    l.len() == 1 && l[0].is_ascii_digit()
}

/// Splits a lower-cased presentation name (labels joined by dots).
pub(super) fn split(name: &[u8]) -> Split<'_> {
    if name.ends_with(b"arpa") {
        if let Some(s) = reverse(name) {
            return s;
        }
    }
    if let Some(registered) = known_domain(name) {
        return Split { judged: name, registered, appended: &[], reverse: false };
    }
    // Strip trailing labels while the rest has no known public suffix.
    let mut rest = name;
    while let Some(dot) = rest.iter().rposition(|&b| b == b'.') {
        rest = &rest[..dot];
        if let Some(registered) = known_domain(rest) {
            let appended = &name[rest.len() + 1..];
            if rest.ends_with(b"arpa") {
                if let Some(s) = reverse(rest) {
                    return Split { appended, ..s };
                }
            }
            return Split { judged: rest, registered, appended, reverse: false };
        }
    }
    let registered = match PRIVATE.iter().find(|p| ends_with_label(name, p)) {
        Some(p) => &name[name.len() - p.len()..],
        None => psl::domain(name).map_or(name, |d| d.as_bytes()),
    };
    Split { judged: name, registered, appended: &[], reverse: false }
}

/// Names under a reverse zone: ordinary when every label left of the zone is part of an
/// address, otherwise judged under the zone those address labels name.
fn reverse(name: &[u8]) -> Option<Split<'_>> {
    let &(zone, most, is_part) = REVERSE.iter().find(|(z, _, _)| ends_with_label(name, z))?;
    if name.len() == zone.len() {
        return Some(Split { judged: name, registered: name, appended: &[], reverse: true });
    }
    let left = &name[..name.len() - zone.len() - 1];
    // Address labels from the right, at most `most` of them; `start` is where the last one
    // taken begins: 0 when the whole name is an address.
    let (mut end, mut start, mut parts) = (left.len(), None, 0);
    while parts < most {
        let from = left[..end].iter().rposition(|&b| b == b'.').map_or(0, |i| i + 1);
        if !is_part(&left[from..end]) {
            break;
        }
        parts += 1;
        start = Some(from);
        if from == 0 {
            break;
        }
        end = from - 1;
    }
    let registered = psl::domain(name).map_or(name, |d| d.as_bytes());
    if start == Some(0) {
        return Some(Split { judged: name, registered, appended: &[], reverse: true });
    }
    Some(Split { judged: name, registered, appended: &[], reverse: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> (String, String, String, bool) {
        let x = split(name.as_bytes());
        let t = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        (t(x.judged), t(x.registered), t(x.appended), x.reverse)
    }

    #[test]
    fn ordinary_names_use_the_suffix_list() {
        assert_eq!(s("www.example.co.uk"), ("www.example.co.uk".into(), "example.co.uk".into(), "".into(), false));
        assert_eq!(s("example.com").1, "example.com");
    }

    #[test]
    fn appended_search_suffixes_are_suffixes() {
        let x = s("4a6f686e20536d697468.tunnel-domain.com.corp.local");
        assert_eq!(
            x,
            ("4a6f686e20536d697468.tunnel-domain.com".into(), "tunnel-domain.com".into(), "corp.local".into(), false)
        );
        assert_eq!(s("abc.t.example.co.uk.lan").1, "example.co.uk");
        assert_eq!(s("abc.tun.example.net.internal").1, "example.net");
        assert_eq!(s("abc.tun.example.net.home.arpa").1, "example.net");
        assert_eq!(s("abc.tun.example.net.dept.corp.home").2, "dept.corp.home");
        // Names under no public suffix at all keep the list's default rule (`tun.test`).
        assert_eq!(s("abc.x.tun.test"), ("abc.x.tun.test".into(), "tun.test".into(), "".into(), false));
    }

    #[test]
    fn internal_names_stay_under_their_private_domain() {
        assert_eq!(s("dc01.corp.local"), ("dc01.corp.local".into(), "corp.local".into(), "".into(), false));
        assert_eq!(s("printer.home.arpa").1, "home.arpa");
        assert_eq!(s("local").1, "local");
        // Only a public suffix left: nothing registered inside.
        assert_eq!(s("x.com.corp.local").1, "x.com");
        assert_eq!(s("com.corp.local").1, "corp.local");
    }

    #[test]
    fn reverse_lookups_of_addresses_are_ordinary() {
        for name in [
            "4.3.2.10.in-addr.arpa",
            "0.10.in-addr.arpa",
            "in-addr.arpa",
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa",
            "8.b.d.0.1.0.0.2.ip6.arpa",
            "4.3.2.1.5.5.5.0.2.1.e164.arpa",
        ] {
            assert!(split(name.as_bytes()).reverse, "{name}");
        }
        assert!(split(b"4.3.2.10.in-addr.arpa.corp.local").reverse);
    }

    #[test]
    fn data_under_reverse_zones_is_judged_under_the_zone() {
        assert_eq!(s("nbswy3dpeb3w64tm.1.0.10.in-addr.arpa").1, "10.in-addr.arpa");
        assert_eq!(s("nbswy3dp.a.8.b.d.0.1.0.0.2.ip6.arpa").1, "2.ip6.arpa");
        for name in ["256.1.0.10.in-addr.arpa", "01.1.0.10.in-addr.arpa", "x.10.in-addr.arpa"] {
            assert_eq!(s(name), (name.into(), "10.in-addr.arpa".into(), "".into(), false));
        }
        assert!(!split(b"abc.in-addr.arpa").reverse);
        assert!(!split(b"5.4.3.2.10.in-addr.arpa").reverse, "five octets are not an address");
        let x = s("aa.bb.0.10.in-addr.arpa.corp.local");
        assert_eq!((x.1.as_str(), x.2.as_str(), x.3), ("10.in-addr.arpa", "corp.local", false));
    }
}
