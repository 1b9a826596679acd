//! `contacts import`: an export file → validated contacts → one transaction.
//!
//! The file is opened by `source` (zip, encoding, delimiter, line numbers),
//! its columns named by a `preset` (Mailchimp, listmonk, HubSpot, Brevo or
//! generic) and the operator's mapping, and read twice: once to decide each
//! attribute column's type from the whole column, once to import. Every row
//! is parsed into a `NewContact` at this edge; a bad row is reported with its
//! row and line and the reason, written to the rejects file, and never stops
//! the rest. The whole import is one transaction: an error from the database
//! (or a kill) leaves the database exactly as it was, and a file with no
//! usable row writes nothing at all.
//!
//! It must not re-subscribe anyone: the source's own status decides, and a
//! contact cartero holds suppressed stays suppressed (see `store::contacts`).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::preset::{self, MailchimpKind, Preset, Role, RowSignals, SourceConsent};
use super::source::{self, Encoding, Source, SourceError, Tracked};
use crate::domain::EmailAddress;
use crate::domain::time::{now_millis, to_rfc3339};
use crate::hygiene::flags::{FlagChecker, Flags};
use crate::store::consent::Evidence;
use crate::store::contacts::{
    self, ImportConsent, NewContact, RowConsent, SourceSuppression, UpsertCounts, WithdrawScope,
    email_key,
};
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
    #[error(transparent)]
    Source(#[from] SourceError),
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
    #[error("{0}")]
    Mapping(String),
    #[error(
        "--consent-source is empty: say where the consent came from (a form, a tool, a campaign)"
    )]
    EmptyConsentSource,
    #[error("the CSV reader stopped: {0}")]
    Reader(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A column's type, decided once from the whole column or declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Text,
    Integer,
    Number,
    Boolean,
    /// `YYYY-MM-DD`, stored as that text.
    Date,
    /// A timestamp, stored as RFC 3339 in UTC.
    DateTime,
}

impl ColumnType {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "text" | "string" => Self::Text,
            "integer" | "int" => Self::Integer,
            "number" | "float" | "decimal" => Self::Number,
            "boolean" | "bool" => Self::Boolean,
            "date" => Self::Date,
            "datetime" | "timestamp" => Self::DateTime,
            other => {
                return Err(format!(
                    "unknown type {other:?}: use text, integer, number, boolean, date or datetime"
                ));
            }
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Integer => "integer",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::DateTime => "datetime",
        }
    }
}

/// The operator's column mapping: flags (`--map`, `--type`, `--skip`) or a
/// TOML file (`--mapping`), see docs/IMPORT.md.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// (column header, target: a known field or an attribute name)
    pub map: Vec<(String, String)>,
    /// (column header, type)
    pub types: Vec<(String, ColumnType)>,
    /// Column headers, or 1-based column numbers, to ignore.
    pub skip: Vec<String>,
}

impl Mapping {
    /// `"E-Mail=email"`.
    pub fn parse_map(s: &str) -> Result<(String, String), String> {
        match s.split_once('=') {
            Some((c, t)) if !c.trim().is_empty() && !t.trim().is_empty() => {
                Ok((c.trim().to_string(), t.trim().to_string()))
            }
            _ => Err(format!(
                "--map {s:?}: write COLUMN=FIELD, e.g. \"E-Mail=email\""
            )),
        }
    }

    /// `"zip=text"`.
    pub fn parse_type(s: &str) -> Result<(String, ColumnType), String> {
        match s.split_once('=') {
            Some((c, t)) if !c.trim().is_empty() => {
                Ok((c.trim().to_string(), ColumnType::parse(t)?))
            }
            _ => Err(format!(
                "--type {s:?}: write COLUMN=TYPE, e.g. \"zip=text\""
            )),
        }
    }

