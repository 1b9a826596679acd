//! Segments against real databases: the same contacts are written with plain
//! SQL into a fresh SQLite file and a fresh PostgreSQL database, and every
//! filter must select exactly the expected contacts on both.

mod common;

use std::collections::BTreeSet;

use cartero::domain::time::now_millis;
use cartero::segment::{self, Segment};
use cartero::store::{Backend, Store};
use common::db::TestDb;
use serde_json::json;

const DAY: i64 = 86_400_000;

struct Contact {
    email: &'static str,
    first_name: Option<&'static str>,
    last_name: Option<&'static str>,
    status: &'static str,
    attributes: serde_json::Value,
    tags: &'static [&'static str],
    /// (list, subscribed)
    lists: &'static [(&'static str, bool)],
    created_at: &'static str,
    last_open_days_ago: Option<i64>,
    last_click_days_ago: Option<i64>,
    open_count: i64,
}

fn contacts() -> Vec<Contact> {
    vec![
        Contact {
            email: "ana@gmail.com",
            first_name: Some("Ana"),
            last_name: Some("García"),
            status: "active",
            attributes: json!({
                "country": "ES", "age": 34, "vip": true, "score": 7.5,
                "interests": ["sports", "music"], "address": {"city": "Sevilla"}
            }),
            tags: &["vip"],
            lists: &[("newsletter", true)],
            created_at: "2024-06-01",
            last_open_days_ago: Some(5),
            last_click_days_ago: Some(10),
            open_count: 12,
        },
        Contact {
            email: "bob@yahoo.com",
            first_name: Some("Bob"),
            last_name: Some("Smith"),
            status: "unsubscribed",
            attributes: json!({
                "country": "US", "age": "unknown", "vip": false, "interests": "sports"
            }),
            tags: &[],
            lists: &[("newsletter", false)],
            created_at: "2023-01-01",
            last_open_days_ago: Some(300),
            last_click_days_ago: Some(200),
            open_count: 1,
        },
        Contact {
            email: "carla@example.org",
            first_name: None,
            last_name: None,
            status: "active",
            attributes: json!({
                "country": "ES", "age": 19, "it's; DROP": "yes", "50%": "x", "dotted.key": 1
            }),
            tags: &["vip", "beta"],
            lists: &[("newsletter", true), ("offers", true)],
            created_at: "2025-03-01",
            last_open_days_ago: None,
            last_click_days_ago: None,
            open_count: 0,
        },
        Contact {
            email: "dan@gmail.com",
            first_name: Some("Dan"),
            last_name: None,
            status: "bounced",
            attributes: json!({}),
            tags: &["beta"],
            lists: &[("offers", true)],
            created_at: "2025-05-01",
            last_open_days_ago: Some(2),
            last_click_days_ago: Some(1),
            open_count: 50,
        },
        Contact {
            email: "eve@x.test",
            first_name: Some("50%_off"),
            last_name: Some("Ünal"),
            status: "active",
            attributes: json!({ "country": "es", "age": 1e300, "vip": "true" }),
            tags: &[],
            lists: &[],
            created_at: "2025-08-01",
            last_open_days_ago: Some(40),
            last_click_days_ago: Some(45),
            open_count: 3,
        },
    ]
}

