use std::path::PathBuf;

/// Everything that can go wrong in an evaluation run. A missing public data folder is its own
/// variant so tests can skip with a message instead of failing.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{path}: {message}")]
    Set { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Case { path: PathBuf, line: usize, message: String },
    #[error("data for set {set:?} is missing: {path} does not exist (public sets read ../shared/data)")]
    DataMissing { set: String, path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no case with id {0:?} in the set")]
    UnknownCase(String),
    #[error("baseline {path}: {message}")]
    Baseline { path: PathBuf, message: String },
    #[error("server {url}: {message}")]
    Remote { url: String, message: String },
    #[error("judge: {0}")]
    Judge(String),
    #[error(transparent)]
    Core(#[from] lore_core::Error),
    #[error(transparent)]
    Ingest(#[from] lore_ingest::IngestError),
    #[error(transparent)]
    Chat(#[from] lore_chat::ChatError),
    #[error("conversation store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl EvalError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EvalError::Io { path: path.into(), source }
    }
}
