//! Conversations in the embedded database: a user reads and continues only their own.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationSummary {
    pub id: String,
    pub title: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// Citations (JSON) of an assistant message.
    #[schema(value_type = Vec<crate::answer::Citation>)]
    pub citations: serde_json::Value,
    pub created_at: String,
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
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Conversations { conn })
    }

    pub fn create(&self, owner: &str, title: &str) -> rusqlite::Result<String> {
        let id = new_id();
        let title: String = title.chars().take(120).collect();
        self.conn
            .execute("INSERT INTO conversations (id, owner, title) VALUES (?1, ?2, ?3)", params![id, owner, title])?;
        Ok(id)
    }

    /// Whether `id` exists and belongs to `owner` (others' conversations look nonexistent).
    pub fn owned_by(&self, id: &str, owner: &str) -> rusqlite::Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM conversations WHERE id = ?1 AND owner = ?2", params![id, owner], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub fn append(&self, id: &str, role: &str, content: &str, citations: &serde_json::Value) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT INTO messages (conversation_id, role, content, citations) VALUES (?1, ?2, ?3, ?4)",
            params![id, role, content, citations.to_string()],
        )?;
        self.conn.execute(
            "UPDATE conversations SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE id = ?1",
            params![id],
        )?;
        Ok(())
    }

    pub fn list(&self, owner: &str) -> rusqlite::Result<Vec<ConversationSummary>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, title, created_at, updated_at FROM conversations WHERE owner = ?1 ORDER BY updated_at DESC, id",
        )?;
        let rows = stmt.query_map([owner], |r| {
            Ok(ConversationSummary { id: r.get(0)?, title: r.get(1)?, created_at: r.get(2)?, updated_at: r.get(3)? })
        })?;
        rows.collect()
    }

    /// The messages of `id` if `owner` owns it.
    pub fn messages(&self, id: &str, owner: &str) -> rusqlite::Result<Option<Vec<Message>>> {
        if !self.owned_by(id, owner)? {
            return Ok(None);
        }
        let mut stmt = self.conn.prepare(
            "SELECT role, content, citations, created_at FROM messages WHERE conversation_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([id], |r| {
            let citations: String = r.get(2)?;
            Ok(Message {
                role: r.get(0)?,
                content: r.get(1)?,
                citations: serde_json::from_str(&citations).unwrap_or(serde_json::Value::Null),
                created_at: r.get(3)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map(Some)
    }
}

fn new_id() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("c_{}", lore_core::types::sha256_hex(&bytes)[..24].to_owned())
}
