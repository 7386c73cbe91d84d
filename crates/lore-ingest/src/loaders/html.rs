use scraper::{ElementRef, Html, Node, Selector};

use super::{Format, LoadedDocument, tidy};
use crate::error::FileErrorKind;
use crate::source::DocumentMeta;

const SKIPPED: [&str; 12] =
    ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg", "iframe", "button"];

/// The main text of an HTML page, with headings kept as Markdown headings so the chunker
/// can follow them. Boilerplate (navigation, header, footer, scripts) is dropped.
pub fn load(text: &str) -> Result<LoadedDocument, FileErrorKind> {
    let page = Html::parse_document(text);
    let select = |css: &str| Selector::parse(css).expect("static selector");
    let root = ["main", "article", "[role=main]", "body"]
        .iter()
        .find_map(|css| page.select(&select(css)).next())
        .unwrap_or_else(|| page.root_element());
    let mut out = String::new();
    walk(root, &mut out);
    let body = tidy(&out.replace('\u{a0}', " "));
    let title = page
        .select(&select("title"))
        .next()
        .map(|t| t.text().collect::<String>().trim().to_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| page.select(&select("h1")).next().map(|h| h.text().collect::<String>().trim().to_owned()));
    Ok(LoadedDocument::single(Format::Html, title, DocumentMeta::default(), true, body))
}

fn walk(element: ElementRef<'_>, out: &mut String) {
    for child in element.children() {
        match child.value() {
            Node::Text(text) => {
                let collapsed = collapse_whitespace(text);
                if !collapsed.trim().is_empty() || (!out.ends_with(char::is_whitespace) && !collapsed.is_empty()) {
                    out.push_str(&collapsed);
                }
            }
            Node::Element(el) => {
                let name = el.name();
                if SKIPPED.contains(&name) {
                    continue;
                }
                let Some(child_el) = ElementRef::wrap(child) else { continue };
                match name {
                    "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                        let level = name[1..].parse::<usize>().unwrap_or(1);
                        let heading = collapse_whitespace(&child_el.text().collect::<String>()).trim().to_owned();
                        out.push_str(&format!("\n\n{} {heading}\n\n", "#".repeat(level)));
                    }
                    "pre" => {
                        out.push_str("\n\n```\n");
                        out.push_str(child_el.text().collect::<String>().trim_end());
                        out.push_str("\n```\n\n");
                    }
                    "br" => out.push('\n'),
                    "li" => {
                        out.push_str("\n- ");
                        walk(child_el, out);
                    }
                    "td" | "th" => {
                        walk(child_el, out);
                        out.push_str(" | ");
                    }
                    "p" | "div" | "section" | "ul" | "ol" | "table" | "tr" | "blockquote" | "dl" | "dt" | "dd" => {
                        out.push_str("\n\n");
                        walk(child_el, out);
                        out.push_str("\n\n");
                    }
                    _ => walk(child_el, out),
                }
            }
            _ => {}
        }
    }
}

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        if c.is_whitespace() && c != '\u{a0}' {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}
