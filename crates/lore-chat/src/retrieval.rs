//! Hybrid retrieval: BM25 (Tantivy) and dense (Qdrant) search run concurrently, each with
//! the caller's [`AccessScope`] applied inside the engine; their candidates are fused by
//! weighted reciprocal rank, near-duplicates dropped and chunks per document capped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lore_core::acl::AccessScope;
use lore_core::catalog::Catalog;
use lore_core::config::{Config, RetrievalConfig};
use lore_core::embed::{Embedder, QueryBatcher, QueryCache};
use lore_core::index::{Indexes, check_model};
use lore_core::lang::Lang;
use lore_core::types::{Chunk, DocumentRecord, ScoredChunkId};
use serde::Serialize;
use tracing::Instrument;

use crate::fusion::{Weights, fuse_for_mode, jaccard, shingles, with_document_evidence};

/// Sentence vectors kept per query vector the query cache keeps (`embedding.query_cache_size`;
/// 0 turns both off): a chat compares up to a few dozen sentences with its question.
const SENTENCES_PER_QUERY: usize = 2;

pub struct Retriever {
    embedder: Arc<Embedder>,
    /// Concurrent queries share model calls.
    queries: QueryBatcher,
    /// Vectors of passage sentences compared with questions (answerability and extraction),
    /// by text: popular documents' sentences come back question after question.
    sentences: Mutex<QueryCache>,
    indexes: Arc<Indexes>,
    catalog: Mutex<Catalog>,
    config: RetrievalConfig,
    /// Languages the embedding model covers (`embedding.languages`).
    model_languages: Vec<Lang>,
}

/// A hit of one engine, with its chunk loaded from the catalog.
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

/// The document a passage comes from, as shown to callers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DocumentRef {
    pub id: String,
    pub title: String,
    pub source: String,
    pub path: String,
}

/// A fused, permitted passage.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Passage {
    pub rank: usize,
    pub score: f32,
    pub bm25_rank: Option<usize>,
    pub dense_rank: Option<usize>,
    pub dense_score: Option<f32>,
    pub document: DocumentRef,
    pub chunk: Chunk,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RetrievalTimings {
    pub embed_ms: f64,
    pub bm25_ms: f64,
    pub dense_ms: f64,
    pub fusion_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HybridResults {
    pub query_lang: Lang,
    pub passages: Vec<Passage>,
    /// What the engines say about the query as a whole (evidence for answerability).
    pub signals: RetrievalSignals,
    /// The query's embedding (sentences of the passages are compared with it).
    #[serde(skip)]
    pub query_vector: Vec<f32>,
    pub timings: RetrievalTimings,
}

/// Scores of the best permitted hits of each engine, whatever the mode.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetrievalSignals {
    /// Cosine similarities of the best dense hits, best first (at most 5).
    pub dense_scores: Vec<f32>,
    /// BM25 score of the best keyword hit.
    pub bm25_score: Option<f32>,
    /// Both engines rank the same document first.
    pub engines_agree: bool,
}

struct Candidates {
    query_lang: Lang,
    query_vector: Vec<f32>,
    bm25: Vec<ScoredChunkId>,
    dense: Vec<ScoredChunkId>,
    timings: RetrievalTimings,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Retriever {
    /// Opens the indexes read-only; fails if they were built with another model.
    pub async fn open(config: &Config, embedder: Arc<Embedder>) -> lore_core::Result<Self> {
        let catalog = Catalog::open_in(&config.open_database()?)?;
        check_model(&catalog, embedder.info(), config)?;
        let indexes = Arc::new(Indexes::open(config, false).await?);
        Ok(Self::assemble(config, embedder, indexes, catalog))
    }

    /// A retriever over indexes opened elsewhere (the server shares them with its writer;
    /// the keyword reader sees each commit as soon as it is made).
    pub fn with_indexes(config: &Config, embedder: Arc<Embedder>, indexes: Arc<Indexes>) -> lore_core::Result<Self> {
        Self::with_catalog(config, embedder, indexes, Catalog::open_in(&config.open_database()?)?)
    }

    /// [`Retriever::with_indexes`] with a catalog the caller opened (in the database it
    /// already holds, so a process connects to PostgreSQL once).
    pub fn with_catalog(
        config: &Config,
        embedder: Arc<Embedder>,
        indexes: Arc<Indexes>,
        catalog: Catalog,
    ) -> lore_core::Result<Self> {
        check_model(&catalog, embedder.info(), config)?;
        Ok(Self::assemble(config, embedder, indexes, catalog))
    }

    fn assemble(config: &Config, embedder: Arc<Embedder>, indexes: Arc<Indexes>, catalog: Catalog) -> Self {
        let queries =
            QueryBatcher::new(embedder.clone(), config.embedding.query_batch_size, config.embedding.query_cache_size);
        Retriever {
            embedder,
            queries,
            sentences: Mutex::new(QueryCache::new(config.embedding.query_cache_size * SENTENCES_PER_QUERY)),
            indexes,
            catalog: Mutex::new(catalog),
            config: config.retrieval.clone(),
            model_languages: config.embedding.languages.clone(),
        }
    }

    pub fn indexes(&self) -> &Indexes {
        &self.indexes
    }

    /// Tokens of `text` in the embedding model's tokenizer (sizes the model context).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.embedder.tokenizer().encode(text, false).map(|e| e.len()).unwrap_or(text.len() / 4)
    }

