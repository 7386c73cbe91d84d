use std::io::{Cursor, Read};

use quick_xml::Reader;
use quick_xml::events::Event;

use super::{Format, Limits, LoadedDocument, tidy};
use crate::error::FileErrorKind;
use crate::source::DocumentMeta;

fn corrupt(detail: impl ToString) -> FileErrorKind {
    FileErrorKind::Corrupt { format: "docx".into(), detail: detail.to_string() }
}

/// Word documents: paragraphs in order, `Heading N` styles as Markdown headings, table
/// cells separated by ` | `, the title from the core properties or the `Title` style.
pub fn load(bytes: &[u8], limits: &Limits) -> Result<LoadedDocument, FileErrorKind> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    let document =
        read_entry(&mut archive, "word/document.xml", limits)?.ok_or_else(|| corrupt("no word/document.xml"))?;
    let core_title =
        read_entry(&mut archive, "docProps/core.xml", limits)?.and_then(|xml| element_text(&xml, b"dc:title"));
    let (body, style_title) = paragraphs(&document)?;
    let title = core_title.filter(|t| !t.trim().is_empty()).or(style_title);
    Ok(LoadedDocument::single(Format::Docx, title, DocumentMeta::default(), true, tidy(&body)))
}

/// Entries up to this size may compress any amount (tiny XML parts often compress 100:1).
const RATIO_EXEMPT_BYTES: u64 = 1024 * 1024;

/// One archive entry as text, never decompressing more than the limits allow: the declared
/// size is checked first, then the bytes actually read (a zip can lie about its sizes).
fn read_entry(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limits: &Limits,
) -> Result<Option<String>, FileErrorKind> {
    let entry = match archive.by_name(name) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(corrupt(e)),
    };
    let too_large = || FileErrorKind::EntryTooLarge {
        entry: name.to_owned(),
        limit_mib: limits.max_entry_bytes.div_ceil(1024 * 1024),
    };
    let compressed = entry.compressed_size().max(1);
    let check_ratio = |size: u64| {
        let ratio = size / compressed;
        if size > RATIO_EXEMPT_BYTES && ratio > limits.max_compression_ratio {
            Err(FileErrorKind::CompressionRatio { entry: name.to_owned(), ratio, limit: limits.max_compression_ratio })
        } else {
            Ok(())
        }
    };
    if entry.size() > limits.max_entry_bytes {
        return Err(too_large());
    }
    check_ratio(entry.size())?;
    let mut bytes = Vec::new();
    entry.take(limits.max_entry_bytes + 1).read_to_end(&mut bytes).map_err(corrupt)?;
    if bytes.len() as u64 > limits.max_entry_bytes {
        return Err(too_large());
    }
    check_ratio(bytes.len() as u64)?;
    String::from_utf8(bytes).map(Some).map_err(|_| corrupt(format!("{name} is not UTF-8")))
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
