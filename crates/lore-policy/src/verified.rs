//! Verified answers: answers a knowledge manager has vouched for, given instead of a generated
//! one when a new question asks the same thing as one of their example questions.
//!
//! Matching runs on every question, so it never touches the database: the store keeps every
//! verified answer with its normalised example vectors in memory, loaded at open and changed only
//! after the database has the change, under the same lock. Similarity is the cosine with the
//! closest example question; vectors of another length (from another embedding model) never
//! match. The threshold is the one number that decides whether someone gets a vetted answer or a
//! wrong one, so [`calibrate`] picks it from labelled pairs with a ceiling on false matches.
//!
//! This store does not check permissions: the server gives a verified answer only to someone who
//! may read every document in its `document_ids`.
//!
//! The table `verified_answers` lives in the application database (the server's catalog file, or
//! PostgreSQL); one server process owns it (another process's inserts are not seen until
//! reopening).

use std::path::Path;
use std::sync::{Mutex, PoisonError, RwLock};

use lore_db::{Database, Db, Dialect, Migration, Row, Schema, params};
use serde::Serialize;
use serde_json::Value;

use crate::error::Error;
use crate::{lock, new_id};

/// Where a verified answer came from: a reviewed answer, an answer with good feedback, or written
/// by hand.
pub const SOURCES: [&str; 3] = ["review", "feedback", "manual"];

