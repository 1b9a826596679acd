//! `contacts import`: CSV → validated contacts → one transaction.
//!
//! Every row is parsed into a `NewContact` at this edge; a bad row is reported
//! with its row number and reason, written to the rejects file, and never
//! stops the rest. The whole import is one transaction: an error from the
//! database (or a kill) leaves the database exactly as it was.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::domain::EmailAddress;
use crate::domain::time::now_millis;
use crate::store::consent::Evidence;
use crate::store::contacts::{self, ImportConsent, NewContact, UpsertCounts};
use crate::store::{Backend, Store, StoreError};

/// Contacts per batch, by backend. SQLite binds a value per column and row:
/// 11 a row stays under its 32,766-parameter limit. PostgreSQL takes arrays
/// (one parameter per column, whatever the count), and each statement there
/// costs a round trip and, for the three tables with set-based reference
/// checks, a trigger call: larger batches amortise both.
fn batch_size(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1000,
        Backend::Postgres => 10000,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Header { path: String, message: String },
    #[error("{path}:{line}: malformed CSV: {message}")]
    Csv {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{path}: cannot write rejects: {source}")]
    Rejects {
        path: String,
        #[source]
        source: csv::Error,
    },
    #[error("the CSV reader stopped: {0}")]
    Reader(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// List the imported contacts are subscribed to, with the consent below.
    pub list: Option<String>,
    pub consent_source: Option<String>,
    pub consent_text_version: Option<String>,
    /// Where rejected rows go; `None`: `<input>.rejects.csv`.
    pub rejects_path: Option<PathBuf>,
    /// Do everything in a transaction, then roll it back: exact counts, nothing written.
    pub dry_run: bool,
    /// Any rejected row aborts the import and nothing is written.
    pub strict: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportSummary {
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub consent_granted: u64,
    pub kept_withdrawn: u64,
    /// The first rejections, for the terminal (all of them are in the file).
    pub rejections: Vec<Rejection>,
    pub rejects_file: Option<String>,
    /// False after a dry run, or a strict import that met a bad row.
    pub written: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejection {
    /// 1-based data row (the header is row 0), as spreadsheets number it minus one.
    pub row: u64,
    /// Line of the file where the row starts.
    pub line: u64,
    pub reason: String,
}

/// Known columns; every other column becomes a typed attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Email,
    FirstName,
    LastName,
    Locale,
    Timezone,
    Tags,
    Attribute,
}

fn column_of(header: &str) -> Column {
    match header
        .trim()
        .to_ascii_lowercase()
        .replace([' ', '-'], "_")
        .as_str()
    {
        "email" | "email_address" | "e_mail" => Column::Email,
        "first_name" | "firstname" | "given_name" => Column::FirstName,
        "last_name" | "lastname" | "surname" | "family_name" => Column::LastName,
        "locale" | "language" => Column::Locale,
        "timezone" | "time_zone" | "tz" => Column::Timezone,
        "tags" => Column::Tags,
        _ => Column::Attribute,
    }
}

/// Attribute keys are the header as written, trimmed; values are typed: an
/// integer, a float, a boolean, or the text. Empty cells are left out, so
/// they never overwrite a stored value.
fn typed(value: &str) -> Option<Value> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    // Leading zeros mean an identifier (zip codes, phone numbers): keep text.
    let leading_zero = v.len() > 1 && v.starts_with('0') && !v.starts_with("0.");
    if !leading_zero {
        if let Ok(i) = v.parse::<i64>() {
            return Some(Value::from(i));
        }
        if v.contains('.')
            && let Ok(f) = v.parse::<f64>()
            && f.is_finite()
        {
            return Some(Value::from(f));
        }
    }
    match v.to_ascii_lowercase().as_str() {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => Some(Value::String(v.to_string())),
    }
}

fn split_tags(v: &str) -> Vec<String> {
    let mut tags: Vec<String> = v
        .split([',', ';', '|'])
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// Progress callback: bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Imports `path` into `store`. `progress` is called with bytes read.
pub async fn import_csv(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    progress: Progress<'_>,
) -> Result<ImportSummary, ImportError> {
    let file = std::fs::File::open(path).map_err(|source| ImportError::Read {
        path: path.display().to_string(),
        source,
    })?;
    import_reader(store, file, &path.display().to_string(), opts, progress).await
}

pub async fn import_reader<R: Read + Send + 'static>(
    store: &Store,
    input: R,
    name: &str,
    opts: &ImportOptions,
    progress: Progress<'_>,
) -> Result<ImportSummary, ImportError> {
    let now = now_millis();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let layout = read_header(&mut rdr, name)?;
    let rejects_path = opts
        .rejects_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.rejects.csv")));

    let mut tx = store.begin().await?;
    tx.expect_bulk_write().await?;
    let consent = match &opts.list {
        Some(list) => Some(ImportConsent {
            list_id: contacts::ensure_list(&mut tx, list, now).await?,
            evidence: Evidence {
                source: opts
                    .consent_source
                    .clone()
                    .unwrap_or_else(|| name.to_string()),
                method: "import".into(),
                ip: None,
                text_version: opts.consent_text_version.clone(),
                details: serde_json::json!({ "file": name }),
            },
        }),
        None => None,
    };

    // Parsing runs on its own thread, a batch or two ahead of the database:
    // on a 1M-row file the two take comparable time, and overlapped they
    // cost the larger instead of the sum. The reader owns the rejects file.
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<Batch>(2);
    let reader = {
        let name = name.to_string();
        let rejects_path = rejects_path.clone();
        let batch_size = batch_size(store.backend());
        tokio::task::spawn_blocking(move || {
            read_rows(rdr, layout, &name, &rejects_path, batch_size, batches)
        })
    };
    let mut appender = None;
    let mut counts = UpsertCounts::default();
    while let Some(batch) = incoming.recv().await {
        counts += contacts::upsert_batch(
            &mut tx,
            &batch.contacts,
            consent.as_ref(),
            &mut appender,
            now,
        )
        .await?;
        progress(batch.bytes_read);
        // Freeing thousands of contacts (strings, attribute maps) took 8% of
        // this loop's time, with the database waiting for its next batch.
        tokio::task::spawn_blocking(move || drop(batch));
    }
    // The channel closes when the reader is done or has failed.
    let mut summary = reader
        .await
        .map_err(|e| ImportError::Reader(e.to_string()))??;
    let rejected = summary.rejected + summary.duplicates > 0;
    tx.end_bulk_write().await?;
    if opts.dry_run || (opts.strict && rejected) {
        tx.rollback().await?;
        summary.written = false;
    } else {
        tx.commit().await?;
        summary.written = true;
        store.refresh_statistics().await?;
    }
    summary.inserted = counts.inserted;
    summary.updated = counts.updated;
    summary.unchanged = counts.unchanged;
    summary.consent_granted = counts.consent_granted;
    summary.kept_withdrawn = counts.kept_withdrawn;
    Ok(summary)
}

/// The header row, understood.
struct Layout {
    headers: Vec<String>,
    columns: Vec<Column>,
    email_col: usize,
}

/// Valid contacts of one stretch of the file, and how far the reader got.
struct Batch {
    contacts: Vec<NewContact>,
    bytes_read: u64,
}

fn read_header<R: Read>(rdr: &mut csv::Reader<R>, name: &str) -> Result<Layout, ImportError> {
    let headers = rdr
        .byte_headers()
        .map_err(|e| ImportError::Header {
            path: name.into(),
            message: format!("cannot read the header row: {e}"),
        })?
        .clone();
    let headers: Vec<String> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = String::from_utf8_lossy(h);
            // The csv crate keeps a UTF-8 byte-order mark on the first header.
            let h = if i == 0 {
                h.trim_start_matches('\u{feff}')
            } else {
                &h
            };
            h.trim().to_string()
        })
        .collect();
    let columns: Vec<Column> = headers.iter().map(|h| column_of(h)).collect();
    let email_col = match columns.iter().filter(|c| **c == Column::Email).count() {
        1 => columns
            .iter()
            .position(|c| *c == Column::Email)
            .unwrap_or(0),
        0 => {
            return Err(ImportError::Header {
                path: name.into(),
                message: format!(
                    "no `email` column in the header row (found: {})",
                    headers.join(", ")
                ),
            });
        }
        _ => {
            return Err(ImportError::Header {
                path: name.into(),
                message: "more than one email column in the header row".into(),
            });
        }
    };
    let mut seen_keys = HashMap::new();
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() && columns[i] == Column::Attribute {
            return Err(ImportError::Header {
                path: name.into(),
                message: format!("column {} has an empty name", i + 1),
            });
        }
        if let Some(prev) = seen_keys.insert(h.to_ascii_lowercase(), i) {
            return Err(ImportError::Header {
                path: name.into(),
                message: format!("columns {} and {} are both named {h:?}", prev + 1, i + 1),
            });
        }
    }
    Ok(Layout {
        headers,
        columns,
        email_col,
    })
}

