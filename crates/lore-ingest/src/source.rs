//! Sources: folders of documents with a default ACL, declared in a TOML config.
//!
//! ```toml
//! [[source]]
//! name = "samples"
//! path = "samples"          # relative to the config file
//! default_acl = ["everyone"]
//! ```
//!
//! A document may override the ACL in its front matter (`acl: [group:hr]`) or in a sidecar
//! file `<name>.meta.toml` (`acl = ["group:hr"]`, optionally `title`, `lang`). A document
//! whose ACL cannot be resolved is rejected, never made public silently.

use std::path::{Path, PathBuf};

use lore_core::acl::Acl;
use lore_core::types::Collection;
use serde::Deserialize;

use crate::error::{FileErrorKind, IngestError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Also the id of the collection the documents live in.
    pub name: String,
    pub path: PathBuf,
    #[serde(default)]
    pub default_acl: Option<Vec<String>>,
    /// The department owning the collection (its knowledge managers manage it).
    #[serde(default)]
    pub department: Option<String>,
}

/// Metadata a document may carry about itself (front matter or sidecar).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct DocumentMeta {
    pub title: Option<String>,
    pub lang: Option<String>,
    #[serde(default, deserialize_with = "lore_core::types::one_or_many")]
    pub acl: Option<Vec<String>>,
}

pub const SIDECAR_SUFFIX: &str = ".meta.toml";

impl SourceConfig {
    pub fn load(path: &Path) -> Result<Self, IngestError> {
        let err = |message: String| IngestError::SourceConfig { path: path.to_owned(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut config: SourceConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for source in &mut config.sources {
            source.path = base.join(&source.path);
            Collection::validate_id(&source.name).map_err(|e| err(e.to_string()))?;
            if let Some(acl) = &source.default_acl {
                Acl::parse(acl).map_err(|e| err(format!("source {:?}: default_acl: {e}", source.name)))?;
            }
            if !source.path.is_dir() {
                return Err(err(format!("source {:?}: {} is not a folder", source.name, source.path.display())));
            }
        }
        let mut names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(err("source names must be unique".into()));
        }
        Ok(config)
    }
}

impl Source {
    /// A source for a bare folder or file given on the command line.
    pub fn ad_hoc(path: &Path, default_acl: Option<Vec<String>>) -> Self {
        let name = path
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| Collection::slug(&n.to_string_lossy())))
            .unwrap_or_else(|| "files".into());
        Source { name, path: path.to_owned(), default_acl, department: None }
    }

    /// Stable document id for a path inside this source.
    pub fn document_id(&self, relative_path: &str) -> String {
        document_id(&self.name, relative_path)
    }

    /// The collection this source's documents live in.
    pub fn collection(&self) -> Result<Collection, IngestError> {
        let default_acl = self.default_acl.as_ref().map(|a| Acl::parse(a)).transpose()?;
        Ok(Collection {
            id: self.name.clone(),
            name: self.name.clone(),
            department: self.department.clone(),
            default_acl,
            created_at: String::new(),
        })
    }

    /// The ACL: document metadata first, then the source default; none is an error.
    pub fn resolve_acl(&self, meta: &DocumentMeta) -> Result<Acl, FileErrorKind> {
        let raw = meta.acl.as_ref().or(self.default_acl.as_ref()).ok_or(FileErrorKind::NoAcl)?;
        Acl::parse(raw).map_err(|e| FileErrorKind::InvalidAcl(e.to_string()))
    }
}

/// Stable document id for a path inside a collection.
pub fn document_id(collection: &str, relative_path: &str) -> String {
    lore_core::types::sha256_hex(format!("{collection}\u{1f}{relative_path}").as_bytes())[..24].to_owned()
}

/// Reads `<file>.meta.toml` if present.
pub fn read_sidecar(file: &Path) -> Result<Option<(DocumentMeta, Vec<u8>)>, FileErrorKind> {
    let mut name = file.as_os_str().to_owned();
    name.push(SIDECAR_SUFFIX);
    let sidecar = PathBuf::from(name);
    match std::fs::read(&sidecar) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes.clone())
                .map_err(|_| FileErrorKind::InvalidMetadata(format!("{} is not UTF-8", sidecar.display())))?;
            let meta: DocumentMeta = toml::from_str(&text)
                .map_err(|e| FileErrorKind::InvalidMetadata(format!("{}: {e}", sidecar.display())))?;
            Ok(Some((meta, bytes)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FileErrorKind::Io(format!("{}: {e}", sidecar.display()))),
    }
}

impl DocumentMeta {
    /// Fields set in `other` win.
    pub fn overlay(mut self, other: DocumentMeta) -> Self {
        self.title = other.title.or(self.title);
        self.lang = other.lang.or(self.lang);
        self.acl = other.acl.or(self.acl);
        self
    }
}
