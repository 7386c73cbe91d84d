use std::path::PathBuf;

/// Why one file could not be ingested. The batch goes on without it. (Serializable: a child
/// parser process sends it back to its parent.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
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
    Corrupt { format: String, detail: String },
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
    #[error(
        "the parser stopped on this file ({0}): it is malformed or hostile (for example a page tree or form that \
         refers to itself), or needs more than ingest.parser.memory_mib"
    )]
    ParserCrashed(String),
    #[error("parsing took longer than {secs} s (ingest.parser.timeout_secs); the file may loop on itself")]
    ParseTimeout { secs: u64 },
    #[error("parsing was cancelled")]
    Cancelled,
    #[error("the PDF has {pages} pages, over the {limit}-page limit (ingest.parser.max_pdf_pages)")]
    TooManyPages { pages: usize, limit: usize },
    #[error("{entry} decompresses to more than {limit_mib} MiB (ingest.parser.max_entry_mib)")]
    EntryTooLarge { entry: String, limit_mib: u64 },
    #[error(
        "{entry} is compressed {ratio}:1, over the {limit}:1 limit for archive entries \
         (ingest.parser.max_compression_ratio)"
    )]
    CompressionRatio { entry: String, ratio: u64, limit: u64 },
    #[error("the file yields more than {limit_mib} MiB of text (ingest.parser.max_output_mib)")]
    TooMuchText { limit_mib: u64 },
    #[error("the parser could not be run: {0}")]
    ParserUnavailable(String),
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
