//! Loaders turn file bytes into text sections. Each returns a clear [`FileErrorKind`] for
//! empty, binary, corrupt or encrypted input; [`load`] also turns a parser panic into an
//! error so one bad file cannot take the process down.

mod docx;
mod html;
mod markdown;
mod pdf;

use std::path::Path;

use crate::error::FileErrorKind;
use crate::source::DocumentMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Markdown,
    Text,
    Html,
    Pdf,
    Docx,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Markdown, Format::Text, Format::Html, Format::Pdf, Format::Docx];

    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "md" | "markdown" | "mdx" => Format::Markdown,
            "txt" | "text" => Format::Text,
            "html" | "htm" => Format::Html,
            "pdf" => Format::Pdf,
            "docx" => Format::Docx,
            _ => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
        }
    }
}

/// Limits every loader enforces on untrusted input, whether it runs in a child process or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub max_pdf_pages: usize,
    /// Largest decompressed archive entry (DOCX), in bytes.
    pub max_entry_bytes: u64,
    /// Largest decompressed/compressed ratio of an archive entry over 1 MiB.
    pub max_compression_ratio: u64,
}

impl Limits {
    pub fn from_config(config: &lore_core::config::ParserConfig) -> Self {
        Limits {
            max_pdf_pages: config.max_pdf_pages,
            max_entry_bytes: config.max_entry_mib.saturating_mul(1024 * 1024),
            max_compression_ratio: config.max_compression_ratio,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_config(&lore_core::config::ParserConfig::default())
    }
}

/// A loaded document: its text in sections (one per page for PDFs, else one).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadedDocument {
    pub format: Format,
    /// Title found in the document itself (front matter, `<title>`, core properties, first heading).
    pub title: Option<String>,
    pub meta: DocumentMeta,
    /// Whether section text uses Markdown headings (`#`), which the chunker follows.
    pub markdown: bool,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Section {
    pub page: Option<u32>,
    pub text: String,
}

impl LoadedDocument {
    fn single(format: Format, title: Option<String>, meta: DocumentMeta, markdown: bool, text: String) -> Self {
        LoadedDocument { format, title, meta, markdown, sections: vec![Section { page: None, text }] }
    }

    pub fn total_chars(&self) -> usize {
        self.sections.iter().map(|s| s.text.chars().count()).sum()
    }
}

/// Loads `bytes` as the format implied by `path`'s extension, with the default [`Limits`],
/// on this thread. Untrusted files go through [`crate::sandbox::Parser`] instead.
pub fn load(path: &Path, bytes: &[u8]) -> Result<LoadedDocument, FileErrorKind> {
    load_format(format_of(path)?, bytes, &Limits::default())
}

/// The loader `path`'s extension selects.
pub fn format_of(path: &Path) -> Result<Format, FileErrorKind> {
    Format::from_path(path).ok_or_else(|| {
        FileErrorKind::UnknownType(path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default())
    })
}

/// Loads `bytes` as `format` within `limits`; a parser panic becomes an error.
pub fn load_format(format: Format, bytes: &[u8], limits: &Limits) -> Result<LoadedDocument, FileErrorKind> {
    if bytes.is_empty() {
        return Err(FileErrorKind::Empty);
    }
    let loaded = std::panic::catch_unwind(|| match format {
        Format::Markdown => markdown::load(as_text(bytes)?),
        Format::Text => {
            Ok(LoadedDocument::single(Format::Text, None, DocumentMeta::default(), false, as_text(bytes)?.to_owned()))
        }
        Format::Html => html::load(as_text(bytes)?),
        Format::Pdf => pdf::load(bytes, limits),
        Format::Docx => docx::load(bytes, limits),
    })
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        FileErrorKind::ParserPanic(message)
    })??;
    if loaded.sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err(FileErrorKind::NoText);
    }
    Ok(loaded)
}

/// UTF-8 text without NUL bytes (a BOM is dropped); anything else is binary.
fn as_text(bytes: &[u8]) -> Result<&str, FileErrorKind> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.contains(&0) {
        return Err(FileErrorKind::Binary);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| FileErrorKind::Binary)?;
    if text.trim().is_empty() {
        return Err(FileErrorKind::Empty);
    }
    Ok(text)
}

/// Collapses runs of blank lines and trailing spaces left by extraction.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank_run += 1;
            if blank_run > 1 {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}
