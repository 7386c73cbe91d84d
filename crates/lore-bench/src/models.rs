//! `lore-bench models`: two embedding models side by side on the same texts, in the same run.
//!
//! Passages are real chunk texts read from catalogs (for example the development eval sets'
//! cached corpora), exactly as ingest embeds them (`Chunk::embedding_text`). Each model embeds
//! every text; the runs alternate in rounds (A, B, A, B, …) so a noisy neighbour on the machine
//! slows both alike. The vectors are compared text by text (cosine), and query throughput is
//! timed on the development questions at batch 1 and 16, again alternating.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use lore_core::catalog::Catalog;
use lore_core::config::Config;
use lore_core::embed::{Embedder, load_sizing_tokenizer};
use lore_core::lang::Lang;
use lore_ingest::chunker::{ChunkContext, Chunker};
use serde_json::{Value, json};

use crate::run::{f, machine, machine_line};

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// The model folder to compare against the configured one (`embedding.model_dir`).
    #[arg(long)]
    candidate: PathBuf,
    /// The reference model folder (default: the configured model).
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Catalogs (`catalog.sqlite`) to read chunk texts from, in order, until `--passages`.
    #[arg(long)]
    catalog: Vec<PathBuf>,
    /// Folders of Markdown files, chunked by Lore's loader and chunker, read after the
    /// catalogs until `--passages`.
    #[arg(long)]
    folder: Vec<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    passages: usize,
    /// Alternating rounds the passages are split into.
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    #[arg(long, default_value = "../shared/data")]
    shared: PathBuf,
    /// Questions timed per model and batch size.
    #[arg(long, default_value_t = 640)]
    queries: usize,
    /// Where to write the report (`<out>.json` and `<out>.md`).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn compare(args: ModelsArgs) -> anyhow::Result<()> {
    let config = Config::load(None)?;
    let mut baseline_config = config.embedding.clone();
    if let Some(dir) = &args.baseline {
        baseline_config.model_dir = dir.clone();
    }
    let mut candidate_config = config.embedding.clone();
    candidate_config.model_dir = args.candidate.clone();
    let models = [Embedder::load(&baseline_config)?, Embedder::load(&candidate_config)?];
    let names = [baseline_config.model_dir.display().to_string(), candidate_config.model_dir.display().to_string()];

    let texts = passages(&args.catalog, &args.folder, &config, args.passages)?;
    eprintln!("{} distinct passages", texts.len());
    for model in &models {
        model.embed_passages(&texts[..texts.len().min(64)])?;
    }
    let mut vectors: [Vec<Vec<f32>>; 2] = [Vec::new(), Vec::new()];
    let mut secs = [0.0f64; 2];
    let round = texts.len().div_ceil(args.rounds.max(1));
    for part in texts.chunks(round.max(1)) {
        for (i, model) in models.iter().enumerate() {
            let started = Instant::now();
            vectors[i].extend(model.embed_passages(part)?);
            secs[i] += started.elapsed().as_secs_f64();
        }
    }
    let mut cosines: Vec<f64> = vectors[0].iter().zip(&vectors[1]).map(|(a, b)| cosine(a, b)).collect();
    cosines.sort_by(f64::total_cmp);
    let mean = cosines.iter().sum::<f64>() / cosines.len() as f64;

    let questions = crate::corpus::questions(&args.shared)?;
    let questions = &questions[..questions.len().min(args.queries)];
    let mut query_rows = Vec::new();
    for batch in [1usize, 16] {
        let mut per_model = [0.0f64; 2];
        for half in questions.chunks(questions.len().div_ceil(2).max(1)) {
            for (i, model) in models.iter().enumerate() {
                let started = Instant::now();
                for group in half.chunks(batch) {
                    model.embed_queries(group)?;
                }
                per_model[i] += started.elapsed().as_secs_f64();
            }
        }
        query_rows.push(json!({
            "batch": batch,
            "queries": questions.len(),
            "baseline_per_s": questions.len() as f64 / per_model[0],
            "candidate_per_s": questions.len() as f64 / per_model[1],
            "speedup": per_model[0] / per_model[1],
        }));
    }

    let report = json!({
        "machine": machine(),
        "baseline": names[0],
        "candidate": names[1],
        "passages": texts.len(),
        "passage_sources": args.catalog.iter().chain(&args.folder).map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "passage_rounds": args.rounds,
        "baseline_passages_per_s": texts.len() as f64 / secs[0],
        "candidate_passages_per_s": texts.len() as f64 / secs[1],
        "passage_speedup": secs[0] / secs[1],
        "cosine": {
            "mean": mean,
            "p1": percentile(&cosines, 0.01),
            "p5": percentile(&cosines, 0.05),
            "min": cosines.first().copied().unwrap_or(f64::NAN),
        },
        "queries": query_rows,
    });
    let markdown = render(&report);
    println!("{markdown}");
    if let Some(out) = &args.out {
        std::fs::write(out.with_extension("json"), serde_json::to_string_pretty(&report)? + "\n")?;
        std::fs::write(out.with_extension("md"), markdown)?;
    }
    Ok(())
}