const SCHEMA: Schema = Schema {
    name: "verified_answers",
    migrations: &[
        Migration {
            version: 1,
            // Databases made before migrations were recorded already have this table.
            sqlite: r#"
CREATE TABLE IF NOT EXISTS verified_answers (
    id TEXT PRIMARY KEY,
    department TEXT,
    -- JSON list of the example questions.
    questions TEXT NOT NULL,
    -- The normalised vector of each example question in order, `dim` f32 little-endian each.
    vectors BLOB NOT NULL,
    dim INTEGER NOT NULL,
    answer TEXT NOT NULL,
    -- JSON, as the server renders citations.
    citations TEXT NOT NULL,
    -- JSON list of document ids.
    document_ids TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    source TEXT NOT NULL,
    source_ref TEXT
);
CREATE INDEX IF NOT EXISTS verified_answers_by_department ON verified_answers(department, created_ms);
CREATE INDEX IF NOT EXISTS verified_answers_by_expiry ON verified_answers(expires_ms) WHERE expires_ms IS NOT NULL;
"#,
            postgres: r#"
CREATE TABLE verified_answers (
    id TEXT PRIMARY KEY,
    department TEXT,
    -- JSON list of the example questions.
    questions TEXT NOT NULL,
    -- The normalised vector of each example question in order, `dim` f32 little-endian each.
    vectors BYTEA NOT NULL,
    dim BIGINT NOT NULL,
    answer TEXT NOT NULL,
    -- JSON, as the server renders citations.
    citations TEXT NOT NULL,
    -- JSON list of document ids.
    document_ids TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT,
    source TEXT NOT NULL,
    source_ref TEXT,
    -- Insertion order, the tie-break of answers created in the same millisecond (SQLite's rowid).
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX verified_answers_by_department ON verified_answers(department, created_ms);
CREATE INDEX verified_answers_by_expiry ON verified_answers(expires_ms) WHERE expires_ms IS NOT NULL;
"#,
        },
        Migration {
            version: 2,
            // Bumped by every change, so processes sharing the database know when to reload.
            sqlite: "CREATE TABLE verified_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
                 INSERT INTO verified_version VALUES (1, 0);",
            postgres: "CREATE TABLE verified_version (id BIGINT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
                   INSERT INTO verified_version VALUES (1, 0);",
        },
    ],
};

/// How stale a replica's in-memory index may get on a shared database: at most this long
/// after another process changed the answers, a match sees the change.
const SHARED_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

const COLUMNS: &str =
    "id, department, questions, answer, citations, document_ids, owner, created_ms, expires_ms, source, source_ref";

#[derive(Debug, Clone)]
pub struct NewVerified {
    /// The department whose knowledge managers maintain it; `None` for company-wide answers.
    pub department: Option<String>,
    /// Example questions the answer answers.
    pub questions: Vec<String>,
    /// One embedding per question, all of one length (normalised here).
    pub vectors: Vec<Vec<f32>>,
    pub answer: String,
    pub citations: Value,
    /// The documents it rests on: the server gives it only to people who may read them all.
    pub document_ids: Vec<String>,
    pub owner: String,
    pub expires_ms: Option<i64>,
    /// One of [`SOURCES`].
    pub source: String,
    /// What it came from, such as a review id.
    pub source_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verified {
    pub id: String,
    pub department: Option<String>,
    pub questions: Vec<String>,
    pub answer: String,
    pub citations: Value,
    pub document_ids: Vec<String>,
    pub owner: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub source: String,
    pub source_ref: Option<String>,
}

impl Verified {
    fn live_at(&self, now_ms: i64) -> bool {
        self.expires_ms.is_none_or(|expires| now_ms < expires)
    }
}

/// A verified answer as held for matching.
struct Entry {
    verified: Verified,
    /// Unit length, one per example question.
    vectors: Vec<Vec<f32>>,
}

pub struct VerifiedStore {
    db: Db,
    /// Held while a change is written to the database and then to `index`, so the index sees
    /// changes in the database's order.
    write: Mutex<()>,
    /// Written only while `write` is locked, after the database; read without it.
    index: RwLock<Vec<Entry>>,
    /// On a database other processes write (PostgreSQL): the version `index` was loaded at and
    /// when that was last compared with the database's.
    shared: Option<Mutex<(i64, std::time::Instant)>>,
}

impl VerifiedStore {
    /// Opens (creating if needed) the table in the embedded database file at `path` and loads
    /// every verified answer into memory.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Self::open_in(&crate::open_sqlite(path)?)
    }

    /// Opens (creating if needed) the table in the application database (SQLite or PostgreSQL)
    /// and loads every verified answer into memory.
    pub fn open_in(database: &Database) -> Result<Self, Error> {
        let db = database.store(&SCHEMA)?;
        let version = current_version(&db)?;
        let index = load_index(&db)?;
        tracing::debug!(verified = index.len(), "verified answer store opened");
        let shared = (db.dialect() == Dialect::Postgres).then(|| Mutex::new((version, std::time::Instant::now())));
        Ok(VerifiedStore { db, write: Mutex::new(()), index: RwLock::new(index), shared })
    }

    /// On a shared database, reloads the index when another process changed the answers
    /// (checked at most every [`SHARED_REFRESH`]). A failed check keeps the index and is logged.
    fn refresh(&self) {
        let Some(shared) = &self.shared else { return };
        let mut state = lock(shared);
        if state.1.elapsed() < SHARED_REFRESH {
            return;
        }
        state.1 = std::time::Instant::now();
        let _write = lock(&self.write);
        let reloaded = current_version(&self.db).and_then(|version| {
            if version == state.0 {
                return Ok(None);
            }
            Ok(Some((version, load_index(&self.db)?)))
        });
        match reloaded {
            Ok(Some((version, index))) => {
                *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
                state.0 = version;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "verified answers: cannot check for changes by other processes"),
        }
    }

    /// Records a change for other processes (inside the change's transaction); returns the
    /// new version.
    fn bump(tx: &mut lore_db::Tx<'_>) -> lore_db::Result<i64> {
        tx.query("UPDATE verified_version SET version = version + 1 WHERE id = 1 RETURNING version", params![])?
            .first()
            .map_or(Ok(0), |row| row.get(0))
    }

    /// Notes that this process's own change (which made `version`) is in its index already,
    /// unless another process changed something in between (then the next check reloads).
    fn seen_own_change(&self, version: i64) {
        if let Some(shared) = &self.shared {
            let mut state = lock(shared);
            if state.0 == version - 1 {
                state.0 = version;
            }
        }
    }

    pub fn create(&self, new: NewVerified, now_ms: i64) -> Result<Verified, Error> {
        let vectors = check(&new, now_ms)?;
        let dim = vectors[0].len();
        let verified = Verified {
            id: new_id(),
            department: new.department,
            questions: new.questions,
            answer: new.answer,
            citations: new.citations,
            document_ids: new.document_ids,
            owner: new.owner,
            created_ms: now_ms,
            expires_ms: new.expires_ms,
            source: new.source,
            source_ref: new.source_ref,
        };
        let _write = lock(&self.write);
        let version = self.db.transaction(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO verified_answers ({COLUMNS}, vectors, dim) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ),
                params![
                    verified.id.as_str(),
                    verified.department.as_deref(),
                    Value::from(verified.questions.clone()).to_string(),
                    verified.answer.as_str(),
                    verified.citations.to_string(),
                    Value::from(verified.document_ids.clone()).to_string(),
                    verified.owner.as_str(),
                    verified.created_ms,
                    verified.expires_ms,
                    verified.source.as_str(),
                    verified.source_ref.as_deref(),
                    encode(&vectors),
                    dim,
                ],
            )?;
            Self::bump(tx)
        })?;
        self.index.write().unwrap_or_else(PoisonError::into_inner).push(Entry { verified: verified.clone(), vectors });
        drop(_write);
        self.seen_own_change(version);
        tracing::info!(verified = %verified.id, source = %verified.source, "verified answer created");
        Ok(verified)
    }

    pub fn get(&self, id: &str) -> Result<Option<Verified>, Error> {
        self.db
            .query_opt(&format!("SELECT {COLUMNS} FROM verified_answers WHERE id = ?1"), params![id])?
            .map(|row| verified_from_row(&row))
            .transpose()
    }

    /// Newest first, expired ones included (they are kept until purged, for renewal); `None` =
    /// every department, `Some(d)` = those of department `d`.
    pub fn list(&self, department: Option<&str>) -> Result<Vec<Verified>, Error> {
        let order = format!("ORDER BY created_ms DESC, {} DESC", seq(&self.db));
        let rows = match department {
            None => self.db.query(&format!("SELECT {COLUMNS} FROM verified_answers {order}"), params![])?,
            Some(department) => self.db.query(
                &format!("SELECT {COLUMNS} FROM verified_answers WHERE department = ?1 {order}"),
                params![department],
            )?,
        };
        rows.iter().map(verified_from_row).collect()
    }

    /// Returns whether it existed.
    pub fn delete(&self, id: &str) -> Result<bool, Error> {
        let _write = lock(&self.write);
        let (deleted, version) = self.db.transaction(|tx| {
            let deleted = tx.execute("DELETE FROM verified_answers WHERE id = ?1", params![id])? > 0;
            Ok((deleted, Self::bump(tx)?))
        })?;
        self.index.write().unwrap_or_else(PoisonError::into_inner).retain(|entry| entry.verified.id != id);
        drop(_write);
        self.seen_own_change(version);
        Ok(deleted)
    }

    /// Whether there is no verified answer at all (then a question need not be embedded to
    /// look for one).
    pub fn is_empty(&self) -> bool {
        self.refresh();
        self.index.read().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    /// Unexpired verified answers whose best example question has cosine ≥ threshold with
    /// `query`, best first (newest first on ties), each with that similarity. An empty or zero
    /// query matches nothing.
    pub fn matches(&self, query: &[f32], threshold: f32, now_ms: i64) -> Vec<(Verified, f32)> {
        let Some(query) = normalised(query) else { return Vec::new() };
        self.refresh();
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let mut found: Vec<(Verified, f32)> = index
            .iter()
            .filter(|entry| entry.verified.live_at(now_ms))
            .filter_map(|entry| {
                let best = entry
                    .vectors
                    .iter()
                    .filter(|v| v.len() == query.len())
                    .map(|v| dot(v, &query))
                    .max_by(f32::total_cmp)?;
                (best >= threshold).then(|| (entry.verified.clone(), best))
            })
            .collect();
        found.sort_by(|(a, sa), (b, sb)| {
            sb.total_cmp(sa).then(b.created_ms.cmp(&a.created_ms)).then_with(|| a.id.cmp(&b.id))
        });
        found
    }

    /// Deletes answers expired at `now_ms`. Returns how many.
    pub fn purge_expired(&self, now_ms: i64) -> Result<usize, Error> {
        let _write = lock(&self.write);
        let purged = self.db.transaction(|tx| {
            let purged = tx.execute(
                "DELETE FROM verified_answers WHERE expires_ms IS NOT NULL AND expires_ms <= ?1",
                params![now_ms],
            )?;
            let version = if purged > 0 { Some(Self::bump(tx)?) } else { None };
            Ok((purged, version))
        })?;
        let (purged, version) = purged;
        self.index.write().unwrap_or_else(PoisonError::into_inner).retain(|entry| entry.verified.live_at(now_ms));
        drop(_write);
        if let Some(version) = version {
            self.seen_own_change(version);
        }
        Ok(purged)
    }
}

