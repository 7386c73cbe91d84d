//! Outgoing webhooks (issue 19): documents indexed or failed, negative feedback, budget soft
//! limits reached and answers needing review are posted to the endpoints of `[[webhooks]]` that
//! subscribe to them.
//!
//! Deliveries are written to a table first (`webhook_deliveries`) and sent by a background task,
//! so an event survives a restart and a slow endpoint never holds up a request. Each attempt is
//! signed: `Lore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
//! webhook's secret; receivers reject a timestamp older than five minutes and a `Lore-Delivery` id
//! they have seen (replay protection). A failed attempt (a network error or a non-2xx answer) is
//! retried with exponential backoff, or after `Retry-After` on 429 and 503, until `max_attempts`;
//! the log of deliveries is `GET /v1/webhooks/deliveries`.
//!
//! Several processes may send from one shared database: a sender claims one due delivery at a
//! time by moving its due time [`CLAIM_MS`] ahead (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so
//! no other sender takes it while it is attempted; a sender that dies mid-attempt leaves it due
//! again after that window. Delivery is thus at least once, which the `Lore-Delivery` id lets
//! receivers deduplicate.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lore_core::config::{Config, WebhookConfig};
use lore_db::{Database, Db, Dialect, Migration, Row, Schema, params};
use serde::Serialize;

use crate::state::AppState;

const SCHEMA: Schema = Schema {
    name: "webhooks",
    migrations: &[Migration {
        version: 1,
        sqlite: r#"
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    delivered_ms INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries(status, next_attempt_ms);
"#,
        postgres: r#"
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    delivered_ms BIGINT,
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_ms);
"#,
    }],
};

/// How long a claimed delivery is left to its sender before another may attempt it: longer
/// than one attempt (the HTTP client's timeout is 10 s).
pub const CLAIM_MS: i64 = 60_000;

/// Longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 3_600_000;

/// One delivery as the log shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub webhook: String,
    pub event: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub delivered_ms: Option<i64>,
    pub next_attempt_ms: Option<i64>,
}

struct Endpoint {
    config: WebhookConfig,
    secret: Vec<u8>,
}

pub struct Webhooks {
    endpoints: Vec<Endpoint>,
    db: Db,
    due: Arc<tokio::sync::Notify>,
    http: reqwest::Client,
}

