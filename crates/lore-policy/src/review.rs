//! The human-review queue: answers a review rule marks critical wait here for a knowledge
//! manager to approve, edit or reject, after delivery (`after`) or before it (`before`).
//!
//! Tables, in the application database (the server's catalog file, or PostgreSQL):
//! - `reviews`: one row per review, the answer kept as the JSON the asker got (or would get), so a
//!   reviewer judges exactly what was delivered.
//! - `review_departments`: one row per review and department, keyed by department first, so a
//!   knowledge manager's queue is a range of an index and not a scan of JSON lists.
//!
//! A review is decided once. [`ReviewStore::decide`] changes a row only while it is still
//! `pending`, in one statement, so two reviewers deciding at once (even from two server
//! processes, on either database) get one winner and one [`Error::AlreadyDecided`]; the asker
//! never sees an answer approved by one and rejected by the other.

use std::fmt;
use std::path::Path;

use lore_db::{Database, Db, Dialect, Migration, Row, Schema, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::ReviewMode;
use crate::error::Error;
use crate::new_id;

const SCHEMA: Schema = Schema {
    name: "reviews",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have these tables.
        sqlite: r#"
CREATE TABLE IF NOT EXISTS reviews (
    id TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('after', 'before')),
    rule TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'edited', 'rejected')),
    asker TEXT NOT NULL,
    -- The departments as a JSON list, to read a review back whole; review_departments answers
    -- "which reviews are in these departments".
    departments TEXT NOT NULL,
    question TEXT NOT NULL,
    -- JSON: the whole answer as delivered or held.
    answer TEXT NOT NULL,
    conversation_id TEXT,
    message_id INTEGER,
    reviewer TEXT,
    decided_ms INTEGER,
    edited_answer TEXT,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS reviews_by_status ON reviews(status, created_ms);
CREATE INDEX IF NOT EXISTS reviews_by_created ON reviews(created_ms);
CREATE INDEX IF NOT EXISTS reviews_by_asker ON reviews(asker);
CREATE INDEX IF NOT EXISTS reviews_by_decided ON reviews(decided_ms) WHERE decided_ms IS NOT NULL;
CREATE TABLE IF NOT EXISTS review_departments (
    department TEXT NOT NULL,
    review_id TEXT NOT NULL,
    PRIMARY KEY (department, review_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS review_departments_by_review ON review_departments(review_id);
"#,
        postgres: r#"
CREATE TABLE reviews (
    id TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    mode TEXT NOT NULL CHECK (mode IN ('after', 'before')),
    rule TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'edited', 'rejected')),
    asker TEXT NOT NULL,
    -- The departments as a JSON list, to read a review back whole; review_departments answers
    -- "which reviews are in these departments".
    departments TEXT NOT NULL,
    question TEXT NOT NULL,
    -- JSON: the whole answer as delivered or held.
    answer TEXT NOT NULL,
    conversation_id TEXT,
    message_id BIGINT,
    reviewer TEXT,
    decided_ms BIGINT,
    edited_answer TEXT,
    reason TEXT,
    -- Insertion order, the tie-break of reviews created in the same millisecond (SQLite's rowid).
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX reviews_by_status ON reviews(status, created_ms);
CREATE INDEX reviews_by_created ON reviews(created_ms);
CREATE INDEX reviews_by_asker ON reviews(asker);
CREATE INDEX reviews_by_decided ON reviews(decided_ms) WHERE decided_ms IS NOT NULL;
CREATE TABLE review_departments (
    department TEXT NOT NULL,
    review_id TEXT NOT NULL,
    PRIMARY KEY (department, review_id)
);
CREATE INDEX review_departments_by_review ON review_departments(review_id);
"#,
    }],
};

const COLUMNS: &str = "id, created_ms, mode, rule, status, asker, departments, question, answer, conversation_id, \
     message_id, reviewer, decided_ms, edited_answer, reason";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Approved,
    /// Approved with a corrected answer, which replaces the original for the asker.
    Edited,
    Rejected,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Pending, Status::Approved, Status::Edited, Status::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Edited => "edited",
            Status::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A critical answer to queue.
