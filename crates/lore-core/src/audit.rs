//! The audit log: an append-only record of security-relevant events (sign-in failures, key
//! creation and revocation, uploads, deletes, ACL changes, admin actions, denied access).
//!
//! Append-only is enforced twice: the API has no way to change or remove an event, and
//! SQLite triggers abort any `UPDATE` or `DELETE` on the table. Each event also carries the
//! sha256 of its predecessor's hash and its own content, so an edit made behind SQLite's back
//! (with the triggers dropped) shows up in [`AuditLog::verify_chain`].

use std::path::Path;

use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::db;
use crate::error::Result;
use crate::types::sha256_hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Denied,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
    fn parse(text: &str) -> Outcome {
        match text {
            "ok" => Outcome::Ok,
            "denied" => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }
}

/// An event to record.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// Who: a user id, `key:<name>`, or `anonymous`.
    pub actor: String,
    pub role: Option<String>,
    /// `api_key`, `sso`, `embed_token`, `cli`, or `none`.
    pub auth: String,
    /// Dotted verb, e.g. `auth.failed`, `key.create`, `document.delete`, `access.denied`.
    pub action: String,
    pub target: Option<String>,
    pub outcome: Outcome,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub remote: Option<String>,
}

/// A recorded event: the event with its sequence number, time and chain hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Record {
    pub seq: i64,
    pub at: String,
    #[serde(flatten)]
    pub event: Event,
    pub hash: String,
}

const COLUMNS: &str = "seq, at, actor, role, auth, action, target, outcome, detail, remote, hash";

/// A row as stored: the record, plus the raw time and detail text the chain hash covers.
fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Record, i64, String)> {
    let at: i64 = r.get(1)?;
    let detail: String = r.get(8)?;
    let record = Record {
        seq: r.get(0)?,
        at: db::rfc3339(at),
        event: Event {
            actor: r.get(2)?,
            role: r.get(3)?,
            auth: r.get(4)?,
            action: r.get(5)?,
            target: r.get(6)?,
            outcome: Outcome::parse(&r.get::<_, String>(7)?),
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            remote: r.get(9)?,
        },
        hash: r.get(10)?,
    };
    Ok((record, at, detail))
}

/// Filters of [`AuditLog::query`]; all optional and AND-ed.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub actor: Option<String>,
    /// An exact action or a prefix ending in `.`, e.g. `document.`.
    pub action: Option<String>,
    pub outcome: Option<Outcome>,
    /// RFC 3339 time or date, inclusive.
    pub since: Option<String>,
    /// RFC 3339 time or date, exclusive.
    pub until: Option<String>,
    /// Events after this sequence number (for paging).
    pub after: Option<i64>,
    /// At most this many events (default 100, at most 1000).
    pub limit: Option<usize>,
}

pub struct AuditLog {
    db: db::Store,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT,
    auth TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    remote TEXT,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit_log(action, seq);
CREATE INDEX IF NOT EXISTS audit_by_actor ON audit_log(actor, seq);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#;

impl AuditLog {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(AuditLog { db: db::Store::open(path, SCHEMA)? })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.conn()
    }