/// Each filter and the contacts (by local part) it must select.
const CASES: &[(&str, &[&str])] = &[
    (r#"attributes.country == "ES""#, &["ana", "carla"]),
    (
        r#"lower(attributes.country) == "es""#,
        &["ana", "carla", "eve"],
    ),
    (r#""vip" in tags"#, &["ana", "carla"]),
    (
        r#"attributes.country == "ES" and "vip" in tags and last_click_at > now() - 90d"#,
        &["ana"],
    ),
    // "unknown" is text: skipped, and no cast error on PostgreSQL.
    ("attributes.age > 30", &["ana", "eve"]),
    ("attributes.age >= 19 and attributes.age < 34", &["carla"]),
    ("attributes.score == 7.5", &["ana"]),
    ("attributes.score > 7", &["ana"]),
    ("attributes.vip", &["ana"]),
    ("not attributes.vip", &["bob", "carla", "dan", "eve"]),
    ("attributes.vip == false", &["bob"]),
    (r#""sports" in attributes.interests"#, &["ana"]),
    (
        r#""sports" not in attributes.interests"#,
        &["bob", "carla", "dan", "eve"],
    ),
    (r#"attributes.address.city == "Sevilla""#, &["ana"]),
    (r#"attributes["it's; DROP"] == "yes""#, &["carla"]),
    (r#"attributes["50%"] == "x""#, &["carla"]),
    (r#"attributes["dotted.key"] == 1"#, &["carla"]),
    (r#"attributes.country in ["US", "es"]"#, &["bob", "eve"]),
    (
        r#"domain in ["gmail.com", "yahoo.com"]"#,
        &["ana", "bob", "dan"],
    ),
    (r#"email ends_with "@gmail.com""#, &["ana", "dan"]),
    // Wildcards typed by the user match only themselves.
    (r#"first_name contains "%_""#, &["eve"]),
    (r#"first_name contains "n%""#, &[]),
    (r#"first_name like "50%""#, &["eve"]),
    (r#"first_name like "A%""#, &["ana"]),
    (r#"first_name like "_a_""#, &["dan"]),
    (r#"first_name starts_with "a""#, &[]),
    (r#"lower(first_name) starts_with "a""#, &["ana"]),
    ("first_name is null", &["carla"]),
    ("last_name is null", &["carla", "dan"]),
    // `!=` also matches contacts without the value.
    (r#"first_name != "Ana""#, &["bob", "carla", "dan", "eve"]),
    // Byte order: "Ünal" sorts after "M" on both backends.
    (r#"last_name < "M""#, &["ana"]),
    (r#""newsletter" in lists"#, &["ana", "carla"]),
    (r#"subscribed("newsletter")"#, &["ana", "carla"]),
    (r#"unsubscribed("newsletter")"#, &["bob"]),
    (r#"not subscribed("newsletter")"#, &["bob", "dan", "eve"]),
    (r#""offers" in lists and "beta" in tags"#, &["carla", "dan"]),
    (r#"status == "active""#, &["ana", "carla", "eve"]),
    (r#"status in ["bounced", "unsubscribed"]"#, &["bob", "dan"]),
    ("open_count >= 10", &["ana", "dan"]),
    ("last_open_at is null", &["carla"]),
    (r#"created_at >= "2025-01-01""#, &["carla", "dan", "eve"]),
    (r#"created_at < date("2024-01-01")"#, &["bob"]),
    ("now() - last_click_at < 30d", &["ana", "dan"]),
    // Never clicked counts as "not clicked in the last 30 days".
    (
        "not (last_click_at > now() - 30d)",
        &["bob", "carla", "eve"],
    ),
    (
        "last_click_at > now() - 30d or open_count == 0",
        &["ana", "carla", "dan"],
    ),
    (
        "attributes.missing is null",
        &["ana", "bob", "carla", "dan", "eve"],
    ),
    (
        "exists(attributes.country)",
        &["ana", "bob", "carla", "eve"],
    ),
    (r#"attributes.x == "'; DROP TABLE contacts; --""#, &[]),
    ("true", &["ana", "bob", "carla", "dan", "eve"]),
    ("false", &[]),
    ("domain in []", &[]),
];

#[tokio::test]
async fn filters_select_the_same_contacts_on_both_backends() {
    for db in TestDb::all().await {
        seed(&db.store).await;
        for (filter, want) in CASES {
            let seg = Segment::parse("case", filter).unwrap_or_else(|e| panic!("{}", e.render()));
            let got = locals(
                segment::sample(&db.store, &seg, 100)
                    .await
                    .unwrap_or_else(|e| panic!("{:?}: {filter}: {e}", db.backend())),
            );
            let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, want, "{:?}: {filter}", db.backend());
            let n = segment::count(&db.store, &seg).await.unwrap();
            assert_eq!(n, want.len() as i64, "{:?}: count {filter}", db.backend());
        }
        // The injection attempt above left the table in place.
        let all = Segment::parse("all", "true").unwrap();
        assert_eq!(segment::count(&db.store, &all).await.unwrap(), 5);
    }
}

#[tokio::test]
async fn sample_is_bounded_and_carries_attributes() {
    for db in TestDb::all().await {
        seed(&db.store).await;
        let seg = Segment::parse("es", r#"attributes.country == "ES""#).unwrap();
        let one = segment::sample(&db.store, &seg, 1).await.unwrap();
        assert_eq!(one.len(), 1, "{:?}", db.backend());
        assert!(["ana@gmail.com", "carla@example.org"].contains(&one[0].email.as_str()));
        let all = segment::sample(&db.store, &seg, 10).await.unwrap();
        let ana = all.iter().find(|c| c.email == "ana@gmail.com").unwrap();
        assert_eq!(ana.first_name.as_deref(), Some("Ana"));
        assert_eq!(
            ana.attributes["address"]["city"],
            "Sevilla",
            "{:?}",
            db.backend()
        );
        assert_eq!(ana.attributes["interests"], json!(["sports", "music"]));
        assert!(
            segment::sample(&db.store, &seg, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn counts_split_by_status() {
    for db in TestDb::all().await {
        seed(&db.store).await;
        let seg = Segment::parse(
            "gmail",
            r#"domain in ["gmail.com", "yahoo.com"] or "newsletter" in lists"#,
        )
        .unwrap();
        let by = segment::count_by_status(&db.store, &seg).await.unwrap();
        assert_eq!(
            by,
            vec![
                ("active".to_string(), 2),
                ("bounced".to_string(), 1),
                ("unsubscribed".to_string(), 1)
            ],
            "{:?}",
            db.backend()
        );
    }
}

/// The condition composes into a larger query the way the send stage will
/// use it: after other conditions, with their own bound values.
#[tokio::test]
async fn push_where_composes_with_other_binds() {
    for db in TestDb::all().await {
        seed(&db.store).await;
        let seg = Segment::parse(
            "es",
            r#"attributes.country == "ES" or domain == "yahoo.com""#,
        )
        .unwrap();
        let now = now_millis();
        let emails: Vec<String> = match &db.store {
            Store::Sqlite(pool) => {
                let mut qb =
                    sqlx::QueryBuilder::new("SELECT c.email FROM contacts c WHERE c.status = ");
                qb.push_bind("active");
                qb.push(" AND ");
                segment::push_where_sqlite(&mut qb, &seg, now);
                qb.push(" ORDER BY c.email");
                qb.build_query_scalar().fetch_all(pool).await.unwrap()
            }
            Store::Postgres(pool) => {
                let mut qb =
                    sqlx::QueryBuilder::new("SELECT c.email FROM contacts c WHERE c.status = ");
                qb.push_bind("active");
                qb.push(" AND ");
                segment::push_where_postgres(&mut qb, &seg, now);
                qb.push(" ORDER BY c.email");
                qb.build_query_scalar().fetch_all(pool).await.unwrap()
            }
        };
        assert_eq!(
            emails,
            ["ana@gmail.com", "carla@example.org"],
            "{:?}",
            db.backend()
        );
    }
}

#[test]
fn cli_counts_samples_and_reports_file_positions() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(async {
        let db = TestDb::sqlite().await;
        seed(&db.store).await;
        db
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("campaigns")).unwrap();
    std::fs::write(
        dir.path().join("cartero.toml"),
        format!("[database]\nurl = \"{}\"\n", db.url),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("campaigns/segments.toml"),
        "[segments.spain]\ndescription = \"Spain\"\nfilter = 'attributes.country == \"ES\"'\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cartero"))
            .current_dir(dir.path())
            .env_remove("CARTERO_DATABASE_URL")
            .env_remove("CARTERO_CONFIG")
            .args(args)
            .output()
            .unwrap()
    };

    let out = run(&["segment", "count", "spain", "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["total"], 2);
    assert_eq!(doc["by_status"]["active"], 2);

    let out = run(&[
        "segment",
        "sample",
        "--filter",
        "\"vip\" in tags",
        "-n",
        "10",
        "--format",
        "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("id,email,first_name,last_name,attributes\n"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(
        text.contains("ana@gmail.com") && text.contains("carla@example.org"),
        "{text}"
    );

    let out = run(&["segment", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("spain"));

    // A broken filter: non-zero exit, file:line:col, and the caret line.
    std::fs::write(
        dir.path().join("campaigns/segments.toml"),
        "[segments.spain]\nfilter = 'attributes.country == \"ES\" and contry == 1'\n",
    )
    .unwrap();
    let out = run(&["segment", "count", "spain"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("segments.toml:2:42: unknown field `contry`"),
        "{err}"
    );
    assert!(err.contains("^^^^^^"), "{err}");

    let out = run(&[
        "segment",
        "count",
        "nope",
        "--file",
        "campaigns/segments.toml",
    ]);
    assert!(!out.status.success());
    drop(db);
}

/// Random well-typed filters built from the grammar: every one must compile,
/// run without a database error, and select on SQLite and on PostgreSQL
/// exactly the contacts a reference evaluator of the documented semantics
/// selects (the SQL differs per dialect; the meaning must not).
#[test]
fn random_filters_run_and_agree_across_backends() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let dbs = rt.block_on(async {
        let dbs = TestDb::all().await;
        for db in &dbs {
            seed(&db.store).await;
        }
        dbs
    });
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    // Filters that select some but not all contacts: a generator whose
    // filters all match nothing (or everything) would prove little.
    let discriminating = std::cell::Cell::new(0);
    let result = runner.run(&filter(), |src| {
        let seg = Segment::parse("random", &src)
            .map_err(|e| TestCaseError::fail(format!("{src}: {}", e.render())))?;
        let now = now_millis();
        let expected: BTreeSet<String> = contacts()
            .iter()
            .enumerate()
            .filter(|(i, c)| oracle::eval(&seg.expr, c, *i as i64 + 1, now))
            .map(|(_, c)| c.email.split('@').next().unwrap_or_default().to_string())
            .collect();
        let mut results = Vec::new();
        for db in &dbs {
            let rows = rt
                .block_on(segment::sample(&db.store, &seg, 100))
                .map_err(|e| TestCaseError::fail(format!("{:?}: {src}: {e}", db.backend())))?;
            let got = locals(rows);
            prop_assert_eq!(
                &got,
                &expected,
                "{:?} differs from the reference on {}",
                db.backend(),
                src
            );
            results.push((db.backend(), got));
        }
        if let [(_, first), rest @ ..] = results.as_slice() {
            if !first.is_empty() && first.len() < 5 {
                discriminating.set(discriminating.get() + 1);
            }
            for (backend, got) in rest {
                prop_assert_eq!(first, got, "{:?} disagrees with SQLite on {}", backend, src);
            }
        }
        Ok(())
    });
    drop(dbs);
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        discriminating.get() > 60,
        "only {} filters selected a proper subset",
        discriminating.get()
    );
}

/// A reference evaluator of the typed AST over the fixture, written from
/// docs/SEGMENTS.md rather than from the SQL: the random test checks that
/// the databases agree with it, not only with each other.
mod oracle {
    use cartero::segment::ast::{CmpOp, Column, Expr, JsonTy, Operand, PatternPart};
    use serde_json::Value as Json;

    use super::{Contact, DAY, date_ms};

    #[derive(Debug, Clone, PartialEq, PartialOrd)]
    enum V {
        Text(String),
        Num(f64),
        Bool(bool),
        Millis(i64),
    }

    pub fn eval(e: &Expr, c: &Contact, id: i64, now: i64) -> bool {
        match e {
            Expr::Const(b) => *b,
            Expr::And(v) => v.iter().all(|x| eval(x, c, id, now)),
            Expr::Or(v) => v.iter().any(|x| eval(x, c, id, now)),
            Expr::Not(x) => !eval(x, c, id, now),
            Expr::Compare { lhs, op, rhs } => {
                match (value(lhs, c, id, now), value(rhs, c, id, now)) {
                    (Some(a), Some(b)) => match op {
                        CmpOp::Eq => a == b,
                        CmpOp::Lt => a < b,
                        CmpOp::Le => a <= b,
                        CmpOp::Gt => a > b,
                        CmpOp::Ge => a >= b,
                    },
                    _ => false,
                }
            }
            Expr::InList { needle, items } => value(needle, c, id, now).is_some_and(|n| {
                items
                    .iter()
                    .any(|i| value(i, c, id, now) == Some(n.clone()))
            }),
            Expr::Match { subject, pattern } => match value(subject, c, id, now) {
                Some(V::Text(s)) => matches(&s.chars().collect::<Vec<_>>(), pattern),
                _ => false,
            },
            Expr::IsNull(Operand::Attr { path, .. }) => {
                matches!(lookup(&c.attributes, path), None | Some(Json::Null))
            }
            Expr::IsNull(op) => value(op, c, id, now).is_none(),
            Expr::HasTag(t) => text(t, c, id, now).is_some_and(|t| c.tags.contains(&t.as_str())),
            Expr::Subscribed(l) => {
                text(l, c, id, now).is_some_and(|l| c.lists.iter().any(|(n, s)| *n == l && *s))
            }
            Expr::Unsubscribed(l) => {
                text(l, c, id, now).is_some_and(|l| c.lists.iter().any(|(n, s)| *n == l && !*s))
            }
            Expr::AttrHas { path, value: v } => {
                let want = value(v, c, id, now);
                match lookup(&c.attributes, path) {
                    Some(Json::Array(items)) => items.iter().any(|j| {
                        let ty = match want {
                            Some(V::Text(_)) => JsonTy::Text,
                            Some(V::Num(_)) => JsonTy::Number,
                            _ => JsonTy::Bool,
                        };
                        json_value(j, ty).is_some() && json_value(j, ty) == want
                    }),
                    _ => false,
                }
            }
        }
    }

    fn text(op: &Operand, c: &Contact, id: i64, now: i64) -> Option<String> {
        match value(op, c, id, now) {
            Some(V::Text(t)) => Some(t),
            _ => None,
        }
    }

    fn value(op: &Operand, c: &Contact, id: i64, now: i64) -> Option<V> {
        let ago = |d: Option<i64>| d.map(|d| V::Millis(now - d * DAY));
        match op {
            Operand::Column(col) => match col {
                Column::Id => Some(V::Num(id as f64)),
                Column::Email => Some(V::Text(c.email.into())),
                Column::Domain => c.email.split('@').nth(1).map(|d| V::Text(d.into())),
                Column::FirstName => c.first_name.map(|s| V::Text(s.into())),
                Column::LastName => c.last_name.map(|s| V::Text(s.into())),
                Column::Locale | Column::Timezone | Column::StatusReason => None,
                Column::Status => Some(V::Text(c.status.into())),
                Column::CreatedAt | Column::UpdatedAt => Some(V::Millis(date_ms(c.created_at))),
                Column::LastSentAt => None,
                Column::LastOpenAt => ago(c.last_open_days_ago),
                Column::LastClickAt => ago(c.last_click_days_ago),
                Column::OpenCount => Some(V::Num(c.open_count as f64)),
                Column::SendCount | Column::ClickCount | Column::BounceCount => Some(V::Num(0.0)),
            },
            Operand::Attr { path, ty } => {
                lookup(&c.attributes, path).and_then(|j| json_value(j, *ty))
            }
            // The fixture's text is ASCII wherever lower() is used; SQLite
            // lower-cases ASCII only.
            Operand::Lower(x) => match value(x, c, id, now) {
                Some(V::Text(t)) => Some(V::Text(t.to_ascii_lowercase())),
                _ => None,
            },
            Operand::Text(t) => Some(V::Text(t.clone())),
            Operand::Int(i) => Some(V::Num(*i as f64)),
            Operand::Float(f) => Some(V::Num(*f)),
            Operand::Bool(b) => Some(V::Bool(*b)),
            Operand::Now => Some(V::Millis(now)),
            Operand::Millis(m) => Some(V::Millis(*m)),
            Operand::Add(a, b) | Operand::Sub(a, b) => {
                let (Some(V::Millis(a)), Some(V::Millis(b))) =
                    (value(a, c, id, now), value(b, c, id, now))
                else {
                    return None;
                };
                Some(V::Millis(if matches!(op, Operand::Add(..)) {
                    a + b
                } else {
                    a - b
                }))
            }
        }
    }

    fn lookup<'a>(j: &'a Json, path: &[String]) -> Option<&'a Json> {
        path.iter().try_fold(j, |j, k| j.as_object()?.get(k))
    }

    fn json_value(j: &Json, ty: JsonTy) -> Option<V> {
        match (j, ty) {
            (Json::String(s), JsonTy::Text) => Some(V::Text(s.clone())),
            (Json::Number(n), JsonTy::Number) => n.as_f64().map(V::Num),
            (Json::Bool(b), JsonTy::Bool) => Some(V::Bool(*b)),
            _ => None,
        }
    }

    fn matches(s: &[char], p: &[PatternPart]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((PatternPart::Any, rest)) => (0..=s.len()).any(|i| matches(&s[i..], rest)),
            Some((PatternPart::One, rest)) => !s.is_empty() && matches(&s[1..], rest),
            Some((PatternPart::Lit(l), rest)) => {
                let l: Vec<char> = l.chars().collect();
                s.starts_with(&l) && matches(&s[l.len()..], rest)
            }
        }
    }
}

fn filter() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    use proptest::sample::select;

    let text_field = || {
        select(vec![
            "email",
            "domain",
            "first_name",
            "last_name",
            "locale",
            "attributes.country",
            "attributes.k",
            "attributes[\"it's; DROP\"]",
            "lower(first_name)",
            "lower(attributes.country)",
        ])
    };
    let text_lit = || {
        select(vec![
            "\"ES\"",
            "\"es\"",
            "\"Ana\"",
            "\"gmail.com\"",
            "\"%\"",
            "\"_\"",
            "\"*\"",
            "\"[\"",
            "\"?\"",
            "\"50%_off\"",
            "\"é\"",
            "\"\"",
            "\"a\"",
            "\"M\"",
            "\"yes\"",
            "\"'; DROP TABLE contacts; --\"",
        ])
    };
    let cmp = || select(vec!["==", "!=", "<", "<=", ">", ">="]);
    let num_field = select(vec![
        "open_count",
        "send_count",
        "attributes.age",
        "attributes.score",
        "id",
    ]);
    let num_lit = select(vec!["0", "1", "19", "30", "7.5", "-1", "1000000", "1e300"]);
    let date_field = || {
        select(vec![
            "created_at",
            "last_open_at",
            "last_click_at",
            "last_sent_at",
            "updated_at",
        ])
    };
    let date_lit = select(vec![
        "now()",
        "now() - 30d",
        "now() - 1w - 12h",
        "\"2025-01-01\"",
        "date(\"2024-06-01\")",
        "last_sent_at + 1d",
    ]);
    let match_op = select(vec!["contains", "starts_with", "ends_with", "like"]);
    let set = select(vec![
        "\"vip\" in tags",
        "\"beta\" not in tags",
        "has_tag(\"none\")",
        "\"newsletter\" in lists",
        "subscribed(\"offers\")",
        "unsubscribed(\"newsletter\")",
        "\"sports\" in attributes.interests",
        "attributes.vip",
        "attributes.vip == false",
        "true",
        "false",
        "status in [\"active\", \"bounced\"]",
        "domain in [\"gmail.com\", \"x.test\"]",
        "attributes.age in [19, 34]",
        "now() - last_click_at < 30d",
    ]);
    let null_field = select(vec![
        "first_name",
        "last_name",
        "last_open_at",
        "attributes.country",
        "attributes.address.city",
        "attributes.missing",
    ]);
    let atom = prop_oneof![
        (text_field(), cmp(), text_lit()).prop_map(|(f, o, v)| format!("{f} {o} {v}")),
        (num_field, cmp(), num_lit.clone()).prop_map(|(f, o, v)| format!("{f} {o} {v}")),
        (date_field(), cmp(), date_lit).prop_map(|(f, o, v)| format!("{f} {o} {v}")),
        (text_field(), match_op, text_lit()).prop_map(|(f, o, v)| format!("{f} {o} {v}")),
        (null_field, any::<bool>())
            .prop_map(|(f, not)| format!("{f} is {}null", if not { "not " } else { "" })),
        set.prop_map(String::from),
    ];
    atom.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} and {b}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

fn locals(rows: Vec<segment::SampleContact>) -> BTreeSet<String> {
    rows.into_iter()
        .map(|c| c.email.split('@').next().unwrap_or_default().to_string())
        .collect()
}

fn date_ms(d: &str) -> i64 {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let t = time::Date::parse(d, &fmt).unwrap().midnight().assume_utc();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// Writes the fixture contacts with plain SQL, bypassing the import code so
/// that this test depends on the schema only.
async fn seed(store: &Store) {
    let now = now_millis();
    let pg = store.backend() == Backend::Postgres;
    let insert_contact = format!(
        "INSERT INTO contacts (email, domain, first_name, last_name, status, attributes, created_at, \
         updated_at, last_open_at, last_click_at, open_count) \
         VALUES ($1, $2, $3, $4, $5, {}, $6, $6, $7, $8, $9) RETURNING id",
        if pg { "CAST($10 AS JSONB)" } else { "$10" }
    );
    for c in contacts() {
        let domain = c.email.split('@').nth(1).unwrap();
        let ago = |d: Option<i64>| d.map(|d| now - d * DAY);
        let id: i64 = cartero::dispatch!(store, pool => {
            sqlx::query_scalar(&insert_contact)
                .bind(c.email)
                .bind(domain)
                .bind(c.first_name)
                .bind(c.last_name)
                .bind(c.status)
                .bind(date_ms(c.created_at))
                .bind(ago(c.last_open_days_ago))
                .bind(ago(c.last_click_days_ago))
                .bind(c.open_count)
                .bind(c.attributes.to_string())
                .fetch_one(pool)
                .await
                .unwrap()
        });
        for tag in c.tags {
            cartero::dispatch!(store, pool => {
                sqlx::query("INSERT INTO contact_tags (contact_id, tag) VALUES ($1, $2)")
                    .bind(id)
                    .bind(*tag)
                    .execute(pool)
                    .await
                    .map(drop)
                    .unwrap()
            });
        }
        for (list, subscribed) in c.lists {
            let list_id: i64 = cartero::dispatch!(store, pool => {
                sqlx::query_scalar(
                    "INSERT INTO lists (name, created_at) VALUES ($1, $2) \
                     ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
                )
                .bind(*list)
                .bind(now)
                .fetch_one(pool)
                .await
                .unwrap()
            });
            cartero::dispatch!(store, pool => {
                sqlx::query(
                    "INSERT INTO contact_lists (contact_id, list_id, subscribed, changed_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(list_id)
                .bind(i64::from(*subscribed))
                .bind(now)
                .execute(pool)
                .await
                .map(drop)
                .unwrap()
            });
        }
    }
}