/// The reader thread: parses every row, writes rejects, sends valid
/// contacts in batches. Returns the row counts of the summary. Stops early
/// when the receiver is gone (the database side failed).
fn read_rows<R: Read>(
    mut rdr: csv::Reader<R>,
    layout: Layout,
    name: &str,
    rejects_path: &Path,
    batch_size: usize,
    out: tokio::sync::mpsc::Sender<Batch>,
) -> Result<ImportSummary, ImportError> {
    let Layout {
        headers,
        columns,
        email_col,
    } = layout;
    let mut rejects: Option<csv::Writer<std::fs::File>> = None;
    let mut summary = ImportSummary::default();
    let mut first_row_of: HashMap<String, u64> = HashMap::new();
    let mut batch: Vec<NewContact> = Vec::with_capacity(batch_size);
    let mut record = csv::ByteRecord::new();
    let mut row: u64 = 0;
    loop {
        let line = rdr.position().line();
        match rdr.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // A broken quote or invalid field: the reader cannot resync
                // reliably, so stop before anything is written.
                return Err(ImportError::Csv {
                    path: name.into(),
                    line: e.position().map(|p| p.line()).unwrap_or(line),
                    message: e.to_string(),
                });
            }
        }
        row += 1;
        summary.rows += 1;
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        match parse_row(&record, &headers, &columns, email_col) {
            Ok(contact) => {
                if let Some(first) = first_row_of.get(contact.email.as_str()) {
                    summary.duplicates += 1;
                    let reason = format!("duplicate of row {first} ({})", contact.email);
                    reject(
                        &mut rejects,
                        rejects_path,
                        &headers,
                        &record,
                        row,
                        line,
                        &reason,
                        &mut summary,
                    )?;
                    continue;
                }
                first_row_of.insert(contact.email.as_str().to_string(), row);
                batch.push(contact);
            }
            Err(reason) => {
                summary.rejected += 1;
                reject(
                    &mut rejects,
                    rejects_path,
                    &headers,
                    &record,
                    row,
                    line,
                    &reason,
                    &mut summary,
                )?;
            }
        }
        if batch.len() >= batch_size {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            let sent = out.blocking_send(Batch {
                contacts: full,
                bytes_read: rdr.position().byte(),
            });
            if sent.is_err() {
                return Ok(summary);
            }
        }
    }
    // The last batch may be empty: it still carries the final position.
    let _ = out.blocking_send(Batch {
        contacts: batch,
        bytes_read: rdr.position().byte(),
    });
    if let Some(mut w) = rejects {
        w.flush().map_err(|e| ImportError::Rejects {
            path: rejects_path.display().to_string(),
            source: e.into(),
        })?;
        summary.rejects_file = Some(rejects_path.display().to_string());
    }
    Ok(summary)
}

