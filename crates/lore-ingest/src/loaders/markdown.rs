use super::{Format, LoadedDocument};
use crate::error::FileErrorKind;
use crate::source::DocumentMeta;

/// Markdown with optional YAML front matter (`title`, `lang`, `acl`; other keys ignored).
pub fn load(text: &str) -> Result<LoadedDocument, FileErrorKind> {
    let (meta, body) = split_front_matter(text)?;
    let title = meta.title.clone().or_else(|| first_heading(body));
    Ok(LoadedDocument::single(Format::Markdown, title, meta, true, body.trim().to_owned()))
}

fn split_front_matter(text: &str) -> Result<(DocumentMeta, &str), FileErrorKind> {
    let Some(rest) = text.strip_prefix("---\n").or_else(|| text.strip_prefix("---\r\n")) else {
        return Ok((DocumentMeta::default(), text));
    };
    let Some(end) = rest.find("\n---").filter(|&i| {
        let after = &rest[i + 4..];
        after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n")
    }) else {
        return Ok((DocumentMeta::default(), text));
    };
    let yaml = &rest[..end];
    let body = rest[end + 4..].trim_start_matches(['\r', '\n']);
    if yaml.trim().is_empty() {
        return Ok((DocumentMeta::default(), body));
    }
    let value: serde_norway::Value =
        serde_norway::from_str(yaml).map_err(|e| FileErrorKind::InvalidMetadata(format!("front matter: {e}")))?;
    let meta = DocumentMeta {
        title: value.get("title").and_then(scalar_string),
        lang: value.get("lang").or_else(|| value.get("language")).and_then(scalar_string),
        acl: match value.get("acl") {
            None => None,
            Some(serde_norway::Value::Sequence(items)) => Some(
                items
                    .iter()
                    .map(|v| {
                        scalar_string(v).ok_or_else(|| FileErrorKind::InvalidAcl("acl entries must be strings".into()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(v) => Some(vec![
                scalar_string(v).ok_or_else(|| FileErrorKind::InvalidAcl("acl must be a string or a list".into()))?,
            ]),
        },
    };
    Ok((meta, body))
}

fn scalar_string(value: &serde_norway::Value) -> Option<String> {
    match value {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        serde_norway::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn first_heading(body: &str) -> Option<String> {
    body.lines().find_map(|line| line.strip_prefix("# ")).map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_front_matter_and_strips_it() {
        let doc = load("---\ntitle: Leave\nacl: [\"group:hr\"]\nupdated: 2024-01-15\n---\n# Heading\n\nBody text.\n")
            .unwrap();
        assert_eq!(doc.title.as_deref(), Some("Leave"));
        assert_eq!(doc.meta.acl, Some(vec!["group:hr".to_owned()]));
        assert!(doc.sections[0].text.starts_with("# Heading"));
    }

    #[test]
    fn title_falls_back_to_first_heading() {
        let doc = load("Intro\n\n# The Title\n\ntext").unwrap();
        assert_eq!(doc.title.as_deref(), Some("The Title"));
    }

    #[test]
    fn broken_front_matter_is_an_error() {
        assert!(matches!(load("---\ntitle: [unclosed\n---\nbody"), Err(FileErrorKind::InvalidMetadata(_))));
    }
}
