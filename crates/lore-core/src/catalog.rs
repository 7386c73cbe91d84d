//! The catalog: an embedded SQLite database holding document records, chunk texts and the
//! ingest journal. It is the source of truth for what the indexes should contain.
//!
//! Crash consistency works through the journal: before a document's chunks are touched in
//! either index, its id is journaled (committed); the index writes follow; the catalog rows
//! and the journal removal are committed in one transaction afterwards. On the next open,
//! every journaled document is removed from both indexes and the catalog, so a rerun
//! ingests it afresh. No state exists in which the indexes disagree after recovery.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::acl::Acl;
use crate::db;
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::types::{Chunk, Collection, DocumentRecord};

pub struct Catalog {
    conn: Connection,
}

/// A document to write with its chunks and, optionally, their embeddings (in chunk order).
#[derive(Debug, Clone)]
pub struct Upsert {
    pub record: DocumentRecord,
    pub chunks: Vec<Chunk>,
    pub embeddings: Vec<StoredVector>,
}

/// Whether a document's fingerprint says it was changed through the API since its source
/// bytes were ingested (see [`Catalog::mark_edited`]).
pub fn is_edited(fingerprint: &str) -> bool {
    fingerprint.starts_with("edited:")
}

/// An embedding as the catalog keeps it, under the key it was computed for.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVector {
    pub key: String,
    pub vector: Vec<f32>,
}

/// The key of an embedding: the model's fingerprint and the exact text embedded, hashed.
pub fn embed_key(model_fingerprint: &str, text: &str) -> String {
    crate::types::sha256_hex(format!("{model_fingerprint}\u{1f}{text}").as_bytes())
}

fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn decode_vector(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    acl TEXT NOT NULL,
    lang TEXT NOT NULL,
    format TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    indexed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now')),
    UNIQUE (source, path)
);
CREATE TABLE IF NOT EXISTS chunks (
    id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    title TEXT NOT NULL,
    heading_path TEXT NOT NULL,
    page INTEGER,
    char_start INTEGER NOT NULL,
    char_end INTEGER NOT NULL,
    lang TEXT NOT NULL,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_doc ON chunks(doc_id, ordinal);
CREATE TABLE IF NOT EXISTS ingest_journal (
    doc_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ','now'))
);
CREATE TABLE IF NOT EXISTS acl_journal (
    doc_id TEXT PRIMARY KEY,
    acl TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS collections (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    department TEXT,
    default_acl TEXT,
    created_at INTEGER NOT NULL
);
"#;

/// The columns `row_to_document` reads, in its order.
const DOCUMENT_COLUMNS: &str =
    "id, source, path, title, fingerprint, acl, lang, format, size_bytes, chunk_count, metadata";
/// The columns `row_to_chunk` reads, in its order.
const CHUNK_COLUMNS: &str =
    "id, doc_id, ordinal, title, heading_path, page, char_start, char_end, lang, text, content_hash";
/// The columns `row_to_collection` reads, in its order.
const COLLECTION_COLUMNS: &str = "id, name, department, default_acl, created_at";

/// Documents listed per page at most.
pub const MAX_PAGE: usize = 500;

impl Catalog {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = db::open(path)?;
        conn.execute_batch(SCHEMA)?;
        db::add_column_if_missing(&conn, "documents", "metadata", "TEXT NOT NULL DEFAULT '{}'")?;
        // Each chunk keeps its embedding (and the key it was computed for), so an unchanged
        // chunk text is never embedded twice: not when its document is edited, not when the
        // same text is in another document. Chunks from before this column have none.
        db::add_column_if_missing(&conn, "chunks", "embed_key", "TEXT")?;
        db::add_column_if_missing(&conn, "chunks", "vector", "BLOB")?;
        conn.execute_batch("CREATE INDEX IF NOT EXISTS chunks_by_embed_key ON chunks(embed_key)")?;
        Ok(Catalog { conn })
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn document(&self, id: &str) -> Result<Option<DocumentRecord>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?1"), [id], row_to_document)
            .optional()?)
    }

    pub fn documents_of_source(&self, source: &str) -> Result<Vec<DocumentRecord>> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE source = ?1 ORDER BY path"))?;
        let rows = stmt.query_map([source], row_to_document)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn counts(&self) -> Result<(usize, usize)> {
        let docs: i64 = self.conn.query_row("SELECT COUNT(*) FROM documents", [], |r| r.get(0))?;
        let chunks: i64 = self.conn.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?;
        Ok((docs as usize, chunks as usize))
    }

    pub fn chunk_ids(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT id FROM chunks ORDER BY id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Loads chunks by id, in the order given; ids not in the catalog are skipped.
    pub fn chunks_by_id(&self, ids: &[String]) -> Result<Vec<Chunk>> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE id = ?1"))?;
        let mut chunks = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(chunk) = stmt.query_row([id], row_to_chunk).optional()? {
                chunks.push(chunk);
            }
        }
        Ok(chunks)
    }

    pub fn chunks_of_document(&self, doc_id: &str) -> Result<Vec<Chunk>> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE doc_id = ?1 ORDER BY ordinal"))?;
        let rows = stmt.query_map([doc_id], row_to_chunk)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Stored embeddings for the given keys (see [`embed_key`]); keys without one are absent.
    pub fn stored_vectors(&self, keys: &[String]) -> Result<std::collections::HashMap<String, Vec<f32>>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT vector FROM chunks WHERE embed_key = ?1 AND vector IS NOT NULL LIMIT 1")?;
        let mut found = std::collections::HashMap::new();
        for key in keys {
            if found.contains_key(key) {
                continue;
            }
            if let Some(bytes) = stmt.query_row([key], |r| r.get::<_, Vec<u8>>(0)).optional()? {
                found.insert(key.clone(), decode_vector(&bytes));
            }
        }
        Ok(found)
    }

    /// Replaces the stored embeddings of these chunks (by chunk id), in one transaction.
    pub fn set_chunk_vectors(&mut self, vectors: &[(String, StoredVector)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut update = tx.prepare_cached("UPDATE chunks SET embed_key = ?2, vector = ?3 WHERE id = ?1")?;
            for (chunk_id, stored) in vectors {
                update.execute(params![chunk_id, stored.key, encode_vector(&stored.vector)])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks documents as in flight; must be committed before either index is touched.
    pub fn journal_begin(&mut self, doc_ids: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare("INSERT OR IGNORE INTO ingest_journal (doc_id) VALUES (?1)")?;
            for id in doc_ids {
                stmt.execute([id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn journaled(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare("SELECT doc_id FROM ingest_journal ORDER BY doc_id")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// After both indexes hold exactly `chunks` for these documents: store the records and
    /// chunks, remove `deleted` documents, and clear their journal entries, atomically.
    pub fn journal_commit(&mut self, upserts: &[Upsert], deleted: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut delete_doc = tx.prepare_cached("DELETE FROM documents WHERE id = ?1")?;
            let mut delete_chunks = tx.prepare_cached("DELETE FROM chunks WHERE doc_id = ?1")?;
            let mut clear = tx.prepare_cached("DELETE FROM ingest_journal WHERE doc_id = ?1")?;
            for id in deleted.iter().chain(upserts.iter().map(|u| &u.record.id)) {
                delete_chunks.execute([id])?;
                delete_doc.execute([id])?;
                clear.execute([id])?;
            }
            let mut insert_doc = tx.prepare_cached(
                "INSERT INTO documents (id, source, path, title, fingerprint, acl, lang, format, size_bytes, chunk_count, metadata) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut insert_chunk = tx.prepare_cached(
                "INSERT INTO chunks (id, doc_id, ordinal, title, heading_path, page, char_start, char_end, lang, text, content_hash, embed_key, vector) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for Upsert { record: doc, chunks, embeddings } in upserts {
                assert!(embeddings.is_empty() || embeddings.len() == chunks.len(), "one embedding per chunk, or none");
                insert_doc.execute(params![
                    doc.id,
                    doc.source,
                    doc.path,
                    doc.title,
                    doc.fingerprint,
                    serde_json::to_string(&doc.acl).expect("acl serializes"),
                    doc.lang.code(),
                    doc.format,
                    doc.size_bytes as i64,
                    chunks.len() as i64,
                    doc.metadata.to_string(),
                ])?;
                for (i, c) in chunks.iter().enumerate() {
                    let embedding = embeddings.get(i);
                    insert_chunk.execute(params![
                        c.id,
                        c.doc_id,
                        c.ordinal as i64,
                        c.title,
                        serde_json::to_string(&c.heading_path).expect("headings serialize"),
                        c.page,
                        c.char_start as i64,
                        c.char_end as i64,
                        c.lang.code(),
                        c.text,
                        c.content_hash,
                        embedding.map(|e| &e.key),
                        embedding.map(|e| encode_vector(&e.vector)),
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Documents of a collection ordered by path, after `after` (a path), at most `limit`
    /// (capped at [`MAX_PAGE`]); `visible` decides which records count.
    pub fn documents_page(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
        visible: impl Fn(&DocumentRecord) -> bool,
    ) -> Result<Vec<DocumentRecord>> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DOCUMENT_COLUMNS} FROM documents WHERE source = ?1 AND path > ?2 ORDER BY path LIMIT ?3"
        ))?;
        let mut out = Vec::new();
        let mut cursor = after.unwrap_or("").to_owned();
        // Reads in pages until `limit` visible documents are found, so a caller who may see
        // few documents of a large collection still gets full pages.
        loop {
            let rows = stmt
                .query_map(params![collection, cursor, (limit * 4) as i64], row_to_document)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let exhausted = rows.len() < limit * 4;
            for doc in rows {
                cursor.clone_from(&doc.path);
                if visible(&doc) {
                    out.push(doc);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            if exhausted {
                return Ok(out);
            }
        }
    }

    /// Ids of every document in these collections.
    pub fn document_ids_of_collections(&self, collections: &[String]) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached("SELECT id FROM documents WHERE source = ?1")?;
        let mut ids = Vec::new();
        for collection in collections {
            for id in stmt.query_map([collection], |r| r.get::<_, String>(0))? {
                ids.push(id?);
            }
        }
        Ok(ids)
    }

    pub fn document_count_of_collection(&self, collection: &str) -> Result<usize> {
        let n: i64 =
            self.conn.query_row("SELECT COUNT(*) FROM documents WHERE source = ?1", [collection], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Records an ACL change before either index is touched; [`Catalog::commit_acl_change`]
    /// completes it. After a crash, [`Catalog::pending_acl_changes`] lists what to re-apply.
    pub fn begin_acl_change(&self, doc_id: &str, acl: &Acl) -> Result<()> {
        self.conn.execute(
            "INSERT INTO acl_journal (doc_id, acl) VALUES (?1, ?2) ON CONFLICT(doc_id) DO UPDATE SET acl = excluded.acl",
            params![doc_id, serde_json::to_string(acl).expect("acl serializes")],
        )?;
        Ok(())
    }

    pub fn pending_acl_changes(&self) -> Result<Vec<(String, Acl)>> {
        let mut stmt = self.conn.prepare("SELECT doc_id, acl FROM acl_journal ORDER BY doc_id")?;
        let rows = stmt.query_map([], |r| {
            let acl: String = r.get(1)?;
            Ok((r.get(0)?, serde_json::from_str::<Acl>(&acl).map_err(|e| conversion_error(1, e))?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// After both indexes carry `acl` for the document: store it (and `metadata`, when
    /// given) and clear the ACL journal entry, atomically.
    pub fn commit_acl_change(&mut self, doc_id: &str, acl: &Acl, metadata: Option<&Value>) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE documents SET acl = ?2 WHERE id = ?1",
            params![doc_id, serde_json::to_string(acl).expect("acl serializes")],
        )?;
        if let Some(metadata) = metadata {
            tx.execute("UPDATE documents SET metadata = ?2 WHERE id = ?1", params![doc_id, metadata.to_string()])?;
        }
        tx.execute("DELETE FROM acl_journal WHERE doc_id = ?1", [doc_id])?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a document as changed through the API (ACL or metadata): its fingerprint no
    /// longer matches its source bytes, so uploading or ingesting those bytes again is an
    /// update that re-applies their ACL and metadata, never "unchanged" or a duplicate.
    pub fn mark_edited(&self, doc_id: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE documents SET fingerprint = 'edited:' || fingerprint WHERE id = ?1 AND fingerprint NOT LIKE 'edited:%'",
            [doc_id],
        )?;
        Ok(())
    }

    pub fn set_metadata(&self, doc_id: &str, metadata: &Value) -> Result<()> {
        self.conn.execute("UPDATE documents SET metadata = ?2 WHERE id = ?1", params![doc_id, metadata.to_string()])?;
        Ok(())
    }

    /// Creates a collection; `Ok(false)` when one with this id exists.
    pub fn create_collection(&self, collection: &Collection) -> Result<bool> {
        Ok(self.insert_collection(collection, "ON CONFLICT(id) DO NOTHING")? == 1)
    }

    /// Creates the collection of an ingest source when missing, or updates its department
    /// and default ACL to the source config's.
    pub fn upsert_collection(&self, collection: &Collection) -> Result<()> {
        self.insert_collection(
            collection,
            "ON CONFLICT(id) DO UPDATE SET department = excluded.department, default_acl = excluded.default_acl",
        )?;
        Ok(())
    }

    fn insert_collection(&self, collection: &Collection, on_conflict: &str) -> Result<usize> {
        Collection::validate_id(&collection.id)?;
        Ok(self.conn.execute(
            &format!(
                "INSERT INTO collections (id, name, department, default_acl, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 {on_conflict}"
            ),
            params![
                collection.id,
                collection.name,
                collection.department,
                collection.default_acl.as_ref().map(|a| serde_json::to_string(a).expect("acl serializes")),
                db::now()
            ],
        )?)
    }

    pub fn collection(&self, id: &str) -> Result<Option<Collection>> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = ?1"), [id], row_to_collection)
            .optional()?)
    }

    pub fn collections(&self) -> Result<Vec<Collection>> {
        let mut stmt = self.conn.prepare(&format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY id"))?;
        let rows = stmt.query_map([], row_to_collection)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Deletes an empty collection; `Ok(false)` when it does not exist.
    pub fn delete_collection(&self, id: &str) -> Result<bool> {
        if self.document_count_of_collection(id)? > 0 {
            return Err(Error::Conflict(format!("collection {id:?} still holds documents; delete them first")));
        }
        Ok(self.conn.execute("DELETE FROM collections WHERE id = ?1", [id])? == 1)
    }

    /// Forgets journaled documents entirely (after they were removed from both indexes).
    pub fn journal_abandon(&mut self, doc_ids: &[String]) -> Result<()> {
        self.journal_commit(&[], doc_ids)
    }
}

fn row_to_document(row: &rusqlite::Row<'_>) -> rusqlite::Result<DocumentRecord> {
    let acl: String = row.get(5)?;
    let lang: String = row.get(6)?;
    Ok(DocumentRecord {
        id: row.get(0)?,
        source: row.get(1)?,
        path: row.get(2)?,
        title: row.get(3)?,
        fingerprint: row.get(4)?,
        acl: serde_json::from_str::<Acl>(&acl).map_err(|e| conversion_error(5, e))?,
        lang: Lang::from_code(&lang).unwrap_or(Lang::En),
        format: row.get(7)?,
        size_bytes: row.get::<_, i64>(8)? as u64,
        chunk_count: row.get::<_, i64>(9)? as usize,
        metadata: serde_json::from_str(&row.get::<_, String>(10)?).map_err(|e| conversion_error(10, e))?,
    })
}

fn row_to_collection(row: &rusqlite::Row<'_>) -> rusqlite::Result<Collection> {
    let acl: Option<String> = row.get(3)?;
    Ok(Collection {
        id: row.get(0)?,
        name: row.get(1)?,
        department: row.get(2)?,
        default_acl: acl.map(|a| serde_json::from_str::<Acl>(&a)).transpose().map_err(|e| conversion_error(3, e))?,
        created_at: db::rfc3339(row.get(4)?),
    })
}

fn row_to_chunk(row: &rusqlite::Row<'_>) -> rusqlite::Result<Chunk> {
    let headings: String = row.get(4)?;
    let lang: String = row.get(8)?;
    Ok(Chunk {
        id: row.get(0)?,
        doc_id: row.get(1)?,
        ordinal: row.get::<_, i64>(2)? as usize,
        title: row.get(3)?,
        heading_path: serde_json::from_str(&headings).map_err(|e| conversion_error(4, e))?,
        page: row.get(5)?,
        char_start: row.get::<_, i64>(6)? as usize,
        char_end: row.get::<_, i64>(7)? as usize,
        lang: Lang::from_code(&lang).unwrap_or(Lang::En),
        text: row.get(9)?,
        content_hash: row.get(10)?,
    })
}

fn conversion_error(column: usize, e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}
