//! Both retrievers run with the caller's [`AccessScope`] applied inside the engine.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lore_core::acl::AccessScope;
use lore_core::catalog::Catalog;
use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_core::index::{Indexes, check_model};
use lore_core::lang::Lang;
use lore_core::types::{Chunk, ScoredChunkId};
use serde::Serialize;

pub struct Retriever {
    embedder: Arc<Embedder>,
    indexes: Indexes,
    catalog: Mutex<Catalog>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Hit {
    pub rank: usize,
    pub score: f32,
    pub doc_path: String,
    pub chunk: Chunk,
}

#[derive(Debug, Clone, Serialize)]
pub struct SearchResults {
    pub query_lang: Lang,
    pub bm25: Vec<Hit>,
    pub dense: Vec<Hit>,
    #[serde(skip)]
    pub embed_time: Duration,
    #[serde(skip)]
    pub search_time: Duration,
}

impl Retriever {
    /// Opens the indexes read-only; fails if they were built with another model.
    pub async fn open(config: &Config, embedder: Arc<Embedder>) -> lore_core::Result<Self> {
        let catalog = Catalog::open(&config.catalog_path())?;
        check_model(&catalog, embedder.info(), config)?;
        let indexes = Indexes::open(config, false).await?;
        Ok(Retriever { embedder, indexes, catalog: Mutex::new(catalog) })
    }

    pub fn indexes(&self) -> &Indexes {
        &self.indexes
    }

    /// BM25 and dense search, both filtered by `scope` inside their engine, run concurrently.
    pub async fn search(&self, query: &str, scope: &AccessScope, limit: usize) -> lore_core::Result<SearchResults> {
        let query_lang = Lang::detect(query);
        let started = Instant::now();
        let embedder = self.embedder.clone();
        let owned_query = query.to_owned();
        let vector = tokio::task::spawn_blocking(move || embedder.embed_query(&owned_query))
            .await
            .map_err(|e| lore_core::Error::Embedding(e.to_string()))??;
        let embed_time = started.elapsed();
        let started = Instant::now();
        let (bm25, dense) = tokio::join!(
            async { self.indexes.keyword.search(query, query_lang, scope, limit) },
            self.indexes.vector.search(vector, scope, limit)
        );
        let search_time = started.elapsed();
        Ok(SearchResults {
            query_lang,
            bm25: self.hydrate(bm25?, scope)?,
            dense: self.hydrate(dense?, scope)?,
            embed_time,
            search_time,
        })
    }

    /// Loads chunk texts from the catalog. The ACL check here is a second line of defence:
    /// the engines already filtered, so a failure is logged as an invariant violation.
    fn hydrate(&self, hits: Vec<ScoredChunkId>, scope: &AccessScope) -> lore_core::Result<Vec<Hit>> {
        let catalog = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(hits.len());
        let mut docs = std::collections::HashMap::new();
        for hit in &hits {
            // A hit missing from the catalog is a chunk of an interrupted ingest: skip it.
            let Some(chunk) = catalog.chunks_by_id(std::slice::from_ref(&hit.chunk_id))?.pop() else { continue };
            if !docs.contains_key(&chunk.doc_id) {
                docs.insert(chunk.doc_id.clone(), catalog.document(&chunk.doc_id)?);
            }
            let Some(doc) = docs.get(&chunk.doc_id).cloned().flatten() else { continue };
            if !scope.permits(&doc.acl.to_strings()) {
                tracing::error!(chunk = %chunk.id, "engine returned a chunk outside the caller's ACL; dropped");
                continue;
            }
            out.push(Hit {
                rank: out.len() + 1,
                score: hit.score,
                doc_path: format!("{}/{}", doc.source, doc.path),
                chunk,
            });
        }
        Ok(out)
    }
}
