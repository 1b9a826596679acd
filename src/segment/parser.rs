//! Recursive-descent parser from tokens to an untyped syntax tree with spans.
//! It knows the grammar (docs/SEGMENTS.md) but not what a field means; the
//! checker gives the tree its types. Nesting is bounded so that no input can
//! exhaust the stack.

use std::ops::Range;

use super::error::SegmentError;
use super::lexer::{Tok, Token};

/// Deepest nesting of parentheses, `not`s and operator chains accepted.
const MAX_DEPTH: usize = 64;
/// Most operands in one `and`/`or`/`+` chain or one `[...]` list.
const MAX_ITEMS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchOp {
    Contains,
    StartsWith,
    EndsWith,
    Like,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    In {
        needle: Box<Node>,
        haystack: Box<Node>,
        negated: bool,
    },
    Match(MatchOp, Box<Node>, Box<Node>),
    IsNull {
        operand: Box<Node>,
        negated: bool,
    },
    Arith(ArithOp, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    /// A dotted name: `email`, `attributes.address.city`, `attributes["a b"]`.
    /// Each segment keeps its own span.
    Path(Vec<(String, Range<usize>)>),
    Call {
        name: String,
        name_span: Range<usize>,
        args: Vec<Node>,
    },
    List(Vec<Node>),
    Str(String),
    Int(i64),
    Float(f64),
    Duration(i64),
    Bool(bool),
    Null,
}

pub(crate) fn parse(src: &str, tokens: Vec<Token>) -> Result<Node, SegmentError> {
    let mut p = Parser {
        src,
        toks: tokens,
        pos: 0,
        depth: 0,
    };
    if matches!(p.peek(), Tok::Eof) {
        return Err(p.err(0..src.len(), "the filter is empty"));
    }
    let node = p.or()?;
    if !matches!(p.peek(), Tok::Eof) {
        let t = p.cur().clone();
        let hint = match &t.tok {
            Tok::Ident(_) | Tok::Str(_) | Tok::Int(_) | Tok::Float(_) => {
                " (a missing `and`/`or` or operator?)"
            }
            Tok::RParen => " (no `(` to close)",
            _ => "",
        };
        return Err(p.err(
            t.span,
            format!(
                "unexpected {} after a complete condition{hint}",
                t.tok.describe()
            ),
        ));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
}

/// Words with a meaning of their own; they can not name a field.
fn keyword(tok: &Tok) -> Option<&'static str> {
    let Tok::Ident(w) = tok else { return None };
    const WORDS: [&str; 13] = [
        "and",
        "or",
        "not",
        "in",
        "is",
        "null",
        "true",
        "false",
        "contains",
        "starts_with",
        "ends_with",
        "like",
        "exists",
    ];
    WORDS.into_iter().find(|k| w.eq_ignore_ascii_case(k))
}

impl Parser<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> SegmentError {
        SegmentError::expr(self.src, span, message)
    }

    fn cur(&self) -> &Token {
        // The token list always ends with Eof and `bump` never passes it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek(&self) -> &Tok {
        &self.cur().tok
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.toks[(self.pos + n).min(self.toks.len() - 1)].tok
    }

    fn bump(&mut self) -> Token {
        let t = self.cur().clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_kw(&self, kw: &str) -> bool {
        keyword(self.peek()) == Some(kw)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<Token, SegmentError> {
        if *self.peek() == want {
            Ok(self.bump())
        } else {
            let t = self.cur().clone();
            Err(self.err(
                t.span,
                format!("expected {what}, found {}", t.tok.describe()),
            ))
        }
    }

    fn enter(&mut self, span: Range<usize>) -> Result<(), SegmentError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(span, format!("nested more than {MAX_DEPTH} levels deep")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, SegmentError> {
        let first = self.and()?;
        if !self.at_kw("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.at_kw("or") {
            let op = self.bump();
            if items.len() >= MAX_ITEMS {
                return Err(self.err(op.span, "too many `or`s in one chain"));
            }
            items.push(self.and()?);
        }
        let span = items[0].span.start..items[items.len() - 1].span.end;
        Ok(Node {
            kind: Kind::Or(items),
            span,
        })
    }

    fn and(&mut self) -> Result<Node, SegmentError> {
        let first = self.not()?;
        if !self.at_kw("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.at_kw("and") {
            let op = self.bump();
            if items.len() >= MAX_ITEMS {
                return Err(self.err(op.span, "too many `and`s in one chain"));
            }
            items.push(self.not()?);
        }
        let span = items[0].span.start..items[items.len() - 1].span.end;
        Ok(Node {
            kind: Kind::And(items),
            span,
        })
    }

    fn not(&mut self) -> Result<Node, SegmentError> {
        if self.at_kw("not") {
            let kw = self.bump();
            self.enter(kw.span.clone())?;
            let inner = self.not()?;
            self.depth -= 1;
            let span = kw.span.start..inner.span.end;
            return Ok(Node {
                kind: Kind::Not(Box::new(inner)),
                span,
            });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Node, SegmentError> {
        let lhs = self.sum()?;
        let op_tok = self.cur().clone();
        let cmp = match op_tok.tok {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        let node = if let Some(op) = cmp {
            self.bump();
            let rhs = self.sum()?;
            let span = lhs.span.start..rhs.span.end;
            Node {
                kind: Kind::Cmp(op, Box::new(lhs), Box::new(rhs)),
                span,
            }
        } else if self.at_kw("in") || (self.at_kw("not") && keyword(self.peek_at(1)) == Some("in"))
        {
            let negated = self.at_kw("not");
            if negated {
                self.bump();
            }
            self.bump();
            let rhs = self.sum()?;
            let span = lhs.span.start..rhs.span.end;
            Node {
                kind: Kind::In {
                    needle: Box::new(lhs),
                    haystack: Box::new(rhs),
                    negated,
                },
                span,
            }
        } else if let Some(op) = match keyword(&op_tok.tok) {
            Some("contains") => Some(MatchOp::Contains),
            Some("starts_with") => Some(MatchOp::StartsWith),
            Some("ends_with") => Some(MatchOp::EndsWith),
            Some("like") => Some(MatchOp::Like),
            _ => None,
        } {
            self.bump();
            let rhs = self.sum()?;
            let span = lhs.span.start..rhs.span.end;
            Node {
                kind: Kind::Match(op, Box::new(lhs), Box::new(rhs)),
                span,
            }
        } else if self.at_kw("is") {
            self.bump();
            let negated = self.at_kw("not");
            if negated {
                self.bump();
            }
            let t = self.cur().clone();
            if keyword(&t.tok) != Some("null") {
                return Err(self.err(
                    t.span,
                    format!(
                        "expected `null` after `is{}`, found {}",
                        if negated { " not" } else { "" },
                        t.tok.describe()
                    ),
                ));
            }
            self.bump();
            Node {
                span: lhs.span.start..t.span.end,
                kind: Kind::IsNull {
                    operand: Box::new(lhs),
                    negated,
                },
            }
        } else {
            return Ok(lhs);
        };
        // Comparisons do not chain: `a < b < c` is almost always a mistake.
        let t = self.cur().clone();
        if matches!(
            t.tok,
            Tok::Eq | Tok::Ne | Tok::Lt | Tok::Le | Tok::Gt | Tok::Ge
        ) || matches!(
            keyword(&t.tok),
            Some("in" | "is" | "contains" | "starts_with" | "ends_with" | "like")
        ) {
            return Err(self.err(
                t.span,
                "comparisons do not chain; join them with `and` or `or`",
            ));
        }
        Ok(node)
    }

    fn sum(&mut self) -> Result<Node, SegmentError> {
        let mut lhs = self.unary()?;
        let mut count = 0;
        loop {
            let op = match self.peek() {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => return Ok(lhs),
            };
            let t = self.bump();
            count += 1;
            if count > MAX_DEPTH {
                return Err(self.err(t.span, format!("more than {MAX_DEPTH} `+`/`-` in a row")));
            }
            let rhs = self.unary()?;
            let span = lhs.span.start..rhs.span.end;
            lhs = Node {
                kind: Kind::Arith(op, Box::new(lhs), Box::new(rhs)),
                span,
            };
        }
    }

    fn unary(&mut self) -> Result<Node, SegmentError> {
        if matches!(self.peek(), Tok::Minus) {
            let t = self.bump();
            self.enter(t.span.clone())?;
            let inner = self.unary()?;
            self.depth -= 1;
            let span = t.span.start..inner.span.end;
            return Ok(Node {
                kind: Kind::Neg(Box::new(inner)),
                span,
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, SegmentError> {
        let t = self.bump();
        let span = t.span.clone();
        let leaf = |kind| {
            Ok(Node {
                kind,
                span: span.clone(),
            })
        };
        match t.tok {
            Tok::Str(s) => leaf(Kind::Str(s)),
            Tok::Int(n) => leaf(Kind::Int(n)),
            Tok::Float(f) => leaf(Kind::Float(f)),
            Tok::Duration(ms) => leaf(Kind::Duration(ms)),
            Tok::LParen => {
                self.enter(span.clone())?;
                let inner = self.or()?;
                self.depth -= 1;
                let close = self.expect(Tok::RParen, "`)`")?;
                Ok(Node {
                    kind: inner.kind,
                    span: span.start..close.span.end,
                })
            }
            Tok::LBracket => {
                let mut items = Vec::new();
                while !matches!(self.peek(), Tok::RBracket) {
                    if items.len() >= MAX_ITEMS {
                        let s = self.cur().span.clone();
                        return Err(self.err(s, format!("a list holds at most {MAX_ITEMS} values")));
                    }
                    self.enter(span.clone())?;
                    items.push(self.sum()?);
                    self.depth -= 1;
                    if matches!(self.peek(), Tok::Comma) {
                        self.bump();
                    } else if !matches!(self.peek(), Tok::RBracket) {
                        let c = self.cur().clone();
                        return Err(self.err(
                            c.span,
                            format!(
                                "expected `,` or `]` in the list, found {}",
                                c.tok.describe()
                            ),
                        ));
                    }
                }
                let close = self.bump();
                Ok(Node {
                    kind: Kind::List(items),
                    span: span.start..close.span.end,
                })
            }
            Tok::Ident(ref word) => match keyword(&t.tok) {
                Some("true") => leaf(Kind::Bool(true)),
                Some("false") => leaf(Kind::Bool(false)),
                Some("null") => leaf(Kind::Null),
                Some("exists") => self.call(word.clone(), span),
                Some(kw) => Err(self.err(
                    span,
                    format!("expected a field or a value, found the keyword `{kw}`"),
                )),
                None if matches!(self.peek(), Tok::LParen) => self.call(word.clone(), span),
                None => self.path(word.clone(), span),
            },
            other => Err(self.err(
                span,
                format!("expected a field or a value, found {}", other.describe()),
            )),
        }
    }

    fn call(&mut self, name: String, name_span: Range<usize>) -> Result<Node, SegmentError> {
        self.expect(Tok::LParen, "`(` after the function name")?;
        self.enter(name_span.clone())?;
        let mut args = Vec::new();
        while !matches!(self.peek(), Tok::RParen) {
            if args.len() >= 8 {
                let s = self.cur().span.clone();
                return Err(self.err(s, "too many arguments"));
            }
            args.push(self.or()?);
            if matches!(self.peek(), Tok::Comma) {
                self.bump();
            } else if !matches!(self.peek(), Tok::RParen) {
                let c = self.cur().clone();
                return Err(self.err(
                    c.span,
                    format!(
                        "expected `,` or `)` after an argument, found {}",
                        c.tok.describe()
                    ),
                ));
            }
        }
        self.depth -= 1;
        let close = self.bump();
        Ok(Node {
            span: name_span.start..close.span.end,
            kind: Kind::Call {
                name,
                name_span,
                args,
            },
        })
    }

    /// `a.b.c`, with `["any key"]` or `."any key"` for keys that are not
    /// plain words.
    fn path(&mut self, first: String, span: Range<usize>) -> Result<Node, SegmentError> {
        let mut segs = vec![(first, span.clone())];
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.bump();
                    let t = self.bump();
                    match t.tok {
                        Tok::Ident(w) => segs.push((w, t.span)),
                        Tok::Str(s) => segs.push((s, t.span)),
                        Tok::Int(n) => segs.push((n.to_string(), t.span)),
                        other => {
                            return Err(self.err(
                                t.span,
                                format!("expected a key after `.`, found {}", other.describe()),
                            ));
                        }
                    }
                }
                Tok::LBracket => {
                    let open = self.bump();
                    let t = self.bump();
                    let Tok::Str(s) = t.tok else {
                        return Err(self.err(
                            t.span,
                            "expected a quoted key inside `[...]`, e.g. attributes[\"first order\"]",
                        ));
                    };
                    let close = self.expect(Tok::RBracket, "`]`")?;
                    segs.push((s, open.span.start..close.span.end));
                }
                _ => break,
            }
            if segs.len() > MAX_DEPTH {
                let s = segs[segs.len() - 1].1.clone();
                return Err(self.err(s, "path too deep"));
            }
        }
        let end = segs[segs.len() - 1].1.end;
        Ok(Node {
            kind: Kind::Path(segs),
            span: span.start..end,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::lexer::lex;
    use super::*;

    fn p(src: &str) -> Node {
        parse(src, lex(src).unwrap()).unwrap()
    }

    fn perr(src: &str) -> SegmentError {
        match lex(src) {
            Ok(t) => parse(src, t).unwrap_err(),
            Err(e) => e,
        }
    }

    /// A compact rendering of the tree to assert structure.
    fn show(n: &Node) -> String {
        match &n.kind {
            Kind::Or(v) => format!("or({})", v.iter().map(show).collect::<Vec<_>>().join(", ")),
            Kind::And(v) => format!("and({})", v.iter().map(show).collect::<Vec<_>>().join(", ")),
            Kind::Not(x) => format!("not({})", show(x)),
            Kind::Cmp(op, a, b) => format!("{op:?}({}, {})", show(a), show(b)),
            Kind::In {
                needle,
                haystack,
                negated,
            } => format!(
                "in{}({}, {})",
                if *negated { "!" } else { "" },
                show(needle),
                show(haystack)
            ),
            Kind::Match(op, a, b) => format!("{op:?}({}, {})", show(a), show(b)),
            Kind::IsNull { operand, negated } => {
                format!("null{}({})", if *negated { "!" } else { "" }, show(operand))
            }
            Kind::Arith(op, a, b) => format!("{op:?}({}, {})", show(a), show(b)),
            Kind::Neg(x) => format!("neg({})", show(x)),
            Kind::Path(s) => s
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join("."),
            Kind::Call { name, args, .. } => {
                format!(
                    "{name}({})",
                    args.iter().map(show).collect::<Vec<_>>().join(", ")
                )
            }
            Kind::List(v) => format!("[{}]", v.iter().map(show).collect::<Vec<_>>().join(", ")),
            Kind::Str(s) => format!("{s:?}"),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Duration(d) => format!("{d}ms"),
            Kind::Bool(b) => b.to_string(),
            Kind::Null => "null".into(),
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        assert_eq!(
            show(&p("a == 1 or b == 2 and c == 3")),
            "or(Eq(a, 1), and(Eq(b, 2), Eq(c, 3)))"
        );
        assert_eq!(
            show(&p("(a == 1 or b == 2) and c == 3")),
            "and(or(Eq(a, 1), Eq(b, 2)), Eq(c, 3))"
        );
    }

    #[test]
    fn not_binds_tighter_than_and_but_looser_than_comparison() {
        assert_eq!(
            show(&p("not a == 1 and b == 2")),
            "and(not(Eq(a, 1)), Eq(b, 2))"
        );
        assert_eq!(show(&p("not not x")), "not(not(x))");
    }

    #[test]
    fn arithmetic_is_left_associative_and_below_comparison() {
        assert_eq!(
            show(&p("last_click_at > now() - 90d + 1h")),
            "Gt(last_click_at, Add(Sub(now(), 7776000000ms), 3600000ms))"
        );
    }

    #[test]
    fn membership_matching_and_null_checks() {
        assert_eq!(
            show(&p(r#""vip" in tags and "x" not in lists"#)),
            r#"and(in("vip", tags), in!("x", lists))"#
        );
        assert_eq!(
            show(&p(r#"domain in ["a.com", 'b.com',]"#)),
            r#"in(domain, ["a.com", "b.com"])"#
        );
        assert_eq!(
            show(&p("first_name is not null or last_name IS NULL")),
            "or(null!(first_name), null(last_name))"
        );
        assert_eq!(
            show(&p("email ends_with '@x.org' AND NOT email like 'a%'")),
            r#"and(EndsWith(email, "@x.org"), not(Like(email, "a%")))"#
        );
    }

    #[test]
    fn attribute_paths() {
        assert_eq!(
            show(&p(r#"attributes.address.city == 1"#)),
            "Eq(attributes.address.city, 1)"
        );
        assert_eq!(
            show(&p(r#"attributes["first order"]."it's" == 1"#)),
            "Eq(attributes.first order.it's, 1)"
        );
        assert_eq!(show(&p("exists(attributes.x)")), "exists(attributes.x)");
    }

    #[test]
    fn spans_cover_the_source() {
        let n = p("  a == 'x'  ");
        assert_eq!(n.span, 2..10);
        let n = p("(a == 1)");
        assert_eq!(n.span, 0..8);
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        for (src, col, needle) in [
            ("a == 1 b == 2", 8, "missing `and`"),
            ("a == 1 and", 11, "end of the expression"),
            ("(a == 1", 8, "expected `)`"),
            ("a == 1)", 7, "no `(`"),
            ("a < b < c", 7, "do not chain"),
            ("a is 1", 6, "`null`"),
            ("", 1, "empty"),
            ("a == and", 6, "keyword `and`"),
            ("f(1 2)", 5, "expected `,` or `)`"),
            ("[1 2]", 4, "expected `,` or `]`"),
            ("attributes[1]", 12, "quoted key"),
        ] {
            let e = perr(src);
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("column {col}:")), "{src}: {msg}");
            assert!(msg.contains(needle), "{src}: {msg}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("{}a == 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(perr(&src).to_string().contains("nested"));
        let src = format!("{}a", "not ".repeat(10_000));
        assert!(perr(&src).to_string().contains("nested"));
        let src = format!("{}1", "-".repeat(10_000));
        assert!(perr(&src).to_string().contains("nested"));
        let src = format!("x == 1{}", " + 1".repeat(1_000));
        assert!(perr(&src).to_string().contains("in a row"));
    }
}
