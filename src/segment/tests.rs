//! Unit tests of the whole path from text to SQL, without a database. The
//! integration tests in tests/segment.rs run the SQL on both backends.

use proptest::prelude::*;

use super::ast::{CmpOp, Column, Expr, JsonTy, Operand, PatternPart};
use super::sql::{Dialect, Recorder, emit};
use super::*;

const NOW: i64 = 1_750_000_000_000;
const DAY: i64 = 86_400_000;

fn parse(src: &str) -> Expr {
    match Segment::parse("t", src) {
        Ok(s) => s.expr,
        Err(e) => panic!("{src}: {}", e.render()),
    }
}

fn err(src: &str) -> SegmentError {
    match Segment::parse("t", src) {
        Ok(s) => panic!("{src} parsed: {:?}", s.expr),
        Err(e) => e,
    }
}

fn sql(src: &str, dialect: Dialect) -> (String, Vec<String>) {
    let mut rec = Recorder::new(dialect);
    emit(&mut rec, &parse(src), NOW);
    (rec.sql, rec.params)
}

fn attr(key: &str, ty: JsonTy) -> Operand {
    Operand::Attr {
        path: vec![key.to_string()],
        ty,
    }
}

#[test]
fn the_issue_example_types_each_part() {
    let e =
        parse(r#"attributes.country == "ES" and "vip" in tags and last_click_at > now() - 90d"#);
    assert_eq!(
        e,
        Expr::And(vec![
            Expr::Compare {
                lhs: attr("country", JsonTy::Text),
                op: CmpOp::Eq,
                rhs: Operand::Text("ES".into()),
            },
            Expr::HasTag(Operand::Text("vip".into())),
            Expr::Compare {
                lhs: Operand::Column(Column::LastClickAt),
                op: CmpOp::Gt,
                rhs: Operand::Sub(Box::new(Operand::Now), Box::new(Operand::Millis(90 * DAY))),
            },
        ])
    );
}

#[test]
fn attributes_take_the_type_of_the_other_side() {
    assert_eq!(
        parse("attributes.age >= 18"),
        Expr::Compare {
            lhs: attr("age", JsonTy::Number),
            op: CmpOp::Ge,
            rhs: Operand::Int(18)
        }
    );
    assert_eq!(
        parse("true == attributes.vip"),
        Expr::Compare {
            lhs: Operand::Bool(true),
            op: CmpOp::Eq,
            rhs: attr("vip", JsonTy::Bool)
        }
    );
    // A bare attribute is a flag.
    assert_eq!(parse("attributes.vip"), parse("attributes.vip == true"));
    assert_eq!(
        parse("attributes.address.city == 'Sevilla'"),
        Expr::Compare {
            lhs: Operand::Attr {
                path: vec!["address".into(), "city".into()],
                ty: JsonTy::Text
            },
            op: CmpOp::Eq,
            rhs: Operand::Text("Sevilla".into())
        }
    );
}

#[test]
fn not_equal_is_not_equal_equal() {
    assert_eq!(parse("locale != 'es'"), parse("not locale == 'es'"));
    assert_eq!(parse("'a' not in tags"), parse("not 'a' in tags"));
    assert_eq!(parse("first_name is not null"), parse("exists(first_name)"));
}

#[test]
fn string_literals_beside_dates_are_dates() {
    let want = Expr::Compare {
        lhs: Operand::Column(Column::CreatedAt),
        op: CmpOp::Ge,
        rhs: Operand::Millis(1_735_689_600_000),
    };
    assert_eq!(parse("created_at >= '2025-01-01'"), want);
    assert_eq!(parse("created_at >= date('2025-01-01')"), want);
    assert_eq!(parse("created_at >= '2025-01-01T01:00:00+01:00'"), want);
}

#[test]
fn contains_family_becomes_patterns() {
    let m = |src| match parse(src) {
        Expr::Match { pattern, .. } => pattern,
        other => panic!("{other:?}"),
    };
    use PatternPart::*;
    assert_eq!(m("email contains 'x'"), vec![Any, Lit("x".into()), Any]);
    assert_eq!(m("email starts_with 'x'"), vec![Lit("x".into()), Any]);
    assert_eq!(m("email ends_with 'x'"), vec![Any, Lit("x".into())]);
    assert_eq!(
        m(r"email like 'a%b_c\\%%'"),
        vec![
            Lit("a".into()),
            Any,
            Lit("b".into()),
            One,
            Lit("c%".into()),
            Any
        ]
    );
    assert_eq!(m("email like '%%x'"), vec![Any, Lit("x".into())]);
    // `contains` on the sets means membership.
    assert_eq!(parse("tags contains 'vip'"), parse("'vip' in tags"));
    assert_eq!(parse("lists contains 'news'"), parse("subscribed('news')"));
}

#[test]
fn empty_list_matches_nothing() {
    assert_eq!(parse("domain in []"), Expr::Const(false));
}

/// Each case: the filter, the 1-based column the error must point at, and a
/// piece of the message.
#[test]
fn errors_point_at_the_column() {
    let cases = [
        ("last_clik_at > now()", 1, "did you mean `last_click_at`"),
        ("email == 'a' and contry == 'ES'", 18, "attributes.contry"),
        ("first_name == 5", 1, "cannot compare text with a number"),
        ("send_count > 'x'", 1, "cannot compare a number with text"),
        ("last_click_at > 5", 1, "write dates as"),
        (
            "id == 1 or last_click_at > 'yesterday'",
            28,
            "is not a date",
        ),
        ("status == 'actve'", 11, "not a contact status"),
        ("status in ['active', 'gone']", 22, "not a contact status"),
        (
            "attributes.a == attributes.b",
            1,
            "both sides are attributes",
        ),
        ("attributes.vip < true", 1, "no order"),
        ("email + 1d == 'x'", 1, "cannot add text and a duration"),
        ("first_name == null", 15, "is null"),
        ("tags == 'vip'", 1, "is a set"),
        ("attributes.joined > now()", 1, "not dates"),
        ("'vip' in email", 10, "after `in`"),
        ("frobnicate(1) == 2", 1, "unknown function"),
        (r#"attributes["a\"b"] == 1"#, 11, "cannot contain"),
        ("attributes == 1", 1, "attributes.KEY"),
        ("email.x == 1", 7, "has no fields"),
        ("first_name", 1, "not a condition"),
        ("send_count + 1 > 3", 1, "cannot add a number and a number"),
        ("email contains first_name", 16, "quoted string"),
        ("subscribed(1)", 12, "list name"),
        ("date('2025-13-01') < now()", 6, "is not a date"),
        ("7", 1, "expected a condition"),
        ("email like 'x\\\\'", 12, "ends with"),
    ];
    for (src, col, needle) in cases {
        let e = err(src);
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("column {col}: ")), "{src}: {msg}");
        assert!(msg.contains(needle), "{src}: {msg}");
        let r = e.render();
        assert!(r.lines().nth(2).is_some_and(|l| l.ends_with(src)), "{r}");
    }
}

