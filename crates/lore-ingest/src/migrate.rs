//! The vector half of `lore migrate`: every chunk of an embedded catalog written to the
//! target's vector index (a Qdrant server) with the vector the catalog stored for it, so
//! nothing is embedded again; on a server each point also gets the chunk's BM25 terms.

use std::collections::HashMap;

use lore_core::catalog::{Catalog, embed_key};
use lore_core::index::{Indexes, VectorPoint, stored_model};

use crate::error::IngestError;

/// Chunks read and written per step.
const PAGE: usize = 512;

/// Writes every chunk of `source` into `target`'s vector index; returns how many. Fails,
/// naming how many, when some chunk has no stored vector of the catalog's model.
pub async fn copy_vectors(
    source: &Catalog,
    target: &Indexes,
    mut progress: impl FnMut(usize, usize),
) -> Result<usize, IngestError> {
    let ids = source.chunk_ids()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let model = stored_model(source)?.filter(|m| !m.starts_with("reembedding:")).ok_or_else(|| {
        IngestError::Other(
            "the source's model record is missing or a re-embedding was interrupted: run `lore reembed` first".into(),
        )
    })?;
    let mut acls: HashMap<String, Vec<String>> = HashMap::new();
    let mut done = 0;
    for page in ids.chunks(PAGE) {
        let chunks = source.chunks_by_id(page)?;
        let keys: Vec<String> = chunks.iter().map(|c| embed_key(&model, &c.embedding_text())).collect();
        let vectors = source.stored_vectors(&keys)?;
        let missing = keys.iter().filter(|k| !vectors.contains_key(*k)).count();
        if missing > 0 {
            return Err(IngestError::Other(format!(
                "{missing} chunk(s) have no stored vector of {model} in the catalog: run `lore reembed` on the source first"
            )));
        }
        let mut points = Vec::with_capacity(chunks.len());
        for (chunk, key) in chunks.iter().zip(&keys) {
            if !acls.contains_key(&chunk.doc_id) {
                let acl = source.document(&chunk.doc_id)?.map(|d| d.acl.to_strings()).unwrap_or_default();
                acls.insert(chunk.doc_id.clone(), acl);
            }
            points.push(VectorPoint {
                chunk_id: chunk.id.clone(),
                doc_id: chunk.doc_id.clone(),
                acl: acls[&chunk.doc_id].clone(),
                lang: chunk.lang.code().to_owned(),
                vector: vectors[key].clone(),
                sparse: None,
            });
        }
        target.upsert_vectors(points, &chunks).await?;
        done += chunks.len();
        progress(done, ids.len());
    }
    target.vector.flush().await?;
    Ok(done)
}
