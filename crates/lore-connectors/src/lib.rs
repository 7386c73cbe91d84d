//! Connectors (issue 19): each reads one kind of source — a web site, a help centre, a wiki —
//! and reports what changed since the last sync as [`Change`]s, each item with the principals
//! the source lets read it. A connector never writes anything: the ingest side turns upserts into
//! documents and deletions into removals, and keeps the [`SyncState`] a connector hands back for
//! the next sync.
//!
//! Incremental sync: a connector remembers, per item, the version it last reported (an ETag, a
//! modified time, or a hash of the content) in [`SyncState::items`], plus an opaque cursor
//! when the source has one (an incremental export's `start_time`, a delta link). An item whose
//! version did not change is not reported again; an item no longer in the source is reported as
//! [`Change::Delete`]; a renamed item is a delete of its old path and an upsert of its new one.
//!
//! Errors: a malformed item or a failed download of one item is an [`ItemError`] in the batch
//! and the sync goes on; a source that cannot be listed at all is a [`ConnectorError`].
//! Throttling (429, 503 with `Retry-After`) is waited out by [`http::Http`].

pub mod confluence;
pub mod connector;
pub mod git;
pub mod http;

pub use connector::{Connector, ConnectorConfig};
pub mod sharepoint;
pub mod web;
pub mod zendesk;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One document as a source has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// Stable across syncs and renames where the source allows (an article id, a page id, a URL).
    pub id: String,
    /// The document's path inside its collection, with an extension the loaders know
    /// (`.html`, `.md`, `.txt`, `.pdf`, `.docx`): e.g. `help/en-us/1234-reset-your-password.html`.
    pub path: String,
    pub title: Option<String>,
    pub content: Vec<u8>,
    /// The source's version of this content (ETag, updated-at, or a content hash).
    pub version: String,
    /// Who may read it, as Lore principals (`everyone`, `group:<name>`, `user:<name>`); `None`
    /// when the source says nothing, and the source config's default ACL applies.
    pub acl: Option<Vec<String>>,
    /// Where a reader can open it.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Upsert(Item),
    Delete { id: String, path: String },
}

/// What a connector remembers between syncs; stored by the caller as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// The source's own cursor, when it has one.
    pub cursor: Option<String>,
    /// Every item reported and not deleted since, by id.
    pub items: BTreeMap<String, ItemState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemState {
    pub path: String,
    pub version: String,
    /// The ACL last reported, so a permission change alone is a change.
    pub acl: Option<Vec<String>>,
}

/// One item that could not be read; the others still sync.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemError {
    /// The item's id, URL or path: whatever names it best.
    pub item: String,
    pub message: String,
}

/// The outcome of one sync.
#[derive(Debug, Default)]
pub struct SyncBatch {
    pub changes: Vec<Change>,
    pub errors: Vec<ItemError>,
    /// To pass to the next sync.
    pub state: SyncState,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{source_name}: {message}")]
    Source { source_name: String, message: String },
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

/// What every connector's sync does with the items it listed: compares them with `previous`
/// and returns the changes and the new state. Items are matched by id; a new version, a new
/// path or a new ACL is an upsert (a new path also deletes the old one); ids missing from
/// `current` are deletions. Connectors that list everything each time call this; those with a
/// source cursor build their changes themselves.
pub fn diff(previous: &SyncState, current: Vec<Item>, cursor: Option<String>) -> (Vec<Change>, SyncState) {
    let mut changes = Vec::new();
    let mut state = SyncState { cursor, items: BTreeMap::new() };
    for item in current {
        let known = previous.items.get(&item.id);
        if let Some(known) = known
            && known.path != item.path
        {
            changes.push(Change::Delete { id: item.id.clone(), path: known.path.clone() });
        }
        let unchanged = known.is_some_and(|k| k.path == item.path && k.version == item.version && k.acl == item.acl);
        state.items.insert(
            item.id.clone(),
            ItemState { path: item.path.clone(), version: item.version.clone(), acl: item.acl.clone() },
        );
        if !unchanged {
            changes.push(Change::Upsert(item));
        }
    }
    for (id, known) in &previous.items {
        if !state.items.contains_key(id) {
            changes.push(Change::Delete { id: id.clone(), path: known.path.clone() });
        }
    }
    (changes, state)
}

/// Text as HTML text or attribute content: connectors wrap a source's title and body in a small
/// HTML document for the HTML loader.
pub(crate) fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A path segment from a title: lower case, ASCII letters and digits, dashes (at most 80).
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 80 {
            break;
        }
    }
    out.trim_end_matches('-').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, path: &str, version: &str, acl: Option<&[&str]>) -> Item {
        Item {
            id: id.into(),
            path: path.into(),
            title: None,
            content: b"text".to_vec(),
            version: version.into(),
            acl: acl.map(|a| a.iter().map(|p| p.to_string()).collect()),
            url: None,
        }
    }

    #[test]
    fn diff_reports_new_changed_renamed_reacled_and_deleted_items_once() {
        let (first, state) = diff(
            &SyncState::default(),
            vec![item("1", "a.md", "v1", None), item("2", "b.md", "v1", None), item("3", "c.md", "v1", None)],
            None,
        );
        assert_eq!(first.len(), 3);
        let (second, next) = diff(
            &state,
            vec![
                item("1", "a.md", "v1", None),
                item("2", "b2.md", "v1", None),
                item("4", "d.md", "v1", Some(&["group:hr"])),
            ],
            Some("c2".into()),
        );
        assert_eq!(
            second,
            vec![
                Change::Delete { id: "2".into(), path: "b.md".into() },
                Change::Upsert(item("2", "b2.md", "v1", None)),
                Change::Upsert(item("4", "d.md", "v1", Some(&["group:hr"]))),
                Change::Delete { id: "3".into(), path: "c.md".into() },
            ]
        );
        assert_eq!(next.cursor.as_deref(), Some("c2"));
        let (third, _) = diff(
            &next,
            vec![
                item("1", "a.md", "v1", Some(&["group:hr"])),
                item("2", "b2.md", "v2", None),
                item("4", "d.md", "v1", Some(&["group:hr"])),
            ],
            None,
        );
        assert_eq!(third.len(), 2, "a new ACL and a new version are changes; nothing else: {third:?}");
    }

    #[test]
    fn slugs_are_path_safe() {
        assert_eq!(slug("Reset your password (SSO)!"), "reset-your-password-sso");
        assert_eq!(slug("¿Cómo pido vacaciones?"), "c-mo-pido-vacaciones");
    }
}
