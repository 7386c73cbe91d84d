//! Weighted reciprocal rank fusion and near-duplicate detection: pure functions.

use std::collections::{HashMap, HashSet};

use lore_core::config::RetrievalMode;
use lore_core::types::ScoredChunkId;

/// Reciprocal rank fusion's constant `k` and the weight of each engine's ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub k: f32,
    pub bm25: f32,
    pub dense: f32,
}

/// One chunk after fusion, with where it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fused {
    pub chunk_id: String,
    pub doc_id: String,
    pub score: f32,
    pub bm25_rank: Option<usize>,
    pub dense_rank: Option<usize>,
    pub bm25_score: Option<f32>,
    pub dense_score: Option<f32>,
}

/// score = Σ weight / (k + rank), ranks starting at 1. Ties break by chunk id, so the
/// order is deterministic.
pub fn reciprocal_rank_fusion(bm25: &[ScoredChunkId], dense: &[ScoredChunkId], weights: Weights) -> Vec<Fused> {
    let k = weights.k;
    let mut fused: HashMap<&str, Fused> = HashMap::new();
    for (list, weight, is_bm25) in [(bm25, weights.bm25, true), (dense, weights.dense, false)] {
        for (index, hit) in list.iter().enumerate() {
            let rank = index + 1;
            let entry = fused.entry(hit.chunk_id.as_str()).or_insert_with(|| Fused {
                chunk_id: hit.chunk_id.clone(),
                doc_id: hit.doc_id.clone(),
                score: 0.0,
                bm25_rank: None,
                dense_rank: None,
                bm25_score: None,
                dense_score: None,
            });
            if is_bm25 {
                if entry.bm25_rank.is_some() {
                    continue;
                }
                entry.bm25_rank = Some(rank);
                entry.bm25_score = Some(hit.score);
            } else {
                if entry.dense_rank.is_some() {
                    continue;
                }
                entry.dense_rank = Some(rank);
                entry.dense_score = Some(hit.score);
            }
            entry.score += weight / (k + rank as f32);
        }
    }
    let mut out: Vec<Fused> = fused.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.chunk_id.cmp(&b.chunk_id)));
    out
}

/// Adds document-level evidence to a fused ranking: each chunk gains `weight` times the
/// fused scores of the other candidate chunks of its document, so a document that matches in
/// several places (as whole-document BM25 would see it) rises above one stray chunk.
/// `weight` 0 leaves the ranking as it is.
pub fn with_document_evidence(mut fused: Vec<Fused>, weight: f32) -> Vec<Fused> {
    if weight == 0.0 {
        return fused;
    }
    let mut per_document: HashMap<String, f32> = HashMap::new();
    for f in &fused {
        *per_document.entry(f.doc_id.clone()).or_default() += f.score;
    }
    for f in &mut fused {
        f.score += weight * (per_document[&f.doc_id] - f.score);
    }
    fused.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.chunk_id.cmp(&b.chunk_id)));
    fused
}

/// The fused ranking for a retrieval mode: both engines (`Hybrid`), or one engine's ranking
/// alone, in its own order.
pub fn fuse_for_mode(
    mode: RetrievalMode,
    bm25: &[ScoredChunkId],
    dense: &[ScoredChunkId],
    weights: Weights,
) -> Vec<Fused> {
    match mode {
        RetrievalMode::Hybrid => reciprocal_rank_fusion(bm25, dense, weights),
        RetrievalMode::Bm25 => reciprocal_rank_fusion(bm25, &[], Weights { bm25: 1.0, dense: 0.0, ..weights }),
        RetrievalMode::Dense => reciprocal_rank_fusion(&[], dense, Weights { bm25: 0.0, dense: 1.0, ..weights }),
    }
}

/// Word 3-shingles of a text, lowercased.
pub fn shingles(text: &str) -> HashSet<u64> {
    use std::hash::{Hash, Hasher};
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let mut out = HashSet::new();
    if words.len() < 3 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        words.hash(&mut hasher);
        out.insert(hasher.finish());
        return out;
    }
    for window in words.windows(3) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        window.hash(&mut hasher);
        out.insert(hasher.finish());
    }
    out
}

