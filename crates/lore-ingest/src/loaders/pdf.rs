use pdf_extract::content::{Content, Operation};
use pdf_extract::{Document, Object, PlainTextOutput, output_doc_page};

use unicode_normalization::UnicodeNormalization;

use super::{Format, Limits, LoadedDocument, Section, tidy};
use crate::error::FileErrorKind;
use crate::source::DocumentMeta;

fn corrupt(detail: impl ToString) -> FileErrorKind {
    FileErrorKind::Corrupt { format: "pdf".into(), detail: detail.to_string() }
}

/// PDF text by page, through `pdf-extract`.
///
/// `pdf-extract` 0.12 ignores the `'` and `"` text operators (move to the next line, then
/// show text), so PDFs that use them (anything rewritten by Ghostscript) lose every line
/// but the first of each text block. Before extraction each page's content stream is
/// rewritten into the equivalent `T*` + `Tj` (and `Tw`/`Tc` for `"`) sequence.
pub fn load(bytes: &[u8], limits: &Limits) -> Result<LoadedDocument, FileErrorKind> {
    let mut doc = Document::load_mem(bytes).map_err(|e| {
        let message = e.to_string();
        if is_password_error(&message) { FileErrorKind::Encrypted } else { corrupt(message) }
    })?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(FileErrorKind::Encrypted);
    }
    let pages = doc.get_pages();
    if pages.is_empty() {
        return Err(corrupt("no pages"));
    }
    if pages.len() > limits.max_pdf_pages {
        return Err(FileErrorKind::TooManyPages { pages: pages.len(), limit: limits.max_pdf_pages });
    }
    for &page_id in pages.values() {
        rewrite_next_line_operators(&mut doc, page_id);
    }
    let mut sections = Vec::with_capacity(pages.len());
    for &number in pages.keys() {
        let mut text = String::new();
        {
            let mut output = PlainTextOutput::new(&mut text);
            output_doc_page(&doc, &mut output, number).map_err(|e| corrupt(format!("page {number}: {e}")))?;
        }
        let text = reorder_right_to_left_lines(&fold_presentation_forms(&text));
        sections.push(Section { page: Some(number), text: tidy(&text) });
    }
    Ok(LoadedDocument {
        format: Format::Pdf,
        title: info_title(&doc),
        meta: DocumentMeta::default(),
        markdown: false,
        sections,
    })
}

/// Folds presentation forms (ligatures such as "ﬁ", Arabic contextual glyphs) back to the
/// letters a reader types in a query. Only those blocks: NFKC on everything would also
/// rewrite CJK compatibility ideographs, which measurably lost words on Japanese PDFs.
fn fold_presentation_forms(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c as u32, 0xFB00..=0xFDFF | 0xFE70..=0xFEFF) {
            out.extend(c.to_string().nfkc());
        } else {
            out.push(c);
        }
    }
    out
}

fn is_right_to_left(c: char) -> bool {
    matches!(c as u32, 0x0590..=0x08FF | 0xFB1D..=0xFDFF | 0xFE70..=0xFEFF)
}

