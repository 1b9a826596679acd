//! The type checker: turns the syntax tree into the typed `Expr`, resolving
//! field names, fixing the JSON type an attribute is read as, folding date
//! literals, and rejecting anything that would compare unlike things. Every
//! error points at the part of the expression that is wrong.

use std::ops::Range;

use time::format_description::well_known::Rfc3339;

use super::ast::{CmpOp, Column, Expr, JsonTy, Operand, PatternPart, Ty};
use super::error::SegmentError;
use super::parser::{self, ArithOp, Kind, MatchOp, Node};
use crate::domain::ContactStatus;

/// Names a filter may use besides the contact columns.
const SET_FIELDS: [&str; 3] = ["tags", "lists", "attributes"];
const CONDITION_FUNCTIONS: [&str; 4] = ["subscribed", "unsubscribed", "has_tag", "exists"];
const VALUE_FUNCTIONS: [&str; 3] = ["now", "date", "lower"];

pub(crate) fn check(src: &str, node: &Node) -> Result<Expr, SegmentError> {
    Checker { src }.cond(node)
}

/// A checked value. `ty` is `None` for an attribute whose JSON type is
/// decided by what it is compared with.
struct Val {
    op: Operand,
    ty: Option<Ty>,
    span: Range<usize>,
    /// The text of a string literal, kept to read it as a date or a status.
    literal: Option<String>,
}

struct Checker<'a> {
    src: &'a str,
}