#[derive(Debug, Clone)]
pub struct NewReview {
    pub mode: ReviewMode,
    /// The review rule that made it critical.
    pub rule: String,
    /// The asker's user name.
    pub asker: String,
    /// Whose knowledge managers see it. A review with none is seen by admins only.
    pub departments: Vec<String>,
    pub question: String,
    /// The whole answer as delivered or held.
    pub answer: Value,
    pub conversation_id: Option<String>,
    pub message_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    pub id: String,
    pub created_ms: i64,
    pub mode: ReviewMode,
    pub rule: String,
    pub status: Status,
    pub asker: String,
    /// Sorted, without duplicates.
    pub departments: Vec<String>,
    pub question: String,
    pub answer: Value,
    pub conversation_id: Option<String>,
    pub message_id: Option<i64>,
    pub reviewer: Option<String>,
    pub decided_ms: Option<i64>,
    /// The corrected answer text of an `edited` review.
    pub edited_answer: Option<String>,
    /// Why a `rejected` review was rejected, for the asker.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Edit { answer: String },
    Reject { reason: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueStats {
    pub pending: u64,
    /// How long the oldest pending review has waited; `None` when nothing is pending.
    pub oldest_pending_age_ms: Option<i64>,
}

/// The review queue in the application database. Reviews arrive at the pace of critical answers
/// and decisions at the pace of people.
pub struct ReviewStore {
    db: Db,
}

impl ReviewStore {
    /// Opens (creating if needed) the review tables in the embedded database file at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let store = Self::open_in(&crate::open_sqlite(path)?)?;
        tracing::debug!(path = %path.display(), "review store opened");
        Ok(store)
    }

    /// Opens (creating if needed) the review tables in the application database (SQLite or
    /// PostgreSQL).
    pub fn open_in(database: &Database) -> Result<Self, Error> {
        Ok(ReviewStore { db: database.store(&SCHEMA)? })
    }

    /// The insertion order, the tie-break of reviews created in the same millisecond.
    fn seq(&self) -> &'static str {
        match self.db.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        }
    }

    /// Queues a review as `pending`.
    pub fn create(&self, review: NewReview, now_ms: i64) -> Result<Review, Error> {
        for (field, value) in [("rule", &review.rule), ("asker", &review.asker), ("question", &review.question)] {
            if value.trim().is_empty() {
                return Err(Error::Invalid(format!("a review needs a {field}")));
            }
        }
        let mut departments: Vec<String> = review.departments.into_iter().filter(|d| !d.is_empty()).collect();
        departments.sort_unstable();
        departments.dedup();
        let created = Review {
            id: new_id(),
            created_ms: now_ms,
            mode: review.mode,
            rule: review.rule,
            status: Status::Pending,
            asker: review.asker,
            departments,
            question: review.question,
            answer: review.answer,
            conversation_id: review.conversation_id,
            message_id: review.message_id,
            reviewer: None,
            decided_ms: None,
            edited_answer: None,
            reason: None,
        };
        let review = &created;
        self.db.transaction(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO reviews ({COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, NULL, NULL, NULL)"
                ),
                params![
                    review.id.as_str(),
                    review.created_ms,
                    review.mode.as_str(),
                    review.rule.as_str(),
                    review.status.as_str(),
                    review.asker.as_str(),
                    Value::from(review.departments.clone()).to_string(),
                    review.question.as_str(),
                    review.answer.to_string(),
                    review.conversation_id.as_deref(),
                    review.message_id,
                ],
            )?;
            for department in &review.departments {
                tx.execute(
                    "INSERT INTO review_departments (department, review_id) VALUES (?1, ?2)",
                    params![department, review.id.as_str()],
                )?;
            }
            Ok(())
        })?;
        tracing::debug!(review = %created.id, rule = %created.rule, mode = created.mode.as_str(), "review queued");
        Ok(created)
    }

    pub fn get(&self, id: &str) -> Result<Option<Review>, Error> {
        self.db
            .query_opt(&format!("SELECT {COLUMNS} FROM reviews WHERE id = ?1"), params![id])?
            .map(|row| review_from_row(&row))
            .transpose()
    }

    /// Newest first; `departments` None = all (admins), Some(list) = reviews with any of those
    /// departments (an empty list sees nothing).
    pub fn list(
        &self,
        departments: Option<&[String]>,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<Review>, Error> {
        if departments.is_some_and(|d| d.is_empty()) || limit == 0 {
            return Ok(Vec::new());
        }
        let mut filter = Filter::new(self.db.dialect(), departments);
        if let Some(status) = status {
            filter.push("status = ?", status.as_str().to_owned());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM reviews {} ORDER BY created_ms DESC, {} DESC LIMIT {limit}",
                    filter.clause(),
                    self.seq()
                ),
                &filter.values,
            )?
            .iter()
            .map(review_from_row)
            .collect()
    }

    /// Only a pending review can be decided: Err(Error::AlreadyDecided(status)) otherwise;
    /// Ok(None) if absent.
    pub fn decide(&self, id: &str, reviewer: &str, decision: Decision, now_ms: i64) -> Result<Option<Review>, Error> {
        if reviewer.trim().is_empty() {
            return Err(Error::Invalid("a review decision needs a reviewer".into()));
        }
        let (status, edited_answer, reason) = match decision {
            Decision::Approve => (Status::Approved, None, None),
            Decision::Edit { answer } if answer.trim().is_empty() => {
                return Err(Error::Invalid("an edited answer must not be empty".into()));
            }
            Decision::Edit { answer } => (Status::Edited, Some(answer), None),
            Decision::Reject { reason } if reason.trim().is_empty() => {
                return Err(Error::Invalid("a rejection needs a reason for the asker".into()));
            }
            Decision::Reject { reason } => (Status::Rejected, None, Some(reason)),
        };
        // One transaction: on SQLite it takes the write lock before the read-back, so another
        // process cannot decide between this update and the read that reports it; on PostgreSQL
        // the updated row stays locked until the commit, and a racing update waits for it, then
        // finds the review no longer pending.
        let (changed, row) = self.db.transaction(|tx| {
            let changed = tx.execute(
                "UPDATE reviews SET status = ?2, reviewer = ?3, decided_ms = ?4, edited_answer = ?5, reason = ?6 \
                 WHERE id = ?1 AND status = 'pending'",
                params![id, status.as_str(), reviewer, now_ms, edited_answer, reason],
            )?;
            let row =
                tx.query(&format!("SELECT {COLUMNS} FROM reviews WHERE id = ?1"), params![id])?.into_iter().next();
            Ok((changed, row))
        })?;
        match row.as_ref().map(review_from_row).transpose()? {
            Some(review) if changed == 0 => Err(Error::AlreadyDecided(review.status)),
            Some(review) => {
                tracing::info!(review = %review.id, reviewer, status = status.as_str(), "review decided");
                Ok(Some(review))
            }
            None => Ok(None),
        }
    }

    /// Pending count and the age of the oldest pending review (ms), in the departments (None = all).
    pub fn queue_stats(&self, departments: Option<&[String]>, now_ms: i64) -> Result<QueueStats, Error> {
        if departments.is_some_and(|d| d.is_empty()) {
            return Ok(QueueStats::default());
        }
        let mut filter = Filter::new(self.db.dialect(), departments);
        filter.push("status = ?", Status::Pending.as_str().to_owned());
        let row = self
            .db
            .query_opt(&format!("SELECT COUNT(*), MIN(created_ms) FROM reviews {}", filter.clause()), &filter.values)?;
        let (pending, oldest): (i64, Option<i64>) = match row {
            Some(row) => (row.get(0)?, row.get(1)?),
            None => (0, None),
        };
        Ok(QueueStats {
            pending: pending.max(0) as u64,
            // A review stamped by a clock ahead of this one has waited no time, not negative time.
            oldest_pending_age_ms: oldest.map(|created| now_ms.saturating_sub(created).max(0)),
        })
    }

    /// Every review of a person's questions, newest first: for their data export.
    pub fn of_asker(&self, asker: &str) -> Result<Vec<Review>, Error> {
        self.db
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM reviews WHERE asker = ?1 ORDER BY created_ms DESC, {} DESC",
                    self.seq()
                ),
                params![asker],
            )?
            .iter()
            .map(review_from_row)
            .collect()
    }

    /// Deletes every review of a person's questions, pending or not (erasure outranks review).
    /// Returns how many.
    pub fn erase_asker(&self, asker: &str) -> Result<usize, Error> {
        let erased = self.delete_where("asker = ?1", asker)?;
        tracing::info!(erased, "reviews of an asker erased");
        Ok(erased)
    }

    /// Deletes decided reviews decided before `cutoff_ms`; pending ones stay whatever their age,
    /// since someone still has to decide them. Returns how many.
    pub fn purge_decided_before(&self, cutoff_ms: i64) -> Result<usize, Error> {
        self.delete_where("status != 'pending' AND decided_ms < ?1", cutoff_ms)
    }

    fn delete_where(&self, condition: &str, value: impl Into<lore_db::Value>) -> Result<usize, Error> {
        let value = [value.into()];
        Ok(self.db.transaction(|tx| {
            tx.execute(
                &format!(
                    "DELETE FROM review_departments WHERE review_id IN (SELECT id FROM reviews WHERE {condition})"
                ),
                &value,
            )?;
            tx.execute(&format!("DELETE FROM reviews WHERE {condition}"), &value)
        })?)
    }
}

