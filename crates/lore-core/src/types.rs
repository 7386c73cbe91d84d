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
    /// Free-form metadata (a JSON object) set through the document API.
    #[serde(default = "empty_object")]
    pub metadata: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A collection of documents owned by a department. Documents live in collections (the
/// collection id is the document's `source`); knowledge managers act on their departments'
/// collections only. Uploads without an ACL get the collection's default ACL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Collection {
    pub id: String,
    pub name: String,
    /// The owning department; `None`: only admins manage it.
    pub department: Option<String>,
    /// ACL of uploads that bring none; `None`: every upload must name its ACL.
    #[schema(value_type = Option<Vec<String>>)]
    pub default_acl: Option<Acl>,
    pub created_at: String,
}

impl Collection {
    /// Lowercase letters, digits, `-`, `_`, `.`; starting with a letter or digit; 1–64 chars.
    pub fn validate_id(id: &str) -> crate::Result<()> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if ok {
            Ok(())
        } else {
            Err(crate::Error::InvalidInput(format!(
                "invalid collection id {id:?}: use 1-64 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
            )))
        }
    }

    /// A valid collection id made from any name (`Contoso HR` → `contoso-hr`).
    pub fn slug(name: &str) -> String {
        let mut slug = String::new();
        for c in name.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                slug.push(c);
            } else if !slug.ends_with('-') && !slug.is_empty() {
                slug.push('-');
            }
        }
        let slug: String = slug.trim_matches(|c| c == '-' || c == '.').chars().take(64).collect();
        if slug.is_empty() { "files".into() } else { slug }
    }
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

/// Deserializes one string or a list of them (`acl: everyone` or `acl: [group:hr, group:it]`,
/// in front matter, sidecars and eval sets); absent is `None`.
pub fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(vec![s]),
        Some(OneOrMany::Many(v)) => Some(v),
    })
}
