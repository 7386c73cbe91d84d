//! Checks on uploaded files before they are queued: a safe file name, a supported type, and
//! content that matches the type it claims; and the staging of a file for the worker, shared by
//! uploads, replacements and connector syncs.

use lore_core::acl::Acl;
use lore_core::jobs::{Job, NewJob};

use crate::state::AppState;

/// A file to queue for the worker: its collection, document and path, its bytes, and what the
/// job records (ACL, metadata, title, fingerprint, who queued it).
pub struct ToStage<'a> {
    pub collection: &'a str,
    pub document_id: &'a str,
    pub path: &'a str,
    pub bytes: &'a [u8],
    pub acl: Option<&'a Acl>,
    pub metadata: &'a serde_json::Value,
    pub title: Option<&'a str>,
    pub fingerprint: &'a str,
    pub created_by: &'a str,
}

/// Writes the file where the worker will find it (`<data>/uploads/<id>/<file name>`) and
/// queues its job.
pub async fn stage_and_enqueue(state: &AppState, file: ToStage<'_>) -> Result<Job, lore_core::Error> {
    let staging = state.config.data_dir.join("uploads").join(lore_core::db::new_id("up"));
    let file_name = file.path.rsplit('/').next().unwrap_or(file.path);
    let staged = staging.join(file_name);
    tokio::fs::create_dir_all(&staging).await.map_err(|e| lore_core::Error::io(&staging, e))?;
    tokio::fs::write(&staged, file.bytes).await.map_err(|e| lore_core::Error::io(&staged, e))?;
    let job = state.jobs.enqueue(NewJob {
        collection: file.collection,
        document_id: file.document_id,
        filename: file.path,
        content_sha256: file.fingerprint,
        staged_path: &staged,
        acl: file.acl,
        metadata: file.metadata,
        title: file.title,
        created_by: file.created_by,
    })?;
    state.job_queued.notify_one();
    Ok(job)
}

/// Stops what a cancelled job still holds: the worker's parser child if it is running it
/// now, else its staged file (the worker removes the staging of the job it runs).
pub fn cancel_job_work(state: &AppState, job: &Job) {
    if !state.interrupt_job(&job.id)
        && let Some(folder) = job.staged_path.parent()
    {
        let _ = std::fs::remove_dir_all(folder);
    }
}

/// Longest file name kept (in characters, extension included).
const MAX_NAME_CHARS: usize = 120;

/// A safe document name from a client-supplied file name: the last path component only
/// (both `/` and `\` separate), control and reserved characters replaced, no leading dots,
/// whitespace collapsed, at most 120 characters with the extension kept.
pub fn sanitize_filename(raw: &str) -> Result<String, String> {
    let name = clean_component(raw.rsplit(['/', '\\']).next().unwrap_or_default());
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => (stem.trim().to_owned(), ext.to_ascii_lowercase()),
        _ => return Err(format!("file name {raw:?} has no extension; supported: {}", SUPPORTED.join(", "))),
    };
    if !SUPPORTED.contains(&ext.as_str()) {
        return Err(format!("unsupported file type .{ext}; supported: {}", SUPPORTED.join(", ")));
    }
    let keep = MAX_NAME_CHARS.saturating_sub(ext.len() + 1);
    let stem: String = stem.chars().take(keep).collect();
    Ok(format!("{}.{ext}", stem.trim_end()))
}

/// A safe path inside a collection (`team/handbook/leave.md`): folders cleaned like file
/// names, `.` and `..` and empty parts dropped, at most 8 levels; the last part is a file name.
pub fn sanitize_path(raw: &str) -> Result<String, String> {
    let parts: Vec<&str> = raw.split(['/', '\\']).filter(|p| !p.trim().is_empty() && *p != "." && *p != "..").collect();
    let Some((file, folders)) = parts.split_last() else { return Err(format!("empty path {raw:?}")) };
    if folders.len() > 8 {
        return Err(format!("path {raw:?} is nested more than 8 folders deep"));
    }
    let mut out: Vec<String> = folders
        .iter()
        .map(|folder| clean_component(folder).chars().take(MAX_NAME_CHARS).collect::<String>())
        .filter(|folder| !folder.is_empty())
        .collect();
    out.push(sanitize_filename(file)?);
    Ok(out.join("/"))
}

/// One path component made safe: invisible format characters (bidi overrides, zero-width
/// characters) dropped, control and reserved characters replaced by `_`, whitespace collapsed
/// to single spaces, no leading dots or surrounding spaces.
fn clean_component(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.chars().filter(|c| !is_format_char(*c)) {
        let c = if c.is_control() || "<>:\"|?*".contains(c) { '_' } else { c };
        if c.is_whitespace() {
            if !name.ends_with(' ') {
                name.push(' ');
            }
        } else {
            name.push(c);
        }
    }
    name.trim().trim_start_matches('.').trim().to_owned()
}

/// Unicode's format characters (general category Cf, as of Unicode 16): invisible, and some
/// (the bidi overrides, embeddings and isolates) reorder the text around them, so a name such
/// as `invoice\u{202E}fdp.md` would show on screen as `invoicedm.pdf`.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// The extensions an upload may have (also given to the full page by `/app-config.json`).
pub const SUPPORTED: [&str; 9] = ["md", "markdown", "mdx", "txt", "text", "html", "htm", "pdf", "docx"];

fn is_supported(ext: &str) -> bool {
    SUPPORTED.contains(&ext)
}

