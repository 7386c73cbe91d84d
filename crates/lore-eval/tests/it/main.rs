//! Integration tests of lore-eval: importers on fixtures, and whole runs with the real
//! embedding model, real indexes and SQLite — the CI gate on the sample set and on a slice of
//! ClapNQ, and model scoring against a loopback OpenAI-compatible server.

mod gate;
mod import;
mod provider;

use std::path::{Path, PathBuf};

use lore_core::config::Config;
use lore_eval::{RunOptions, RunResult};

/// Runs share cached data folders, and qdrant-edge locks a folder's write-ahead log even for
/// readers: one run at a time in this process.
pub static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Ingested corpora are cached beside the build, so reruns skip ingest.
pub fn options() -> RunOptions {
    let cache_root = lore_core::env::var(lore_core::env::LORE_EVAL_CACHE)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("lore-eval-cache"));
    RunOptions { cache_root, ..RunOptions::default() }
}

/// The default configuration (the same defaults `lore eval` runs with, no config file),
/// except that the trusted evaluation corpora are parsed in this process: a test binary cannot
/// host the child parser (`lore eval` itself parses in child processes).
pub fn config() -> Config {
    let mut config = Config::default();
    config.ingest.parser = lore_core::config::ParserConfig::in_process();
    config
}

pub async fn run(set: &lore_eval::EvalSet, config: &Config, options: &RunOptions) -> RunResult {
    let _turn = ONE_RUN_AT_A_TIME.lock().await;
    lore_eval::runner::run_in_process(set, config, options).await.unwrap()
}

pub fn case<'a>(result: &'a RunResult, id: &str, mode: &str) -> &'a lore_eval::CaseResult {
    result.cases.iter().find(|c| c.id == id && c.mode == mode).unwrap_or_else(|| panic!("no result for {id} {mode}"))
}
