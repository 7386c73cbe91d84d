//! The two indexes every chunk lives in, under the same chunk id: dense vectors in Qdrant
//! and BM25 in Tantivy (embedded mode) or in the same Qdrant points as sparse vectors (on a
//! Qdrant server, shared by every replica). Ingest writes both; chat reads both.

pub mod keyword;
pub mod sparse;
pub mod vector;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::acl::AccessScope;
use crate::catalog::Catalog;
use crate::config::{Config, VectorStoreConfig};
use crate::embed::ModelInfo;
use crate::error::{Error, Result};
use crate::lang::Lang;
use crate::types::{Chunk, ScoredChunkId};

pub use keyword::{KeywordEntry, KeywordIndex};
pub use sparse::analyze;
pub use vector::{ServerLayout, VectorIndex, VectorPoint};

const MODEL_META_KEY: &str = "embedding_model";

pub struct Indexes {
    /// BM25 in Tantivy, in the embedded mode. `None` on a Qdrant server, where every point
    /// carries its chunk's BM25 terms as a sparse vector ([`sparse`]).
    pub keyword: Option<Arc<KeywordIndex>>,
    pub vector: VectorIndex,
    /// On a server: the average lengths the BM25 terms are weighted with, and whether they are
    /// the collection's recorded ones (else the defaults, until a batch is large enough).
    keyword_averages: std::sync::Mutex<(sparse::AverageLengths, bool)>,
}

/// The catalog key of the average lengths a collection's BM25 terms are weighted with.
const KEYWORD_AVERAGES_KEY: &str = "bm25_average_lengths";

impl Indexes {
    /// Opens both indexes for `config`. `writable` takes the keyword index's writer lock.
    pub async fn open(config: &Config, writable: bool) -> Result<Self> {
        let dimension = config.embedding.dimension;
        Ok(match &config.vector_store {
            VectorStoreConfig::Embedded => Indexes {
                keyword: Some(Arc::new(KeywordIndex::open(&config.keyword_dir(), writable)?)),
                vector: VectorIndex::open_embedded(&config.vector_dir(), dimension)?,
                keyword_averages: Default::default(),
            },
            VectorStoreConfig::Qdrant { url, collection, api_key, shards, replication_factor } => {
                let layout = ServerLayout { shards: *shards, replication_factor: *replication_factor };
                Indexes {
                    keyword: None,
                    vector: VectorIndex::open_server(url, collection, api_key.as_deref(), dimension, layout).await?,
                    keyword_averages: Default::default(),
                }
            }
        })
    }