/// A WHERE clause of AND-ed conditions, each with one parameter (`?` in the condition, numbered
/// here in order).
struct Filter {
    conditions: Vec<String>,
    values: Vec<lore_db::Value>,
}

impl Filter {
    /// Starts with the department scope: reviews with at least one of `departments`, through the
    /// department-first key of `review_departments`. The departments cross as one JSON list.
    fn new(dialect: Dialect, departments: Option<&[String]>) -> Filter {
        let mut filter = Filter { conditions: Vec::new(), values: Vec::new() };
        if let Some(departments) = departments {
            filter.push(
                &format!(
                    "id IN (SELECT review_id FROM review_departments WHERE department IN (SELECT p.value FROM {}))",
                    dialect.json_elements("?", "p")
                ),
                Value::from(departments.to_vec()).to_string(),
            );
        }
        filter
    }

    fn push(&mut self, condition: &str, value: String) {
        self.values.push(value.into());
        self.conditions.push(condition.replace('?', &format!("?{}", self.values.len())));
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() { String::new() } else { format!("WHERE {}", self.conditions.join(" AND ")) }
    }
}

fn review_from_row(row: &Row) -> Result<Review, Error> {
    let mode: String = row.get(2)?;
    let status: String = row.get(4)?;
    let departments: String = row.get(6)?;
    let answer: String = row.get(8)?;
    Ok(Review {
        id: row.get(0)?,
        created_ms: row.get(1)?,
        mode: ReviewMode::parse(&mode).ok_or_else(|| corrupt(2, format!("unknown review mode {mode:?}")))?,
        rule: row.get(3)?,
        status: Status::parse(&status).ok_or_else(|| corrupt(4, format!("unknown review status {status:?}")))?,
        asker: row.get(5)?,
        departments: serde_json::from_str(&departments)
            .map_err(|e| corrupt(6, format!("review departments are not a JSON list of strings: {e}")))?,
        question: row.get(7)?,
        answer: serde_json::from_str(&answer).map_err(|e| corrupt(8, format!("review answer is not JSON: {e}")))?,
        conversation_id: row.get(9)?,
        message_id: row.get(10)?,
        reviewer: row.get(11)?,
        decided_ms: row.get(12)?,
        edited_answer: row.get(13)?,
        reason: row.get(14)?,
    })
}

