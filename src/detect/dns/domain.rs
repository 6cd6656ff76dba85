//! Which registered domain a query name is judged under, and which of its labels are judged.
//!
//! Names that need more than the public suffix list:
//! - **Appended search suffixes.** Windows and AD hosts append their DNS search suffix, so a
//!   tunnel's queries can read `<data>.tunnel.example.com.corp.local`. Trailing labels the
//!   list does not know (`local`, `lan`, `internal`, `corp`, `home`, any private TLD) and
//!   `home.arpa` are suffixes, not a domain: when a name with a known public suffix is left
//!   after removing them, that name is judged (its registered domain, its allow-list entry,
//!   the labels left of it). Names with no public domain inside stay under the private one.
//! - Everything else: the registered domain from the list, the labels left of it.
//!
//! Cost: one suffix-list lookup per name as before; the stripping loop (one lookup per label
//! removed) runs only for names under a suffix the list does not know.

/// Private suffixes that sit under a public one, so the suffix list cannot tell.
const PRIVATE: &[&[u8]] = &[b"home.arpa"];

/// How a name is judged; every slice is a suffix or prefix of the lower-cased name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Split<'a> {
    /// The name without an appended private suffix: what the allow-list sees.
    pub judged: &'a [u8],
    /// The domain the name is counted under (a suffix of `judged`).
    pub registered: &'a [u8],
    /// A private suffix removed from the end, if any (e.g. `corp.local`).
    pub appended: &'a [u8],
}

fn known_domain(name: &[u8]) -> Option<&[u8]> {
    let d = psl::domain(name)?;
    (d.suffix().is_known() && !PRIVATE.iter().any(|p| ends_with_label(name, p))).then(|| d.as_bytes())
}

fn ends_with_label(name: &[u8], suffix: &[u8]) -> bool {
    name == suffix || name.len() > suffix.len() && name.ends_with(suffix) && name[name.len() - suffix.len() - 1] == b'.'
}

/// Splits a lower-cased presentation name (labels joined by dots).
pub(super) fn split(name: &[u8]) -> Split<'_> {
    if let Some(registered) = known_domain(name) {
        return Split { judged: name, registered, appended: &[] };
    }
    // Strip trailing labels while the rest has no known public suffix.
    let mut rest = name;
    while let Some(dot) = rest.iter().rposition(|&b| b == b'.') {
        rest = &rest[..dot];
        if let Some(registered) = known_domain(rest) {
            let appended = &name[rest.len() + 1..];
            return Split { judged: rest, registered, appended };
        }
    }
    let registered = match PRIVATE.iter().find(|p| ends_with_label(name, p)) {
        Some(p) => &name[name.len() - p.len()..],
        None => psl::domain(name).map_or(name, |d| d.as_bytes()),
    };
    Split { judged: name, registered, appended: &[] }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> (String, String, String) {
        let x = split(name.as_bytes());
        let t = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        (t(x.judged), t(x.registered), t(x.appended))
    }

    #[test]
    fn ordinary_names_use_the_suffix_list() {
        assert_eq!(s("www.example.co.uk"), ("www.example.co.uk".into(), "example.co.uk".into(), "".into()));
        assert_eq!(s("example.com").1, "example.com");
    }

    #[test]
    fn appended_search_suffixes_are_suffixes() {
        let x = s("4a6f686e20536d697468.tunnel-domain.com.corp.local");
        assert_eq!(
            x,
            ("4a6f686e20536d697468.tunnel-domain.com".into(), "tunnel-domain.com".into(), "corp.local".into())
        );
        assert_eq!(s("abc.t.example.co.uk.lan").1, "example.co.uk");
        assert_eq!(s("abc.tun.example.net.internal").1, "example.net");
        assert_eq!(s("abc.tun.example.net.home.arpa").1, "example.net");
        assert_eq!(s("abc.tun.example.net.dept.corp.home").2, "dept.corp.home");
        // Names under no public suffix at all keep the list's default rule (`tun.test`).
        assert_eq!(s("abc.x.tun.test"), ("abc.x.tun.test".into(), "tun.test".into(), "".into()));
    }

    #[test]
    fn internal_names_stay_under_their_private_domain() {
        assert_eq!(s("dc01.corp.local"), ("dc01.corp.local".into(), "corp.local".into(), "".into()));
        assert_eq!(s("printer.home.arpa").1, "home.arpa");
        assert_eq!(s("local").1, "local");
        // Only a public suffix left: nothing registered inside.
        assert_eq!(s("x.com.corp.local").1, "x.com");
        assert_eq!(s("com.corp.local").1, "corp.local");
    }
}