pub fn jaccard(a: &HashSet<u64>, b: &HashSet<u64>) -> f32 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let intersection = a.intersection(b).count();
    intersection as f32 / (a.len() + b.len() - intersection) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, doc: &str) -> ScoredChunkId {
        ScoredChunkId { chunk_id: id.into(), doc_id: doc.into(), score: 1.0 }
    }

    fn weights(bm25: f32, dense: f32) -> Weights {
        Weights { k: 60.0, bm25, dense }
    }

    #[test]
    fn chunks_found_by_both_engines_rank_first() {
        let bm25 = [hit("a", "d1"), hit("b", "d1"), hit("c", "d2")];
        let dense = [hit("c", "d2"), hit("d", "d3"), hit("a", "d1")];
        let fused = reciprocal_rank_fusion(&bm25, &dense, weights(1.0, 1.0));
        let order: Vec<&str> = fused.iter().map(|f| f.chunk_id.as_str()).collect();
        assert_eq!(order, ["a", "c", "b", "d"]);
        assert_eq!(fused[0].bm25_rank, Some(1));
        assert_eq!(fused[0].dense_rank, Some(3));
        assert!((fused[0].score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    }

    #[test]
    fn documents_matching_in_several_places_rise() {
        let hit = |id: &str, doc: &str| ScoredChunkId { chunk_id: id.into(), doc_id: doc.into(), score: 1.0 };
        // a1 ranks first alone; document b matches with three chunks.
        let bm25 = [hit("a1", "a"), hit("b1", "b"), hit("b2", "b"), hit("b3", "b")];
        let fused = reciprocal_rank_fusion(&bm25, &[], Weights { k: 60.0, bm25: 1.0, dense: 1.0 });
        assert_eq!(with_document_evidence(fused.clone(), 0.0), fused);
        let boosted = with_document_evidence(fused, 0.5);
        assert_eq!(boosted[0].doc_id, "b");
        assert_eq!(boosted.iter().filter(|f| f.doc_id == "b").count(), 3);
    }

    #[test]
    fn weights_shift_the_balance() {
        let bm25 = [hit("a", "d1")];
        let dense = [hit("b", "d2")];
        let fused = reciprocal_rank_fusion(&bm25, &dense, weights(0.5, 1.0));
        assert_eq!(fused[0].chunk_id, "b");
        let fused = reciprocal_rank_fusion(&bm25, &dense, weights(1.0, 0.5));
        assert_eq!(fused[0].chunk_id, "a");
    }

    #[test]
    fn single_engine_modes_keep_that_engines_order_only() {
        let bm25 = [hit("a", "d1"), hit("b", "d1"), hit("c", "d2")];
        let dense = [hit("c", "d2"), hit("d", "d3"), hit("a", "d1")];
        let order = |mode| -> Vec<String> {
            fuse_for_mode(mode, &bm25, &dense, weights(1.0, 1.0)).into_iter().map(|f| f.chunk_id).collect()
        };
        assert_eq!(order(RetrievalMode::Bm25), ["a", "b", "c"]);
        assert_eq!(order(RetrievalMode::Dense), ["c", "d", "a"]);
        assert_eq!(order(RetrievalMode::Hybrid), ["a", "c", "b", "d"]);
        let bm25_only = fuse_for_mode(RetrievalMode::Bm25, &bm25, &dense, weights(1.0, 1.0));
        assert!(bm25_only.iter().all(|f| f.dense_rank.is_none() && f.bm25_rank.is_some()));
        // Weights tuned for fusion must not empty a single-engine ranking.
        assert_eq!(fuse_for_mode(RetrievalMode::Dense, &bm25, &dense, weights(1.0, 0.0)).len(), 3);
    }

    #[test]
    fn near_duplicates_have_high_jaccard() {
        let a = shingles("Employees receive 25 days of paid vacation per calendar year.");
        let b = shingles("Employees receive 25 days of paid vacation per calendar year!");
        let c = shingles("The database fails over to the replica in another region.");
        assert!(jaccard(&a, &b) > 0.9);
        assert!(jaccard(&a, &c) < 0.1);
    }
}