fn corrupt(column: usize, message: String) -> Error {
    lore_db::Error::Decode { column, message }.into()
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use serde_json::json;

    use lore_db::testing::on_both;

    use super::*;

    fn new_review(asker: &str, departments: &[&str]) -> NewReview {
        NewReview {
            mode: ReviewMode::After,
            rule: "legal".into(),
            asker: asker.into(),
            departments: departments.iter().map(|d| d.to_string()).collect(),
            question: format!("question from {asker}"),
            answer: json!({ "text": "the answer", "citations": [{ "document_id": "d1" }] }),
            conversation_id: Some("c1".into()),
            message_id: Some(7),
        }
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    fn ids(reviews: &[Review]) -> Vec<&str> {
        reviews.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn a_review_round_trips() {
        on_both("a_review_round_trips", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let review = NewReview { mode: ReviewMode::Before, ..new_review("ana", &["legal", "hr", "legal", ""]) };
            let created = store.create(review, 1_000).expect("create");
            assert_eq!(created.id.len(), 32);
            assert!(created.id.chars().all(|c| c.is_ascii_hexdigit()));
            assert_eq!(created.departments, strings(&["hr", "legal"]));
            assert_eq!(created.status, Status::Pending);
            let read = store.get(&created.id).expect("get").expect("present");
            assert_eq!(read, created);
            assert_eq!(read.mode, ReviewMode::Before);
            assert_eq!(read.answer["citations"][0]["document_id"], "d1");
            assert_eq!(read.message_id, Some(7));
            assert_eq!(store.get("0123").expect("get"), None);
        });
    }

    #[test]
    fn creating_needs_a_rule_an_asker_and_a_question() {
        on_both("creating_needs_a_rule_an_asker_and_a_question", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let error = store.create(NewReview { rule: " ".into(), ..new_review("ana", &[]) }, 1).expect_err("no rule");
            assert!(matches!(error, Error::Invalid(ref m) if m.contains("rule")), "{error}");
            assert!(store.create(new_review("", &[]), 1).is_err());
            assert!(store.list(None, None, 10).expect("list").is_empty());
        });
    }

    #[test]
    fn list_is_newest_first_and_scoped_by_department_and_status() {
        on_both("list_is_newest_first_and_scoped_by_department_and_status", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let legal = store.create(new_review("ana", &["legal"]), 1_000).expect("create");
            let both = store.create(new_review("bo", &["hr", "legal"]), 2_000).expect("create");
            let hr = store.create(new_review("cy", &["hr"]), 3_000).expect("create");
            let none = store.create(new_review("di", &[]), 4_000).expect("create");
            let same_time = store.create(new_review("ed", &["sales"]), 4_000).expect("create");

            let all = store.list(None, None, 100).expect("list");
            assert_eq!(ids(&all), [&same_time.id, &none.id, &hr.id, &both.id, &legal.id]);
            let legal_scope = store.list(Some(&strings(&["legal"])), None, 100).expect("list");
            assert_eq!(ids(&legal_scope), [&both.id, &legal.id]);
            let two = store.list(Some(&strings(&["legal", "hr"])), None, 100).expect("list");
            assert_eq!(ids(&two), [&hr.id, &both.id, &legal.id], "a review in both departments is listed once");
            assert!(store.list(Some(&[]), None, 100).expect("list").is_empty());
            assert!(store.list(Some(&strings(&["it"])), None, 100).expect("list").is_empty());
            assert_eq!(store.list(None, None, 2).expect("list").len(), 2);

            store.decide(&both.id, "kim", Decision::Approve, 5_000).expect("decide");
            let pending = store.list(Some(&strings(&["legal"])), Some(Status::Pending), 100).expect("list");
            assert_eq!(ids(&pending), [&legal.id]);
            let approved = store.list(None, Some(Status::Approved), 100).expect("list");
            assert_eq!(ids(&approved), [&both.id]);
            assert!(store.list(None, Some(Status::Rejected), 100).expect("list").is_empty());
        });
    }

    #[test]
    fn queue_stats_count_pending_reviews_in_scope() {
        on_both("queue_stats_count_pending_reviews_in_scope", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            assert_eq!(store.queue_stats(None, 10_000).expect("stats"), QueueStats::default());
            let old = store.create(new_review("ana", &["legal"]), 1_000).expect("create");
            store.create(new_review("bo", &["hr"]), 4_000).expect("create");
            store.create(new_review("cy", &["hr", "legal"]), 6_000).expect("create");

            let all = store.queue_stats(None, 10_000).expect("stats");
            assert_eq!(all, QueueStats { pending: 3, oldest_pending_age_ms: Some(9_000) });
            let hr = store.queue_stats(Some(&strings(&["hr"])), 10_000).expect("stats");
            assert_eq!(hr, QueueStats { pending: 2, oldest_pending_age_ms: Some(6_000) });
            assert_eq!(store.queue_stats(Some(&[]), 10_000).expect("stats"), QueueStats::default());

            store.decide(&old.id, "kim", Decision::Reject { reason: "outdated".into() }, 7_000).expect("decide");
            let legal = store.queue_stats(Some(&strings(&["legal"])), 10_000).expect("stats");
            assert_eq!(legal, QueueStats { pending: 1, oldest_pending_age_ms: Some(4_000) });
            let ahead = store.queue_stats(Some(&strings(&["legal"])), 5_000).expect("stats");
            assert_eq!(ahead.oldest_pending_age_ms, Some(0), "a clock behind the review's gives age zero");
        });
    }

    #[test]
    fn each_decision_sets_its_fields() {
        on_both("each_decision_sets_its_fields", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let [a, b, c] =
                ["a", "b", "c"].map(|asker| store.create(new_review(asker, &["legal"]), 1_000).expect("create"));

            let approved = store.decide(&a.id, "kim", Decision::Approve, 2_000).expect("decide").expect("present");
            assert_eq!(
                (approved.status, approved.reviewer.as_deref(), approved.decided_ms),
                (Status::Approved, Some("kim"), Some(2_000))
            );
            assert_eq!((approved.edited_answer, approved.reason), (None, None));

            let edited = store
                .decide(&b.id, "kim", Decision::Edit { answer: "fixed".into() }, 3_000)
                .expect("decide")
                .expect("present");
            assert_eq!((edited.status, edited.edited_answer.as_deref()), (Status::Edited, Some("fixed")));
            assert_eq!(edited.answer, b.answer, "the original answer is kept");

            let rejected = store
                .decide(&c.id, "lu", Decision::Reject { reason: "wrong".into() }, 4_000)
                .expect("decide")
                .expect("present");
            assert_eq!((rejected.status, rejected.reason.as_deref()), (Status::Rejected, Some("wrong")));
            assert_eq!(store.get(&c.id).expect("get"), Some(rejected));
        });
    }

    #[test]
    fn a_decided_review_cannot_be_decided_again() {
        on_both("a_decided_review_cannot_be_decided_again", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let review = store.create(new_review("ana", &["legal"]), 1_000).expect("create");
            store.decide(&review.id, "kim", Decision::Reject { reason: "no".into() }, 2_000).expect("decide");
            let again = store.decide(&review.id, "lu", Decision::Approve, 3_000);
            assert!(matches!(again, Err(Error::AlreadyDecided(Status::Rejected))), "{again:?}");
            let read = store.get(&review.id).expect("get").expect("present");
            assert_eq!(
                (read.status, read.reviewer.as_deref(), read.decided_ms),
                (Status::Rejected, Some("kim"), Some(2_000))
            );
            assert_eq!(store.decide("absent", "kim", Decision::Approve, 3_000).expect("decide"), None);
        });
    }

    #[test]
    fn empty_decisions_are_refused_and_change_nothing() {
        on_both("empty_decisions_are_refused_and_change_nothing", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let review = store.create(new_review("ana", &["legal"]), 1_000).expect("create");
            for decision in [Decision::Edit { answer: " ".into() }, Decision::Reject { reason: String::new() }] {
                assert!(matches!(store.decide(&review.id, "kim", decision, 2_000), Err(Error::Invalid(_))));
            }
            assert!(matches!(store.decide(&review.id, " ", Decision::Approve, 2_000), Err(Error::Invalid(_))));
            assert_eq!(store.get(&review.id).expect("get").expect("present").status, Status::Pending);
        });
    }

    /// Two reviewers, each through their own connection as two server processes would be.
    #[test]
    fn racing_reviewers_get_one_winner() {
        on_both("racing_reviewers_get_one_winner", |database| {
            let first = ReviewStore::open_in(database).expect("open");
            let second = ReviewStore::open_in(database).expect("open");
            for round in 0..20 {
                let review = first.create(new_review("ana", &["legal"]), round).expect("create");
                let barrier = Barrier::new(2);
                let (a, b) = std::thread::scope(|scope| {
                    let a = scope.spawn(|| {
                        barrier.wait();
                        first.decide(&review.id, "kim", Decision::Approve, 100)
                    });
                    let b = scope.spawn(|| {
                        barrier.wait();
                        second.decide(&review.id, "lu", Decision::Reject { reason: "no".into() }, 100)
                    });
                    (a.join().expect("thread"), b.join().expect("thread"))
                });
                let final_state = first.get(&review.id).expect("get").expect("present");
                match (a, b) {
                    (Ok(Some(won)), Err(Error::AlreadyDecided(Status::Approved))) => {
                        assert_eq!((won.status, final_state.reviewer.as_deref()), (Status::Approved, Some("kim")));
                    }
                    (Err(Error::AlreadyDecided(Status::Rejected)), Ok(Some(won))) => {
                        assert_eq!((won.status, final_state.reviewer.as_deref()), (Status::Rejected, Some("lu")));
                    }
                    other => panic!("round {round}: expected one winner, got {other:?}"),
                }
            }
        });
    }

    #[test]
    fn an_asker_is_exported_and_erased_whole() {
        on_both("an_asker_is_exported_and_erased_whole", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let first = store.create(new_review("ana", &["legal"]), 1_000).expect("create");
            let second = store.create(new_review("ana", &["hr"]), 2_000).expect("create");
            let other = store.create(new_review("bo", &["legal"]), 3_000).expect("create");
            store.decide(&first.id, "kim", Decision::Approve, 4_000).expect("decide");

            assert_eq!(ids(&store.of_asker("ana").expect("export")), [&second.id, &first.id]);
            assert_eq!(store.erase_asker("ana").expect("erase"), 2);
            assert!(store.of_asker("ana").expect("export").is_empty());
            assert_eq!(store.get(&first.id).expect("get"), None);
            assert_eq!(ids(&store.list(Some(&strings(&["legal", "hr"])), None, 10).expect("list")), [&other.id]);
            let departments: i64 = store.db.query("SELECT COUNT(*) FROM review_departments", params![]).expect("count")
                [0]
            .get(0)
            .expect("a count");
            assert_eq!(departments, 1, "the erased reviews' department rows go too");
            assert_eq!(store.erase_asker("ana").expect("erase"), 0);
        });
    }

    #[test]
    fn retention_purges_only_reviews_decided_before_the_cutoff() {
        on_both("retention_purges_only_reviews_decided_before_the_cutoff", |database| {
            let store = ReviewStore::open_in(database).expect("open");
            let [early, late, pending] =
                ["a", "b", "c"].map(|asker| store.create(new_review(asker, &["legal"]), 1_000).expect("create"));
            store.decide(&early.id, "kim", Decision::Approve, 2_000).expect("decide");
            store.decide(&late.id, "kim", Decision::Approve, 5_000).expect("decide");

            assert_eq!(store.purge_decided_before(5_000).expect("purge"), 1);
            assert_eq!(store.get(&early.id).expect("get"), None);
            assert!(store.get(&late.id).expect("get").is_some(), "decided at the cutoff stays");
            assert!(store.get(&pending.id).expect("get").is_some(), "pending stays whatever its age");
            assert_eq!(ids(&store.list(Some(&strings(&["legal"])), None, 10).expect("list")).len(), 2);
        });
    }

    #[test]
    fn reviews_survive_reopening() {
        on_both("reviews_survive_reopening", |database| {
            let created =
                ReviewStore::open_in(database).expect("open").create(new_review("ana", &["legal"]), 1).expect("create");
            let reopened = ReviewStore::open_in(database).expect("reopen");
            assert_eq!(reopened.get(&created.id).expect("get"), Some(created));
        });
    }

    /// The SQLite constructor: the embedded file (and its folder) is created and kept.
    #[test]
    fn the_embedded_file_keeps_reviews() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/catalog.sqlite");
        let created = ReviewStore::open(&path).expect("open").create(new_review("ana", &["legal"]), 1).expect("create");
        let reopened = ReviewStore::open(&path).expect("reopen");
        assert_eq!(reopened.get(&created.id).expect("get"), Some(created));
    }

    #[test]
    fn status_and_mode_names_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).expect("json"), json!(status.as_str()));
        }
        assert_eq!(Status::parse("done"), None);
        assert_eq!(ReviewMode::parse("before"), Some(ReviewMode::Before));
    }
}
