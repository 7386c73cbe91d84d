//! A document's title, chosen with sense: the title a document declares (PDF metadata, core
//! properties, `<title>`) only when it reads like a title, otherwise the heading its first page
//! opens with, then the file name. Every chunk carries its document's title into both indexes
//! (the embedded text and BM25's title field), so a question that names the document — the
//! agency, the plan, the year — finds chunks deep inside it that only say "the Department".

use std::path::Path;

/// Whether a declared title reads like a title and not like an identifier or a file name
/// ("DOL2022", "0000320193-23-000106", "Microsoft Word - doc1.docx", "Untitled").
pub fn looks_like_title(title: &str) -> bool {
    let t = title.trim();
    let lower = t.to_lowercase();
    let letters = t.chars().filter(|c| c.is_alphabetic()).count();
    if letters < 3 || t.chars().count() > 200 {
        return false;
    }
    const TOOL_PREFIXES: [&str; 4] = ["microsoft word - ", "microsoft powerpoint - ", "microsoft excel - ", "untitled"];
    if TOOL_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return false;
    }
    const EXTENSIONS: [&str; 12] =
        [".pdf", ".doc", ".docx", ".txt", ".rtf", ".odt", ".ppt", ".pptx", ".xls", ".xlsx", ".htm", ".html"];
    if EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
        return false;
    }
    let placeholder = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_whitespace());
    if ["document", "doc", "title", "presentation", "slide", "page", "file", "new document"].contains(&placeholder) {
        return false;
    }
    // One token holding digits or separators is an identifier, not a title.
    let one_token = !t.contains(char::is_whitespace);
    !(one_token && t.chars().any(|c| c.is_ascii_digit() || matches!(c, '_' | '-' | '.')))
}

/// The heading a text opens with: its first short lines, up to the first line that reads like
/// a sentence (long, or ending with a full stop), at most 16 words in all.
pub fn opening_heading(text: &str) -> Option<String> {
    let mut words: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = line.trim_start_matches('#').trim();
        let line_words: Vec<&str> = line.split_whitespace().collect();
        let sentence = line_words.len() > 10 || line.ends_with('.') || line.ends_with(':');
        if sentence || words.len() + line_words.len() > 16 {
            break;
        }
        words.extend(line_words);
    }
    let heading = words.join(" ");
    looks_like_heading(&heading).then_some(heading)
}

fn looks_like_heading(text: &str) -> bool {
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    let digits = text.chars().filter(|c| c.is_ascii_digit()).count();
    // A page number, a date line or a lone word is no heading.
    letters >= 6 && letters > digits && text.split_whitespace().count() >= 2 && looks_like_title(text)
}

/// The file name without its extension, separators as spaces ("Northwind_Health_Plus.pdf" →
/// "Northwind Health Plus").
pub fn from_file_name(path: &Path) -> String {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let spaced: String = stem.chars().map(|c| if matches!(c, '_' | '-' | '.' | '+') { ' ' } else { c }).collect();
    let joined = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() { stem.into_owned() } else { joined }
}

/// The title of a document: the declared one if it reads like a title, else the heading the
/// first page opens with (for formats without headings of their own), else the file name.
pub fn choose(declared: Option<&str>, first_page: Option<&str>, path: &Path) -> String {
    if let Some(title) = declared.map(str::trim).filter(|t| looks_like_title(t)) {
        return title.to_owned();
    }
    first_page.and_then(opening_heading).unwrap_or_else(|| from_file_name(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_tool_names_are_not_titles() {
        for bad in
            ["DOL2022", "0000320193-23-000106", "Microsoft Word - doc1.docx", "Untitled", "Document1", "q3.pdf", "ab"]
        {
            assert!(!looks_like_title(bad), "{bad}");
        }
        for good in
            ["Employee Handbook", "Salary Bands — United States (2024)", "Handbook", "FY 2022-2026 EPA Strategic Plan"]
        {
            assert!(looks_like_title(good), "{good}");
        }
    }

    #[test]
    fn the_first_page_heading_stops_at_the_first_sentence() {
        let page = "U.S. DEPARTMENT OF LABOR FY 2022 – 2026 Strategic Plan\nThis Strategic Plan meets the requirements of the Government Performance Results Act and more.\n";
        assert_eq!(opening_heading(page).as_deref(), Some("U.S. DEPARTMENT OF LABOR FY 2022 – 2026 Strategic Plan"));
        assert_eq!(
            opening_heading("Zava\nNorthwind Health Plus Plan\n\nContoso Electronics\n").as_deref(),
            Some("Zava Northwind Health Plus Plan Contoso Electronics")
        );
        assert_eq!(opening_heading("12\nThe plan covers you."), None);
    }

    #[test]
    fn titles_fall_back_from_metadata_to_heading_to_file_name() {
        let path = Path::new("reports/DOL2022.pdf");
        let page = "U.S. DEPARTMENT OF LABOR FY 2022 – 2026 Strategic Plan\nThis plan meets the requirements of the act, which is long enough.";
        assert_eq!(choose(Some("DOL2022"), Some(page), path), "U.S. DEPARTMENT OF LABOR FY 2022 – 2026 Strategic Plan");
        assert_eq!(choose(Some("Labor Strategic Plan"), Some(page), path), "Labor Strategic Plan");
        assert_eq!(
            choose(None, Some("7"), Path::new("x/Northwind_Health_Plus_Benefits.pdf")),
            "Northwind Health Plus Benefits"
        );
    }
}
