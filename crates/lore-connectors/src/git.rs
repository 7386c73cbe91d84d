//! A Git repository: the documents on one branch, such as a handbook kept as Markdown next to
//! code. A repository is the rare source with an exact change log, so after the first sync only
//! the files that changed between the commit synced last (the cursor) and the branch's new tip
//! are read.
//!
//! The `git` command-line tool does the work, not a Git library: libgit2 or gitoxide would add
//! minutes to every CI build, and every machine that serves a repository has `git` anyway. It
//! runs with no shell in between (a file name from the repository is only ever read from git's
//! output, and blobs are read by id, so no path is ever an argument), without prompts, and with
//! a branch that was checked before it reaches a refspec.
//!
//! The repository is mirrored into a bare `cache_dir` holding that one branch. Git tracks
//! content, not identity, so an item's id is its path and a rename is a delete and an upsert;
//! an item's version is its blob id. Git has no per-file permissions: every item's ACL is `None`
//! and the source's default ACL applies.
//!
//! When the cursor commit is gone from the mirror (the cache was lost, or history was rewritten
//! and garbage-collected) or is no longer an ancestor of the tip (a force-push), the whole tree
//! is listed and compared with the state instead; only changed blobs are read in either case.
//!
//! Not covered: Git LFS (a file stored in LFS comes through as its pointer text), submodules and
//! symbolic links (skipped), more than one branch per source, and tags.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::{Change, ConnectorError, Item, ItemError, ItemState, SyncBatch, SyncState};

const SOURCE: &str = "git";

/// The extensions Lore's loaders read (`lore-ingest`'s `Format::from_path`); a configured
/// extension outside this list would produce items no loader can open.
const LOADABLE: [&str; 9] = ["md", "markdown", "mdx", "txt", "text", "html", "htm", "pdf", "docx"];

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// Anything `git fetch` can reach: a local path, `file://`, `https://`, or SSH
    /// (`git@host:org/docs.git`). Credentials come from the machine's own Git and SSH setup.
    pub url: String,
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Directory prefixes to include (`["handbook", "policies/hr"]`); empty means the whole tree.
    #[serde(default)]
    pub paths: Vec<String>,
    /// File name endings to include, matched without regard to case.
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// Where the bare mirror is kept, e.g. `<data>/connectors/<name>.git`. Losing it costs one
    /// full fetch and listing, not a re-ingest: unchanged blobs are still recognised by id.
    #[serde(default)]
    pub cache_dir: PathBuf,
    /// Where a reader opens a file, with `{branch}`, `{commit}` and `{path}` (percent-encoded)
    /// filled in: `https://git.example.com/docs/blob/{branch}/{path}`.
    #[serde(default)]
    pub web_url: Option<String>,
}

fn default_branch() -> String {
    "main".to_owned()
}

fn default_extensions() -> Vec<String> {
    [".md", ".markdown", ".txt", ".html", ".pdf", ".docx"].map(String::from).to_vec()
}

pub struct GitConnector {
    config: GitConfig,
}

impl GitConnector {
    pub fn new(config: GitConfig) -> Self {
        GitConnector { config }
    }

    /// One incremental sync from `previous` (`SyncState::default()` the first time).
    ///
    /// A blob that cannot be read is an [`ItemError`]; the item keeps its previous state and the
    /// cursor stays where it was, so the next sync looks at the same commits again and retries
    /// it, while the items that did sync are not reported twice (they are compared by blob id).
    pub async fn sync(&self, previous: &SyncState) -> Result<SyncBatch, ConnectorError> {
        let config = self.config.clone();
        let previous = previous.clone();
        tokio::task::spawn_blocking(move || sync_blocking(&config, &previous))
            .await
            .map_err(|error| source_error(format!("the sync task failed: {error}")))?
    }
}

/// What one file looks like at the new tip: its blob id, or `None` when it is gone or no
/// longer included.
type Touched = BTreeMap<String, Option<String>>;

