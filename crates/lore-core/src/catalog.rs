//! The catalog: document records, chunk texts (with their embeddings) and the ingest journal,
//! in the application database (SQLite in the embedded default, PostgreSQL in scale-out). It
//! is the source of truth for what the indexes should contain.
//!
//! Crash consistency works through the journal: before a document's chunks are touched in
//! either index, its id is journaled (committed); the index writes follow; the catalog rows
//! and the journal removal are committed in one transaction afterwards. On the next open,
//! every journaled document is removed from both indexes and the catalog, so a rerun
//! ingests it afresh. No state exists in which the indexes disagree after recovery.

use std::path::Path;

use lore_db::{Database, Db, Dialect, Location, Migration, Row, Schema, params};
use serde_json::Value;

use crate::acl::Acl;
use crate::db;
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::types::{Chunk, Collection, DocumentRecord};

pub struct Catalog {
    db: Db,
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

const SCHEMA: Schema = Schema {
    name: "catalog",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have these tables; the
        // columns added since are added in `Catalog::open_in` when missing.
        sqlite: r#"
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
"#,
        postgres: r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    acl TEXT NOT NULL,
    lang TEXT NOT NULL,
    format TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    chunk_count BIGINT NOT NULL,
    indexed_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    metadata TEXT NOT NULL DEFAULT '{}',
    UNIQUE (source, path)
);
CREATE TABLE chunks (
    id TEXT PRIMARY KEY,
    doc_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    ordinal BIGINT NOT NULL,
    title TEXT NOT NULL,
    heading_path TEXT NOT NULL,
    page BIGINT,
    char_start BIGINT NOT NULL,
    char_end BIGINT NOT NULL,
    lang TEXT NOT NULL,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    embed_key TEXT,
    vector BYTEA
);
CREATE INDEX chunks_by_doc ON chunks(doc_id, ordinal);
CREATE INDEX chunks_by_embed_key ON chunks(embed_key);
CREATE TABLE ingest_journal (
    doc_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
);
CREATE TABLE acl_journal (
    doc_id TEXT PRIMARY KEY,
    acl TEXT NOT NULL
);
CREATE TABLE collections (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    department TEXT,
    default_acl TEXT,
    created_at BIGINT NOT NULL
);
"#,
    }],
};

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
    /// The catalog in the embedded database file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?)
    }

    /// The catalog in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> Result<Self> {
        let db = database.store(&SCHEMA)?;
        if db.dialect() == Dialect::Sqlite {
            db.add_column_if_missing("documents", "metadata", "TEXT NOT NULL DEFAULT '{}'")?;
            // Each chunk keeps its embedding (and the key it was computed for), so an unchanged
            // chunk text is never embedded twice: not when its document is edited, not when the
            // same text is in another document. Chunks from before this column have none.
            db.add_column_if_missing("chunks", "embed_key", "TEXT")?;
            db.add_column_if_missing("chunks", "vector", "BLOB")?;
            db.execute("CREATE INDEX IF NOT EXISTS chunks_by_embed_key ON chunks(embed_key)", params![])?;
        }
        Ok(Catalog { db })
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.db.query_opt("SELECT value FROM meta WHERE key = ?1", params![key])?.map(|r| Ok(r.get(0)?)).transpose()
    }

    /// The value of `key`, storing `value` first when there is none: every process sharing the
    /// database gets the same, however many race to set it.
    pub fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            params![key, value],
        )?;
        Ok(self.meta(key)?.unwrap_or_else(|| value.to_owned()))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn document(&self, id: &str) -> Result<Option<DocumentRecord>> {
        self.db
            .query_opt(&format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE id = ?1"), params![id])?
            .map(|r| row_to_document(&r))
            .transpose()
    }

    pub fn documents_of_source(&self, source: &str) -> Result<Vec<DocumentRecord>> {
        self.rows(
            &format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE source = ?1 ORDER BY path"),
            params![source],
            row_to_document,
        )
    }

    pub fn counts(&self) -> Result<(usize, usize)> {
        let row = self
            .db
            .query_opt("SELECT (SELECT COUNT(*) FROM documents), (SELECT COUNT(*) FROM chunks)", params![])?
            .expect("a count row");
        Ok((row.get(0)?, row.get(1)?))
    }

    pub fn chunk_ids(&self) -> Result<Vec<String>> {
        self.rows("SELECT id FROM chunks ORDER BY id", params![], |r| Ok(r.get(0)?))
    }

    /// Loads chunks by id, in the order given; ids not in the catalog are skipped.
    pub fn chunks_by_id(&self, ids: &[String]) -> Result<Vec<Chunk>> {
        let mut found: std::collections::HashMap<String, Chunk> = std::collections::HashMap::new();
        for batch in ids.chunks(IN_BATCH) {
            let sql = format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE id IN ({})", placeholders(batch.len()));
            for chunk in self.rows(&sql, &text_values(batch), row_to_chunk)? {
                found.insert(chunk.id.clone(), chunk);
            }
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    pub fn chunks_of_document(&self, doc_id: &str) -> Result<Vec<Chunk>> {
        self.rows(
            &format!("SELECT {CHUNK_COLUMNS} FROM chunks WHERE doc_id = ?1 ORDER BY ordinal"),
            params![doc_id],
            row_to_chunk,
        )
    }

    /// Stored embeddings for the given keys (see [`embed_key`]); keys without one are absent.
    pub fn stored_vectors(&self, keys: &[String]) -> Result<std::collections::HashMap<String, Vec<f32>>> {
        let mut found = std::collections::HashMap::new();
        let unique: Vec<String> = keys.iter().collect::<std::collections::BTreeSet<_>>().into_iter().cloned().collect();
        for batch in unique.chunks(IN_BATCH) {
            let sql = format!(
                "SELECT embed_key, vector FROM chunks WHERE embed_key IN ({}) AND vector IS NOT NULL",
                placeholders(batch.len())
            );
            for row in self.db.query(&sql, &text_values(batch))? {
                if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(row.get::<String>(0)?) {
                    slot.insert(decode_vector(&row.get::<Vec<u8>>(1)?));
                }
            }
        }
        Ok(found)
    }

    /// Replaces the stored embeddings of these chunks (by chunk id), in one transaction.
    pub fn set_chunk_vectors(&mut self, vectors: &[(String, StoredVector)]) -> Result<()> {
        self.db.transaction(|tx| {
            for (chunk_id, stored) in vectors {
                tx.execute(
                    "UPDATE chunks SET embed_key = ?2, vector = ?3 WHERE id = ?1",
                    params![chunk_id, stored.key.as_str(), encode_vector(&stored.vector)],
                )?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Marks documents as in flight; must be committed before either index is touched.
    pub fn journal_begin(&mut self, doc_ids: &[String]) -> Result<()> {
        self.db.transaction(|tx| {
            for id in doc_ids {
                tx.execute(
                    "INSERT INTO ingest_journal (doc_id) VALUES (?1) ON CONFLICT (doc_id) DO NOTHING",
                    params![id],
                )?;
            }
            Ok(())
        })?;
        Ok(())
    }

    pub fn journaled(&self) -> Result<Vec<String>> {
        self.rows("SELECT doc_id FROM ingest_journal ORDER BY doc_id", params![], |r| Ok(r.get(0)?))
    }

    /// After both indexes hold exactly `chunks` for these documents: store the records and
    /// chunks, remove `deleted` documents, and clear their journal entries, atomically.
    pub fn journal_commit(&mut self, upserts: &[Upsert], deleted: &[String]) -> Result<()> {
        for Upsert { chunks, embeddings, .. } in upserts {
            assert!(embeddings.is_empty() || embeddings.len() == chunks.len(), "one embedding per chunk, or none");
        }
        self.db.transaction(|tx| {
            for id in deleted.iter().chain(upserts.iter().map(|u| &u.record.id)) {
                tx.execute("DELETE FROM chunks WHERE doc_id = ?1", params![id])?;
                tx.execute("DELETE FROM documents WHERE id = ?1", params![id])?;
                tx.execute("DELETE FROM ingest_journal WHERE doc_id = ?1", params![id])?;
            }
            for Upsert { record: doc, chunks, embeddings } in upserts {
                tx.execute(
                    "INSERT INTO documents (id, source, path, title, fingerprint, acl, lang, format, size_bytes, \
                     chunk_count, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    params![
                        doc.id.as_str(),
                        doc.source.as_str(),
                        doc.path.as_str(),
                        doc.title.as_str(),
                        doc.fingerprint.as_str(),
                        serde_json::to_string(&doc.acl).expect("acl serializes"),
                        doc.lang.code(),
                        doc.format.as_str(),
                        doc.size_bytes as i64,
                        chunks.len(),
                        doc.metadata.to_string(),
                    ],
                )?;
                for (i, c) in chunks.iter().enumerate() {
                    let embedding = embeddings.get(i);
                    tx.execute(
                        "INSERT INTO chunks (id, doc_id, ordinal, title, heading_path, page, char_start, char_end, \
                         lang, text, content_hash, embed_key, vector) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                        params![
                            c.id.as_str(),
                            c.doc_id.as_str(),
                            c.ordinal,
                            c.title.as_str(),
                            serde_json::to_string(&c.heading_path).expect("headings serialize"),
                            c.page,
                            c.char_start,
                            c.char_end,
                            c.lang.code(),
                            c.text.as_str(),
                            c.content_hash.as_str(),
                            embedding.map(|e| e.key.as_str()),
                            embedding.map(|e| encode_vector(&e.vector)),
                        ],
                    )?;
                }
            }
            Ok(())
        })?;
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
        let sql =
            format!("SELECT {DOCUMENT_COLUMNS} FROM documents WHERE source = ?1 AND path > ?2 ORDER BY path LIMIT ?3");
        let mut out = Vec::new();
        let mut cursor = after.unwrap_or("").to_owned();
        // Reads in pages until `limit` visible documents are found, so a caller who may see
        // few documents of a large collection still gets full pages.
        loop {
            let rows = self.rows(&sql, params![collection, cursor.as_str(), limit * 4], row_to_document)?;
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
        let mut ids = Vec::new();
        for collection in collections {
            ids.extend(
                self.rows("SELECT id FROM documents WHERE source = ?1", params![collection], |r| Ok(r.get(0)?))?,
            );
        }
        Ok(ids)
    }

    pub fn document_count_of_collection(&self, collection: &str) -> Result<usize> {
        let row = self.db.query_opt("SELECT COUNT(*) FROM documents WHERE source = ?1", params![collection])?;
        Ok(row.expect("a count row").get(0)?)
    }

    /// Records an ACL change before either index is touched; [`Catalog::commit_acl_change`]
    /// completes it. After a crash, [`Catalog::pending_acl_changes`] lists what to re-apply.
    pub fn begin_acl_change(&self, doc_id: &str, acl: &Acl) -> Result<()> {
        self.db.execute(
            "INSERT INTO acl_journal (doc_id, acl) VALUES (?1, ?2) ON CONFLICT(doc_id) DO UPDATE SET acl = excluded.acl",
            params![doc_id, serde_json::to_string(acl).expect("acl serializes")],
        )?;
        Ok(())
    }

    pub fn pending_acl_changes(&self) -> Result<Vec<(String, Acl)>> {
        self.rows("SELECT doc_id, acl FROM acl_journal ORDER BY doc_id", params![], |r| {
            Ok((r.get(0)?, parse_json(1, &r.get::<String>(1)?)?))
        })
    }

    /// After both indexes carry `acl` for the document: store it (and `metadata`, when
    /// given) and clear the ACL journal entry, atomically.
    pub fn commit_acl_change(&mut self, doc_id: &str, acl: &Acl, metadata: Option<&Value>) -> Result<()> {
        self.db.transaction(|tx| {
            tx.execute(
                "UPDATE documents SET acl = ?2 WHERE id = ?1",
                params![doc_id, serde_json::to_string(acl).expect("acl serializes")],
            )?;
            if let Some(metadata) = metadata {
                tx.execute("UPDATE documents SET metadata = ?2 WHERE id = ?1", params![doc_id, metadata.to_string()])?;
            }
            tx.execute("DELETE FROM acl_journal WHERE doc_id = ?1", params![doc_id])
        })?;
        Ok(())
    }

    /// Marks a document as changed through the API (ACL or metadata): its fingerprint no
    /// longer matches its source bytes, so uploading or ingesting those bytes again is an
    /// update that re-applies their ACL and metadata, never "unchanged" or a duplicate.
    pub fn mark_edited(&self, doc_id: &str) -> Result<()> {
        self.db.execute(
            "UPDATE documents SET fingerprint = 'edited:' || fingerprint WHERE id = ?1 AND fingerprint NOT LIKE 'edited:%'",
            params![doc_id],
        )?;
        Ok(())
    }

    pub fn set_metadata(&self, doc_id: &str, metadata: &Value) -> Result<()> {
        self.db.execute("UPDATE documents SET metadata = ?2 WHERE id = ?1", params![doc_id, metadata.to_string()])?;
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
        Ok(self.db.execute(
            &format!(
                "INSERT INTO collections (id, name, department, default_acl, created_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 {on_conflict}"
            ),
            params![
                collection.id.as_str(),
                collection.name.as_str(),
                collection.department.as_deref(),
                collection.default_acl.as_ref().map(|a| serde_json::to_string(a).expect("acl serializes")),
                db::now()
            ],
        )?)
    }

    pub fn collection(&self, id: &str) -> Result<Option<Collection>> {
        self.db
            .query_opt(&format!("SELECT {COLLECTION_COLUMNS} FROM collections WHERE id = ?1"), params![id])?
            .map(|r| row_to_collection(&r))
            .transpose()
    }

    pub fn collections(&self) -> Result<Vec<Collection>> {
        self.rows(&format!("SELECT {COLLECTION_COLUMNS} FROM collections ORDER BY id"), params![], row_to_collection)
    }

    /// Deletes an empty collection; `Ok(false)` when it does not exist.
    pub fn delete_collection(&self, id: &str) -> Result<bool> {
        if self.document_count_of_collection(id)? > 0 {
            return Err(Error::Conflict(format!("collection {id:?} still holds documents; delete them first")));
        }
        Ok(self.db.execute("DELETE FROM collections WHERE id = ?1", params![id])? == 1)
    }

    /// Forgets journaled documents entirely (after they were removed from both indexes).
    pub fn journal_abandon(&mut self, doc_ids: &[String]) -> Result<()> {
        self.journal_commit(&[], doc_ids)
    }

    fn rows<T>(&self, sql: &str, params: &[lore_db::Value], read: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
        self.db.query(sql, params)?.iter().map(read).collect()
    }
}

/// Ids looked up per statement at most (`id IN (…)`).
const IN_BATCH: usize = 500;

fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
}

fn text_values(texts: &[String]) -> Vec<lore_db::Value> {
    texts.iter().map(|t| lore_db::Value::from(t.as_str())).collect()
}

/// JSON kept in a text column; a corrupt value is an error naming the column.
fn parse_json<T: serde::de::DeserializeOwned>(column: usize, text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::Database(lore_db::Error::Decode { column, message: format!("invalid JSON: {e}") }))
}

fn row_to_document(row: &Row) -> Result<DocumentRecord> {
    let lang: String = row.get(6)?;
    Ok(DocumentRecord {
        id: row.get(0)?,
        source: row.get(1)?,
        path: row.get(2)?,
        title: row.get(3)?,
        fingerprint: row.get(4)?,
        acl: parse_json(5, &row.get::<String>(5)?)?,
        lang: Lang::from_code(&lang).unwrap_or(Lang::En),
        format: row.get(7)?,
        size_bytes: row.get::<i64>(8)? as u64,
        chunk_count: row.get(9)?,
        metadata: parse_json(10, &row.get::<String>(10)?)?,
    })
}

fn row_to_collection(row: &Row) -> Result<Collection> {
    let acl: Option<String> = row.get(3)?;
    Ok(Collection {
        id: row.get(0)?,
        name: row.get(1)?,
        department: row.get(2)?,
        default_acl: acl.map(|a| parse_json(3, &a)).transpose()?,
        created_at: db::rfc3339(row.get(4)?),
    })
}

fn row_to_chunk(row: &Row) -> Result<Chunk> {
    let lang: String = row.get(8)?;
    Ok(Chunk {
        id: row.get(0)?,
        doc_id: row.get(1)?,
        ordinal: row.get(2)?,
        title: row.get(3)?,
        heading_path: parse_json(4, &row.get::<String>(4)?)?,
        page: row.get(5)?,
        char_start: row.get(6)?,
        char_end: row.get(7)?,
        lang: Lang::from_code(&lang).unwrap_or(Lang::En),
        text: row.get(9)?,
        content_hash: row.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use lore_db::testing::on_both;

    use super::*;

    fn document(source: &str, path: &str, acl: &[&str]) -> DocumentRecord {
        DocumentRecord {
            id: format!("{source}/{path}"),
            source: source.into(),
            path: path.into(),
            title: format!("Title of {path}"),
            fingerprint: format!("sha-{path}"),
            acl: Acl::parse(acl).unwrap(),
            lang: Lang::Es,
            format: "markdown".into(),
            size_bytes: 5_000_000_000,
            chunk_count: 0,
            metadata: serde_json::json!({"owner": "ana", "tags": ["a", "b"]}),
        }
    }

    fn chunks_of(doc: &DocumentRecord, n: usize) -> Vec<Chunk> {
        (0..n)
            .map(|ordinal| {
                let text = format!("{} chunk {ordinal} — año", doc.path);
                let hash = crate::types::sha256_hex(text.as_bytes());
                Chunk {
                    id: Chunk::make_id(&doc.id, ordinal, &hash),
                    doc_id: doc.id.clone(),
                    ordinal,
                    title: doc.title.clone(),
                    heading_path: vec!["Política".into(), format!("§{ordinal}")],
                    page: (ordinal % 2 == 0).then_some(ordinal as u32 + 1),
                    char_start: ordinal * 100,
                    char_end: ordinal * 100 + 99,
                    lang: Lang::Es,
                    text,
                    content_hash: hash,
                }
            })
            .collect()
    }

    #[test]
    fn documents_chunks_and_vectors_round_trip_through_the_journal() {
        on_both("documents_chunks_and_vectors_round_trip_through_the_journal", |database| {
            let mut catalog = Catalog::open_in(database).unwrap();
            let a = document("hr", "a.md", &["group:hr"]);
            let b = document("hr", "b.md", &["everyone"]);
            let (a_chunks, b_chunks) = (chunks_of(&a, 3), chunks_of(&b, 2));
            let vectors: Vec<StoredVector> = a_chunks
                .iter()
                .map(|c| StoredVector {
                    key: embed_key("model-x", &c.text),
                    vector: vec![0.5, -1.25, c.ordinal as f32],
                })
                .collect();
            catalog.journal_begin(&[a.id.clone(), b.id.clone()]).unwrap();
            catalog.journal_begin(std::slice::from_ref(&a.id)).unwrap();
            assert_eq!(catalog.journaled().unwrap(), vec![a.id.clone(), b.id.clone()]);
            catalog
                .journal_commit(
                    &[
                        Upsert { record: a.clone(), chunks: a_chunks.clone(), embeddings: vectors.clone() },
                        Upsert { record: b.clone(), chunks: b_chunks.clone(), embeddings: vec![] },
                    ],
                    &[],
                )
                .unwrap();
            assert!(catalog.journaled().unwrap().is_empty());
            assert_eq!(catalog.counts().unwrap(), (2, 5));
            let stored = catalog.document(&a.id).unwrap().unwrap();
            assert_eq!((stored.acl.clone(), stored.chunk_count, stored.size_bytes), (a.acl.clone(), 3, 5_000_000_000));
            assert_eq!((stored.lang, &stored.metadata), (Lang::Es, &a.metadata));
            // Chunks by id: in the order asked, unknown ids skipped, every field kept.
            let ask = vec![b_chunks[1].id.clone(), "missing".into(), a_chunks[0].id.clone(), a_chunks[2].id.clone()];
            let got = catalog.chunks_by_id(&ask).unwrap();
            assert_eq!(
                got.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
                vec![b_chunks[1].id.as_str(), a_chunks[0].id.as_str(), a_chunks[2].id.as_str()]
            );
            let (first, expected) = (&got[1], &a_chunks[0]);
            assert_eq!(
                (&first.text, &first.heading_path, first.page, first.char_end, first.lang),
                (&expected.text, &expected.heading_path, expected.page, expected.char_end, expected.lang)
            );
            assert_eq!((got[0].page, got[2].page), (None, Some(3)));
            let many: Vec<String> = (0..1200).map(|i| format!("nope-{i}")).chain([a_chunks[1].id.clone()]).collect();
            assert_eq!(catalog.chunks_by_id(&many).unwrap().len(), 1, "lookups beyond one batch");
            assert_eq!(catalog.chunks_of_document(&a.id).unwrap().len(), 3);
            // Stored vectors by key; keys without one are absent.
            let keys = vec![vectors[2].key.clone(), "unknown".into(), vectors[2].key.clone()];
            let found = catalog.stored_vectors(&keys).unwrap();
            assert_eq!(found.len(), 1);
            assert_eq!(found[&vectors[2].key], vectors[2].vector);
            catalog
                .set_chunk_vectors(&[(b_chunks[0].id.clone(), StoredVector { key: "k".into(), vector: vec![1.0] })])
                .unwrap();
            assert_eq!(catalog.stored_vectors(&["k".into()]).unwrap()["k"], vec![1.0]);
            // Re-committing a document replaces its chunks; deleting removes them.
            catalog
                .journal_commit(
                    &[Upsert { record: a.clone(), chunks: a_chunks[..1].to_vec(), embeddings: vec![] }],
                    std::slice::from_ref(&b.id),
                )
                .unwrap();
            assert_eq!(catalog.counts().unwrap(), (1, 1));
            assert!(catalog.document(&b.id).unwrap().is_none());
            assert_eq!(catalog.chunk_ids().unwrap(), vec![a_chunks[0].id.clone()]);
            catalog.set_meta("model", "m1").unwrap();
            catalog.set_meta("model", "m2").unwrap();
            assert_eq!(catalog.meta("model").unwrap().as_deref(), Some("m2"));
            assert_eq!(catalog.meta("absent").unwrap(), None);
        });
    }

    #[test]
    fn pages_acl_changes_edits_and_collections() {
        on_both("pages_acl_changes_edits_and_collections", |database| {
            let mut catalog = Catalog::open_in(database).unwrap();
            let docs: Vec<DocumentRecord> = (0..30)
                .map(|i| {
                    document("eng", &format!("{i:02}.md"), if i % 3 == 0 { &["group:eng"] } else { &["user:kim"] })
                })
                .collect();
            let upserts: Vec<Upsert> =
                docs.iter().map(|d| Upsert { record: d.clone(), chunks: vec![], embeddings: vec![] }).collect();
            catalog.journal_commit(&upserts, &[]).unwrap();
            let eng = |d: &DocumentRecord| d.acl == Acl::parse(&["group:eng"]).unwrap();
            let page = catalog.documents_page("eng", None, 4, eng).unwrap();
            assert_eq!(
                page.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
                vec!["00.md", "03.md", "06.md", "09.md"]
            );
            let next = catalog.documents_page("eng", Some("09.md"), 4, eng).unwrap();
            assert_eq!(
                next.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(),
                vec!["12.md", "15.md", "18.md", "21.md"]
            );
            assert_eq!(catalog.documents_page("eng", Some("27.md"), 4, eng).unwrap().len(), 0);
            assert_eq!(catalog.document_count_of_collection("eng").unwrap(), 30);
            assert_eq!(catalog.document_ids_of_collections(&["eng".into(), "none".into()]).unwrap().len(), 30);
            assert_eq!(catalog.documents_of_source("eng").unwrap()[0].path, "00.md");

            let id = &docs[1].id;
            let acl = Acl::parse(&["dept:sales"]).unwrap();
            catalog.begin_acl_change(id, &acl).unwrap();
            assert_eq!(catalog.pending_acl_changes().unwrap(), vec![(id.clone(), acl.clone())]);
            catalog.commit_acl_change(id, &acl, Some(&serde_json::json!({"k": 1}))).unwrap();
            assert!(catalog.pending_acl_changes().unwrap().is_empty());
            catalog.mark_edited(id).unwrap();
            catalog.mark_edited(id).unwrap();
            let edited = catalog.document(id).unwrap().unwrap();
            assert_eq!((edited.acl, edited.metadata), (acl, serde_json::json!({"k": 1})));
            assert!(is_edited(&edited.fingerprint) && !edited.fingerprint.starts_with("edited:edited:"));

            let collection = Collection {
                id: "eng".into(),
                name: "Engineering".into(),
                department: Some("eng".into()),
                default_acl: None,
                created_at: String::new(),
            };
            assert!(catalog.create_collection(&collection).unwrap());
            assert!(!catalog.create_collection(&collection).unwrap(), "exists already");
            let changed = Collection {
                default_acl: Some(Acl::parse(&["everyone"]).unwrap()),
                department: None,
                ..collection.clone()
            };
            catalog.upsert_collection(&changed).unwrap();
            let stored = catalog.collection("eng").unwrap().unwrap();
            assert_eq!((stored.department, stored.default_acl), (None, Some(Acl::parse(&["everyone"]).unwrap())));
            assert!(matches!(catalog.delete_collection("eng"), Err(Error::Conflict(_))), "it holds documents");
            let ids: Vec<String> = docs.iter().map(|d| d.id.clone()).collect();
            catalog.journal_abandon(&ids).unwrap();
            assert!(catalog.delete_collection("eng").unwrap());
            assert!(!catalog.delete_collection("eng").unwrap());
            assert!(catalog.collections().unwrap().is_empty());
        });
    }
}
