//! Conversations in the embedded database: a user reads and continues only their own.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// A query of the conversation store failed: the database is local, so this is a broken disk
/// or a bug, never the caller's doing.
#[derive(Debug, thiserror::Error)]
#[error("conversation store: {0}")]
pub struct ConversationError(#[from] rusqlite::Error);

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
    conn: Connection,
}

const SCHEMA: &str = r#"
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
"#;

impl Conversations {
    pub fn open(path: &Path) -> lore_core::Result<Self> {
        let conn = lore_core::db::open(path)?;
        conn.execute_batch(SCHEMA)?;
        lore_core::db::add_column_if_missing(&conn, "messages", "meta", "TEXT NOT NULL DEFAULT '{}'")?;
        Ok(Conversations { conn })
    }

    pub fn create(&self, owner: &str, title: &str) -> Result<String, ConversationError> {
        let id = new_id();
        let title: String = title.chars().take(120).collect();
        self.conn
            .execute("INSERT INTO conversations (id, owner, title) VALUES (?1, ?2, ?3)", params![id, owner, title])?;
        Ok(id)
    }

    /// Whether `id` exists and belongs to `owner` (others' conversations look nonexistent).
    pub fn owned_by(&self, id: &str, owner: &str) -> Result<bool, ConversationError> {
        self.any_row("SELECT 1 FROM conversations WHERE id = ?1 AND owner = ?2", params![id, owner])
    }

    /// Whether a conversation exists, whoever owns it (to audit refused reads; never tell
    /// the caller).
    pub fn exists(&self, id: &str) -> Result<bool, ConversationError> {
        self.any_row("SELECT 1 FROM conversations WHERE id = ?1", [id])
    }

    /// Whether a message exists, in whoever's conversation (to audit refused votes; never
    /// tell the caller).
    pub fn message_exists(&self, message_id: i64) -> Result<bool, ConversationError> {
        self.any_row("SELECT 1 FROM messages WHERE id = ?1", [message_id])
    }

    /// Whether the query finds a row.
    fn any_row(&self, sql: &str, params: impl rusqlite::Params) -> Result<bool, ConversationError> {
        Ok(self.conn.query_row(sql, params, |_| Ok(())).optional()?.is_some())
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
        self.conn.execute(
            "INSERT INTO messages (conversation_id, role, content, citations, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, role, content, citations.to_string(), meta.to_string()],
        )?;
        let message_id = self.conn.last_insert_rowid();
        self.conn.execute(
            "UPDATE conversations SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            params![id],
        )?;
        Ok(message_id)
    }

    /// The question before each of these assistant messages, with when it was asked; messages
    /// that no longer exist (deleted, expired) are left out.
    pub fn questions_before(&self, message_ids: &[i64]) -> Result<Vec<(String, String)>, ConversationError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT q.content, q.created_at FROM messages m JOIN messages q ON q.conversation_id = m.conversation_id \
             WHERE m.id = ?1 AND m.role = 'assistant' AND q.role = 'user' AND q.id < m.id ORDER BY q.id DESC LIMIT 1",
        )?;
        let mut questions = Vec::with_capacity(message_ids.len());
        for id in message_ids {
            if let Some(found) = statement.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional()? {
                questions.push(found);
            }
        }
        Ok(questions)
    }

    /// An assistant message of one of `owner`'s conversations, with the question before it.
    pub fn exchange(&self, message_id: i64, owner: &str) -> Result<Option<Exchange>, ConversationError> {
        let found = self
            .conn
            .query_row(
                "SELECT m.id, m.role, m.content, m.citations, m.meta, m.created_at, m.conversation_id, \
                 (SELECT q.content FROM messages q WHERE q.conversation_id = m.conversation_id AND q.id < m.id \
                  AND q.role = 'user' ORDER BY q.id DESC LIMIT 1) \
                 FROM messages m JOIN conversations c ON c.id = m.conversation_id \
                 WHERE m.id = ?1 AND c.owner = ?2 AND m.role = 'assistant'",
                params![message_id, owner],
                |r| {
                    Ok(Exchange {
                        answer: row_to_message(r)?,
                        conversation_id: r.get(6)?,
                        question: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                    })
                },
            )
            .optional()?;
        Ok(found)
    }

    pub fn list(&self, owner: &str) -> Result<Vec<ConversationSummary>, ConversationError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, title, created_at, updated_at FROM conversations WHERE owner = ?1 ORDER BY updated_at DESC, id",
        )?;
        let rows = stmt.query_map([owner], |r| {
            Ok(ConversationSummary { id: r.get(0)?, title: r.get(1)?, created_at: r.get(2)?, updated_at: r.get(3)? })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        let changed = self.conn.execute(
            "UPDATE messages SET content = ?2, citations = ?3, meta = ?4 WHERE id = ?1 AND role = 'assistant'",
            rusqlite::params![message_id, content, citations.to_string(), meta.to_string()],
        )?;
        Ok(changed > 0)
    }

    /// Deletes every conversation of `owner` with its messages (a person's erasure). Returns the
    /// conversations deleted.
    pub fn erase_owner(&self, owner: &str) -> Result<usize, ConversationError> {
        Ok(self.conn.execute("DELETE FROM conversations WHERE owner = ?1", [owner])?)
    }

    /// Deletes the conversations not continued since `cutoff_secs` (Unix time), with their
    /// messages: the retention of `[retention] conversations_days`.
    pub fn purge_idle_before(&self, cutoff_secs: i64) -> Result<usize, ConversationError> {
        Ok(self.conn.execute(
            "DELETE FROM conversations WHERE CAST(strftime('%s', updated_at) AS INTEGER) < ?1",
            [cutoff_secs],
        )?)
    }

    /// The messages of `id` if `owner` owns it.
    pub fn messages(&self, id: &str, owner: &str) -> Result<Option<Vec<Message>>, ConversationError> {
        if !self.owned_by(id, owner)? {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare(
            "SELECT id, role, content, citations, meta, created_at FROM messages WHERE conversation_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], row_to_message)?;
        Ok(Some(rows.collect::<rusqlite::Result<_>>()?))
    }
}

fn row_to_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
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
