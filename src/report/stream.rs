//! Reports written row by row as SQLite hands them over (issue 13): memory stays flat however
//! many rows a report has. JSON and CSV rows go out as they come; the aligned table for people
//! keeps one rendered line per row to size its columns (a few dozen bytes a row).
//!
//! A report function feeds [`Rows`]: a [`TableWriter`] streaming out, or a [`Table`] collecting
//! a few (the summary's top five, small reports). [`Table::write`] goes through a
//! `TableWriter` too, so every report is rendered by this one code.

use std::io::{self, Write};

use super::table::{Cell, Column, Format, Table};

/// Where a report's rows go, one at a time.
pub trait Rows {
    fn row(&mut self, row: Vec<Cell>) -> io::Result<()>;
}

impl Rows for Table {
    fn row(&mut self, row: Vec<Cell>) -> io::Result<()> {
        self.rows.push(row);
        Ok(())
    }
}

/// A report's title and columns, known before its first row.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub title: &'static str,
    pub columns: &'static [Column],
}

impl Layout {
    /// An empty table of this layout, to collect rows in.
    pub fn table(&self) -> Table {
        Table { title: self.title.into(), columns: self.columns.to_vec(), rows: Vec::new() }
    }
}

enum Sink<'o> {
    /// Rows written so far. Buffered: a terminal's stdout would write every line on its own.
    Json(io::BufWriter<&'o mut dyn Write>, u64),
    Csv(Box<csv::Writer<&'o mut dyn Write>>),
    /// Each row's shown cells, rendered and joined by U+001F (rendered cells never hold a
    /// control character), and the widest cell per shown column so far.
    Table {
        out: &'o mut dyn Write,
        title: String,
        lines: Vec<String>,
        widths: Vec<usize>,
    },
}

/// Writes a report in `format` as its rows arrive; [`finish`](Self::finish) ends it.
pub struct TableWriter<'o> {
    columns: Vec<Column>,
    shown: Vec<usize>,
    sink: Sink<'o>,
}

/// Writes through to the inner writer, two spaces after every line break: a pretty-printed
/// value one level into an array.
struct Indented<'a>(&'a mut dyn Write);

impl Write for Indented<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.0.write_all(b"\n  ")?;
            }
            self.0.write_all(line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The writer's own error, unwrapped: a closed pipe stays a BrokenPipe (exit 0).
fn csv_err(e: csv::Error) -> io::Error {
    let text = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        _ => io::Error::other(text),
    }
}

impl<'o> TableWriter<'o> {
    pub fn new(title: &str, columns: &[Column], format: Format, out: &'o mut dyn Write) -> io::Result<Self> {
        let shown: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].in_table).collect();
        let sink = match format {
            Format::Json => {
                let mut out = io::BufWriter::with_capacity(1 << 16, out);
                out.write_all(b"[")?;
                Sink::Json(out, 0)
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(out);
                w.write_record(columns.iter().map(|c| c.name)).map_err(csv_err)?;
                Sink::Csv(Box::new(w))
            }
            Format::Table => Sink::Table {
                out,
                title: title.to_owned(),
                lines: Vec::new(),
                widths: shown.iter().map(|&i| columns[i].header().len()).collect(),
            },
        };
        Ok(TableWriter { columns: columns.to_vec(), shown, sink })
    }

    /// Writes (or, for the aligned table, keeps) one row.
    pub fn write_row(&mut self, row: &[Cell]) -> io::Result<()> {
        match &mut self.sink {
            Sink::Json(out, n) => {
                let obj: serde_json::Map<String, serde_json::Value> =
                    self.columns.iter().zip(row).map(|(c, cell)| (c.name.to_string(), cell.json())).collect();
                // As serde_json's pretty printer lays out an array of objects: one level in.
                out.write_all(if *n == 0 { b"\n  " } else { b",\n  " })?;
                let mut ser = serde_json::Serializer::pretty(Indented(out));
                serde::Serialize::serialize(&obj, &mut ser)?;
                *n += 1;
            }
            Sink::Csv(w) => w.write_record(row.iter().map(Cell::csv)).map_err(csv_err)?,
            Sink::Table { lines, widths, .. } => {
                let mut line = String::new();
                for (k, &i) in self.shown.iter().enumerate() {
                    let cell = row.get(i).map_or_else(String::new, Cell::human);
                    widths[k] = widths[k].max(cell.chars().count());
                    if k > 0 {
                        line.push('\u{1f}');
                    }
                    line.push_str(&cell);
                }
                lines.push(line);
            }
        }
        Ok(())
    }

    /// Ends the report: closes the JSON array, flushes the CSV, lays out the table.
    pub fn finish(self) -> io::Result<()> {
        match self.sink {
            Sink::Json(mut out, n) => {
                out.write_all(if n == 0 { b"]\n" } else { b"\n]\n" })?;
                out.flush()
            }
            Sink::Csv(mut w) => w.flush(),
            Sink::Table { out, title, lines, widths } => {
                if !title.is_empty() {
                    writeln!(out, "{title}")?;
                    writeln!(out, "{}", "=".repeat(title.len()))?;
                }
                let last = widths.len().saturating_sub(1);
                let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
                    for (i, (c, w)) in cells.zip(&widths).enumerate() {
                        if i == last {
                            write!(out, "{c}")?;
                        } else {
                            write!(out, "{c:<w$}  ")?;
                        }
                    }
                    writeln!(out)
                };
                let headers: Vec<String> = self.shown.iter().map(|&i| self.columns[i].header()).collect();
                line(out, &mut headers.iter().map(String::as_str))?;
                if lines.is_empty() {
                    writeln!(out, "(none)")?;
                }
                for l in &lines {
                    line(out, &mut l.split('\u{1f}'))?;
                }
                Ok(())
            }
        }
    }
}

impl Rows for TableWriter<'_> {
    fn row(&mut self, row: Vec<Cell>) -> io::Result<()> {
        self.write_row(&row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::table::{col, hidden};

    /// Streamed JSON is what serde_json's pretty printer makes of the whole array, nested
    /// evidence included, byte for byte; an empty report is `[]`.
    #[test]
    fn streamed_json_is_the_pretty_array_byte_for_byte() {
        let columns = [col("name"), col("bytes"), hidden("details")];
        let rows = [
            vec![Cell::Text("a\nb".into()), Cell::Bytes(5), Cell::Json(serde_json::json!({"x": [1, {"y": "z"}]}))],
            vec![Cell::Null, Cell::Int(-1), Cell::Json(serde_json::json!({}))],
        ];
        for n in [0, 1, 2] {
            let table = Table { title: String::new(), columns: columns.to_vec(), rows: rows[..n].to_vec() };
            let mut streamed = Vec::new();
            let mut w = TableWriter::new("", &columns, Format::Json, &mut streamed).unwrap();
            for r in &table.rows {
                w.row(r.clone()).unwrap();
            }
            w.finish().unwrap();
            let whole = serde_json::to_string_pretty(&table.json()).unwrap() + "\n";
            assert_eq!(String::from_utf8(streamed).unwrap(), whole, "{n} rows");
        }
    }
}