/// Writes a bad or duplicate row to the rejects file and keeps the first
/// few for the terminal. The caller counts it as rejected or duplicate.
#[allow(clippy::too_many_arguments)]
fn reject(
    writer: &mut Option<csv::Writer<std::fs::File>>,
    path: &Path,
    headers: &[String],
    record: &csv::ByteRecord,
    row: u64,
    line: u64,
    reason: &str,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    let wrap = |source: csv::Error| ImportError::Rejects {
        path: path.display().to_string(),
        source,
    };
    if writer.is_none() {
        // Rejected rows are personal data: owner-only (private_files).
        let file = crate::private_files::create(path).map_err(|e| wrap(e.into()))?;
        let mut w = csv::WriterBuilder::new().flexible(true).from_writer(file);
        let mut head: Vec<&str> = vec!["row", "line", "reason"];
        head.extend(headers.iter().map(String::as_str));
        w.write_record(&head).map_err(wrap)?;
        *writer = Some(w);
    }
    if let Some(w) = writer {
        let mut out: Vec<Vec<u8>> = vec![
            row.to_string().into_bytes(),
            line.to_string().into_bytes(),
            reason.as_bytes().to_vec(),
        ];
        out.extend(record.iter().map(<[u8]>::to_vec));
        w.write_record(&out).map_err(wrap)?;
    }
    if summary.rejections.len() < 20 {
        summary.rejections.push(Rejection {
            row,
            line,
            reason: reason.to_string(),
        });
    }
    Ok(())
}