fn current_version(db: &Db) -> Result<i64, Error> {
    Ok(db
        .query_opt("SELECT version FROM verified_version WHERE id = 1", params![])?
        .map(|row| row.get::<i64>(0))
        .transpose()?
        .unwrap_or(0))
}

/// Every verified answer with its vectors, oldest first.
fn load_index(db: &Db) -> Result<Vec<Entry>, Error> {
    let rows = db.query(
        &format!("SELECT {COLUMNS}, vectors, dim FROM verified_answers ORDER BY created_ms, {}", seq(db)),
        params![],
    )?;
    let mut index = Vec::new();
    for row in &rows {
        let verified = verified_from_row(row)?;
        let (blob, dim): (Vec<u8>, i64) = (row.get(11)?, row.get(12)?);
        let vectors = decode(&blob, dim, verified.questions.len()).ok_or_else(|| {
            Error::Other(format!(
                "verified answer {}: {} bytes of vectors do not hold {} vectors of {dim} numbers",
                verified.id,
                blob.len(),
                verified.questions.len()
            ))
        })?;
        index.push(Entry { verified, vectors });
    }
    Ok(index)
}

/// Checks a new verified answer and returns its normalised vectors.
fn check(new: &NewVerified, now_ms: i64) -> Result<Vec<Vec<f32>>, Error> {
    let invalid = |message: String| Err(Error::Invalid(format!("verified answer: {message}")));
    if new.questions.is_empty() {
        return invalid("needs at least one example question".into());
    }
    if let Some(index) = new.questions.iter().position(|q| q.trim().is_empty()) {
        return invalid(format!("example question {index} is empty"));
    }
    if new.vectors.len() != new.questions.len() {
        return invalid(format!("{} questions but {} vectors", new.questions.len(), new.vectors.len()));
    }
    let dim = new.vectors[0].len();
    if let Some(index) = new.vectors.iter().position(|v| v.len() != dim) {
        return invalid(format!("vector {index} has {} numbers, vector 0 has {dim}", new.vectors[index].len()));
    }
    if new.answer.trim().is_empty() {
        return invalid("the answer is empty".into());
    }
    if new.document_ids.is_empty() || new.document_ids.iter().any(|d| d.trim().is_empty()) {
        return invalid("needs at least one document id, and no empty ones".into());
    }
    if new.owner.trim().is_empty() {
        return invalid("needs an owner".into());
    }
    if new.department.as_deref().is_some_and(|d| d.trim().is_empty()) {
        return invalid("the department is empty (leave it out for a company-wide answer)".into());
    }
    if !SOURCES.contains(&new.source.as_str()) {
        return invalid(format!("unknown source {:?} (sources are {})", new.source, SOURCES.join(", ")));
    }
    if new.expires_ms.is_some_and(|expires| expires <= now_ms) {
        return invalid("it would expire before it is created".into());
    }
    new.vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            normalised(vector)
                .ok_or_else(|| Error::Invalid(format!("verified answer: vector {index} is empty, zero or not finite")))
        })
        .collect()
}

