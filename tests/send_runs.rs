//! Runs: send rows belong to a campaign run, unique per (run, contact).
//! Migration 0014 moves existing sends into one run per campaign without
//! losing a row, and `campaign send` creates, then resumes, the campaign's
//! manual run.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};

async fn exec(store: &cartero::store::Store, sql: &str) {
    cartero::dispatch!(store, pool => {
        sqlx::query(sql).execute(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

async fn rows(store: &cartero::store::Store, sql: &str) -> Vec<(i64, i64, Option<i64>)> {
    cartero::dispatch!(store, pool => {
        sqlx::query_as::<_, (i64, i64, Option<i64>)>(sql).fetch_all(pool).await.unwrap()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn existing_sends_move_into_one_run_per_campaign_and_keep_their_ids() {
    for db in TestDb::all_before(14).await {
        let s = &db.store;
        exec(s, "INSERT INTO contacts (id, email, domain, created_at, updated_at) VALUES \
                 (1, 'a@example.org', 'example.org', 1, 1), (2, 'b@example.org', 'example.org', 1, 1)").await;
        exec(s, "INSERT INTO campaigns (id, slug, name, file_path, file_hash, created_at, started_at, finished_at) VALUES \
                 (10, 'done', 'Done', 'c.toml', 'h', 1, 2, 3), (11, 'half', 'Half', 'd.toml', 'h', 1, 2, NULL), \
                 (12, 'never', 'Never', 'e.toml', 'h', 1, NULL, NULL)").await;
        exec(s, "INSERT INTO sends (id, campaign_id, contact_id, email, state, created_at, updated_at) VALUES \
                 (100, 10, 1, 'a@example.org', 'accepted', 2, 3), (101, 10, 2, 'b@example.org', 'failed', 2, 3), \
                 (102, 11, 1, 'a@example.org', 'pending', 2, 2)").await;
        exec(s, "INSERT INTO events (contact_id, campaign_id, send_id, kind, occurred_at) VALUES (1, 10, 100, 'open', 4)").await;

        s.migrate()
            .await
            .expect("migration 0014 over existing sends");

        let runs: Vec<(i64, i64, Option<i64>)> = rows(
            s,
            "SELECT id, campaign_id, finished_at FROM campaign_runs ORDER BY campaign_id",
        )
        .await;
        assert_eq!(runs.len(), 3, "one run per campaign: {runs:?}");
        assert_eq!(
            runs[0].2,
            Some(3),
            "the finished campaign's run is finished"
        );
        let states: Vec<String> = cartero::dispatch!(s, pool => {
            sqlx::query_scalar("SELECT state FROM campaign_runs ORDER BY campaign_id").fetch_all(pool).await.unwrap()
        });
        assert_eq!(states, ["finished", "sending", "pending"]);
        let sends = rows(s, "SELECT id, campaign_id, run_id FROM sends ORDER BY id").await;
        assert_eq!(
            sends,
            vec![
                (100, 10, Some(runs[0].0)),
                (101, 10, Some(runs[0].0)),
                (102, 11, Some(runs[1].0))
            ],
            "every send kept its id and joined its campaign's run"
        );
        let event_send: i64 = cartero::dispatch!(s, pool => {
            sqlx::query_scalar("SELECT send_id FROM events").fetch_one(pool).await.unwrap()
        });
        assert_eq!(event_send, 100);

        // Unique per (run, contact): the same contact again in the same run
        // is refused, in a second run of the same campaign it is not.
        let dup = cartero::dispatch!(s, pool => {
            sqlx::query("INSERT INTO sends (campaign_id, run_id, contact_id, email, state, created_at, updated_at) \
                         VALUES (10, $1, 1, 'a@example.org', 'pending', 5, 5)")
                .bind(runs[0].0).execute(pool).await.map(|_| ())
        });
        assert!(dup.is_err(), "a second row for a contact in one run");
        exec(
            s,
            "INSERT INTO campaign_runs (campaign_id, trigger, occurrence, state, created_at) \
                 VALUES (10, 'send_at', '2026-12-01T08:00:00Z', 'pending', 5)",
        )
        .await;
        exec(s, "INSERT INTO sends (campaign_id, run_id, contact_id, email, state, created_at, updated_at) \
                 SELECT 10, id, 1, 'a@example.org', 'pending', 5, 5 FROM campaign_runs WHERE occurrence <> 'manual'").await;
        // The same occurrence twice is refused.
        let again = cartero::dispatch!(s, pool => {
            sqlx::query("INSERT INTO campaign_runs (campaign_id, trigger, occurrence, state, created_at) \
                         VALUES (10, 'send_at', '2026-12-01T08:00:00Z', 'pending', 6)").execute(pool).await.map(|_| ())
        });
        assert!(again.is_err(), "one run per occurrence");
        let bad_state = cartero::dispatch!(s, pool => {
            sqlx::query("INSERT INTO campaign_runs (campaign_id, trigger, occurrence, state, created_at) \
                         VALUES (10, 'manual', 'x', 'lost', 6)").execute(pool).await.map(|_| ())
        });
        assert!(bad_state.is_err(), "run states are checked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn campaign_send_creates_then_resumes_the_manual_run() {
    for db in TestDb::all().await {
        let project = Project::new(&db, "");
        let out = project.import("email,first_name,city\na@example.org,A,X\nb@example.org,B,Y\n");
        assert!(out.status.success(), "{}", stderr(&out));
        project.ok(&["campaign", "send", "campaigns/c.toml"]);
        project.ok(&["campaign", "send", "campaigns/c.toml"]);
        let runs = rows(
            &db.store,
            "SELECT id, campaign_id, finished_at FROM campaign_runs",
        )
        .await;
        assert_eq!(
            runs.len(),
            1,
            "a second send resumes the same run: {runs:?}"
        );
        assert!(runs[0].2.is_some(), "the run finished");
        let sends = rows(&db.store, "SELECT id, campaign_id, run_id FROM sends").await;
        assert_eq!(sends.len(), 2);
        assert!(sends.iter().all(|r| r.2 == Some(runs[0].0)), "{sends:?}");
    }
}