fn parse_row(
    record: &csv::ByteRecord,
    headers: &[String],
    columns: &[Column],
    email_col: usize,
) -> Result<NewContact, String> {
    if record.len() != headers.len() {
        return Err(format!(
            "has {} fields, the header has {}",
            record.len(),
            headers.len()
        ));
    }
    let mut fields = Vec::with_capacity(record.len());
    for (i, f) in record.iter().enumerate() {
        match std::str::from_utf8(f) {
            Ok(s) => fields.push(s),
            Err(_) => return Err(format!("column {:?} is not valid UTF-8", headers[i])),
        }
    }
    // Spreadsheets pad cells; the address parser itself is strict about spaces.
    let raw_email = fields[email_col].trim();
    if raw_email.is_empty() {
        return Err("empty email".into());
    }
    let email =
        EmailAddress::parse(raw_email).map_err(|e| format!("invalid email {raw_email:?}: {e}"))?;
    let mut c = NewContact {
        email,
        first_name: None,
        last_name: None,
        locale: None,
        timezone: None,
        attributes: Map::new(),
        tags: Vec::new(),
    };
    let text = |v: &str| {
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    for (i, value) in fields.iter().enumerate() {
        match columns[i] {
            Column::Email => {}
            Column::FirstName => c.first_name = text(value),
            Column::LastName => c.last_name = text(value),
            Column::Locale => c.locale = text(value),
            Column::Timezone => c.timezone = text(value),
            Column::Tags => c.tags = split_tags(value),
            Column::Attribute => {
                if let Some(v) = typed(value) {
                    c.attributes.insert(headers[i].clone(), v);
                }
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any bytes as a CSV file: the header is understood or refused
        /// with a message, and every row parses or gets a reason; nothing
        /// panics.
        #[test]
        fn any_csv_bytes_parse_or_are_refused(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b',' ), proptest::strategy::Just(b'"'),
                    proptest::strategy::Just(b'\n'), proptest::strategy::Just(b'@'),
                    proptest::strategy::Just(b'.'), proptest::num::u8::ANY,
                    b'a'..=b'z',
                ],
                0..300,
            ),
            header in proptest::prop_oneof![
                proptest::strategy::Just(b"email,first_name,tags,age\n".to_vec()),
                proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            ],
        ) {
            let mut input = header;
            input.extend(body);
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(true)
                .has_headers(true)
                .from_reader(input.as_slice());
            let Ok(layout) = read_header(&mut rdr, "fuzz.csv") else { return Ok(()) };
            let mut record = csv::ByteRecord::new();
            while let Ok(true) = rdr.read_byte_record(&mut record) {
                match parse_row(&record, &layout.headers, &layout.columns, layout.email_col) {
                    Ok(c) => proptest::prop_assert!(!c.email.as_str().is_empty()),
                    Err(reason) => proptest::prop_assert!(!reason.is_empty()),
                }
            }
        }
    }

    #[test]
    fn attribute_values_are_typed() {
        assert_eq!(typed("42"), Some(Value::from(42)));
        assert_eq!(typed("4.5"), Some(Value::from(4.5)));
        assert_eq!(typed("TRUE"), Some(Value::Bool(true)));
        assert_eq!(typed("08001"), Some(Value::from("08001")));
        assert_eq!(typed("  ES "), Some(Value::from("ES")));
        assert_eq!(typed(""), None);
        assert_eq!(typed("NaN"), Some(Value::from("NaN")));
    }

    #[test]
    fn tags_split_and_dedupe() {
        assert_eq!(split_tags("vip, b2b;vip|  "), vec!["b2b", "vip"]);
    }

    #[test]
    fn known_columns_accept_common_spellings() {
        assert_eq!(column_of(" E-mail "), Column::Email);
        assert_eq!(column_of("First Name"), Column::FirstName);
        assert_eq!(column_of("country"), Column::Attribute);
    }
}
