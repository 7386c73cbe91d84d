use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{Format, LoadedDocument, tidy};
use crate::error::FileErrorKind;
use crate::source::DocumentMeta;

fn corrupt(detail: impl ToString) -> FileErrorKind {
    FileErrorKind::Corrupt { format: "docx", detail: detail.to_string() }
}

/// Word documents: paragraphs in order, `Heading N` styles as Markdown headings, table
/// cells separated by ` | `, the title from the core properties or the `Title` style.
pub fn load(bytes: &[u8]) -> Result<LoadedDocument, FileErrorKind> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    let document = read_entry(&mut archive, "word/document.xml")?.ok_or_else(|| corrupt("no word/document.xml"))?;
    let core_title = read_entry(&mut archive, "docProps/core.xml")?.and_then(|xml| element_text(&xml, b"dc:title"));
    let (body, style_title) = paragraphs(&document)?;
    let title = core_title.filter(|t| !t.trim().is_empty()).or(style_title);
    Ok(LoadedDocument::single(Format::Docx, title, DocumentMeta::default(), true, tidy(&body)))
}

fn read_entry(archive: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Option<String>, FileErrorKind> {
    let mut entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(corrupt(e)),
    };
    let mut text = String::new();
    entry.read_to_string(&mut text).map_err(corrupt)?;
    Ok(Some(text))
}

fn resolve_entity(name: &[u8]) -> Option<char> {
    match name {
        b"amp" => Some('&'),
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        _ => {
            let name = std::str::from_utf8(name).ok()?.strip_prefix('#')?;
            let code = match name.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => name.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

fn paragraphs(xml: &str) -> Result<(String, Option<String>), FileErrorKind> {
    let mut reader = Reader::from_str(xml);
    let mut out = String::new();
    let mut paragraph = String::new();
    let mut style: Option<String> = None;
    let mut in_text = false;
    let mut title = None;
    loop {
        match reader.read_event().map_err(corrupt)? {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"w:pStyle" => {
                if let Ok(Some(val)) = e.try_get_attribute("w:val") {
                    style = Some(String::from_utf8_lossy(&val.value).into_owned());
                }
            }
            Event::Start(e) if e.name().as_ref() == b"w:t" => in_text = true,
            Event::End(e) if e.name().as_ref() == b"w:t" => in_text = false,
            Event::Empty(e) | Event::Start(e) if matches!(e.name().as_ref(), b"w:tab") => paragraph.push('\t'),
            Event::Empty(e) | Event::Start(e) if matches!(e.name().as_ref(), b"w:br" | b"w:cr") => paragraph.push('\n'),
            Event::Text(t) if in_text => paragraph.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) if in_text => {
                if let Some(c) = resolve_entity(&r) {
                    paragraph.push(c);
                }
            }
            Event::End(e) if e.name().as_ref() == b"w:p" => {
                let text = paragraph.trim();
                let level = style.as_deref().and_then(heading_level);
                match (style.as_deref(), level) {
                    _ if text.is_empty() => {}
                    (Some("Title"), _) => {
                        title.get_or_insert_with(|| text.to_owned());
                        out.push_str(&format!("# {text}\n\n"));
                    }
                    (_, Some(level)) => out.push_str(&format!("{} {text}\n\n", "#".repeat(level + 1))),
                    _ => {
                        out.push_str(text);
                        out.push_str("\n\n");
                    }
                }
                paragraph.clear();
                style = None;
            }
            Event::End(e) if e.name().as_ref() == b"w:tc" => {
                // Cell paragraphs end with a blank line; join cells on one row instead.
                while out.ends_with('\n') {
                    out.pop();
                }
                out.push_str(" | ");
            }
            Event::End(e) if e.name().as_ref() == b"w:tr" => out.push_str("\n\n"),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok((out, title))
}

/// `Heading1` → 1 (also `heading 1` as some writers spell it).
fn heading_level(style: &str) -> Option<usize> {
    let lower = style.to_ascii_lowercase().replace(' ', "");
    lower.strip_prefix("heading")?.parse::<usize>().ok().filter(|l| (1..=6).contains(l))
}

fn element_text(xml: &str, name: &[u8]) -> Option<String> {
    let mut reader = Reader::from_str(xml);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) if e.name().as_ref() == name => inside = true,
            Event::End(e) if e.name().as_ref() == name => return Some(text.trim().to_owned()),
            Event::Text(t) if inside => text.push_str(&String::from_utf8_lossy(&t)),
            Event::GeneralRef(r) if inside => text.extend(resolve_entity(&r)),
            Event::Eof => return None,
            _ => {}
        }
    }
}
