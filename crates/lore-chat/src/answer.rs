//! Answers from retrieved passages: citations, the extractive answer used when no model is
//! configured (or all providers fail), and abstention when nothing relevant was found.

use std::collections::HashSet;

use lore_core::lang::Lang;
use serde::Serialize;

use crate::retrieval::Passage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// Written by a language model from the cited passages.
    Generated,
    /// Sentences copied from the passages, each with its citation (no model used).
    Extracted,
    /// The knowledge base has nothing relevant the caller may read.
    NoAnswer,
}

/// What a numbered marker `[n]` in the answer points at. Only passages that were in the
/// context can be cited.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Citation {
    pub marker: usize,
    pub document_id: String,
    pub title: String,
    /// `source/path` of the document.
    pub source_path: String,
    pub page: Option<u32>,
    pub heading: Option<String>,
    pub snippet: String,
    pub score: f32,
    pub chunk_id: String,
}

impl Citation {
    pub fn from_passage(marker: usize, passage: &Passage) -> Self {
        let snippet: String = passage.chunk.text.chars().take(280).collect();
        Citation {
            marker,
            document_id: passage.document.id.clone(),
            title: passage.document.title.clone(),
            source_path: format!("{}/{}", passage.document.source, passage.document.path),
            page: passage.chunk.page,
            heading: passage.chunk.heading_path.last().cloned(),
            snippet,
            score: passage.score,
            chunk_id: passage.chunk.id.clone(),
        }
    }
}

/// The reply when the knowledge base has nothing relevant, in the question's language.
pub fn no_answer_text(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "The knowledge base does not cover this question, or not in documents you can access.",
        Lang::Es => "La base de conocimiento no trata esta pregunta, o no en documentos a los que tienes acceso.",
    }
}

pub fn extracted_label(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Extracted from the knowledge base (no language model was used):",
        Lang::Es => "Extraído de la base de conocimiento (sin usar un modelo de lenguaje):",
    }
}

const STOPWORDS: [&str; 60] = [
    "the", "and", "for", "are", "was", "with", "that", "this", "what", "which", "who", "how", "when", "where", "does",
    "can", "our", "your", "you", "have", "has", "from", "about", "into", "get", "many", "much", "there", "their",
    "should", "los", "las", "una", "uno", "del", "que", "por", "para", "con", "como", "cómo", "qué", "cuál", "cuáles",
    "cuántos", "cuántas", "cuánto", "tengo", "puedo", "hay", "son", "está", "este", "esta", "mis", "sus", "nos", "les",
    "ello", "sobre",
];

/// Content words of a text, lowercased, cut to a 5-character stem so that simple inflections
/// ("vacation"/"vacations", "teletrabajo"/"teletrabajar") match.
fn terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| {
            let long_enough = w.chars().count() >= 3 || (w.len() == 2 && w.chars().any(|c| c.is_ascii_digit()));
            long_enough && !STOPWORDS.contains(&w.as_str())
        })
        .map(|w| w.chars().take(5).collect())
        .collect()
}

