//! Feedback on answers: thumbs up or down with an optional comment, stored with a snapshot of
//! the question, answer, citations and prompt version, for the knowledge managers' review.
//! One vote per user and message; voting again replaces it.
//!
//! Each entry also records the departments responsible for it, decided when the vote is
//! recorded: those owning the collections of the cited documents, else the asker's own. A
//! knowledge manager reviews the entries of their departments only; an entry without a
//! department (and every entry recorded before departments were) is for admins only.

use std::path::Path;

use lore_core::db;
use lore_db::{Database, Db, Dialect, Location, Migration, Row, Schema, params};
use serde::{Deserialize, Serialize};

use crate::conversations::Exchange;

/// A query of the feedback store failed: a broken disk, an unreachable database server or a
/// bug, never the caller's doing.
#[derive(Debug, thiserror::Error)]
#[error("feedback store: {0}")]
pub struct FeedbackError(#[from] lore_db::Error);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Feedback {
    pub id: i64,
    pub message_id: i64,
    pub conversation_id: String,
    pub user: String,
    pub rating: Rating,
    pub comment: Option<String>,
    pub question: String,
    pub answer: String,
    #[schema(value_type = Vec<crate::answer::Citation>)]
    pub citations: serde_json::Value,
    pub kind: Option<String>,
    pub prompt_version: Option<String>,
    pub model: Option<String>,
    /// The departments whose knowledge managers review this entry (none: admins only).
    pub departments: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

pub struct FeedbackStore {
    db: Db,
}

const SCHEMA: Schema = Schema {
    name: "feedback",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have this table;
        // `departments` is added by `open_in` where it is missing (older files may have it).
        sqlite: r#"
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    rating TEXT NOT NULL,
    comment TEXT,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    kind TEXT,
    prompt_version TEXT,
    model TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (message_id, user_id)
);
CREATE INDEX IF NOT EXISTS feedback_by_rating ON feedback(rating, id);
"#,
        postgres: r#"
CREATE TABLE feedback (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id BIGINT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    rating TEXT NOT NULL,
    comment TEXT,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    citations TEXT NOT NULL,
    kind TEXT,
    prompt_version TEXT,
    model TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    departments TEXT,
    UNIQUE (message_id, user_id)
);
CREATE INDEX feedback_by_rating ON feedback(rating, id);
"#,
    }],
};

const COLUMNS: &str = "id, message_id, conversation_id, user_id, rating, comment, question, answer, citations, kind, \
                       prompt_version, model, created_at, updated_at, departments";

