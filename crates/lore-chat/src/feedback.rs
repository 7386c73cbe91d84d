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
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::conversations::Exchange;

/// A query of the feedback store failed: the database is local, so this is a broken disk or a
/// bug, never the caller's doing.
#[derive(Debug, thiserror::Error)]
#[error("feedback store: {0}")]
pub struct FeedbackError(#[from] rusqlite::Error);

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
    db: db::Store,
}

const SCHEMA: &str = r#"
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
"#;

const COLUMNS: &str = "id, message_id, conversation_id, user_id, rating, comment, question, answer, citations, kind, \
                       prompt_version, model, created_at, updated_at, departments";

impl FeedbackStore {
    pub fn open(path: &Path) -> lore_core::Result<Self> {
        let store = db::Store::open(path, SCHEMA)?;
        // A JSON array of department names; NULL in rows from before: admins only.
        db::add_column_if_missing(&store.conn(), "feedback", "departments", "TEXT")?;
        Ok(FeedbackStore { db: store })
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
        let now = db::now();
        let conn = self.db.conn();
        conn.execute(
            "INSERT INTO feedback (message_id, conversation_id, user_id, rating, comment, question, answer, citations, \
             kind, prompt_version, model, created_at, updated_at, departments) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13) \
             ON CONFLICT(message_id, user_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment, \
             updated_at = excluded.updated_at, departments = excluded.departments",
            params![
                exchange.answer.id,
                exchange.conversation_id,
                user,
                rating_str(rating),
                comment,
                exchange.question,
                exchange.answer.content,
                exchange.answer.citations.to_string(),
                text("kind"),
                text("prompt_version"),
                text("model"),
                now,
                departments
            ],
        )?;
        let id: i64 = conn.query_row(
            "SELECT id FROM feedback WHERE message_id = ?1 AND user_id = ?2",
            params![exchange.answer.id, user],
            |r| r.get(0),
        )?;
        Ok(conn
            .query_row(&format!("SELECT {COLUMNS} FROM feedback WHERE id = ?1"), [id], row_to_feedback)
            .optional()?
            .expect("feedback just written"))
    }

    /// The rating `user` gave the answer `message_id` so far, if any.
    pub fn rating_of(&self, message_id: i64, user: &str) -> Result<Option<Rating>, FeedbackError> {
        let rating: Option<String> = self
            .db
            .conn()
            .query_row(
                "SELECT rating FROM feedback WHERE message_id = ?1 AND user_id = ?2",
                params![message_id, user],
                |r| r.get(0),
            )
            .optional()?;
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
        let conn = self.db.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM feedback WHERE id = ?1"))?;
        let mut rows = stmt.query_map([id], row_to_feedback)?;
        Ok(rows.next().transpose()?)
    }

    /// Every vote `user` gave, oldest first (their share of a personal-data export).
    pub fn of_user(&self, user: &str) -> Result<Vec<Feedback>, FeedbackError> {
        let conn = self.db.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM feedback WHERE user_id = ?1 ORDER BY id"))?;
        let rows = stmt.query_map([user], row_to_feedback)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Deletes every vote `user` gave, with the exchanges they snapshot (a person's erasure);
    /// the vote counts in usage analytics stay, under the usage events' pseudonym.
    pub fn erase_user(&self, user: &str) -> Result<usize, FeedbackError> {
        Ok(self.db.conn().execute("DELETE FROM feedback WHERE user_id = ?1", [user])?)
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
        let conn = self.db.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM feedback WHERE (?1 IS NULL OR rating = ?1) AND id < ?2 \
             AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(feedback.departments) AS d \
                                        WHERE d.value IN (SELECT value FROM json_each(?4)))) \
             ORDER BY id DESC LIMIT ?3"
        ))?;
        let departments = departments.map(|d| serde_json::to_string(d).expect("strings serialize"));
        let rows = stmt.query_map(
            params![rating.map(rating_str), before.unwrap_or(i64::MAX), limit.clamp(1, 500) as i64, departments],
            row_to_feedback,
        )?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn rating_str(rating: Rating) -> &'static str {
    match rating {
        Rating::Up => "up",
        Rating::Down => "down",
    }
}

fn row_to_feedback(r: &rusqlite::Row<'_>) -> rusqlite::Result<Feedback> {
    let citations: String = r.get(8)?;
    Ok(Feedback {
        id: r.get(0)?,
        message_id: r.get(1)?,
        conversation_id: r.get(2)?,
        user: r.get(3)?,
        rating: if r.get::<_, String>(4)? == "up" { Rating::Up } else { Rating::Down },
        comment: r.get(5)?,
        question: r.get(6)?,
        answer: r.get(7)?,
        citations: serde_json::from_str(&citations).unwrap_or(serde_json::Value::Null),
        kind: r.get(9)?,
        prompt_version: r.get(10)?,
        model: r.get(11)?,
        created_at: db::rfc3339(r.get(12)?),
        updated_at: db::rfc3339(r.get(13)?),
        departments: r.get::<_, Option<String>>(14)?.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversations::Message;

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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        // A row from before departments were recorded.
        {
            let store = FeedbackStore::open(&path).unwrap();
            store.record("old", &exchange(1), Rating::Down, Some("old"), &[]).unwrap();
            store.db.conn().execute("UPDATE feedback SET departments = NULL", []).unwrap();
        }
        let store = FeedbackStore::open(&path).unwrap();
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
        assert!(store.list(None, None, 100).unwrap().iter().find(|f| f.user == "old").unwrap().departments.is_empty());
        // Voting again records the departments again.
        let again = store.record("ann", &exchange(2), Rating::Up, None, &["legal".into()]).unwrap();
        assert_eq!((again.id, again.departments), (hr.id, vec!["legal".to_owned()]));
    }
}
