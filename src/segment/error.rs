//! Errors of the segment language, with the place they point at: a byte span
//! inside the expression and, when the expression came from a TOML file, the
//! file, line and column that span starts at.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::line_col;

/// Where an expression sits in a file: the 1-based line and column (in
/// characters) of the error's first character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The expression is malformed, names an unknown field, or mixes types.
    /// `span` is a byte range into `expr`.
    #[error("{}", ExprDisplay { message, span, expr, place })]
    Expr {
        message: String,
        span: Range<usize>,
        expr: String,
        place: Option<Place>,
    },
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The segments file is not valid TOML or has unknown keys.
    #[error("{}:{line}:{col}: {message}", path.display())]
    Toml {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{}: no segment named {name:?}{}", path.display(), known_list(known))]
    Unknown {
        name: String,
        path: PathBuf,
        known: Vec<String>,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (the file defines none)".into()
    } else {
        format!(" (defined: {})", known.join(", "))
    }
}

struct ExprDisplay<'a> {
    message: &'a str,
    span: &'a Range<usize>,
    expr: &'a str,
    place: &'a Option<Place>,
}

impl fmt::Display for ExprDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.place {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                p.path.display(),
                p.line,
                p.col,
                self.message
            ),
            None => {
                let (line, col) = line_col(self.expr, self.span.start);
                if self.expr.contains('\n') {
                    write!(f, "line {line}, column {col}: {}", self.message)
                } else {
                    write!(f, "column {col}: {}", self.message)
                }
            }
        }
    }
}

impl SegmentError {
    pub(crate) fn expr(src: &str, span: Range<usize>, message: impl Into<String>) -> Self {
        SegmentError::Expr {
            message: message.into(),
            span,
            expr: src.to_string(),
            place: None,
        }
    }