impl FeedbackStore {
    /// The feedback in the embedded database file.
    pub fn open(path: &Path) -> lore_core::Result<Self> {
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?)
    }

    /// The feedback in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> lore_core::Result<Self> {
        let db = database.store(&SCHEMA)?;
        // A JSON array of department names; NULL in rows from before: admins only.
        if db.dialect() == Dialect::Sqlite {
            // Files made before migrations were recorded may have it already.
            db.add_column_if_missing("feedback", "departments", "TEXT")?;
        }
        Ok(FeedbackStore { db })
    }

    /// Records (or replaces) `user`'s vote on the exchange, reviewed by the knowledge managers
    /// of `departments` (deduplicated; none: admins only).
    pub fn record(
        &self,
        user: &str,
        exchange: &Exchange,
        rating: Rating,
        comment: Option<&str>,
        departments: &[String],
    ) -> Result<Feedback, FeedbackError> {
        let meta = &exchange.answer.meta;
        let text = |key: &str| meta.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let mut departments = departments.to_vec();
        departments.sort();
        departments.dedup();
        let departments = serde_json::to_string(&departments).expect("strings serialize");
        let row = self.db.query_opt(
            &format!(
                "INSERT INTO feedback (message_id, conversation_id, user_id, rating, comment, question, answer, \
                 citations, kind, prompt_version, model, created_at, updated_at, departments) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13) \
                 ON CONFLICT (message_id, user_id) DO UPDATE SET rating = excluded.rating, \
                 comment = excluded.comment, updated_at = excluded.updated_at, departments = excluded.departments \
                 RETURNING {COLUMNS}"
            ),
            params![
                exchange.answer.id,
                exchange.conversation_id.as_str(),
                user,
                rating_str(rating),
                comment,
                exchange.question.as_str(),
                exchange.answer.content.as_str(),
                exchange.answer.citations.to_string(),
                text("kind"),
                text("prompt_version"),
                text("model"),
                db::now(),
                departments
            ],
        )?;
        Ok(row_to_feedback(&row.expect("INSERT … RETURNING gives the row"))?)
    }

    /// The rating `user` gave the answer `message_id` so far, if any.
    pub fn rating_of(&self, message_id: i64, user: &str) -> Result<Option<Rating>, FeedbackError> {
        let rating: Option<String> = self
            .db
            .query_opt("SELECT rating FROM feedback WHERE message_id = ?1 AND user_id = ?2", params![message_id, user])?
            .map(|r| r.get(0))
            .transpose()?;
        Ok(rating.map(|r| if r == rating_str(Rating::Up) { Rating::Up } else { Rating::Down }))
    }

    /// Feedback newest first, optionally of one rating, after id `before` for paging.
    pub fn list(
        &self,
        rating: Option<Rating>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Feedback>, FeedbackError> {
        self.list_scoped(rating, before, limit, None)
    }

    /// One entry by id.
    pub fn get(&self, id: i64) -> Result<Option<Feedback>, FeedbackError> {
        Ok(self
            .db
            .query_opt(&format!("SELECT {COLUMNS} FROM feedback WHERE id = ?1"), params![id])?
            .map(|r| row_to_feedback(&r))
            .transpose()?)
    }

    /// Every vote `user` gave, oldest first (their share of a personal-data export).
    pub fn of_user(&self, user: &str) -> Result<Vec<Feedback>, FeedbackError> {
        self.entries(&format!("SELECT {COLUMNS} FROM feedback WHERE user_id = ?1 ORDER BY id"), params![user])
    }

    /// Deletes every vote `user` gave, with the exchanges they snapshot (a person's erasure);
    /// the vote counts in usage analytics stay, under the usage events' pseudonym.
    pub fn erase_user(&self, user: &str) -> Result<usize, FeedbackError> {
        Ok(self.db.execute("DELETE FROM feedback WHERE user_id = ?1", params![user])?)
    }

    /// As [`FeedbackStore::list`]; with `departments`, only the entries recorded for at least
    /// one of them (entries without departments never match).
    pub fn list_scoped(
        &self,
        rating: Option<Rating>,
        before: Option<i64>,
        limit: usize,
        departments: Option<&[String]>,
    ) -> Result<Vec<Feedback>, FeedbackError> {
        // `departments` columns and `?4` are JSON arrays of names.
        let dialect = self.db.dialect();
        let shared_department = format!(
            "SELECT 1 FROM {} WHERE d.value IN (SELECT p.value FROM {})",
            dialect.json_elements("feedback.departments", "d"),
            dialect.json_elements("?4", "p")
        );
        let departments = departments.map(|d| serde_json::to_string(d).expect("strings serialize"));
        self.entries(
            &format!(
                "SELECT {COLUMNS} FROM feedback WHERE (CAST(?1 AS TEXT) IS NULL OR rating = ?1) AND id < ?2 \
                 AND (CAST(?4 AS TEXT) IS NULL OR EXISTS ({shared_department})) \
                 ORDER BY id DESC LIMIT ?3"
            ),
            params![rating.map(rating_str), before.unwrap_or(i64::MAX), limit.clamp(1, 500) as i64, departments],
        )
    }

    fn entries(&self, sql: &str, params: &[lore_db::Value]) -> Result<Vec<Feedback>, FeedbackError> {
        Ok(self.db.query(sql, params)?.iter().map(row_to_feedback).collect::<lore_db::Result<_>>()?)
    }
}

fn rating_str(rating: Rating) -> &'static str {
    match rating {
        Rating::Up => "up",
        Rating::Down => "down",
    }
}

