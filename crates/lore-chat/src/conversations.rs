//! Conversations in the application database (SQLite in the embedded default, PostgreSQL in
//! scale-out): a user reads and continues only their own.
//!
//! Times are RFC 3339 UTC text with milliseconds (`2026-11-26T13:00:00.123Z`), taken from the
//! database's clock on both backends.

use std::path::Path;

use lore_db::{Database, Db, Dialect, Location, Migration, Row, Schema, params};
use serde::Serialize;

/// A query of the conversation store failed: a broken disk, an unreachable database server or
/// a bug, never the caller's doing.
#[derive(Debug, thiserror::Error)]
#[error("conversation store: {0}")]
pub struct ConversationError(#[from] lore_db::Error);

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationSummary {
    pub id: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Message {
    /// Give it to `POST /v1/feedback` to rate an assistant message.
    pub id: i64,
    pub role: String,
    pub content: String,
    /// Citations (JSON) of an assistant message.
    #[schema(value_type = Vec<crate::answer::Citation>)]
    pub citations: serde_json::Value,
    /// Of an assistant message: `kind`, `prompt_version`, `model`.
    #[schema(value_type = Object)]
    pub meta: serde_json::Value,
    pub created_at: String,
}

/// An assistant message with the question it answered, for feedback.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub conversation_id: String,
    pub question: String,
    pub answer: Message,
}

pub struct Conversations {
    db: Db,
}

/// The current time as the stored text, e.g. `2026-11-26T13:00:00.123Z`, in each dialect.
const NOW_SQLITE: &str = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";
const NOW_POSTGRES: &str = r#"to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"#;

const SCHEMA: Schema = Schema {
    name: "conversations",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have these tables; `meta` is
        // added by `open_in` where it is missing (older files may have it already).
        sqlite: r#"
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX IF NOT EXISTS conversations_by_owner ON conversations(owner, updated_at);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    citations TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, id);
"#,
        // Times compare and sort as text, byte by byte as in SQLite (collation "C").
        postgres: r#"
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
        DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
    updated_at TEXT COLLATE "C" NOT NULL
        DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
);
CREATE INDEX conversations_by_owner ON conversations(owner, updated_at);
CREATE TABLE messages (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    citations TEXT NOT NULL DEFAULT '[]',
    meta TEXT NOT NULL DEFAULT '{}',
    created_at TEXT COLLATE "C" NOT NULL
        DEFAULT (to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
"#,
    }],
};