/// `pdf-extract` emits glyphs in drawing order, which for right-to-left scripts (Arabic,
/// Hebrew) is visual order: every word comes out reversed. A line dominated by RTL letters is
/// reversed back into reading order; left-to-right words inside it (names, numbers, URLs)
/// are then turned the right way round again.
fn reorder_right_to_left_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let rtl = body.chars().filter(|&c| is_right_to_left(c)).count();
        let ltr = body.chars().filter(|c| c.is_alphabetic() && !is_right_to_left(*c)).count();
        if rtl == 0 || rtl <= ltr {
            out.push_str(line);
            continue;
        }
        // Reverse the line, then turn each run of non-RTL, non-space characters (Latin words,
        // digits) back into its own left-to-right order. Such a run drawn flush against RTL
        // letters (numbers often are) gets a space, so both stay separate words.
        let mut run: Vec<char> = Vec::new();
        let mut previous_rtl = false;
        for c in body.chars().rev() {
            if c.is_whitespace() || is_right_to_left(c) {
                let had_run = !run.is_empty();
                let run_alphanumeric = run.iter().any(|c| c.is_alphanumeric());
                out.extend(run.drain(..).rev());
                if had_run && run_alphanumeric && is_right_to_left(c) && c.is_alphabetic() {
                    out.push(' ');
                }
                out.push(c);
                previous_rtl = is_right_to_left(c) && c.is_alphabetic();
            } else {
                if run.is_empty() && previous_rtl && c.is_alphanumeric() {
                    out.push(' ');
                }
                run.push(c);
                previous_rtl = false;
            }
        }
        out.extend(run.drain(..).rev());
        out.push_str(newline);
    }
    out
}

fn is_password_error(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("password") || lower.contains("decrypt") || lower.contains("encrypt")
}

fn rewrite_next_line_operators(doc: &mut Document, page_id: pdf_extract::ObjectId) {
    let Ok(raw) = doc.get_page_content(page_id) else { return };
    if !raw.contains(&b'\'') && !raw.contains(&b'"') {
        return;
    }
    let Ok(content) = Content::decode(&raw) else { return };
    if !content.operations.iter().any(|op| op.operator == "'" || op.operator == "\"") {
        return;
    }
    let mut operations = Vec::with_capacity(content.operations.len() + 8);
    for op in content.operations {
        match (op.operator.as_str(), op.operands.as_slice()) {
            ("'", [text]) => {
                operations.push(Operation::new("T*", vec![]));
                operations.push(Operation::new("Tj", vec![text.clone()]));
            }
            ("\"", [word_spacing, char_spacing, text]) => {
                operations.push(Operation::new("Tw", vec![word_spacing.clone()]));
                operations.push(Operation::new("Tc", vec![char_spacing.clone()]));
                operations.push(Operation::new("T*", vec![]));
                operations.push(Operation::new("Tj", vec![text.clone()]));
            }
            _ => operations.push(op),
        }
    }
    if let Ok(encoded) = (Content { operations }).encode() {
        let _ = doc.change_page_content(page_id, encoded);
    }
}

fn info_title(doc: &Document) -> Option<String> {
    let info = doc.trailer.get(b"Info").ok()?;
    let dict = match info {
        Object::Reference(id) => doc.get_dictionary(*id).ok()?,
        Object::Dictionary(dict) => dict,
        _ => return None,
    };
    let title = dict.get(b"Title").ok()?;
    let text = match title {
        Object::String(bytes, _) => decode_pdf_string(bytes),
        _ => return None,
    };
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// PDF text strings are UTF-16BE with a BOM or PDFDocEncoding (≈ Latin-1 for titles).
fn decode_pdf_string(bytes: &[u8]) -> String {
    if let Some(utf16) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = utf16.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        String::from_utf16_lossy(&units)
    } else {
        bytes.iter().map(|&b| b as char).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_to_left_lines_are_put_in_reading_order() {
        let visual = format!("1947 {}", "ولد في".chars().rev().collect::<String>());
        assert_eq!(reorder_right_to_left_lines(&visual), "ولد في 1947");
        let glued = format!("1947{}", "ولد".chars().rev().collect::<String>());
        assert_eq!(reorder_right_to_left_lines(&glued), "ولد 1947");
        // "اختراعاً مهماً Hart" as drawn: glyphs left to right, so the Arabic comes out
        // reversed while the Latin name keeps its own order.
        let visual = format!("Hart {}", "اختراعاً مهماً".chars().rev().collect::<String>());
        assert_eq!(reorder_right_to_left_lines(&visual), "اختراعاً مهماً Hart");
        assert_eq!(reorder_right_to_left_lines("plain English line\n"), "plain English line\n");
    }
}
