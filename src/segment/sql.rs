//! Typed AST → SQL, for SQLite and PostgreSQL. The only text this module
//! writes into a statement is fixed SQL and the column names of `Column`;
//! every value and every attribute key a user typed goes out as a bound
//! parameter. Where the two dialects differ (JSON access, pattern matching,
//! text ordering) each gets its own spelling with the same meaning, and the
//! integration tests run the same filters on both.

use super::ast::{CmpOp, Expr, JsonTy, Operand, PatternPart, Ty};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Where SQL text and bound values go: a sqlx `QueryBuilder`, or a recorder
/// in tests.
pub(crate) trait Sink {
    fn dialect(&self) -> Dialect;
    fn sql(&mut self, s: &str);
    fn text(&mut self, v: String);
    fn int(&mut self, v: i64);
    fn float(&mut self, v: f64);
    fn boolean(&mut self, v: bool);
    /// A JSON path into `attributes`: a `$."a"."b"` string on SQLite, a
    /// `text[]` on PostgreSQL.
    fn path(&mut self, keys: &[String]);
}

impl Sink for sqlx::QueryBuilder<'_, sqlx::Sqlite> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    fn sql(&mut self, s: &str) {
        self.push(s);
    }
    fn text(&mut self, v: String) {
        self.push_bind(v);
    }
    fn int(&mut self, v: i64) {
        self.push_bind(v);
    }
    fn float(&mut self, v: f64) {
        self.push_bind(v);
    }
    fn boolean(&mut self, v: bool) {
        self.push_bind(v);
    }
    fn path(&mut self, keys: &[String]) {
        self.push_bind(sqlite_path(keys));
    }
}

impl Sink for sqlx::QueryBuilder<'_, sqlx::Postgres> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn sql(&mut self, s: &str) {
        self.push(s);
    }
    fn text(&mut self, v: String) {
        self.push_bind(v);
    }
    fn int(&mut self, v: i64) {
        self.push_bind(v);
    }
    fn float(&mut self, v: f64) {
        self.push_bind(v);
    }
    fn boolean(&mut self, v: bool) {
        self.push_bind(v);
    }
    fn path(&mut self, keys: &[String]) {
        self.push_bind(keys.to_vec());
    }
}

/// SQLite JSON path for a list of object keys. The checker has refused keys
/// holding `"` or `\`, the two characters this quoting cannot carry.
pub(crate) fn sqlite_path(keys: &[String]) -> String {
    let mut p = String::from("$");
    for k in keys {
        p.push_str(".\"");
        p.push_str(k);
        p.push('"');
    }
    p
}

/// Writes `(<condition>)` for `expr` over the contacts table aliased `c`.
pub(crate) fn emit(sink: &mut dyn Sink, expr: &Expr, now_ms: i64) {
    sink.sql("(");
    Emitter { sink, now_ms }.cond(expr);
    sink.sql(")");
}

struct Emitter<'a> {
    sink: &'a mut dyn Sink,
    now_ms: i64,
}