impl Checker<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> SegmentError {
        SegmentError::expr(self.src, span, message)
    }

    fn cond(&self, n: &Node) -> Result<Expr, SegmentError> {
        match &n.kind {
            Kind::Or(items) => Ok(Expr::Or(
                items
                    .iter()
                    .map(|i| self.cond(i))
                    .collect::<Result<_, _>>()?,
            )),
            Kind::And(items) => Ok(Expr::And(
                items
                    .iter()
                    .map(|i| self.cond(i))
                    .collect::<Result<_, _>>()?,
            )),
            Kind::Not(inner) => Ok(Expr::Not(Box::new(self.cond(inner)?))),
            Kind::Bool(b) => Ok(Expr::Const(*b)),
            Kind::Cmp(op, a, b) => self.compare(n, *op, a, b),
            Kind::In {
                needle,
                haystack,
                negated,
            } => {
                let e = self.membership(needle, haystack)?;
                Ok(if *negated { Expr::Not(Box::new(e)) } else { e })
            }
            Kind::Match(op, subject, pattern) => self.matching(*op, subject, pattern),
            Kind::IsNull { operand, negated } => {
                let e = Expr::IsNull(self.nullable_operand(operand)?);
                Ok(if *negated { Expr::Not(Box::new(e)) } else { e })
            }
            Kind::Call {
                name,
                name_span,
                args,
            } if CONDITION_FUNCTIONS.contains(&name.as_str()) => {
                self.condition_call(name, name_span, args, n.span.clone())
            }
            Kind::Path(segs) if segs[0].0 == "attributes" && segs.len() > 1 => {
                // A bare attribute is a boolean flag: `attributes.vip`.
                let v = self.value(n)?;
                Ok(Expr::Compare {
                    lhs: with_json_ty(v.op, JsonTy::Bool),
                    op: CmpOp::Eq,
                    rhs: Operand::Bool(true),
                })
            }
            Kind::Path(segs) => {
                let v = self.value(n)?;
                let name = &segs[0].0;
                Err(self.err(
                    v.span,
                    format!(
                        "`{name}` is a field, not a condition: compare it, e.g. `{name} == ...` or `{name} is not null`"
                    ),
                ))
            }
            _ => Err(self.err(
                n.span.clone(),
                "expected a condition (a comparison, `in`, `is null`, ...), found a value",
            )),
        }
    }

    fn compare(
        &self,
        whole: &Node,
        op: parser::CmpOp,
        a: &Node,
        b: &Node,
    ) -> Result<Expr, SegmentError> {
        for side in [a, b] {
            if matches!(side.kind, Kind::Null) {
                let hint = match op {
                    parser::CmpOp::Eq => "; write `x is null`",
                    parser::CmpOp::Ne => "; write `x is not null`",
                    _ => "",
                };
                return Err(self.err(
                    side.span.clone(),
                    format!("nothing compares with `null`{hint}"),
                ));
            }
        }
        let (lhs, rhs, ty) = self.unify(self.value(a)?, self.value(b)?, whole.span.clone())?;
        let ordered = !matches!(op, parser::CmpOp::Eq | parser::CmpOp::Ne);
        if ordered && ty == Ty::Bool {
            return Err(self.err(
                whole.span.clone(),
                "booleans have no order; use `==` or `!=`",
            ));
        }
        let cmp = |op, lhs, rhs| Expr::Compare { lhs, op, rhs };
        Ok(match op {
            parser::CmpOp::Eq => cmp(CmpOp::Eq, lhs, rhs),
            // `!=` is exactly `not ==`: a contact without the value is "not
            // equal" too, which is what a marketer means by it.
            parser::CmpOp::Ne => Expr::Not(Box::new(cmp(CmpOp::Eq, lhs, rhs))),
            parser::CmpOp::Lt => cmp(CmpOp::Lt, lhs, rhs),
            parser::CmpOp::Le => cmp(CmpOp::Le, lhs, rhs),
            parser::CmpOp::Gt => cmp(CmpOp::Gt, lhs, rhs),
            parser::CmpOp::Ge => cmp(CmpOp::Ge, lhs, rhs),
        })
    }

    /// Gives both sides of a comparison one type: an attribute takes the type
    /// of the other side; a string literal beside a date is read as a date;
    /// a status literal must name a status.
    fn unify(
        &self,
        a: Val,
        b: Val,
        span: Range<usize>,
    ) -> Result<(Operand, Operand, Ty), SegmentError> {
        // Coercion changes only string literals, so the order is immaterial.
        let b = self.coerce(b, &a)?;
        let a = self.coerce(a, &b)?;
        match (a.ty, b.ty) {
            (None, None) => Err(self.err(
                span,
                "both sides are attributes, so their type is unknown: compare an attribute with a value",
            )),
            (None, Some(t)) => {
                let jt = self.json_ty(t, &a.span)?;
                Ok((with_json_ty(a.op, jt), b.op, t))
            }
            (Some(t), None) => {
                let jt = self.json_ty(t, &b.span)?;
                Ok((a.op, with_json_ty(b.op, jt), t))
            }
            (Some(x), Some(y)) if x == y => Ok((a.op, b.op, x)),
            (Some(x), Some(y)) => {
                let hint = if x == Ty::Instant || y == Ty::Instant {
                    " (write dates as \"2025-01-31\", date(\"2025-01-31\") or now() - 30d)"
                } else {
                    ""
                };
                Err(self.err(
                    span,
                    format!("cannot compare {} with {}{hint}", x.name(), y.name()),
                ))
            }
        }
    }

    /// Reads a string literal as a date when the other side is a date, and
    /// checks status names.
    fn coerce(&self, v: Val, other: &Val) -> Result<Val, SegmentError> {
        match (&v.literal, &other.op, other.ty) {
            (Some(text), _, Some(Ty::Instant)) => {
                let ms = self.parse_date(text, &v.span)?;
                Ok(Val {
                    op: Operand::Millis(ms),
                    ty: Some(Ty::Instant),
                    span: v.span,
                    literal: None,
                })
            }
            (Some(text), Operand::Column(Column::Status), _) => {
                if text.parse::<ContactStatus>().is_err() {
                    let all: Vec<_> = ContactStatus::ALL.iter().map(|s| s.as_str()).collect();
                    return Err(self.err(
                        v.span,
                        format!(
                            "{text:?} is not a contact status (one of: {})",
                            all.join(", ")
                        ),
                    ));
                }
                Ok(v)
            }
            _ => Ok(v),
        }
    }

    fn json_ty(&self, t: Ty, span: &Range<usize>) -> Result<JsonTy, SegmentError> {
        match t {
            Ty::Text => Ok(JsonTy::Text),
            Ty::Number => Ok(JsonTy::Number),
            Ty::Bool => Ok(JsonTy::Bool),
            Ty::Instant | Ty::Duration => Err(self.err(
                span.clone(),
                "attributes hold text, numbers and booleans, not dates: compare a date kept as \
                 text with text, e.g. attributes.signup >= \"2024-01-01\"",
            )),
        }
    }

    fn parse_date(&self, text: &str, span: &Range<usize>) -> Result<i64, SegmentError> {
        let day = time::macros::format_description!("[year]-[month]-[day]");
        let nanos = if let Ok(d) = time::Date::parse(text, &day) {
            d.midnight().assume_utc().unix_timestamp_nanos()
        } else if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
            t.unix_timestamp_nanos()
        } else {
            return Err(self.err(
                span.clone(),
                format!(
                    "{text:?} is not a date: write \"2025-01-31\" (midnight UTC) or \"2025-01-31T09:30:00Z\" (RFC 3339)"
                ),
            ));
        };
        i64::try_from(nanos / 1_000_000).map_err(|_| self.err(span.clone(), "date out of range"))
    }

    fn membership(&self, needle: &Node, haystack: &Node) -> Result<Expr, SegmentError> {
        match &haystack.kind {
            Kind::Path(segs) if segs.len() == 1 && segs[0].0 == "tags" => {
                Ok(Expr::HasTag(self.text_value(needle, "a tag")?))
            }
            Kind::Path(segs) if segs.len() == 1 && segs[0].0 == "lists" => {
                Ok(Expr::Subscribed(self.text_value(needle, "a list name")?))
            }
            Kind::Path(segs) if segs[0].0 == "attributes" && segs.len() > 1 => {
                let path = self.attr_path(segs)?;
                let v = self.value(needle)?;
                match v.ty {
                    Some(Ty::Text | Ty::Number | Ty::Bool) => Ok(Expr::AttrHas { path, value: v.op }),
                    Some(t) => Err(self.err(
                        v.span,
                        format!("attribute arrays hold text, numbers and booleans, not {}", t.name()),
                    )),
                    None => Err(self.err(
                        v.span,
                        "the value looked for in an attribute array must be a text, number or boolean",
                    )),
                }
            }
            Kind::List(items) => {
                let needle_v = self.value(needle)?;
                if items.is_empty() {
                    return Ok(Expr::Const(false));
                }
                let mut needle_op = None;
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let iv = self.value(item)?;
                    if iv.ty.is_none() {
                        return Err(self.err(iv.span, "list items must be values, not attributes"));
                    }
                    let nv = Val {
                        op: needle_v.op.clone(),
                        ty: needle_v.ty,
                        span: needle_v.span.clone(),
                        literal: needle_v.literal.clone(),
                    };
                    let span = needle.span.start.min(item.span.start)..item.span.end;
                    let (n_op, i_op, _) = self.unify(nv, iv, span)?;
                    needle_op.get_or_insert(n_op);
                    out.push(i_op);
                }
                Ok(Expr::InList {
                    needle: needle_op.unwrap_or(needle_v.op),
                    items: out,
                })
            }
            _ => Err(self.err(
                haystack.span.clone(),
                "after `in` comes `tags`, `lists`, an attribute holding a list, or a list of values like [\"a\", \"b\"]",
            )),
        }
    }

    fn matching(&self, op: MatchOp, subject: &Node, pattern: &Node) -> Result<Expr, SegmentError> {
        if op == MatchOp::Contains
            && let Kind::Path(segs) = &subject.kind
            && segs.len() == 1
        {
            match segs[0].0.as_str() {
                "tags" => return Ok(Expr::HasTag(self.text_value(pattern, "a tag")?)),
                "lists" => return Ok(Expr::Subscribed(self.text_value(pattern, "a list name")?)),
                _ => {}
            }
        }
        let subject = self.text_value(subject, "text")?;
        let Kind::Str(text) = &pattern.kind else {
            return Err(self.err(pattern.span.clone(), "the pattern must be a quoted string"));
        };
        let lit = || PatternPart::Lit(text.clone());
        let parts = match op {
            MatchOp::Contains => vec![PatternPart::Any, lit(), PatternPart::Any],
            MatchOp::StartsWith => vec![lit(), PatternPart::Any],
            MatchOp::EndsWith => vec![PatternPart::Any, lit()],
            MatchOp::Like => self.like_pattern(text, &pattern.span)?,
        };
        Ok(Expr::Match {
            subject,
            pattern: normalise(parts),
        })
    }

    /// SQL LIKE syntax: `%` any run, `_` one character, `\` makes the next
    /// character literal.
    fn like_pattern(
        &self,
        text: &str,
        span: &Range<usize>,
    ) -> Result<Vec<PatternPart>, SegmentError> {
        let mut parts = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => parts.push(PatternPart::Any),
                '_' => parts.push(PatternPart::One),
                '\\' => match chars.next() {
                    Some(e) => parts.push(PatternPart::Lit(e.to_string())),
                    None => {
                        return Err(self.err(
                            span.clone(),
                            "the pattern ends with `\\`; write `\\\\` for a literal backslash",
                        ));
                    }
                },
                c => parts.push(PatternPart::Lit(c.to_string())),
            }
        }
        Ok(parts)
    }

    fn nullable_operand(&self, n: &Node) -> Result<Operand, SegmentError> {
        let v = self.value(n)?;
        match v.op {
            Operand::Column(_) | Operand::Attr { .. } | Operand::Lower(_) => {
                Ok(with_json_ty(v.op, JsonTy::Any))
            }
            _ => Err(self.err(v.span, "only fields and attributes can be null")),
        }
    }

    fn condition_call(
        &self,
        name: &str,
        name_span: &Range<usize>,
        args: &[Node],
        span: Range<usize>,
    ) -> Result<Expr, SegmentError> {
        let [arg] = args else {
            return Err(self.err(span, format!("`{name}` takes one argument")));
        };
        Ok(match name {
            "subscribed" => Expr::Subscribed(self.text_value(arg, "a list name")?),
            "unsubscribed" => Expr::Unsubscribed(self.text_value(arg, "a list name")?),
            "has_tag" => Expr::HasTag(self.text_value(arg, "a tag")?),
            "exists" => Expr::Not(Box::new(Expr::IsNull(self.nullable_operand(arg)?))),
            _ => return Err(self.err(name_span.clone(), format!("unknown function `{name}`"))),
        })
    }

    /// A value that must be text; an attribute is read as text.
    fn text_value(&self, n: &Node, what: &str) -> Result<Operand, SegmentError> {
        let v = self.value(n)?;
        match v.ty {
            None => Ok(with_json_ty(v.op, JsonTy::Text)),
            Some(Ty::Text) => Ok(v.op),
            Some(t) => Err(self.err(
                v.span,
                format!("expected {what} (text), found {}", t.name()),
            )),
        }
    }

    fn value(&self, n: &Node) -> Result<Val, SegmentError> {
        let span = n.span.clone();
        let val = |op, ty| {
            Ok(Val {
                op,
                ty: Some(ty),
                span: span.clone(),
                literal: None,
            })
        };
        match &n.kind {
            Kind::Str(s) => Ok(Val {
                op: Operand::Text(s.clone()),
                ty: Some(Ty::Text),
                span: span.clone(),
                literal: Some(s.clone()),
            }),
            Kind::Int(i) => val(Operand::Int(*i), Ty::Number),
            Kind::Float(f) => val(Operand::Float(*f), Ty::Number),
            Kind::Bool(b) => val(Operand::Bool(*b), Ty::Bool),
            Kind::Duration(ms) => val(Operand::Millis(*ms), Ty::Duration),
            Kind::Null => Err(self.err(
                span,
                "`null` is not a value; use `is null` or `is not null`",
            )),
            Kind::List(_) => Err(self.err(span, "a list of values goes after `in`")),
            Kind::Neg(inner) => {
                let v = self.value(inner)?;
                match v.op {
                    Operand::Int(i) => match i.checked_neg() {
                        Some(n) => val(Operand::Int(n), Ty::Number),
                        None => Err(self.err(span, "integer out of range")),
                    },
                    Operand::Float(f) => val(Operand::Float(-f), Ty::Number),
                    Operand::Millis(ms) if v.ty == Some(Ty::Duration) => {
                        val(Operand::Millis(-ms), Ty::Duration)
                    }
                    _ => Err(self.err(
                        span,
                        "`-` in front works on number and duration literals only",
                    )),
                }
            }
            Kind::Path(segs) => self.field(segs, span),
            Kind::Call {
                name,
                name_span,
                args,
            } => self.value_call(name, name_span, args, span),
            Kind::Arith(op, a, b) => self.arith(*op, a, b, span),
            Kind::Or(_)
            | Kind::And(_)
            | Kind::Not(_)
            | Kind::Cmp(..)
            | Kind::In { .. }
            | Kind::Match(..)
            | Kind::IsNull { .. } => Err(self.err(span, "expected a value, found a condition")),
        }
    }

    fn field(
        &self,
        segs: &[(String, Range<usize>)],
        span: Range<usize>,
    ) -> Result<Val, SegmentError> {
        let (name, name_span) = &segs[0];
        if name == "attributes" {
            if segs.len() == 1 {
                return Err(self.err(span, "name an attribute: attributes.KEY"));
            }
            return Ok(Val {
                op: Operand::Attr {
                    path: self.attr_path(segs)?,
                    ty: JsonTy::Any,
                },
                ty: None,
                span,
                literal: None,
            });
        }
        if name == "tags" || name == "lists" {
            let example = if name == "tags" {
                "\"vip\" in tags"
            } else {
                "\"newsletter\" in lists"
            };
            return Err(self.err(
                span,
                format!("`{name}` is a set, not a value: test membership, e.g. `{example}`"),
            ));
        }
        let Some(col) = Column::ALL.into_iter().find(|c| c.name() == name) else {
            return Err(self.err(name_span.clone(), unknown_field(name)));
        };
        if segs.len() > 1 {
            return Err(self.err(
                segs[1].1.clone(),
                format!("`{name}` has no fields; only attributes.KEY has"),
            ));
        }
        Ok(Val {
            op: Operand::Column(col),
            ty: Some(col.ty()),
            span,
            literal: None,
        })
    }

    fn attr_path(&self, segs: &[(String, Range<usize>)]) -> Result<Vec<String>, SegmentError> {
        segs[1..]
            .iter()
            .map(|(k, span)| {
                // SQLite's JSON path syntax (`$."key"`) has no escape for `"`,
                // and a backslash there changes meaning; the key is bound, so
                // this is about addressing, not safety.
                if k.is_empty() {
                    Err(self.err(span.clone(), "an attribute key cannot be empty"))
                } else if let Some(bad) = k
                    .chars()
                    .find(|c| *c == '"' || *c == '\\' || c.is_control())
                {
                    Err(self.err(
                        span.clone(),
                        format!("attribute keys cannot contain {bad:?}"),
                    ))
                } else {
                    Ok(k.clone())
                }
            })
            .collect()
    }

    fn value_call(
        &self,
        name: &str,
        name_span: &Range<usize>,
        args: &[Node],
        span: Range<usize>,
    ) -> Result<Val, SegmentError> {
        let val = |op, ty| {
            Ok(Val {
                op,
                ty: Some(ty),
                span: span.clone(),
                literal: None,
            })
        };
        match (name, args) {
            ("now", []) => val(Operand::Now, Ty::Instant),
            ("date", [arg]) => {
                let Kind::Str(text) = &arg.kind else {
                    return Err(self.err(
                        arg.span.clone(),
                        "date() takes a quoted date, e.g. date(\"2025-01-31\")",
                    ));
                };
                val(
                    Operand::Millis(self.parse_date(text, &arg.span)?),
                    Ty::Instant,
                )
            }
            ("lower", [arg]) => val(
                Operand::Lower(Box::new(self.text_value(arg, "text")?)),
                Ty::Text,
            ),
            ("now" | "date" | "lower", _) => Err(self.err(
                span,
                format!(
                    "`{name}` takes {}",
                    if name == "now" {
                        "no arguments"
                    } else {
                        "one argument"
                    }
                ),
            )),
            _ if CONDITION_FUNCTIONS.contains(&name) => {
                Err(self.err(span, format!("`{name}(...)` is a condition, not a value")))
            }
            _ => Err(self.err(
                name_span.clone(),
                format!(
                    "unknown function `{name}` (functions: {}, {})",
                    VALUE_FUNCTIONS.join(", "),
                    CONDITION_FUNCTIONS.join(", ")
                ),
            )),
        }
    }

    fn arith(
        &self,
        op: ArithOp,
        a: &Node,
        b: &Node,
        span: Range<usize>,
    ) -> Result<Val, SegmentError> {
        let (va, vb) = (self.value(a)?, self.value(b)?);
        use Ty::{Duration as D, Instant as I};
        let ty = match (op, va.ty, vb.ty) {
            (_, Some(I), Some(D)) => I,
            (ArithOp::Add, Some(D), Some(I)) => I,
            (ArithOp::Sub, Some(I), Some(I)) => D,
            (_, Some(D), Some(D)) => D,
            _ => {
                let sym = if op == ArithOp::Add { "+" } else { "-" };
                let name = |v: &Val| v.ty.map_or("an attribute", Ty::name);
                return Err(self.err(
                    span,
                    format!(
                        "cannot {} {} and {}: `{sym}` works on dates and durations (now() - 30d, last_open_at + 7d)",
                        if op == ArithOp::Add { "add" } else { "subtract" },
                        name(&va),
                        name(&vb)
                    ),
                ));
            }
        };
        let (x, y) = (Box::new(va.op), Box::new(vb.op));
        let op = match op {
            ArithOp::Add => Operand::Add(x, y),
            ArithOp::Sub => Operand::Sub(x, y),
        };
        Ok(Val {
            op,
            ty: Some(ty),
            span,
            literal: None,
        })
    }
}

