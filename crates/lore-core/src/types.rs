//! Documents and chunks as the catalog and both indexes see them.

use serde::{Deserialize, Serialize};

use crate::acl::Acl;
use crate::lang::Lang;

/// A document known to the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// Stable id derived from the source name and the path inside the source.
    pub id: String,
    pub source: String,
    /// Path relative to the source root, with `/` separators.
    pub path: String,
    pub title: String,
    /// sha256 over the file bytes, the ACL and the chunking/model settings: any change re-indexes.
    pub fingerprint: String,
    pub acl: Acl,
    pub lang: Lang,
    pub format: String,
    pub size_bytes: u64,
    pub chunk_count: usize,
}

/// One chunk of a document; the unit both indexes store under the same id.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Chunk {
    /// UUID (v5 over document id, ordinal and content hash), shared by both indexes.
    pub id: String,
    pub doc_id: String,
    pub ordinal: usize,
    pub title: String,
    pub heading_path: Vec<String>,
    /// 1-based page number for paged formats (PDF).
    pub page: Option<u32>,
    /// Char offsets into the extracted text of the document (or of the page, for PDFs).
    pub char_start: usize,
    pub char_end: usize,
    pub lang: Lang,
    pub text: String,
    /// sha256 of `text`.
    pub content_hash: String,
}

impl Chunk {
    /// Deterministic chunk id: the same document content always yields the same ids.
    pub fn make_id(doc_id: &str, ordinal: usize, content_hash: &str) -> String {
        const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6c6f_7265_2d63_6875_6e6b_2d69_6473_0001);
        uuid::Uuid::new_v5(&NAMESPACE, format!("{doc_id}\u{1f}{ordinal}\u{1f}{content_hash}").as_bytes()).to_string()
    }

    /// The text given to the embedding model: title and heading path give the chunk context.
    pub fn embedding_text(&self) -> String {
        let mut context = self.title.clone();
        for heading in &self.heading_path {
            if heading != &self.title {
                context.push_str(" > ");
                context.push_str(heading);
            }
        }
        format!("{context}\n\n{}", self.text)
    }
}

/// What an index returns for a hit: the chunk id and the engine's score.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredChunkId {
    pub chunk_id: String,
    pub doc_id: String,
    pub score: f32,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