/// Similarities from [`calibrate`]: the threshold and what it does on the labelled pairs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    pub threshold: f32,
    /// Share of different-intent pairs at or above the threshold.
    pub false_match_rate: f64,
    /// Share of same-intent pairs at or above the threshold.
    pub true_match_rate: f64,
    pub false_pairs: usize,
    pub true_pairs: usize,
}

/// Calibration: given similarities of pairs labelled same-intent (true) or different (false), the
/// smallest threshold whose false-match rate (share of false pairs ≥ threshold) is ≤
/// max_false_rate, and the true-match rate at it.
///
/// Allowing `k` false matches, the threshold lies just above the `k+1`-th highest false
/// similarity (the next `f32` up, since a pair at exactly the threshold matches). When every
/// false pair may match, it is the lowest similarity seen, so every pair matches; with no pairs
/// at all it is 1. A similarity that is not a number is left out of the counts. The threshold is
/// not clamped: above 1 means no threshold keeps false matches that rare (identical questions
/// labelled different).
pub fn calibrate(pairs: &[(f32, bool)], max_false_rate: f64) -> Calibration {
    let pairs: Vec<(f32, bool)> = pairs.iter().copied().filter(|(s, _)| !s.is_nan()).collect();
    let mut false_sims: Vec<f32> = pairs.iter().filter(|(_, same)| !same).map(|(s, _)| *s).collect();
    false_sims.sort_by(|a, b| b.total_cmp(a));
    let false_pairs = false_sims.len();
    let true_pairs = pairs.len() - false_pairs;
    let rate = |count: usize, of: usize| if of == 0 { 0.0 } else { count as f64 / of as f64 };
    // The most false matches the ceiling allows, counted as the rates are computed below so that
    // rounding cannot disagree with them.
    let allowed = (0..=false_pairs).take_while(|&k| rate(k, false_pairs) <= max_false_rate).last();
    let threshold = match allowed {
        Some(k) if k < false_pairs => false_sims[k].next_up(),
        // No false pair at all, or every one may match: anything seen matches.
        Some(_) => pairs.iter().map(|(s, _)| *s).min_by(f32::total_cmp).unwrap_or(1.0),
        // A negative or NaN ceiling: not even zero false matches meets it; the strictest possible.
        None => false_sims.first().map_or(1.0, |s| s.next_up()),
    };
    let at_or_above = |same: bool| pairs.iter().filter(|(s, label)| *label == same && *s >= threshold).count();
    Calibration {
        threshold,
        false_match_rate: rate(at_or_above(false), false_pairs),
        true_match_rate: rate(at_or_above(true), true_pairs),
        false_pairs,
        true_pairs,
    }
}