    /// A mapping file:
    ///
    /// ```toml
    /// skip = ["LEID", "Notes"]
    /// [columns]
    /// "E-Mail" = "email"
    /// [types]
    /// zip = "text"
    /// ```
    pub fn from_toml(path: &Path) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            skip: Vec<String>,
            #[serde(default)]
            columns: BTreeMap<String, String>,
            #[serde(default)]
            types: BTreeMap<String, String>,
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let f: File = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut types = Vec::new();
        for (c, t) in f.types {
            types.push((
                c.clone(),
                ColumnType::parse(&t)
                    .map_err(|e| format!("{}: [types] {c}: {e}", path.display()))?,
            ));
        }
        Ok(Self {
            map: f.columns.into_iter().collect(),
            types,
            skip: f.skip,
        })
    }

    /// Adds `other`'s entries (flags after the file's, so they win).
    pub fn extend(&mut self, other: Mapping) {
        self.map.extend(other.map);
        self.types.extend(other.types);
        self.skip.extend(other.skip);
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// List the imported contacts are subscribed to, with the consent below.
    pub list: Option<String>,
    pub consent_source: Option<String>,
    pub consent_text_version: Option<String>,
    /// Where rejected rows go; `None`: `<input>.rejects.csv`, or nowhere on
    /// a dry run (the rejections are in the summary).
    pub rejects_path: Option<PathBuf>,
    /// Do everything in a transaction, then roll it back: exact counts, nothing written.
    pub dry_run: bool,
    /// Any rejected row aborts the import and nothing is written.
    pub strict: bool,
    /// The tool the file was exported from; `None`: detected from the header.
    pub from: Option<Preset>,
    pub delimiter: Option<u8>,
    pub encoding: Option<Encoding>,
    pub mapping: Mapping,
    /// Reinstate suppressed contacts whose row is active, logged with this reason.
    pub override_suppression: Option<String>,
    /// Typo, disposable and role checks (default: the built-in lists).
    pub flags: Option<Arc<FlagChecker>>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SuppressedCounts {
    pub unsubscribed: u64,
    pub bounced: u64,
    pub complained: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FindingCounts {
    pub typo: u64,
    pub disposable: u64,
    pub role: u64,
}

/// An address the hygiene checks flag (advice; the contact is imported).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub row: u64,
    pub email: String,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportSummary {
    pub file: String,
    pub zip_entry: Option<String>,
    pub encoding: Option<Encoding>,
    pub encoding_detected: bool,
    pub delimiter: String,
    pub delimiter_detected: bool,
    /// The tool the file came from, and whether it was detected or chosen.
    pub preset: Option<Preset>,
    pub preset_detected: bool,
    /// Which Mailchimp export (subscribed, unsubscribed, cleaned).
    pub mailchimp_export: Option<MailchimpKind>,
    /// Each attribute column's type.
    pub column_types: BTreeMap<String, ColumnType>,
    /// Header problems that did not stop the import.
    pub warnings: Vec<String>,
    pub rows: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub duplicates: u64,
    /// Rows the source marks unsubscribed, bounced (cleaned) or complained:
    /// stored suppressed, never granted.
    pub suppressed_from_source: SuppressedCounts,
    /// Withdrawals written to the ledger because the source records them.
    pub withdrawals_recorded: u64,
    /// Contacts cartero holds suppressed whose row says active: left as they are.
    pub kept_suppressed: u64,
    pub consent_granted: u64,
    /// ... with the opt-in/confirmation times and IPs of the source.
    pub granted_with_source_evidence: u64,
    /// ... with nothing but the importer's word ("asserted by the importer").
    pub granted_asserted: u64,
    /// Rows whose source says there is no consent (opt-in "No", unconfirmed).
    pub no_consent_in_source: u64,
    pub kept_withdrawn: u64,
    /// Rows refused because the address was erased on request (the
    /// suppression list): never imported again.
    pub suppressed: u64,
    /// Suppressed contacts reinstated by `--override-suppression`.
    pub reinstated_by_override: u64,
    pub findings: FindingCounts,
    /// Every flagged address (shown with `--format json`).
    pub flagged: Vec<Finding>,
    /// The first rejections, for the terminal (all of them are in the file).
    pub rejections: Vec<Rejection>,
    pub rejects_file: Option<String>,
    /// No row of the file could be imported: nothing was written.
    pub no_usable_rows: bool,
    /// False after a dry run, a strict import that met a bad row, or a file
    /// with no usable row.
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

/// Progress callback: bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// The header row, understood.
#[derive(Debug, Clone)]
struct Layout {
    headers: Vec<String>,
    roles: Vec<Role>,
    /// Attribute key of each column (the header, or its mapped name).
    keys: Vec<String>,
    types: Vec<ColumnType>,
    declared: Vec<bool>,
    email_col: usize,
    preset: Preset,
    preset_detected: bool,
    kind: Option<MailchimpKind>,
    warnings: Vec<String>,
}

/// A file opened, its header understood and its columns typed: ready to import.
pub struct Prepared {
    source: Source,
    layout: Layout,
    /// Whether any row has a valid address (a file without one writes nothing).
    pub has_usable_rows: bool,
}

impl Prepared {
    pub fn source_len(&self) -> Option<u64> {
        self.source.len_hint()
    }
}

/// Opens `path` and reads it once: header, presets, column types.
pub fn prepare(path: &Path, opts: &ImportOptions) -> Result<Prepared, ImportError> {
    let source = Source::open(path, opts.encoding, opts.delimiter)?;
    prepare_source(source, opts)
}

fn prepare_source(source: Source, opts: &ImportOptions) -> Result<Prepared, ImportError> {
    let mut rdr = source.csv()?;
    let mut layout = read_header(&mut rdr, source.name(), opts)?;
    // The whole column decides its type: "MD" and 13 in one column are both text.
    let mut seen: Vec<Option<ColumnType>> = vec![None; layout.headers.len()];
    let mut usable = false;
    let mut rows = Rows::new(rdr, layout.headers.len(), source.name());
    while let Some(item) = rows.next()? {
        let Item::Record { .. } = item else { continue };
        let rec = &rows.record;
        if !usable
            && let Some(e) = rec.get(layout.email_col)
            && let Ok(e) = std::str::from_utf8(e)
            && EmailAddress::parse(e.trim()).is_ok()
        {
            usable = true;
        }
        for (i, cell) in rec.iter().enumerate().take(layout.headers.len()) {
            if layout.roles[i] != Role::Attribute || layout.declared[i] {
                continue;
            }
            let Ok(v) = std::str::from_utf8(cell) else {
                continue;
            };
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let k = classify(v);
            seen[i] = Some(match seen[i] {
                None => k,
                Some(prev) => widen(prev, k),
            });
        }
    }
    for (i, s) in seen.into_iter().enumerate() {
        if !layout.declared[i] {
            layout.types[i] = s.unwrap_or(ColumnType::Text);
        }
    }
    Ok(Prepared {
        source,
        layout,
        has_usable_rows: usable,
    })
}

/// What one cell looks like on its own.
fn classify(v: &str) -> ColumnType {
    let digits = v.strip_prefix('-').unwrap_or(v);
    // Leading zeros and long digit strings are identifiers (zip codes,
    // account numbers): text. So is anything with a `+` (phone numbers).
    let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
    if !leading_zero && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return if digits.len() <= 15 && v.parse::<i64>().is_ok() {
            ColumnType::Integer
        } else {
            ColumnType::Text
        };
    }
    if !leading_zero
        && digits.contains('.')
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !digits.starts_with('.')
        && !digits.ends_with('.')
        && v.parse::<f64>().is_ok_and(f64::is_finite)
    {
        return ColumnType::Number;
    }
    if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
        return ColumnType::Boolean;
    }
    if v.len() == 10 && parse_date(v).is_some() {
        return ColumnType::Date;
    }
    if v.contains(':') && v.len() >= 16 && preset::parse_instant(v).is_some() {
        return ColumnType::DateTime;
    }
    ColumnType::Text
}

fn widen(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::*;
    match (a, b) {
        _ if a == b => a,
        (Integer, Number) | (Number, Integer) => Number,
        (Date, DateTime) | (DateTime, Date) => DateTime,
        _ => Text,
    }
}

fn parse_date(v: &str) -> Option<time::Date> {
    time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// A cell as a value of its column's type; `Err` when a declared type does
/// not fit (an inferred one always does).
fn typed(v: &str, ty: ColumnType) -> Result<Option<Value>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{v:?} is not {}", ty.as_str());
    Ok(Some(match ty {
        ColumnType::Text => Value::String(v.to_string()),
        ColumnType::Integer => Value::from(v.parse::<i64>().map_err(|_| bad())?),
        ColumnType::Number => {
            let f = v.parse::<f64>().map_err(|_| bad())?;
            if !f.is_finite() {
                return Err(bad());
            }
            Value::from(f)
        }
        ColumnType::Boolean => Value::Bool(preset::parse_bool(v).ok_or_else(bad)?),
        ColumnType::Date => {
            let d = parse_date(v).ok_or_else(bad)?;
            Value::String(d.to_string())
        }
        ColumnType::DateTime => {
            Value::String(to_rfc3339(preset::parse_instant(v).ok_or_else(bad)?))
        }
    }))
}

/// Headers whose values are identifiers even when every one is digits.
fn text_by_name(header: &str) -> bool {
    let n = preset::normalise(header);
    [
        "phone", "mobile", "tel", "sms", "fax", "zip", "postal", "postcode", "plz", "iban",
    ]
    .iter()
    .any(|w| n.contains(w))
        || n == "cp"
}

/// Imports `path` into `store`. `progress` is called with bytes read.
pub async fn import_csv(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    progress: Progress<'_>,
) -> Result<ImportSummary, ImportError> {
    let prepared = prepare(path, opts)?;
    run(store, prepared, opts, progress).await
}

/// Imports what `input` yields (read into memory first), named `name`.
pub async fn import_reader<R: Read + Send + 'static>(
    store: &Store,
    mut input: R,
    name: &str,
    opts: &ImportOptions,
    progress: Progress<'_>,
) -> Result<ImportSummary, ImportError> {
    let mut bytes = Vec::new();
    input
        .read_to_end(&mut bytes)
        .map_err(|source| ImportError::Read {
            path: name.into(),
            source,
        })?;
    let source = Source::from_bytes(name, bytes, opts.encoding, opts.delimiter)?;
    let prepared = prepare_source(source, opts)?;
    run(store, prepared, opts, progress).await
}