fn row_to_feedback(r: &Row) -> lore_db::Result<Feedback> {
    let citations: String = r.get(8)?;
    Ok(Feedback {
        id: r.get(0)?,
        message_id: r.get(1)?,
        conversation_id: r.get(2)?,
        user: r.get(3)?,
        rating: if r.get::<String>(4)? == "up" { Rating::Up } else { Rating::Down },
        comment: r.get(5)?,
        question: r.get(6)?,
        answer: r.get(7)?,
        citations: serde_json::from_str(&citations).unwrap_or(serde_json::Value::Null),
        kind: r.get(9)?,
        prompt_version: r.get(10)?,
        model: r.get(11)?,
        created_at: db::rfc3339(r.get(12)?),
        updated_at: db::rfc3339(r.get(13)?),
        departments: r.get::<Option<String>>(14)?.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::Message;
    use lore_db::testing::on_both;

    fn exchange(id: i64) -> Exchange {
        Exchange {
            conversation_id: "c_1".into(),
            question: "Am I on the layoff list?".into(),
            answer: Message {
                id,
                role: "assistant".into(),
                content: "Not in the knowledge base.".into(),
                citations: serde_json::json!([]),
                meta: serde_json::json!({ "kind": "no_answer" }),
                created_at: String::new(),
            },
        }
    }

    #[test]
    fn entries_are_listed_for_their_departments_only() {
        on_both("entries_are_listed_for_their_departments_only", |database| {
            // A row from before departments were recorded.
            {
                let store = FeedbackStore::open_in(database).unwrap();
                store.record("old", &exchange(1), Rating::Down, Some("old"), &[]).unwrap();
                store.db.execute("UPDATE feedback SET departments = NULL", params![]).unwrap();
            }
            let store = FeedbackStore::open_in(database).unwrap();
            let hr = store.record("ann", &exchange(2), Rating::Down, Some("hr"), &["hr".into(), "hr".into()]).unwrap();
            assert_eq!(hr.departments, ["hr"]);
            store.record("bo", &exchange(3), Rating::Up, None, &["sales".into(), "hr".into()]).unwrap();
            store.record("cy", &exchange(4), Rating::Up, None, &[]).unwrap();
            let users = |departments: Option<&[String]>| -> Vec<String> {
                store.list_scoped(None, None, 100, departments).unwrap().into_iter().map(|f| f.user).collect()
            };
            assert_eq!(users(Some(&["hr".into()])), ["bo", "ann"]);
            assert_eq!(users(Some(&["sales".into(), "legal".into()])), ["bo"]);
            assert!(users(Some(&[])).is_empty());
            assert_eq!(users(None), ["cy", "bo", "ann", "old"]);
            assert!(
                store.list(None, None, 100).unwrap().iter().find(|f| f.user == "old").unwrap().departments.is_empty()
            );
            // Voting again records the departments again.
            let again = store.record("ann", &exchange(2), Rating::Up, None, &["legal".into()]).unwrap();
            assert_eq!((again.id, again.departments), (hr.id, vec!["legal".to_owned()]));
        });
    }

    #[test]
    fn votes_are_read_back_paged_and_erased() {
        on_both("votes_are_read_back_paged_and_erased", |database| {
            let store = FeedbackStore::open_in(database).unwrap();
            let mut answered = exchange(7);
            answered.answer.citations = serde_json::json!([{"document_id": "vpn"}]);
            answered.answer.meta = serde_json::json!({"kind": "grounded", "prompt_version": "v3", "model": "m"});
            let first = store.record("ann", &answered, Rating::Up, Some("clear"), &[]).unwrap();
            assert_eq!(
                (first.message_id, first.conversation_id.as_str(), first.rating, first.comment.as_deref()),
                (7, "c_1", Rating::Up, Some("clear"))
            );
            assert_eq!(
                (first.kind.as_deref(), first.prompt_version.as_deref(), first.model.as_deref()),
                (Some("grounded"), Some("v3"), Some("m"))
            );
            assert_eq!(first.citations, answered.answer.citations);
            assert_eq!(db::parse_rfc3339(&first.created_at).map(|t| (t - db::now()).abs() < 60), Some(true));
            let second = store.record("bo", &exchange(8), Rating::Down, None, &[]).unwrap();
            let third = store.record("ann", &exchange(9), Rating::Down, None, &[]).unwrap();
            assert!(first.id < second.id && second.id < third.id);

            assert_eq!(store.rating_of(7, "ann").unwrap(), Some(Rating::Up));
            assert_eq!(store.rating_of(7, "bo").unwrap(), None);
            let replaced = store.record("ann", &answered, Rating::Down, None, &[]).unwrap();
            assert_eq!((replaced.id, replaced.comment), (first.id, None));
            assert_eq!(store.rating_of(7, "ann").unwrap(), Some(Rating::Down));

            let ids = |entries: Vec<Feedback>| entries.into_iter().map(|f| f.id).collect::<Vec<_>>();
            assert_eq!(ids(store.list(None, None, 100).unwrap()), [third.id, second.id, first.id]);
            assert_eq!(ids(store.list(Some(Rating::Down), Some(third.id), 100).unwrap()), [second.id, first.id]);
            assert_eq!(ids(store.list(Some(Rating::Up), None, 100).unwrap()), Vec::<i64>::new());
            assert_eq!(ids(store.list(None, None, 1).unwrap()), [third.id]);
            assert_eq!(store.get(second.id).unwrap().unwrap().user, "bo");
            assert!(store.get(third.id + 100).unwrap().is_none());
            assert_eq!(ids(store.of_user("ann").unwrap()), [first.id, third.id]);

            assert_eq!(store.erase_user("ann").unwrap(), 2);
            assert!(store.of_user("ann").unwrap().is_empty());
            assert_eq!(ids(store.list(None, None, 100).unwrap()), [second.id]);
        });
    }

    #[test]
    fn a_database_from_before_migrations_were_recorded_opens_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            // What `open` made before: the first schema, then `departments` added.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA.migrations[0].sqlite).unwrap();
            conn.execute_batch("ALTER TABLE feedback ADD COLUMN departments TEXT").unwrap();
        }
        for user in ["ann", "bo"] {
            let store = FeedbackStore::open(&path).unwrap();
            store.record(user, &exchange(1), Rating::Up, None, &["hr".into()]).unwrap();
        }
        let store = FeedbackStore::open(&path).unwrap();
        assert_eq!(store.list_scoped(None, None, 10, Some(&["hr".into()])).unwrap().len(), 2);
    }
}
