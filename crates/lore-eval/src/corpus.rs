//! The set's corpus, ingested once into a data folder of the cache. The folder is named by a
//! hash over everything that shapes the indexes (corpus bytes, ACLs, embedding model, chunking
//! settings), so reruns reuse it and any change builds a fresh one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_core::env;
use lore_core::types::sha256_hex;
use lore_ingest::{IngestOptions, Ingestor, Source};
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::set::{CorpusSpec, EvalSet};

/// Bump when the way corpora are materialised changes.
const LAYOUT_VERSION: &str = "lore-eval-corpus-1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreparedCorpus {
    pub data_dir: PathBuf,
    pub hash: String,
    /// Whether an earlier run's data folder was reused.
    pub cached: bool,
    pub documents: usize,
    pub chunks: usize,
    pub ingest_seconds: f64,
    /// Files that could not be ingested (`path: reason`).
    pub failures: Vec<String>,
}

/// `$LORE_EVAL_CACHE`, else `$XDG_CACHE_HOME/lore-eval`, else `~/.cache/lore-eval`.
pub fn default_cache_root() -> PathBuf {
    if let Some(dir) = env::var(env::LORE_EVAL_CACHE) {
        return dir.into();
    }
    if let Some(dir) = env::var(env::XDG_CACHE_HOME) {
        return Path::new(&dir).join("lore-eval");
    }
    match env::var(env::HOME) {
        Some(home) => Path::new(&home).join(".cache/lore-eval"),
        None => std::env::temp_dir().join("lore-eval"),
    }
}

/// Content hash of the corpus as it would be ingested with `config` and `model_fingerprint`.
pub fn corpus_hash(set: &EvalSet, config: &Config, model_fingerprint: &str) -> Result<String, EvalError> {
    let mut parts: Vec<String> = vec![
        LAYOUT_VERSION.into(),
        lore_ingest::EXTRACTION_VERSION.into(),
        model_fingerprint.into(),
        format!(
            "chunking {} {} {} max_length {} prefixes {:?} {:?}",
            config.chunking.min_tokens,
            config.chunking.max_tokens,
            config.chunking.overlap_tokens,
            config.embedding.max_length,
            config.embedding.query_prefix,
            config.embedding.passage_prefix
        ),
    ];
    // A Qdrant server keeps the vectors outside the data folder: a folder built for the
    // embedded index (or another server) has none there.
    if let lore_core::config::VectorStoreConfig::Qdrant { url, collection, .. } = &config.vector_store {
        parts.push(format!("vectors qdrant {url} {collection}"));
    }
    match &set.corpus {
        CorpusSpec::Sources(sources) => {
            for source in sources {
                parts.push(format!("source {} {:?} {:?}", source.name, source.default_acl, source.department));
                let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&source.path)
                    .sort_by_file_name()
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_file())
                    .map(|e| e.into_path())
                    .collect();
                files.sort();
                for file in files {
                    let bytes = std::fs::read(&file).map_err(|e| EvalError::io(&file, e))?;
                    let relative = file.strip_prefix(&source.path).unwrap_or(&file).to_string_lossy().into_owned();
                    parts.push(format!("file {relative} {}", sha256_hex(&bytes)));
                }
            }
        }
        CorpusSpec::Imported { documents, acl } => {
            parts.push(format!("imported {acl:?}"));
            for doc in documents {
                parts.push(format!("doc {} {}", doc.file, sha256_hex(markdown(&doc.title, &doc.text).as_bytes())));
            }
        }
    }
    Ok(sha256_hex(parts.join("\n").as_bytes()))
}

/// An imported document as a Markdown file with its title in the front matter.
fn markdown(title: &str, text: &str) -> String {
    let title = serde_json::to_string(title).unwrap_or_else(|_| "\"\"".into());
    format!("---\ntitle: {title}\n---\n\n{}\n", text.trim())
}

/// The data folder for `set`: reused from the cache when its hash matches, otherwise built by
/// ingesting the corpus. Concurrent runs for the same corpus wait for each other (file lock).
pub async fn prepare(
    set: &EvalSet,
    config: &Config,
    embedder: Arc<Embedder>,
    cache_root: &Path,
) -> Result<PreparedCorpus, EvalError> {
    let hash = corpus_hash(set, config, &embedder.info().fingerprint)?;
    let slug = lore_core::types::Collection::slug(&set.name);
    let dir = cache_root.join(format!("{slug}-{}", &hash[..16]));
    std::fs::create_dir_all(cache_root).map_err(|e| EvalError::io(cache_root, e))?;
    let lock_path = cache_root.join(format!("{slug}-{}.lock", &hash[..16]));
    let lock = std::fs::File::create(&lock_path).map_err(|e| EvalError::io(&lock_path, e))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(|e| EvalError::io(&lock_path, std::io::Error::other(e.to_string())))?
        .map_err(|e| EvalError::io(&lock_path, e))?;
    let ready = dir.join("ready.json");
    if let Ok(text) = std::fs::read_to_string(&ready)
        && let Ok(mut prepared) = serde_json::from_str::<PreparedCorpus>(&text)
    {
        prepared.cached = true;
        prepared.data_dir = dir.join("data");
        drop(lock);
        return Ok(prepared);
    }
    if dir.exists() {
        // A folder without its marker is left from an interrupted run.
        std::fs::remove_dir_all(&dir).map_err(|e| EvalError::io(&dir, e))?;
    }
    let sources = match &set.corpus {
        CorpusSpec::Sources(sources) => sources.clone(),
        CorpusSpec::Imported { documents, acl } => {
            let folder = dir.join("corpus");
            std::fs::create_dir_all(&folder).map_err(|e| EvalError::io(&folder, e))?;
            for doc in documents {
                let path = folder.join(&doc.file);
                std::fs::write(&path, markdown(&doc.title, &doc.text)).map_err(|e| EvalError::io(&path, e))?;
            }
            vec![Source { name: slug.clone(), path: folder, default_acl: Some(acl.clone()), department: None }]
        }
    };
    let mut ingest_config = config.clone();
    ingest_config.data_dir = dir.join("data");
    let started = Instant::now();
    eprintln!("lore eval: ingesting the corpus of {} into {}", set.name, dir.display());
    let report = {
        let mut ingestor = Ingestor::open(ingest_config, embedder).await?;
        ingestor.ingest(&sources, &IngestOptions { sync: false, progress: true }).await?
    };
    let prepared = PreparedCorpus {
        data_dir: dir.join("data"),
        hash,
        cached: false,
        documents: report.indexed + report.unchanged,
        chunks: report.chunks,
        ingest_seconds: started.elapsed().as_secs_f64(),
        failures: report.failures.iter().map(|f| f.to_string()).collect(),
    };
    for failure in &prepared.failures {
        eprintln!("lore eval: not ingested: {failure}");
    }
    eprintln!("lore eval: {}", report.summary_line());
    std::fs::write(&ready, serde_json::to_string_pretty(&prepared)?).map_err(|e| EvalError::io(&ready, e))?;
    drop(lock);
    Ok(prepared)
}
