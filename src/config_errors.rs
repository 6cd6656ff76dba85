//! Configuration errors made more useful: where an error inside a `[[sink]]` table really is
//! (serde reports a table that fails its own checks at the start of the array), and a hint
//! for a table written `[volume]` where an array of tables, `[[volume]]`, is meant.

/// The keys that hold arrays of tables.
const ARRAYS: &[&str] = &["volume", "sink"];

/// Refines the `(offset, message)` of a parse error of `text`.
pub fn refine(text: &str, offset: usize, message: String) -> (usize, String) {
    let line = line_at(text, offset).trim();
    if message.contains("expected a sequence") {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')).map(str::trim) {
            if !name.starts_with('[') && ARRAYS.contains(&name) {
                return (
                    offset,
                    format!("{message}: [{name}] is one table, but {name} takes a list: write [[{name}]] for each one"),
                );
            }
        }
    }
    if line == "[[sink]]" {
        if let Some((i, e)) = failing_sink(text) {
            if let Some(at) = headers(text, "sink").nth(i) {
                return (at, format!("[[sink]] {}: {e}", i + 1));
            }
        }
    }
    (offset, message)
}

fn line_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    text.get(start..end).unwrap_or("")
}

/// Offsets of the lines that open a `[[name]]` table.
fn headers<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = usize> + 'a {
    let header = format!("[[{name}]]");
    let mut at = 0;
    text.split_inclusive('\n').filter_map(move |l| {
        let start = at;
        at += l.len();
        (l.trim() == header).then(|| start + (l.len() - l.trim_start().len()))
    })
}

/// The first `[[sink]]` table (index) that does not deserialize on its own, and why.
fn failing_sink(text: &str) -> Option<(usize, String)> {
    let table: toml::Table = text.parse().ok()?;
    let sinks = table.get("sink")?.as_array()?;
    sinks.iter().enumerate().find_map(|(i, v)| {
        v.clone().try_into::<crate::sink::SinkConfig>().err().map(|e| (i, e.message().trim().to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_written_as_one_table_gets_a_hint() {
        let text = "[volume]\nbytes = \"1MB\"\n";
        let (_, m) = refine(text, 0, "invalid type: map, expected a sequence".into());
        assert!(m.contains("write [[volume]]"), "{m}");
    }

    #[test]
    fn a_bad_second_sink_points_at_its_own_header() {
        let text =
            "[[sink]]\ntype = \"jsonl\"\npath = \"/tmp/a\"\n\n  [[sink]]\ntype = \"syslog\"\naddress = \"bogus\"\n";
        let (at, m) = refine(text, 0, "syslog address \"bogus\"".into());
        assert_eq!(&text[at..at + 8], "[[sink]]");
        assert_eq!(text[..at].matches('\n').count() + 1, 5);
        assert!(m.starts_with("[[sink]] 2: syslog address"), "{m}");
    }
}
