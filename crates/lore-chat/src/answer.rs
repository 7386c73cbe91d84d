//! Answers from retrieved passages: citations, the extractive answer used when no model is
//! configured (or all providers fail), and abstention when nothing relevant was found.

use lore_core::lang::Lang;
use serde::{Deserialize, Serialize};

use crate::answerability::Evidence;
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
    /// A use policy prohibits the question: its message instead of an answer.
    Refused,
    /// A knowledge manager's verified answer to a question close to this one (no model used).
    Verified,
}

/// What a numbered marker `[n]` in the answer points at. Only passages that were in the
/// context can be cited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// What the answer prompt tells a model to reply, alone, when the passages do not answer the
/// question (one marker for every language, so no phrase has to be matched).
pub const NOT_COVERED: &str = "NOT_COVERED";

/// The marker, trimmed of whitespace, quotes, emphasis and final punctuation.
fn marker_core(text: &str) -> &str {
    text.trim().trim_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '*' | '.' | '!'))
}

/// Whether a model's reply says that the passages do not answer the question.
pub fn is_not_covered(text: &str) -> bool {
    marker_core(text).eq_ignore_ascii_case(NOT_COVERED)
}

/// Whether the start of a streamed reply may still turn out to be the marker.
pub fn may_be_not_covered(head: &str) -> bool {
    let core = marker_core(head);
    core.len() <= NOT_COVERED.len() && NOT_COVERED.get(..core.len()).is_some_and(|p| p.eq_ignore_ascii_case(core))
        || is_not_covered(head)
}

pub fn extracted_label(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "Extracted from the knowledge base (no language model was used):",
        Lang::Es => "Extraído de la base de conocimiento (sin usar un modelo de lenguaje):",
    }
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

/// The cells of a Markdown table row.
fn cells(row: &str) -> Vec<String> {
    row.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect()
}

