//! The Rust half of `bench/peer/` (issue 20, "Side by side"): the usual Python RAG stack next
//! to Lore on the same text and the same questions, scored by the same code.
//!
//! `lore-bench peer-corpus` writes what the peer ingests: every document as Lore's own loaders
//! parse it (one section per PDF page, Markdown without its front matter), with the ACL,
//! title and language Lore would give it, and the questions with the asker's principals. Both
//! stacks then start from identical document text; only chunking, BM25, dense search and
//! fusion differ.
//!
//! `lore-bench peer-score` reads the peer's run file (per question, the retrieved passages in
//! rank order) and scores it with `lore_eval::runner::ranking` and `lore_eval::metrics`, the
//! very functions `lore eval` uses, next to Lore's committed baseline.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use lore_eval::metrics::Accumulator;
use lore_eval::runner::{RetrievedPassage, ranking};
use lore_eval::set::{CorpusSpec, EvalSet};
use lore_ingest::loaders::{self, Format, Limits, LoadedDocument};
use lore_ingest::source::{DocumentMeta, read_sidecar};
use serde::{Deserialize, Serialize};

use crate::corpus::{self, Mix};

#[derive(clap::Args)]
pub struct CorpusArgs {
    /// An eval set manifest (`eval/sets/X.toml`): its corpus and its questions.
    #[arg(long, conflicts_with = "mix")]
    set: Option<PathBuf>,
    /// Or a benchmark corpus, staged as `lore-bench corpus` stages it (bucketed ACLs).
    #[arg(long, value_enum)]
    mix: Option<Mix>,
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    #[arg(long, default_value = "../shared/data")]
    shared: PathBuf,
    /// Folder to write `corpus.jsonl` and `questions.jsonl` into.
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub struct ScoreArgs {
    #[arg(long)]
    set: PathBuf,
    /// JSONL: `{"id": case id, "passages": [{"source", "path", "page", "acl"}, ...]}` in rank order.
    #[arg(long)]
    run: PathBuf,
    /// Where to write the scores (and Lore's baseline numbers) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One document as the peer receives it.
#[derive(Serialize)]
struct PeerDocument<'a> {
    source: &'a str,
    path: &'a str,
    title: &'a str,
    lang: &'a str,
    format: &'a str,
    acl: Vec<String>,
    sections: Vec<PeerSection<'a>>,
}

#[derive(Serialize)]
struct PeerSection<'a> {
    page: Option<u32>,
    text: &'a str,
}

/// One question as the peer asks it.
#[derive(Serialize)]
struct PeerQuestion<'a> {
    id: &'a str,
    question: &'a str,
    /// The asker's principals (`user:…`, `group:…`, `dept:…`, `everyone`).
    principals: Vec<String>,
    answerable: bool,
    lang: &'a str,
}

pub fn write_corpus(args: CorpusArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let mut docs = std::io::BufWriter::new(std::fs::File::create(args.out.join("corpus.jsonl"))?);
    let mut questions = std::io::BufWriter::new(std::fs::File::create(args.out.join("questions.jsonl"))?);
    let (mut written, mut failed) = (0usize, 0usize);
    match (&args.set, args.mix) {
        (Some(manifest), None) => {
            let set = EvalSet::load(manifest)?;
            match &set.corpus {
                CorpusSpec::Sources(sources) => {
                    for source in sources {
                        let (w, f) = write_source(&mut docs, source)?;
                        written += w;
                        failed += f;
                    }
                }
                CorpusSpec::Imported { documents, acl } => {
                    // As `lore_eval::corpus::prepare` materialises them: a Markdown file with the
                    // title in its front matter, in a source named after the set.
                    let source = lore_core::types::Collection::slug(&set.name);
                    for doc in documents {
                        let title_json = serde_json::to_string(&doc.title)?;
                        let markdown = format!("---\ntitle: {title_json}\n---\n\n{}\n", doc.text.trim());
                        match loaders::load_format(Format::Markdown, markdown.as_bytes(), &Limits::default()) {
                            Ok(loaded) => {
                                let lang = detect_lang(&DocumentMeta::default(), &loaded);
                                write_doc(&mut docs, &source, &doc.file, &doc.title, &lang, acl.clone(), &loaded)?;
                                written += 1;
                            }
                            Err(e) => {
                                eprintln!("not loaded: {}: {e}", doc.file);
                                failed += 1;
                            }
                        }
                    }
                }
            }
            for case in &set.cases {
                let question = PeerQuestion {
                    id: &case.id,
                    question: &case.question,
                    principals: case.asker.principals()?.to_strings(),
                    answerable: case.answerable && !case.relevant.is_empty(),
                    lang: case.lang().code(),
                };
                serde_json::to_writer(&mut questions, &question)?;
                questions.write_all(b"\n")?;
            }
            eprintln!("{}: {written} documents ({failed} not loaded), {} questions", set.name, set.cases.len());
        }
        (None, Some(mix)) => {
            let staging = tempfile::tempdir()?;
            let sources = corpus::stage(&args.shared, mix, args.replicas, staging.path())?;
            for source in &sources {
                let (w, f) = write_source(&mut docs, source)?;
                written += w;
                failed += f;
            }
            // The search benchmark's questions (no asker: the peer picks the share's principal).
            let all = corpus::questions(&args.shared)?;
            for (i, text) in all.iter().enumerate() {
                let question = PeerQuestion {
                    id: &format!("q{i:05}"),
                    question: text,
                    principals: Vec::new(),
                    answerable: false,
                    lang: lore_core::lang::Lang::detect(text).code(),
                };
                serde_json::to_writer(&mut questions, &question)?;
                questions.write_all(b"\n")?;
            }
            eprintln!("{mix:?} x{}: {written} documents ({failed} not loaded), {} questions", args.replicas, all.len());
        }
        _ => anyhow::bail!("give --set X.toml or --mix handbook|all"),
    }
    docs.flush()?;
    questions.flush()?;
    Ok(())
}