    /// Removes every chunk of these documents from both indexes, durably.
    pub async fn delete_documents(&self, doc_ids: &[String]) -> Result<()> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        if let Some(keyword) = &self.keyword {
            keyword.delete_documents(doc_ids)?;
            keyword.commit()?;
        }
        self.vector.delete_documents(doc_ids.to_vec()).await?;
        self.vector.flush().await
    }

    /// Replaces the chunks of `doc_ids` with `entries` in both indexes, durably. `points`
    /// are the entries' vectors, in the same order; on a Qdrant server they also get the
    /// chunks' BM25 terms.
    pub async fn replace_documents(
        &self,
        doc_ids: &[String],
        entries: &[KeywordEntry<'_>],
        points: Vec<VectorPoint>,
    ) -> Result<()> {
        let points = self.with_keyword_terms(points, entries.iter().map(|e| e.chunk))?;
        if let Some(keyword) = &self.keyword {
            keyword.delete_documents(doc_ids)?;
            keyword.add(entries)?;
        }
        self.vector.delete_documents(doc_ids.to_vec()).await?;
        self.vector.upsert(points).await?;
        if let Some(keyword) = &self.keyword {
            keyword.commit()?;
        }
        // Both indexes must be durable before the caller records the documents as indexed.
        self.vector.flush().await
    }

    /// On a Qdrant server, settles the average lengths BM25 terms are weighted with, the same
    /// for every process: those the catalog records; when it records none, those of `chunks`
    /// (the batch about to be written, or a whole corpus) when they are enough to measure, which
    /// are then recorded. Until then the defaults weight small batches. Nothing to do in the
    /// embedded mode (Tantivy measures its corpus itself).
    pub fn settle_keyword_averages<'a>(
        &self,
        catalog: &Catalog,
        chunks: impl IntoIterator<Item = &'a Chunk>,
    ) -> Result<()> {
        if self.keyword.is_some() {
            return Ok(());
        }
        let mut state = self.keyword_averages.lock().unwrap_or_else(|p| p.into_inner());
        if state.1 {
            return Ok(());
        }
        let recorded = match catalog.meta(KEYWORD_AVERAGES_KEY)? {
            Some(json) => Some(json),
            None => match sparse::AverageLengths::measure(chunks) {
                Some(measured) => {
                    let json = serde_json::to_string(&measured).map_err(|e| Error::Vector(e.to_string()))?;
                    Some(catalog.init_meta(KEYWORD_AVERAGES_KEY, &json)?)
                }
                None => None,
            },
        };
        if let Some(json) = recorded {
            let averages = serde_json::from_str(&json)
                .map_err(|e| Error::Vector(format!("catalog {KEYWORD_AVERAGES_KEY}: {e}")))?;
            *state = (averages, true);
            tracing::info!(?averages, "BM25 terms weighted with the collection's average lengths");
        }
        Ok(())
    }

    /// Writes new vectors for chunks already indexed (a re-embedding), keeping their BM25
    /// terms on a Qdrant server. `chunks` are the points' chunks, in order.
    pub async fn upsert_vectors(&self, points: Vec<VectorPoint>, chunks: &[Chunk]) -> Result<()> {
        let points = self.with_keyword_terms(points, chunks.iter())?;
        self.vector.upsert(points).await
    }

    fn with_keyword_terms<'a>(
        &self,
        mut points: Vec<VectorPoint>,
        chunks: impl ExactSizeIterator<Item = &'a Chunk>,
    ) -> Result<Vec<VectorPoint>> {
        if self.keyword.is_some() {
            return Ok(points);
        }
        if chunks.len() != points.len() {
            return Err(Error::Vector(format!("{} points for {} chunks", points.len(), chunks.len())));
        }
        let averages = self.keyword_averages.lock().unwrap_or_else(|p| p.into_inner()).0;
        for (point, chunk) in points.iter_mut().zip(chunks) {
            if point.chunk_id != chunk.id {
                return Err(Error::Vector(format!("point {} is not chunk {}", point.chunk_id, chunk.id)));
            }
            point.sparse = Some(sparse::document_vector_with(chunk, &averages));
        }
        Ok(points)
    }

    /// BM25 search for `query` among the chunks `scope` may read, with the filter inside the
    /// engine: Tantivy (off the async executor) or the server's sparse vectors.
    pub async fn keyword_search(
        &self,
        query: &str,
        query_lang: Lang,
        scope: &AccessScope,
        limit: usize,
    ) -> Result<Vec<ScoredChunkId>> {
        match &self.keyword {
            Some(keyword) => {
                let (keyword, query, scope) = (keyword.clone(), query.to_owned(), scope.clone());
                tokio::task::spawn_blocking(move || keyword.search(&query, query_lang, &scope, limit))
                    .await
                    .map_err(|e| Error::Vector(format!("keyword search task: {e}")))?
            }
            None => match sparse::query_vector(query, query_lang) {
                Some(terms) => self.vector.keyword_search(terms, scope, limit).await,
                None => Ok(Vec::new()),
            },
        }
    }

    /// BM25's inverse document frequency of analysed body `terms` of `lang`, over every chunk
    /// (ACLs aside), from whichever engine holds the terms.
    pub async fn idf(&self, terms: &[String], lang: Lang) -> Result<Vec<f32>> {
        match &self.keyword {
            Some(keyword) => keyword.idf(terms, lang),
            None => {
                let ids: Vec<u32> = terms.iter().map(|t| sparse::body_term_id(lang, t)).collect();
                self.vector.keyword_idf(&ids).await
            }
        }
    }

    /// Gives a document's chunks a new ACL in both indexes without re-embedding: a payload
    /// update in Qdrant; in Tantivy (which has no in-place update) the document's entries are
    /// rewritten from the catalog's chunk texts. Durable when it returns.
    pub async fn set_document_acl(&self, doc_id: &str, chunks: &[Chunk], acl: &[String]) -> Result<()> {
        if let Some(keyword) = &self.keyword {
            let entries: Vec<KeywordEntry<'_>> = chunks.iter().map(|chunk| KeywordEntry { chunk, acl }).collect();
            keyword.delete_documents(&[doc_id.to_owned()])?;
            keyword.add(&entries)?;
            keyword.commit()?;
        }
        self.vector.set_document_acl(doc_id.to_owned(), acl.to_vec()).await?;
        self.vector.flush().await
    }

    /// Re-applies ACL changes a crash interrupted (journaled in the catalog first), so both
    /// indexes and the catalog agree again.
    pub async fn recover_acl_changes(&self, catalog: &mut Catalog) -> Result<usize> {
        let pending = catalog.pending_acl_changes()?;
        for (doc_id, acl) in &pending {
            let chunks = catalog.chunks_of_document(doc_id)?;
            self.set_document_acl(doc_id, &chunks, &acl.to_strings()).await?;
            catalog.commit_acl_change(doc_id, acl, None)?;
        }
        Ok(pending.len())
    }

    /// Undoes the effects of an interrupted ingest: every journaled document is removed from
    /// both indexes and from the catalog, so the next run ingests it afresh.
    pub async fn recover(&self, catalog: &mut Catalog) -> Result<Vec<String>> {
        let pending = catalog.journaled()?;
        if !pending.is_empty() {
            tracing::warn!(documents = pending.len(), "recovering from an interrupted ingest");
            self.delete_documents(&pending).await?;
            catalog.journal_abandon(&pending)?;
        }
        Ok(pending)
    }

    /// Compares the chunk ids (and ACLs) held by the catalog and both indexes.
    pub async fn check_consistency(&self, catalog: &Catalog) -> Result<ConsistencyReport> {
        let scope = AccessScope::unrestricted_for_admin_tooling("consistency check");
        let vector: BTreeMap<String, Vec<String>> =
            self.vector.all_chunks(&scope).await?.into_iter().map(sorted).collect();
        let vector_total = self.vector.count().await?;
        // On a Qdrant server the BM25 terms are in the same points as the vectors.
        let (keyword, keyword_total) = match &self.keyword {
            Some(index) => (index.all_chunks(&scope)?.into_iter().map(sorted).collect(), index.num_chunks() as usize),
            None => (vector.clone(), vector_total),
        };
        let catalog_ids = catalog.chunk_ids()?;
        Ok(ConsistencyReport { catalog_ids, keyword, vector, keyword_total, vector_total })
    }
}

