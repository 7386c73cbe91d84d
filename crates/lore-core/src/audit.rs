//! The audit log: an append-only record of security-relevant events (sign-in failures, key
//! creation and revocation, uploads, deletes, ACL changes, admin actions, denied access).
//!
//! The log lives in the application database: SQLite in the embedded default, PostgreSQL when
//! several processes share it.
//!
//! Append-only is enforced twice: the API has no way to change or remove an event, and
//! triggers abort any `UPDATE` or `DELETE` on the table (and `TRUNCATE` on PostgreSQL). Each
//! event also carries the sha256 of its predecessor's hash and its own content, so an edit made
//! behind the database's back (with the triggers dropped) shows up in
//! [`AuditLog::verify_chain`]. Appenders are serialized (SQLite's write lock; a transaction-wide
//! advisory lock on PostgreSQL), so the predecessor's hash is read and the new event written as
//! one step even when several processes record at once.
//!
//! A person's right to erasure meets the append-only log through pseudonyms: the `actor` column
//! (and so the chain hash) holds a random pseudonym per actor (`a:` and 16 hex digits), and the
//! table `audit_actors` maps each pseudonym to the actor. Reads show the actor; erasing a person
//! deletes their mapping row, after which their events show the pseudonym only and the chain,
//! which never covered the name, still verifies. A log written before pseudonyms (an embedded
//! SQLite database from before them) is converted once on open (after its chain verifies),
//! re-chaining every event; a PostgreSQL log starts pseudonymous.

use std::path::Path;

use lore_db::{Database, Db, Dialect, Location, Migration, Row, Schema, Tx, params};
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
fn read_row(r: &Row) -> lore_db::Result<(Record, i64, String, Option<String>)> {
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
            outcome: Outcome::parse(&r.get::<String>(7)?),
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
    db: Db,
}

const SCHEMA: Schema = Schema {
    name: "audit",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have these tables (or only
        // the log, from before pseudonyms: `convert_to_pseudonyms` converts it).
        sqlite: r#"
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
"#,
        // Pseudonymous from the start: nothing to convert.
        postgres: r#"
CREATE TABLE audit_log (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
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
CREATE INDEX audit_by_action ON audit_log(action, seq);
CREATE INDEX audit_by_actor ON audit_log(actor, seq);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TABLE audit_actors (pseudonym TEXT PRIMARY KEY, actor TEXT NOT NULL UNIQUE);
CREATE TABLE audit_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO audit_meta (key, value) VALUES ('pseudonymous', 1);
"#,
    }],
};

/// The PostgreSQL advisory lock (transaction-wide) that appenders hold, one at a time: the
/// chain's last hash is read and the next event written under it.
const APPEND_LOCK: i64 = 0x4c6f_7265_4175_6474; // "LoreAudt"

/// SQLite's update trigger, dropped and made again around the conversion to pseudonyms.
const UPDATE_TRIGGER: &str = "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log \
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END";

