//! End-to-end tests of the `lore` binary.

mod cli;
mod compose;
mod crash;
mod errors;
mod eval;
mod hostile;
mod reembed;
mod replicas;
mod serve;

/// HTTP calls to a test server, shared with lore-server's API suite.
#[path = "../../../lore-server/tests/api/support/client.rs"]
#[allow(dead_code)] // this binary uses some of the helpers
mod client;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `lore` on `data_dir`. An embedded data folder can be open in only one process at a
/// time (qdrant-edge locks its WAL), so each test uses data folders of its own and runs the
/// binary on them one call after another.
pub fn lore(data_dir: &Path, args: &[&str]) -> Output {
    lore_command().arg("--data-dir").arg(data_dir).args(args).output().expect("run lore")
}

/// The `lore` binary with the scale-out variables removed from its environment: the tests
/// choose their engines themselves, also when this binary runs with `QDRANT_URL` set for the
/// multi-replica tests.
pub fn lore_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lore"));
    for variable in [
        lore_core::env::QDRANT_URL,
        lore_core::env::LORE_QDRANT_COLLECTION,
        lore_core::env::QDRANT_API_KEY,
        lore_core::env::LORE_DATABASE_URL,
    ] {
        command.env_remove(variable);
    }
    command
}

/// A configuration for a data folder, parsing uploads in a child `lore` process as the
/// server does (the test binary itself cannot host the parser).
pub fn config_in(data_dir: std::path::PathBuf) -> lore_core::config::Config {
    let mut config = lore_core::config::Config { data_dir, ..Default::default() };
    config.ingest.parser = lore_core::config::ParserConfig::process(env!("CARGO_BIN_EXE_lore"));
    config
}

/// The embedding model, loaded once for the binary.
pub fn embedder() -> std::sync::Arc<lore_core::embed::Embedder> {
    static EMBEDDER: std::sync::OnceLock<std::sync::Arc<lore_core::embed::Embedder>> = std::sync::OnceLock::new();
    EMBEDDER.get_or_init(|| std::sync::Arc::new(lore_core::embed::Embedder::load(&Default::default()).unwrap())).clone()
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