impl Webhooks {
    /// The configured webhooks, with their secrets read now (a missing one is an error naming
    /// where it was looked for), and their deliveries in the application database.
    pub fn open_in(config: &Config, database: &Database) -> Result<Self, lore_core::Error> {
        let mut endpoints = Vec::new();
        for webhook in &config.webhooks {
            let secret = webhook.secret()?;
            endpoints.push(Endpoint { config: webhook.clone(), secret });
        }
        let db = database.store(&SCHEMA)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| lore_core::Error::Config(format!("webhooks: {e}")))?;
        Ok(Webhooks { endpoints, db, due: Arc::default(), http })
    }

    /// Queues `event` with `data` for every webhook subscribed to it. Failures are logged: an
    /// event must never fail the request that caused it.
    pub fn emit(&self, event: &str, data: serde_json::Value) {
        let now = lore_usage::now_ms();
        for endpoint in self.endpoints.iter().filter(|e| e.config.events.iter().any(|x| x == event)) {
            let id = format!("whd_{}", lore_usage::new_id());
            let payload = serde_json::json!({
                "id": id, "event": event, "created_at": lore_core::db::rfc3339(now / 1000), "data": data,
            });
            let written = self.db.execute(
                "INSERT INTO webhook_deliveries (id, webhook, event, payload, status, attempts, next_attempt_ms, \
                 created_ms) VALUES (?1, ?2, ?3, ?4, 'pending', 0, ?5, ?5)",
                params![id, endpoint.config.id.as_str(), event, payload.to_string(), now],
            );
            if let Err(error) = written {
                tracing::error!(%error, webhook = %endpoint.config.id, event, "cannot queue a webhook delivery");
            }
        }
        self.due.notify_one();
    }

    /// The log, newest first.
    pub fn deliveries(
        &self,
        webhook: Option<&str>,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, lore_db::Error> {
        // Deliveries made in the same millisecond keep the order they were made in.
        let tiebreak = match self.db.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        };
        let rows = self.db.query(
            &format!(
                "SELECT id, webhook, event, status, attempts, last_status, last_error, created_ms, delivered_ms, \
                 next_attempt_ms FROM webhook_deliveries WHERE (CAST(?1 AS TEXT) IS NULL OR webhook = ?1) \
                 AND (CAST(?2 AS TEXT) IS NULL OR status = ?2) ORDER BY created_ms DESC, {tiebreak} DESC LIMIT ?3"
            ),
            params![webhook, status, limit],
        )?;
        rows.iter().map(row_to_delivery).collect()
    }

    /// Sends a delivery again now (a failed one gets a fresh round of attempts).
    pub fn retry(&self, id: &str) -> Result<bool, lore_db::Error> {
        let changed = self.db.execute(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_ms = ?2 \
             WHERE id = ?1 AND status != 'delivered'",
            params![id, lore_usage::now_ms()],
        )?;
        self.due.notify_one();
        Ok(changed > 0)
    }

    /// Takes the delivery due first, if any, for [`CLAIM_MS`]: its due time moves ahead by
    /// that much, so no other sender attempts it meanwhile.
    fn claim_due(&self, now: i64) -> Result<Option<Claimed>, lore_db::Error> {
        let skip_locked = match self.db.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let row = self.db.query_opt(
            &format!(
                "UPDATE webhook_deliveries SET next_attempt_ms = ?2 WHERE id = (SELECT id FROM webhook_deliveries \
                 WHERE status = 'pending' AND next_attempt_ms <= ?1 ORDER BY next_attempt_ms LIMIT 1{skip_locked}) \
                 RETURNING id, webhook, event, payload, attempts"
            ),
            params![now, now + CLAIM_MS],
        )?;
        row.map(|r| {
            Ok(Claimed { id: r.get(0)?, webhook: r.get(1)?, event: r.get(2)?, payload: r.get(3)?, attempts: r.get(4)? })
        })
        .transpose()
    }

    pub fn configured(&self) -> Vec<&WebhookConfig> {
        self.endpoints.iter().map(|e| &e.config).collect()
    }

    /// Runs the deliveries that are due until `state` is the last holder.
    pub fn spawn_sender(state: &Arc<AppState>) {
        if state.webhooks.endpoints.is_empty() {
            return;
        }
        let state = Arc::downgrade(state);
        tokio::spawn(async move {
            loop {
                let Some(state) = state.upgrade() else { break };
                let webhooks = &state.webhooks;
                let wait = match webhooks.send_due().await {
                    Ok(wait) => wait,
                    Err(error) => {
                        tracing::error!(%error, "webhooks: cannot read the deliveries");
                        Duration::from_secs(5)
                    }
                };
                // Not holding the state while waiting, so the server can shut down.
                let due = webhooks.due.clone();
                drop(state);
                let notified = due.notified();
                tokio::select! {
                    () = notified => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        });
    }

    /// Attempts every due delivery once; returns how long until the next one is due.
    async fn send_due(&self) -> Result<Duration, lore_db::Error> {
        let started = lore_usage::now_ms();
        // Deliveries that fall due while these are sent wait for the next round.
        while let Some(Claimed { id, webhook, event, payload, attempts }) = self.claim_due(started)? {
            let Some(endpoint) = self.endpoints.iter().find(|e| e.config.id == webhook) else {
                self.db.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', last_error = 'the webhook is no longer configured' \
                     WHERE id = ?1",
                    params![id],
                )?;
                continue;
            };
            let outcome = self.attempt(endpoint, &id, &event, &payload).await;
            let attempts = attempts + 1;
            let now = lore_usage::now_ms();
            match outcome {
                Ok(()) => {
                    self.db.execute(
                        "UPDATE webhook_deliveries SET status = 'delivered', attempts = ?2, last_status = 200, \
                         last_error = NULL, delivered_ms = ?3 WHERE id = ?1",
                        params![id, attempts, now],
                    )?;
                }
                Err(failure) => {
                    let given_up = attempts >= endpoint.config.max_attempts;
                    let backoff = endpoint
                        .config
                        .initial_backoff_ms
                        .saturating_mul(1 << (attempts - 1).min(20))
                        .min(MAX_BACKOFF_MS);
                    let delay = failure.retry_after_ms.unwrap_or(backoff);
                    tracing::warn!(webhook = %webhook, delivery = %id, attempts, error = %failure.message, "webhook delivery failed");
                    self.db.execute(
                        "UPDATE webhook_deliveries SET status = ?2, attempts = ?3, last_status = ?4, last_error = ?5, \
                         next_attempt_ms = ?6 WHERE id = ?1",
                        params![
                            id,
                            if given_up { "failed" } else { "pending" },
                            attempts,
                            failure.status,
                            failure.message,
                            now + delay as i64
                        ],
                    )?;
                }
            }
        }
        let next: Option<i64> = self
            .db
            .query_opt("SELECT MIN(next_attempt_ms) FROM webhook_deliveries WHERE status = 'pending'", params![])?
            .map(|r| r.get(0))
            .transpose()?
            .flatten();
        Ok(match next {
            Some(at) => Duration::from_millis(u64::try_from(at - lore_usage::now_ms()).unwrap_or(0).max(10)),
            None => Duration::from_secs(60),
        })
    }

    async fn attempt(&self, endpoint: &Endpoint, id: &str, event: &str, payload: &str) -> Result<(), Failure> {
        let timestamp = lore_core::db::now();
        let signature = sign(&endpoint.secret, timestamp, payload);
        let response = self
            .http
            .post(&endpoint.config.url)
            .header("content-type", "application/json")
            .header("lore-event", event)
            .header("lore-delivery", id)
            .header("lore-signature", format!("t={timestamp},v1={signature}"))
            .body(payload.to_owned())
            .send()
            .await
            .map_err(|e| Failure { status: None, message: e.to_string(), retry_after_ms: None })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after_ms = (status.as_u16() == 429 || status.as_u16() == 503)
            .then(|| response.headers().get("retry-after")?.to_str().ok()?.trim().parse::<u64>().ok())
            .flatten()
            .map(|secs| secs.min(MAX_BACKOFF_MS / 1000) * 1000);
        Err(Failure { status: Some(status.as_u16()), message: format!("answered {status}"), retry_after_ms })
    }
}

