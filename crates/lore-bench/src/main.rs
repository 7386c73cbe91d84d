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
mod models;
mod peer;
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
    /// bench/peer: dump a set's (or a benchmark mix's) documents as Lore parses them, and its
    /// questions with the askers' principals, for the Python peer stack.
    PeerCorpus(peer::CorpusArgs),
    /// bench/peer: score the peer's run file with lore-eval's own metrics, next to Lore's baseline.
    PeerScore(peer::ScoreArgs),
    /// Two embedding models side by side on the same real chunk texts: passages/s, queries/s
    /// and the cosine of each passage's two vectors.
    Models(models::ModelsArgs),
    /// Ingest throughput next to raw ONNX Runtime throughput on the same chunk texts, with the
    /// padding share of the model batches (as sent, and as they were in document order).
    Ingest {
        folder: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "everyone")]
        acl: Vec<String>,
        /// Where to write the JSON result.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Batches for raw ONNX Runtime: `catalog` (chunk-id order, cut every batch size: the
        /// baseline) or `ingest` (exactly the model batches the ingest sent).
        #[arg(long, value_enum, default_value = "catalog")]
        raw_order: RawOrder,
        /// Only chunk, no embedding: parse every file, chunk it with the cached sizer and with
        /// the tokenizer run on every candidate span, and print both times and the chunks that differ.
        #[arg(long)]
        compare_chunking: bool,
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
        Command::Ingest { folder, json, compare_chunking: true, .. } => {
            compare_chunking(&folder, json.as_deref()).map(|_| ())
        }
        Command::Ingest { folder, acl, json, raw_order, .. } => {
            ingest_with(&folder, acl, json.as_deref(), raw_order).map(|_| ())
        }
        Command::Suite(args) => run::suite(args),
        Command::Models(args) => models::compare(args),
        Command::PeerCorpus(args) => peer::write_corpus(args),
        Command::PeerScore(args) => peer::score(args),
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

/// The suite's ingest run: raw ONNX Runtime replays the very batches the ingest sent, so the
/// ratio measures the pipeline's overhead over the model on the same work (the default of
/// `lore-bench ingest`, chunk-id order, also shows what length-sorted batches gain).
fn ingest(
    folder: &std::path::Path,
    acl: Vec<String>,
    json: Option<&std::path::Path>,
) -> anyhow::Result<serde_json::Value> {
    ingest_with(folder, acl, json, RawOrder::Ingest)
}

/// How raw ONNX Runtime gets its batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RawOrder {
    /// Chunk-id order (effectively random), cut every batch size.
    Catalog,
    /// The model batches the ingest sent, replayed (see [`replay_model_batches`]).
    Ingest,
}

