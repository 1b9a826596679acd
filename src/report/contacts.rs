//! The contact database over time: new contacts, confirmed double opt-ins,
//! unsubscribes, bounces and erasures per day, week or month; list sizes
//! now; the share of contacts hygiene flagged as risky. Reads the contacts,
//! the ledger and the status changes (their size is the contacts', not the
//! events').

use std::collections::BTreeMap;

use serde::Serialize;

use super::Result;
use crate::cli::report::Period;
use crate::dispatch;
use crate::domain::time::Millis;
use crate::report::output::{Table, pct};
use crate::store::Store;

const DAY: i64 = 86_400_000;

pub fn period_ms(p: Period) -> i64 {
    match p {
        Period::Day => DAY,
        Period::Week => 7 * DAY,
        Period::Month => 31 * DAY,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub new: i64,
    pub confirmed: i64,
    pub unsubscribed: i64,
    pub bounced: i64,
    pub complained: i64,
    pub erased: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ContactsReport {
    pub since: Millis,
    pub periods: BTreeMap<String, Row>,
    /// Subscribed contacts per list, now.
    pub lists: BTreeMap<String, i64>,
    pub contacts: i64,
    pub by_status: BTreeMap<String, i64>,
    /// Contacts with at least one hygiene flag (not erased).
    pub flagged: i64,
    pub flagged_share: Option<f64>,
    pub flags: BTreeMap<String, i64>,
}

fn key(day: i64, p: Period) -> String {
    let d = match p {
        Period::Week => day - (day - 4).rem_euclid(7),
        _ => day,
    };
    let t = crate::domain::time::to_rfc3339(d * DAY);
    match p {
        Period::Month => t.get(..7).unwrap_or("").to_string(),
        _ => t.get(..10).unwrap_or("").to_string(),
    }
}

pub async fn compute(store: &Store, period: Period, since: Millis) -> Result<ContactsReport> {
    let mut r = ContactsReport {
        since,
        ..Default::default()
    };
    let per_day = |sql: &'static str| async move {
        let rows: Vec<(i64, i64)> = dispatch!(store, pool => {
            sqlx::query_as(sql).bind(since).fetch_all(pool).await?
        });
        Ok::<_, super::ReportError>(rows)
    };
    let sets: [(&str, &'static str); 6] = [
        (
            "new",
            "SELECT created_at / 86400000, count(*) FROM contacts WHERE created_at >= $1 GROUP BY 1",
        ),
        (
            "confirmed",
            "SELECT occurred_at / 86400000, count(*) FROM consent_events WHERE occurred_at >= $1 \
                       AND action = 'grant' AND method = 'double-opt-in' GROUP BY 1",
        ),
        (
            "unsubscribed",
            "SELECT occurred_at / 86400000, count(*) FROM status_changes WHERE occurred_at >= $1 \
                          AND to_status = 'unsubscribed' GROUP BY 1",
        ),
        (
            "bounced",
            "SELECT occurred_at / 86400000, count(*) FROM status_changes WHERE occurred_at >= $1 \
                     AND to_status = 'bounced' GROUP BY 1",
        ),
        (
            "complained",
            "SELECT occurred_at / 86400000, count(*) FROM status_changes WHERE occurred_at >= $1 \
                        AND to_status = 'complained' GROUP BY 1",
        ),
        (
            "erased",
            "SELECT occurred_at / 86400000, count(*) FROM compliance_actions WHERE occurred_at >= $1 \
                    AND kind = 'erase' GROUP BY 1",
        ),
    ];
    for (what, sql) in sets {
        for (day, n) in per_day(sql).await? {
            let row = r.periods.entry(key(day, period)).or_default();
            match what {
                "new" => row.new += n,
                "confirmed" => row.confirmed += n,
                "unsubscribed" => row.unsubscribed += n,
                "bounced" => row.bounced += n,
                "complained" => row.complained += n,
                _ => row.erased += n,
            }
        }
    }
    let lists: Vec<(String, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT l.name, count(cl.contact_id) FROM lists l \
                        LEFT JOIN contact_lists cl ON cl.list_id = l.id AND cl.subscribed = 1 GROUP BY l.name")
            .fetch_all(pool).await?
    });
    r.lists = lists.into_iter().collect();
    let statuses: Vec<(String, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT status, count(*) FROM contacts GROUP BY status").fetch_all(pool).await?
    });
    r.contacts = statuses
        .iter()
        .filter(|s| s.0 != "erased")
        .map(|s| s.1)
        .sum();
    r.by_status = statuses.into_iter().collect();
    r.flagged = dispatch!(store, pool => {
        sqlx::query_scalar("SELECT count(DISTINCT f.contact_id) FROM contact_flags f \
                            JOIN contacts c ON c.id = f.contact_id WHERE c.status <> 'erased'")
            .fetch_one(pool).await?
    });
    r.flagged_share = super::rate(r.flagged, r.contacts);
    let flags: Vec<(String, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT flag, count(*) FROM contact_flags GROUP BY flag").fetch_all(pool).await?
    });
    r.flags = flags.into_iter().collect();
    Ok(r)
}

pub fn tables(r: &ContactsReport) -> Vec<Table> {
    let mut t = Table::new(
        "Contacts per period",
        &[
            "period",
            "new",
            "confirmed",
            "unsubscribed",
            "bounced",
            "complained",
            "erased",
        ],
    );
    for (p, row) in &r.periods {
        t.row(vec![
            p.clone(),
            row.new.to_string(),
            row.confirmed.to_string(),
            row.unsubscribed.to_string(),
            row.bounced.to_string(),
            row.complained.to_string(),
            row.erased.to_string(),
        ]);
    }
    let mut l = Table::new("List sizes (subscribed now)", &["list", "subscribed"]);
    for (name, n) in &r.lists {
        l.row(vec![name.clone(), n.to_string()]);
    }
    let mut s = Table::new("The database now", &["measure", "value"]);
    s.row(vec!["contacts (not erased)".into(), r.contacts.to_string()]);
    for (st, n) in &r.by_status {
        s.row(vec![format!("status {st}"), n.to_string()]);
    }
    s.row(vec![
        "flagged risky by hygiene".into(),
        r.flagged.to_string(),
    ]);
    s.row(vec!["risky share".into(), pct(r.flagged_share)]);
    for (f, n) in &r.flags {
        s.row(vec![format!("flag {f}"), n.to_string()]);
    }
    vec![t, l, s]
}

pub fn charts(r: &ContactsReport) -> Vec<String> {
    let labels: Vec<String> = r.periods.keys().cloned().collect();
    let col = |f: fn(&Row) -> i64| {
        r.periods
            .values()
            .map(|x| f(x) as f64)
            .collect::<Vec<f64>>()
    };
    vec![super::output::line_chart(
        "Contacts per period",
        &labels,
        &[
            ("new".into(), col(|x| x.new)),
            ("unsubscribed".into(), col(|x| x.unsubscribed)),
            ("bounced".into(), col(|x| x.bounced)),
            ("erased".into(), col(|x| x.erased)),
        ],
    )]
}

/// The report as one HTML page (`--format html`, and `/admin/reports`).
pub fn html(r: &ContactsReport) -> String {
    super::output::html_page("Contacts", &charts(r), &tables(r))
}
