//! Usage metering and what is built on it: one [`UsageEvent`] per search, chat, upload and
//! feedback, written off the request path in batches to an append-only table with daily
//! rollups (`store`); analytics over them (`analytics`); budgets with reservations so
//! concurrent requests cannot overrun them (`budgets`); token-bucket rate limits (`limits`);
//! question categories by nearest example (`categories`); and knowledge gaps, abstained or
//! down-voted questions clustered by embedding similarity (`gaps`).
//!
//! A leaf crate: it takes vectors as slices and times as Unix seconds, and knows nothing of
//! models, indexes or HTTP. Times are UTC; days start at midnight UTC, weeks on Monday.

pub mod analytics;
pub mod budgets;
pub mod categories;
pub mod config;
pub mod gaps;
pub mod limits;
pub mod store;
pub mod synthetic;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use config::{CategoryConfig, Price, RateLimit, RateLimitConfig, RoiConfig, UsageConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("usage database: {0}")]
    Database(#[from] lore_db::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("usage store: {0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Runs `work` in one transaction of `db` (see [`lore_db::Db::transaction`]), keeping this
/// crate's errors as they are: committed when it returns `Ok`, rolled back otherwise.
pub(crate) fn in_transaction<R: Send>(
    db: &lore_db::Db,
    work: impl FnOnce(&mut lore_db::Tx<'_>) -> Result<R> + Send,
) -> Result<R> {
    let mut failure = None;
    let outcome = db.transaction(|tx| {
        work(tx).map_err(|error| match error {
            Error::Database(error) => error,
            other => {
                let message = other.to_string();
                failure = Some(other);
                lore_db::Error::Other(message)
            }
        })
    });
    outcome.map_err(|error| failure.take().unwrap_or(Error::Database(error)))
}

/// What was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Search,
    Chat,
    /// `POST /v1/chat` with `stream: true`.
    ChatStream,
    Upload,
    Feedback,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] =
        [Endpoint::Search, Endpoint::Chat, Endpoint::ChatStream, Endpoint::Upload, Endpoint::Feedback];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Search => "search",
            Endpoint::Chat => "chat",
            Endpoint::ChatStream => "chat_stream",
            Endpoint::Upload => "upload",
            Endpoint::Feedback => "feedback",
        }
    }

    pub fn parse(text: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == text)
    }

    /// A question answered (or refused) by the chat service.
    pub fn is_chat(self) -> bool {
        matches!(self, Endpoint::Chat | Endpoint::ChatStream)
    }
}

/// What came of a request. Chats: `generated`, `extracted`, `no_answer`, `refused` (a use
/// policy), `verified` (a verified answer); any endpoint: `budget_exceeded`, `rate_limited`,
/// `error`; searches `results`, uploads `queued` or `duplicate`, feedback `up` or `down` (a
/// person's first vote on an answer; voting again is a `revote`, so thumbs counts are not
/// inflated). New kinds go at the end: the rollups store counts in this order.
pub const KINDS: [&str; 14] = [
    "generated",
    "extracted",
    "no_answer",
    "refused",
    "verified",
    "budget_exceeded",
    "rate_limited",
    "error",
    "results",
    "queued",
    "duplicate",
    "up",
    "down",
    "revote",
];

/// One metered request. Holds no question text and no document text: who, what, how it went,
/// what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// Random, unique (32 hex digits).
    pub id: String,
    /// Unix time in milliseconds.
    pub time_ms: i64,
    pub endpoint: Endpoint,
    pub user: String,
    pub role: String,
    pub departments: Vec<String>,
    /// `api_key`, `sso`, `embed_token` or `on_behalf`.
    pub credential: String,
    /// The API key (or the public key behind a visitor token).
    pub key_id: Option<String>,
    /// Collections the request was limited to, or those its citations came from.
    pub collections: Vec<String>,
    /// One of [`KINDS`].
    pub kind: String,
    /// HTTP status answered.
    pub status: u16,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub prompt_version: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// In [`UsageConfig::currency`], from the price table.
    pub cost: f64,
    /// Whole request, milliseconds.
    pub latency_ms: f64,
    /// Per stage (`embed`, `bm25`, `dense`, `fusion`, `generation`), milliseconds.
    pub stages: BTreeMap<String, f64>,
    /// `en`, `es`.
    pub lang: Option<String>,
    /// Question category (`other` under the similarity floor).
    pub category: Option<String>,
    pub conversation_id: Option<String>,
    pub message_id: Option<i64>,
    /// Budgets past their soft limit when the request was admitted (ids).
    pub budget_warnings: Vec<String>,
    /// Personal data and secrets kept from model providers, per kind: counts, never values.
    pub dlp: DlpCounts,
}

