//! The frequency cap (`[frequency]`): at most `max_messages` campaign
//! messages per contact in `period_days`, across campaigns; a message over
//! the cap is skipped with the reason `frequency_cap`, transactional
//! campaigns neither count nor are capped, and messages older than the
//! period no longer count. Through the real binary, on both backends.

mod common;

use common::db::TestDb;
use common::project::{Project, stderr};

fn campaign(p: &Project, file: &str, name: &str, extra: &str) {
    p.write(
        &format!("campaigns/{file}"),
        &format!(
            "name = \"{name}\"\nsubject = \"{name}\"\nfrom = \"Shop <news@shop.example>\"\n\
             list = \"newsletter\"\n{extra}\n[template]\nhtml = \"c.html\"\n"
        ),
    );
}

fn send(p: &Project, file: &str) -> serde_json::Value {
    p.send_tally(&format!("campaigns/{file}"), &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_campaign_in_a_week_is_skipped_transactional_mail_is_not_and_old_mail_stops_counting()
 {
    for db in TestDb::all().await {
        let p = Project::new(&db, "[frequency]\nmax_messages = 2\nperiod_days = 7\n");
        let out = p.import(
            "email,first_name,city\na@example.org,A,X\nb@example.org,B,X\nc@example.org,C,X\n",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        for (file, name) in [
            ("one.toml", "One"),
            ("two.toml", "Two"),
            ("three.toml", "Three"),
        ] {
            campaign(&p, file, name, "");
        }
        campaign(&p, "receipt.toml", "Receipt", "transactional = true");
        campaign(&p, "four.toml", "Four", "");

        assert_eq!(send(&p, "one.toml")["accepted"], 3);
        assert_eq!(send(&p, "two.toml")["accepted"], 3);
        let third = send(&p, "three.toml");
        assert_eq!(third["accepted"], 0, "{third}");
        assert_eq!(third["skipped"]["frequency_cap"], 3, "{third}");
        let receipt = send(&p, "receipt.toml");
        assert_eq!(
            receipt["accepted"], 3,
            "transactional mail is not capped: {receipt}"
        );

        // A week and a day later for campaign one: only two counts now,
        // and the receipt never did.
        cartero::dispatch!(&db.store, pool => {
            sqlx::query(
                "UPDATE sends SET updated_at = updated_at - 8 * 86400000 \
                 WHERE campaign_id = (SELECT id FROM campaigns WHERE slug = 'one')",
            )
            .execute(pool)
            .await
            .unwrap();
        });
        let fourth = send(&p, "four.toml");
        assert_eq!(fourth["accepted"], 3, "{fourth}");

        // What the skipped rows say, and that they stay skipped.
        let reasons: Vec<(String, Option<String>)> = cartero::dispatch!(&db.store, pool => {
            sqlx::query_as(
                "SELECT s.state, s.skip_reason FROM sends s JOIN campaigns c ON c.id = s.campaign_id \
                 WHERE c.slug = 'three'",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        });
        assert_eq!(reasons.len(), 3);
        assert!(
            reasons
                .iter()
                .all(|(s, r)| s == "skipped" && r.as_deref() == Some("frequency_cap")),
            "{reasons:?}"
        );
        assert_eq!(
            send(&p, "three.toml")["accepted"],
            0,
            "a resend leaves them skipped"
        );
    }
}