fn ingest_with(
    folder: &std::path::Path,
    acl: Vec<String>,
    json: Option<&std::path::Path>,
    raw_order: RawOrder,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(folder.is_dir(), "{} is not a folder", folder.display());
    let data = tempfile::tempdir()?;
    let mut config = Config::load(None)?;
    config.data_dir = data.path().join("data");
    let embedder = Arc::new(Embedder::load(&config.embedding)?);

    // 1. Ingest, end to end.
    let runtime = tokio::runtime::Runtime::new()?;
    let source = Source { name: "bench".into(), path: folder.to_owned(), default_acl: Some(acl), department: None };
    let report = runtime.block_on(async {
        let mut ingestor = Ingestor::open(config.clone(), embedder.clone()).await?;
        ingestor.ingest(std::slice::from_ref(&source), &IngestOptions::default()).await
    })?;
    let ingest_secs = report.elapsed.as_secs_f64();
    for failure in &report.failures {
        eprintln!("failed: {failure}");
    }

    // 2. The model batches the ingest sent, replayed, and their padding.
    let catalog = Catalog::open_in(&config.open_database()?)?;
    let replay = replay_model_batches(&config, &embedder, &catalog, &source)?;

    // 3. The same chunk texts, embedded by ONNX Runtime directly.
    let batches: Vec<Vec<String>> = match raw_order {
        RawOrder::Catalog => {
            let mut texts = Vec::with_capacity(report.chunks);
            for id in catalog.chunk_ids()? {
                texts.extend(catalog.chunks_by_id(&[id])?.iter().map(|c| c.embedding_text()));
            }
            texts.chunks(embedder.batch_size()).map(<[String]>::to_vec).collect()
        }
        RawOrder::Ingest => replay.sent.clone(),
    };
    let raw = raw_onnxruntime(&config, &batches)?;
    let raw_texts: usize = batches.iter().map(Vec::len).sum();

    let chunks_per_s = report.chunks as f64 / ingest_secs;
    let raw_per_s = raw_texts as f64 / raw.total_secs;
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
        "padding": {
            "batch_size": embedder.batch_size(),
            "model_batches": replay.sent.len(),
            "tokens": replay.as_sent.tokens,
            "share_as_sent": replay.as_sent.share(),
            "share_in_document_order": replay.document_order.share(),
            "sizing_seconds": replay.sizing_secs,
        },
        "raw_onnxruntime": {
            "order": format!("{raw_order:?}").to_lowercase(),
            "texts": raw_texts,
            "batch_size": embedder.batch_size(),
            "seconds": raw.total_secs,
            "session_run_seconds": raw.run_secs,
            "texts_per_s": raw_per_s,
            "tokens": raw.padding.tokens,
            "padding_share": raw.padding.share(),
        },
        "ingest_over_raw": chunks_per_s / raw_per_s,
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    });
    println!(
        "| corpus | docs | chunks | ingest s | docs/s | chunks/s | raw ORT texts/s | ingest/raw | chunk s | padding as sent | in doc order | raw ORT padding ({raw_order:?}) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} | {:.3} | {:.3} | {:.3} |",
        folder.file_name().unwrap_or_default().to_string_lossy(),
        report.indexed,
        report.chunks,
        ingest_secs,
        report.indexed as f64 / ingest_secs,
        chunks_per_s,
        raw_per_s,
        chunks_per_s / raw_per_s,
        t.chunk.as_secs_f64(),
        replay.as_sent.share(),
        replay.document_order.share(),
        raw.padding.share()
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
    println!(
        "padding share (empty token slots of the model batches of {}): {:.3} as sent, {:.3} had they gone in document order ({} model batches, {} tokens; sizing them took {:.2}s)",
        embedder.batch_size(),
        replay.as_sent.share(),
        replay.document_order.share(),
        replay.sent.len(),
        replay.as_sent.tokens,
        replay.sizing_secs
    );
    if let Some(path) = json {
        write_json(path, &result)?;
    }
    Ok(result)
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

/// Text tokens and token slots (rows × longest row) of padded model batches.
#[derive(Debug, Default, Clone, Copy)]
struct Padding {
    tokens: usize,
    slots: usize,
}

impl Padding {
    fn add_batch(&mut self, lengths: &[usize]) {
        self.tokens += lengths.iter().sum::<usize>();
        self.slots += lengths.len() * lengths.iter().copied().max().unwrap_or(0);
    }

    /// Share of the token slots that hold padding.
    fn share(&self) -> f64 {
        if self.slots == 0 { 0.0 } else { 1.0 - self.tokens as f64 / self.slots as f64 }
    }
}

/// The model batches of an ingest, rebuilt from the catalog.
struct Replay {
    /// Texts of each model batch, as the pipeline sent them.
    sent: Vec<Vec<String>>,
    as_sent: Padding,
    /// The same write batches without sorting (the pipeline before it sorted).
    document_order: Padding,
    /// Tokenizing every text once to size it (the pipeline's sort does the same).
    sizing_secs: f64,
}

/// Rebuilds the model batches the pipeline sent for a fresh ingest of `source`: documents in
/// file order, grouped into write batches as `Ingestor::ingest` does (at 8 model batches of
/// chunks or `commit_every_documents` documents), texts embedded earlier skipped, the rest
/// in `embedding_order` cut every batch size. Sizes are what fastembed feeds the model: the
/// passage prefix and special tokens included, truncated at the model's maximum length.
fn replay_model_batches(
    config: &Config,
    embedder: &Embedder,
    catalog: &Catalog,
    source: &Source,
) -> anyhow::Result<Replay> {
    let batch_size = embedder.batch_size();
    let mut groups: Vec<Vec<String>> = vec![Vec::new()];
    let (mut group_chunks, mut group_documents) = (0, 0);
    for file in lore_ingest::source_files(source).into_iter().filter(|f| f.supported) {
        let chunks = catalog.chunks_of_document(&source.document_id(&file.relative))?;
        if chunks.is_empty() {
            continue;
        }
        group_chunks += chunks.len();
        group_documents += 1;
        groups.last_mut().expect("one group").extend(chunks.iter().map(|c| c.embedding_text()));
        if group_chunks >= batch_size * 8 || group_documents >= config.ingest.commit_every_documents {
            groups.push(Vec::new());
            (group_chunks, group_documents) = (0, 0);
        }
    }
    let tokenizer = embedder.tokenizer();
    let started = Instant::now();
    let length = |text: &str| -> anyhow::Result<usize> {
        let prefixed = format!("{}{text}", config.embedding.passage_prefix);
        let encoding = tokenizer.encode_fast(prefixed.as_str(), true).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(encoding.len().min(config.embedding.max_length))
    };
    let mut seen = std::collections::HashSet::new();
    let mut replay =
        Replay { sent: Vec::new(), as_sent: Padding::default(), document_order: Padding::default(), sizing_secs: 0.0 };
    for group in groups {
        let missing: Vec<String> = group.into_iter().filter(|text| seen.insert(text.clone())).collect();
        let lengths = missing.iter().map(|t| length(t)).collect::<anyhow::Result<Vec<usize>>>()?;
        for batch in lengths.chunks(batch_size) {
            replay.document_order.add_batch(batch);
        }
        let order = lore_ingest::pipeline::embedding_order(tokenizer, &missing);
        let sorted_lengths: Vec<usize> = order.iter().map(|&i| lengths[i]).collect();
        for batch in sorted_lengths.chunks(batch_size) {
            replay.as_sent.add_batch(batch);
        }
        let sorted: Vec<String> = order.iter().map(|&i| missing[i].clone()).collect();
        replay.sent.extend(sorted.chunks(batch_size).map(<[String]>::to_vec));
    }
    replay.sizing_secs = started.elapsed().as_secs_f64();
    Ok(replay)
}

/// Chunking alone, with the cached sizer (what ingest uses) and with the tokenizer run on
/// every candidate span (text-splitter's own sizer: the chunker before the cache), one pass
/// over the parsed corpus each. Prints both times (wall and this thread's CPU: the machine
/// may be shared) and how many chunks differ.
fn compare_chunking(folder: &std::path::Path, json: Option<&std::path::Path>) -> anyhow::Result<serde_json::Value> {
    use lore_core::types::Chunk;
    use lore_ingest::chunker::{ChunkContext, Chunker, Sizing};

    anyhow::ensure!(folder.is_dir(), "{} is not a folder", folder.display());
    let config = Config::load(None)?;
    let tokenizer = lore_core::embed::load_sizing_tokenizer(&config.embedding.model_dir)?;
    let parser = lore_ingest::Parser::new(&config.ingest.parser)?;
    let source = Source { name: "bench".into(), path: folder.to_owned(), default_acl: None, department: None };
    let mut documents = Vec::new();
    let mut failed = 0;
    for file in lore_ingest::source_files(&source).into_iter().filter(|f| f.supported) {
        let bytes = std::fs::read(&file.path)?;
        match parser.parse(&file.path, &bytes, None) {
            Ok(loaded) => documents.push((file.relative, loaded)),
            Err(_) => failed += 1,
        }
    }
    let pass = |sizing: Sizing| -> anyhow::Result<(Vec<Vec<Chunk>>, f64, Option<f64>)> {
        let chunker = Chunker::with_sizing(tokenizer.clone(), &config.chunking, sizing)?;
        let (started, cpu_started) = (Instant::now(), thread_cpu_secs());
        let chunks = documents
            .iter()
            .map(|(relative, loaded)| {
                // Title and language are copied onto chunks; they do not move chunk ends.
                let context = ChunkContext { doc_id: relative, title: "", lang: lore_core::lang::Lang::En };
                chunker.chunk(&context, loaded)
            })
            .collect();
        let cpu = thread_cpu_secs().zip(cpu_started).map(|(end, start)| end - start);
        Ok((chunks, started.elapsed().as_secs_f64(), cpu))
    };
    let (reference, reference_secs, reference_cpu) = pass(Sizing::Tokenizer)?;
    let (cached, cached_secs, cached_cpu) = pass(Sizing::Cached)?;
    let key = |c: &Chunk| (c.page, c.char_start, c.text.clone(), c.heading_path.clone());
    let (mut differing_documents, mut only_cached, mut only_reference) = (0, 0, 0);
    for (((relative, _), a), b) in documents.iter().zip(&cached).zip(&reference) {
        let (a, b): (Vec<_>, Vec<_>) = (a.iter().map(key).collect(), b.iter().map(key).collect());
        if a != b {
            differing_documents += 1;
            only_cached += a.iter().filter(|c| !b.contains(c)).count();
            only_reference += b.iter().filter(|c| !a.contains(c)).count();
            eprintln!("chunks differ: {relative}");
        }
    }
    let count = |chunks: &[Vec<Chunk>]| chunks.iter().map(Vec::len).sum::<usize>();
    let (cached_chunks, reference_chunks) = (count(&cached), count(&reference));
    let result = serde_json::json!({
        "corpus": folder.display().to_string(),
        "documents": documents.len(),
        "failed": failed,
        "chunks_cached": cached_chunks,
        "chunks_reference": reference_chunks,
        "documents_differing": differing_documents,
        "chunks_only_cached": only_cached,
        "chunks_only_reference": only_reference,
        "chunk_seconds_cached": cached_secs,
        "chunk_seconds_reference": reference_secs,
        "chunk_cpu_seconds_cached": cached_cpu,
        "chunk_cpu_seconds_reference": reference_cpu,
    });
    let cpu = |secs: Option<f64>| secs.map_or("-".to_owned(), |s| format!("{s:.2}"));
    println!(
        "| corpus | docs | chunks (cached) | chunks (reference) | docs differing | chunks only cached | only reference | chunk s cached (CPU) | chunk s reference (CPU) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {cached_chunks} | {reference_chunks} | {differing_documents} | {only_cached} | {only_reference} | {cached_secs:.2} ({}) | {reference_secs:.1} ({}) |",
        folder.file_name().unwrap_or_default().to_string_lossy(),
        documents.len(),
        cpu(cached_cpu),
        cpu(reference_cpu)
    );
    if let Some(path) = json {
        write_json(path, &result)?;
    }
    Ok(result)
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`), if readable.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(nanos as f64 / 1e9)
}

struct RawRun {
    total_secs: f64,
    run_secs: f64,
    padding: Padding,
}

/// Tokenize (truncate at the model's max length, pad to the batch's longest), run the
/// session, mean-pool over the attention mask and L2-normalise: the work any embedding
/// pipeline must do, with nothing else around it.
fn raw_onnxruntime(config: &Config, batches: &[Vec<String>]) -> anyhow::Result<RawRun> {
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
    let mut padding = Padding::default();
    let mut checksum = 0.0f32;
    for batch in batches {
        let encodings = tokenizer.encode_batch(batch.clone(), true).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rows = encodings.len();
        let width = encodings[0].len();
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        let mut types = Vec::with_capacity(rows * width);
        for e in &encodings {
            ids.extend(e.get_ids().iter().map(|&v| v as i64));
            mask.extend(e.get_attention_mask().iter().map(|&v| v as i64));
            types.extend(e.get_type_ids().iter().map(|&v| v as i64));
        }
        padding.add_batch(
            &encodings.iter().map(|e| e.get_attention_mask().iter().filter(|&&m| m == 1).count()).collect::<Vec<_>>(),
        );
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
    Ok(RawRun { total_secs: started.elapsed().as_secs_f64(), run_secs, padding })
}

/// The hit rate of `lore_core::embed::QueryCache` of `capacity` for `requests` questions drawn
/// Zipf(1.0) from `questions` (see [`corpus::zipf_draws`]).
fn query_cache_hit_rate(questions: &[String], requests: usize, capacity: usize) -> f64 {
    let draws = corpus::zipf_draws(questions.len(), requests, corpus::ZIPF_SEED);
    corpus::cache_hit_rate(questions, &draws, &[], capacity)
}
