use std::path::PathBuf;

/// Why one file could not be ingested. The batch goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileErrorKind {
    #[error("unsupported file type {0:?}")]
    UnknownType(String),
    #[error("file is empty")]
    Empty,
    #[error("file is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a text file (binary content)")]
    Binary,
    #[error("encrypted PDF (password protected)")]
    Encrypted,
    #[error("corrupt or unreadable {format}: {detail}")]
    Corrupt { format: &'static str, detail: String },
    #[error("no text could be extracted")]
    NoText,
    #[error("no ACL: set `acl` in front matter or a `.meta.toml` sidecar, or `default_acl` in the source config")]
    NoAcl,
    #[error("invalid ACL: {0}")]
    InvalidAcl(String),
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    #[error("parser crashed: {0}")]
    ParserPanic(String),
    #[error("read error: {0}")]
    Io(String),
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct FileError {
    pub path: PathBuf,
    pub kind: FileErrorKind,
}

/// Errors that stop a whole ingest run (as opposed to one file).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Core(#[from] lore_core::Error),
    #[error("source config {path}: {message}")]
    SourceConfig { path: PathBuf, message: String },
    #[error("{0}")]
    Other(String),
}