/// Writes every supported file of a source as Lore's loaders parse it; returns (written, failed).
fn write_source(out: &mut impl Write, source: &lore_ingest::Source) -> anyhow::Result<(usize, usize)> {
    let (mut written, mut failed) = (0, 0);
    for file in lore_ingest::source_files(source).into_iter().filter(|f| f.supported) {
        let loaded = std::fs::read(&file.path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| loaders::load(&file.path, &bytes).map_err(|e| e.to_string()));
        let sidecar = read_sidecar(&file.path).map_err(|e| e.to_string());
        let (loaded, sidecar) = match (loaded, sidecar) {
            (Ok(loaded), Ok(sidecar)) => (loaded, sidecar),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("not loaded: {}: {e}", file.path.display());
                failed += 1;
                continue;
            }
        };
        // The same precedence as the ingest pipeline: sidecar over the file's own metadata,
        // then the source's default ACL.
        let meta = match sidecar {
            Some((sidecar_meta, _)) => loaded.meta.clone().overlay(sidecar_meta),
            None => loaded.meta.clone(),
        };
        let acl = match source.resolve_acl(&meta) {
            Ok(acl) => acl.to_strings(),
            Err(e) => {
                eprintln!("no ACL: {}: {e}", file.path.display());
                failed += 1;
                continue;
            }
        };
        let title = match &meta.title {
            Some(title) if !title.trim().is_empty() => title.trim().to_owned(),
            _ => {
                let first_page = (!loaded.markdown).then(|| loaded.sections.first().map(|s| s.text.as_str())).flatten();
                lore_ingest::title::choose(loaded.title.as_deref(), first_page, &file.path)
            }
        };
        let lang = detect_lang(&meta, &loaded);
        write_doc(out, &source.name, &file.relative, &title, &lang, acl, &loaded)?;
        written += 1;
    }
    Ok((written, failed))
}

fn detect_lang(meta: &DocumentMeta, loaded: &LoadedDocument) -> String {
    if let Some(lang) = meta.lang.as_deref().and_then(lore_core::lang::Lang::from_code) {
        return lang.code().to_owned();
    }
    let sample: String = loaded.sections.iter().flat_map(|s| s.text.chars()).take(4000).collect();
    lore_core::lang::Lang::detect(&sample).code().to_owned()
}

