//! `hygiene run` over a real database (SQLite and PostgreSQL) and a real DNS
//! server (dnsmasq on loopback): flags for invalid, role, disposable, typo
//! and undeliverable-domain addresses, sunset as a recorded status change,
//! a dry run that writes nothing, and a second run that changes nothing.
//!
//! Contacts are written with SQL: some of them hold addresses the parser
//! refuses (that is what hygiene must find), which import would not take.

mod common;

use cartero::config::DnsConfig;
use cartero::hygiene::flags::FlagChecker;
use cartero::hygiene::mx::MxChecker;
use cartero::hygiene::run::{self, Options};
use cartero::store::Store;
use common::db::TestDb;
use common::servers::{Dns, Zone};

const NOW: i64 = 1_790_000_000_000;
const DAY: i64 = 24 * 3600 * 1000;

/// (address, sends, last open) of the test contacts.
fn people() -> Vec<(&'static str, i64, Option<i64>)> {
    vec![
        ("ok@example.com", 0, None),
        ("john..doe@example.com", 0, None),
        ("postmaster@example.com", 0, None),
        ("someone@mailinator.com", 0, None),
        ("ana@gmial.com", 0, None),
        ("user@nullmx.test", 0, None),
        ("user@mx.test", 0, None),
        // Mailed with tracking, never opened since being added 100 days
        // ago: sunset.
        ("quiet@example.org", 2, None),
        // Mailed and opened 10 days ago: stays.
        ("reader@example.org", 2, Some(NOW - 10 * DAY)),
        // Mailed only without tracking (tracked = 0), or before sends
        // recorded it (NULL): no evidence, stays, and is counted.
        ("untracked@example.org", 2, None),
        ("legacy@example.org", 2, None),
    ]
}

/// What `sends.tracked` the seeded send of a mailed contact carries.
fn tracked_of(email: &str) -> Option<i64> {
    match email {
        "untracked@example.org" => Some(0),
        "legacy@example.org" => None,
        _ => Some(1),
    }
}

async fn seed(store: &Store) {
    cartero::dispatch!(store, pool => {
        sqlx::query(
            "INSERT INTO campaigns (slug, name, file_path, file_hash, created_at) \
             VALUES ('old', 'Old', 'campaigns/old.toml', 'x', $1)",
        )
        .bind(NOW - 90 * DAY)
        .execute(pool)
        .await
        .expect("insert campaign");
    });
    for (email, sends, opened) in people() {
        let domain = email.rsplit('@').next().expect("@");
        cartero::dispatch!(store, pool => {
            sqlx::query(
                "INSERT INTO contacts (email, email_ascii, domain, status, created_at, updated_at, \
                 send_count, last_open_at) VALUES ($1, $1, $2, 'active', $3, $3, $4, $5)",
            )
            .bind(email)
            .bind(domain)
            .bind(NOW - 100 * DAY)
            .bind(sends)
            .bind(opened)
            .execute(pool)
            .await
            .expect("insert contact");
            if sends > 0 {
                sqlx::query(
                    "INSERT INTO sends (campaign_id, contact_id, email, state, created_at, updated_at, tracked) \
                     SELECT (SELECT id FROM campaigns WHERE slug = 'old'), id, email, 'accepted', $2, $2, $3 \
                     FROM contacts WHERE email = $1",
                )
                .bind(email)
                .bind(NOW - 90 * DAY)
                .bind(tracked_of(email))
                .execute(pool)
                .await
                .expect("insert send");
            }
        });
    }
}

async fn flags(store: &Store) -> Vec<(String, String, Option<String>)> {
    cartero::dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT c.email, f.flag, f.detail FROM contact_flags f JOIN contacts c ON c.id = f.contact_id \
             ORDER BY c.email, f.flag",
        )
        .fetch_all(pool)
        .await
        .expect("flags")
    })
}

async fn count(store: &Store, sql: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
    })
}

fn has(f: &[(String, String, Option<String>)], email: &str, flag: &str) -> bool {
    f.iter().any(|(e, g, _)| e == email && g == flag)
}