fn sync_blocking(config: &GitConfig, previous: &SyncState) -> Result<SyncBatch, ConnectorError> {
    let filter = Filter::new(config)?;
    let git = Git { dir: config.cache_dir.clone() };
    git.mirror(&config.url, &config.branch)?;
    let tip = git.stdout_text([
        "rev-parse",
        "--verify",
        "--end-of-options",
        &format!("refs/heads/{}^{{commit}}", config.branch),
    ])?;
    if previous.cursor.as_deref() == Some(tip.as_str()) {
        return Ok(SyncBatch { changes: Vec::new(), errors: Vec::new(), state: previous.clone() });
    }

    let mut errors = Vec::new();
    let mut unread = false;
    let touched = match previous.cursor.as_deref().filter(|old| git.is_ancestor(old, &tip)) {
        Some(old) => git.changed_between(old, &tip, &filter, &mut errors)?,
        None => {
            let mut touched = git.list(&tip, &filter, &mut errors)?;
            for path in previous.items.keys() {
                touched.entry(path.clone()).or_insert(None);
            }
            touched
        }
    };

    let mut changes = Vec::new();
    let mut state = SyncState { cursor: None, items: previous.items.clone() };
    for (path, blob) in touched {
        let known = previous.items.get(&path);
        match blob {
            None => {
                if let Some(known) = known {
                    changes.push(Change::Delete { id: path.clone(), path: known.path.clone() });
                    state.items.remove(&path);
                }
            }
            Some(blob) if known.is_some_and(|known| known.version == blob) => {}
            Some(blob) => match git.stdout(["cat-file", "blob", &blob]) {
                Ok(content) => {
                    state
                        .items
                        .insert(path.clone(), ItemState { path: path.clone(), version: blob.clone(), acl: None });
                    let url = config.web_url.as_ref().map(|template| {
                        template
                            .replace("{branch}", &config.branch)
                            .replace("{commit}", &tip)
                            .replace("{path}", &percent_encode_path(&path))
                    });
                    // No title: the document states its own (a Markdown heading, an HTML
                    // `<title>`), and the loaders find it; a file name is a poorer one.
                    changes.push(Change::Upsert(Item {
                        id: path.clone(),
                        path,
                        title: None,
                        content,
                        version: blob,
                        acl: None,
                        url,
                    }));
                }
                Err(message) => {
                    unread = true;
                    errors.push(ItemError { item: path, message });
                }
            },
        }
    }
    // A file name that is not UTF-8 stays unusable whatever the cursor, so only a failed read
    // holds the cursor back.
    state.cursor = if unread { previous.cursor.clone() } else { Some(tip) };
    Ok(SyncBatch { changes, errors, state })
}

/// Which repository paths become items.
struct Filter {
    prefixes: Vec<String>,
    extensions: Vec<String>,
}

impl Filter {
    fn new(config: &GitConfig) -> Result<Filter, ConnectorError> {
        let mut extensions = Vec::new();
        for extension in &config.extensions {
            let extension = extension.trim_start_matches('.').to_ascii_lowercase();
            if !LOADABLE.contains(&extension.as_str()) {
                return Err(source_error(format!(
                    "extension `{extension}` is not one Lore can load (one of {})",
                    LOADABLE.join(", ")
                )));
            }
            extensions.push(format!(".{extension}"));
        }
        let prefixes = config
            .paths
            .iter()
            .map(|prefix| prefix.trim_matches('/').to_owned())
            .filter(|prefix| !prefix.is_empty())
            .collect();
        Ok(Filter { prefixes, extensions })
    }

    fn includes(&self, path: &str) -> bool {
        let lower = path.to_lowercase();
        let in_prefix = self.prefixes.is_empty()
            || self.prefixes.iter().any(|prefix| {
                path.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            });
        in_prefix && self.extensions.iter().any(|extension| lower.ends_with(extension.as_str()))
    }
}

/// The bare mirror, and every `git` invocation against it.
struct Git {
    dir: PathBuf,
}

