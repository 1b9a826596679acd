//! KPIs: a metric per week or month with a target and an alert threshold,
//! from `campaigns/kpis.toml` (checked with file:line:col errors) or the
//! deliverability defaults. Figures come from the rollups of the campaigns
//! that started in the period; deliverability KPIs can be split per
//! mailbox provider, side by side.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ReportError, Result, provider, rate};
use crate::cli::report::Period;
use crate::dispatch;
use crate::report::output::{Table, pct};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    BounceRate,
    ComplaintRate,
    UnsubscribeRate,
    DeliveryRate,
    OpenRate,
    ClickRate,
}

impl Metric {
    const ALL: [(&'static str, Metric); 6] = [
        ("bounce_rate", Metric::BounceRate),
        ("complaint_rate", Metric::ComplaintRate),
        ("unsubscribe_rate", Metric::UnsubscribeRate),
        ("delivery_rate", Metric::DeliveryRate),
        ("open_rate", Metric::OpenRate),
        ("click_rate", Metric::ClickRate),
    ];
    /// Whether a lower value is better.
    pub fn lower_is_better(self) -> bool {
        matches!(
            self,
            Self::BounceRate | Self::ComplaintRate | Self::UnsubscribeRate
        )
    }
    /// Whether the rollups can split it per mailbox provider.
    pub fn per_provider(self) -> bool {
        !matches!(self, Self::OpenRate | Self::ClickRate)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Kpi {
    pub name: String,
    pub metric: Metric,
    pub period: PeriodName,
    pub target: Option<f64>,
    pub alert: Option<f64>,
    /// Only this provider's recipients.
    pub provider: Option<String>,
    /// One column per provider.
    pub by_provider: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodName {
    Week,
    Month,
}

/// The deliverability KPIs every project has (docs/REPORTS.md).
pub fn defaults() -> Vec<Kpi> {
    let k = |name: &str, metric, target, alert| Kpi {
        name: name.into(),
        metric,
        period: PeriodName::Week,
        target: Some(target),
        alert: Some(alert),
        provider: None,
        by_provider: true,
    };
    vec![
        k("Bounce rate", Metric::BounceRate, 0.02, 0.05),
        // Alert above 0.1%; Gmail's bulk-sender limit is 0.3%.
        k("Complaint rate", Metric::ComplaintRate, 0.0005, 0.001),
        k("Unsubscribe rate", Metric::UnsubscribeRate, 0.005, 0.01),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    kpi: Vec<KpiToml>,
    /// Leave out the deliverability defaults.
    #[serde(default)]
    no_defaults: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KpiToml {
    name: String,
    metric: Spanned<String>,
    period: Option<Spanned<String>>,
    target: Option<Spanned<f64>>,
    alert: Option<Spanned<f64>>,
    provider: Option<Spanned<String>>,
    by: Option<Spanned<String>>,
}

fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Reads and checks a KPI file.
pub fn load_file(path: &Path) -> Result<Vec<Kpi>> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

pub fn parse(path: &str, text: &str) -> Result<Vec<Kpi>> {
    let err = |at: usize, message: String| {
        let (line, col) = line_col(text, at);
        ReportError::Kpis {
            path: path.to_string(),
            line,
            col,
            message,
        }
    };
    let file: FileToml = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        err(at, e.message().to_string())
    })?;
    let mut out = if file.no_defaults {
        Vec::new()
    } else {
        defaults()
    };
    for k in file.kpi {
        let metric = Metric::ALL
            .iter()
            .find(|(n, _)| *n == k.metric.get_ref())
            .map(|(_, m)| *m)
            .ok_or_else(|| {
                err(
                    k.metric.span().start,
                    format!(
                        "unknown metric {:?}; one of: {}",
                        k.metric.get_ref(),
                        Metric::ALL.map(|(n, _)| n).join(", ")
                    ),
                )
            })?;
        let period = match &k.period {
            None => PeriodName::Week,
            Some(p) => match p.get_ref().as_str() {
                "week" => PeriodName::Week,
                "month" => PeriodName::Month,
                other => {
                    return Err(err(
                        p.span().start,
                        format!("period {other:?}: week or month"),
                    ));
                }
            },
        };
        for v in [&k.target, &k.alert].into_iter().flatten() {
            if !(0.0..=1.0).contains(v.get_ref()) {
                return Err(err(
                    v.span().start,
                    format!(
                        "{} is not a rate between 0 and 1 (write 2% as 0.02)",
                        v.get_ref()
                    ),
                ));
            }
        }
        if let (Some(t), Some(a)) = (&k.target, &k.alert) {
            let wrong = if metric.lower_is_better() {
                a.get_ref() < t.get_ref()
            } else {
                a.get_ref() > t.get_ref()
            };
            if wrong {
                return Err(err(
                    a.span().start,
                    format!(
                        "the alert threshold must be {} than the target for {}",
                        if metric.lower_is_better() {
                            "higher"
                        } else {
                            "lower"
                        },
                        k.metric.get_ref()
                    ),
                ));
            }
        }
        let by_provider = match &k.by {
            None => false,
            Some(b) if b.get_ref() == "provider" => true,
            Some(b) => {
                return Err(err(
                    b.span().start,
                    format!(
                        "by = {:?}: only \"provider\" (segments are not split yet)",
                        b.get_ref()
                    ),
                ));
            }
        };
        if (by_provider || k.provider.is_some()) && !metric.per_provider() {
            let at =
                k.by.as_ref()
                    .map(|b| b.span().start)
                    .or(k.provider.as_ref().map(|p| p.span().start))
                    .unwrap_or(0);
            return Err(err(
                at,
                format!(
                    "{} cannot be split per provider (opens and clicks are not rolled up by domain)",
                    k.metric.get_ref()
                ),
            ));
        }
        out.push(Kpi {
            name: k.name,
            metric,
            period,
            target: k.target.map(|t| t.into_inner()),
            alert: k.alert.map(|t| t.into_inner()),
            provider: k.provider.map(|p| p.into_inner()),
            by_provider,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub period: String,
    pub numerator: i64,
    pub denominator: i64,
    pub value: Option<f64>,
    /// Change against the period before, in rate points.
    pub trend: Option<f64>,
    pub off_target: bool,
    pub alert: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KpiResult {
    pub name: String,
    pub metric: Metric,
    pub period: PeriodName,
    pub target: Option<f64>,
    pub alert_threshold: Option<f64>,
    /// `all` or the provider's name, side by side.
    pub series: BTreeMap<String, Vec<Point>>,
    /// The latest period of some series is past the alert threshold.
    pub alert: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KpiReport {
    pub kpis: Vec<KpiResult>,
}

/// Sums of one campaign and provider.
#[derive(Debug, Clone, Default)]
struct Sums {
    sent: i64,
    bounces: i64,
    complaints: i64,
    unsubscribes: i64,
    opens: i64,
    clicks: i64,
}

fn period_key(ms: i64, p: PeriodName) -> String {
    let t = crate::domain::time::to_rfc3339(ms);
    match p {
        PeriodName::Month => t.get(..7).unwrap_or("").to_string(),
        PeriodName::Week => {
            let day = ms.div_euclid(86_400_000);
            // 1970-01-01 was a Thursday: Monday is day 4 modulo 7.
            let monday = day - (day - 4).rem_euclid(7);
            let t = crate::domain::time::to_rfc3339(monday * 86_400_000);
            format!("w/c {}", t.get(..10).unwrap_or(""))
        }
    }
}

pub async fn compute(
    store: &Store,
    kpis: &[Kpi],
    period: Option<Period>,
    periods: usize,
) -> Result<KpiReport> {
    // Per campaign: when it started, its outcomes per domain, its uniques.
    let campaigns: Vec<(i64, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT id, COALESCE(started_at, created_at) FROM campaigns").fetch_all(pool).await?
    });
    let domains: Vec<(i64, String, String, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT campaign_id, domain, outcome, events FROM report_domains \
                        WHERE outcome IN ('accepted', 'bounce_hard', 'bounce_soft', 'complaint', 'unsubscribe')")
            .fetch_all(pool).await?
    });
    let uniques: Vec<(i64, String, i64)> = dispatch!(store, pool => {
        sqlx::query_as("SELECT campaign_id, kind, sends FROM report_uniques WHERE machine = 0 \
                        AND kind IN ('open', 'click')")
            .fetch_all(pool).await?
    });
    // (campaign, provider) -> sums; provider "all" holds the campaign total.
    let mut sums: BTreeMap<(i64, String), Sums> = BTreeMap::new();
    for (c, domain, outcome, n) in domains {
        for p in ["all", provider::of_domain(&domain)] {
            let s = sums.entry((c, p.to_string())).or_default();
            match outcome.as_str() {
                "accepted" => s.sent += n,
                "bounce_hard" | "bounce_soft" => s.bounces += n,
                "complaint" => s.complaints += n,
                _ => s.unsubscribes += n,
            }
        }
    }
    for (c, kind, n) in uniques {
        let s = sums.entry((c, "all".into())).or_default();
        if kind == "open" {
            s.opens += n
        } else {
            s.clicks += n
        }
    }
    let started: BTreeMap<i64, i64> = campaigns.into_iter().collect();
    let mut out = Vec::new();
    for k in kpis {
        let pname = match period {
            Some(Period::Month) => PeriodName::Month,
            Some(_) => PeriodName::Week,
            None => k.period,
        };
        // series label -> period -> (num, den)
        let mut acc: BTreeMap<String, BTreeMap<String, (i64, i64)>> = BTreeMap::new();
        for ((c, p), s) in &sums {
            let label = if p == "all" {
                if k.provider.is_some() {
                    continue;
                }
                "all".to_string()
            } else if k.provider.as_deref() == Some(p.as_str()) || k.by_provider {
                p.clone()
            } else {
                continue;
            };
            let Some(at) = started.get(c) else { continue };
            let (num, den) = match k.metric {
                Metric::BounceRate => (s.bounces, s.sent),
                Metric::ComplaintRate => (s.complaints, s.sent - s.bounces),
                Metric::UnsubscribeRate => (s.unsubscribes, s.sent - s.bounces),
                Metric::DeliveryRate => (s.sent - s.bounces, s.sent),
                Metric::OpenRate => (s.opens, s.sent - s.bounces),
                Metric::ClickRate => (s.clicks, s.sent - s.bounces),
            };
            let e = acc
                .entry(label)
                .or_default()
                .entry(period_key(*at, pname))
                .or_default();
            e.0 += num;
            e.1 += den.max(0);
        }
        let mut series = BTreeMap::new();
        let mut any_alert = false;
        for (label, per) in acc {
            let mut points: Vec<Point> = Vec::new();
            for (period, (num, den)) in per {
                let value = rate(num, den);
                let prev = points.last().and_then(|p| p.value);
                let past = |limit: Option<f64>| match (value, limit) {
                    (Some(v), Some(l)) => {
                        if k.metric.lower_is_better() {
                            v > l
                        } else {
                            v < l
                        }
                    }
                    _ => false,
                };
                points.push(Point {
                    period,
                    numerator: num,
                    denominator: den,
                    value,
                    trend: value.zip(prev).map(|(v, p)| v - p),
                    off_target: past(k.target),
                    alert: past(k.alert),
                });
            }
            let skip = points.len().saturating_sub(periods.max(1));
            points.drain(..skip);
            any_alert |= points.last().is_some_and(|p| p.alert);
            series.insert(label, points);
        }
        out.push(KpiResult {
            name: k.name.clone(),
            metric: k.metric,
            period: pname,
            target: k.target,
            alert_threshold: k.alert,
            series,
            alert: any_alert,
        });
    }
    Ok(KpiReport { kpis: out })
}

fn status(p: &Point) -> &'static str {
    if p.alert {
        "ALERT"
    } else if p.off_target {
        "off target"
    } else {
        "ok"
    }
}

fn trend(p: &Point) -> String {
    match p.trend {
        Some(t) if t > 0.0 => format!("↑{:.2}", t * 100.0),
        Some(t) if t < 0.0 => format!("↓{:.2}", -t * 100.0),
        Some(_) => "=".into(),
        None => "".into(),
    }
}

/// One table per KPI: periods down, series (all, then providers) across.
pub fn tables(r: &KpiReport) -> Vec<Table> {
    let mut out = Vec::new();
    for k in &r.kpis {
        let labels: Vec<&String> = k.series.keys().collect();
        let mut cols = vec!["period".to_string()];
        for l in &labels {
            cols.push(l.to_string());
            cols.push(format!("{l} trend"));
            cols.push(format!("{l} status"));
        }
        let mut t = Table {
            title: format!(
                "{} per {} (target {}, alert {})",
                k.name,
                if k.period == PeriodName::Week {
                    "week"
                } else {
                    "month"
                },
                pct(k.target),
                pct(k.alert_threshold)
            ),
            columns: cols,
            rows: Vec::new(),
        };
        let periods: std::collections::BTreeSet<&String> = k
            .series
            .values()
            .flat_map(|s| s.iter().map(|p| &p.period))
            .collect();
        for per in periods {
            let mut row = vec![per.clone()];
            for l in &labels {
                match k.series[*l].iter().find(|p| &p.period == per) {
                    Some(p) => row.extend([pct(p.value), trend(p), status(p).to_string()]),
                    None => row.extend(["-".to_string(), String::new(), String::new()]),
                }
            }
            t.rows.push(row);
        }
        out.push(t);
    }
    out
}

/// Every point as one CSV-friendly table.
pub fn flat(r: &KpiReport) -> Table {
    let mut t = Table::new(
        "KPIs",
        &[
            "kpi",
            "metric",
            "series",
            "period",
            "numerator",
            "denominator",
            "value",
            "trend",
            "target",
            "alert_threshold",
            "status",
        ],
    );
    for k in &r.kpis {
        for (label, points) in &k.series {
            for p in points {
                t.row(vec![
                    k.name.clone(),
                    serde_json::to_value(k.metric)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    label.clone(),
                    p.period.clone(),
                    p.numerator.to_string(),
                    p.denominator.to_string(),
                    p.value.map(|v| format!("{v:.6}")).unwrap_or_default(),
                    p.trend.map(|v| format!("{v:.6}")).unwrap_or_default(),
                    k.target.map(|v| v.to_string()).unwrap_or_default(),
                    k.alert_threshold.map(|v| v.to_string()).unwrap_or_default(),
                    status(p).into(),
                ]);
            }
        }
    }
    t
}

/// A trend chart per KPI, one line per series.
pub fn charts(r: &KpiReport) -> Vec<String> {
    r.kpis
        .iter()
        .map(|k| {
            let periods: Vec<String> = k
                .series
                .values()
                .flat_map(|s| s.iter().map(|p| p.period.clone()))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let series: Vec<(String, Vec<f64>)> = k
                .series
                .iter()
                .map(|(l, pts)| {
                    let v = periods
                        .iter()
                        .map(|per| {
                            pts.iter()
                                .find(|p| &p.period == per)
                                .and_then(|p| p.value)
                                .unwrap_or(0.0)
                                * 100.0
                        })
                        .collect();
                    (l.clone(), v)
                })
                .collect();
            super::output::line_chart(&format!("{} (%)", k.name), &periods, &series)
        })
        .collect()
}

/// The report as one HTML page (`--format html`, and `/admin/reports`).
pub fn html(r: &KpiReport) -> String {
    super::output::html_page("KPIs", &charts(r), &tables(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_line_and_column() {
        let text = "[[kpi]]\nname = \"Opens\"\nmetric = \"open_rat\"\n";
        let e = parse("kpis.toml", text).unwrap_err().to_string();
        assert!(
            e.starts_with("kpis.toml:3:10: unknown metric \"open_rat\""),
            "{e}"
        );
        let text = "[[kpi]]\nname = \"B\"\nmetric = \"bounce_rate\"\ntarget = 0.02\nalert = 0.01\n";
        let e = parse("kpis.toml", text).unwrap_err().to_string();
        assert!(
            e.starts_with("kpis.toml:5:9: the alert threshold must be higher"),
            "{e}"
        );
        let e = parse("kpis.toml", "[[kpi]]\nname = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("kpis.toml:2:8:"), "{e}");
        let ok = parse("k", "[[kpi]]\nname = \"C\"\nmetric = \"click_rate\"\nperiod = \"month\"\ntarget = 0.03\nalert = 0.01\n").unwrap();
        assert_eq!(ok.len(), 4);
    }
}