#[tokio::test]
async fn hygiene_run_flags_sunsets_and_is_idempotent() {
    let Some(dns) = Dns::start(&Zone::standard()) else {
        return;
    };
    let mx = MxChecker::from_config(&DnsConfig {
        nameservers: vec![dns.addr().to_string()],
        timeout_ms: 2000,
        concurrency: 4,
    })
    .expect("mx checker");
    let checker = FlagChecker::builtin();
    for db in TestDb::all().await {
        seed(&db.store).await;
        let opts = Options {
            dry_run: true,
            sunset_days: Some(30),
        };

        let dry = run::run(&db.store, &checker, Some(&mx), &opts, NOW)
            .await
            .expect("dry run");
        assert_eq!(dry.contacts, 11);
        assert_eq!(dry.sunset, 1);
        assert_eq!(dry.sunset_no_evidence, 2, "untracked and legacy: {dry:?}");
        assert!(dry.flags_added >= 7, "{dry:?}");
        assert!(
            flags(&db.store).await.is_empty(),
            "a dry run writes no flags"
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM status_changes").await,
            0
        );

        let real = run::run(
            &db.store,
            &checker,
            Some(&mx),
            &Options {
                dry_run: false,
                ..opts.clone()
            },
            NOW,
        )
        .await
        .expect("run");
        assert_eq!(
            (real.flags_added, real.sunset),
            (dry.flags_added, dry.sunset),
            "the dry run predicted the run"
        );
        let f = flags(&db.store).await;
        assert!(has(&f, "john..doe@example.com", "invalid"), "{f:?}");
        assert!(has(&f, "postmaster@example.com", "role"), "{f:?}");
        assert!(has(&f, "someone@mailinator.com", "disposable"), "{f:?}");
        assert!(
            f.contains(&(
                "ana@gmial.com".into(),
                "typo".into(),
                Some("gmail.com".into())
            )),
            "{f:?}"
        );
        assert!(
            f.contains(&(
                "user@nullmx.test".into(),
                "mx".into(),
                Some("null-mx".into())
            )),
            "{f:?}"
        );
        assert!(!has(&f, "user@mx.test", "mx"), "mx.test has mail servers");
        assert!(!has(&f, "ok@example.com", "invalid"));
        // DNS that cannot tell (example.com is not served here) flags nothing.
        assert!(!has(&f, "ok@example.com", "mx"));

        let sunset: Vec<(String, String, String, Option<String>)> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as(
                "SELECT c.email, s.cause, s.to_status, s.rule FROM status_changes s \
                 JOIN contacts c ON c.id = s.contact_id",
            )
            .fetch_all(pool)
            .await
            .expect("changes")
        });
        assert_eq!(
            sunset,
            vec![(
                "quiet@example.org".into(),
                "hygiene".into(),
                "sunset".into(),
                Some("sunset".into())
            )]
        );
        assert_eq!(
            count(&db.store, "SELECT COUNT(*) FROM contacts").await,
            11,
            "nothing deleted"
        );

        // Again: nothing new.
        let again = run::run(
            &db.store,
            &checker,
            Some(&mx),
            &Options {
                dry_run: false,
                ..opts.clone()
            },
            NOW,
        )
        .await
        .expect("second run");
        assert_eq!(
            (
                again.flags_added,
                again.flags_updated,
                again.flags_cleared,
                again.sunset
            ),
            (0, 0, 0, 0),
            "{again:?}"
        );

        // A corrected address loses its flag; without --check-mx the mx
        // flag stands.
        cartero::dispatch!(&db.store, pool => {
            sqlx::query("UPDATE contacts SET email = 'john.doe@example.com' WHERE email = 'john..doe@example.com'")
                .execute(pool)
                .await
                .expect("fix address");
        });
        let fixed = run::run(
            &db.store,
            &checker,
            None,
            &Options {
                dry_run: false,
                sunset_days: None,
            },
            NOW,
        )
        .await
        .expect("third run");
        assert_eq!(fixed.flags_cleared, 1, "{fixed:?}");
        let f = flags(&db.store).await;
        assert!(!has(&f, "john.doe@example.com", "invalid"));
        assert!(has(&f, "user@nullmx.test", "mx"));
    }
}