/// The import proper: the second read of the file, into one transaction.
pub async fn run(
    store: &Store,
    prepared: Prepared,
    opts: &ImportOptions,
    progress: Progress<'_>,
) -> Result<ImportSummary, ImportError> {
    let now = now_millis();
    let Prepared { source, layout, .. } = prepared;
    let name = source.name().to_string();
    let consent_source = match &opts.consent_source {
        Some(s) if s.trim().is_empty() => return Err(ImportError::EmptyConsentSource),
        Some(s) => s.trim().to_string(),
        None => name.clone(),
    };
    let rejects_path = match (&opts.rejects_path, opts.dry_run) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => Some(PathBuf::from(format!("{name}.rejects.csv"))),
        (None, true) => None,
    };

    let mut summary_head = ImportSummary {
        file: name.clone(),
        zip_entry: source.sniffed.zip_entry.clone(),
        encoding: Some(source.sniffed.encoding),
        encoding_detected: source.sniffed.encoding_detected,
        delimiter: source::delimiter_name(source.sniffed.delimiter).to_string(),
        delimiter_detected: source.sniffed.delimiter_detected,
        preset: Some(layout.preset),
        preset_detected: layout.preset_detected,
        mailchimp_export: layout.kind,
        warnings: layout.warnings.clone(),
        ..Default::default()
    };
    for (i, r) in layout.roles.iter().enumerate() {
        if *r == Role::Attribute {
            summary_head
                .column_types
                .insert(layout.keys[i].clone(), layout.types[i]);
        }
    }

    let mut tx = store.begin().await?;
    tx.expect_bulk_write().await?;
    crate::store::changes::set_origin(&mut tx, &format!("contacts import {name}")).await?;
    let list_id = match &opts.list {
        Some(list) => Some(contacts::ensure_list(&mut tx, list, now).await?),
        None => None,
    };
    let tool = layout.preset.as_str();
    let base = |evidence: &str| {
        serde_json::json!({
            "file": name,
            "imported_from": tool,
            "imported_at": to_rfc3339(now),
            "evidence": evidence,
        })
    };
    let consent = ImportConsent {
        list_id,
        asserted: Evidence {
            source: consent_source.clone(),
            method: "import".into(),
            ip: None,
            text_version: opts.consent_text_version.clone(),
            details: serde_json::json!({
                "file": name,
                "imported_from": tool,
                "evidence": "asserted by the importer",
            }),
        },
        sourced: Evidence {
            source: consent_source.clone(),
            method: "import".into(),
            ip: None,
            text_version: opts.consent_text_version.clone(),
            details: base(&format!("imported from {tool}")),
        },
        withdrawal: Evidence {
            source: consent_source,
            method: "import".into(),
            ip: None,
            text_version: None,
            details: base(&format!("withdrawal recorded by {tool}")),
        },
        override_reason: opts.override_suppression.clone(),
        actor: "cartero import".into(),
    };

    // Parsing runs on its own thread, a batch or two ahead of the database:
    // on a 1M-row file the two take comparable time, and overlapped they
    // cost the larger instead of the sum. The reader owns the rejects file.
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<Batch>(2);
    let reader = {
        let batch_size = batch_size(store.backend());
        let flags = opts.flags.clone();
        let explicit_rejects = opts.rejects_path.is_some();
        let delimiter = source.sniffed.delimiter;
        let rdr = source.csv()?;
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            let flags = flags.unwrap_or_else(|| Arc::new(FlagChecker::builtin()));
            read_rows(
                rdr,
                layout,
                &name,
                rejects_path.as_deref(),
                explicit_rejects,
                batch_size,
                delimiter,
                &flags,
                batches,
            )
        })
    };
    let mut appender = None;
    let mut counts = UpsertCounts::default();
    // Addresses erased on request are refused before anything is written
    // (the suppression list holds their keyed hashes).
    let suppressions = crate::store::compliance::Suppressions::load(
        &mut tx,
        crate::store::consent::installed_keys(),
    )
    .await?;
    let mut suppressed = 0u64;
    let mut accepted = 0u64;
    while let Some(mut batch) = incoming.recv().await {
        if !suppressions.is_empty() {
            let before = batch.contacts.len();
            batch.contacts.retain(|c| !suppressions.contains(&c.email));
            suppressed += (before - batch.contacts.len()) as u64;
        }
        accepted += batch.contacts.len() as u64;
        counts +=
            contacts::upsert_batch(&mut tx, &batch.contacts, &consent, &mut appender, now).await?;
        progress(batch.bytes_read);
        // Freeing thousands of contacts (strings, attribute maps) took 8% of
        // this loop's time, with the database waiting for its next batch.
        tokio::task::spawn_blocking(move || drop(batch));
    }
    // The channel closes when the reader is done or has failed.
    let read = reader
        .await
        .map_err(|e| ImportError::Reader(e.to_string()))??;
    let mut summary = ImportSummary {
        rows: read.rows,
        rejected: read.rejected,
        duplicates: read.duplicates,
        findings: read.findings,
        flagged: read.flagged,
        rejections: read.rejections,
        rejects_file: read.rejects_file,
        ..summary_head
    };
    let rejected = summary.rejected + summary.duplicates + suppressed > 0;
    // Rows refused as erased are accounted for (exit 3, "refused"), not
    // unusable: the file was read and each of its rows has an answer.
    summary.no_usable_rows = accepted == 0 && suppressed == 0;
    tx.end_bulk_write().await?;
    if opts.dry_run || (opts.strict && rejected) || summary.no_usable_rows {
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
    summary.granted_with_source_evidence = counts.granted_with_evidence;
    summary.granted_asserted = counts.granted_asserted;
    summary.kept_withdrawn = counts.kept_withdrawn;
    summary.suppressed = suppressed;
    summary.kept_suppressed = counts.kept_suppressed;
    summary.suppressed_from_source = SuppressedCounts {
        unsubscribed: counts.suppressed_unsubscribed,
        bounced: counts.suppressed_bounced,
        complained: counts.suppressed_complained,
    };
    summary.withdrawals_recorded = counts.withdrawals;
    summary.no_consent_in_source = counts.no_consent;
    summary.reinstated_by_override = counts.reinstated;
    Ok(summary)
}

