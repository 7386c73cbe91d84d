use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use lore_core::config::Config;
use lore_core::embed::Embedder;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `../shared/data` beside the project, if present.
pub fn shared_data() -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/data");
    dir.is_dir().then_some(dir)
}

/// The real embedding model, loaded once per test binary.
pub fn embedder() -> Arc<Embedder> {
    static EMBEDDER: OnceLock<Arc<Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            Arc::new(
                Embedder::load(&Config::default().embedding).expect(
                    "embedding model missing: run `python3 scripts/setup-models.py` (the test script does this)",
                ),
            )
        })
        .clone()
}

pub fn config_in(dir: &Path) -> Config {
    // Trusted fixtures, parsed in this process (a test binary cannot host the child parser;
    // the server's tests cover parsing in child processes).
    let mut config = Config { data_dir: dir.join("data"), ..Config::default() };
    config.ingest.parser = lore_core::config::ParserConfig::in_process();
    config
}
