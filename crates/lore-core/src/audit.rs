//! The audit log: an append-only record of security-relevant events (sign-in failures, key
//! creation and revocation, uploads, deletes, ACL changes, admin actions, denied access).
//!
//! Append-only is enforced twice: the API has no way to change or remove an event, and
//! SQLite triggers abort any `UPDATE` or `DELETE` on the table. Each event also carries the
//! sha256 of its predecessor's hash and its own content, so an edit made behind SQLite's back
//! (with the triggers dropped) shows up in [`AuditLog::verify_chain`].
//!
//! A person's right to erasure meets the append-only log through pseudonyms: the `actor` column
//! (and so the chain hash) holds a random pseudonym per actor (`a:` and 16 hex digits), and the
//! table `audit_actors` maps each pseudonym to the actor. Reads show the actor; erasing a person
//! deletes their mapping row, after which their events show the pseudonym only and the chain,
//! which never covered the name, still verifies. A log written before pseudonyms is converted once
//! on open (after its chain verifies), re-chaining every event.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
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

const COLUMNS: &str = "l.seq, l.at, l.actor, l.role, l.auth, l.action, l.target, l.outcome, l.detail, l.remote, l.hash";

/// Columns read with the actor's name where it is still known (column 11).
const READ_COLUMNS: &str = "l.seq, l.at, l.actor, l.role, l.auth, l.action, l.target, l.outcome, l.detail, l.remote, \
     l.hash, m.actor FROM audit_log l LEFT JOIN audit_actors m ON m.pseudonym = l.actor";