fn read_header<R: Read>(
    rdr: &mut csv::Reader<R>,
    name: &str,
    opts: &ImportOptions,
) -> Result<Layout, ImportError> {
    let header_err = |message: String| ImportError::Header {
        path: name.into(),
        message,
    };
    let raw = rdr
        .byte_headers()
        .map_err(|e| header_err(format!("cannot read the header row: {e}")))?
        .clone();
    let mut headers: Vec<String> = raw
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    // Spreadsheets leave empty columns after the last named one.
    while headers.last().is_some_and(String::is_empty) {
        headers.pop();
    }
    if headers.is_empty() {
        return Err(header_err("the header row is empty".into()));
    }
    let (preset, preset_detected) = match opts.from {
        Some(p) => (p, false),
        None => (Preset::detect(&headers), true),
    };
    let m = &opts.mapping;
    let col_named = |key: &str| -> Option<usize> {
        if let Some(i) = headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(key.trim()))
        {
            return Some(i);
        }
        key.trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=headers.len()).contains(n))
            .map(|n| n - 1)
    };
    let unknown = |flag: &str, key: &str| {
        ImportError::Mapping(format!(
            "{name}: {flag} {key:?}: no such column (columns: {})",
            headers.join(", ")
        ))
    };
    let mut roles: Vec<Role> = headers.iter().map(|h| preset::role_of(preset, h)).collect();
    let mut keys: Vec<String> = headers.clone();
    for (col, target) in &m.map {
        let i = col_named(col).ok_or_else(|| unknown("--map", col))?;
        match Role::parse_target(target) {
            Some(r) => roles[i] = r,
            None => {
                roles[i] = Role::Attribute;
                keys[i] = target.clone();
            }
        }
    }
    for col in &m.skip {
        let i = col_named(col).ok_or_else(|| unknown("--skip", col))?;
        roles[i] = Role::Skip;
    }
    let mut types = vec![ColumnType::Text; headers.len()];
    let mut declared = vec![false; headers.len()];
    for (i, h) in headers.iter().enumerate() {
        if text_by_name(h) {
            declared[i] = true;
        }
    }
    for (col, ty) in &m.types {
        let i = col_named(col)
            .or_else(|| keys.iter().position(|k| k.eq_ignore_ascii_case(col)))
            .ok_or_else(|| unknown("--type", col))?;
        types[i] = *ty;
        declared[i] = true;
    }
    let mut warnings = Vec::new();
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() && roles[i] == Role::Attribute {
            return Err(header_err(format!(
                "column {} has an empty name: name it in the file, or --skip {}",
                i + 1,
                i + 1
            )));
        }
    }
    // A field cartero knows may come from one column only.
    for (i, r) in roles.iter().enumerate() {
        if !r.is_unique() {
            continue;
        }
        if let Some(j) = roles[..i].iter().position(|x| x == r) {
            return Err(header_err(format!(
                "columns {} ({:?}) and {} ({:?}) both map to {r:?}: --skip one of them or --map it to another field",
                j + 1,
                headers[j],
                i + 1,
                headers[i]
            )));
        }
    }
    // Two attribute columns of one name: both kept, the later renamed.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for i in 0..headers.len() {
        if roles[i] != Role::Attribute {
            continue;
        }
        let k = keys[i].to_lowercase();
        if let Some(&j) = seen.get(&k) {
            let renamed = format!("{} (column {})", keys[i], i + 1);
            warnings.push(format!(
                "column {} repeats the name {:?} of column {}: stored as {renamed:?} (use --map or --skip to choose)",
                i + 1,
                keys[i],
                j + 1
            ));
            keys[i] = renamed;
        } else {
            seen.insert(k, i);
        }
    }
    let email_col = roles
        .iter()
        .position(|r| *r == Role::Email)
        .ok_or_else(|| {
            header_err(format!(
                "no `email` column in the header row (found: {}); name one with --map COLUMN=email",
                headers.join(", ")
            ))
        })?;
    let kind = (preset == Preset::Mailchimp).then(|| {
        if roles.contains(&Role::UnsubTime) {
            MailchimpKind::Unsubscribed
        } else if roles.contains(&Role::CleanTime) {
            MailchimpKind::Cleaned
        } else {
            MailchimpKind::Subscribed
        }
    });
    Ok(Layout {
        headers,
        roles,
        keys,
        types,
        declared,
        email_col,
        preset,
        preset_detected,
        kind,
        warnings,
    })
}