fn is_table_rule(line: &str) -> bool {
    line.contains('-') && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// Paragraphs, list items, table rows and code blocks of Markdown-ish text, with hard-wrapped
/// lines joined and headings left out. Records (rows, code) start with `| `.
fn blocks(text: &str) -> Vec<String> {
    let mut blocks: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_code = false;
    // The last paragraph, when it ends with a colon: the lead-in of the list after it.
    let mut lead_in: Option<String> = None;
    let mut in_list = false;
    let mut header: Option<Vec<String>> = None;
    let mut code: Vec<&str> = Vec::new();
    let raw_lines: Vec<&str> = text.lines().collect();
    let lines: Vec<&str> = raw_lines.iter().map(|l| l.trim()).collect();
    let flush = |current: &mut String, blocks: &mut Vec<String>| {
        if !current.trim().is_empty() {
            blocks.push(current.trim().to_owned());
        }
        current.clear();
    };
    for (i, &line) in lines.iter().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
            flush(&mut current, &mut blocks);
            if !in_code && !code.is_empty() {
                // A code block (commands, a config excerpt) is one record, each line in backticks.
                let lines: Vec<String> = code.drain(..).map(|l| format!("`{l}`")).collect();
                blocks.push(format!("| {}", lines.join(" ")));
            }
            continue;
        }
        if in_code {
            if !line.is_empty() {
                code.push(line);
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') || is_table_rule(line) {
            if !in_list && !current.is_empty() {
                lead_in = current.trim().ends_with(':').then(|| current.trim().to_owned());
            }
            flush(&mut current, &mut blocks);
            if line.starts_with('#') {
                lead_in = None;
            }
            if !line.starts_with('|') && !is_table_rule(line) {
                header = None;
            }
            continue;
        }
        if line.starts_with('|') {
            flush(&mut current, &mut blocks);
            in_list = false;
            let row = cells(line);
            if lines.get(i + 1).is_some_and(|next| is_table_rule(next)) {
                // A header row: it labels the rows below and is no record itself.
                header = Some(row);
                continue;
            }
            let record = match &header {
                Some(names) if names.len() == row.len() => names
                    .iter()
                    .zip(&row)
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(name, value)| if name.is_empty() { value.clone() } else { format!("{name}: {value}") })
                    .collect::<Vec<_>>()
                    .join("; "),
                _ => row.into_iter().filter(|c| !c.is_empty()).collect::<Vec<_>>().join(" | "),
            };
            blocks.push(format!("| {record}"));
            continue;
        }
        header = None;
        if let Some(item) = strip_list_marker(line) {
            if !in_list && !current.is_empty() {
                lead_in = current.trim().ends_with(':').then(|| current.trim().to_owned());
            }
            flush(&mut current, &mut blocks);
            in_list = true;
            if let Some(lead) = lead_in.as_ref().filter(|l| l.chars().count() <= 120) {
                current.push_str(lead);
                current.push(' ');
            }
            current.push_str(item);
        } else {
            // An indented line continues the list item above it; anything else ends the list.
            if in_list && !raw_lines[i].starts_with([' ', '\t']) {
                flush(&mut current, &mut blocks);
                in_list = false;
                lead_in = None;
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    flush(&mut current, &mut blocks);
    blocks
}

/// Whether a sentence can state an answer: fragments, lead-ins (their items carry them),
/// questions (headings of FAQ-style documents) and running headers in capitals cannot.
fn reads_as_statement(sentence: &str) -> bool {
    let letters = sentence.chars().filter(|c| c.is_alphabetic()).count();
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let shouting = words
        .iter()
        .filter(|w| {
            let letters: Vec<char> = w.chars().filter(|c| c.is_alphabetic()).collect();
            letters.len() >= 2 && letters.iter().all(|c| c.is_uppercase())
        })
        .count();
    let fragment = letters < 12;
    let lead_in_or_question = sentence.ends_with(':') || sentence.ends_with('?');
    let running_header = shouting >= 3 && shouting * 10 >= words.len() * 3;
    !(fragment || lead_in_or_question || running_header)
}

/// Sentences, list items, table rows and code blocks of a passage, each with the context it
/// needs to read on its own: a table row carries its header (`Header: value; …`), a list item
/// the lead-in that introduces the list when that ends with a colon.
pub fn units(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for block in blocks(text) {
        if let Some(record) = block.strip_prefix("| ") {
            // A table row or code block is a record even when it is mostly numbers.
            if record.chars().filter(|c| c.is_alphabetic()).count() >= 3 {
                out.push(record.to_owned());
            }
            continue;
        }
        let chars: Vec<char> = block.chars().collect();
        let mut current = String::new();
        let mut pieces = Vec::new();
        for (i, &c) in chars.iter().enumerate() {
            current.push(c);
            let next_starts_sentence = chars.get(i + 1).is_none_or(|n| n.is_whitespace())
                && chars.get(i + 2).is_none_or(|n| n.is_uppercase() || n.is_ascii_digit() || *n == '¿' || *n == '*');
            if matches!(c, '.' | '!' | '?') && next_starts_sentence {
                pieces.push(current.trim().to_owned());
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            pieces.push(current.trim().to_owned());
        }
        out.extend(pieces.into_iter().filter(|s| reads_as_statement(s)));
    }
    out
}

/// The extractive answer: the sentences that answer the question on their own (see
/// [`Evidence::answering_sentences`]), most answerable first, each followed by the marker of
/// its passage. Returns the answer body and the citations it uses; both are empty when no
/// sentence passes the bar.
pub fn extractive_answer(evidence: &Evidence, passages: &[Passage], max_sentences: usize) -> (String, Vec<Citation>) {
    let mut citations: Vec<Citation> = Vec::new();
    let mut lines = Vec::new();
    for sentence in evidence.answering_sentences(max_sentences) {
        let passage = &passages[sentence.passage];
        let marker = match citations.iter().find(|c| c.chunk_id == passage.chunk.id) {
            Some(citation) => citation.marker,
            None => {
                let marker = citations.len() + 1;
                citations.push(Citation::from_passage(marker, passage));
                marker
            }
        };
        lines.push(format!("- {} [{marker}]", sentence.text));
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
        let text = "## Vacation\n\nEmployees get 25 days of paid vacation. Unused days\nexpire at 5 p.m. on March 31!\n- Carry over at most 5 days per year\n  to the next year\n\nOK. How many days do I get?\n\nBALANCE BILLING PROTECTION HOW PROVIDERS AFFECT YOUR COSTS";
        assert_eq!(
            units(text),
            [
                "Employees get 25 days of paid vacation.",
                "Unused days expire at 5 p.m. on March 31!",
                "Carry over at most 5 days per year to the next year"
            ]
        );
    }

    #[test]
    fn table_rows_keep_their_header_and_list_items_their_lead_in() {
        let text = "Bands by level:\n\n| Level | Minimum | Maximum |\n|---|---|---|\n| Engineer I (L1) | $95,000 | $120,000 |\n\nTo request leave:\n- Submit the form in Workday.\n- Tell your manager two weeks ahead.\n\nThat is all there is to it.";
        assert_eq!(
            units(text),
            [
                "Level: Engineer I (L1); Minimum: $95,000; Maximum: $120,000",
                "To request leave: Submit the form in Workday.",
                "To request leave: Tell your manager two weeks ahead.",
                "That is all there is to it."
            ]
        );
        assert_eq!(
            units("Roll back with:\n\n```\nacmectl deploy rollback --service checkout\nacmectl deploy status\n```\n"),
            ["`acmectl deploy rollback --service checkout` `acmectl deploy status`"]
        );
    }
}
