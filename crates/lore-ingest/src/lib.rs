//! Ingest: load files (Markdown, text, HTML, PDF, DOCX), resolve their ACL, chunk them by
//! embedding-model tokens, embed them, and write both indexes and the catalog, idempotently
//! and crash-consistently.

pub mod chunker;
pub mod error;
pub mod loaders;
pub mod migrate;
pub mod pipeline;
pub mod reembed;
pub mod sandbox;
pub mod source;
pub mod title;

/// Bumped when extraction or chunking changes what is indexed for an unchanged file; every
/// document is processed again on its next ingest (embeddings of unchanged chunks are reused).
pub const EXTRACTION_VERSION: &str = "extraction-2";

pub use error::{FileError, FileErrorKind, IngestError};
pub use pipeline::{
    IngestOptions, IngestReport, Ingestor, PreparedUpload, ReadyUpload, SourceFile, Upload, UploadOutcome,
    UploadPreparer, source_files,
};
pub use sandbox::Parser;
pub use source::{Source, SourceConfig, document_id};