/// One step of reading the file: a record, or the lines an unclosed quote ran over.
enum Item {
    Record { row: u64, line: u64 },
    Broken { lines: Vec<(u64, u64, String)> },
}

/// Records with their row and physical line, and unclosed quotes found.
struct Rows<R: Read> {
    rdr: csv::Reader<Tracked<R>>,
    record: csv::ByteRecord,
    row: u64,
    width: usize,
    name: String,
    delimiter: u8,
}

impl<R: Read> Rows<R> {
    fn new(rdr: csv::Reader<Tracked<R>>, width: usize, name: &str) -> Self {
        Self {
            rdr,
            record: csv::ByteRecord::new(),
            row: 0,
            width,
            name: name.to_string(),
            delimiter: b',',
        }
    }

    fn next(&mut self) -> Result<Option<Item>, ImportError> {
        let before = self.rdr.position().byte();
        match self.rdr.read_byte_record(&mut self.record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => {
                return Err(ImportError::Csv {
                    path: self.name.clone(),
                    line: self.rdr.get_ref().line_of(before),
                    message: e.to_string(),
                });
            }
        }
        let start = self.record.position().map(|p| p.byte()).unwrap_or(before);
        let end = self.rdr.position().byte();
        let tracked = self.rdr.get_ref();
        let start = tracked.record_start(start, end);
        let line = tracked.line_of(start);
        // Most records are one line: only those that span more are copied
        // out and looked at.
        let one_line = tracked.line_of(end.saturating_sub(1).max(start)) == line;
        let raw = if one_line {
            Vec::new()
        } else {
            tracked.raw(start, end)
        };
        let breaks = source::inner_line_breaks(&raw);
        // A quoted field may hold line breaks. But one whose record then has
        // an odd number of quotes, or the wrong number of fields, is a quote
        // that was never closed and ran over the following lines: each of
        // those lines is reported and rejected, none silently lost.
        let item = if !breaks.is_empty()
            && (raw.iter().filter(|&&b| b == b'"').count() % 2 == 1
                || !fits(&self.record, self.width))
        {
            let mut lines = Vec::new();
            let mut from = 0;
            for (k, &to) in breaks.iter().chain([&raw.len()]).enumerate() {
                let text = String::from_utf8_lossy(&raw[from..to])
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                self.row += 1;
                lines.push((self.row, line + k as u64, text));
                from = to;
            }
            Item::Broken { lines }
        } else {
            self.row += 1;
            Item::Record {
                row: self.row,
                line,
            }
        };
        self.rdr.get_mut().release(end);
        Ok(Some(item))
    }
}

/// The record has the header's fields, or more that are all empty
/// (spreadsheets pad rows with empty trailing cells).
fn fits(record: &csv::ByteRecord, width: usize) -> bool {
    record.len() == width
        || (record.len() > width
            && record
                .iter()
                .skip(width)
                .all(|c| c.iter().all(u8::is_ascii_whitespace)))
}

/// Valid contacts of one stretch of the file, and how far the reader got.
struct Batch {
    contacts: Vec<NewContact>,
    bytes_read: u64,
}

/// What the reader thread counted.
#[derive(Default)]
struct ReadCounts {
    rows: u64,
    rejected: u64,
    duplicates: u64,
    findings: FindingCounts,
    flagged: Vec<Finding>,
    rejections: Vec<Rejection>,
    rejects_file: Option<String>,
}

/// Rejected rows: held until the file is known to have a usable row (a
/// file with none creates nothing, not even a rejects file, unless the
/// operator named one), then streamed to the file.
struct Rejects<'a> {
    path: Option<&'a Path>,
    explicit: bool,
    headers: &'a [String],
    writer: Option<csv::Writer<std::fs::File>>,
    held: Vec<Vec<Vec<u8>>>,
    open: bool,
    /// Rejections kept for the terminal.
    keep: usize,
}