/// Distinct embedding texts of the catalogs' chunks, in catalog order, then of the folders'
/// Markdown files in path order, at most `limit`.
fn passages(catalogs: &[PathBuf], folders: &[PathBuf], config: &Config, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut seen = HashSet::new();
    let mut texts = Vec::new();
    let mut keep = |text: String| {
        if texts.len() < limit && seen.insert(text.clone()) {
            texts.push(text);
        }
    };
    for path in catalogs {
        anyhow::ensure!(path.is_file(), "no catalog at {}", path.display());
        let catalog = Catalog::open(path).with_context(|| format!("opening {}", path.display()))?;
        catalog.chunks_by_id(&catalog.chunk_ids()?)?.iter().for_each(|c| keep(c.embedding_text()));
    }
    if !folders.is_empty() {
        let chunker = Chunker::new(load_sizing_tokenizer(&config.embedding.model_dir)?, &config.chunking)?;
        for folder in folders {
            let mut files: Vec<PathBuf> =
                walk(folder)?.into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
            files.sort();
            for path in files {
                let Ok(loaded) = lore_ingest::loaders::load(&path, &std::fs::read(&path)?) else { continue };
                let title = lore_ingest::title::choose(loaded.title.as_deref(), None, &path);
                let context = ChunkContext { doc_id: "bench", title: &title, lang: Lang::En };
                chunker.chunk(&context, &loaded).iter().for_each(|c| keep(c.embedding_text()));
            }
        }
    }
    Ok(texts)
}

fn walk(dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() { out.extend(walk(&path)?) } else { out.push(path) }
    }
    Ok(out)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-12)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * q).floor() as usize).min(sorted.len() - 1)]
}

fn render(report: &Value) -> String {
    let cosine = &report["cosine"];
    let mut out = format!(
        "# Embedding models side by side\n\n{}\n\nBaseline `{}`, candidate `{}`.\n\n\
         ## Passages ({} real chunk texts, {} alternating rounds)\n\nFrom: {}.\n\n\
         | model | passages/s |\n|---|---|\n| baseline | {} |\n| candidate | {} |\n| speed-up | {:.2}× |\n\n\
         Cosine of the candidate's vector to the baseline's, per passage: mean {:.4}, 1st percentile {:.4}, \
         5th percentile {:.4}, min {:.4}.\n\n## Queries (development questions)\n\n\
         | batch | queries | baseline queries/s | candidate queries/s | speed-up |\n|---|---|---|---|---|\n",
        machine_line(&report["machine"]),
        report["baseline"].as_str().unwrap_or(""),
        report["candidate"].as_str().unwrap_or(""),
        report["passages"],
        report["passage_rounds"],
        report["passage_sources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        f(&report["baseline_passages_per_s"]),
        f(&report["candidate_passages_per_s"]),
        report["passage_speedup"].as_f64().unwrap_or(f64::NAN),
        cosine["mean"].as_f64().unwrap_or(f64::NAN),
        cosine["p1"].as_f64().unwrap_or(f64::NAN),
        cosine["p5"].as_f64().unwrap_or(f64::NAN),
        cosine["min"].as_f64().unwrap_or(f64::NAN),
    );
    for row in report["queries"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}× |\n",
            row["batch"],
            row["queries"],
            f(&row["baseline_per_s"]),
            f(&row["candidate_per_s"]),
            row["speedup"].as_f64().unwrap_or(f64::NAN)
        ));
    }
    out
}