/// The insertion order, the tie-break of answers created in the same millisecond.
fn seq(db: &Db) -> &'static str {
    match db.dialect() {
        Dialect::Sqlite => "rowid",
        Dialect::Postgres => "seq",
    }
}

fn verified_from_row(row: &Row) -> Result<Verified, Error> {
    Ok(Verified {
        id: row.get(0)?,
        department: row.get(1)?,
        questions: json_column(row, 2)?,
        answer: row.get(3)?,
        citations: json_column(row, 4)?,
        document_ids: json_column(row, 5)?,
        owner: row.get(6)?,
        created_ms: row.get(7)?,
        expires_ms: row.get(8)?,
        source: row.get(9)?,
        source_ref: row.get(10)?,
    })
}

fn json_column<T: serde::de::DeserializeOwned>(row: &Row, index: usize) -> Result<T, Error> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|e| lore_db::Error::Decode { column: index, message: format!("not the JSON expected: {e}") }.into())
}

fn encode(vectors: &[Vec<f32>]) -> Vec<u8> {
    vectors.iter().flatten().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(blob: &[u8], dim: i64, count: usize) -> Option<Vec<Vec<f32>>> {
    let dim = usize::try_from(dim).ok().filter(|&d| d > 0)?;
    if blob.len() != dim.checked_mul(count)?.checked_mul(4)? {
        return None;
    }
    let numbers: Vec<f32> = blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Some(numbers.chunks_exact(dim).map(<[f32]>::to_vec).collect())
}

fn normalised(vector: &[f32]) -> Option<Vec<f32>> {
    let norm = dot(vector, vector).sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| vector.iter().map(|x| x / norm).collect())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use lore_db::testing::on_both;

    use super::*;

    fn new(answer: &str, vectors: &[&[f32]]) -> NewVerified {
        NewVerified {
            department: Some("hr".into()),
            questions: (0..vectors.len()).map(|i| format!("{answer} question {i}")).collect(),
            vectors: vectors.iter().map(|v| v.to_vec()).collect(),
            answer: answer.into(),
            citations: json!([{ "document_id": "d1", "page": 3 }]),
            document_ids: vec!["d1".into()],
            owner: "kim".into(),
            expires_ms: None,
            source: "manual".into(),
            source_ref: None,
        }
    }

    /// Two replicas on one PostgreSQL: an answer verified or deleted through one is matched or
    /// gone in the other within the refresh interval; each sees its own changes at once.
    #[test]
    fn replicas_see_each_others_changes_within_the_refresh() {
        let Some(location) = lore_db::testing::database("replicas_see_each_others_changes_within_the_refresh") else {
            return;
        };
        let database = Database::open(&location).unwrap();
        let (a, b) = (VerifiedStore::open_in(&database).unwrap(), VerifiedStore::open_in(&database).unwrap());
        let created = a.create(new("leave", &[&[1.0, 0.0]]), 1_000).unwrap();
        assert_eq!(answers(&a.matches(&[1.0, 0.0], 0.9, 2_000)), ["leave"], "its own change at once");
        std::thread::sleep(SHARED_REFRESH + std::time::Duration::from_millis(100));
        assert_eq!(answers(&b.matches(&[1.0, 0.0], 0.9, 2_000)), ["leave"]);
        b.create(new("parking", &[&[0.0, 1.0]]), 1_000).unwrap();
        assert!(a.delete(&created.id).unwrap());
        assert!(a.matches(&[1.0, 0.0], 0.9, 2_000).is_empty());
        std::thread::sleep(SHARED_REFRESH + std::time::Duration::from_millis(100));
        assert!(b.matches(&[1.0, 0.0], 0.9, 2_000).is_empty(), "a deleted answer is not served by the other replica");
        assert_eq!(answers(&a.matches(&[0.0, 1.0], 0.9, 2_000)), ["parking"], "the other replica's answer arrives");
    }

    fn answers(found: &[(Verified, f32)]) -> Vec<&str> {
        found.iter().map(|(v, _)| v.answer.as_str()).collect()
    }

    #[test]
    fn a_verified_answer_round_trips_and_survives_reopening() {
        on_both("a_verified_answer_round_trips_and_survives_reopening", |database| {
            let store = VerifiedStore::open_in(database).expect("open");
            let created = store
                .create(
                    NewVerified {
                        source: "review".into(),
                        source_ref: Some("r1".into()),
                        ..new("holidays", &[&[3.0, 4.0]])
                    },
                    1_000,
                )
                .expect("create");
            assert_eq!(created.id.len(), 32);
            assert_eq!(store.get(&created.id).expect("get"), Some(created.clone()));
            assert_eq!(store.get("absent").expect("get"), None);
            drop(store);

            let reopened = VerifiedStore::open_in(database).expect("reopen");
            assert_eq!(reopened.get(&created.id).expect("get"), Some(created.clone()));
            let found = reopened.matches(&[0.6, 0.8], 0.99, 2_000);
            assert_eq!(found.len(), 1, "the index is loaded at open");
            assert_eq!(found[0].0, created);
            assert!((found[0].1 - 1.0).abs() < 1e-6, "stored vectors are normalised: {}", found[0].1);
        });
    }

    /// The SQLite constructor: the embedded file (and its folder) is created and kept; answers
    /// made in the same millisecond list newest first.
    #[test]
    fn the_embedded_file_keeps_verified_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/catalog.sqlite");
        let store = VerifiedStore::open(&path).expect("open");
        let first = store.create(new("first", &[&[1.0, 0.0]]), 1).expect("create");
        let second = store.create(new("second", &[&[0.0, 1.0]]), 1).expect("create");
        drop(store);
        let reopened = VerifiedStore::open(&path).expect("reopen");
        assert_eq!(reopened.list(None).expect("list"), [second, first]);
        assert_eq!(reopened.matches(&[1.0, 1.0], 0.5, 2).len(), 2, "both are loaded at open");
    }

    #[test]
    fn creating_checks_the_input() {
        on_both("creating_checks_the_input", |database| {
            let store = VerifiedStore::open_in(database).expect("open");
            let cases: Vec<(NewVerified, &str)> = vec![
                (NewVerified { questions: vec![], vectors: vec![], ..new("a", &[]) }, "at least one example question"),
                (NewVerified { vectors: vec![vec![1.0]], ..new("a", &[&[1.0], &[1.0]]) }, "2 questions but 1 vectors"),
                (new("a", &[&[1.0, 0.0], &[1.0]]), "vector 1 has 1 numbers"),
                (new("a", &[&[0.0, 0.0]]), "vector 0 is empty, zero"),
                (new("a", &[&[f32::NAN, 1.0]]), "not finite"),
                (NewVerified { answer: " ".into(), ..new("a", &[&[1.0]]) }, "answer is empty"),
                (NewVerified { document_ids: vec![], ..new("a", &[&[1.0]]) }, "document id"),
                (NewVerified { document_ids: vec!["".into()], ..new("a", &[&[1.0]]) }, "document id"),
                (NewVerified { owner: "".into(), ..new("a", &[&[1.0]]) }, "owner"),
                (NewVerified { source: "chat".into(), ..new("a", &[&[1.0]]) }, "unknown source \"chat\""),
                (NewVerified { expires_ms: Some(1_000), ..new("a", &[&[1.0]]) }, "expire before"),
                (NewVerified { department: Some("".into()), ..new("a", &[&[1.0]]) }, "department"),
            ];
            for (input, expected) in cases {
                match store.create(input, 1_000) {
                    Err(Error::Invalid(message)) => assert!(message.contains(expected), "{message} lacks {expected:?}"),
                    other => panic!("expected an invalid input error with {expected:?}, got {other:?}"),
                }
            }
            assert!(store.list(None).expect("list").is_empty());
            assert!(store.matches(&[1.0], 0.0, 1_000).is_empty(), "nothing refused reached the index");
        });
    }

    #[test]
    fn matches_honour_the_threshold_and_rank_by_the_best_example() {
        on_both("matches_honour_the_threshold_and_rank_by_the_best_example", |database| {
            let store = VerifiedStore::open_in(database).expect("open");
            // Cosines with the query (1, 0): a = 0.6 or 0.8 at best, b = 0.96, c = 0.28.
            store.create(new("a", &[&[0.6, 0.8], &[0.8, 0.6]]), 1).expect("create");
            store.create(new("b", &[&[0.96, 0.28]]), 2).expect("create");
            store.create(new("c", &[&[0.28, 0.96]]), 3).expect("create");

            let found = store.matches(&[5.0, 0.0], 0.7, 10);
            assert_eq!(answers(&found), ["b", "a"]);
            assert!((found[0].1 - 0.96).abs() < 1e-6 && (found[1].1 - 0.8).abs() < 1e-6, "{found:?}");
            assert_eq!(answers(&store.matches(&[1.0, 0.0], 0.96, 10)), ["b"], "the threshold is inclusive");
            assert!(store.matches(&[1.0, 0.0], 0.97, 10).is_empty());
            assert!(store.matches(&[0.0, 0.0], -1.0, 10).is_empty(), "a zero query matches nothing");
            assert!(store.matches(&[1.0, 0.0, 0.0], -1.0, 10).is_empty(), "another model's vectors never match");
        });
    }

    #[test]
    fn equal_similarities_rank_newest_first() {
        on_both("equal_similarities_rank_newest_first", |database| {
            let store = VerifiedStore::open_in(database).expect("open");
            store.create(new("old", &[&[1.0, 0.0]]), 1).expect("create");
            store.create(new("new", &[&[2.0, 0.0]]), 2).expect("create");
            assert_eq!(answers(&store.matches(&[1.0, 0.0], 0.9, 10)), ["new", "old"]);
        });
    }

    #[test]
    fn expired_answers_do_not_match_and_are_purged() {
        on_both("expired_answers_do_not_match_and_are_purged", |database| {
            let store = VerifiedStore::open_in(database).expect("open");
            let expiring =
                store.create(NewVerified { expires_ms: Some(100), ..new("soon", &[&[1.0]]) }, 1).expect("create");
            let lasting = store.create(new("always", &[&[1.0]]), 2).expect("create");
            assert_eq!(answers(&store.matches(&[1.0], 0.9, 99)), ["always", "soon"]);
            assert_eq!(answers(&store.matches(&[1.0], 0.9, 100)), ["always"], "expired at its expiry time");
            assert_eq!(store.list(None).expect("list").len(), 2, "listed until purged");

            assert_eq!(store.purge_expired(100).expect("purge"), 1);
            assert_eq!(store.get(&expiring.id).expect("get"), None);
            assert_eq!(store.get(&lasting.id).expect("get"), Some(lasting));
            assert_eq!(answers(&store.matches(&[1.0], 0.9, 50)), ["always"], "purged from memory too");
            assert_eq!(store.purge_expired(1_000).expect("purge"), 0);
        });
    }

    #[test]
    fn delete_removes_from_the_table_and_the_index() {
        on_both("delete_removes_from_the_table_and_the_index", |database| {
            let store = VerifiedStore::open_in(database).expect("open");
            let gone = store.create(new("gone", &[&[1.0]]), 1).expect("create");
            store.create(new("kept", &[&[1.0]]), 2).expect("create");
            assert!(store.delete(&gone.id).expect("delete"));
            assert!(!store.delete(&gone.id).expect("delete again"));
            assert_eq!(store.get(&gone.id).expect("get"), None);
            assert_eq!(answers(&store.matches(&[1.0], 0.5, 10)), ["kept"]);
        });
    }

    #[test]
    fn list_is_newest_first_and_filters_by_department() {
        on_both("list_is_newest_first_and_filters_by_department", |database| {
            let store = VerifiedStore::open_in(database).expect("open");
            store.create(new("hr-old", &[&[1.0]]), 1).expect("create");
            store.create(NewVerified { department: Some("it".into()), ..new("it", &[&[1.0]]) }, 2).expect("create");
            store.create(NewVerified { department: None, ..new("company", &[&[1.0]]) }, 3).expect("create");
            store.create(new("hr-new", &[&[1.0]]), 4).expect("create");
            let names = |list: Vec<Verified>| list.into_iter().map(|v| v.answer).collect::<Vec<_>>();
            assert_eq!(names(store.list(None).expect("list")), ["hr-new", "company", "it", "hr-old"]);
            assert_eq!(names(store.list(Some("hr")).expect("list")), ["hr-new", "hr-old"]);
            assert!(store.list(Some("sales")).expect("list").is_empty());
        });
    }

    #[test]
    fn calibration_picks_the_smallest_threshold_under_the_false_match_ceiling() {
        let pairs = [
            (0.95, true),
            (0.91, true),
            (0.88, true),
            (0.80, true),
            (0.90, false),
            (0.85, false),
            (0.70, false),
            (0.60, false),
            (0.50, false),
            (f32::NAN, true),
        ];
        // No false match allowed: just above the highest false pair (0.90).
        let strict = calibrate(&pairs, 0.0);
        assert_eq!(strict.threshold, 0.90f32.next_up());
        assert_eq!((strict.false_match_rate, strict.true_match_rate), (0.0, 0.5));
        assert_eq!((strict.false_pairs, strict.true_pairs), (5, 4), "the NaN pair is left out");
        // One false match in five allowed: just above the second highest (0.85).
        let one = calibrate(&pairs, 0.2);
        assert_eq!(one.threshold, 0.85f32.next_up());
        assert_eq!((one.false_match_rate, one.true_match_rate), (0.2, 0.75));
        // Just under two in five is still one.
        assert_eq!(calibrate(&pairs, 0.39).threshold, 0.85f32.next_up());
        // Every false pair may match: everything matches.
        let loose = calibrate(&pairs, 1.0);
        assert_eq!(loose.threshold, 0.50);
        assert_eq!((loose.false_match_rate, loose.true_match_rate), (1.0, 1.0));
    }

    #[test]
    fn calibration_handles_ties_and_missing_labels() {
        // Two false pairs at 0.8: a threshold at 0.8 would let both through.
        let tied = calibrate(&[(0.8, false), (0.8, false), (0.9, true), (0.7, false), (0.75, false)], 0.25);
        assert_eq!(tied.threshold, 0.8f32.next_up());
        assert_eq!((tied.false_match_rate, tied.true_match_rate), (0.0, 1.0));
        let only_true = calibrate(&[(0.7, true), (0.9, true)], 0.0);
        assert_eq!((only_true.threshold, only_true.true_match_rate, only_true.false_pairs), (0.7, 1.0, 0));
        let nothing = calibrate(&[], 0.05);
        assert_eq!((nothing.threshold, nothing.true_pairs, nothing.false_pairs), (1.0, 0, 0));
    }
}