fn sorted((id, mut acl): (String, Vec<String>)) -> (String, Vec<String>) {
    acl.sort();
    (id, acl)
}

#[derive(Debug)]
pub struct ConsistencyReport {
    pub catalog_ids: Vec<String>,
    pub keyword: BTreeMap<String, Vec<String>>,
    pub vector: BTreeMap<String, Vec<String>>,
    /// Raw entry counts, which expose duplicates that the id maps would hide.
    pub keyword_total: usize,
    pub vector_total: usize,
}

impl ConsistencyReport {
    /// Empty when catalog, keyword and vector index hold exactly the same chunk ids, once
    /// each, with the same ACLs in both indexes.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let catalog: std::collections::BTreeSet<&String> = self.catalog_ids.iter().collect();
        let keyword: std::collections::BTreeSet<&String> = self.keyword.keys().collect();
        let vector: std::collections::BTreeSet<&String> = self.vector.keys().collect();
        for (name, ids) in [("keyword", &keyword), ("vector", &vector)] {
            let orphans = ids.difference(&catalog).count();
            let missing = catalog.difference(ids).count();
            if orphans > 0 {
                problems.push(format!("{orphans} chunk(s) in the {name} index are not in the catalog"));
            }
            if missing > 0 {
                problems.push(format!("{missing} catalog chunk(s) are missing from the {name} index"));
            }
        }
        if self.keyword_total != self.keyword.len() {
            problems.push(format!("keyword index holds {} entries for {} ids", self.keyword_total, self.keyword.len()));
        }
        if self.vector_total != self.vector.len() {
            problems.push(format!("vector index holds {} points for {} ids", self.vector_total, self.vector.len()));
        }
        let acl_mismatch =
            self.keyword.iter().filter(|(id, acl)| self.vector.get(*id).is_some_and(|v| v != *acl)).count();
        if acl_mismatch > 0 {
            problems.push(format!("{acl_mismatch} chunk(s) carry different ACLs in the two indexes"));
        }
        problems
    }
}

/// What the model record holds while `lore reembed` runs: the model being moved to.
const REEMBEDDING_PREFIX: &str = "reembedding:";

/// Records the model on first use and refuses to mix vectors of two models afterwards.
pub fn check_model(catalog: &Catalog, model: &ModelInfo, config: &Config) -> Result<()> {
    match catalog.meta(MODEL_META_KEY)? {
        Some(stored) if stored != model.fingerprint => Err(Error::ModelMismatch {
            data_dir: config.data_dir.clone(),
            stored: match stored.strip_prefix(REEMBEDDING_PREFIX) {
                Some(target) => format!("an interrupted re-embedding to {target}"),
                None => stored,
            },
            configured: model.fingerprint.clone(),
        }),
        Some(_) => Ok(()),
        None => catalog.set_meta(MODEL_META_KEY, &model.fingerprint),
    }
}

/// Marks the index as being re-embedded with `model`: until [`finish_reembedding`], every
/// open refuses it (its vectors are a mix of two models), naming the interruption.
pub fn begin_reembedding(catalog: &Catalog, model: &ModelInfo) -> Result<()> {
    catalog.set_meta(MODEL_META_KEY, &format!("{REEMBEDDING_PREFIX}{}", model.fingerprint))
}

/// Records `model` as the model of every vector, after a complete re-embedding.
pub fn finish_reembedding(catalog: &Catalog, model: &ModelInfo) -> Result<()> {
    catalog.set_meta(MODEL_META_KEY, &model.fingerprint)
}

pub fn stored_model(catalog: &Catalog) -> Result<Option<String>> {
    catalog.meta(MODEL_META_KEY)
}