impl Emitter<'_> {
    fn pg(&self) -> bool {
        self.sink.dialect() == Dialect::Postgres
    }

    fn s(&mut self, sql: &str) {
        self.sink.sql(sql);
    }

    fn cond(&mut self, e: &Expr) {
        match e {
            Expr::Const(true) => self.s("TRUE"),
            Expr::Const(false) => self.s("FALSE"),
            Expr::And(items) => self.join(items, " AND "),
            Expr::Or(items) => self.join(items, " OR "),
            Expr::Not(inner) => {
                // SQL's NOT over NULL is NULL; the language is two-valued, so
                // an unknown inner condition counts as false before negation.
                if inner.nullable() {
                    self.s("NOT COALESCE((");
                    self.cond(inner);
                    self.s("), FALSE)");
                } else {
                    self.s("NOT (");
                    self.cond(inner);
                    self.s(")");
                }
            }
            Expr::Compare { lhs, op, rhs } => {
                self.operand(lhs);
                // Text order is byte order on both backends: SQLite's BINARY
                // collation, and "C" on PostgreSQL (whose default follows the
                // server's locale).
                if self.pg() && *op != CmpOp::Eq && operand_ty(lhs) == Some(Ty::Text) {
                    self.s(" COLLATE \"C\"");
                }
                self.s(" ");
                self.s(op.sql());
                self.s(" ");
                self.operand(rhs);
            }
            Expr::InList { needle, items } => {
                self.operand(needle);
                self.s(" IN (");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.s(", ");
                    }
                    self.operand(item);
                }
                self.s(")");
            }
            Expr::Match { subject, pattern } => {
                self.operand(subject);
                if self.pg() {
                    // PostgreSQL LIKE is case-sensitive, like GLOB below.
                    self.s(" LIKE ");
                    self.sink.text(like_pattern(pattern));
                    self.s(" ESCAPE '\\'");
                } else {
                    // SQLite's LIKE ignores ASCII case (and the pragma that
                    // changes it is per connection); GLOB is case-sensitive.
                    self.s(" GLOB ");
                    self.sink.text(glob_pattern(pattern));
                }
            }
            Expr::IsNull(Operand::Attr { path, .. }) => {
                self.s("COALESCE(");
                self.json_type(path);
                self.s(", 'null') = 'null'");
            }
            Expr::IsNull(op) => {
                self.operand(op);
                self.s(" IS NULL");
            }
            Expr::HasTag(tag) => {
                self.s("EXISTS (SELECT 1 FROM contact_tags seg_t WHERE seg_t.contact_id = c.id AND seg_t.tag = ");
                self.operand(tag);
                self.s(")");
            }
            Expr::Subscribed(list) | Expr::Unsubscribed(list) => {
                self.s(
                    "EXISTS (SELECT 1 FROM contact_lists seg_cl JOIN lists seg_l ON seg_l.id = seg_cl.list_id \
                     WHERE seg_cl.contact_id = c.id AND seg_l.name = ",
                );
                self.operand(list);
                self.s(if matches!(e, Expr::Subscribed(_)) {
                    " AND seg_cl.subscribed = 1)"
                } else {
                    " AND seg_cl.subscribed = 0)"
                });
            }
            Expr::AttrHas { path, value } => self.attr_has(path, value),
        }
    }

    fn join(&mut self, items: &[Expr], sep: &str) {
        self.s("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.s(sep);
            }
            self.cond(item);
        }
        self.s(")");
    }

    fn operand(&mut self, op: &Operand) {
        match op {
            Operand::Column(c) => {
                self.s("c.");
                self.s(c.name());
            }
            Operand::Attr { path, ty } => self.attr(path, *ty),
            Operand::Lower(x) => {
                self.s("lower(");
                self.operand(x);
                self.s(")");
            }
            Operand::Text(t) => self.sink.text(t.clone()),
            Operand::Int(i) => self.sink.int(*i),
            Operand::Float(f) => {
                if self.pg() {
                    // Attribute numbers are NUMERIC on PostgreSQL; a float8
                    // beside them would turn the comparison into float8 and
                    // fail on JSON numbers beyond its range.
                    self.s("CAST(");
                    self.sink.float(*f);
                    self.s(" AS NUMERIC)");
                } else {
                    self.sink.float(*f);
                }
            }
            Operand::Bool(b) => self.sink.boolean(*b),
            Operand::Now => self.sink.int(self.now_ms),
            Operand::Millis(ms) => self.sink.int(*ms),
            Operand::Add(a, b) | Operand::Sub(a, b) => {
                // `now() - 90d` is one bound instant, so the comparison can
                // use an index on the column.
                if let Some(ms) = op.constant_millis(self.now_ms) {
                    self.sink.int(ms);
                    return;
                }
                self.s("(");
                self.operand(a);
                self.s(if matches!(op, Operand::Add(..)) {
                    " + "
                } else {
                    " - "
                });
                self.operand(b);
                self.s(")");
            }
        }
    }

    /// The JSON type name of the attribute, NULL when it is missing.
    fn json_type(&mut self, path: &[String]) {
        if self.pg() {
            self.s("jsonb_typeof(c.attributes #> ");
            self.sink.path(path);
            self.s(")");
        } else {
            self.s("json_type(c.attributes, ");
            self.sink.path(path);
            self.s(")");
        }
    }

    /// The attribute read as one JSON type; NULL when missing or of another
    /// type. The CASE guards every cast on PostgreSQL: unlike AND, CASE
    /// evaluates its branches in order, so "abc" is never cast to NUMERIC.
    fn attr(&mut self, path: &[String], ty: JsonTy) {
        let pg = self.pg();
        match ty {
            JsonTy::Any => {
                // Only `is null` reads an attribute without a type, and it
                // is handled in `cond`; read as text for completeness.
                self.attr(path, JsonTy::Text);
            }
            JsonTy::Text => {
                self.s("CASE WHEN ");
                self.json_type(path);
                self.s(if pg {
                    " = 'string' THEN c.attributes #>> "
                } else {
                    " = 'text' THEN json_extract(c.attributes, "
                });
                self.sink.path(path);
                self.s(if pg { " END" } else { ") END" });
            }
            JsonTy::Number => {
                self.s("CASE WHEN ");
                self.json_type(path);
                if pg {
                    self.s(" = 'number' THEN CAST(c.attributes #> ");
                    self.sink.path(path);
                    self.s(" AS NUMERIC) END");
                } else {
                    self.s(" IN ('integer', 'real') THEN json_extract(c.attributes, ");
                    self.sink.path(path);
                    self.s(") END");
                }
            }
            JsonTy::Bool => {
                if pg {
                    self.s("CASE WHEN ");
                    self.json_type(path);
                    self.s(" = 'boolean' THEN CAST(c.attributes #> ");
                    self.sink.path(path);
                    self.s(" AS BOOLEAN) END");
                } else {
                    // SQLite has no boolean type; sqlx binds bool as 0/1.
                    self.s("CASE ");
                    self.json_type(path);
                    self.s(" WHEN 'true' THEN 1 WHEN 'false' THEN 0 END");
                }
            }
        }
    }

    /// `value in attributes.list`: the attribute is a JSON array with an
    /// element equal to `value` and of the same type.
    fn attr_has(&mut self, path: &[String], value: &Operand) {
        let ty = operand_ty(value);
        if self.pg() {
            self.s("EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN ");
            self.json_type(path);
            self.s(" = 'array' THEN c.attributes #> ");
            self.sink.path(path);
            self.s(" END) AS seg_j(v) WHERE ");
            match ty {
                Some(Ty::Number) => self.s("CASE WHEN jsonb_typeof(seg_j.v) = 'number' THEN CAST(seg_j.v AS NUMERIC) END = "),
                Some(Ty::Bool) => self.s("CASE WHEN jsonb_typeof(seg_j.v) = 'boolean' THEN CAST(seg_j.v AS BOOLEAN) END = "),
                _ => self.s("CASE WHEN jsonb_typeof(seg_j.v) = 'string' THEN seg_j.v #>> '{}' END = "),
            }
            self.operand(value);
            self.s(")");
        } else {
            // json_each over a scalar yields the scalar itself, so the
            // array check comes first.
            self.s("(");
            self.json_type(path);
            self.s(" = 'array' AND EXISTS (SELECT 1 FROM json_each(c.attributes, ");
            self.sink.path(path);
            self.s(") AS seg_j WHERE ");
            match ty {
                Some(Ty::Number) => self.s("seg_j.type IN ('integer', 'real') AND seg_j.value = "),
                Some(Ty::Bool) => {
                    self.s("CASE seg_j.type WHEN 'true' THEN 1 WHEN 'false' THEN 0 END = ")
                }
                _ => self.s("seg_j.type = 'text' AND seg_j.value = "),
            }
            self.operand(value);
            self.s("))");
        }
    }
}

