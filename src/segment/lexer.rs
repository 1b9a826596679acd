//! Tokens of the filter language, each with the byte range it came from so
//! that every later error can point at the text. The lexer never panics on
//! any input: an unexpected character is an error with its position.

use std::ops::Range;

use super::error::SegmentError;

/// Longest duration literal accepted (100,000 days, about 273 years). The
/// bound keeps every sum of durations and dates far from i64 overflow.
const MAX_DURATION_MS: i64 = 100_000 * DAY_MS;
const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    /// A duration literal such as `90d`, in milliseconds.
    Duration(i64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Eof,
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Int(_) | Tok::Float(_) => "a number".into(),
            Tok::Duration(_) => "a duration".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Eq => "`==`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Plus => "`+`".into(),
            Tok::Minus => "`-`".into(),
            Tok::Eof => "the end of the expression".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Range<usize>,
}

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, SegmentError> {
    let mut lx = Lexer {
        src,
        pos: 0,
        out: Vec::new(),
    };
    lx.run()?;
    Ok(lx.out)
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    out: Vec<Token>,
}

impl Lexer<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> SegmentError {
        SegmentError::expr(self.src, span, message)
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.out.push(Token {
            tok,
            span: start..self.pos,
        });
    }

    fn run(&mut self) -> Result<(), SegmentError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            if c.is_whitespace() {
                self.pos += c.len_utf8();
                continue;
            }
            if c == '#' {
                // A comment runs to the end of the line: long filters in TOML
                // multi-line strings can explain themselves.
                while let Some(c) = self.peek() {
                    if c == '\n' {
                        break;
                    }
                    self.pos += c.len_utf8();
                }
                continue;
            }
            if c.is_alphabetic() || c == '_' {
                let word = self.word().to_string();
                self.push(Tok::Ident(word), start);
                continue;
            }
            if c.is_ascii_digit() {
                self.number()?;
                continue;
            }
            if c == '"' || c == '\'' {
                self.string(c)?;
                continue;
            }
            let two = (c, self.peek2());
            let (tok, len) = match two {
                ('=', Some('=')) => (Tok::Eq, 2),
                ('!', Some('=')) => (Tok::Ne, 2),
                ('<', Some('=')) => (Tok::Le, 2),
                ('>', Some('=')) => (Tok::Ge, 2),
                ('<', Some('>')) => {
                    return Err(self.err(start..start + 2, "use `!=` for \"not equal\""));
                }
                ('&', Some('&')) => {
                    return Err(self.err(start..start + 2, "use `and` instead of `&&`"));
                }
                ('|', Some('|')) => {
                    return Err(self.err(start..start + 2, "use `or` instead of `||`"));
                }
                ('=', _) => {
                    return Err(self.err(start..start + 1, "use `==` to compare"));
                }
                ('!', _) => {
                    return Err(self.err(start..start + 1, "use `not` instead of `!`"));
                }
                ('<', _) => (Tok::Lt, 1),
                ('>', _) => (Tok::Gt, 1),
                ('(', _) => (Tok::LParen, 1),
                (')', _) => (Tok::RParen, 1),
                ('[', _) => (Tok::LBracket, 1),
                (']', _) => (Tok::RBracket, 1),
                (',', _) => (Tok::Comma, 1),
                ('.', _) => (Tok::Dot, 1),
                ('+', _) => (Tok::Plus, 1),
                ('-', _) => (Tok::Minus, 1),
                _ => {
                    return Err(self.err(
                        start..start + c.len_utf8(),
                        format!("unexpected character {c:?}"),
                    ));
                }
            };
            self.pos += len;
            self.push(tok, start);
        }
        let end = self.src.len();
        self.out.push(Token {
            tok: Tok::Eof,
            span: end..end,
        });
        Ok(())
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            // Letters of any script: attribute keys come from CSV headers
            // such as `país`.
            if c.is_alphanumeric() || c == '_' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        &self.src[start..self.pos]
    }

    fn number(&mut self) -> Result<(), SegmentError> {
        let start = self.pos;
        let mut digits = String::new();
        let mut is_float = false;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                digits.push(c);
                self.pos += 1;
            } else if c == '_' {
                self.pos += 1;
            } else if c == '.' && !is_float && self.peek2().is_some_and(|d| d.is_ascii_digit()) {
                is_float = true;
                digits.push('.');
                self.pos += 1;
            } else {
                break;
            }
        }
        // An exponent (`1e300`, `2.5E-3`) makes a float; `e` is no unit.
        if matches!(self.peek(), Some('e' | 'E')) {
            let rest = &self.src[self.pos + 1..];
            let sign = usize::from(rest.starts_with(['+', '-']));
            if rest[sign..].starts_with(|c: char| c.is_ascii_digit()) {
                is_float = true;
                digits.push('e');
                digits.push_str(&rest[..sign]);
                self.pos += 1 + sign;
                while let Some(c) = self.peek().filter(char::is_ascii_digit) {
                    digits.push(c);
                    self.pos += 1;
                }
            }
        }
        if let Some(c) = self.peek()
            && c.is_alphabetic()
        {
            let unit_start = self.pos;
            let unit = self.word().to_string();
            let span = start..self.pos;
            if is_float {
                return Err(self.err(
                    span,
                    "a duration is a whole number with a unit, e.g. 36h rather than 1.5d",
                ));
            }
            let per_unit: i64 = match unit.as_str() {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => DAY_MS,
                "w" => 7 * DAY_MS,
                "mo" | "y" => {
                    return Err(self.err(
                        unit_start..self.pos,
                        "months and years have no fixed length; use days (e.g. 30d, 365d)",
                    ));
                }
                _ => {
                    return Err(self.err(
                        unit_start..self.pos,
                        format!("unknown duration unit `{unit}` (use ms, s, m, h, d or w)"),
                    ));
                }
            };
            let ms = digits
                .parse::<i64>()
                .ok()
                .and_then(|n| n.checked_mul(per_unit))
                .filter(|ms| *ms <= MAX_DURATION_MS)
                .ok_or_else(|| self.err(span.clone(), "duration too long (at most 100000d)"))?;
            self.push(Tok::Duration(ms), start);
            return Ok(());
        }
        let span = start..self.pos;
        if is_float {
            match digits.parse::<f64>() {
                Ok(f) if f.is_finite() => self.push(Tok::Float(f), start),
                _ => return Err(self.err(span, "number out of range")),
            }
        } else {
            match digits.parse::<i64>() {
                Ok(n) => self.push(Tok::Int(n), start),
                Err(_) => {
                    return Err(
                        self.err(span, "integer out of range (at most 9223372036854775807)")
                    );
                }
            }
        }
        Ok(())
    }

    fn string(&mut self, quote: char) -> Result<(), SegmentError> {
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err(start..self.pos, "unterminated string"));
            };
            let here = self.pos;
            self.pos += c.len_utf8();
            if c == quote {
                break;
            }
            if c != '\\' {
                value.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(self.err(start..self.pos, "unterminated string"));
            };
            self.pos += e.len_utf8();
            match e {
                '"' | '\'' | '\\' => value.push(e),
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                'u' => value.push(self.unicode_escape(here)?),
                _ => {
                    return Err(self.err(
                        here..self.pos,
                        format!(
                            "unknown escape `\\{e}` (use \\\" \\' \\\\ \\n \\t \\r or \\u{{...}})"
                        ),
                    ));
                }
            }
        }
        self.push(Tok::Str(value), start);
        Ok(())
    }

    /// `\u{1F600}`: one to six hex digits naming a Unicode scalar value.
    fn unicode_escape(&mut self, esc_start: usize) -> Result<char, SegmentError> {
        let bad = |lx: &Self| lx.err(esc_start..lx.pos, "a unicode escape is written \\u{XXXX}");
        if self.peek() != Some('{') {
            return Err(bad(self));
        }
        self.pos += 1;
        let hex_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
            self.pos += 1;
        }
        let hex = &self.src[hex_start..self.pos];
        if self.peek() != Some('}') || hex.is_empty() || hex.len() > 6 {
            return Err(bad(self));
        }
        self.pos += 1;
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.err(esc_start..self.pos, "not a Unicode scalar value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn durations_become_milliseconds() {
        assert_eq!(
            toks("90d 12h 2w 30m 5s 10ms"),
            vec![
                Tok::Duration(90 * DAY_MS),
                Tok::Duration(12 * 3_600_000),
                Tok::Duration(14 * DAY_MS),
                Tok::Duration(1_800_000),
                Tok::Duration(5_000),
                Tok::Duration(10),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn strings_take_either_quote_and_escapes() {
        assert_eq!(
            toks(r#"'it\'s' "a\"b\\c\n" "\u{e9}""#),
            vec![
                Tok::Str("it's".into()),
                Tok::Str("a\"b\\c\n".into()),
                Tok::Str("é".into()),
                Tok::Eof
            ]
        );
    }

    #[test]
    fn spans_are_byte_ranges() {
        let t = lex("€ == 'x'").unwrap_err();
        assert_eq!(t.span(), Some(0..3));
        let t = lex("a == 'x").unwrap_err();
        assert_eq!(t.span(), Some(5..7));
    }

    #[test]
    fn helpful_errors_for_other_languages_operators() {
        for (src, needle) in [
            ("a = 1", "`==`"),
            ("a && b", "`and`"),
            ("a || b", "`or`"),
            ("!a", "`not`"),
            ("a <> b", "`!=`"),
            ("3mo", "days"),
            ("3x", "unknown duration unit"),
            ("1.5d", "whole number"),
            ("1e999", "out of range"),
            ("1e5d", "whole number"),
            ("99999999999999999999", "out of range"),
            ("'\\q'", "unknown escape"),
        ] {
            let e = lex(src).unwrap_err().to_string();
            assert!(e.contains(needle), "{src}: {e}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(
            toks("1_000 2.5 007 1e3 2.5E-3"),
            vec![
                Tok::Int(1000),
                Tok::Float(2.5),
                Tok::Int(7),
                Tok::Float(1000.0),
                Tok::Float(0.0025),
                Tok::Eof
            ]
        );
        // `1.` followed by a letter is an int then a dot (field access never
        // follows a number, so the parser reports it).
        assert_eq!(toks("1.x")[..2], [Tok::Int(1), Tok::Dot]);
    }
}
