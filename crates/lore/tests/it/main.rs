//! End-to-end tests of the `lore` binary.

mod ask;
mod browser;
mod compose;
mod crash;
mod errors;
mod eval;
mod http;
mod identity;
mod provider;
mod search;
mod serve;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `lore`. Invocations are serialized: an embedded data folder can be open in only one
/// process at a time (qdrant-edge locks its WAL), and tests share data folders.
pub fn lore(data_dir: &Path, args: &[&str]) -> Output {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    Command::new(env!("CARGO_BIN_EXE_lore")).arg("--data-dir").arg(data_dir).args(args).output().expect("run lore")
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
