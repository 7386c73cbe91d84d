//! End-to-end tests of the `lore` binary.

mod ask;
mod browser;
mod compose;
mod crash;
mod dedup;
mod errors;
mod eval;
mod hostile;
mod http;
mod identity;
mod provider;
mod refusals;
mod search;
mod serve;
mod web_hardening;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `lore`. Invocations are serialized: an embedded data folder can be open in only one
/// process at a time (qdrant-edge locks its WAL), and tests share data folders.
pub fn lore(data_dir: &Path, args: &[&str]) -> Output {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_lore")).arg("--data-dir").arg(data_dir).args(args).output().expect("run lore")
}

/// A configuration for a data folder, parsing uploads in a child `lore` process as the
/// server does (the test binary itself cannot host the parser).
pub fn config_in(data_dir: std::path::PathBuf) -> lore_core::config::Config {
    let mut config = lore_core::config::Config { data_dir, ..Default::default() };
    config.ingest.parser = lore_core::config::ParserConfig::process(env!("CARGO_BIN_EXE_lore"));
    config
}

pub fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "lore failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
