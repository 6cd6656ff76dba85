//! A report's result as typed cells, and its three renderings: an aligned table for people,
//! CSV and JSON for programs (written by [`super::stream::TableWriter`]). Text cells are
//! escaped for terminals in the table and CSV, and kept from starting a spreadsheet formula in
//! CSV.

use std::io::{self, Write};

use serde_json::{Map, Value};

use super::stream::TableWriter;
use crate::escape::printable;
use crate::units::human_bytes;
use crate::units::rfc3339;

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    /// Text already made terminal-safe by [`crate::escape`] where it was stored (names from
    /// the wire): shown as is, so its escapes are not escaped twice.
    Escaped(String),
    Int(i64),
    /// A byte count: human units in tables, a plain number elsewhere.
    Bytes(i64),
    /// Microseconds since the epoch: local time with its zone in tables (or UTC, `--utc`), RFC
    /// 3339 UTC elsewhere.
    Time(i64),
    /// Structured evidence: JSON only.
    Json(Value),
}

impl Cell {
    pub fn opt_text(s: Option<String>) -> Cell {
        s.map_or(Cell::Null, Cell::Text)
    }

    pub fn opt_int(n: Option<i64>) -> Cell {
        n.map_or(Cell::Null, Cell::Int)
    }

    pub(super) fn json(&self) -> Value {
        match self {
            Cell::Null => Value::Null,
            Cell::Text(s) | Cell::Escaped(s) => Value::String(s.clone()),
            Cell::Int(n) | Cell::Bytes(n) => Value::from(*n),
            Cell::Time(t) => Value::String(rfc3339(*t)),
            Cell::Json(v) => v.clone(),
        }
    }

    pub(super) fn plain(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => printable(s).into_owned(),
            // Re-escaped whole if it somehow holds an unsafe byte: safety before looks.
            Cell::Escaped(s) if s.bytes().all(|b| (0x20..0x7f).contains(&b)) => s.clone(),
            Cell::Escaped(s) => printable(s).into_owned(),
            Cell::Int(n) | Cell::Bytes(n) => n.to_string(),
            Cell::Time(t) => rfc3339(*t),
            Cell::Json(v) => printable(&v.to_string()).into_owned(),
        }
    }

    /// The CSV cell: text a spreadsheet would run as a formula (starting `=`, `+`, `-`, `@`,
    /// tab or CR) gets a leading `'`, as OWASP's CSV injection advice says. Numbers (`-5` from
    /// a numeric column) are left alone.
    pub(super) fn csv(&self) -> String {
        let s = self.plain();
        match self {
            Cell::Text(_) | Cell::Escaped(_) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
            _ => s,
        }
    }

    /// As the human table shows it: terminal-safe, units and times for people.
    pub(super) fn human(&self) -> String {
        match self {
            Cell::Null => "-".into(),
            Cell::Bytes(n) => human_bytes((*n).max(0) as u64),
            Cell::Time(t) => super::zone::human(*t),
            other => other.plain(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: &'static str,
    /// Shown in the human table (JSON and CSV always carry every column).
    pub in_table: bool,
    /// The human table's header when not the name in capitals.
    pub header: Option<&'static str>,
}

pub const fn col(name: &'static str) -> Column {
    Column { name, in_table: true, header: None }
}

pub const fn hidden(name: &'static str) -> Column {
    Column { name, in_table: false, header: None }
}

/// A column whose table header is not its name: `observer` is the table's HOST.
pub const fn titled(name: &'static str, header: &'static str) -> Column {
    Column { name, in_table: true, header: Some(header) }
}

impl Column {
    pub fn header(&self) -> String {
        self.header.map_or_else(|| self.name.to_uppercase(), str::to_owned)
    }
}

#[derive(Debug, Clone)]
pub struct Table {
    pub title: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl Table {
    pub fn json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    let obj: Map<String, Value> =
                        self.columns.iter().zip(row).map(|(c, cell)| (c.name.to_string(), cell.json())).collect();
                    Value::Object(obj)
                })
                .collect(),
        )
    }

    /// Renders the table in `format` (through [`TableWriter`], as every report).
    pub fn write(&self, format: Format, out: &mut dyn Write) -> io::Result<()> {
        let mut w = TableWriter::new(&self.title, &self.columns, format, out)?;
        for row in &self.rows {
            w.write_row(row)?;
        }
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            title: String::new(),
            columns: vec![col("name"), col("bytes"), hidden("extra")],
            rows: vec![vec![Cell::Text("evil\x1b[2J".into()), Cell::Bytes(2048), Cell::Int(1)]],
        }
    }

    #[test]
    fn terminal_escapes_never_reach_table_or_csv() {
        for format in [Format::Table, Format::Csv] {
            let mut out = Vec::new();
            table().write(format, &mut out).unwrap();
            assert!(!out.contains(&0x1b), "{format:?}");
            assert!(String::from_utf8(out).unwrap().contains("evil\\x1b[2J"));
        }
    }

    #[test]
    fn csv_text_never_starts_a_formula() {
        let text = ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "=cmd|' /C calc'!A0"];
        let mut rows: Vec<Vec<Cell>> = text.iter().map(|t| vec![Cell::Text((*t).into()), Cell::Int(-5)]).collect();
        rows.push(vec![Cell::Escaped("-rf".into()), Cell::Bytes(-1)]);
        rows.push(vec![Cell::Text("a=b".into()), Cell::Null]);
        let t = Table { title: String::new(), columns: vec![col("name"), col("n")], rows };
        let mut out = Vec::new();
        t.write(Format::Csv, &mut out).unwrap();
        let mut r = csv::Reader::from_reader(&out[..]);
        let cells: Vec<(String, String)> =
            r.records().map(|r| r.unwrap()).map(|r| (r[0].to_string(), r[1].to_string())).collect();
        for (name, n) in &cells[..text.len()] {
            assert!(!name.starts_with(['=', '+', '-', '@', '\t', '\r']), "{name:?}");
            assert_eq!(n, "-5");
        }
        assert_eq!(cells[0].0, "'=1+1");
        assert_eq!(cells[3].0, "'@SUM(A1)");
        // Tab and CR are escaped for terminals before they could start a cell.
        assert_eq!(cells[4].0, "\\x09x");
        assert_eq!(cells[text.len()], ("'-rf".to_string(), "-1".to_string()));
        assert_eq!(cells[text.len() + 1], ("a=b".to_string(), String::new()));
    }

    #[test]
    fn json_keeps_the_raw_string_validly_escaped() {
        let mut out = Vec::new();
        table().write(Format::Json, &mut out).unwrap();
        assert!(!out.contains(&0x1b));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["name"], "evil\x1b[2J");
        assert_eq!(v[0]["bytes"], 2048);
    }

    /// A reader gone away (`report --format csv | head -1`) must stay a broken pipe, which
    /// `main` turns into success, also once the CSV writer's own buffer has filled.
    #[test]
    fn csv_keeps_a_broken_pipe_a_broken_pipe() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        for rows in [1, 10_000] {
            let mut t = table();
            t.rows = vec![t.rows[0].clone(); rows];
            let e = t.write(Format::Csv, &mut Closed).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{rows} rows: {e}");
        }
    }

    #[test]
    fn table_uses_human_units_and_hides_columns() {
        let mut out = Vec::new();
        table().write(Format::Table, &mut out).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("2.0 KiB"));
        assert!(!s.contains("EXTRA"));
    }
}
