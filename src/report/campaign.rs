//! One campaign's figures, read from the rollups (docs/REPORTS.md).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use super::{Conversions, ReportError, Result, provider, rate};
use crate::dispatch;
use crate::store::Store;

const HOUR: i64 = 3_600_000;

/// Human and machine counts of one kind of hit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Hits {
    /// Every event.
    pub total: i64,
    pub total_human: i64,
    pub total_machine: i64,
    /// Sends with at least one event (any, human, machine).
    pub unique: i64,
    pub unique_human: i64,
    pub unique_machine: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Link {
    pub url: String,
    pub clicks_human: i64,
    pub clicks_machine: i64,
    pub unique_human: i64,
    pub unique_machine: i64,
}

/// Opens and clicks in one hour after the send started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HourPoint {
    /// Hours since the campaign's first send (0: the first hour).
    pub hour: i64,
    pub opens_human: i64,
    pub opens_machine: i64,
    pub clicks_human: i64,
    pub clicks_machine: i64,
}

/// The delivery outcomes of one recipient domain or provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub recipients: i64,
    pub sent: i64,
    pub pending: i64,
    pub deferred: i64,
    pub failed: i64,
    pub skipped: i64,
    pub bounce_hard: i64,
    pub bounce_soft: i64,
    pub complaints: i64,
    pub unsubscribes: i64,
}

impl Delivery {
    fn add(&mut self, outcome: &str, n: i64) {
        match outcome {
            "recipients" => self.recipients += n,
            "accepted" => self.sent += n,
            "pending" | "sending" => self.pending += n,
            "deferred" => self.deferred += n,
            "failed" => self.failed += n,
            "skipped" => self.skipped += n,
            "bounce_hard" => self.bounce_hard += n,
            "bounce_soft" => self.bounce_soft += n,
            "complaint" => self.complaints += n,
            "unsubscribe" => self.unsubscribes += n,
            _ => {}
        }
    }
    fn merge(&mut self, o: &Delivery) {
        self.recipients += o.recipients;
        self.sent += o.sent;
        self.pending += o.pending;
        self.deferred += o.deferred;
        self.failed += o.failed;
        self.skipped += o.skipped;
        self.bounce_hard += o.bounce_hard;
        self.bounce_soft += o.bounce_soft;
        self.complaints += o.complaints;
        self.unsubscribes += o.unsubscribes;
    }
}

/// Every figure of a campaign (docs/REPORTS.md defines each).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CampaignReport {
    pub campaign_id: i64,
    pub slug: String,
    pub name: String,
    pub list: Option<String>,
    pub started_at: Option<i64>,
    pub recipients: i64,
    pub skipped: i64,
    pub skipped_by_reason: BTreeMap<String, i64>,
    /// Accepted by the receiving server.
    pub sent: i64,
    /// Sent, less the sent messages that bounced afterwards.
    pub delivered: i64,
    /// Waiting for a retry after a temporary failure.
    pub deferred: i64,
    /// Refused for good at the SMTP dialogue.
    pub failed: i64,
    /// Not tried yet (pending or being sent).
    pub pending: i64,
    /// Sends with a bounce report (hard or soft).
    pub bounced: i64,
    pub bounced_hard: i64,
    pub bounced_soft: i64,
    pub bounce_reasons: BTreeMap<String, i64>,
    pub opens: Hits,
    pub clicks: Hits,
    pub links: Vec<Link>,
    pub unsubscribes: i64,
    pub complaints: i64,
    pub conversions: Conversions,
    pub open_rate: Option<f64>,
    pub click_through_rate: Option<f64>,
    pub click_to_open_rate: Option<f64>,
    pub unsubscribe_rate: Option<f64>,
    pub complaint_rate: Option<f64>,
    pub bounce_rate: Option<f64>,
    pub conversion_rate: Option<f64>,
    pub revenue_per_recipient_minor: Option<f64>,
    /// Revenue less cost over cost; `None` while no cost is known.
    pub return_on_cost: Option<f64>,
    pub curve: Vec<HourPoint>,
    pub by_domain: BTreeMap<String, Delivery>,
    pub by_provider: BTreeMap<String, Delivery>,
    /// Events per day (UTC), by kind.
    pub by_day: BTreeMap<String, BTreeMap<String, i64>>,
}

