//! The segment filter language: parse → typed AST → parameterised SQL.
//!
//! A segment is a named condition over a contact's columns, JSON attributes,
//! tags, list subscriptions (consent) and engagement counters, such as
//! `attributes.country == "ES" and "vip" in tags and last_click_at > now() - 90d`.
//! The text is lexed, parsed and type-checked once, into `Expr`; errors carry
//! the byte span of the offending part. The SQL emitter then writes a
//! condition over `contacts c` for SQLite or PostgreSQL in which every user
//! value and attribute key is a bound parameter. docs/SEGMENTS.md is the
//! language reference.
//!
//! This module only selects contacts. It does not decide who may be mailed:
//! suppression (status, consent) is the send stage's job, applied on top.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use sqlx::{Postgres, QueryBuilder, Sqlite};

use crate::config::line_col;
use crate::domain::time::now_millis;
use crate::store::{Store, StoreError};

pub mod ast;
mod check;
mod error;
mod lexer;
mod parser;
mod sql;

pub use ast::Expr;
pub use error::{Place, SegmentError, toml_offset};
pub use sql::Dialect;

/// A parsed and type-checked filter with its name and source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub name: String,
    pub expr: Expr,
    pub source: String,
    pub description: Option<String>,
}

impl Segment {
    /// Parses and checks `source`. Errors point into `source` (see
    /// `SegmentError::span`, `SegmentError::render`).
    pub fn parse(name: &str, source: &str) -> Result<Segment, SegmentError> {
        let tokens = lexer::lex(source)?;
        check_bounds(source, &tokens)?;
        let tree = parser::parse(source, tokens)?;
        let expr = check::check(source, &tree)?;
        Ok(Segment {
            name: name.to_string(),
            expr,
            source: source.to_string(),
            description: None,
        })
    }

    /// The filter on one line, without comments or runs of spaces, for
    /// listings.
    pub fn one_line(&self) -> String {
        let Ok(tokens) = lexer::lex(&self.source) else {
            return self.source.clone();
        };
        let mut out = String::with_capacity(self.source.len());
        let mut prev_end = None;
        for t in tokens {
            if prev_end.is_some_and(|e| e < t.span.start) {
                out.push(' ');
            }
            out.push_str(&self.source[t.span.clone()]);
            prev_end = Some(t.span.end);
        }
        out.trim_end().to_string()
    }

    /// Parses a filter held in a TOML string value, placing errors at the
    /// file's line and column: `value` is the `toml::Spanned` string as
    /// deserialised from `file_text`. For `[segment]` tables in campaign files.
    pub fn parse_in_toml(
        name: &str,
        value: &toml::Spanned<String>,
        path: &Path,
        file_text: &str,
    ) -> Result<Segment, SegmentError> {
        Segment::parse(name, value.get_ref()).map_err(|e| e.in_toml(path, file_text, value.span()))
    }
}

/// Conditions one filter may join with `and`/`or`. Each one is a level of
/// SQLite's expression tree, which stops at 1,000 (SQLITE_MAX_EXPR_DEPTH):
/// a filter with 999 terms passed the checker and then failed in SQLite
/// with no position. Lists (`in [...]`) are flat and bounded by the parser.
pub const MAX_TERMS: usize = 200;
/// Characters in one string value (a `contains` or `like` pattern above
/// all): SQLite refuses LIKE patterns over 50,000 bytes, and matching cost
/// grows with the pattern.
pub const MAX_STRING: usize = 1_000;

