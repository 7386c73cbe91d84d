use lore_ingest::FileErrorKind;
use lore_ingest::loaders::{Format, load};

use crate::support::fixture;

fn load_fixture(name: &str) -> Result<lore_ingest::loaders::LoadedDocument, FileErrorKind> {
    let path = fixture(name);
    load(&path, &std::fs::read(&path).unwrap())
}

fn all_text(doc: &lore_ingest::loaders::LoadedDocument) -> String {
    doc.sections.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join("\n")
}

#[test]
fn markdown_reads_front_matter_and_body() {
    let doc = load_fixture("sample.md").unwrap();
    assert_eq!(doc.format, Format::Markdown);
    assert_eq!(doc.title.as_deref(), Some("Loader Fixture Markdown"));
    assert_eq!(doc.meta.acl, Some(vec!["group:engineering".to_owned(), "group:hr".to_owned()]));
    let text = all_text(&doc);
    for needle in ["The tangerine submarine surfaces at dawn near the harbor.", "velvet compass", "quartz-pelican-42"] {
        assert!(text.contains(needle), "missing {needle:?}");
    }
    assert!(!text.contains("acl:"), "front matter leaked into the body");
}

#[test]
fn plain_text_is_read() {
    let text = all_text(&load_fixture("sample.txt").unwrap());
    assert!(text.contains("The periwinkle lighthouse blinks twice every minute."));
    assert!(text.contains("saltwater harmonica"));
}

#[test]
fn html_keeps_main_text_and_headings_and_drops_boilerplate() {
    let doc = load_fixture("sample.html").unwrap();
    assert_eq!(doc.title.as_deref(), Some("Loader Fixture HTML"));
    let text = all_text(&doc);
    for needle in [
        "The saffron zeppelin docks at the north tower.",
        "Café & lounge on deck two serves cardamom tea.",
        "copper lantern",
        "willow bridge",
        "zeppelin --dock north-tower",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    for banned in ["SCRIPT_SHOULD_NOT_APPEAR", "style-should-not-appear", "NOSCRIPT_SHOULD_NOT_APPEAR", "Contact IT"] {
        assert!(!text.contains(banned), "boilerplate {banned:?} extracted");
    }
    assert!(text.lines().any(|l| l.starts_with('#')), "headings were not kept");
}

#[test]
fn docx_reads_paragraphs_headings_and_tables() {
    let doc = load_fixture("sample.docx").unwrap();
    assert_eq!(doc.title.as_deref(), Some("Loader Fixture DOCX"));
    let text = all_text(&doc);
    for needle in ["The cobalt gondola crosses the glacier at noon.", "Falcon", "Osprey", "Coasts", "amber trombone"] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    assert!(text.contains("# Cobalt gondola"), "heading level 1 missing: {text}");
    assert!(text.contains("## Closing"), "heading level 2 missing: {text}");
    let words: Vec<&str> = text.split_whitespace().collect();
    for word in ["Tab", "separated", "line", "break"] {
        assert!(words.contains(&word), "{word:?} not a separate word in {text}");
    }
}

#[test]
fn pdf_quote_operators_keep_every_line_on_its_page() {
    let doc = load_fixture("quote-operator.pdf").unwrap();
    assert_eq!(doc.sections.len(), 2);
    let expected = [
        (1, &["aardvark", "bumblebee", "cormorant", "dromedary", "echidna", "flamingo"][..]),
        (2, &["gazelle", "hedgehog", "iguana", "jackal", "(parentheses)", "kingfisher"][..]),
    ];
    for (page, words) in expected {
        let section = &doc.sections[page - 1];
        assert_eq!(section.page, Some(page as u32));
        for word in words {
            assert!(section.text.contains(word), "page {page} lacks {word:?}: {:?}", section.text);
        }
    }
}

#[test]
fn bad_files_get_a_named_reason() {
    assert_eq!(load_fixture("encrypted.pdf").unwrap_err(), FileErrorKind::Encrypted);
    assert!(
        matches!(load_fixture("corrupt.pdf").unwrap_err(), FileErrorKind::Corrupt { format, .. } if format == "pdf")
    );
    assert_eq!(load_fixture("empty.md").unwrap_err(), FileErrorKind::Empty);
    assert_eq!(load_fixture("binary.md").unwrap_err(), FileErrorKind::Binary);
    let err = load(std::path::Path::new("diagram.png"), b"\x89PNG").unwrap_err();
    assert_eq!(err, FileErrorKind::UnknownType("png".into()));
    let err = load(std::path::Path::new("broken.docx"), b"PK\x03\x04 not really a zip").unwrap_err();
    assert!(matches!(&err, FileErrorKind::Corrupt { format, .. } if format == "docx"), "{err:?}");
    let err = load(std::path::Path::new("truncated.pdf"), b"%PDF-1.7\n1 0 obj << /Type /Catalog").unwrap_err();
    assert!(matches!(&err, FileErrorKind::Corrupt { format, .. } if format == "pdf"), "{err:?}");
}

/// A DOCX whose `word/document.xml` is `xml`, deflated.
fn docx_with(xml: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(xml).unwrap();
    zip.finish().unwrap().into_inner()
}

#[test]
fn docx_archives_are_read_within_size_and_ratio_limits() {
    use lore_ingest::loaders::{Limits, load_format};
    let paragraph = b"<w:p><w:r><w:t>aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa</w:t></w:r></w:p>";
    let mut xml = b"<w:document><w:body>".to_vec();
    for _ in 0..(4 << 20) / paragraph.len() {
        xml.extend_from_slice(paragraph);
    }
    xml.extend_from_slice(b"</w:body></w:document>");
    let bomb = docx_with(&xml);
    let limits = Limits { max_pdf_pages: 10, max_entry_bytes: 64 << 20, max_compression_ratio: 100 };
    let err = load_format(Format::Docx, &bomb, &limits).unwrap_err();
    assert!(
        matches!(&err, FileErrorKind::CompressionRatio { entry, limit: 100, .. } if entry == "word/document.xml"),
        "{err:?}"
    );
    assert!(err.to_string().contains("word/document.xml") && err.to_string().contains("100:1"), "{err}");

    let small = Limits { max_entry_bytes: 1 << 20, max_compression_ratio: 10_000, ..limits };
    let err = load_format(Format::Docx, &bomb, &small).unwrap_err();
    assert!(matches!(&err, FileErrorKind::EntryTooLarge { limit_mib: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("word/document.xml decompresses to more than 1 MiB"), "{err}");

    let generous = Limits { max_entry_bytes: 64 << 20, max_compression_ratio: 10_000, ..limits };
    assert!(load_format(Format::Docx, &bomb, &generous).is_ok(), "within the limits it loads");
}