impl Conversations {
    /// The conversations in the embedded database file.
    pub fn open(path: &Path) -> lore_core::Result<Self> {
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?)
    }

    /// The conversations in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> lore_core::Result<Self> {
        let db = database.store(&SCHEMA)?;
        if db.dialect() == Dialect::Sqlite {
            // Files made before migrations were recorded may have it already.
            db.add_column_if_missing("messages", "meta", "TEXT NOT NULL DEFAULT '{}'")?;
        }
        Ok(Conversations { db })
    }

    fn now_sql(&self) -> &'static str {
        match self.db.dialect() {
            Dialect::Sqlite => NOW_SQLITE,
            Dialect::Postgres => NOW_POSTGRES,
        }
    }

    pub fn create(&self, owner: &str, title: &str) -> Result<String, ConversationError> {
        let id = new_id();
        let title: String = title.chars().take(120).collect();
        self.db.execute(
            "INSERT INTO conversations (id, owner, title) VALUES (?1, ?2, ?3)",
            params![id.as_str(), owner, title],
        )?;
        Ok(id)
    }

    /// Whether `id` exists and belongs to `owner` (others' conversations look nonexistent).
    pub fn owned_by(&self, id: &str, owner: &str) -> Result<bool, ConversationError> {
        self.any_row("SELECT 1 FROM conversations WHERE id = ?1 AND owner = ?2", params![id, owner])
    }

    /// Whether a conversation exists, whoever owns it (to audit refused reads; never tell
    /// the caller).
    pub fn exists(&self, id: &str) -> Result<bool, ConversationError> {
        self.any_row("SELECT 1 FROM conversations WHERE id = ?1", params![id])
    }

    /// Whether a message exists, in whoever's conversation (to audit refused votes; never
    /// tell the caller).
    pub fn message_exists(&self, message_id: i64) -> Result<bool, ConversationError> {
        self.any_row("SELECT 1 FROM messages WHERE id = ?1", params![message_id])
    }

    /// Whether the query finds a row.
    fn any_row(&self, sql: &str, params: &[lore_db::Value]) -> Result<bool, ConversationError> {
        Ok(self.db.query_opt(sql, params)?.is_some())
    }

    /// Appends a message; returns its id.
    pub fn append(
        &self,
        id: &str,
        role: &str,
        content: &str,
        citations: &serde_json::Value,
        meta: &serde_json::Value,
    ) -> Result<i64, ConversationError> {
        let touch = format!("UPDATE conversations SET updated_at = {} WHERE id = ?1", self.now_sql());
        let message_id = self.db.transaction(|tx| {
            let row = tx
                .query(
                    "INSERT INTO messages (conversation_id, role, content, citations, meta) \
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    params![id, role, content, citations.to_string(), meta.to_string()],
                )?
                .into_iter()
                .next()
                .ok_or_else(|| lore_db::Error::Other("INSERT … RETURNING gave no row".into()))?;
            tx.execute(&touch, params![id])?;
            row.get::<i64>(0)
        })?;
        Ok(message_id)
    }

    /// The question before each of these assistant messages, with when it was asked; messages
    /// that no longer exist (deleted, expired) are left out.
    pub fn questions_before(&self, message_ids: &[i64]) -> Result<Vec<(String, String)>, ConversationError> {
        let mut questions = Vec::with_capacity(message_ids.len());
        for id in message_ids {
            let found = self.db.query_opt(
                "SELECT q.content, q.created_at FROM messages m JOIN messages q ON q.conversation_id = m.conversation_id \
                 WHERE m.id = ?1 AND m.role = 'assistant' AND q.role = 'user' AND q.id < m.id ORDER BY q.id DESC LIMIT 1",
                params![*id],
            )?;
            if let Some(r) = found {
                questions.push((r.get(0)?, r.get(1)?));
            }
        }
        Ok(questions)
    }

    /// An assistant message of one of `owner`'s conversations, with the question before it.
    pub fn exchange(&self, message_id: i64, owner: &str) -> Result<Option<Exchange>, ConversationError> {
        let found = self.db.query_opt(
            "SELECT m.id, m.role, m.content, m.citations, m.meta, m.created_at, m.conversation_id, \
             (SELECT q.content FROM messages q WHERE q.conversation_id = m.conversation_id AND q.id < m.id \
              AND q.role = 'user' ORDER BY q.id DESC LIMIT 1) \
             FROM messages m JOIN conversations c ON c.id = m.conversation_id \
             WHERE m.id = ?1 AND c.owner = ?2 AND m.role = 'assistant'",
            params![message_id, owner],
        )?;
        let Some(r) = found else { return Ok(None) };
        Ok(Some(Exchange {
            answer: row_to_message(&r)?,
            conversation_id: r.get(6)?,
            question: r.get::<Option<String>>(7)?.unwrap_or_default(),
        }))
    }

    pub fn list(&self, owner: &str) -> Result<Vec<ConversationSummary>, ConversationError> {
        self.db
            .query(
                "SELECT id, title, created_at, updated_at FROM conversations WHERE owner = ?1 \
                 ORDER BY updated_at DESC, id",
                params![owner],
            )?
            .iter()
            .map(|r| {
                Ok(ConversationSummary {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    created_at: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })
            .collect()
    }

    /// Replaces an assistant message's text, citations and metadata: an answer held for review
    /// shows a notice until a reviewer releases it. Returns whether the message exists.
    pub fn replace_message(
        &self,
        message_id: i64,
        content: &str,
        citations: &serde_json::Value,
        meta: &serde_json::Value,
    ) -> Result<bool, ConversationError> {
        let changed = self.db.execute(
            "UPDATE messages SET content = ?2, citations = ?3, meta = ?4 WHERE id = ?1 AND role = 'assistant'",
            params![message_id, content, citations.to_string(), meta.to_string()],
        )?;
        Ok(changed > 0)
    }

    /// Deletes every conversation of `owner` with its messages (a person's erasure). Returns the
    /// conversations deleted.
    pub fn erase_owner(&self, owner: &str) -> Result<usize, ConversationError> {
        Ok(self.db.execute("DELETE FROM conversations WHERE owner = ?1", params![owner])?)
    }

    /// Deletes the conversations not continued since `cutoff_secs` (Unix time), with their
    /// messages: the retention of `[retention] conversations_days`.
    pub fn purge_idle_before(&self, cutoff_secs: i64) -> Result<usize, ConversationError> {
        let sql = match self.db.dialect() {
            Dialect::Sqlite => "DELETE FROM conversations WHERE CAST(strftime('%s', updated_at) AS INTEGER) < ?1",
            Dialect::Postgres => {
                "DELETE FROM conversations WHERE CAST(updated_at AS TIMESTAMPTZ) < to_timestamp(CAST(?1 AS BIGINT))"
            }
        };
        Ok(self.db.execute(sql, params![cutoff_secs])?)
    }

    /// The messages of `id` if `owner` owns it.
    pub fn messages(&self, id: &str, owner: &str) -> Result<Option<Vec<Message>>, ConversationError> {
        if !self.owned_by(id, owner)? {
            return Ok(None);
        }
        let messages = self
            .db
            .query(
                "SELECT id, role, content, citations, meta, created_at FROM messages WHERE conversation_id = ?1 \
                 ORDER BY id",
                params![id],
            )?
            .iter()
            .map(row_to_message)
            .collect::<lore_db::Result<_>>()?;
        Ok(Some(messages))
    }
}

fn row_to_message(r: &Row) -> lore_db::Result<Message> {
    let citations: String = r.get(3)?;
    let meta: String = r.get(4)?;
    Ok(Message {
        id: r.get(0)?,
        role: r.get(1)?,
        content: r.get(2)?,
        citations: serde_json::from_str(&citations).unwrap_or(serde_json::Value::Null),
        meta: serde_json::from_str(&meta).unwrap_or(serde_json::Value::Null),
        created_at: r.get(5)?,
    })
}

fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("c_{}", lore_core::types::sha256_hex(&bytes)[..24].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lore_db::testing::on_both;

    /// Stored times: RFC 3339 UTC text with milliseconds, e.g. `2026-11-26T13:00:00.123Z`.
    fn assert_time(text: &str) {
        let bytes = text.as_bytes();
        assert_eq!(bytes.len(), 24, "{text}");
        for (i, b) in bytes.iter().enumerate() {
            let expected = match i {
                4 | 7 => b'-',
                10 => b'T',
                13 | 16 => b':',
                19 => b'.',
                23 => b'Z',
                _ => {
                    assert!(b.is_ascii_digit(), "{text}");
                    continue;
                }
            };
            assert_eq!(*b, expected, "{text}");
        }
        let secs = lore_core::db::parse_rfc3339(&text[..19]).unwrap();
        assert!((secs - lore_core::db::now()).abs() < 60, "{text} is now");
    }

    #[test]
    fn conversations_belong_to_their_owner_and_keep_their_exchanges() {
        on_both("conversations_belong_to_their_owner_and_keep_their_exchanges", |database| {
            let store = Conversations::open_in(database).unwrap();
            let none = serde_json::json!([]);
            let id = store.create("ann", &"t".repeat(200)).unwrap();
            let other = store.create("bo", "Other").unwrap();
            assert!(store.owned_by(&id, "ann").unwrap() && !store.owned_by(&id, "bo").unwrap());
            assert!(store.exists(&id).unwrap() && !store.exists("c_missing").unwrap());

            let question = store.append(&id, "user", "Where is the VPN guide?", &none, &serde_json::json!({})).unwrap();
            let citations = serde_json::json!([{"document_id": "vpn"}]);
            let meta = serde_json::json!({"kind": "grounded", "model": "m"});
            let answer = store.append(&id, "assistant", "In IT.", &citations, &meta).unwrap();
            assert!(answer > question);
            assert!(store.message_exists(answer).unwrap() && !store.message_exists(answer + 100).unwrap());
            store.append(&other, "user", "Hello?", &none, &serde_json::json!({})).unwrap();

            let messages = store.messages(&id, "ann").unwrap().unwrap();
            assert_eq!(messages.iter().map(|m| m.id).collect::<Vec<_>>(), [question, answer]);
            assert_eq!((&messages[1].citations, &messages[1].meta), (&citations, &meta));
            messages.iter().for_each(|m| assert_time(&m.created_at));
            assert!(store.messages(&id, "bo").unwrap().is_none(), "others' conversations look nonexistent");

            let exchange = store.exchange(answer, "ann").unwrap().unwrap();
            assert_eq!(
                (exchange.conversation_id.as_str(), exchange.question.as_str(), exchange.answer.content.as_str()),
                (id.as_str(), "Where is the VPN guide?", "In IT.")
            );
            assert!(store.exchange(answer, "bo").unwrap().is_none());
            assert!(store.exchange(question, "ann").unwrap().is_none(), "only assistant messages");
            let asked = store.questions_before(&[answer, question, answer + 100]).unwrap();
            assert_eq!(asked.len(), 1);
            assert_eq!(asked[0].0, "Where is the VPN guide?");
            assert_time(&asked[0].1);

            assert!(store.replace_message(answer, "Held for review.", &none, &serde_json::json!({})).unwrap());
            assert!(!store.replace_message(question, "x", &none, &serde_json::json!({})).unwrap());
            assert_eq!(store.messages(&id, "ann").unwrap().unwrap()[1].content, "Held for review.");

            let listed = store.list("ann").unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!((listed[0].id.as_str(), listed[0].title.chars().count()), (id.as_str(), 120));
            assert_time(&listed[0].created_at);
            assert!(listed[0].updated_at >= listed[0].created_at);
            let older = store.create("ann", "Older").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
            store.append(&id, "user", "And the wiki?", &none, &serde_json::json!({})).unwrap();
            let order: Vec<String> = store.list("ann").unwrap().into_iter().map(|c| c.id).collect();
            assert_eq!(order, [id.clone(), older.clone()], "most recently continued first");

            let now = lore_core::db::now();
            assert_eq!(store.purge_idle_before(now - 3600).unwrap(), 0, "nothing is an hour old");
            assert_eq!(store.erase_owner("bo").unwrap(), 1);
            assert!(!store.exists(&other).unwrap());
            assert_eq!(store.purge_idle_before(now + 2).unwrap(), 2);
            assert!(store.list("ann").unwrap().is_empty());
            assert!(!store.message_exists(answer).unwrap(), "messages go with their conversation");
        });
    }

    #[test]
    fn a_database_from_before_migrations_were_recorded_opens_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            // What `open` made before: the first schema, then `meta` added.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA.migrations[0].sqlite).unwrap();
            conn.execute_batch("ALTER TABLE messages ADD COLUMN meta TEXT NOT NULL DEFAULT '{}'").unwrap();
            conn.execute_batch(
                "INSERT INTO conversations (id, owner, title) VALUES ('c_old', 'ann', 'Old'); \
                 INSERT INTO messages (conversation_id, role, content, meta) VALUES ('c_old', 'assistant', 'Hi', '{\"kind\":\"x\"}');",
            )
            .unwrap();
        }
        for _ in 0..2 {
            let store = Conversations::open(&path).unwrap();
            let messages = store.messages("c_old", "ann").unwrap().unwrap();
            assert_eq!(messages[0].meta, serde_json::json!({"kind": "x"}));
        }
    }
}
