//! Chunking with `text-splitter`, sized in tokens of the embedding model's tokenizer
//! (Markdown-aware for Markdown and for HTML/DOCX converted to Markdown headings).

use lore_core::config::ChunkingConfig;
use lore_core::lang::Lang;
use lore_core::types::{Chunk, sha256_hex};
use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::error::IngestError;
use crate::loaders::LoadedDocument;

pub struct Chunker {
    markdown: MarkdownSplitter<Tokenizer>,
    plain: TextSplitter<Tokenizer>,
}

/// Document-level facts every chunk carries.
pub struct ChunkContext<'a> {
    pub doc_id: &'a str,
    pub title: &'a str,
    pub lang: Lang,
}

impl Chunker {
    /// `tokenizer` must have truncation and padding switched off
    /// (see [`lore_core::embed::load_sizing_tokenizer`]).
    pub fn new(tokenizer: Tokenizer, config: &ChunkingConfig) -> Result<Self, IngestError> {
        let chunk_config = |tokenizer: Tokenizer| {
            ChunkConfig::new(config.min_tokens..config.max_tokens)
                .with_sizer(tokenizer)
                .with_overlap(config.overlap_tokens)
                .map_err(|e| IngestError::Other(format!("chunking config: {e}")))
        };
        Ok(Chunker {
            markdown: MarkdownSplitter::new(chunk_config(tokenizer.clone())?),
            plain: TextSplitter::new(chunk_config(tokenizer)?),
        })
    }

    pub fn chunk(&self, context: &ChunkContext<'_>, document: &LoadedDocument) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        for section in &document.sections {
            let headings = if document.markdown { markdown_headings(&section.text) } else { Vec::new() };
            let pieces: Vec<(usize, usize, &str)> = if document.markdown {
                self.markdown
                    .chunk_char_indices(&section.text)
                    .map(|c| (c.byte_offset, c.char_offset, c.chunk))
                    .collect()
            } else {
                self.plain.chunk_char_indices(&section.text).map(|c| (c.byte_offset, c.char_offset, c.chunk)).collect()
            };
            for (byte_offset, char_offset, text) in pieces {
                let text = text.trim();
                // A chunk holding only headings says nothing by itself; its headings are in
                // the heading path of the chunks that follow.
                if text.is_empty() || (document.markdown && only_headings(text)) {
                    continue;
                }
                let ordinal = chunks.len();
                let content_hash = sha256_hex(text.as_bytes());
                chunks.push(Chunk {
                    id: Chunk::make_id(context.doc_id, ordinal, &content_hash),
                    doc_id: context.doc_id.to_owned(),
                    ordinal,
                    title: context.title.to_owned(),
                    heading_path: heading_path_at(
                        &headings,
                        byte_offset + leading_whitespace(&section.text[byte_offset..]),
                    ),
                    page: section.page,
                    char_start: char_offset,
                    char_end: char_offset + text.chars().count(),
                    lang: context.lang,
                    text: text.to_owned(),
                    content_hash,
                });
            }
        }
        chunks
    }
}

fn only_headings(text: &str) -> bool {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).all(|l| l.starts_with('#'))
}

fn leading_whitespace(text: &str) -> usize {
    text.len() - text.trim_start().len()
}

/// (byte offset, level, text) of each ATX heading outside code fences.
fn markdown_headings(text: &str) -> Vec<(usize, usize, String)> {
    let mut headings = Vec::new();
    let mut offset = 0;
    let mut in_fence = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            in_fence = !in_fence;
        } else if !in_fence {
            let level = trimmed.chars().take_while(|&c| c == '#').count();
            if (1..=6).contains(&level) && trimmed[level..].starts_with(' ') {
                let heading = trimmed[level..].trim().trim_end_matches('#').trim();
                if !heading.is_empty() {
                    headings.push((offset, level, heading.to_owned()));
                }
            }
        }
        offset += line.len();
    }
    headings
}

/// The stack of headings in force at `position` (a heading starting there counts).
fn heading_path_at(headings: &[(usize, usize, String)], position: usize) -> Vec<String> {
    let mut stack: Vec<(usize, &str)> = Vec::new();
    for (offset, level, text) in headings {
        if *offset > position {
            break;
        }
        while stack.last().is_some_and(|(l, _)| l >= level) {
            stack.pop();
        }
        stack.push((*level, text));
    }
    stack.into_iter().map(|(_, text)| text.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heading_only_text_is_recognised() {
        assert!(only_headings("## Engineering levels\n\n### L1"));
        assert!(!only_headings("## Engineering levels\n\n| L1 | Engineer I |"));
    }

    #[test]
    fn heading_path_follows_levels_and_skips_code() {
        let text = "# A\n\nintro\n\n## B\n\n```\n# not a heading\n```\n\n### C\n\ntext\n\n## D\n\nmore";
        let headings = markdown_headings(text);
        let names: Vec<&str> = headings.iter().map(|h| h.2.as_str()).collect();
        assert_eq!(names, ["A", "B", "C", "D"]);
        assert_eq!(heading_path_at(&headings, text.find("text").unwrap()), ["A", "B", "C"]);
        assert_eq!(heading_path_at(&headings, text.find("more").unwrap()), ["A", "D"]);
        assert_eq!(heading_path_at(&headings, 0), ["A"]);
    }
}
