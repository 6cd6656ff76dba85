//! Choosing and ordering a report's rows after its query: `--kind`, `--severity`, `--dst`,
//! `--sort`, `--reverse`, `--limit`. They work on the table's named columns, so every report
//! with a `kind`, `severity` or `dst` column takes them the same way; the command refuses an
//! option for a report without the column.

use std::cmp::Ordering;

use super::table::{Cell, Table};

/// What to keep, in which order, and how many.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Select {
    /// Rows whose `kind` is one of these (any when empty).
    pub kinds: Vec<String>,
    /// Rows whose `severity` is at least this: low, medium, high.
    pub min_severity: Option<String>,
    /// Rows whose `dst` is this address, this address with any port (`10.0.0.1` matches
    /// `10.0.0.1:22/tcp`), this `address:port`, or this domain or one below it.
    pub dst: Option<String>,
    /// Column to order by: numbers and sizes biggest first, times oldest first, text A to Z.
    pub sort: Option<String>,
    pub reverse: bool,
    /// At most this many rows, after sorting.
    pub limit: Option<usize>,
}

pub fn severity_rank(s: &str) -> Option<u8> {
    match s {
        "low" => Some(1),
        "medium" => Some(2),
        "high" => Some(3),
        _ => None,
    }
}

/// Whether `dst` (`addr:port/proto`, `[v6]:port/proto`, an address or a domain) is what
/// `want` names.
pub fn dst_matches(dst: &str, want: &str) -> bool {
    let want = want.trim().trim_end_matches('.').to_ascii_lowercase();
    let dst = dst.to_ascii_lowercase();
    if want.is_empty() {
        return false;
    }
    let host_port = dst.split('/').next().unwrap_or(&dst);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None if host_port.matches(':').count() == 1 => host_port.split(':').next().unwrap_or(host_port),
        None => host_port,
    };
    let bare = want.trim_start_matches('[').split(']').next().unwrap_or(&want);
    dst == want || host_port == want || host == bare || host.ends_with(&format!(".{want}"))
}

impl Select {
    /// The columns this selection needs, with the option that needs each.
    pub fn needs(&self) -> Vec<(&'static str, &'static str)> {
        let mut n = Vec::new();
        if !self.kinds.is_empty() {
            n.push(("--kind", "kind"));
        }
        if self.min_severity.is_some() {
            n.push(("--severity", "severity"));
        }
        if self.dst.is_some() {
            n.push(("--dst", "dst"));
        }
        n
    }

    pub fn apply(&self, t: &mut Table) -> Result<(), String> {
        let index = |name: &str| t.columns.iter().position(|c| c.name == name);
        let names = || t.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ");
        let text = |row: &[Cell], i: usize| match &row[i] {
            Cell::Text(s) | Cell::Escaped(s) => Some(s.clone()),
            _ => None,
        };
        if !self.kinds.is_empty() {
            let i = index("kind").ok_or("--kind: this report has no kind column")?;
            t.rows.retain(|r| text(r, i).is_some_and(|k| self.kinds.contains(&k)));
        }
        if let Some(min) = &self.min_severity {
            let i = index("severity").ok_or("--severity: this report has no severity column")?;
            let min = severity_rank(min).ok_or_else(|| format!("--severity: {min:?} is not low, medium or high"))?;
            t.rows.retain(|r| text(r, i).and_then(|s| severity_rank(&s)).is_some_and(|s| s >= min));
        }
        if let Some(want) = &self.dst {
            let i = index("dst").ok_or("--dst: this report has no dst column")?;
            t.rows.retain(|r| text(r, i).is_some_and(|d| dst_matches(&d, want)));
        }
        if let Some(name) = &self.sort {
            let i = index(name).ok_or_else(|| format!("--sort: no column {name:?}; this report has {}", names()))?;
            // Stable: rows equal in the column keep the report's own order.
            t.rows.sort_by(|a, b| natural(&a[i], &b[i]));
        }
        if self.reverse {
            t.rows.reverse();
        }
        if let Some(n) = self.limit {
            t.rows.truncate(n);
        }
        Ok(())
    }
}

/// Biggest numbers first, oldest times first, text A to Z, empty cells last.
fn natural(a: &Cell, b: &Cell) -> Ordering {
    match (a, b) {
        (Cell::Null, Cell::Null) => Ordering::Equal,
        (Cell::Null, _) => Ordering::Greater,
        (_, Cell::Null) => Ordering::Less,
        (Cell::Int(x) | Cell::Bytes(x), Cell::Int(y) | Cell::Bytes(y)) => y.cmp(x),
        (Cell::Time(x), Cell::Time(y)) => x.cmp(y),
        (Cell::Text(x) | Cell::Escaped(x), Cell::Text(y) | Cell::Escaped(y)) => {
            // Severities sort by rank, highest first.
            match (severity_rank(x), severity_rank(y)) {
                (Some(p), Some(q)) => q.cmp(&p),
                _ => x.cmp(y),
            }
        }
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::col;
    use super::*;

    #[test]
    fn dst_forms() {
        assert!(dst_matches("10.0.0.1:22/tcp", "10.0.0.1"));
        assert!(dst_matches("10.0.0.1:22/tcp", "10.0.0.1:22"));
        assert!(!dst_matches("10.0.0.11:22/tcp", "10.0.0.1"));
        assert!(dst_matches("[2001:db8::1]:443/tcp", "2001:db8::1"));
        assert!(dst_matches("2001:db8::1", "2001:db8::1"));
        assert!(dst_matches("x1.tunnel.example.com", "example.com"));
        assert!(!dst_matches("notexample.com", "example.com"));
        assert!(!dst_matches("10.0.0.1:22/tcp", ""));
    }

    #[test]
    fn filter_sort_limit() {
        let row = |k: &str, s: &str, b: i64| vec![Cell::Text(k.into()), Cell::Text(s.into()), Cell::Bytes(b)];
        let mut t = Table {
            title: String::new(),
            columns: vec![col("kind"), col("severity"), col("bytes")],
            rows: vec![row("volume", "low", 5), row("dns_tunnel", "high", 1), row("volume", "medium", 9)],
        };
        let s = Select { min_severity: Some("medium".into()), sort: Some("bytes".into()), ..Select::default() };
        s.apply(&mut t).unwrap();
        assert_eq!(t.rows, vec![row("volume", "medium", 9), row("dns_tunnel", "high", 1)]);
        let s = Select { kinds: vec!["dns_tunnel".into()], limit: Some(5), ..Select::default() };
        s.apply(&mut t).unwrap();
        assert_eq!(t.rows.len(), 1);
        let e = Select { sort: Some("nope".into()), ..Select::default() }.apply(&mut t).unwrap_err();
        assert!(e.contains("kind, severity, bytes"), "{e}");
        assert!(Select { dst: Some("x".into()), ..Select::default() }.apply(&mut t).is_err());
    }
}