/// A delivery taken by [`Webhooks::claim_due`].
struct Claimed {
    id: String,
    webhook: String,
    event: String,
    payload: String,
    attempts: u32,
}

struct Failure {
    status: Option<u16>,
    message: String,
    retry_after_ms: Option<u64>,
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"`: what `Lore-Signature`'s `v1` carries.
fn row_to_delivery(r: &Row) -> Result<Delivery, lore_db::Error> {
    let status: String = r.get(3)?;
    let next: i64 = r.get(9)?;
    Ok(Delivery {
        id: r.get(0)?,
        webhook: r.get(1)?,
        event: r.get(2)?,
        next_attempt_ms: (status == "pending").then_some(next),
        status,
        attempts: r.get(4)?,
        last_status: r.get::<Option<u32>>(5)?.and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(6)?,
        created_ms: r.get(7)?,
        delivered_ms: r.get(8)?,
    })
}

pub fn sign(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(webhooks: &Webhooks, id: &str, due_ms: i64) {
        webhooks
            .db
            .execute(
                "INSERT INTO webhook_deliveries (id, webhook, event, payload, status, attempts, next_attempt_ms, \
                 created_ms) VALUES (?1, 'crm', 'document.indexed', '{}', 'pending', 0, ?2, ?2)",
                params![id, due_ms],
            )
            .unwrap();
    }

    #[test]
    fn senders_sharing_a_database_claim_each_due_delivery_once_until_the_claim_lapses() {
        lore_db::testing::on_both(
            "senders_sharing_a_database_claim_each_due_delivery_once_until_the_claim_lapses",
            |database| {
                let config = Config::default();
                let first = Webhooks::open_in(&config, database).unwrap();
                let second = Webhooks::open_in(&config, database).unwrap();
                let now = lore_usage::now_ms();
                for i in 0..40 {
                    queue(&first, &format!("whd_{i:02}"), now - 1000 + i);
                }
                queue(&first, "whd_later", now + 5_000);
                // Two senders drain the due deliveries at once: each is claimed by one of them.
                let drain = |webhooks: &Webhooks| {
                    let mut claimed = Vec::new();
                    while let Some(delivery) = webhooks.claim_due(now).unwrap() {
                        claimed.push(delivery.id);
                    }
                    claimed
                };
                let (a, b) = std::thread::scope(|s| {
                    let a = s.spawn(|| drain(&first));
                    let b = s.spawn(|| drain(&second));
                    (a.join().unwrap(), b.join().unwrap())
                });
                let mut all: Vec<String> = a.iter().chain(&b).cloned().collect();
                all.sort();
                let expected: Vec<String> = (0..40).map(|i| format!("whd_{i:02}")).collect();
                assert_eq!(all, expected, "every due delivery claimed exactly once, the later one not at all");
                // A sender that died mid-attempt: its claims lapse and the deliveries are due again.
                assert!(second.claim_due(now + CLAIM_MS - 1).unwrap().is_some_and(|d| d.id == "whd_later"));
                let again = first.claim_due(now + CLAIM_MS + 1).unwrap().unwrap();
                assert_eq!(again.id, "whd_00");
                let log = first.deliveries(None, Some("pending"), 100).unwrap();
                assert_eq!(log.len(), 41);
                assert_eq!(first.deliveries(Some("nope"), None, 100).unwrap().len(), 0);
                assert!(first.retry("whd_01").unwrap());
            },
        );
    }
}