    pub fn config(&self) -> &RetrievalConfig {
        &self.config
    }

    /// Embeds texts compared with a query (sentences of passages), off the async runtime;
    /// texts embedded recently come from the sentence cache.
    pub async fn embed_texts(&self, texts: Vec<String>) -> lore_core::Result<Vec<Vec<f32>>> {
        let cache = || self.sentences.lock().unwrap_or_else(|p| p.into_inner());
        let mut vectors: Vec<Option<Vec<f32>>> = {
            let mut cache = cache();
            texts.iter().map(|text| cache.get(text)).collect()
        };
        let missing: Vec<String> =
            texts.iter().zip(&vectors).filter(|(_, v)| v.is_none()).map(|(t, _)| t.clone()).collect();
        if !missing.is_empty() {
            let embedder = self.embedder.clone();
            let computed = tokio::task::spawn_blocking(move || embedder.embed_passages(&missing).map(|v| (missing, v)))
                .await
                .map_err(|e| lore_core::Error::Embedding(format!("embedding task: {e}")))??;
            let mut cache = cache();
            let mut computed = computed.0.into_iter().zip(computed.1);
            for slot in vectors.iter_mut().filter(|v| v.is_none()) {
                let (text, vector) = computed.next().expect("one vector per missing text");
                cache.put(&text, vector.clone());
                *slot = Some(vector);
            }
        }
        Ok(vectors.into_iter().map(|v| v.expect("every text embedded")).collect())
    }

    /// One query's vector, through the batcher and its cache: the question a policy check
    /// embeds is then embedded again by retrieval for free.
    pub async fn embed_query(&self, query: &str) -> lore_core::Result<Vec<f32>> {
        self.queries.embed(query).await
    }

    /// The query cache's hits and misses so far.
    pub fn query_cache_stats(&self) -> (u64, u64) {
        self.queries.cache_stats()
    }

    /// Embeds questions as queries (category examples, down-voted questions), off the async
    /// runtime.
    pub async fn embed_queries(&self, queries: Vec<String>) -> lore_core::Result<Vec<Vec<f32>>> {
        let embedder = self.embedder.clone();
        tokio::task::spawn_blocking(move || embedder.embed_queries(&queries))
            .await
            .map_err(|e| lore_core::Error::Embedding(format!("embedding task: {e}")))?
    }

    /// BM25 starts at once; the query is embedded meanwhile, then dense search runs.
    async fn candidates(&self, query: &str, scope: &AccessScope, limit: usize) -> lore_core::Result<Candidates> {
        let query_lang = Lang::detect(query);
        let bm25_task = {
            let indexes = self.indexes.clone();
            let (query, scope) = (query.to_owned(), scope.clone());
            tokio::spawn(
                async move {
                    let started = Instant::now();
                    let hits = indexes.keyword_search(&query, query_lang, &scope, limit).await?;
                    Ok::<_, lore_core::Error>((hits, started.elapsed()))
                }
                .instrument(tracing::info_span!("bm25")),
            )
        };
        let started = Instant::now();
        let vector = self.queries.embed(query).instrument(tracing::info_span!("embed")).await?;
        let embed_time = started.elapsed();
        let started = Instant::now();
        let dense =
            self.indexes.vector.search(vector.clone(), scope, limit).instrument(tracing::info_span!("dense")).await?;
        let dense_time = started.elapsed();
        let (bm25, bm25_time) =
            bm25_task.await.map_err(|e| lore_core::Error::Vector(format!("keyword search task: {e}")))??;
        Ok(Candidates {
            query_lang,
            query_vector: vector,
            bm25,
            dense,
            timings: RetrievalTimings {
                embed_ms: millis(embed_time),
                bm25_ms: millis(bm25_time),
                dense_ms: millis(dense_time),
                fusion_ms: 0.0,
            },
        })
    }