impl AuditLog {
    /// The log in the embedded database file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?)
    }

    /// The log in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> Result<Self> {
        let log = AuditLog { db: database.store(&SCHEMA)? };
        log.convert_to_pseudonyms()?;
        Ok(log)
    }

    /// Once per database: replaces the names in a log written before pseudonyms by pseudonyms
    /// and re-chains it. Refused when the old chain does not verify, so a conversion never
    /// launders an edit. Only embedded (SQLite) databases can be that old: a PostgreSQL log is
    /// created pseudonymous.
    fn convert_to_pseudonyms(&self) -> Result<()> {
        if self.db.dialect() == Dialect::Postgres {
            return Ok(());
        }
        // `Err(seq)`: the old chain breaks at `seq` (nothing was changed).
        let outcome = self.db.transaction(|tx| {
            let done: bool = tx
                .query("SELECT EXISTS (SELECT 1 FROM audit_meta WHERE key = 'pseudonymous')", params![])?
                .first()
                .map(|r| r.get(0))
                .transpose()?
                .unwrap_or(false);
            if done {
                return Ok(Ok(0));
            }
            let rows = tx
                .query(&format!("SELECT {COLUMNS}, NULL FROM audit_log l ORDER BY seq"), params![])?
                .iter()
                .map(|r| read_row(r).map(|(record, at, detail, _)| (record, at, detail)))
                .collect::<lore_db::Result<Vec<_>>>()?;
            let mut previous = String::new();
            for (record, at, detail) in &rows {
                if chain_hash(&previous, *at, &record.event, detail) != record.hash {
                    return Ok(Err(record.seq));
                }
                previous.clone_from(&record.hash);
            }
            let count = rows.len();
            if !rows.is_empty() {
                tx.execute("DROP TRIGGER audit_log_no_update", params![])?;
                let mut previous = String::new();
                for (record, at, detail) in rows {
                    let mut event = record.event;
                    event.actor = pseudonym_in(tx, &event.actor)?;
                    let hash = chain_hash(&previous, at, &event, &detail);
                    tx.execute(
                        "UPDATE audit_log SET actor = ?2, hash = ?3 WHERE seq = ?1",
                        params![record.seq, event.actor, hash.as_str()],
                    )?;
                    previous = hash;
                }
                tx.execute(UPDATE_TRIGGER, params![])?;
            }
            tx.execute("INSERT INTO audit_meta (key, value) VALUES ('pseudonymous', 1)", params![])?;
            Ok(Ok(count))
        })?;
        match outcome {
            Ok(0) => Ok(()),
            Ok(count) => {
                tracing::info!(events = count, "audit log converted to pseudonymous actors");
                Ok(())
            }
            Err(seq) => Err(crate::Error::Config(format!(
                "the audit log's hash chain breaks at event {seq}: not converting it to pseudonyms"
            ))),
        }
    }

    /// The pseudonym `actor` is recorded under, if they have events and were not erased.
    pub fn pseudonym_of(&self, actor: &str) -> Result<Option<String>> {
        self.db
            .query_opt("SELECT pseudonym FROM audit_actors WHERE actor = ?1", params![actor])?
            .map(|r| r.get(0))
            .transpose()
            .map_err(Into::into)
    }

    /// Erases `actor`'s name from the log: their events keep their pseudonym, and the chain
    /// still verifies. Returns the pseudonym, or `None` when the log never named them.
    pub fn forget_actor(&self, actor: &str) -> Result<Option<String>> {
        self.db
            .query_opt("DELETE FROM audit_actors WHERE actor = ?1 RETURNING pseudonym", params![actor])?
            .map(|r| r.get(0))
            .transpose()
            .map_err(Into::into)
    }

    /// Appends an event. Failures are logged and returned; callers of security paths treat
    /// a failed audit write as an internal error rather than skipping it silently.
    pub fn record(&self, event: Event) -> Result<()> {
        let detail = event.detail.to_string();
        let name = event.actor.clone();
        let event = self.db.transaction(|tx| {
            // SQLite: the transaction holds the write lock from its start. PostgreSQL: appenders
            // queue here, so each reads the hash its predecessor committed.
            if tx.dialect() == Dialect::Postgres {
                tx.execute(&format!("SELECT pg_advisory_xact_lock({APPEND_LOCK})"), params![])?;
            }
            let previous: String = tx
                .query("SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1", params![])?
                .first()
                .map(|r| r.get(0))
                .transpose()?
                .unwrap_or_default();
            let at = db::now();
            let mut event = event;
            event.actor = pseudonym_in(tx, &name)?;
            let hash = chain_hash(&previous, at, &event, &detail);
            tx.execute(
                "INSERT INTO audit_log (at, actor, role, auth, action, target, outcome, detail, remote, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    at,
                    event.actor.as_str(),
                    event.role.as_deref(),
                    event.auth.as_str(),
                    event.action.as_str(),
                    event.target.as_deref(),
                    event.outcome.as_str(),
                    detail.as_str(),
                    event.remote.as_deref(),
                    hash
                ],
            )?;
            Ok(event)
        })?;
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
        // The casts give PostgreSQL each parameter's type where `IS NULL` alone would not.
        self.db
            .query(
                &format!(
                    "SELECT {READ_COLUMNS} \
                     WHERE l.seq > ?1 AND (CAST(?2 AS TEXT) IS NULL OR l.actor = ?2) \
                     AND (CAST(?3 AS TEXT) IS NULL OR l.action = ?3) \
                     AND (CAST(?4 AS TEXT) IS NULL OR l.action LIKE ?4) \
                     AND (CAST(?5 AS TEXT) IS NULL OR l.outcome = ?5) \
                     AND (CAST(?6 AS BIGINT) IS NULL OR l.at >= ?6) \
                     AND (CAST(?7 AS BIGINT) IS NULL OR l.at < ?7) ORDER BY l.seq LIMIT ?8"
                ),
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
            )?
            .iter()
            .map(|r| {
                let (mut record, _, _, name) = read_row(r)?;
                if let Some(name) = name {
                    record.event.actor = name;
                }
                Ok(record)
            })
            .collect()
    }

    /// How many events the log holds.
    pub fn count(&self) -> Result<u64> {
        let count: Option<i64> =
            self.db.query_opt("SELECT COUNT(*) FROM audit_log", params![])?.map(|r| r.get(0)).transpose()?;
        Ok(count.unwrap_or(0) as u64)
    }

    /// Recomputes the hash chain; returns the first sequence number whose hash disagrees.
    /// Reads the log a page at a time.
    pub fn verify_chain(&self) -> Result<Option<i64>> {
        const PAGE: i64 = 1000;
        let mut previous = String::new();
        let mut after = 0;
        loop {
            let rows = self.db.query(
                &format!(
                    "SELECT {COLUMNS}, CAST(NULL AS TEXT) FROM audit_log l WHERE l.seq > ?1 ORDER BY l.seq LIMIT ?2"
                ),
                params![after, PAGE],
            )?;
            for row in &rows {
                let (record, at, detail, _) = read_row(row)?;
                if chain_hash(&previous, at, &record.event, &detail) != record.hash {
                    return Ok(Some(record.seq));
                }
                after = record.seq;
                previous = record.hash;
            }
            if (rows.len() as i64) < PAGE {
                return Ok(None);
            }
        }
    }
}