impl Git {
    fn command(&self) -> Command {
        let mut command = Command::new("git");
        command
            .arg("--no-pager")
            .args(["-c", "core.quotepath=off", "-c", "protocol.ext.allow=never", "--git-dir"])
            .arg(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null());
        // A caller running inside a Git hook or worktree must not redirect these commands.
        for variable in ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_NAMESPACE"] {
            command.env_remove(variable);
        }
        // An SSH password or host-key prompt would hang a server sync; fail instead.
        if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
            command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        command
    }

    fn output<I, S>(&self, args: I) -> Result<Output, String>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let shown = args.clone().into_iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>();
        let output = self
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|error| format!("could not run `git {}`: {error}", shown.join(" ")))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!(
                "`git {}` failed ({}): {}",
                shown.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    fn stdout<I, S>(&self, args: I) -> Result<Vec<u8>, String>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        self.output(args).map(|output| output.stdout)
    }

    fn stdout_text<I, S>(&self, args: I) -> Result<String, ConnectorError>
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let stdout = self.stdout(args).map_err(source_error)?;
        Ok(String::from_utf8_lossy(&stdout).trim().to_owned())
    }

    /// Creates the bare mirror if needed and force-fetches the branch into it. The URL is passed
    /// on each fetch rather than stored as a remote, so a changed `url` in the config applies.
    fn mirror(&self, url: &str, branch: &str) -> Result<(), ConnectorError> {
        let reference = format!("refs/heads/{branch}");
        let valid = Command::new("git")
            .args(["check-ref-format", &reference])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !valid.is_ok_and(|status| status.success()) {
            return Err(source_error(format!("`{branch}` is not a valid branch name")));
        }
        if !self.dir.join("HEAD").is_file() {
            std::fs::create_dir_all(&self.dir).map_err(|error| {
                source_error(format!("could not create the cache directory {}: {error}", self.dir.display()))
            })?;
            self.output(["init", "--bare", "--quiet"]).map_err(source_error)?;
        }
        let refspec = format!("+{reference}:{reference}");
        let output = self
            .command()
            .args(["fetch", "--quiet", "--force", "--no-tags", "--no-write-fetch-head", "--", url, &refspec])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|error| source_error(format!("could not run git: {error}")))?;
        if !output.status.success() {
            return Err(source_error(format!(
                "`git fetch {} {refspec}` failed ({}): {}",
                without_credentials(url),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(())
    }

    /// Whether `old` is still in the mirror and the tip descends from it. The cursor comes from
    /// stored state, so it is used only if it looks like an object id.
    fn is_ancestor(&self, old: &str, tip: &str) -> bool {
        let looks_like_id = matches!(old.len(), 40 | 64) && old.bytes().all(|b| b.is_ascii_hexdigit());
        looks_like_id && self.output(["merge-base", "--is-ancestor", old, tip]).is_ok()
    }

    /// Every included file at `commit`, from `git ls-tree -r -z --full-tree`.
    fn list(&self, commit: &str, filter: &Filter, errors: &mut Vec<ItemError>) -> Result<Touched, ConnectorError> {
        let listing = self.stdout(["ls-tree", "-r", "-z", "--full-tree", commit]).map_err(source_error)?;
        let mut touched = Touched::new();
        for record in listing.split(|&b| b == 0).filter(|record| !record.is_empty()) {
            let (meta, path) = split_once(record, b'\t').ok_or_else(|| source_error("unexpected ls-tree output"))?;
            let mut fields = meta.split(|&b| b == b' ');
            let (Some(mode), Some(_kind), Some(blob)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(source_error("unexpected ls-tree output"));
            };
            if !is_regular_file(mode) {
                continue;
            }
            match std::str::from_utf8(path) {
                Ok(path) if filter.includes(path) => {
                    touched.insert(path.to_owned(), Some(String::from_utf8_lossy(blob).into_owned()));
                }
                Ok(_) => {}
                Err(_) => errors.push(not_utf8(path)),
            }
        }
        Ok(touched)
    }

    /// The included files that differ between two commits, from `git diff-tree -r -z -M --raw`
    /// (plumbing, so a user's diff settings cannot change its output). Renames and copies come
    /// as an old and a new path; a file that became a symbolic link or submodule counts as gone.
    fn changed_between(
        &self,
        old: &str,
        new: &str,
        filter: &Filter,
        errors: &mut Vec<ItemError>,
    ) -> Result<Touched, ConnectorError> {
        let raw =
            self.stdout(["diff-tree", "-r", "-z", "-M", "--raw", "--no-abbrev", old, new]).map_err(source_error)?;
        let malformed = || source_error("unexpected diff-tree output");
        let mut fields = raw.split(|&b| b == 0);
        let mut touched = Touched::new();
        while let Some(meta) = fields.next() {
            if meta.is_empty() {
                continue;
            }
            // `:<old mode> <new mode> <old blob> <new blob> <status>[score]`
            let meta = std::str::from_utf8(meta.strip_prefix(b":").ok_or_else(malformed)?).map_err(|_| malformed())?;
            let parts: Vec<&str> = meta.split(' ').collect();
            let [_, new_mode, _, new_blob, status] = parts[..] else { return Err(malformed()) };
            let first = fields.next().ok_or_else(malformed)?;
            let (old_path, new_path) = match status.as_bytes().first() {
                Some(b'R') => (Some(first), fields.next().ok_or_else(malformed)?),
                Some(b'C') => (None, fields.next().ok_or_else(malformed)?),
                _ => (None, first),
            };
            if let Some(old_path) = old_path {
                match std::str::from_utf8(old_path) {
                    Ok(path) => {
                        touched.entry(path.to_owned()).or_insert(None);
                    }
                    Err(_) => errors.push(not_utf8(old_path)),
                }
            }
            let path = match std::str::from_utf8(new_path) {
                Ok(path) => path.to_owned(),
                Err(_) => {
                    errors.push(not_utf8(new_path));
                    continue;
                }
            };
            let present = status != "D" && is_regular_file(new_mode.as_bytes()) && filter.includes(&path);
            touched.insert(path, present.then(|| new_blob.to_owned()));
        }
        Ok(touched)
    }
}

/// A regular or executable file; not a symbolic link (120000) or submodule (160000).
fn is_regular_file(mode: &[u8]) -> bool {
    mode == b"100644" || mode == b"100755"
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

fn not_utf8(path: &[u8]) -> ItemError {
    ItemError { item: String::from_utf8_lossy(path).into_owned(), message: "the file name is not UTF-8".to_owned() }
}

/// Drops `user:password@` from an `http(s)://` URL so a token never lands in an error message.
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("http") => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Percent-encodes everything in a repository path but unreserved characters and `/`.
fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn source_error(message: impl Into<String>) -> ConnectorError {
    ConnectorError::Source { source_name: SOURCE.to_owned(), message: message.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(paths: &[&str], extensions: &[&str]) -> Filter {
        let config = GitConfig {
            url: String::new(),
            branch: default_branch(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            extensions: extensions.iter().map(|e| e.to_string()).collect(),
            cache_dir: PathBuf::new(),
            web_url: None,
        };
        Filter::new(&config).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn filters_by_directory_prefix_and_extension_ignoring_case() {
        let filter = filter(&["docs/", "policies/hr"], &[".md", "PDF"]);
        assert!(filter.includes("docs/a.md"));
        assert!(filter.includes("docs/deep/Handbook.MD"));
        assert!(filter.includes("policies/hr/leave.pdf"));
        assert!(!filter.includes("docsite/a.md"), "a prefix is a directory, not a string prefix");
        assert!(!filter.includes("policies/hr-old/a.md"));
        assert!(!filter.includes("docs/logo.png"));
        assert!(!filter.includes("README.md"));
    }

    #[test]
    fn rejects_extensions_no_loader_reads() {
        let config = GitConfig {
            extensions: vec![".rst".into()],
            ..serde_json::from_str(r#"{"url":"x","cache_dir":"y"}"#).unwrap()
        };
        assert!(Filter::new(&config).is_err());
    }

    #[test]
    fn paths_in_urls_are_percent_encoded_and_credentials_dropped() {
        assert_eq!(percent_encode_path("docs/guía de vacaciones.md"), "docs/gu%C3%ADa%20de%20vacaciones.md");
        assert_eq!(without_credentials("https://bot:s3cret@git.example.com/a.git"), "https://git.example.com/a.git");
        assert_eq!(without_credentials("git@git.example.com:a.git"), "git@git.example.com:a.git");
    }
}