/// Strips a list marker (`- `, `* `, `1. `) from the start of a line.
fn strip_list_marker(line: &str) -> Option<&str> {
    if let Some(rest) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")).or_else(|| line.strip_prefix("+ "))
    {
        return Some(rest.trim_start_matches("[ ] ").trim_start_matches("[x] "));
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && line[digits..].starts_with(". ") { Some(&line[digits + 2..]) } else { None }
}

/// Paragraphs and list items of Markdown-ish text, with hard-wrapped lines joined and
/// headings, code fences and table rules left out.
fn blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_code = false;
    let flush = |current: &mut String, blocks: &mut Vec<String>| {
        if !current.trim().is_empty() {
            blocks.push(current.trim().to_owned());
        }
        current.clear();
    };
    for raw in text.lines() {
        let line = raw.trim();
        if line.starts_with("```") {
            in_code = !in_code;
            flush(&mut current, &mut blocks);
            continue;
        }
        if in_code
            || line.is_empty()
            || line.starts_with('#')
            || line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
        {
            flush(&mut current, &mut blocks);
            continue;
        }
        if line.starts_with('|') {
            // A table row stands alone: it is one record.
            flush(&mut current, &mut blocks);
            current.push_str(line);
            flush(&mut current, &mut blocks);
        } else if let Some(item) = strip_list_marker(line) {
            flush(&mut current, &mut blocks);
            current.push_str(item);
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    flush(&mut current, &mut blocks);
    blocks
}

/// Sentences of a passage (list items count as sentences).
fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in blocks(text) {
        let chars: Vec<char> = block.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            current.push(c);
            let next_starts_sentence = chars.get(i + 1).is_none_or(|n| n.is_whitespace())
                && chars.get(i + 2).is_none_or(|n| n.is_uppercase() || n.is_ascii_digit() || *n == '¿' || *n == '*');
            if matches!(c, '.' | '!' | '?') && next_starts_sentence {
                out.push(current.trim().to_owned());
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            out.push(current.trim().to_owned());
        }
    }
    // Fragments are noise, but a table row is a record even when it is mostly numbers.
    out.into_iter()
        .filter(|s| {
            let letters = s.chars().filter(|c| c.is_alphabetic()).count();
            letters >= 12 || (s.starts_with('|') && letters >= 3)
        })
        .collect()
}

/// The most relevant sentences of the passages, each followed by its citation marker, in
/// passage order. Returns the answer body and the citations it uses; both are empty when no
/// sentence shares a content word with the question (then there is nothing to extract).
pub fn extractive_answer(question: &str, passages: &[Passage], max_sentences: usize) -> (String, Vec<Citation>) {
    let query = terms(question);
    let mut scored: Vec<(f32, usize, usize, String)> = Vec::new();
    for (p, passage) in passages.iter().enumerate() {
        for (s, sentence) in sentences(&passage.chunk.text).into_iter().enumerate() {
            let sentence_terms = terms(&sentence);
            let overlap = query.intersection(&sentence_terms).count() as f32;
            if overlap == 0.0 {
                continue;
            }
            let score = overlap / (sentence_terms.len() as f32).sqrt().max(1.0) + 1.0 / (p as f32 + 2.0);
            scored.push((score, p, s, sentence));
        }
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    scored.truncate(max_sentences);
    scored.sort_by(|a, b| a.1.cmp(&b.1).then(a.2.cmp(&b.2)));
    let mut citations: Vec<Citation> = Vec::new();
    let mut lines = Vec::new();
    for (_, p, _, sentence) in scored {
        let marker = match citations.iter().find(|c| c.chunk_id == passages[p].chunk.id) {
            Some(citation) => citation.marker,
            None => {
                let marker = citations.len() + 1;
                citations.push(Citation::from_passage(marker, &passages[p]));
                marker
            }
        };
        lines.push(format!("- {sentence} [{marker}]"));
    }
    (lines.join("\n"), citations)
}

/// Keeps the citation markers `[n]` (also `[n, m]`) that point at one of `context_len`
/// passages and drops the rest, so a model cannot cite what it was not given. Returns the
/// cleaned text and the valid markers in order of first use.
pub fn validate_markers(text: &str, context_len: usize) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut used = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(']') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let inside = &after[..close];
        let numbers: Option<Vec<usize>> =
            inside.split(',').map(|n| n.trim().parse::<usize>().ok()).collect::<Option<Vec<_>>>();
        match numbers {
            Some(numbers) if !inside.trim().is_empty() => {
                let valid: Vec<usize> = numbers.into_iter().filter(|n| (1..=context_len).contains(n)).collect();
                if !valid.is_empty() {
                    for n in &valid {
                        if !used.contains(n) {
                            used.push(*n);
                        }
                    }
                    let list: Vec<String> = valid.iter().map(|n| n.to_string()).collect();
                    out.push_str(&format!("[{}]", list.join(", ")));
                } else {
                    // An invented marker: drop it and the space before it.
                    while out.ends_with(' ') {
                        out.pop();
                    }
                }
            }
            // Not a citation (e.g. a Markdown link text or a checkbox): keep as written.
            _ => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    (out, used)
}

#[cfg(test)]
mod tests {
    #[test]
    fn invented_markers_are_dropped() {
        let (text, used) = super::validate_markers("Vacation is 25 days [1]. Carry over 5 [7]. Both [2, 9] [x] ok.", 3);
        assert_eq!(text, "Vacation is 25 days [1]. Carry over 5. Both [2] [x] ok.");
        assert_eq!(used, [1, 2]);
        let (text, used) = super::validate_markers("No citations here [4]", 3);
        assert_eq!((text.as_str(), used.len()), ("No citations here", 0));
    }

    use super::*;

    #[test]
    fn sentences_skip_headings_and_fragments() {
        let text = "## Vacation\n\nEmployees get 25 days of paid vacation. Unused days\nexpire at 5 p.m. on March 31!\n- Carry over at most 5 days per year\n  to the next year\n\nOK.";
        assert_eq!(
            sentences(text),
            [
                "Employees get 25 days of paid vacation.",
                "Unused days expire at 5 p.m. on March 31!",
                "Carry over at most 5 days per year to the next year"
            ]
        );
    }

    #[test]
    fn terms_drop_stopwords_and_stem() {
        let t = terms("How many vacation days do employees get?");
        assert!(t.contains("vacat") && t.contains("days") && t.contains("emplo"));
        assert!(!t.contains("how") && !t.contains("many"));
    }
}
