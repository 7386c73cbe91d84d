//! `lore-bench`: benchmarks that are run by hand in release mode, never as timed tests.
//!
//! `lore-bench ingest <folder>` ingests the folder into a fresh data folder and, in the same
//! run, embeds the very same chunk texts by calling ONNX Runtime directly (tokenize, run,
//! mean-pool, normalise) with the same model and thread count: the practical limit of this
//! machine. It prints a table and writes it as JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lore_core::catalog::Catalog;
use lore_core::config::Config;
use lore_core::embed::{Embedder, init_onnxruntime};
use lore_ingest::{IngestOptions, Ingestor, Source};
use ort::session::Session;
use ort::value::Tensor;

mod corpus;
mod run;
mod server;
mod suite;
mod usage;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build (or extend) a benchmark data folder from ../shared/data with bucketed ACLs.
    Corpus {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "../shared/data")]
        shared: PathBuf,
        #[arg(long, value_enum, default_value = "all")]
        mix: corpus::Mix,
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// Query embedding alone, in-process (no HTTP, no search): queries/s at several batch
    /// sizes, the ceiling for `/v1/search` throughput on this machine.
    Queries {
        #[arg(long, default_value = "../shared/data")]
        shared: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,32")]
        batch: Vec<usize>,
        #[arg(long, default_value_t = 640)]
        queries: usize,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The whole suite: ingest, corpora, search, chat, memory, startup, load and upload
    /// storm; prints one report and writes it as JSON and Markdown.
    Suite(run::SuiteArgs),
    /// Usage analytics over generated events (default one million): every grouping, timed.
    Analytics(usage::AnalyticsArgs),
    /// What metering costs: the in-process record call, and `/v1/search` with metering on and off.
    Metering(usage::MeteringArgs),
    /// Query-vector cache hit rates: questions drawn Zipf(1.0) from the development sets'
    /// distinct questions, through the server's cache (no model needed: hits and misses only).
    QueryCache {
        #[arg(long, default_value = "../shared/data")]
        shared: PathBuf,
        #[arg(long, default_value_t = 200_000)]
        requests: usize,
        #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
        capacity: Vec<usize>,
    },
    /// Ingest throughput next to raw ONNX Runtime throughput on the same chunk texts.
    Ingest {
        folder: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "everyone")]
        acl: Vec<String>,
        /// Where to write the JSON result.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    // Ingest parses files in child processes of this binary (lore_ingest::sandbox).
    if let Some(code) = lore_ingest::sandbox::run_child_if_requested() {
        std::process::exit(if code == std::process::ExitCode::SUCCESS { 0 } else { 1 });
    }
    match Cli::parse().command {
        Command::Corpus { data_dir, shared, mix, replicas } => {
            let mut config = Config::load(None)?;
            config.data_dir = data_dir;
            let embedder = Arc::new(Embedder::load(&config.embedding)?);
            let report =
                tokio::runtime::Runtime::new()?.block_on(corpus::build(&config, embedder, &shared, mix, replicas))?;
            println!("{}", report.summary_line());
            for failure in &report.failures {
                eprintln!("failed: {failure}");
            }
            for (label, principal) in corpus::SHARES {
                let (permitted, total) = corpus::permitted_chunks(&config.catalog_path(), principal)?;
                println!("{label} share ({principal}): {permitted} of {total} chunks");
            }
            Ok(())
        }
        Command::Ingest { folder, acl, json } => ingest(&folder, acl, json.as_deref()).map(|_| ()),
        Command::Suite(args) => run::suite(args),
        Command::Analytics(args) => usage::analytics(args),
        Command::Metering(args) => tokio::runtime::Runtime::new()?.block_on(usage::metering(args)),
        Command::QueryCache { shared, requests, capacity } => {
            let mut questions = corpus::questions(&shared)?;
            questions.sort();
            questions.dedup();
            println!("{} distinct questions, {requests} requests drawn Zipf(1.0)", questions.len());
            println!("| cache size | hit rate |\n|---:|---:|");
            for capacity in capacity {
                let hit_rate = query_cache_hit_rate(&questions, requests, capacity);
                println!("| {capacity} | {hit_rate:.3} |");
            }
            Ok(())
        }
        Command::Queries { shared, batch, queries, json } => {
            let config = Config::load(None)?;
            let embedder = Embedder::load(&config.embedding)?;
            let questions = corpus::questions(&shared)?;
            anyhow::ensure!(questions.len() >= queries, "only {} questions", questions.len());
            let result = run::query_embedding(&embedder, &questions[..queries], &batch)?;
            println!("{}", run::render_query_embedding(&result));
            if let Some(path) = json {
                std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")?;
            }
            Ok(())
        }
    }
}

