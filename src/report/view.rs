//! The campaign report's tables and its HTML page: what `cartero report
//! campaign` prints and what `/admin/reports` serves, from one place so
//! the two never differ. Renders a loaded [`CampaignReport`]; reads nothing.

use super::campaign::{CampaignReport, Delivery};
use super::output::{self, Table, pct};
use crate::cli::report::By;

fn n(v: i64) -> String {
    v.to_string()
}

fn delivery_table(
    title: &str,
    key: &str,
    rows: &std::collections::BTreeMap<String, Delivery>,
) -> Table {
    let mut t = Table::new(
        title,
        &[
            key,
            "recipients",
            "sent",
            "deferred",
            "failed",
            "skipped",
            "bounce_hard",
            "bounce_soft",
            "complaints",
            "unsubscribes",
            "bounce_rate",
            "complaint_rate",
        ],
    );
    let mut sorted: Vec<_> = rows.iter().collect();
    sorted.sort_by(|a, b| b.1.recipients.cmp(&a.1.recipients).then(a.0.cmp(b.0)));
    for (k, d) in sorted {
        t.row(vec![
            k.clone(),
            n(d.recipients),
            n(d.sent),
            n(d.deferred),
            n(d.failed),
            n(d.skipped),
            n(d.bounce_hard),
            n(d.bounce_soft),
            n(d.complaints),
            n(d.unsubscribes),
            pct(crate::report::rate(d.bounce_hard + d.bounce_soft, d.sent)),
            pct(crate::report::rate(d.complaints, d.sent)),
        ]);
    }
    t
}

/// The summary: one metric a row.
pub fn summary_table(r: &CampaignReport) -> Table {
    let mut t = Table::new(
        &format!("Campaign {} ({})", r.name, r.slug),
        &["metric", "value"],
    );
    let mut add = |k: &str, v: String| t.row(vec![k.into(), v]);
    add("recipients", n(r.recipients));
    add("skipped", n(r.skipped));
    for (reason, c) in &r.skipped_by_reason {
        add(&format!("skipped: {reason}"), n(*c));
    }
    add("pending", n(r.pending));
    add("sent", n(r.sent));
    add("delivered", n(r.delivered));
    add("deferred", n(r.deferred));
    add("failed", n(r.failed));
    add("bounced", n(r.bounced));
    add("bounced hard", n(r.bounced_hard));
    add("bounced soft", n(r.bounced_soft));
    for (reason, c) in &r.bounce_reasons {
        add(&format!("bounce events {reason}"), n(*c));
    }
    add("opens (events, human)", n(r.opens.total_human));
    add("opens (events, machine)", n(r.opens.total_machine));
    add("unique opens", n(r.opens.unique));
    add("unique opens (human)", n(r.opens.unique_human));
    add("unique opens (machine)", n(r.opens.unique_machine));
    add("clicks (events, human)", n(r.clicks.total_human));
    add("clicks (events, scanner)", n(r.clicks.total_machine));
    add("unique clicks", n(r.clicks.unique));
    add("unique clicks (human)", n(r.clicks.unique_human));
    add("unique clicks (scanner)", n(r.clicks.unique_machine));
    add("open rate", pct(r.open_rate));
    add("click-through rate", pct(r.click_through_rate));
    add("click-to-open rate", pct(r.click_to_open_rate));
    add("unsubscribes", n(r.unsubscribes));
    add("unsubscribe rate", pct(r.unsubscribe_rate));
    add("complaints", n(r.complaints));
    add("complaint rate", pct(r.complaint_rate));
    add("bounce rate", pct(r.bounce_rate));
    add("conversions", n(r.conversions.conversions));
    add("conversion rate", pct(r.conversion_rate));
    let cur = r.conversions.currency.clone().unwrap_or_default();
    add(
        "revenue",
        format!("{:.2} {cur}", r.conversions.revenue_minor as f64 / 100.0)
            .trim()
            .to_string(),
    );
    add(
        "revenue per recipient",
        r.revenue_per_recipient_minor
            .map(|v| format!("{:.4} {cur}", v / 100.0).trim().to_string())
            .unwrap_or_else(|| "-".into()),
    );
    add(
        "return on cost",
        r.return_on_cost
            .map(|v| format!("{v:.2}"))
            .unwrap_or_else(|| "- (no cost configured)".into()),
    );
    t
}