/// The pseudonym of `actor`, made on their first event.
fn pseudonym_in(tx: &mut Tx<'_>, actor: &str) -> lore_db::Result<String> {
    let known = tx.query("SELECT pseudonym FROM audit_actors WHERE actor = ?1", params![actor])?;
    if let Some(row) = known.first() {
        return row.get(0);
    }
    let pseudonym = format!("a:{:016x}", rand::random::<u64>());
    tx.execute("INSERT INTO audit_actors (pseudonym, actor) VALUES (?1, ?2)", params![pseudonym.as_str(), actor])?;
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
    use lore_db::testing::on_both;

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
        on_both("append_only_filterable_and_chained", |database| {
            let log = AuditLog::open_in(database).unwrap();
            log.record(event("alice", "key.create", Outcome::Ok)).unwrap();
            log.record(event("bob", "document.delete", Outcome::Denied)).unwrap();
            log.record(event("alice", "document.upload", Outcome::Ok)).unwrap();

            let all = log.query(&Query::default()).unwrap();
            assert_eq!(all.len(), 3);
            assert_eq!(all[0].event.detail, serde_json::json!({"n": 1}));
            assert_eq!((all[0].event.role.as_deref(), all[0].event.remote.as_deref()), (Some("admin"), None));
            let docs = log.query(&Query { action: Some("document.".into()), ..Default::default() }).unwrap();
            assert_eq!(docs.len(), 2);
            let exact = log.query(&Query { action: Some("key.create".into()), ..Default::default() }).unwrap();
            assert_eq!(exact.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1]);
            let denied = log.query(&Query { outcome: Some(Outcome::Denied), ..Default::default() }).unwrap();
            assert_eq!(denied[0].event.actor, "bob");
            let alice =
                log.query(&Query { actor: Some("alice".into()), after: Some(1), ..Default::default() }).unwrap();
            assert_eq!(alice.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![3]);
            let today = log
                .query(&Query {
                    since: Some(all[0].at.clone()),
                    until: Some("2999-01-01".into()),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(today.len(), 3);
            assert!(log.query(&Query { until: Some(all[0].at.clone()), ..Default::default() }).unwrap().is_empty());
            assert_eq!(log.query(&Query { limit: Some(2), ..Default::default() }).unwrap().len(), 2);
            assert!(log.query(&Query { since: Some("last week".into()), ..Default::default() }).is_err());
            assert_eq!(log.verify_chain().unwrap(), None);
            assert_eq!(log.count().unwrap(), 3);

            // Another connection, as another process would have.
            let raw = AuditLog::open_in(database).unwrap().db;
            let err = raw.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", params![]).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
            assert!(raw.execute("DELETE FROM audit_log", params![]).is_err());
            // Behind the triggers' back: the chain exposes the edit.
            raw.execute(
                match raw.dialect() {
                    Dialect::Sqlite => "DROP TRIGGER audit_log_no_update",
                    Dialect::Postgres => "DROP TRIGGER audit_log_no_update ON audit_log",
                },
                params![],
            )
            .unwrap();
            raw.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2", params![]).unwrap();
            assert_eq!(log.verify_chain().unwrap(), Some(2));
        });
    }

    #[test]
    fn updates_and_deletes_of_events_are_refused() {
        on_both("updates_and_deletes_of_events_are_refused", |database| {
            let log = AuditLog::open_in(database).unwrap();
            log.record(event("alice", "key.create", Outcome::Ok)).unwrap();
            log.record(event("bob", "key.revoke", Outcome::Ok)).unwrap();
            let raw = AuditLog::open_in(database).unwrap().db;
            let attempts = [
                "UPDATE audit_log SET outcome = 'denied'",
                "UPDATE audit_log SET hash = 'x' WHERE seq = 2",
                "DELETE FROM audit_log WHERE seq = 2",
                "DELETE FROM audit_log",
            ];
            for sql in attempts {
                let err = raw.execute(sql, params![]).expect_err(sql);
                assert!(err.to_string().contains("append-only"), "{sql}: {err}");
            }
            if raw.dialect() == Dialect::Postgres {
                let err = raw.execute("TRUNCATE audit_log", params![]).expect_err("TRUNCATE");
                assert!(err.to_string().contains("append-only"), "{err}");
            }
            // Nor inside a transaction that would otherwise commit.
            let err = raw
                .transaction(|tx| {
                    tx.execute("INSERT INTO audit_meta (key, value) VALUES ('x', 1)", params![])?;
                    tx.execute("DELETE FROM audit_log WHERE seq = 1", params![])
                })
                .unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
            assert_eq!(log.count().unwrap(), 2);
            assert_eq!(log.query(&Query::default()).unwrap()[0].event.outcome, Outcome::Ok);
            assert_eq!(log.verify_chain().unwrap(), None);
        });
    }

    #[test]
    fn concurrent_appenders_keep_one_chain() {
        on_both("concurrent_appenders_keep_one_chain", |database| {
            const THREADS: usize = 8;
            const EACH: usize = 25;
            // Each thread its own store, as separate processes would have.
            let logs: Vec<AuditLog> = (0..THREADS).map(|_| AuditLog::open_in(database).unwrap()).collect();
            std::thread::scope(|s| {
                for (t, log) in logs.iter().enumerate() {
                    s.spawn(move || {
                        for i in 0..EACH {
                            // Some actors shared between threads: their pseudonym is made once.
                            let actor = if i % 2 == 0 { format!("user{}", i % 5) } else { format!("t{t}") };
                            log.record(event(&actor, &format!("test.{t}.{i}"), Outcome::Ok)).unwrap();
                        }
                    });
                }
            });
            let log = AuditLog::open_in(database).unwrap();
            assert_eq!(log.count().unwrap(), (THREADS * EACH) as u64);
            assert_eq!(log.verify_chain().unwrap(), None, "the chain is intact");
            let all = log.query(&Query { limit: Some(1000), ..Default::default() }).unwrap();
            assert_eq!(all.len(), THREADS * EACH);
            assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
            let mut actions: Vec<&str> = all.iter().map(|r| r.event.action.as_str()).collect();
            actions.sort();
            actions.dedup();
            assert_eq!(actions.len(), THREADS * EACH, "every event recorded once");
            for shared in 0..5 {
                let name = format!("user{shared}");
                let events = log.query(&Query { actor: Some(name.clone()), limit: Some(1000), ..Default::default() });
                assert_eq!(events.unwrap().len(), THREADS * [3, 2, 3, 2, 3][shared], "{name}");
            }
        });
    }

    #[test]
    fn erasing_an_actor_keeps_their_events_under_a_pseudonym_and_the_chain_verifying() {
        on_both("erasing_an_actor_keeps_their_events_under_a_pseudonym_and_the_chain_verifying", |database| {
            let log = AuditLog::open_in(database).unwrap();
            log.record(event("alice", "key.create", Outcome::Ok)).unwrap();
            log.record(event("bob", "document.delete", Outcome::Ok)).unwrap();
            log.record(event("alice", "document.upload", Outcome::Ok)).unwrap();
            let stored: Vec<String> = log
                .db
                .query("SELECT actor FROM audit_log ORDER BY seq", params![])
                .unwrap()
                .iter()
                .map(|r| r.get(0).unwrap())
                .collect();
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
        });
    }

    /// SQLite only: PostgreSQL logs were pseudonymous from the start.
    #[test]
    fn a_log_written_with_names_is_converted_once_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let old_schema = SCHEMA.migrations[0].sqlite.split("CREATE TABLE IF NOT EXISTS audit_actors").next().unwrap();
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
                    rusqlite::params![at, e.actor, e.role, e.auth, e.action, e.target, detail, hash],
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
