//! Every environment variable Lore reads, declared once.
//!
//! Configuration is layered: built-in defaults, then the TOML file, then these variables.

/// Path of the TOML configuration file (default: `lore.toml` if it exists).
pub const LORE_CONFIG: &str = "LORE_CONFIG";
/// Data folder holding the catalog and the embedded indexes (default: `data`).
pub const LORE_DATA_DIR: &str = "LORE_DATA_DIR";
/// Folder the model setup step fills (default: `.models` beside the workspace or cwd).
pub const LORE_MODELS_DIR: &str = "LORE_MODELS_DIR";
/// ONNX Runtime shared library (`libonnxruntime.so.1.31.1`); overrides the config file.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";
/// URL of a Qdrant server (gRPC port, e.g. `http://127.0.0.1:6334`); selects the server backend.
pub const QDRANT_URL: &str = "QDRANT_URL";
/// PostgreSQL connection string (`postgres://user:password@host:5432/lore`) for the application
/// database; overrides `database.url`. Unset: the embedded SQLite file in the data folder.
pub const LORE_DATABASE_URL: &str = "LORE_DATABASE_URL";
/// API key for the Qdrant server.
pub const QDRANT_API_KEY: &str = "QDRANT_API_KEY";
/// Collection name in the Qdrant server (default: the config file's `vector_store.collection`,
/// else `lore_chunks`).
pub const LORE_QDRANT_COLLECTION: &str = "LORE_QDRANT_COLLECTION";
/// Secret (at least 32 bytes, hex) that signs embed tokens; several server processes behind a
/// load balancer must share it. Default: generated once into `<data>/embed-secret`.
pub const LORE_EMBED_SECRET: &str = "LORE_EMBED_SECRET";
/// API key `lore ingest` uses to send files to a running server.
pub const LORE_API_KEY: &str = "LORE_API_KEY";
/// Folder where `lore eval` keeps ingested copies of evaluation corpora, keyed by content hash
/// (default: `$XDG_CACHE_HOME/lore-eval`, else `~/.cache/lore-eval`).
pub const LORE_EVAL_CACHE: &str = "LORE_EVAL_CACHE";
/// Base of per-user cache folders (XDG); `lore eval` uses `<it>/lore-eval` by default.
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";
/// Home folder; the cache falls back to `~/.cache` when `XDG_CACHE_HOME` is unset.
pub const HOME: &str = "HOME";
/// `tracing` filter, e.g. `info` or `lore_ingest=debug`.
pub const LORE_LOG: &str = "LORE_LOG";
/// The operator's login name, used to name the CLI operator in the audit log (`cli:<it>`).
pub const USER: &str = "USER";

pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}