/// What data loss prevention did to a request's prompts, per kind of value (`email`, `iban`…).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlpCounts {
    /// Replaced by placeholders before the prompt left.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub redacted: BTreeMap<String, u64>,
    /// Kept a prompt from a provider that blocks.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub blocked: BTreeMap<String, u64>,
}

impl DlpCounts {
    pub fn is_empty(&self) -> bool {
        self.redacted.is_empty() && self.blocked.is_empty()
    }
}

impl UsageEvent {
    /// An event of `endpoint` now, with a fresh id; the caller fills in the rest.
    pub fn new(endpoint: Endpoint, user: &str, kind: &str) -> Self {
        UsageEvent {
            id: new_id(),
            time_ms: now_ms(),
            endpoint,
            user: user.to_owned(),
            role: String::new(),
            departments: Vec::new(),
            credential: String::new(),
            key_id: None,
            collections: Vec::new(),
            kind: kind.to_owned(),
            status: 200,
            model: None,
            provider: None,
            prompt_version: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
            latency_ms: 0.0,
            stages: BTreeMap::new(),
            lang: None,
            category: None,
            conversation_id: None,
            message_id: None,
            budget_warnings: Vec::new(),
            dlp: DlpCounts::default(),
        }
    }

    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Tokens and cost spent by one budget scope (`dim` is `department`, `key` or `user`) in
/// `[from_secs, to_secs)`: what a budget has used in its period. Implemented by
/// [`store::UsageStore`] from its rollups; budgets take it as a trait so they can be tested
/// alone.
pub trait SpendSource: Send + Sync {
    fn spend(&self, dim: &str, value: &str, from_secs: i64, to_secs: i64) -> Result<Spend>;
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    pub tokens: u64,
    pub cost: f64,
}

/// 32 random hex digits.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub const DAY_SECS: i64 = 86_400;

/// Midnight UTC of the day holding `secs`.
pub fn day_start(secs: i64) -> i64 {
    secs.div_euclid(DAY_SECS) * DAY_SECS
}

/// Monday 00:00 UTC of the ISO week holding `secs` (1970-01-01 was a Thursday).
pub fn week_start(secs: i64) -> i64 {
    let day = secs.div_euclid(DAY_SECS);
    (day - (day + 3).rem_euclid(7)) * DAY_SECS
}

/// The first of the month (UTC) holding `secs`, and the first of the next month.
pub fn month_bounds(secs: i64) -> (i64, i64) {
    let (year, month, _) = civil_from_days(secs.div_euclid(DAY_SECS));
    let start = days_from_civil(year, month, 1) * DAY_SECS;
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    (start, days_from_civil(next_year, next_month, 1) * DAY_SECS)
}

/// `YYYY-MM-DD` of the UTC day holding `secs`.
pub fn date_text(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(DAY_SECS));
    format!("{year:04}-{month:02}-{day:02}")
}

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's civil-from-days:
/// no date crate is needed for UTC). The catalog's RFC 3339 times use it too.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days from 1970-01-01 to a date (the inverse of [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_boundaries() {
        // 2026-11-30T10:00:00Z is a Monday.
        let t = 1_796_032_800;
        assert_eq!(day_start(t), 1_795_996_800);
        assert_eq!(week_start(t), 1_795_996_800);
        assert_eq!(week_start(t + 6 * DAY_SECS), 1_795_996_800);
        assert_eq!(week_start(t - DAY_SECS), 1_795_996_800 - 7 * DAY_SECS);
        // November 2026 → [2026-11-01, 2026-12-01).
        assert_eq!(month_bounds(t), (1_793_491_200, 1_796_083_200));
        // December → next January.
        assert_eq!(month_bounds(1_796_083_200 + 5).1, 1_798_761_600);
        assert_eq!(date_text(t), "2026-11-30");
        assert_eq!(date_text(1_798_761_600 - 1), "2026-12-31");
    }
}