/// Whether the bytes are what the extension (and the declared content type, when it is a
/// specific one) say. Rejects e.g. an executable renamed to `.pdf` or a PDF sent as `.md`.
pub fn check_content(filename: &str, declared: Option<&str>, bytes: &[u8]) -> Result<(), String> {
    let ext = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if !is_supported(&ext) {
        return Err(format!("unsupported file type .{ext}"));
    }
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let head = &bytes[..bytes.len().min(1024)];
    let is_pdf = head.windows(5).any(|w| w == b"%PDF-");
    let is_zip = bytes.starts_with(b"PK\x03\x04");
    let sniffed = match ext.as_str() {
        "pdf" if is_pdf => "application/pdf",
        "pdf" => return Err("the file is named .pdf but is not a PDF (no %PDF- header)".into()),
        "docx" if is_zip => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx" => return Err("the file is named .docx but is not a DOCX (not a ZIP container)".into()),
        _ if is_pdf || is_zip || bytes[..bytes.len().min(8192)].contains(&0) => {
            return Err(format!("the file is named .{ext} but holds binary content"));
        }
        "html" | "htm" => "text/html",
        "md" | "markdown" | "mdx" => "text/markdown",
        _ => "text/plain",
    };
    if let Some(declared) = declared.map(|d| d.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()) {
        let generic = declared.is_empty() || declared == "application/octet-stream" || declared.starts_with("text/");
        let textual = sniffed.starts_with("text/");
        if !(generic && (textual || declared == "application/octet-stream" || declared.is_empty()))
            && declared != sniffed
        {
            return Err(format!("declared content type {declared} does not match the file's content ({sniffed})"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_sanitised() {
        assert_eq!(sanitize_filename("../../etc/passwd.md").unwrap(), "passwd.md");
        assert_eq!(sanitize_filename("C:\\Users\\me\\Leave Policy.PDF").unwrap(), "Leave Policy.pdf");
        assert_eq!(sanitize_filename("..hidden.txt").unwrap(), "hidden.txt");
        assert_eq!(sanitize_filename("a\u{0}b\nc  d<>.md").unwrap(), "a_b_c d__.md");
        assert_eq!(sanitize_filename("Política de vacaciones.docx").unwrap(), "Política de vacaciones.docx");
        let long = format!("{}.md", "x".repeat(500));
        assert_eq!(sanitize_filename(&long).unwrap().chars().count(), MAX_NAME_CHARS);
        for bad in ["noext", "run.exe", ".md", "../", "x.", ""] {
            assert!(sanitize_filename(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn format_and_bidi_controls_are_dropped() {
        // "invoice\u{202e}fdp.md" shows as "invoicedm.pdf" with the override kept.
        assert_eq!(sanitize_filename("invoice\u{202E}fdp.md").unwrap(), "invoicefdp.md");
        assert_eq!(sanitize_filename("\u{FEFF}re\u{200B}port\u{200F}.txt").unwrap(), "report.txt");
        assert_eq!(sanitize_filename("a\u{2066}b\u{2069}\u{061C}c\u{2060}d\u{00AD}.md").unwrap(), "abcd.md");
        assert_eq!(sanitize_filename("tag\u{E0041}s\u{1D173}.md").unwrap(), "tags.md");
        // A name made only of controls and dots is no name.
        assert!(sanitize_filename("\u{202E}.md").is_err());
        assert_eq!(sanitize_path("team\u{202D}/\u{200E}handbook/x.md").unwrap(), "team/handbook/x.md");
        // Every character of the controlled ranges is dropped.
        for c in ['\u{061C}', '\u{200B}', '\u{200F}', '\u{202A}', '\u{2064}', '\u{2066}', '\u{2069}', '\u{FEFF}'] {
            assert_eq!(clean_component(&format!("a{c}b")), "ab", "U+{:04X}", c as u32);
        }
        // Letters of right-to-left scripts stay.
        assert_eq!(sanitize_filename("سياسة الإجازات.md").unwrap(), "سياسة الإجازات.md");
    }

    #[test]
    fn paths_stay_inside_the_collection() {
        assert_eq!(sanitize_path("team/handbook/leave.md").unwrap(), "team/handbook/leave.md");
        assert_eq!(sanitize_path("../../../etc/cron.d/x.md").unwrap(), "etc/cron.d/x.md");
        assert_eq!(sanitize_path("/abs//./.hidden/a.txt").unwrap(), "abs/hidden/a.txt");
        assert_eq!(sanitize_path("..\\..\\win\\a.md").unwrap(), "win/a.md");
        assert!(sanitize_path("a/b/").is_err(), "a folder is not a file");
        assert!(sanitize_path("../..").is_err());
    }

    #[test]
    fn content_must_match_the_type() {
        assert!(check_content("a.pdf", Some("application/pdf"), b"%PDF-1.7\n...").is_ok());
        assert!(check_content("a.pdf", None, b"MZ\x90\x00 not a pdf").is_err());
        assert!(check_content("a.md", None, b"%PDF-1.7 binary").is_err());
        assert!(check_content("a.txt", None, b"hello\x00world").is_err());
        assert!(check_content("a.docx", None, b"PK\x03\x04...").is_ok());
        assert!(check_content("a.docx", None, b"<html>").is_err());
        assert!(check_content("a.md", Some("text/markdown; charset=utf-8"), b"# Hi").is_ok());
        assert!(check_content("a.md", Some("application/octet-stream"), b"# Hi").is_ok());
        assert!(check_content("a.md", Some("application/pdf"), b"# Hi").is_err());
        assert!(check_content("a.md", None, b"").is_err());
    }
}