fn write_doc(
    out: &mut impl Write,
    source: &str,
    path: &str,
    title: &str,
    lang: &str,
    acl: Vec<String>,
    loaded: &LoadedDocument,
) -> anyhow::Result<()> {
    let doc = PeerDocument {
        source,
        path,
        title,
        lang,
        format: loaded.format.name(),
        acl,
        sections: loaded.sections.iter().map(|s| PeerSection { page: s.page, text: &s.text }).collect(),
    };
    serde_json::to_writer(&mut *out, &doc)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[derive(Deserialize)]
struct RunLine {
    id: String,
    passages: Vec<RunPassage>,
}

#[derive(Deserialize)]
struct RunPassage {
    source: String,
    path: String,
    page: Option<u32>,
    #[serde(default)]
    acl: Option<Vec<String>>,
}

/// The metrics of the side-by-side table (and the page-level ones where the set names pages).
const REPORTED: [&str; 8] = [
    "doc.ndcg@10",
    "doc.recall@10",
    "doc.mrr",
    "doc.recall@1",
    "page.ndcg@10",
    "page.recall@10",
    "page.mrr",
    "page.recall@1",
];

pub fn score(args: ScoreArgs) -> anyhow::Result<()> {
    let set = EvalSet::load(&args.set)?;
    let text = std::fs::read_to_string(&args.run).with_context(|| format!("reading {}", args.run.display()))?;
    let mut run: HashMap<String, Vec<RunPassage>> = HashMap::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line: RunLine = serde_json::from_str(line).with_context(|| format!("{}:{}", args.run.display(), i + 1))?;
        run.insert(line.id, line.passages);
    }
    let mut acc = Accumulator::default();
    let (mut scored, mut missing, mut leaks) = (0usize, 0usize, 0usize);
    for case in &set.cases {
        let Some(passages) = run.get(&case.id) else {
            if case.answerable && !case.relevant.is_empty() {
                missing += 1;
            }
            continue;
        };
        // Leaks: a passage the asker may not read (by the ACL the peer stored with it), or one
        // the case says must never be retrieved.
        let allowed = case.asker.principals()?.to_strings();
        for p in passages {
            let by_acl = p.acl.as_ref().is_some_and(|acl| !acl.iter().any(|a| allowed.contains(a)));
            let forbidden = case.must_not_cite.iter().any(|r| r.matches(&p.source, &p.path, p.page, &[]));
            if by_acl || forbidden {
                leaks += 1;
            }
        }
        // As `lore eval` scores: answerable cases with `relevant` documents only.
        if !case.answerable || case.relevant.is_empty() {
            continue;
        }
        let retrieved: Vec<RetrievedPassage> = passages
            .iter()
            .enumerate()
            .map(|(i, p)| RetrievedPassage {
                rank: i + 1,
                score: 0.0,
                document_id: format!("{}/{}", p.source, p.path),
                source: p.source.clone(),
                path: p.path.clone(),
                page: p.page,
                headings: Vec::new(),
                chunk_id: String::new(),
                bm25_rank: None,
                dense_rank: None,
                text: String::new(),
            })
            .collect();
        let (doc, page) = ranking(&case.relevant, &retrieved);
        for (name, value) in doc.iter().flat_map(|m| m.named("doc")).chain(page.iter().flat_map(|m| m.named("page"))) {
            acc.add(name, value);
        }
        scored += 1;
    }
    let stats = acc.finish();
    let peer: BTreeMap<String, f64> =
        stats.iter().filter(|(k, _)| REPORTED.contains(&k.as_str())).map(|(k, s)| (k.clone(), s.mean)).collect();
    // Lore's numbers: the committed baseline of the set (`lore eval --update-baseline`).
    let baseline_path = set.baseline_path();
    let baseline: Option<lore_eval::gate::Baseline> =
        std::fs::read_to_string(&baseline_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let lore_mode = |mode: &str| -> BTreeMap<String, f64> {
        baseline
            .as_ref()
            .and_then(|b| b.modes.get(mode))
            .map(|m| m.iter().filter(|(k, _)| REPORTED.contains(&k.as_str())).map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    };
    let result = serde_json::json!({
        "set": set.name,
        "cases": set.cases.len(),
        "scored": scored,
        "missing": missing,
        "leaks": leaks,
        "peer": peer,
        "lore_hybrid": lore_mode("hybrid"),
        "lore_bm25": lore_mode("bm25"),
        "lore_dense": lore_mode("dense"),
        "lore_baseline": baseline_path.display().to_string(),
        "lore_settings": baseline.as_ref().map(|b| b.settings.clone()).unwrap_or_default(),
    });
    println!(
        "{}: {scored} answerable questions scored, {missing} missing from the run, {leaks} leaked passages",
        set.name
    );
    println!("| metric | peer | Lore hybrid |\n|---|---:|---:|");
    let lore = lore_mode("hybrid");
    for (metric, value) in &peer {
        let lore = lore.get(metric).map_or("–".to_owned(), |v| format!("{v:.4}"));
        println!("| {metric} | {value:.4} | {lore} |");
    }
    if let Some(path) = args.json {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
