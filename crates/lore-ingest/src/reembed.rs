//! Re-embedding every stored chunk with the configured model, in place: what switching
//! embedding models takes. Documents, chunk texts, ACLs and the keyword index stay; each
//! chunk's vector is recomputed from its stored text and written to the vector index (same
//! point id) and to the catalog.
//!
//! Crash-safe and resumable: the model record says "re-embedding to X" from the first write
//! until the last, so nothing opens a half-converted index; a rerun skips every chunk whose
//! catalog vector already belongs to the new model.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lore_core::catalog::{Catalog, StoredVector, embed_key};
use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_core::index::{Indexes, VectorPoint, begin_reembedding, finish_reembedding, stored_model};

use crate::error::IngestError;
use crate::pipeline::embedding_order;

/// Chunks read, embedded and written per step.
const PAGE: usize = 512;

#[derive(Debug, Default)]
pub struct ReembedReport {
    /// The model the index held before (`None`: an empty, new index).
    pub from: Option<String>,
    pub to: String,
    pub chunks: usize,
    /// Chunks whose new vector was computed now (the rest were already converted).
    pub embedded: usize,
    pub elapsed: Duration,
}

/// Re-embeds every chunk of `config`'s data folder with `embedder`. The caller holds the
/// data folder's lock (no server or ingest may write at the same time).
pub async fn reembed(
    config: &Config,
    embedder: Arc<Embedder>,
    mut progress: impl FnMut(usize, usize),
) -> Result<ReembedReport, IngestError> {
    let started = Instant::now();
    let mut catalog = Catalog::open_in(&config.open_database()?)?;
    let model = embedder.info().clone();
    let from = stored_model(&catalog)?;
    let mut report = ReembedReport { from: from.clone(), to: model.fingerprint.clone(), ..Default::default() };
    if from.as_deref() == Some(model.fingerprint.as_str()) {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    let indexes = Indexes::open(config, false).await?;
    begin_reembedding(&catalog, &model)?;
    let ids = catalog.chunk_ids()?;
    let mut acls: HashMap<String, Vec<String>> = HashMap::new();
    for page in ids.chunks(PAGE) {
        let chunks = catalog.chunks_by_id(page)?;
        let keys: Vec<String> = chunks.iter().map(|c| embed_key(&model.fingerprint, &c.embedding_text())).collect();
        let mut vectors = catalog.stored_vectors(&keys)?;
        // Each text once (chunks of repeated text share a key).
        let mut seen = HashSet::new();
        let (new_keys, texts): (Vec<String>, Vec<String>) = chunks
            .iter()
            .zip(&keys)
            .filter(|(_, key)| !vectors.contains_key(*key) && seen.insert(*key))
            .map(|(chunk, key)| (key.clone(), chunk.embedding_text()))
            .unzip();
        if !texts.is_empty() {
            let model_embedder = embedder.clone();
            let computed = tokio::task::spawn_blocking(move || {
                // Shortest first, as ingest sends them: each model batch is padded to its longest text.
                let order = embedding_order(model_embedder.tokenizer(), &texts);
                let sorted: Vec<String> = order.iter().map(|&i| texts[i].clone()).collect();
                let vectors = model_embedder.embed_passages(&sorted)?;
                let mut by_input = vec![Vec::new(); texts.len()];
                for (i, vector) in order.into_iter().zip(vectors) {
                    by_input[i] = vector;
                }
                Ok::<_, lore_core::Error>(by_input)
            })
            .await
            .map_err(|e| IngestError::Other(format!("embedding task failed: {e}")))??;
            report.embedded += computed.len();
            vectors.extend(new_keys.into_iter().zip(computed));
        }
        let mut points = Vec::with_capacity(chunks.len());
        let mut stored = Vec::with_capacity(chunks.len());
        for (chunk, key) in chunks.iter().zip(keys) {
            if !acls.contains_key(&chunk.doc_id) {
                let acl = catalog.document(&chunk.doc_id)?.map(|d| d.acl.to_strings()).unwrap_or_default();
                acls.insert(chunk.doc_id.clone(), acl);
            }
            let vector = vectors[&key].clone();
            points.push(VectorPoint {
                chunk_id: chunk.id.clone(),
                doc_id: chunk.doc_id.clone(),
                acl: acls[&chunk.doc_id].clone(),
                lang: chunk.lang.code().to_owned(),
                vector: vector.clone(),
                sparse: None,
            });
            stored.push((chunk.id.clone(), StoredVector { key, vector }));
        }
        indexes.settle_keyword_averages(&catalog, &chunks)?;
        indexes.upsert_vectors(points, &chunks).await?;
        catalog.set_chunk_vectors(&stored)?;
        report.chunks += chunks.len();
        progress(report.chunks, ids.len());
    }
    indexes.vector.flush().await?;
    finish_reembedding(&catalog, &model)?;
    report.elapsed = started.elapsed();
    Ok(report)
}