/// A campaign by slug, else by name.
pub async fn find(
    store: &Store,
    name: &str,
) -> Result<(i64, String, String, Option<String>, Option<i64>)> {
    let sql = "SELECT id, slug, name, list_name, started_at FROM campaigns WHERE slug = $1 OR name = $1 \
               ORDER BY CASE WHEN slug = $1 THEN 0 ELSE 1 END, id LIMIT 1";
    let row = dispatch!(store, pool => {
        match sqlx::query(sql).bind(name).fetch_optional(pool).await? {
            Some(r) => Some((r.try_get("id")?, r.try_get("slug")?, r.try_get("name")?,
                             r.try_get("list_name")?, r.try_get("started_at")?)),
            None => None,
        }
    });
    row.ok_or_else(|| ReportError::NoCampaign(name.to_string()))
}

pub async fn load(store: &Store, name: &str) -> Result<CampaignReport> {
    let (id, slug, cname, list, started_at) = find(store, name).await?;
    let mut r = CampaignReport {
        campaign_id: id,
        slug,
        name: cname,
        list,
        started_at,
        ..Default::default()
    };

    let domains: Vec<(String, String, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT domain, outcome, events FROM report_domains WHERE campaign_id = $1")
            .bind(id).fetch_all(pool).await?
    });
    let mut total = Delivery::default();
    for (domain, outcome, n) in domains {
        r.by_domain.entry(domain).or_default().add(&outcome, n);
    }
    for (domain, d) in &r.by_domain {
        r.by_provider
            .entry(provider::of_domain(domain).to_string())
            .or_default()
            .merge(d);
        total.merge(d);
    }
    r.by_domain.retain(|_, d| *d != Delivery::default());
    r.recipients = total.recipients;
    r.sent = total.sent;
    r.deferred = total.deferred;
    r.failed = total.failed;
    r.skipped = total.skipped;
    r.pending = total.pending;

    let reasons: Vec<(String, String, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT kind, reason, events FROM report_reasons WHERE campaign_id = $1 AND events <> 0")
            .bind(id).fetch_all(pool).await?
    });
    for (kind, reason, n) in reasons {
        if kind == "skipped" {
            r.skipped_by_reason.insert(reason, n);
        } else {
            let k = if kind == "bounce_hard" {
                "hard"
            } else {
                "soft"
            };
            *r.bounce_reasons
                .entry(format!("{k}: {reason}"))
                .or_default() += n;
        }
    }

    let uniques: Vec<(String, i32, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT kind, machine, sends FROM report_uniques WHERE campaign_id = $1")
            .bind(id).fetch_all(pool).await?
    });
    let mut bounced_accepted = 0;
    for (kind, machine, n) in uniques {
        if machine == 2 {
            match kind.as_str() {
                "open" => r.opens.unique = n,
                "click" => r.clicks.unique = n,
                _ => {}
            }
            continue;
        }
        let hits = match kind.as_str() {
            "open" => &mut r.opens,
            "click" => &mut r.clicks,
            "bounce" => {
                r.bounced += n;
                continue;
            }
            "bounce_hard" => {
                r.bounced_hard += n;
                continue;
            }
            "bounce_soft" => {
                r.bounced_soft += n;
                continue;
            }
            "unsubscribe" => {
                r.unsubscribes += n;
                continue;
            }
            "complaint" => {
                r.complaints += n;
                continue;
            }
            "bounced_accepted" => {
                bounced_accepted += n;
                continue;
            }
            _ => continue,
        };
        if machine == 1 {
            hits.unique_machine = n;
        } else {
            hits.unique_human = n;
        }
    }
    // Accepted sends that bounced afterwards: a rollup row (migration
    // 0023), not a join of the campaign's bounced sends with `sends`.
    r.delivered = r.sent - bounced_accepted;

    let hourly: Vec<(String, i32, i64, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT kind, machine, hour_at, events FROM report_hourly WHERE campaign_id = $1 AND events <> 0")
            .bind(id).fetch_all(pool).await?
    });
    let first_hour = hourly
        .iter()
        .filter(|h| h.0 == "sent")
        .map(|h| h.2)
        .min()
        .or(started_at.map(|s| s / HOUR * HOUR))
        .or_else(|| hourly.iter().map(|h| h.2).min())
        .unwrap_or(0);
    let mut curve: BTreeMap<i64, HourPoint> = BTreeMap::new();
    for (kind, machine, hour_at, n) in &hourly {
        let day = crate::domain::time::to_rfc3339(*hour_at)
            .get(..10)
            .unwrap_or("")
            .to_string();
        *r.by_day
            .entry(day)
            .or_default()
            .entry(kind.clone())
            .or_default() += n;
        let hits = match kind.as_str() {
            "open" => &mut r.opens,
            "click" => &mut r.clicks,
            _ => continue,
        };
        hits.total += n;
        if *machine == 1 {
            hits.total_machine += n;
        } else {
            hits.total_human += n;
        }
        let hour = (hour_at - first_hour) / HOUR;
        let p = curve.entry(hour).or_insert(HourPoint {
            hour,
            ..Default::default()
        });
        match (kind.as_str(), *machine == 1) {
            ("open", false) => p.opens_human += n,
            ("open", true) => p.opens_machine += n,
            ("click", false) => p.clicks_human += n,
            (_, _) => p.clicks_machine += n,
        }
    }
    // Every hour from the first to the last with a hit (a quiet hour is a
    // zero, not a gap), at most 90 days of them.
    if let (Some(&first), Some(&last)) = (curve.keys().next(), curve.keys().next_back()) {
        for hour in first.max(0)..=last.min(first.max(0) + 24 * 90) {
            curve.entry(hour).or_insert(HourPoint {
                hour,
                ..Default::default()
            });
        }
    }
    r.curve = curve.into_values().collect();

    let links: Vec<(String, i32, i64, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT url, machine, sends, events FROM report_link_totals WHERE campaign_id = $1")
            .bind(id).fetch_all(pool).await?
    });
    let mut by_url: BTreeMap<String, Link> = BTreeMap::new();
    for (url, machine, unique, clicks) in links {
        let l = by_url.entry(url.clone()).or_insert(Link {
            url,
            ..Default::default()
        });
        if machine == 1 {
            l.unique_machine = unique;
            l.clicks_machine = clicks;
        } else {
            l.unique_human = unique;
            l.clicks_human = clicks;
        }
    }
    r.links = by_url.into_values().collect();
    r.links
        .sort_by(|a, b| b.unique_human.cmp(&a.unique_human).then(a.url.cmp(&b.url)));

    r.conversions = super::conversions(store, id).await?;
    r.open_rate = rate(r.opens.unique_human, r.delivered);
    r.click_through_rate = rate(r.clicks.unique_human, r.delivered);
    r.click_to_open_rate = rate(r.clicks.unique_human, r.opens.unique_human);
    r.unsubscribe_rate = rate(r.unsubscribes, r.delivered);
    r.complaint_rate = rate(r.complaints, r.delivered);
    r.bounce_rate = rate(r.bounced, r.sent);
    r.conversion_rate = rate(r.conversions.conversions, r.delivered);
    r.revenue_per_recipient_minor = rate(r.conversions.revenue_minor, r.recipients);
    r.return_on_cost = None;
    Ok(r)
}