/// Refuses filters beyond what both databases take, at the position of the
/// first term or string too many.
fn check_bounds(src: &str, tokens: &[lexer::Token]) -> Result<(), SegmentError> {
    let mut terms = 1;
    for t in tokens {
        match &t.tok {
            lexer::Tok::Ident(w)
                if w.eq_ignore_ascii_case("and") || w.eq_ignore_ascii_case("or") =>
            {
                terms += 1;
                if terms > MAX_TERMS {
                    return Err(SegmentError::expr(
                        src,
                        t.span.clone(),
                        format!("a filter may join at most {MAX_TERMS} conditions"),
                    ));
                }
            }
            lexer::Tok::Str(v) if v.chars().count() > MAX_STRING => {
                return Err(SegmentError::expr(
                    src,
                    t.span.clone(),
                    format!("a string value may hold at most {MAX_STRING} characters"),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Appends `(<condition>)` over table alias `c` (contacts) to a SQLite query,
/// with all values bound. `now_ms` is the instant `now()` means.
pub fn push_where_sqlite(qb: &mut QueryBuilder<'_, Sqlite>, seg: &Segment, now_ms: i64) {
    sql::emit(qb, &seg.expr, now_ms);
}

/// Appends `(<condition>)` over table alias `c` (contacts) to a PostgreSQL
/// query, with all values bound. `now_ms` is the instant `now()` means.
pub fn push_where_postgres(qb: &mut QueryBuilder<'_, Postgres>, seg: &Segment, now_ms: i64) {
    sql::emit(qb, &seg.expr, now_ms);
}

/// The SQL condition for `seg` in `dialect` and its bound values, rendered
/// for people (`cartero segment explain`); placeholders are `?` on SQLite and
/// `$n` on PostgreSQL.
pub fn explain(seg: &Segment, dialect: Dialect, now_ms: i64) -> (String, Vec<String>) {
    let mut rec = sql::Recorder::new(dialect);
    sql::emit(&mut rec, &seg.expr, now_ms);
    (rec.sql, rec.params)
}

/// How many contacts the segment selects, whatever their status.
pub async fn count(store: &Store, seg: &Segment) -> Result<i64, StoreError> {
    Ok(count_by_status(store, seg)
        .await?
        .iter()
        .map(|(_, n)| n)
        .sum())
}

/// The segment's contacts counted per contact status (`active`,
/// `unsubscribed`, ...), in status order; statuses with no contacts are left
/// out.
pub async fn count_by_status(
    store: &Store,
    seg: &Segment,
) -> Result<Vec<(String, i64)>, StoreError> {
    const HEAD: &str = "SELECT c.status, COUNT(*) FROM contacts c WHERE ";
    const TAIL: &str = " GROUP BY c.status ORDER BY c.status";
    let now = now_millis();
    let rows: Vec<(String, i64)> = match store {
        Store::Sqlite(pool) => {
            let mut qb = QueryBuilder::<Sqlite>::new(HEAD);
            push_where_sqlite(&mut qb, seg, now);
            qb.push(TAIL);
            qb.build_query_as().fetch_all(pool).await?
        }
        Store::Postgres(pool) => {
            let mut qb = QueryBuilder::<Postgres>::new(HEAD);
            push_where_postgres(&mut qb, seg, now);
            qb.push(TAIL);
            qb.build_query_as().fetch_all(pool).await?
        }
    };
    Ok(rows)
}

/// A contact as `segment sample` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampleContact {
    pub id: i64,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub attributes: serde_json::Value,
}

/// id, email, first_name, last_name, attributes as JSON text.
type SampleRow = (i64, String, Option<String>, Option<String>, String);

/// Up to `n` contacts of the segment, picked at random.
pub async fn sample(
    store: &Store,
    seg: &Segment,
    n: i64,
) -> Result<Vec<SampleContact>, StoreError> {
    let now = now_millis();
    let n = n.max(0);
    let rows: Vec<SampleRow> = match store {
        Store::Sqlite(pool) => {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT c.id, c.email, c.first_name, c.last_name, c.attributes FROM contacts c WHERE ",
            );
            push_where_sqlite(&mut qb, seg, now);
            qb.push(" ORDER BY random() LIMIT ");
            qb.push_bind(n);
            qb.build_query_as().fetch_all(pool).await?
        }
        Store::Postgres(pool) => {
            let mut qb = QueryBuilder::<Postgres>::new(
                "SELECT c.id, c.email, c.first_name, c.last_name, c.attributes::text FROM contacts c WHERE ",
            );
            push_where_postgres(&mut qb, seg, now);
            qb.push(" ORDER BY random() LIMIT ");
            qb.push_bind(n);
            qb.build_query_as().fetch_all(pool).await?
        }
    };
    rows.into_iter()
        .map(|(id, email, first_name, last_name, attrs)| {
            let attributes = serde_json::from_str(&attrs).map_err(|e| {
                StoreError::Corrupt(format!("contact {id}: attributes are not JSON: {e}"))
            })?;
            Ok(SampleContact {
                id,
                email,
                first_name,
                last_name,
                attributes,
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentsFile {
    #[serde(default)]
    segments: BTreeMap<String, SegmentDef>,
}

/// One segment as written in TOML: a `[segments.NAME]` table of the
/// segments file, or the `[segment]` table of a campaign file. Deserialise it
/// with the rest of the file, then `compile` it with the file's text so that
/// errors land on the right line and column.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentDef {
    pub filter: toml::Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Loads the named segments of a segments file:
///
/// ```toml
/// [segments.spain_vip]
/// description = "VIPs in Spain who clicked lately"
/// filter = 'attributes.country == "ES" and "vip" in tags and last_click_at > now() - 90d'
/// ```
///
/// Every filter is checked; the first error is reported at file:line:col.
/// Segments come back in file order.
pub fn load_file(path: &Path) -> Result<Vec<Segment>, SegmentError> {
    parse_file(path, &read(path)?)
}

/// Every segment of the file, each compiled on its own, so that a checker
/// can report all mistakes at once. Only an unreadable file or invalid TOML
/// is an error for the whole file.
pub fn check_file(path: &Path) -> Result<Vec<Result<Segment, SegmentError>>, SegmentError> {
    let text = read(path)?;
    Ok(definitions(path, &text)?
        .into_iter()
        .map(|(name, def)| def.compile(&name, path, &text))
        .collect())
}

fn read(path: &Path) -> Result<String, SegmentError> {
    std::fs::read_to_string(path).map_err(|source| SegmentError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `load_file` on text already read.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<Segment>, SegmentError> {
    definitions(path, text)?
        .into_iter()
        .map(|(name, def)| def.compile(&name, path, text))
        .collect()
}

/// The segment called `name` in the segments file at `path`. Only that
/// segment's filter is compiled, so a mistake in another segment does not
/// stop this one from being counted (`segment list` reports every segment).
pub fn find(path: &Path, name: &str) -> Result<Segment, SegmentError> {
    let text = read(path)?;
    let defs = definitions(path, &text)?;
    let known: Vec<String> = defs.iter().map(|(n, _)| n.clone()).collect();
    match defs.into_iter().find(|(n, _)| n == name) {
        Some((n, def)) => def.compile(&n, path, &text),
        None => Err(SegmentError::Unknown {
            name: name.to_string(),
            path: path.to_path_buf(),
            known,
        }),
    }
}

/// The file's segment definitions in file order, not yet compiled.
fn definitions(path: &Path, text: &str) -> Result<Vec<(String, SegmentDef)>, SegmentError> {
    let file: SegmentsFile = toml::from_str(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((1, 1), |s: Range<usize>| line_col(text, s.start));
        SegmentError::Toml {
            path: path.to_path_buf(),
            line,
            col,
            message: e.message().trim().to_string(),
        }
    })?;
    let mut defs: Vec<(String, SegmentDef)> = file.segments.into_iter().collect();
    defs.sort_by_key(|(_, d)| d.filter.span().start);
    Ok(defs)
}

impl SegmentDef {
    /// Parses the filter; `text` is the whole file it was read from.
    pub fn compile(self, name: &str, path: &Path, text: &str) -> Result<Segment, SegmentError> {
        let mut seg = Segment::parse_in_toml(name, &self.filter, path, text)?;
        seg.description = self.description;
        Ok(seg)
    }
}

#[cfg(test)]
mod tests;
