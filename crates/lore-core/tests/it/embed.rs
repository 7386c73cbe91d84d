//! The real embedding model: shape, normalisation, meaning, and the sizing tokenizer.

use lore_core::config::Config;
use lore_core::embed::{Embedder, load_sizing_tokenizer};

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn embeddings_are_normalised_384_dimensional_and_meaningful() {
    let embedder = Embedder::load(&Config::default().embedding).expect("run `python3 scripts/setup-models.py`");
    assert_eq!(embedder.info().dimension, 384);
    assert!(embedder.info().fingerprint.starts_with("all-minilm-l6-v2-int8-dyn/384d/mean/"));
    let texts: Vec<String> = [
        "How many vacation days do employees get?",
        "Employees receive 25 days of paid annual leave.",
        "The database fails over to the replica in the other region.",
    ]
    .map(String::from)
    .to_vec();
    let vectors = embedder.embed_passages(&texts).unwrap();
    for v in &vectors {
        assert_eq!(v.len(), 384);
        assert!((cosine(v, v) - 1.0).abs() < 1e-3, "not L2-normalised");
    }
    // The default model quantizes activations per call: a text alone and in a batch get
    // nearly the same vector (padding must not leak into the mean beyond that).
    let query = embedder.embed_query("How many vacation days do employees get?").unwrap();
    assert!(cosine(&query, &vectors[0]) > 0.99, "query and passage paths disagree");
    assert!(cosine(&vectors[0], &vectors[1]) > cosine(&vectors[0], &vectors[2]) + 0.2);
    let single = embedder.embed_passages(&texts[2..]).unwrap();
    assert!(cosine(&single[0], &vectors[2]) > 0.99);
}

#[test]
fn sizing_tokenizer_neither_truncates_nor_pads() {
    let tokenizer = load_sizing_tokenizer(&Config::default().embedding.model_dir).unwrap();
    let long = "vacation ".repeat(400);
    let encoding = tokenizer.encode(long.as_str(), false).unwrap();
    assert_eq!(encoding.len(), 400, "the packaged tokenizer.json truncates at 128 unless switched off");
    let short = tokenizer.encode("hello", false).unwrap();
    assert_eq!(short.len(), 1, "the packaged tokenizer.json pads to 128 unless switched off");
}

#[test]
fn a_missing_onnxruntime_library_is_a_clear_error() {
    let mut config = Config::default().embedding;
    config.onnxruntime_library = "/nonexistent/libonnxruntime.so".into();
    let err = Embedder::load(&config).err().expect("must fail").to_string();
    assert!(err.contains("/nonexistent/libonnxruntime.so") && err.contains("ORT_DYLIB_PATH"), "{err}");
}

/// Concurrent queries through the batcher get the vectors they would get alone, each its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_queries_match_single_queries() {
    let embedder = std::sync::Arc::new(Embedder::load(&Config::default().embedding).unwrap());
    let batcher = std::sync::Arc::new(lore_core::embed::QueryBatcher::new(embedder.clone(), 8, 100));
    let queries: Vec<String> = (0..24)
        .map(|i| match i % 3 {
            0 => format!("How many vacation days do I get in year {i}?"),
            1 => format!("Who approves expense report number {i}?"),
            _ => format!("What is the on-call escalation policy for incident {i} at night and on weekends?"),
        })
        .collect();
    let tasks: Vec<_> = queries
        .iter()
        .cloned()
        .map(|q| {
            let batcher = batcher.clone();
            tokio::spawn(async move { batcher.embed(&q).await.unwrap() })
        })
        .collect();
    // The default model quantizes activations per call, so a query batched with others gets
    // very nearly (not bit for bit) the vector it gets alone; it must stay nearest its own.
    let mut batched = Vec::new();
    for task in tasks {
        batched.push(task.await.unwrap());
    }
    let alone: Vec<Vec<f32>> = queries.iter().map(|q| embedder.embed_query(q).unwrap()).collect();
    for (i, query) in queries.iter().enumerate() {
        let own = cosine(&batched[i], &alone[i]);
        assert!(own > 0.98, "{query}: {own}");
        for (j, other) in alone.iter().enumerate().filter(|(j, _)| *j != i) {
            assert!(cosine(&batched[i], other) < own, "{query} is nearer query {j} than itself");
        }
    }
    // Asked again, every query comes from the cache, with the very same vector.
    assert_eq!(batcher.cache_stats(), (0, 24));
    for (query, first) in queries.iter().zip(&batched) {
        assert_eq!(&batcher.embed(&format!("  {query} ")).await.unwrap(), first);
    }
    assert_eq!(batcher.cache_stats(), (24, 24));
}