/// Sets the JSON type an attribute (possibly under `lower`) is read as.
fn with_json_ty(op: Operand, jt: JsonTy) -> Operand {
    match op {
        Operand::Attr { path, .. } => Operand::Attr { path, ty: jt },
        other => other,
    }
}

/// Merges neighbouring literal pieces and runs of `%`, so that each dialect
/// sees the simplest pattern.
fn normalise(parts: Vec<PatternPart>) -> Vec<PatternPart> {
    let mut out: Vec<PatternPart> = Vec::with_capacity(parts.len());
    for p in parts {
        match (out.last_mut(), p) {
            (Some(PatternPart::Lit(prev)), PatternPart::Lit(s)) => prev.push_str(&s),
            (Some(PatternPart::Any), PatternPart::Any) => {}
            (_, PatternPart::Lit(s)) if s.is_empty() => {}
            (_, p) => out.push(p),
        }
    }
    out
}

fn unknown_field(name: &str) -> String {
    let candidates = Column::ALL
        .iter()
        .map(|c| c.name())
        .chain(SET_FIELDS)
        .collect::<Vec<_>>();
    let best = candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .min()
        .filter(|(d, _)| *d <= if name.chars().count() <= 4 { 1 } else { 2 });
    match best {
        Some((_, c)) => format!("unknown field `{name}`; did you mean `{c}`?"),
        None => format!(
            "unknown field `{name}`; a contact's own data is read as `attributes.{name}` \
             (fields: {}, tags, lists, attributes.KEY)",
            Column::ALL
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Levenshtein distance, for "did you mean" hints on short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