    /// Appends an event. Failures are logged and returned; callers of security paths treat
    /// a failed audit write as an internal error rather than skipping it silently.
    pub fn record(&self, event: Event) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let previous: String =
            tx.query_row("SELECT COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), '')", [], |r| {
                r.get(0)
            })?;
        let at = db::now();
        let detail = event.detail.to_string();
        let hash = chain_hash(&previous, at, &event, &detail);
        tx.execute(
            "INSERT INTO audit_log (at, actor, role, auth, action, target, outcome, detail, remote, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                at,
                event.actor,
                event.role,
                event.auth,
                event.action,
                event.target,
                event.outcome.as_str(),
                detail,
                event.remote,
                hash
            ],
        )?;
        tx.commit()?;
        tracing::info!(actor = %event.actor, action = %event.action, outcome = event.outcome.as_str(), target = ?event.target, "audit");
        Ok(())
    }

    pub fn query(&self, query: &Query) -> Result<Vec<Record>> {
        let since = query.since.as_deref().map(parse_time).transpose()?;
        let until = query.until.as_deref().map(parse_time).transpose()?;
        let limit = query.limit.unwrap_or(100).clamp(1, 1000) as i64;
        let (action_exact, action_prefix) = match query.action.as_deref() {
            Some(a) if a.ends_with('.') => (None, Some(format!("{a}%"))),
            Some(a) => (Some(a.to_owned()), None),
            None => (None, None),
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM audit_log \
             WHERE seq > ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR action = ?3) \
             AND (?4 IS NULL OR action LIKE ?4) AND (?5 IS NULL OR outcome = ?5) \
             AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at < ?7) ORDER BY seq LIMIT ?8"
        ))?;
        let rows = stmt.query_map(
            params![
                query.after.unwrap_or(0),
                query.actor,
                action_exact,
                action_prefix,
                query.outcome.map(Outcome::as_str),
                since,
                until,
                limit
            ],
            |r| read_row(r).map(|(record, _, _)| record),
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Recomputes the hash chain; returns the first sequence number whose hash disagrees.
    pub fn verify_chain(&self) -> Result<Option<i64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        let mut previous = String::new();
        while let Some(row) = rows.next()? {
            let (record, at, detail) = read_row(row)?;
            if chain_hash(&previous, at, &record.event, &detail) != record.hash {
                return Ok(Some(record.seq));
            }
            previous = record.hash;
        }
        Ok(None)
    }
}

fn chain_hash(previous: &str, at: i64, event: &Event, detail: &str) -> String {
    let fields = [
        previous,
        &at.to_string(),
        &event.actor,
        event.role.as_deref().unwrap_or(""),
        &event.auth,
        &event.action,
        event.target.as_deref().unwrap_or(""),
        event.outcome.as_str(),
        detail,
        event.remote.as_deref().unwrap_or(""),
    ];
    sha256_hex(fields.join("\u{1f}").as_bytes())
}

fn parse_time(text: &str) -> Result<i64> {
    db::parse_rfc3339(text).ok_or_else(|| {
        crate::Error::InvalidInput(format!("invalid time {text:?}: use RFC 3339, e.g. 2026-11-26T13:00:00Z"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str, action: &str, outcome: Outcome) -> Event {
        Event {
            actor: actor.into(),
            role: Some("admin".into()),
            auth: "api_key".into(),
            action: action.into(),
            target: Some("t".into()),
            outcome,
            detail: serde_json::json!({"n": 1}),
            remote: None,
        }
    }

    #[test]
    fn append_only_filterable_and_chained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let log = AuditLog::open(&path).unwrap();
        log.record(event("alice", "key.create", Outcome::Ok)).unwrap();
        log.record(event("bob", "document.delete", Outcome::Denied)).unwrap();
        log.record(event("alice", "document.upload", Outcome::Ok)).unwrap();

        let all = log.query(&Query::default()).unwrap();
        assert_eq!(all.len(), 3);
        let docs = log.query(&Query { action: Some("document.".into()), ..Default::default() }).unwrap();
        assert_eq!(docs.len(), 2);
        let denied = log.query(&Query { outcome: Some(Outcome::Denied), ..Default::default() }).unwrap();
        assert_eq!(denied[0].event.actor, "bob");
        let alice = log.query(&Query { actor: Some("alice".into()), after: Some(1), ..Default::default() }).unwrap();
        assert_eq!(alice.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
        assert!(log.query(&Query { since: Some("last week".into()), ..Default::default() }).is_err());
        assert_eq!(log.verify_chain().unwrap(), None);

        let conn = db::open(&path).unwrap();
        let err = conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{err}");
        assert!(conn.execute("DELETE FROM audit_log", []).is_err());
        // Behind the triggers' back: the chain exposes the edit.
        conn.execute_batch("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'mallory' WHERE seq = 2;")
            .unwrap();
        assert_eq!(log.verify_chain().unwrap(), Some(2));
    }
}
