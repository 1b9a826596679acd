//! Reports: a campaign's figures, KPIs per period, the contact database
//! over time; as terminal tables, CSV, JSON and one self-contained HTML
//! file. Reports read the rollups of migrations 0015 and 0023
//! (`report_*`, kept by triggers as events and sends are written), never a
//! scan of every raw event; `rollup::rebuild` recomputes them from the raw
//! rows. Nothing here writes anything but the rollups. docs/REPORTS.md says
//! how every figure is computed.

pub mod campaign;
pub mod contacts;
pub mod kpis;
pub mod output;
pub mod provider;
pub mod rollup;
pub mod view;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no campaign named {0:?} (give its slug or its name; `cartero campaign list` shows them)"
    )]
    NoCampaign(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{path}:{line}:{col}: {message}")]
    Kpis {
        path: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for ReportError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Sql(e))
    }
}

pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// `num / den`, or `None` when there is nothing to divide by.
pub fn rate(num: i64, den: i64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Conversions of a campaign: count, value in minor units, currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Conversions {
    pub conversions: i64,
    /// Sum of the conversions' values, in minor units (cents).
    pub revenue_minor: i64,
    pub currency: Option<String>,
}

/// A campaign's conversions from the events API (`conversions`, attributed
/// to the campaign by the contact's last click within its window). Revenue
/// is summed in the currency that carries the most value; conversions in
/// other currencies count as conversions but not as revenue (no exchange
/// rates are guessed), and the report names the currency it used.
pub async fn conversions(store: &crate::store::Store, campaign_id: i64) -> Result<Conversions> {
    let rows: Vec<(String, i64, i64)> = crate::dispatch!(store, pool => {
        sqlx::query_as(
            "SELECT currency, COUNT(*), CAST(COALESCE(SUM(value_minor), 0) AS BIGINT) \
             FROM conversions WHERE campaign_id = $1 GROUP BY currency ORDER BY 3 DESC, 1",
        )
        .bind(campaign_id)
        .fetch_all(pool)
        .await?
    });
    Ok(Conversions {
        conversions: rows.iter().map(|r| r.1).sum(),
        revenue_minor: rows.first().map_or(0, |r| r.2),
        currency: rows.first().map(|r| r.0.clone()),
    })
}