    /// The byte range of the expression the error points at, when it is an
    /// error in an expression.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            SegmentError::Expr { span, .. } => Some(span.clone()),
            _ => None,
        }
    }

    /// Places an expression error inside a TOML file: `file_text` is the
    /// whole file and `value_span` the byte span of the string value holding
    /// the expression (quotes included), as `toml::Spanned` reports it. Escapes
    /// in the TOML string are accounted for, so the column is the one an
    /// editor shows.
    pub fn in_toml(self, path: &Path, file_text: &str, value_span: Range<usize>) -> Self {
        match self {
            SegmentError::Expr {
                message,
                span,
                expr,
                place: _,
            } => {
                let raw = toml_offset(file_text, value_span, span.start);
                let (line, col) = line_col(file_text, raw);
                SegmentError::Expr {
                    message,
                    span,
                    expr,
                    place: Some(Place {
                        path: path.to_path_buf(),
                        line,
                        col,
                    }),
                }
            }
            other => other,
        }
    }

    /// The error with the offending part of the expression underlined:
    ///
    /// ```text
    /// campaigns/segments.toml:3:22: unknown field `contry`
    ///   |
    ///   | contry == "ES"
    ///   | ^^^^^^
    /// ```
    pub fn render(&self) -> String {
        let SegmentError::Expr { span, expr, .. } = self else {
            return self.to_string();
        };
        let start = expr.floor_char_boundary(span.start.min(expr.len()));
        let end = expr
            .floor_char_boundary(span.end.min(expr.len()))
            .max(start);
        let line_start = expr[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = expr[start..].find('\n').map_or(expr.len(), |i| start + i);
        let line = &expr[line_start..line_end];
        let pad: String = expr[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = expr[start..end.min(line_end)].chars().count().max(1);
        format!("{self}\n  |\n  | {line}\n  | {pad}{}", "^".repeat(width))
    }
}

/// Maps a byte offset inside a decoded TOML string to the byte offset in the
/// file where that character is written. Falls back to the first character of
/// the string when the literal cannot be walked (which would mean `value_span`
/// does not point at a string).
pub fn toml_offset(file_text: &str, value_span: Range<usize>, decoded_offset: usize) -> usize {
    let Some(raw) = file_text.get(value_span.clone()) else {
        return value_span.start.min(file_text.len());
    };
    let map = decode_map(raw);
    let base = value_span.start;
    match map {
        Some(m) => base + m.get(decoded_offset).or(m.last()).copied().unwrap_or(0),
        None => base,
    }
}

/// For each byte of the decoded string, the offset (relative to the literal's
/// first quote) of the raw text it came from; one extra entry for the end.
/// TOML 1.0 §String: basic strings take escapes, literal strings do not, and a
/// newline right after an opening triple quote is trimmed.
fn decode_map(raw: &str) -> Option<Vec<usize>> {
    let (delim, basic) = if raw.starts_with("\"\"\"") {
        ("\"\"\"", true)
    } else if raw.starts_with("'''") {
        ("'''", false)
    } else if raw.starts_with('"') {
        ("\"", true)
    } else if raw.starts_with('\'') {
        ("'", false)
    } else {
        return None;
    };
    let end = raw.len().checked_sub(delim.len())?;
    let mut i = delim.len();
    if delim.len() == 3 {
        if raw[i..].starts_with("\r\n") {
            i += 2;
        } else if raw[i..].starts_with('\n') {
            i += 1;
        }
    }
    let mut map = Vec::with_capacity(end);
    while i < end {
        let c = raw[i..].chars().next()?;
        if basic && c == '\\' {
            let e = raw[i + 1..].chars().next()?;
            match e {
                'u' | 'U' => {
                    let n = if e == 'u' { 4 } else { 8 };
                    let hex = raw.get(i + 2..i + 2 + n)?;
                    let ch = char::from_u32(u32::from_str_radix(hex, 16).ok()?)?;
                    map.extend(std::iter::repeat_n(i, ch.len_utf8()));
                    i += 2 + n;
                }
                ' ' | '\t' | '\r' | '\n' if delim.len() == 3 => {
                    // Line-ending backslash: the newline and the whitespace
                    // that follows it vanish from the value.
                    i += 1;
                    while let Some(w) = raw[i..].chars().next() {
                        if i < end && w.is_whitespace() {
                            i += w.len_utf8();
                        } else {
                            break;
                        }
                    }
                }
                _ => {
                    map.push(i);
                    i += 1 + e.len_utf8();
                }
            }
            continue;
        }
        for b in 0..c.len_utf8() {
            map.push(i + b);
        }
        i += c.len_utf8();
    }
    map.push(end);
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_caret_under_span() {
        let e = SegmentError::expr(
            "a == 1 and contry == 'ES'",
            11..17,
            "unknown field `contry`",
        );
        assert_eq!(
            e.render(),
            "column 12: unknown field `contry`\n  |\n  | a == 1 and contry == 'ES'\n  |            ^^^^^^"
        );
    }

    #[test]
    fn multi_line_expression_names_the_line() {
        let e = SegmentError::expr("a == 1\n and b", 12..13, "unknown field `b`");
        assert!(e.to_string().starts_with("line 2, column 6:"), "{e}");
        assert!(
            e.render().ends_with("  |  and b\n  |      ^"),
            "{}",
            e.render()
        );
    }

    #[test]
    fn toml_offsets_account_for_escapes() {
        let file = "[segments.x]\nfilter = \"a == \\\"ES\\\" and zz\"\n";
        let start = file.find('"').unwrap();
        let end = file.rfind('"').unwrap() + 1;
        // decoded: a == "ES" and zz ; `zz` starts at byte 14
        let decoded = "a == \"ES\" and zz";
        let zz = decoded.find("zz").unwrap();
        let raw = toml_offset(file, start..end, zz);
        assert_eq!(&file[raw..raw + 2], "zz");
        assert_eq!(line_col(file, raw), (2, 27));
    }

    #[test]
    fn toml_offsets_in_multiline_literal() {
        let file = "f = '''\nx == 1\n  and yy'''";
        let start = file.find("'''").unwrap();
        let decoded = "x == 1\n  and yy";
        let raw = toml_offset(file, start..file.len(), decoded.find("yy").unwrap());
        assert_eq!(&file[raw..raw + 2], "yy");
        assert_eq!(line_col(file, raw), (3, 7));
    }

    #[test]
    fn toml_offsets_with_unicode_escape() {
        let file = "f = \"\\u00e9 zz\"";
        let decoded = "é zz";
        let raw = toml_offset(file, 4..file.len(), decoded.find("zz").unwrap());
        assert_eq!(&file[raw..raw + 2], "zz");
    }
}
