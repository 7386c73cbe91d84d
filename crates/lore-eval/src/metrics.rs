//! Ranking metrics (recall@k, precision@k, MRR, nDCG@10) and aggregation of per-case values
//! into means per mode, tag and language, with latency percentiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Cut-offs reported for recall.
pub const RECALL_AT: [usize; 4] = [1, 3, 5, 10];
pub const PRECISION_AT: usize = 5;
pub const NDCG_AT: usize = 10;

/// Ranking quality of one case at one level (documents, or pages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankMetrics {
    /// (k, recall@k) for each of [`RECALL_AT`].
    pub recall: Vec<(usize, f64)>,
    pub precision_at_5: f64,
    pub mrr: f64,
    pub ndcg_at_10: f64,
    /// 1-based rank of the first relevant unit, if any.
    pub first_relevant: Option<usize>,
}

/// `ranked[i]` is the index of the relevant entry the i-th retrieved unit matches, or `None`;
/// `relevant` is how many relevant entries there are. Units are distinct (documents, or pages).
pub fn rank_metrics(ranked: &[Option<usize>], relevant: usize) -> RankMetrics {
    let found_in = |k: usize| {
        let mut seen: Vec<usize> = ranked.iter().take(k).flatten().copied().collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    };
    let recall = RECALL_AT
        .iter()
        .map(|&k| (k, if relevant == 0 { 0.0 } else { found_in(k) as f64 / relevant as f64 }))
        .collect();
    let precision_at_5 = ranked.iter().take(PRECISION_AT).filter(|r| r.is_some()).count() as f64 / PRECISION_AT as f64;
    let first_relevant = ranked.iter().position(Option::is_some).map(|i| i + 1);
    let mrr = first_relevant.filter(|&r| r <= NDCG_AT).map_or(0.0, |r| 1.0 / r as f64);
    let mut credited: Vec<usize> = Vec::new();
    let mut dcg = 0.0;
    for (i, hit) in ranked.iter().take(NDCG_AT).enumerate() {
        if let Some(entry) = hit
            && !credited.contains(entry)
        {
            credited.push(*entry);
            dcg += 1.0 / ((i + 2) as f64).log2();
        }
    }
    let ideal: f64 = (0..relevant.min(NDCG_AT)).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    let ndcg_at_10 = if ideal > 0.0 { dcg / ideal } else { 0.0 };
    RankMetrics { recall, precision_at_5, mrr, ndcg_at_10, first_relevant }
}

impl RankMetrics {
    /// `(name, value)` pairs under a prefix (`doc`, `page`).
    pub fn named(&self, prefix: &str) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> =
            self.recall.iter().map(|(k, v)| (format!("{prefix}.recall@{k}"), *v)).collect();
        out.push((format!("{prefix}.precision@{PRECISION_AT}"), self.precision_at_5));
        out.push((format!("{prefix}.mrr"), self.mrr));
        out.push((format!("{prefix}.ndcg@{NDCG_AT}"), self.ndcg_at_10));
        out
    }
}

/// A metric over a group of cases: the mean over the cases it applies to, how many those are,
/// and the sum (for counts such as leaks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub n: usize,
    pub sum: f64,
}

/// metric name → values of the cases it applies to.
#[derive(Debug, Default)]
pub struct Accumulator(BTreeMap<String, Vec<f64>>);

impl Accumulator {
    pub fn add(&mut self, name: impl Into<String>, value: f64) {
        self.0.entry(name.into()).or_default().push(value);
    }

    /// Means (and sums), plus p50/p95 for every metric whose name starts with `latency.`.
    pub fn finish(self) -> BTreeMap<String, Stat> {
        let mut out = BTreeMap::new();
        for (name, values) in self.0 {
            let n = values.len();
            let sum: f64 = values.iter().sum();
            if let Some(stage) = name.strip_prefix("latency.") {
                for (q, label) in [(0.5, "p50"), (0.95, "p95")] {
                    out.insert(format!("latency.{stage}.{label}"), Stat { mean: percentile(&values, q), n, sum });
                }
            } else {
                out.insert(name, Stat { mean: if n == 0 { 0.0 } else { sum / n as f64 }, n, sum });
            }
        }
        out
    }
}

/// Nearest-rank percentile (`q` in 0..=1) of unsorted values; 0 for none.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Whether a larger value of the metric is better (false for rates of mistakes, leaks and
/// latencies).
pub fn higher_is_better(metric: &str) -> bool {
    !(metric.starts_with("latency.") || metric == "abstention.false_rate" || metric == "leaks")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranking_metrics_on_a_known_ranking() {
        // Relevant entries 0 and 1; retrieved: miss, entry 1, miss, entry 0, entry 1 again.
        let m = rank_metrics(&[None, Some(1), None, Some(0), Some(1)], 2);
        assert_eq!(m.recall, [(1, 0.0), (3, 0.5), (5, 1.0), (10, 1.0)]);
        assert_eq!(m.first_relevant, Some(2));
        assert!((m.mrr - 0.5).abs() < 1e-12);
        assert!((m.precision_at_5 - 0.6).abs() < 1e-12);
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((m.ndcg_at_10 - dcg / ideal).abs() < 1e-12);
        let perfect = rank_metrics(&[Some(0), Some(1)], 2);
        assert!((perfect.ndcg_at_10 - 1.0).abs() < 1e-12 && perfect.mrr == 1.0);
        let none = rank_metrics(&[None, None], 1);
        assert_eq!((none.mrr, none.ndcg_at_10, none.first_relevant), (0.0, 0.0, None));
    }

    #[test]
    fn accumulator_means_and_percentiles() {
        let mut acc = Accumulator::default();
        for v in [1.0, 0.0, 1.0, 1.0] {
            acc.add("doc.mrr", v);
        }
        for ms in 1..=20 {
            acc.add("latency.retrieval_ms", ms as f64);
        }
        let stats = acc.finish();
        assert_eq!(stats["doc.mrr"], Stat { mean: 0.75, n: 4, sum: 3.0 });
        assert_eq!(stats["latency.retrieval_ms.p50"].mean, 10.0);
        assert_eq!(stats["latency.retrieval_ms.p95"].mean, 19.0);
        assert!(!stats.contains_key("latency.retrieval_ms"));
        assert!(higher_is_better("doc.mrr") && !higher_is_better("abstention.false_rate"));
    }
}