impl Rejects<'_> {
    fn wrap(&self, source: csv::Error) -> ImportError {
        ImportError::Rejects {
            path: self
                .path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source,
        }
    }

    fn add(
        &mut self,
        row: u64,
        line: u64,
        reason: &str,
        cells: Vec<Vec<u8>>,
        counts: &mut ReadCounts,
    ) -> Result<(), ImportError> {
        let mut out = vec![
            row.to_string().into_bytes(),
            line.to_string().into_bytes(),
            reason.as_bytes().to_vec(),
        ];
        out.extend(cells);
        if self.path.is_some() {
            if self.open {
                self.write(&out)?;
            } else {
                self.held.push(out);
            }
        }
        if counts.rejections.len() < self.keep {
            counts.rejections.push(Rejection {
                row,
                line,
                reason: reason.to_string(),
            });
        }
        Ok(())
    }

    fn write(&mut self, rec: &[Vec<u8>]) -> Result<(), ImportError> {
        let Some(path) = self.path else {
            return Ok(());
        };
        if self.writer.is_none() {
            // Rejected rows are personal data: owner-only (private_files).
            let file = crate::private_files::create(path).map_err(|e| self.wrap(e.into()))?;
            let mut w = csv::WriterBuilder::new().flexible(true).from_writer(file);
            let mut head: Vec<&str> = vec!["row", "line", "reason"];
            head.extend(self.headers.iter().map(String::as_str));
            w.write_record(&head).map_err(|e| self.wrap(e))?;
            self.writer = Some(w);
        }
        if let Some(w) = self.writer.as_mut() {
            let r = w.write_record(rec);
            r.map_err(|e| ImportError::Rejects {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// A usable row was found: the file's rejects are written from now on.
    fn start(&mut self) -> Result<(), ImportError> {
        if !self.open {
            self.open = true;
            for rec in std::mem::take(&mut self.held) {
                self.write(&rec)?;
            }
        }
        Ok(())
    }

    fn finish(mut self, usable: bool) -> Result<Option<String>, ImportError> {
        if !usable && self.explicit {
            self.start()?;
        }
        match self.writer.take() {
            Some(mut w) => {
                w.flush().map_err(|e| self.wrap(e.into()))?;
                Ok(self.path.map(|p| p.display().to_string()))
            }
            None => Ok(None),
        }
    }
}

/// The reader thread: parses every row, writes rejects, sends valid
/// contacts in batches. Stops early when the receiver is gone (the database
/// side failed).
#[allow(clippy::too_many_arguments)]
fn read_rows<R: Read>(
    rdr: csv::Reader<Tracked<R>>,
    mut layout: Layout,
    name: &str,
    rejects_path: Option<&Path>,
    explicit_rejects: bool,
    batch_size: usize,
    delimiter: u8,
    flags: &FlagChecker,
    out: tokio::sync::mpsc::Sender<Batch>,
) -> Result<ReadCounts, ImportError> {
    let mut counts = ReadCounts::default();
    let headers = std::mem::take(&mut layout.headers);
    let mut rejects = Rejects {
        path: rejects_path,
        explicit: explicit_rejects,
        headers: &headers,
        writer: None,
        held: Vec::new(),
        open: false,
        // Without a rejects file the terminal is the only place they go.
        keep: if rejects_path.is_some() { 20 } else { 10_000 },
    };
    let mut rows = Rows::new(rdr, headers.len(), name);
    rows.delimiter = delimiter;
    let mut first_row_of: HashMap<String, u64> = HashMap::new();
    let mut domain_flags: HashMap<String, (bool, Option<String>)> = HashMap::new();
    let mut batch: Vec<NewContact> = Vec::with_capacity(batch_size);
    let mut usable = false;
    while let Some(item) = rows.next()? {
        let (row, line) = match item {
            Item::Record { row, line } => (row, line),
            Item::Broken { lines } => {
                let opened = lines.first().map(|l| l.1).unwrap_or(0);
                let last = lines.last().map(|l| l.1).unwrap_or(opened);
                for (k, (row, line, text)) in lines.into_iter().enumerate() {
                    counts.rows += 1;
                    counts.rejected += 1;
                    let reason = if k == 0 {
                        format!(
                            "unclosed quote: a quoted field opens on this line and runs on to line {last}; \
                             this line and the ones it swallowed are rejected"
                        )
                    } else {
                        format!("swallowed by the unclosed quote opened on line {opened}")
                    };
                    let cells = split_line(&text, rows.delimiter);
                    rejects.add(row, line, &reason, cells, &mut counts)?;
                }
                continue;
            }
        };
        counts.rows += 1;
        let record = &rows.record;
        match parse_row(record, &headers, &layout) {
            Ok(contact) => {
                let key = email_key(contact.email.as_str());
                if let Some(first) = first_row_of.get(&key) {
                    counts.duplicates += 1;
                    let reason = format!("duplicate of row {first} ({})", contact.email);
                    let cells = record.iter().map(<[u8]>::to_vec).collect();
                    rejects.add(row, line, &reason, cells, &mut counts)?;
                    continue;
                }
                first_row_of.insert(key, row);
                if !usable {
                    usable = true;
                    rejects.start()?;
                }
                // Domains repeat: each is checked once (the typo check
                // measures edit distances to every big provider).
                let domain = contact.email.domain();
                let (disposable, typo) = match domain_flags.get(domain) {
                    Some(d) => d.clone(),
                    None => {
                        let d = (flags.is_disposable(domain), flags.typo(domain));
                        domain_flags.insert(domain.to_string(), d.clone());
                        d
                    }
                };
                let f = Flags {
                    role: flags.is_role(contact.email.local()),
                    disposable,
                    typo,
                };
                if f.role || f.disposable || f.typo.is_some() {
                    counts.findings.role += u64::from(f.role);
                    counts.findings.disposable += u64::from(f.disposable);
                    counts.findings.typo += u64::from(f.typo.is_some());
                    counts.flagged.push(Finding {
                        row,
                        email: contact.email.as_str().to_string(),
                        flags: f.labels(),
                    });
                }
                batch.push(contact);
            }
            Err(reason) => {
                counts.rejected += 1;
                let cells = record.iter().map(<[u8]>::to_vec).collect();
                rejects.add(row, line, &reason, cells, &mut counts)?;
            }
        }
        if batch.len() >= batch_size {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            let sent = out.blocking_send(Batch {
                contacts: full,
                bytes_read: rows.rdr.position().byte(),
            });
            if sent.is_err() {
                return Ok(counts);
            }
        }
    }
    // The last batch may be empty: it still carries the final position.
    let _ = out.blocking_send(Batch {
        contacts: batch,
        bytes_read: rows.rdr.position().byte(),
    });
    counts.rejects_file = rejects.finish(usable)?;
    Ok(counts)
}

/// The cells of one physical line, for the rejects file.
fn split_line(text: &str, delimiter: u8) -> Vec<Vec<u8>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let mut rec = csv::ByteRecord::new();
    match rdr.read_byte_record(&mut rec) {
        Ok(true) => rec.iter().map(<[u8]>::to_vec).collect(),
        _ => vec![text.as_bytes().to_vec()],
    }
}

fn parse_row(
    record: &csv::ByteRecord,
    headers: &[String],
    layout: &Layout,
) -> Result<NewContact, String> {
    if !fits(record, headers.len()) {
        return Err(format!(
            "has {} fields, the header has {}",
            record.len(),
            headers.len()
        ));
    }
    let mut fields = Vec::with_capacity(headers.len());
    for (i, f) in record.iter().take(headers.len()).enumerate() {
        // PostgreSQL refuses NUL in text; SQLite would cut the value at it.
        // Either way the cell is not what the person typed.
        if f.contains(&0) {
            return Err(format!(
                "column {} ({:?}) contains a NUL byte",
                i + 1,
                headers[i]
            ));
        }
        match std::str::from_utf8(f) {
            Ok(s) => fields.push(s),
            Err(_) => {
                return Err(format!(
                    "column {} ({:?}) is not valid UTF-8 (try --encoding windows-1252)",
                    i + 1,
                    headers[i]
                ));
            }
        }
    }
    // Spreadsheets pad cells; the address parser itself is strict about spaces.
    let raw_email = fields[layout.email_col].trim();
    if raw_email.is_empty() {
        return Err("empty email".into());
    }
    let email =
        EmailAddress::parse(raw_email).map_err(|e| format!("invalid email {raw_email:?}: {e}"))?;
    let mut c = NewContact::plain(email);
    let text = |v: &str| {
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    let mut signals = RowSignals::default();
    let mut json_attrs: Option<Map<String, Value>> = None;
    for (i, value) in fields.iter().enumerate() {
        let h = headers[i].as_str();
        match &layout.roles[i] {
            Role::Email | Role::Skip => {}
            Role::FirstName => c.first_name = text(value),
            Role::LastName => c.last_name = text(value),
            Role::FullName => {
                // listmonk keeps one name: the first word is the first name.
                if let Some(n) = text(value) {
                    match n.split_once(char::is_whitespace) {
                        Some((f, l)) => {
                            c.first_name = Some(f.to_string());
                            c.last_name = text(l);
                        }
                        None => c.first_name = Some(n),
                    }
                }
            }
            Role::Locale => c.locale = text(value),
            Role::Timezone => c.timezone = text(value),
            Role::Tags => c.tags = preset::split_tags(value),
            Role::JsonAttributes => {
                let v = value.trim();
                if !v.is_empty() {
                    match serde_json::from_str::<Value>(v) {
                        Ok(Value::Object(m)) => json_attrs = Some(m),
                        _ => {
                            return Err(format!("column {} ({h:?}) is not a JSON object", i + 1));
                        }
                    }
                }
            }
            Role::Status => signals.status = Some(value),
            Role::OptIn => signals.opt_in = Some(value),
            Role::DoubleOptIn => signals.double_opt_in = Some(value),
            Role::OptInTime => signals.optin_time = Some(value),
            Role::OptInIp => signals.optin_ip = Some(value),
            Role::ConfirmTime => signals.confirm_time = Some(value),
            Role::ConfirmIp => signals.confirm_ip = Some(value),
            Role::UnsubTime => signals.unsub_time = Some(value),
            Role::UnsubReason => signals.unsub_reason = Some(value),
            Role::CleanTime => signals.clean_time = Some(value),
            Role::UnsubAll => signals.unsub_all.push((h, value)),
            Role::UnsubList => signals.unsub_list.push((h, value)),
            Role::Bounced => signals.bounced.push((h, value)),
            Role::Complained => signals.complained.push((h, value)),
            Role::Attribute => {
                if let Some(v) = typed(value, layout.types[i])
                    .map_err(|e| format!("column {} ({h:?}): {e}", i + 1))?
                {
                    c.attributes.insert(layout.keys[i].clone(), v);
                }
            }
        }
    }
    if let Some(m) = json_attrs {
        // The file's own columns win over the JSON's keys of the same name.
        for (k, v) in m {
            c.attributes.entry(k).or_insert(v);
        }
    }
    let (suppression, consent) = preset::interpret(layout.preset, layout.kind, &signals)?;
    c.suppression = suppression.map(|s| SourceSuppression {
        status: s.status,
        withdraw: s.withdraw.map(|w| match w {
            preset::Scope::List => WithdrawScope::List,
            preset::Scope::All => WithdrawScope::All,
        }),
        rule: s.rule,
        reason: s.reason,
        at: s.at,
    });
    c.consent = match consent {
        SourceConsent::Evidence { at, ip, details } => RowConsent::Evidence { at, ip, details },
        SourceConsent::Asserted => RowConsent::Asserted,
        SourceConsent::Refused { .. } => RowConsent::Refused,
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(text: &[u8], opts: &ImportOptions) -> Result<Prepared, ImportError> {
        let src = Source::from_bytes("t.csv", text.to_vec(), None, None)?;
        prepare_source(src, opts)
    }

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
                    proptest::strategy::Just(b'\r'), proptest::strategy::Just(b';'),
                    proptest::strategy::Just(b'.'), proptest::num::u8::ANY,
                    b'a'..=b'z',
                ],
                0..300,
            ),
            header in proptest::prop_oneof![
                proptest::strategy::Just(b"email,first_name,tags,age\n".to_vec()),
                proptest::strategy::Just(b"Email Address,OPTIN_TIME,UNSUB_TIME,TAGS\n".to_vec()),
                proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            ],
        ) {
            let mut input = header;
            input.extend(body);
            let opts = ImportOptions::default();
            let Ok(p) = prepared(&input, &opts) else { return Ok(()) };
            let rdr = p.source.csv().unwrap();
            let mut rows = Rows::new(rdr, p.layout.headers.len(), "fuzz.csv");
            let mut n = 0;
            while let Ok(Some(item)) = rows.next() {
                match item {
                    Item::Record { row, .. } => {
                        n += 1;
                        proptest::prop_assert_eq!(row, n);
                        match parse_row(&rows.record, &p.layout.headers, &p.layout) {
                            Ok(c) => proptest::prop_assert!(!c.email.as_str().is_empty()),
                            Err(reason) => proptest::prop_assert!(!reason.is_empty()),
                        }
                    }
                    Item::Broken { lines } => {
                        for (row, _, _) in lines {
                            n += 1;
                            proptest::prop_assert_eq!(row, n);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_column_is_typed_from_all_its_cells() {
        let p = prepared(
            b"email,state,orders,zip,phone,joined,score,seen\n\
              a@x.com,MD,12,08001,600123123,2021-03-04,1.5,2021-03-04 10:11:12\n\
              b@x.com,13,7,28001,+34600123123,2022-01-02,2,2021-03-04\n",
            &ImportOptions::default(),
        )
        .unwrap();
        let t: BTreeMap<&str, ColumnType> = p
            .layout
            .keys
            .iter()
            .zip(&p.layout.types)
            .map(|(k, t)| (k.as_str(), *t))
            .collect();
        assert_eq!(t["state"], ColumnType::Text, "MD and 13: text");
        assert_eq!(t["orders"], ColumnType::Integer);
        assert_eq!(t["zip"], ColumnType::Text);
        assert_eq!(t["phone"], ColumnType::Text);
        assert_eq!(t["joined"], ColumnType::Date);
        assert_eq!(t["score"], ColumnType::Number);
        assert_eq!(t["seen"], ColumnType::DateTime);
        assert_eq!(
            typed("13", ColumnType::Text).unwrap(),
            Some(Value::from("13"))
        );
        assert_eq!(
            typed("2021-03-04 10:11:12", ColumnType::DateTime).unwrap(),
            Some(Value::from("2021-03-04T10:11:12Z"))
        );
        assert!(typed("abc", ColumnType::Integer).is_err());
    }

    #[test]
    fn mapping_flags_rename_retype_and_skip() {
        let mut opts = ImportOptions::default();
        opts.mapping
            .map
            .push(Mapping::parse_map("E-Post=email").unwrap());
        opts.mapping
            .map
            .push(Mapping::parse_map("PLZ=postcode").unwrap());
        opts.mapping
            .types
            .push(Mapping::parse_type("age=text").unwrap());
        opts.mapping.skip.push("Notes".into());
        let p = prepared(b"E-Post,PLZ,age,Notes\na@x.com,1010,33,hi\n", &opts).unwrap();
        assert_eq!(p.layout.roles[0], Role::Email);
        assert_eq!(p.layout.keys[1], "postcode");
        assert_eq!(p.layout.types[2], ColumnType::Text);
        assert_eq!(p.layout.roles[3], Role::Skip);
        opts.mapping.skip.push("Nope".into());
        let e = prepared(b"E-Post,PLZ,age,Notes\n", &opts).err().unwrap();
        assert!(e.to_string().contains("\"Nope\": no such column"), "{e}");
    }

    #[test]
    fn a_mapping_file_is_read_and_names_its_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("map.toml");
        std::fs::write(
            &f,
            "skip = [\"Notes\"]\n[columns]\n\"E-Post\" = \"email\"\n[types]\nPLZ = \"text\"\n",
        )
        .unwrap();
        let m = Mapping::from_toml(&f).unwrap();
        assert_eq!(m.map, vec![("E-Post".to_string(), "email".to_string())]);
        assert_eq!(m.types, vec![("PLZ".to_string(), ColumnType::Text)]);
        assert_eq!(m.skip, vec!["Notes"]);
        std::fs::write(&f, "[types]\nPLZ = \"postcode\"\n").unwrap();
        let e = Mapping::from_toml(&f).unwrap_err();
        assert!(e.contains("map.toml: [types] PLZ: unknown type"), "{e}");
        std::fs::write(&f, "[colums]\n").unwrap();
        assert!(Mapping::from_toml(&f).unwrap_err().contains("colums"));
    }

    #[test]
    fn headers_tolerate_trailing_empties_and_report_repeats() {
        let p = prepared(b"email,phone,phone,,\n", &ImportOptions::default()).unwrap();
        assert_eq!(p.layout.headers.len(), 3);
        assert_eq!(p.layout.keys[2], "phone (column 3)");
        assert!(
            p.layout.warnings[0].contains("column 3"),
            "{:?}",
            p.layout.warnings
        );
        let e = prepared(b"email,E-Mail\n", &ImportOptions::default())
            .err()
            .unwrap();
        assert!(e.to_string().contains("columns 1 (\"email\") and 2"), "{e}");
    }
}