fn ingest(
    folder: &std::path::Path,
    acl: Vec<String>,
    json: Option<&std::path::Path>,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(folder.is_dir(), "{} is not a folder", folder.display());
    let data = tempfile::tempdir()?;
    let mut config = Config::load(None)?;
    config.data_dir = data.path().join("data");
    let embedder = Arc::new(Embedder::load(&config.embedding)?);

    // 1. Ingest, end to end.
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let mut ingestor = Ingestor::open(config.clone(), embedder.clone()).await?;
        let source = Source { name: "bench".into(), path: folder.to_owned(), default_acl: Some(acl), department: None };
        ingestor.ingest(&[source], &IngestOptions::default()).await
    })?;
    let ingest_secs = report.elapsed.as_secs_f64();
    for failure in &report.failures {
        eprintln!("failed: {failure}");
    }

    // 2. The same chunk texts, embedded by ONNX Runtime directly.
    let catalog = Catalog::open(&config.catalog_path())?;
    let mut texts = Vec::with_capacity(report.chunks);
    for id in catalog.chunk_ids()? {
        texts.extend(catalog.chunks_by_id(&[id])?.iter().map(|c| c.embedding_text()));
    }
    let raw = raw_onnxruntime(&config, &texts, embedder.batch_size())?;

    let chunks_per_s = report.chunks as f64 / ingest_secs;
    let raw_per_s = texts.len() as f64 / raw.total_secs;
    let t = &report.timings;
    let result = serde_json::json!({
        "corpus": folder.display().to_string(),
        "documents": report.indexed,
        "failed": report.failures.len(),
        "chunks": report.chunks,
        "embedded": report.embedded,
        "reused": report.reused,
        "ingest_seconds": ingest_secs,
        "ingest_documents_per_s": report.indexed as f64 / ingest_secs,
        "ingest_chunks_per_s": chunks_per_s,
        "stage_seconds": { "parse": t.parse.as_secs_f64(), "chunk": t.chunk.as_secs_f64(), "embed": t.embed.as_secs_f64(), "index": t.index.as_secs_f64() },
        "raw_onnxruntime": {
            "texts": texts.len(),
            "batch_size": embedder.batch_size(),
            "seconds": raw.total_secs,
            "session_run_seconds": raw.run_secs,
            "texts_per_s": raw_per_s,
            "tokens": raw.tokens,
        },
        "ingest_over_raw": chunks_per_s / raw_per_s,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!("| corpus | docs | chunks | ingest s | docs/s | chunks/s | raw ORT texts/s | ingest/raw |");
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
        folder.file_name().unwrap_or_default().to_string_lossy(),
        report.indexed,
        report.chunks,
        ingest_secs,
        report.indexed as f64 / ingest_secs,
        chunks_per_s,
        raw_per_s,
        chunks_per_s / raw_per_s
    );
    println!(
        "stages (summed; parse/chunk overlap embedding): parse {:.1}s, chunk {:.1}s, embed {:.1}s, index {:.1}s; raw ORT session.run {:.1}s of {:.1}s",
        t.parse.as_secs_f64(),
        t.chunk.as_secs_f64(),
        t.embed.as_secs_f64(),
        t.index.as_secs_f64(),
        raw.run_secs,
        raw.total_secs
    );
    if let Some(path) = json {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(result)
}

struct RawRun {
    total_secs: f64,
    run_secs: f64,
    tokens: usize,
}

/// Tokenize (truncate at the model's max length, pad to the batch's longest), run the
/// session, mean-pool over the attention mask and L2-normalise: the work any embedding
/// pipeline must do, with nothing else around it.
fn raw_onnxruntime(config: &Config, texts: &[String], batch_size: usize) -> anyhow::Result<RawRun> {
    let environment = init_onnxruntime(&config.embedding.onnxruntime_library)?;
    let model = std::fs::read(config.embedding.model_dir.join("model.onnx"))?;
    let threads =
        config.embedding.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let mut session = Session::builder(&environment)?
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_intra_threads(threads)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_intra_op_spinning(config.embedding.spin_wait)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .commit_from_memory(&model)?;
    let mut tokenizer = lore_core::embed::load_sizing_tokenizer(&config.embedding.model_dir)?;
    tokenizer
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: config.embedding.max_length,
            ..Default::default()
        }))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tokenizer.with_padding(Some(tokenizers::PaddingParams::default()));
    let wants_token_types = session.inputs().iter().any(|i| i.name() == "token_type_ids");

    let started = Instant::now();
    let mut run_secs = 0.0;
    let mut tokens = 0;
    let mut checksum = 0.0f32;
    for batch in texts.chunks(batch_size) {
        let encodings = tokenizer.encode_batch(batch.to_vec(), true).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rows = encodings.len();
        let width = encodings[0].len();
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        let mut types = Vec::with_capacity(rows * width);
        for e in &encodings {
            ids.extend(e.get_ids().iter().map(|&v| v as i64));
            mask.extend(e.get_attention_mask().iter().map(|&v| v as i64));
            types.extend(e.get_type_ids().iter().map(|&v| v as i64));
            tokens += e.get_attention_mask().iter().filter(|&&m| m == 1).count();
        }
        let shape = [rows, width];
        let run_started = Instant::now();
        let mut inputs = ort::inputs![
            "input_ids" => Tensor::from_array((shape, ids))?,
            "attention_mask" => Tensor::from_array((shape, mask.clone()))?,
        ];
        if wants_token_types {
            inputs.push(("token_type_ids".into(), Tensor::from_array((shape, types))?.into()));
        }
        let outputs = session.run(inputs)?;
        run_secs += run_started.elapsed().as_secs_f64();
        let (out_shape, hidden) = outputs[0].try_extract_tensor::<f32>()?;
        let dim = out_shape[2] as usize;
        for r in 0..rows {
            let mut pooled = vec![0.0f32; dim];
            let mut count = 0.0f32;
            for t in 0..width {
                if mask[r * width + t] == 1 {
                    let row = &hidden[(r * width + t) * dim..(r * width + t + 1) * dim];
                    pooled.iter_mut().zip(row).for_each(|(p, h)| *p += h);
                    count += 1.0;
                }
            }
            let norm = pooled.iter().map(|v| (v / count).powi(2)).sum::<f32>().sqrt().max(1e-12);
            checksum += pooled[0] / count / norm;
        }
    }
    std::hint::black_box(checksum);
    Ok(RawRun { total_secs: started.elapsed().as_secs_f64(), run_secs, tokens })
}

/// The hit rate of `lore_core::embed::QueryCache` of `capacity` for `requests` questions drawn
/// with probability ∝ 1/rank (Zipf, s = 1) from `questions`, ranks in a fixed shuffled order
/// (a deterministic xorshift, so runs compare).
fn query_cache_hit_rate(questions: &[String], requests: usize, capacity: usize) -> f64 {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut order: Vec<usize> = (0..questions.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    let weights: Vec<f64> = (1..=questions.len()).map(|rank| 1.0 / rank as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = Vec::with_capacity(weights.len());
    let mut sum = 0.0;
    for w in &weights {
        sum += w / total;
        cumulative.push(sum);
    }
    let mut cache = lore_core::embed::QueryCache::new(capacity);
    for _ in 0..requests {
        let u = (next() >> 11) as f64 / (1u64 << 53) as f64;
        let rank = cumulative.partition_point(|c| *c < u).min(questions.len() - 1);
        let question = &questions[order[rank]];
        if cache.get(question).is_none() {
            cache.put(question, Vec::new());
        }
    }
    cache.hits as f64 / requests as f64
}
