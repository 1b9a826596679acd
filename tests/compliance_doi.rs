//! `compliance audit`'s double opt-in checks on both backends: a sign-up
//! pending past `--doi-pending-days` is named (a recent one, or one a later
//! confirmed sign-up superseded, is not), and a subscription resting only on
//! the grant of a sign-up that was never confirmed is named; a confirmed
//! sign-up's grant passes.

mod common;

use cartero::domain::ConsentAction;
use cartero::domain::ledger_key::LedgerKeys;
use cartero::domain::time::{now_millis, to_rfc3339};
use cartero::store::Store;
use cartero::store::consent::{Appender, ConsentEntry, Evidence};
use common::db::TestDb;
use common::project::{Project, stderr, stdout};

const KEY: &str = "doi-audit-test-key-0123456789abcdef012345";
const DAY: i64 = 24 * 3600 * 1000;

async fn exec(store: &Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    cartero::dispatch!(store, pool => {
        sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

/// A sign-up row as the form writes it; returns its id.
async fn signup(store: &Store, token: &str, email: &str, at: i64, confirmed: Option<i64>) -> i64 {
    let (state, confirmed_at) = match confirmed {
        Some(t) => ("confirmed", t.to_string()),
        None => ("pending", "NULL".to_string()),
    };
    exec(
        store,
        &format!(
            "INSERT INTO signups (token_hash, list_id, email, state, signed_up_at, confirmed_at) \
             VALUES ('{token}', 1, '{email}', '{state}', {at}, {confirmed_at})"
        ),
    )
    .await;
    scalar(
        store,
        &format!("SELECT id FROM signups WHERE token_hash = '{token}'"),
    )
    .await
}

/// A contact subscribed to list 1 by a double opt-in grant naming `signup_id`.
async fn subscribed_by_signup(store: &Store, email: &str, signup_id: i64, at: i64) -> i64 {
    exec(
        store,
        &format!(
            "INSERT INTO contacts (email, domain, created_at, updated_at) \
             VALUES ('{email}', 'example.com', {at}, {at})"
        ),
    )
    .await;
    let id = scalar(
        store,
        &format!("SELECT id FROM contacts WHERE email = '{email}'"),
    )
    .await;
    exec(
        store,
        &format!(
            "INSERT INTO contact_lists (contact_id, list_id, subscribed, changed_at) \
             VALUES ({id}, 1, 1, {at})"
        ),
    )
    .await;
    let keys = LedgerKeys::new(KEY, &[]).unwrap();
    let mut tx = store.begin().await.unwrap();
    let mut app = Appender::start_with(&mut tx, Some(&keys)).await.unwrap();
    app.append(
        &mut tx,
        &ConsentEntry {
            contact_id: id,
            list_id: Some(1),
            action: ConsentAction::Grant,
            occurred_at: at,
            evidence: Evidence {
                source: "sign-up form (newsletter)".into(),
                method: "double-opt-in".into(),
                details: serde_json::json!({ "signup_id": signup_id, "list": "newsletter" }),
                ..Default::default()
            },
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_names_stale_double_opt_in_requests_and_unconfirmed_grants() {
    for db in TestDb::all().await {
        let p = Project::new(&db, &format!("[compliance]\nledger_key = \"{KEY}\"\n"));
        let out = p.import("email\na@example.com\n");
        assert!(out.status.success(), "{}", stderr(&out));
        let now = now_millis();

        // A confirmed sign-up whose grant made e a subscriber: lawful.
        let ok = signup(
            &db.store,
            "t-ok",
            "e@example.com",
            now - 20 * DAY,
            Some(now - 19 * DAY),
        )
        .await;
        subscribed_by_signup(&db.store, "e@example.com", ok, now - 19 * DAY).await;
        // Pending for a day: within the limit.
        signup(&db.store, "t-new", "n@example.com", now - DAY, None).await;
        let clean = p.run(&["compliance", "audit"]);
        assert_eq!(clean.status.code(), Some(0), "{}", stdout(&clean));
        assert!(
            stdout(&clean)
                .contains("double opt-in pending        0 (unconfirmed for more than 7 days)"),
            "{}",
            stdout(&clean)
        );

        // Pending for ten days: a violation under the default week.
        let stale_at = now - 10 * DAY;
        let stale = signup(&db.store, "t-stale", "s@example.com", stale_at, None).await;
        // Pending for ten days but superseded: the same address confirmed a
        // later sign-up to the same list.
        signup(&db.store, "t-old", "r@example.com", now - 12 * DAY, None).await;
        signup(
            &db.store,
            "t-again",
            "r@example.com",
            now - 2 * DAY,
            Some(now - 2 * DAY),
        )
        .await;
        // u is on the list by the grant of a sign-up nobody confirmed.
        let never = signup(&db.store, "t-never", "u@example.com", now - 3 * DAY, None).await;
        subscribed_by_signup(&db.store, "u@example.com", never, now - 3 * DAY).await;

        let bad = p.run(&["compliance", "audit"]);
        assert_eq!(bad.status.code(), Some(4), "{}", stderr(&bad));
        let text = stdout(&bad);
        for expected in [
            format!(
                "VIOLATION doi-pending: sign-up {stale} of s@example.com to newsletter at {} is still \
                 unconfirmed after 7 days",
                to_rfc3339(stale_at)
            ),
            format!(
                "VIOLATION unconfirmed-signup-grant: u@example.com is subscribed to newsletter on the \
                 grant of sign-up {never}"
            ),
            "double opt-in pending        1 (unconfirmed for more than 7 days)".to_string(),
            "violations                   2".to_string(),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
        }
        for absent in ["r@example.com", "n@example.com", "e@example.com"] {
            assert!(!text.contains(absent), "{absent} named in\n{text}");
        }

        let json: serde_json::Value =
            serde_json::from_slice(&p.run(&["compliance", "audit", "--format", "json"]).stdout)
                .unwrap();
        assert_eq!(json["doi_pending_days"], 7);
        assert_eq!(json["doi_pending"], 1);
        let kinds: Vec<&str> = json["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["doi-pending", "unconfirmed-signup-grant"]);
        assert_eq!(json["violations"][0]["signed_up_at"], stale_at);
        assert_eq!(json["violations"][0]["signup_id"], stale);

        // A month's limit: the ten-day request passes; the grant does not.
        let month = p.run(&["compliance", "audit", "--doi-pending-days", "30"]);
        assert_eq!(month.status.code(), Some(4));
        let text = stdout(&month);
        assert!(!text.contains("doi-pending:"), "{text}");
        assert!(text.contains("violations                   1"), "{text}");

        // Confirming the sign-up (as the confirmation does) clears both.
        for id in [stale, never] {
            exec(
                &db.store,
                &format!(
                    "UPDATE signups SET state = 'confirmed', confirmed_at = {now} WHERE id = {id}"
                ),
            )
            .await;
        }
        let fixed = p.run(&["compliance", "audit"]);
        assert_eq!(fixed.status.code(), Some(0), "{}", stdout(&fixed));

        // Not a number of days: refused by name.
        let wrong = p.run(&["compliance", "audit", "--doi-pending-days", "week"]);
        assert_eq!(wrong.status.code(), Some(2));
        assert!(
            stderr(&wrong).contains("--doi-pending-days"),
            "{}",
            stderr(&wrong)
        );
    }
}
