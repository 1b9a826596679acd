//! The typed tree a filter compiles to. Every node here is well typed by
//! construction (the checker builds it), so the SQL emitter never has to
//! reject anything: it only chooses each dialect's spelling.

/// A contact column a filter can read. Column names are fixed here and are
/// the only identifiers ever written into SQL; everything a user types is bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    Email,
    Domain,
    FirstName,
    LastName,
    Locale,
    Timezone,
    Status,
    StatusReason,
    CreatedAt,
    UpdatedAt,
    LastSentAt,
    LastOpenAt,
    LastClickAt,
    SendCount,
    OpenCount,
    ClickCount,
    BounceCount,
}

impl Column {
    pub const ALL: [Column; 18] = [
        Column::Id,
        Column::Email,
        Column::Domain,
        Column::FirstName,
        Column::LastName,
        Column::Locale,
        Column::Timezone,
        Column::Status,
        Column::StatusReason,
        Column::CreatedAt,
        Column::UpdatedAt,
        Column::LastSentAt,
        Column::LastOpenAt,
        Column::LastClickAt,
        Column::SendCount,
        Column::OpenCount,
        Column::ClickCount,
        Column::BounceCount,
    ];

    /// The name in the filter language, which is also the SQL column name.
    pub fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::Email => "email",
            Column::Domain => "domain",
            Column::FirstName => "first_name",
            Column::LastName => "last_name",
            Column::Locale => "locale",
            Column::Timezone => "timezone",
            Column::Status => "status",
            Column::StatusReason => "status_reason",
            Column::CreatedAt => "created_at",
            Column::UpdatedAt => "updated_at",
            Column::LastSentAt => "last_sent_at",
            Column::LastOpenAt => "last_open_at",
            Column::LastClickAt => "last_click_at",
            Column::SendCount => "send_count",
            Column::OpenCount => "open_count",
            Column::ClickCount => "click_count",
            Column::BounceCount => "bounce_count",
        }
    }

    pub fn ty(self) -> Ty {
        match self {
            Column::Id
            | Column::SendCount
            | Column::OpenCount
            | Column::ClickCount
            | Column::BounceCount => Ty::Number,
            Column::CreatedAt
            | Column::UpdatedAt
            | Column::LastSentAt
            | Column::LastOpenAt
            | Column::LastClickAt => Ty::Instant,
            _ => Ty::Text,
        }
    }

    /// Whether the column may hold NULL (see the migrations).
    pub fn nullable(self) -> bool {
        matches!(
            self,
            Column::FirstName
                | Column::LastName
                | Column::Locale
                | Column::Timezone
                | Column::StatusReason
                | Column::LastSentAt
                | Column::LastOpenAt
                | Column::LastClickAt
        )
    }
}

/// The type of a value in a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Text,
    Number,
    Bool,
    /// A point in time (milliseconds since the epoch).
    Instant,
    /// A length of time in milliseconds.
    Duration,
}

impl Ty {
    pub fn name(self) -> &'static str {
        match self {
            Ty::Text => "text",
            Ty::Number => "a number",
            Ty::Bool => "a boolean",
            Ty::Instant => "a date",
            Ty::Duration => "a duration",
        }
    }
}

/// How a JSON attribute is read: as one JSON type, anything else reading as
/// missing, or (`Any`) only to ask whether it is there at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonTy {
    Text,
    Number,
    Bool,
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// A value-producing expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Column(Column),
    /// The JSON value at `path` inside `attributes`, read as `ty`; a value of
    /// another JSON type reads as missing (so `attributes.age > 30` never
    /// matches `"age": "thirty"`, and never fails either).
    Attr {
        path: Vec<String>,
        ty: JsonTy,
    },
    Lower(Box<Operand>),
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// The moment the query runs (bound, not the database's clock).
    Now,
    /// A fixed instant or duration in milliseconds.
    Millis(i64),
    Add(Box<Operand>, Box<Operand>),
    Sub(Box<Operand>, Box<Operand>),
}

impl Operand {
    /// Whether the SQL for this operand can be NULL.
    pub fn nullable(&self) -> bool {
        match self {
            Operand::Column(c) => c.nullable(),
            Operand::Attr { .. } => true,
            Operand::Lower(x) => x.nullable(),
            Operand::Add(a, b) | Operand::Sub(a, b) => a.nullable() || b.nullable(),
            _ => false,
        }
    }

    /// The value when it does not depend on the contact, given the time now.
    pub fn constant_millis(&self, now_ms: i64) -> Option<i64> {
        match self {
            Operand::Now => Some(now_ms),
            Operand::Millis(m) => Some(*m),
            Operand::Add(a, b) => Some(
                a.constant_millis(now_ms)?
                    .saturating_add(b.constant_millis(now_ms)?),
            ),
            Operand::Sub(a, b) => Some(
                a.constant_millis(now_ms)?
                    .saturating_sub(b.constant_millis(now_ms)?),
            ),
            _ => None,
        }
    }
}

/// A pattern for `contains`, `starts_with`, `ends_with` and `like`, kept as
/// pieces so that each dialect can escape the literal parts its own way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternPart {
    /// Any run of characters (`%`).
    Any,
    /// Exactly one character (`_`).
    One,
    Lit(String),
}

/// A condition: what a segment is.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(bool),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// Two-valued: `not x` matches every contact `x` does not, including
    /// those where `x` compares a missing value.
    Not(Box<Expr>),
    Compare {
        lhs: Operand,
        op: CmpOp,
        rhs: Operand,
    },
    /// `needle in [a, b, ...]`, with at least one item.
    InList {
        needle: Operand,
        items: Vec<Operand>,
    },
    Match {
        subject: Operand,
        pattern: Vec<PatternPart>,
    },
    /// The column is NULL, or the attribute is missing or JSON null.
    IsNull(Operand),
    HasTag(Operand),
    /// Subscribed to the named list (current consent).
    Subscribed(Operand),
    /// Was on the named list and withdrew.
    Unsubscribed(Operand),
    /// The attribute is a JSON array holding the value.
    AttrHas {
        path: Vec<String>,
        value: Operand,
    },
}

impl Expr {
    /// Whether the SQL for this condition can be NULL (three-valued logic),
    /// which matters only under `not`.
    pub fn nullable(&self) -> bool {
        match self {
            Expr::Const(_) | Expr::Not(_) | Expr::IsNull(_) => false,
            Expr::And(v) | Expr::Or(v) => v.iter().any(Expr::nullable),
            Expr::Compare { lhs, rhs, .. } => lhs.nullable() || rhs.nullable(),
            Expr::InList { needle, .. } => needle.nullable(),
            Expr::Match { subject, .. } => subject.nullable(),
            // EXISTS (...) is never NULL.
            Expr::HasTag(_) | Expr::Subscribed(_) | Expr::Unsubscribed(_) => false,
            Expr::AttrHas { .. } => true,
        }
    }
}
