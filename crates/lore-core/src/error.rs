use std::path::PathBuf;

/// Errors of the core layer. Higher layers wrap this with `From`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid principal {0:?}: expected `everyone`, `user:<id>`, `group:<name>` or `dept:<name>`")]
    InvalidPrincipal(String),
    #[error("empty ACL: a document must name at least one principal")]
    EmptyAcl,
    #[error("configuration error: {0}")]
    Config(String),
    #[error("model setup error: {0}")]
    ModelSetup(String),
    #[error("embedding failed: {0}")]
    Embedding(String),
    #[error(
        "the index in {data_dir} holds vectors of model {stored}, but the configured model is {configured}: \
         run `lore reembed` with this configuration to re-embed the stored chunks (documents, ACLs and the \
         keyword index stay as they are), or point the configuration back at the index's model"
    )]
    ModelMismatch { data_dir: PathBuf, stored: String, configured: String },
    #[error(transparent)]
    Database(#[from] lore_db::Error),
    #[error("keyword index (tantivy) error: {0}")]
    Keyword(#[from] tantivy::TantivyError),
    #[error("keyword query error: {0}")]
    KeywordQuery(#[from] tantivy::query::QueryParserError),
    #[error("vector index error: {0}")]
    Vector(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Conflict(String),
    #[error("io error at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
