//! Data a command prints, as a model rendered three ways: a terminal table,
//! CSV, or JSON (`--format table|csv|json`). A command builds a `Record`
//! (one thing: labelled fields) or a `Table` (rows under columns) and
//! prints it in the format asked for, so a format is never silently
//! ignored. It must not decide what a command shows, only how.

use std::io::Write;

use super::Format;
use crate::domain::text::for_terminal_line;

/// A value in a record or table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Count(u64),
    /// Absent: empty in a table and CSV, `null` in JSON.
    None,
}

impl Value {
    fn plain(&self) -> String {
        match self {
            Value::Text(s) => s.clone(),
            Value::Count(n) => n.to_string(),
            Value::None => String::new(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::Count(n) => serde_json::Value::from(*n),
            Value::None => serde_json::Value::Null,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Count(n)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::None, Into::into)
    }
}

/// One thing, as fields: a key for CSV and JSON, a label for people.
#[derive(Debug, Clone, Default)]
pub struct Record {
    fields: Vec<(&'static str, String, Value)>,
}

impl Record {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, key: &'static str, label: &str, value: impl Into<Value>) -> Self {
        self.fields.push((key, label.to_string(), value.into()));
        self
    }

    /// Adds a field unless it is zero (for counts of rare things).
    pub fn count_if(self, key: &'static str, label: &str, n: u64) -> Self {
        if n == 0 {
            self
        } else {
            self.field(key, label, n)
        }
    }

    /// Keeps only the fields whose key `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.fields.retain(|(k, _, _)| keep(k));
    }

    /// The fields as a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.fields
                .iter()
                .map(|(k, _, v)| (k.to_string(), v.json()))
                .collect(),
        )
    }

    /// Table: one `label  value` line each, counts right-aligned. CSV: a
    /// header of keys and one row. JSON: an object.
    pub fn write(&self, format: Format, out: &mut impl Write) -> anyhow::Result<()> {
        match format {
            Format::Table => {
                // Labels in 18 columns, counts ending at column 28 (a longer
                // label narrows its count), as cartero's summaries print.
                for (_, label, value) in &self.fields {
                    let len = label.chars().count();
                    match value {
                        Value::Count(n) => {
                            let w = 27usize.saturating_sub(len).max(1);
                            writeln!(out, "{label} {n:>w$}")?
                        }
                        v => writeln!(out, "{label:<18} {}", for_terminal_line(&v.plain()))?,
                    }
                }
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(&mut *out);
                w.write_record(self.fields.iter().map(|(k, _, _)| *k))?;
                w.write_record(self.fields.iter().map(|(_, _, v)| v.plain()))?;
                w.flush()?;
            }
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&self.to_json())?)?,
        }
        Ok(())
    }
}

/// Rows under columns: a key for CSV and JSON, a heading for people.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<(&'static str, &'static str)>,
    rows: Vec<Vec<Value>>,
}

impl Table {
    /// `columns`: (key, heading) pairs.
    pub fn new(columns: &[(&'static str, &'static str)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, values: Vec<Value>) {
        debug_assert_eq!(values.len(), self.columns.len());
        self.rows.push(values);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows as an array of JSON objects.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        self.columns
                            .iter()
                            .zip(r)
                            .map(|((k, _), v)| (k.to_string(), v.json()))
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// Table: headings and aligned columns. CSV: a header of keys and the
    /// rows. JSON: an array of objects.
    pub fn write(&self, format: Format, out: &mut impl Write) -> anyhow::Result<()> {
        match format {
            Format::Table => {
                let cells: Vec<Vec<String>> = self
                    .rows
                    .iter()
                    .map(|r| r.iter().map(|v| for_terminal_line(&v.plain())).collect())
                    .collect();
                let widths: Vec<usize> = self
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, h))| {
                        cells
                            .iter()
                            .map(|r| r[i].chars().count())
                            .chain([h.chars().count()])
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                let line = |vals: Vec<&str>| {
                    let n = vals.len();
                    vals.iter()
                        .enumerate()
                        .map(|(i, v)| {
                            if i + 1 == n {
                                v.to_string()
                            } else {
                                format!("{v:<w$}", w = widths[i])
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("  ")
                };
                writeln!(
                    out,
                    "{}",
                    line(self.columns.iter().map(|(_, h)| *h).collect())
                )?;
                for r in &cells {
                    writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
                }
            }
            Format::Csv => {
                let mut w = csv::Writer::from_writer(&mut *out);
                w.write_record(self.columns.iter().map(|(k, _)| *k))?;
                for r in &self.rows {
                    w.write_record(r.iter().map(Value::plain))?;
                }
                w.flush()?;
            }
            Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&self.to_json())?)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_record_in_each_format() {
        let r = Record::new()
            .field("rows", "rows read", 3u64)
            .field("file", "file", "a, \"b\"")
            .field("zip", "read from zip", None::<String>);
        let table = render(|o| r.write(Format::Table, o).unwrap());
        assert!(table.contains("rows read                  3\n"), "{table}");
        let csv = render(|o| r.write(Format::Csv, o).unwrap());
        assert_eq!(csv, "rows,file,zip\n3,\"a, \"\"b\"\"\",\n");
        let json: serde_json::Value =
            serde_json::from_str(&render(|o| r.write(Format::Json, o).unwrap())).unwrap();
        assert_eq!(json["rows"], 3);
        assert!(json["zip"].is_null());
    }

    #[test]
    fn a_table_in_each_format_with_terminal_escapes_made_visible() {
        let mut t = Table::new(&[("email", "EMAIL"), ("list", "LIST")]);
        t.row(vec!["ana@example.com".into(), "news\u{1b}[2J".into()]);
        let table = render(|o| t.write(Format::Table, o).unwrap());
        assert!(table.starts_with("EMAIL            LIST\n"), "{table}");
        assert!(!table.contains('\u{1b}'), "{table}");
        let csv = render(|o| t.write(Format::Csv, o).unwrap());
        assert_eq!(csv, "email,list\nana@example.com,news\u{1b}[2J\n");
        let json: serde_json::Value =
            serde_json::from_str(&render(|o| t.write(Format::Json, o).unwrap())).unwrap();
        assert_eq!(json[0]["email"], "ana@example.com");
    }
}
