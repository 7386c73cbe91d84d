//! Chunking with `text-splitter`, sized in tokens of the embedding model's tokenizer
//! (Markdown-aware for Markdown and for HTML/DOCX converted to Markdown headings).
//!
//! text-splitter sizes many candidate spans per chunk (binary searches over semantic
//! units). Re-tokenizing each candidate made chunking cost about a minute of CPU for a
//! 900-document handbook, on the thread that feeds the model. [`Sizing::Cached`] (the
//! default) tokenizes each section once and sizes any candidate from the token offsets it
//! covers; see [`TokenSpans`] for when that equals re-tokenizing the candidate.

use std::ops::Range;

use lore_core::config::ChunkingConfig;
use lore_core::lang::Lang;
use lore_core::types::{Chunk, sha256_hex};
use text_splitter::{ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

use crate::error::IngestError;
use crate::loaders::LoadedDocument;

/// How candidate chunks are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sizing {
    /// Tokenize each section once; a candidate's size is the number of its tokens that
    /// overlap it (see [`TokenSpans`]).
    #[default]
    Cached,
    /// Tokenize every candidate (text-splitter's own sizer for a `Tokenizer`): the reference
    /// the cached sizing is checked against.
    Tokenizer,
}

pub struct Chunker {
    tokenizer: Tokenizer,
    capacity: Range<usize>,
    overlap: usize,
    sizing: Sizing,
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
        Self::with_sizing(tokenizer, config, Sizing::default())
    }

    pub fn with_sizing(tokenizer: Tokenizer, config: &ChunkingConfig, sizing: Sizing) -> Result<Self, IngestError> {
        let chunker = Chunker {
            tokenizer,
            capacity: config.min_tokens..config.max_tokens,
            overlap: config.overlap_tokens,
            sizing,
        };
        chunker.chunk_config(&chunker.tokenizer)?;
        Ok(chunker)
    }

    fn chunk_config<S: ChunkSizer>(&self, sizer: S) -> Result<ChunkConfig<S>, IngestError> {
        ChunkConfig::new(self.capacity.clone())
            .with_sizer(sizer)
            .with_overlap(self.overlap)
            .map_err(|e| IngestError::Other(format!("chunking config: {e}")))
    }

    /// (byte offset, char offset, text) of each chunk of `text`, untrimmed as text-splitter
    /// gives them.
    fn split<'t, S: ChunkSizer>(&self, markdown: bool, text: &'t str, sizer: S) -> Vec<(usize, usize, &'t str)> {
        let config = self.chunk_config(sizer).expect("chunking config checked in Chunker::with_sizing");
        if markdown {
            MarkdownSplitter::new(config)
                .chunk_char_indices(text)
                .map(|c| (c.byte_offset, c.char_offset, c.chunk))
                .collect()
        } else {
            TextSplitter::new(config)
                .chunk_char_indices(text)
                .map(|c| (c.byte_offset, c.char_offset, c.chunk))
                .collect()
        }
    }

    pub fn chunk(&self, context: &ChunkContext<'_>, document: &LoadedDocument) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        for section in &document.sections {
            let headings = if document.markdown { markdown_headings(&section.text) } else { Vec::new() };
            let pieces = match self.sizing {
                Sizing::Cached => {
                    self.split(document.markdown, &section.text, TokenSpans::new(&self.tokenizer, &section.text))
                }
                Sizing::Tokenizer => self.split(document.markdown, &section.text, &self.tokenizer),
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

/// A text tokenized once, sizing its sub-spans from the token offsets.
///
/// text-splitter (0.33) only ever sizes sub-slices of the text it splits (trimmed slices of
/// that text), so a candidate's byte range is recovered from its address. Its size is the
/// number of tokens whose byte range overlaps the candidate's: tokens at or after its start
/// and before its end, a token cut by either end counting once.
///
/// That equals the token count of the candidate tokenized alone whenever both ends fall on
/// a pre-tokenizer boundary: whitespace, or either side of a punctuation character for
/// BERT's pre-tokenizer (the model's WordPiece sees each whitespace- or punctuation-separated
/// word alone, so a word's tokens do not depend on its neighbours). Markdown blocks and
/// inlines, lines, sentences and Unicode words end there nearly always; text-splitter cuts
/// inside a word only when a single word exceeds the chunk size (grapheme and character
/// fallback), or where a Unicode word boundary is not a BERT one (between letters of two
/// scripts, say). There the prefix or suffix of the word is counted by the tokens of the
/// whole word it belongs to, which may be a token or two off (`internat` alone is
/// `intern ##at`; inside `international` it is one cut token). The chunks of the
/// benchmark corpora come out identical (see `lore-bench ingest --compare-chunking`).
///
/// A string that is not a sub-slice of the text, or a text the tokenizer rejects or whose
/// offsets are not in text order, is sized by tokenizing it, as text-splitter does.
struct TokenSpans<'a> {
    tokenizer: &'a Tokenizer,
    text: &'a str,
    /// Byte starts and ends of the text's tokens, both non-decreasing.
    offsets: Option<(Vec<usize>, Vec<usize>)>,
}

impl<'a> TokenSpans<'a> {
    fn new(tokenizer: &'a Tokenizer, text: &'a str) -> Self {
        let offsets = tokenizer.encode(text, false).ok().and_then(|encoding| {
            let (starts, ends): (Vec<usize>, Vec<usize>) = encoding.get_offsets().iter().copied().unzip();
            let ordered = starts.is_sorted() && ends.is_sorted() && starts.iter().zip(&ends).all(|(s, e)| s <= e);
            ordered.then_some((starts, ends))
        });
        TokenSpans { tokenizer, text, offsets }
    }

    /// Byte range of `part` in the text, if it is a sub-slice of it.
    fn range_of(&self, part: &str) -> Option<Range<usize>> {
        let start = (part.as_ptr() as usize).checked_sub(self.text.as_ptr() as usize)?;
        let end = start + part.len();
        (end <= self.text.len()).then_some(start..end)
    }

    /// Tokens overlapping `range` of the text.
    fn tokens_in(&self, range: Range<usize>) -> Option<usize> {
        let (starts, ends) = self.offsets.as_ref()?;
        if range.is_empty() {
            return Some(0);
        }
        let before_end = starts.partition_point(|&s| s < range.end);
        let ended_before = ends.partition_point(|&e| e <= range.start);
        Some(before_end.saturating_sub(ended_before))
    }
}

impl ChunkSizer for TokenSpans<'_> {
    fn size(&self, chunk: &str) -> usize {
        match self.range_of(chunk).and_then(|range| self.tokens_in(range)) {
            Some(size) => size,
            None => self.tokenizer.size(chunk),
        }
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
    use std::path::{Path, PathBuf};

    use super::*;

    fn sizing_tokenizer() -> Tokenizer {
        let config = lore_core::config::Config::default();
        lore_core::embed::load_sizing_tokenizer(&config.embedding.model_dir)
            .expect("embedding model missing: run `python3 scripts/setup-models.py` (the test script does this)")
    }

    fn workspace_file(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(name)
    }

    /// Real documents: the project's own Markdown, and when `../shared/data` is there a few
    /// handbook pages and Spanish SQuAD paragraphs (accents, «», ¿).
    fn sample_documents() -> Vec<(PathBuf, String)> {
        let mut paths = vec![workspace_file("ARCHITECTURE.md"), workspace_file("README.md")];
        let shared = workspace_file("../shared/data");
        let handbook = shared.join("corpora/sourcegraph-handbook/content");
        if handbook.is_dir() {
            for page in [
                "benefits-pay-perks/benefits-perks/leave-of-absence.md",
                "departments/engineering/teams/devinfra/newsletter.md",
                "departments/people-talent/talent/process/types_of_interviews.md",
            ] {
                paths.push(handbook.join(page));
            }
        } else {
            eprintln!("../shared/data not found: sampling the project's own Markdown only");
        }
        let mut documents: Vec<(PathBuf, String)> =
            paths.into_iter().filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t))).collect();
        let squad = shared.join("bench/squad-es-v2-dev-small/dev-v2.0-es_small.json");
        if let Ok(raw) = std::fs::read_to_string(&squad) {
            let json: serde_json::Value = serde_json::from_str(&raw).expect("SQuAD JSON");
            let contexts: Vec<&str> = json["data"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|article| article["paragraphs"].as_array().into_iter().flatten())
                .filter_map(|paragraph| paragraph["context"].as_str())
                .take(60)
                .collect();
            documents.push((squad, contexts.join("\n\n")));
        }
        assert!(documents.len() >= 2, "sample documents missing");
        documents
    }

    /// A deterministic xorshift, so failures reproduce.
    fn rng(seed: u64) -> impl FnMut(usize) -> usize {
        let mut state = seed | 1;
        move |bound| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        }
    }

    /// Byte offsets where BERT's pre-tokenizer splits: either side of whitespace and of ASCII
    /// punctuation, and both ends.
    fn word_boundaries(text: &str) -> Vec<usize> {
        let splits = |c: char| c.is_whitespace() || c.is_ascii_punctuation();
        let mut boundaries = vec![0];
        let mut previous: Option<char> = None;
        for (i, c) in text.char_indices() {
            if previous.is_some_and(|p| splits(p) || splits(c)) {
                boundaries.push(i);
            }
            previous = Some(c);
        }
        boundaries.push(text.len());
        boundaries
    }

    #[test]
    fn cached_sizes_equal_the_tokenizer_on_spans_between_words() {
        let tokenizer = sizing_tokenizer();
        let mut next = rng(0x5eed);
        let mut checked = 0;
        for (path, text) in sample_documents() {
            let spans = TokenSpans::new(&tokenizer, &text);
            assert!(spans.offsets.is_some(), "{}: offsets not in text order", path.display());
            let boundaries = word_boundaries(&text);
            for _ in 0..250 {
                // Chunk-sized spans (up to 600 words) and a few longer ones (up to 4,000).
                let first = next(boundaries.len());
                let reach = if next(10) == 0 { 4000 } else { 600 };
                let last = (first + 1 + next(reach)).min(boundaries.len() - 1);
                let span = &text[boundaries[first]..boundaries[last]];
                let span = if next(2) == 0 { span.trim() } else { span };
                assert_eq!(
                    spans.size(span),
                    tokenizer.size(span),
                    "{} bytes {}..{}: {span:?}",
                    path.display(),
                    boundaries[first],
                    boundaries[last]
                );
                checked += 1;
            }
        }
        assert!(checked >= 500);
    }

    /// Inside a word the cached size counts the word's tokens that the cut touches; the cut
    /// word alone may tokenize otherwise. text-splitter cuts there only in its fallbacks.
    #[test]
    fn cached_sizes_stay_close_when_a_span_cuts_a_word() {
        let tokenizer = sizing_tokenizer();
        let mut next = rng(0xc0ffee);
        let (mut spans_checked, mut differing, mut total_difference, mut worst) = (0, 0, 0, 0);
        for (_, text) in sample_documents() {
            let spans = TokenSpans::new(&tokenizer, &text);
            let chars: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
            for _ in 0..200 {
                let first = next(chars.len() - 1);
                let last = (first + 1 + next(1500)).min(chars.len() - 1);
                let span = &text[chars[first]..chars[last]];
                let difference = spans.size(span).abs_diff(tokenizer.size(span));
                spans_checked += 1;
                differing += usize::from(difference > 0);
                total_difference += difference;
                worst = worst.max(difference);
            }
        }
        eprintln!(
            "spans cut at any character: {differing} of {spans_checked} sized differently, \
             {total_difference} tokens in all, at most {worst}"
        );
        // Two cut ends per span: each end costs at most a few tokens, and on average far less.
        assert!(worst <= 8, "a span was {worst} tokens off");
        assert!(total_difference <= spans_checked * 2, "{total_difference} tokens off over {spans_checked} spans");
    }

    #[test]
    fn a_string_outside_the_text_is_tokenized() {
        let tokenizer = sizing_tokenizer();
        let text = "Parental leave: sixteen weeks, fully paid.";
        let spans = TokenSpans::new(&tokenizer, text);
        let elsewhere = String::from("Parental leave");
        assert_eq!(spans.size(&elsewhere), tokenizer.size("Parental leave"));
        assert_eq!(spans.size(&text[..14]), tokenizer.size("Parental leave"));
        assert_eq!(spans.size(&text[14..14]), 0);
    }

    /// The whole chunker, both sizings, on a Markdown and a plain document (kept small: the
    /// reference sizing is slow in a debug build; `lore-bench ingest --compare-chunking`
    /// compares whole corpora).
    #[test]
    fn cached_sizing_chunks_like_the_tokenizer() {
        let tokenizer = sizing_tokenizer();
        let config = ChunkingConfig::default();
        let cached = Chunker::new(tokenizer.clone(), &config).unwrap();
        let reference = Chunker::with_sizing(tokenizer, &config, Sizing::Tokenizer).unwrap();
        let context = ChunkContext { doc_id: "d", title: "t", lang: Lang::En };
        let documents = sample_documents();
        let plain = documents.last().expect("sample documents").1.chars().take(12_000).collect::<String>();
        let architecture = std::fs::read_to_string(workspace_file("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        for (markdown, text) in [(true, architecture), (false, plain)] {
            let document = LoadedDocument {
                format: if markdown { crate::loaders::Format::Markdown } else { crate::loaders::Format::Text },
                title: None,
                meta: Default::default(),
                markdown,
                sections: vec![crate::loaders::Section { page: None, text }],
            };
            let (a, b) = (cached.chunk(&context, &document), reference.chunk(&context, &document));
            assert!(a.len() > 3, "{} chunks (markdown: {markdown})", a.len());
            let key = |c: &Chunk| (c.char_start, c.text.clone(), c.heading_path.clone());
            assert_eq!(
                a.iter().map(key).collect::<Vec<_>>(),
                b.iter().map(key).collect::<Vec<_>>(),
                "markdown: {markdown}"
            );
        }
    }

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