/// A row as stored: the record (its actor as the chain covers it, the pseudonym), plus the raw
/// time and detail text the chain hash covers, and the actor's name unless erased.
fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Record, i64, String, Option<String>)> {
    let at: i64 = r.get(1)?;
    let detail: String = r.get(8)?;
    let name: Option<String> = r.get(11)?;
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
    Ok((record, at, detail, name))
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
CREATE TABLE IF NOT EXISTS audit_actors (pseudonym TEXT PRIMARY KEY, actor TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"#;

const UPDATE_TRIGGER: &str = "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log \
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";

impl AuditLog {
    pub fn open(path: &Path) -> Result<Self> {
        let log = AuditLog { db: db::Store::open(path, SCHEMA)? };
        log.convert_to_pseudonyms()?;
        Ok(log)
    }

    /// Once per database: replaces the names in a log written before pseudonyms by pseudonyms
    /// and re-chains it. Refused when the old chain does not verify, so a conversion never
    /// launders an edit.
    fn convert_to_pseudonyms(&self) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM audit_meta WHERE key = 'pseudonymous')", [], |r| r.get(0))?;
        if done {
            return Ok(());
        }
        let rows: Vec<(Record, i64, String)> = {
            let mut stmt = tx.prepare(&format!("SELECT {COLUMNS}, NULL FROM audit_log l ORDER BY seq"))?;
            stmt.query_map([], |r| read_row(r).map(|(record, at, detail, _)| (record, at, detail)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut previous = String::new();
        for (record, at, detail) in &rows {
            if chain_hash(&previous, *at, &record.event, detail) != record.hash {
                return Err(crate::Error::Config(format!(
                    "the audit log's hash chain breaks at event {}: not converting it to pseudonyms",
                    record.seq
                )));
            }
            previous.clone_from(&record.hash);
        }
        if !rows.is_empty() {
            tx.execute_batch("DROP TRIGGER audit_log_no_update")?;
            let count = rows.len();
            let mut previous = String::new();
            for (record, at, detail) in rows {
                let mut event = record.event;
                event.actor = pseudonym_in(&tx, &event.actor)?;
                let hash = chain_hash(&previous, at, &event, &detail);
                tx.execute(
                    "UPDATE audit_log SET actor = ?2, hash = ?3 WHERE seq = ?1",
                    params![record.seq, event.actor, hash],
                )?;
                previous = hash;
            }
            tx.execute_batch(UPDATE_TRIGGER)?;
            tracing::info!(events = count, "audit log converted to pseudonymous actors");
        }
        tx.execute("INSERT INTO audit_meta (key, value) VALUES ('pseudonymous', 1)", [])?;
        tx.commit()?;
        Ok(())
    }

    /// The pseudonym `actor` is recorded under, if they have events and were not erased.
    pub fn pseudonym_of(&self, actor: &str) -> Result<Option<String>> {
        let conn = self.conn();
        Ok(conn.query_row("SELECT pseudonym FROM audit_actors WHERE actor = ?1", [actor], |r| r.get(0)).optional()?)
    }

    /// Erases `actor`'s name from the log: their events keep their pseudonym, and the chain
    /// still verifies. Returns the pseudonym, or `None` when the log never named them.
    pub fn forget_actor(&self, actor: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let pseudonym: Option<String> = conn
            .query_row("DELETE FROM audit_actors WHERE actor = ?1 RETURNING pseudonym", [actor], |r| r.get(0))
            .optional()?;
        Ok(pseudonym)
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
        let name = event.actor.clone();
        let mut event = event;
        event.actor = pseudonym_in(&tx, &name)?;
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
        tracing::info!(actor = %name, action = %event.action, outcome = event.outcome.as_str(), target = ?event.target, "audit");
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
        // An actor is looked for by name, or by pseudonym once erased.
        let actor = match &query.actor {
            Some(actor) => Some(self.pseudonym_of(actor)?.unwrap_or_else(|| actor.clone())),
            None => None,
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {READ_COLUMNS} \
             WHERE l.seq > ?1 AND (?2 IS NULL OR l.actor = ?2) AND (?3 IS NULL OR l.action = ?3) \
             AND (?4 IS NULL OR l.action LIKE ?4) AND (?5 IS NULL OR l.outcome = ?5) \
             AND (?6 IS NULL OR l.at >= ?6) AND (?7 IS NULL OR l.at < ?7) ORDER BY l.seq LIMIT ?8"
        ))?;
        let rows = stmt.query_map(
            params![
                query.after.unwrap_or(0),
                actor,
                action_exact,
                action_prefix,
                query.outcome.map(Outcome::as_str),
                since,
                until,
                limit
            ],
            |r| {
                read_row(r).map(|(mut record, _, _, name)| {
                    if let Some(name) = name {
                        record.event.actor = name;
                    }
                    record
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// How many events the log holds.
    pub fn count(&self) -> Result<u64> {
        Ok(self.conn().query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// Recomputes the hash chain; returns the first sequence number whose hash disagrees.
    pub fn verify_chain(&self) -> Result<Option<i64>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS}, NULL FROM audit_log l ORDER BY seq"))?;
        let mut rows = stmt.query([])?;
        let mut previous = String::new();
        while let Some(row) = rows.next()? {
            let (record, at, detail, _) = read_row(row)?;
            if chain_hash(&previous, at, &record.event, &detail) != record.hash {
                return Ok(Some(record.seq));
            }
            previous = record.hash;
        }
        Ok(None)
    }
}

/// The pseudonym of `actor`, made on their first event.
fn pseudonym_in(conn: &Connection, actor: &str) -> Result<String> {
    let known: Option<String> = conn
        .prepare_cached("SELECT pseudonym FROM audit_actors WHERE actor = ?1")?
        .query_row([actor], |r| r.get(0))
        .optional()?;
    if let Some(pseudonym) = known {
        return Ok(pseudonym);
    }
    let pseudonym = format!("a:{:016x}", rand::random::<u64>());
    conn.prepare_cached("INSERT INTO audit_actors (pseudonym, actor) VALUES (?1, ?2)")?.execute([&pseudonym, actor])?;
    Ok(pseudonym)
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

    #[test]
    fn erasing_an_actor_keeps_their_events_under_a_pseudonym_and_the_chain_verifying() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let log = AuditLog::open(&path).unwrap();
        log.record(event("alice", "key.create", Outcome::Ok)).unwrap();
        log.record(event("bob", "document.delete", Outcome::Ok)).unwrap();
        log.record(event("alice", "document.upload", Outcome::Ok)).unwrap();
        let raw = db::open(&path).unwrap();
        let stored: Vec<String> = raw
            .prepare("SELECT actor FROM audit_log ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(stored.iter().all(|a| a.starts_with("a:")), "{stored:?}");
        assert_eq!(stored[0], stored[2]);

        let pseudonym = log.forget_actor("alice").unwrap().expect("alice has events");
        assert_eq!(stored[0], pseudonym);
        assert_eq!(log.forget_actor("alice").unwrap(), None);
        let all = log.query(&Query::default()).unwrap();
        let actors: Vec<&str> = all.iter().map(|r| r.event.actor.as_str()).collect();
        assert_eq!(actors, [pseudonym.as_str(), "bob", pseudonym.as_str()]);
        assert!(log.query(&Query { actor: Some("alice".into()), ..Default::default() }).unwrap().is_empty());
        assert_eq!(log.query(&Query { actor: Some(pseudonym.clone()), ..Default::default() }).unwrap().len(), 2);
        assert_eq!(log.verify_chain().unwrap(), None);
        // Alice coming back gets a new pseudonym, not linked to the old one.
        log.record(event("alice", "auth.failed", Outcome::Failed)).unwrap();
        assert_ne!(log.pseudonym_of("alice").unwrap().unwrap(), pseudonym);
        assert_eq!(log.verify_chain().unwrap(), None);
    }

    #[test]
    fn a_log_written_with_names_is_converted_once_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let old_schema = SCHEMA.split("CREATE TABLE IF NOT EXISTS audit_actors").next().unwrap();
        let write_old = |path: &Path, tamper: bool| {
            let conn = db::open(path).unwrap();
            conn.execute_batch(old_schema).unwrap();
            let mut previous = String::new();
            for (i, actor) in ["alice", "bob", "alice"].into_iter().enumerate() {
                let e = event(actor, "key.create", Outcome::Ok);
                let detail = e.detail.to_string();
                let at = 1_700_000_000 + i as i64;
                let hash = chain_hash(&previous, at, &e, &detail);
                conn.execute(
                    "INSERT INTO audit_log (at, actor, role, auth, action, target, outcome, detail, remote, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'ok', ?7, NULL, ?8)",
                    params![at, e.actor, e.role, e.auth, e.action, e.target, detail, hash],
                )
                .unwrap();
                previous = hash;
            }
            if tamper {
                conn.execute_batch("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET role = 'x' WHERE seq = 2;")
                    .unwrap();
            }
        };
        write_old(&path, false);
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.verify_chain().unwrap(), None);
        let actors: Vec<String> = log.query(&Query::default()).unwrap().into_iter().map(|r| r.event.actor).collect();
        assert_eq!(actors, ["alice", "bob", "alice"]);
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.forget_actor("bob").unwrap().expect("bob converted");
        assert_eq!(log.verify_chain().unwrap(), None);
        let raw = db::open(&path).unwrap();
        assert!(raw.execute("UPDATE audit_log SET actor = 'x'", []).is_err(), "the trigger is back");

        let broken = dir.path().join("broken.sqlite");
        write_old(&broken, true);
        let error = AuditLog::open(&broken).err().expect("a broken chain is not converted").to_string();
        assert!(error.contains("breaks at event 2"), "{error}");
    }
}