pub fn by_table(r: &CampaignReport, by: By) -> Table {
    match by {
        By::Domain => delivery_table("By recipient domain", "domain", &r.by_domain),
        By::Provider => delivery_table("By mailbox provider", "provider", &r.by_provider),
        By::Link => {
            let mut t = Table::new(
                "Clicks per link",
                &[
                    "url",
                    "unique_human",
                    "clicks_human",
                    "unique_scanner",
                    "clicks_scanner",
                ],
            );
            for l in &r.links {
                t.row(vec![
                    l.url.clone(),
                    n(l.unique_human),
                    n(l.clicks_human),
                    n(l.unique_machine),
                    n(l.clicks_machine),
                ]);
            }
            t
        }
        By::Hour => {
            let mut t = Table::new(
                "Opens and clicks by hour after the send",
                &[
                    "hour",
                    "opens_human",
                    "opens_machine",
                    "clicks_human",
                    "clicks_scanner",
                ],
            );
            for p in &r.curve {
                t.row(vec![
                    n(p.hour),
                    n(p.opens_human),
                    n(p.opens_machine),
                    n(p.clicks_human),
                    n(p.clicks_machine),
                ]);
            }
            t
        }
        By::Day | By::Segment | By::Variant => {
            let kinds: std::collections::BTreeSet<&String> =
                r.by_day.values().flat_map(|m| m.keys()).collect();
            let mut cols = vec!["day"];
            cols.extend(kinds.iter().map(|k| k.as_str()));
            let mut t = Table::new("Events by day (UTC)", &cols);
            for (day, m) in &r.by_day {
                let mut row = vec![day.clone()];
                row.extend(kinds.iter().map(|k| n(m.get(*k).copied().unwrap_or(0))));
                t.row(row);
            }
            t
        }
    }
}

/// The campaign's HTML page (`report campaign --format html`): the curve and
/// the funnel as SVG, the summary, then the breakdowns (only `by`'s when
/// given).
pub fn campaign_html(r: &CampaignReport, by: Option<By>) -> String {
    let mut tables = vec![summary_table(r)];
    for b in [By::Provider, By::Domain, By::Link, By::Hour, By::Day] {
        if by.is_none() || by == Some(b) {
            tables.push(by_table(r, b));
        }
    }
    let labels: Vec<String> = r.curve.iter().map(|p| format!("+{}h", p.hour)).collect();
    let series = vec![
        (
            "opens (human)".to_string(),
            r.curve.iter().map(|p| p.opens_human as f64).collect(),
        ),
        (
            "opens (machine)".to_string(),
            r.curve.iter().map(|p| p.opens_machine as f64).collect(),
        ),
        (
            "clicks (human)".to_string(),
            r.curve.iter().map(|p| p.clicks_human as f64).collect(),
        ),
        (
            "clicks (scanner)".to_string(),
            r.curve.iter().map(|p| p.clicks_machine as f64).collect(),
        ),
    ];
    let funnel = vec![
        ("recipients".to_string(), r.recipients as f64),
        ("sent".to_string(), r.sent as f64),
        ("delivered".to_string(), r.delivered as f64),
        ("opened".to_string(), r.opens.unique_human as f64),
        ("clicked".to_string(), r.clicks.unique_human as f64),
        ("converted".to_string(), r.conversions.conversions as f64),
    ];
    let charts = vec![
        output::line_chart(
            "Opens and clicks over the hours after the send",
            &labels,
            &series,
        ),
        output::bar_chart("From sent to converted", &funnel),
    ];
    output::html_page(&format!("Campaign {}", r.name), &charts, &tables)
}