    /// Both engines' rankings separately (what `lore search` prints).
    pub async fn search(&self, query: &str, scope: &AccessScope, limit: usize) -> lore_core::Result<SearchResults> {
        let started = Instant::now();
        let candidates = self.candidates(query, scope, limit).await?;
        let mut documents = HashMap::new();
        let hydrate = |hits: &[ScoredChunkId], documents: &mut HashMap<String, Option<DocumentRecord>>| {
            let loaded = self.load(hits, scope, documents)?;
            Ok::<_, lore_core::Error>(
                loaded
                    .into_iter()
                    .enumerate()
                    .map(|(i, (hit, doc, chunk))| Hit {
                        rank: i + 1,
                        score: hit.score,
                        doc_path: format!("{}/{}", doc.source, doc.path),
                        chunk,
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let bm25 = hydrate(&candidates.bm25, &mut documents)?;
        let dense = hydrate(&candidates.dense, &mut documents)?;
        Ok(SearchResults {
            query_lang: candidates.query_lang,
            bm25,
            dense,
            embed_time: Duration::from_secs_f64(candidates.timings.embed_ms / 1e3),
            search_time: started.elapsed(),
        })
    }

    /// Fused, de-duplicated, per-document-capped passages the caller may read, best first
    /// (`retrieval.mode` picks both engines' rankings or one of them).
    pub async fn hybrid(&self, query: &str, scope: &AccessScope, limit: usize) -> lore_core::Result<HybridResults> {
        let c = &self.config;
        if c.server_fusion
            && c.mode == lore_core::config::RetrievalMode::Hybrid
            && let Some(results) = self.server_fused(query, scope, limit).await?
        {
            return Ok(results);
        }
        let mut candidates = self.candidates(query, scope, c.candidates.max(limit)).await?;
        let started = Instant::now();
        let _fusion = tracing::info_span!("fusion").entered();
        let weights = self.weights(candidates.query_lang);
        let fused = fuse_for_mode(c.mode, &candidates.bm25, &candidates.dense, weights);
        let fused = with_document_evidence(fused, c.document_weight);
        let signals = RetrievalSignals {
            dense_scores: candidates.dense.iter().take(5).map(|h| h.score).collect(),
            bm25_score: candidates.bm25.first().map(|h| h.score),
            engines_agree: matches!(
                (candidates.bm25.first(), candidates.dense.first()),
                (Some(b), Some(d)) if b.doc_id == d.doc_id
            ),
        };
        let passages = self.passages(&fused, scope, limit)?;
        drop(_fusion);
        candidates.timings.fusion_ms = millis(started.elapsed());
        Ok(HybridResults {
            query_lang: candidates.query_lang,
            passages,
            signals,
            query_vector: candidates.query_vector,
            timings: candidates.timings,
        })
    }

    /// The fusion weights for a query in `lang`. The embedding model ranks poorly in a
    /// language it was not trained on (unrelated Spanish texts score as fairly close under an
    /// English model), so its ranking counts less for such a query. (Weighting only Spanish
    /// chunks down would push the English twin of a Spanish policy above it.)
    fn weights(&self, lang: Lang) -> Weights {
        let c = &self.config;
        let dense = if self.model_languages.contains(&lang) { c.dense_weight } else { c.other_language_dense_weight };
        Weights { k: c.rrf_k, bm25: c.bm25_weight, dense }
    }

    /// `retrieval.server_fusion`: one Query API request fused by a Qdrant server (`None` on
    /// the embedded backend). No per-engine ranks or scores come back.
    async fn server_fused(
        &self,
        query: &str,
        scope: &AccessScope,
        limit: usize,
    ) -> lore_core::Result<Option<HybridResults>> {
        let query_lang = Lang::detect(query);
        let started = Instant::now();
        let vector = self.queries.embed(query).instrument(tracing::info_span!("embed")).await?;
        let embed_ms = millis(started.elapsed());
        let started = Instant::now();
        let weights = self.weights(query_lang);
        let terms = lore_core::index::sparse::query_vector(query, query_lang);
        let candidates = self.config.candidates.max(limit);
        let Some(hits) = self
            .indexes
            .vector
            .fused_search(vector.clone(), terms, scope, candidates, weights.k, [weights.bm25, weights.dense])
            .instrument(tracing::info_span!("fused"))
            .await?
        else {
            return Ok(None);
        };
        let search_ms = millis(started.elapsed());
        let fused: Vec<crate::fusion::Fused> = hits
            .into_iter()
            .map(|hit| crate::fusion::Fused {
                chunk_id: hit.chunk_id,
                doc_id: hit.doc_id,
                score: hit.score,
                bm25_rank: None,
                dense_rank: None,
                bm25_score: None,
                dense_score: None,
            })
            .collect();
        let passages = self.passages(&fused, scope, limit)?;
        Ok(Some(HybridResults {
            query_lang,
            passages,
            signals: RetrievalSignals::default(),
            query_vector: vector,
            timings: RetrievalTimings { embed_ms, bm25_ms: search_ms, dense_ms: search_ms, fusion_ms: 0.0 },
        }))
    }

    /// Passages from a fused ranking: loaded lazily, best first, near-duplicates dropped and
    /// chunks per document capped, until `limit` are kept.
    fn passages(
        &self,
        fused: &[crate::fusion::Fused],
        scope: &AccessScope,
        limit: usize,
    ) -> lore_core::Result<Vec<Passage>> {
        let c = &self.config;
        let mut passages: Vec<Passage> = Vec::new();
        let mut kept_shingles = Vec::new();
        let mut per_document: HashMap<String, usize> = HashMap::new();
        let mut documents = HashMap::new();
        // Chunks are loaded lazily, best first, until `limit` passages are kept: most of the
        // candidates are never read from the catalog.
        let catalog = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        for origin in fused {
            if passages.len() == limit {
                break;
            }
            if per_document.get(&origin.doc_id).is_some_and(|&n| n >= c.max_chunks_per_document) {
                continue;
            }
            let Some((doc, chunk)) = load_one(&catalog, &origin.chunk_id, scope, &mut documents)? else { continue };
            let shingle = shingles(&chunk.text);
            if kept_shingles.iter().any(|kept| jaccard(kept, &shingle) >= c.near_duplicate_threshold) {
                continue;
            }
            *per_document.entry(doc.id.clone()).or_default() += 1;
            kept_shingles.push(shingle);
            passages.push(Passage {
                rank: passages.len() + 1,
                score: origin.score,
                bm25_rank: origin.bm25_rank,
                dense_rank: origin.dense_rank,
                dense_score: origin.dense_score,
                document: DocumentRef { id: doc.id, title: doc.title, source: doc.source, path: doc.path },
                chunk,
            });
        }
        drop(catalog);
        Ok(passages)
    }

    /// Loads chunks and their documents from the catalog, in hit order (see [`load_one`]).
    fn load(
        &self,
        hits: &[ScoredChunkId],
        scope: &AccessScope,
        documents: &mut HashMap<String, Option<DocumentRecord>>,
    ) -> lore_core::Result<Vec<(ScoredChunkId, DocumentRecord, Chunk)>> {
        let catalog = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(hits.len());
        for hit in hits {
            if let Some((doc, chunk)) = load_one(&catalog, &hit.chunk_id, scope, documents)? {
                out.push((hit.clone(), doc, chunk));
            }
        }
        Ok(out)
    }
}

/// A chunk and its document from the catalog (documents cached in `documents`). A hit
/// missing from the catalog belongs to an interrupted ingest and is skipped. The ACL check
/// here is a second line of defence: the engines already filtered, so a failure is an
/// invariant violation.
fn load_one(
    catalog: &Catalog,
    chunk_id: &str,
    scope: &AccessScope,
    documents: &mut HashMap<String, Option<DocumentRecord>>,
) -> lore_core::Result<Option<(DocumentRecord, Chunk)>> {
    let Some(chunk) = catalog.chunks_by_id(&[chunk_id.to_owned()])?.pop() else { return Ok(None) };
    if !documents.contains_key(&chunk.doc_id) {
        documents.insert(chunk.doc_id.clone(), catalog.document(&chunk.doc_id)?);
    }
    let Some(doc) = documents[&chunk.doc_id].clone() else { return Ok(None) };
    if !scope.permits(&doc.acl.to_strings()) {
        tracing::error!(chunk = %chunk.id, "engine returned a chunk outside the caller's ACL; dropped");
        return Ok(None);
    }
    Ok(Some((doc, chunk)))
}