/// The type of a checked operand (attributes by the type they are read as).
fn operand_ty(op: &Operand) -> Option<Ty> {
    Some(match op {
        Operand::Column(c) => c.ty(),
        Operand::Attr { ty, .. } => match ty {
            JsonTy::Text => Ty::Text,
            JsonTy::Number => Ty::Number,
            JsonTy::Bool => Ty::Bool,
            JsonTy::Any => return None,
        },
        Operand::Lower(_) | Operand::Text(_) => Ty::Text,
        Operand::Int(_) | Operand::Float(_) => Ty::Number,
        Operand::Bool(_) => Ty::Bool,
        Operand::Now | Operand::Millis(_) | Operand::Add(..) | Operand::Sub(..) => return None,
    })
}

/// A PostgreSQL LIKE pattern with `\` as the escape character: literal `%`,
/// `_` and `\` are escaped so a user's text matches only itself.
pub(crate) fn like_pattern(parts: &[PatternPart]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            PatternPart::Any => out.push('%'),
            PatternPart::One => out.push('_'),
            PatternPart::Lit(s) => {
                for c in s.chars() {
                    if matches!(c, '%' | '_' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
            }
        }
    }
    out
}

/// A SQLite GLOB pattern: `*` and `?` are the wildcards, and a bracket
/// expression holding one character (`[*]`, `[?]`, `[[]`) is that character
/// literally (GLOB has no escape character).
pub(crate) fn glob_pattern(parts: &[PatternPart]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            PatternPart::Any => out.push('*'),
            PatternPart::One => out.push('?'),
            PatternPart::Lit(s) => {
                for c in s.chars() {
                    match c {
                        '*' => out.push_str("[*]"),
                        '?' => out.push_str("[?]"),
                        '[' => out.push_str("[[]"),
                        c => out.push(c),
                    }
                }
            }
        }
    }
    out
}

/// Records SQL and parameters in memory, for `segment explain` and for tests
/// that read what would be sent. Text parameters are shown quoted.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub dialect: Dialect,
    pub sql: String,
    pub params: Vec<String>,
}

impl Recorder {
    pub fn new(dialect: Dialect) -> Self {
        Recorder {
            dialect,
            sql: String::new(),
            params: Vec::new(),
        }
    }
    fn placeholder(&mut self, v: String) {
        self.params.push(v);
        match self.dialect {
            Dialect::Sqlite => self.sql.push('?'),
            Dialect::Postgres => self.sql.push_str(&format!("${}", self.params.len())),
        }
    }
}

impl Sink for Recorder {
    fn dialect(&self) -> Dialect {
        self.dialect
    }
    fn sql(&mut self, s: &str) {
        self.sql.push_str(s);
    }
    fn text(&mut self, v: String) {
        self.placeholder(format!("{v:?}"));
    }
    fn int(&mut self, v: i64) {
        self.placeholder(v.to_string());
    }
    fn float(&mut self, v: f64) {
        self.placeholder(v.to_string());
    }
    fn boolean(&mut self, v: bool) {
        self.placeholder(v.to_string());
    }
    fn path(&mut self, keys: &[String]) {
        match self.dialect {
            Dialect::Sqlite => self.placeholder(format!("{:?}", sqlite_path(keys))),
            Dialect::Postgres => self.placeholder(format!("{keys:?}")),
        }
    }
}