#[test]
fn caret_is_under_the_mistake() {
    let e = err("email == 'a' and contry == 'ES'");
    assert_eq!(e.span(), Some(17..23));
    assert!(
        e.render().ends_with("\n  |                  ^^^^^^"),
        "{}",
        e.render()
    );
}

#[test]
fn values_are_bound_never_written_into_sql() {
    let evil = "'; DROP TABLE contacts; --";
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let (text, params) = sql(
            &format!("attributes.x == \"{evil}\" or email == \"{evil}\""),
            dialect,
        );
        assert!(!text.contains("DROP"), "{text}");
        assert!(
            params.iter().filter(|p| p.contains("DROP")).count() == 2,
            "{params:?}"
        );
    }
}

#[test]
fn attribute_keys_are_bound_never_written_into_sql() {
    let src = r#"attributes["it's'); DROP TABLE contacts; --"]["x y"] == 1"#;
    for dialect in [Dialect::Sqlite, Dialect::Postgres] {
        let (text, params) = sql(src, dialect);
        assert!(!text.contains("DROP") && !text.contains("it's"), "{text}");
        assert!(params.iter().any(|p| p.contains("DROP")), "{params:?}");
    }
    let (_, params) = sql(src, Dialect::Sqlite);
    assert_eq!(
        params[0],
        format!("{:?}", r#"$."it's'); DROP TABLE contacts; --"."x y""#)
    );
}

#[test]
fn like_wildcards_in_values_are_escaped() {
    let (text, params) = sql(r"email contains '50%_off*[x]?\\'", Dialect::Postgres);
    assert!(text.contains(" LIKE $1 ESCAPE '\\'"), "{text}");
    assert_eq!(params, vec![format!("{:?}", r"%50\%\_off*[x]?\\%")]);
    let (text, params) = sql(r"email contains '50%_off*[x]?\\'", Dialect::Sqlite);
    assert!(text.contains(" GLOB ?"), "{text}");
    assert_eq!(params, vec![format!("{:?}", r"*50%_off[*][[]x][?]\*")]);
}

#[test]
fn now_arithmetic_is_folded_into_one_bound_instant() {
    let (text, params) = sql("last_click_at > now() - 90d + 12h", Dialect::Sqlite);
    assert_eq!(text, "(c.last_click_at > ?)");
    assert_eq!(params, vec![(NOW - 90 * DAY + DAY / 2).to_string()]);
    // Against a column it stays arithmetic.
    let (text, params) = sql("now() - last_open_at > 30d", Dialect::Postgres);
    assert_eq!(text, "(($1 - c.last_open_at) > $2)");
    assert_eq!(params, vec![NOW.to_string(), (30 * DAY).to_string()]);
}

#[test]
fn negation_of_a_nullable_condition_is_two_valued() {
    let (text, _) = sql("not first_name == 'Ana'", Dialect::Sqlite);
    assert_eq!(text, "(NOT COALESCE((c.first_name = ?), FALSE))");
    let (text, _) = sql("not email == 'a@b'", Dialect::Sqlite);
    assert_eq!(text, "(NOT (c.email = ?))");
}

#[test]
fn postgres_text_order_is_byte_order() {
    let (text, _) = sql("last_name < 'M'", Dialect::Postgres);
    assert_eq!(text, "(c.last_name COLLATE \"C\" < $1)");
}

#[test]
fn postgres_casts_are_guarded_by_case() {
    let (text, params) = sql("attributes.age > 30", Dialect::Postgres);
    assert_eq!(
        text,
        "(CASE WHEN jsonb_typeof(c.attributes #> $1) = 'number' THEN CAST(c.attributes #> $2 AS NUMERIC) END > $3)"
    );
    assert_eq!(params, vec![r#"["age"]"#, r#"["age"]"#, "30"]);
}

#[test]
fn unicode_columns_count_characters() {
    let e = err("attributes.ciudad == 'Sevilla' and contraseña == 1");
    assert!(e.to_string().starts_with("column 36:"), "{e}");
}

#[test]
fn segments_file_reports_file_line_col() {
    let text = "[segments.ok]\nfilter = 'email ends_with \"@x.org\"'\n\n[segments.bad]\ndescription = \"x\"\nfilter = \"\\\"vip\\\" in tags and contry == 1\"\n";
    let err = parse_file(Path::new("segments.toml"), text).unwrap_err();
    // `contry` sits at line 6, column 31 of the file (after the escaped quotes).
    assert!(
        err.to_string()
            .starts_with("segments.toml:6:31: unknown field `contry`"),
        "{err}"
    );
    assert_eq!(err.span(), Some(18..24));
    let unknown_key = parse_file(
        Path::new("s.toml"),
        "[segments.a]\nfilter = 'x'\nfliter = 1\n",
    )
    .unwrap_err();
    assert!(
        unknown_key.to_string().starts_with("s.toml:3:1:"),
        "{unknown_key}"
    );
}

#[test]
fn segments_file_keeps_file_order_and_descriptions() {
    let text = "[segments.zeta]\nfilter = '\"a\" in tags'\ndescription = 'Z'\n[segments.alpha]\nfilter = '\"b\" in tags'\n";
    let segs = parse_file(Path::new("s.toml"), text).unwrap();
    let names: Vec<_> = segs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["zeta", "alpha"]);
    assert_eq!(segs[0].description.as_deref(), Some("Z"));
    assert_eq!(segs[1].description, None);
}

fn literal() -> impl Strategy<Value = String> {
    any::<String>()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No input makes the compiler panic, and every error span lies inside
    /// the input and renders.
    #[test]
    fn never_panics(src in "\\PC{0,80}") {
        if let Err(e) = Segment::parse("p", &src) {
            let span = e.span().unwrap();
            prop_assert!(span.start <= span.end && span.end <= src.len());
            let _ = e.render();
        }
    }

    #[test]
    fn never_panics_on_token_soup(words in proptest::collection::vec(
        prop::sample::select(vec![
            "and", "or", "not", "in", "is", "null", "(", ")", "[", "]", ",", ".", "==", "!=", "<",
            ">=", "+", "-", "email", "tags", "lists", "attributes", "attributes.x", "now()",
            "date(", "'2025-01-01'", "\"x\"", "1", "2.5", "30d", "true", "contains", "like",
            "exists(", "subscribed(", "lower(", "last_open_at", "status", "'active'",
        ]),
        0..24,
    )) {
        let src = words.join(" ");
        if let Ok(seg) = Segment::parse("p", &src) {
            for d in [Dialect::Sqlite, Dialect::Postgres] {
                let mut rec = Recorder::new(d);
                emit(&mut rec, &seg.expr, NOW);
            }
        }
    }

    /// The SQL text does not depend on the values: two filters that differ
    /// only in their literals compile to the same statement.
    #[test]
    fn sql_text_is_independent_of_values(a in literal(), b in literal()) {
        let q = |v: &str| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"");
            format!(r#"attributes.k == "{v}" or email contains "{v}" or "{v}" in tags or domain in ["{v}"] or lower(first_name) < "{v}""#)
        };
        for d in [Dialect::Sqlite, Dialect::Postgres] {
            let (sa, pa) = sql(&q(&a), d);
            let (sb, _) = sql(&q(&b), d);
            prop_assert_eq!(&sa, &sb);
            let want = format!("{:?}", a);
            prop_assert!(pa.contains(&want));
        }
    }
}

#[test]
fn column_names_are_plain_identifiers() {
    // They are the only names written into SQL.
    for c in Column::ALL {
        assert!(
            c.name()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{c:?}"
        );
    }
}

#[test]
fn one_line_drops_comments_and_line_breaks() {
    let seg = Segment::parse("x", "attributes.country == \"ES # not a comment\"  # ISO code\n  and now() - last_open_at < 30d\n").unwrap();
    assert_eq!(
        seg.one_line(),
        "attributes.country == \"ES # not a comment\" and now() - last_open_at < 30d"
    );
}

/// The example file at the top of docs/SEGMENTS.md is valid.
#[test]
fn documented_example_file_compiles() {
    let doc = include_str!("../../docs/SEGMENTS.md");
    let start = doc.find("```toml\n").expect("a toml example") + "```toml\n".len();
    let end = start + doc[start..].find("```").expect("closing fence");
    let segs = parse_file(Path::new("SEGMENTS.md"), &doc[start..end]).unwrap();
    let names: Vec<_> = segs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["spain_vip", "lapsed"]);
}

#[test]
fn toml_positions_in_multiline_basic_strings() {
    // A line-ending backslash joins lines; the error still lands on `zz`.
    let text = "[segments.a]\nfilter = \"\"\"\nemail == 'x' \\\n    and zz == 1\"\"\"\n";
    let err = parse_file(Path::new("f.toml"), text).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("f.toml:4:9: unknown field `zz`"),
        "{err}"
    );
}

/// How a campaign file embeds a segment: its own struct holds a `SegmentDef`.
#[test]
fn segment_table_inside_another_file() {
    #[derive(serde::Deserialize)]
    struct Campaign {
        #[allow(dead_code)]
        name: String,
        segment: SegmentDef,
    }
    let text = "name = \"spring\"\n\n[segment]\nfilter = '\"vip\" in tags and bogus == 1'\n";
    let c: Campaign = toml::from_str(text).unwrap();
    let err = c
        .segment
        .compile("spring", Path::new("campaigns/spring.toml"), text)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("campaigns/spring.toml:4:29: unknown field `bogus`"),
        "{err}"
    );
}
