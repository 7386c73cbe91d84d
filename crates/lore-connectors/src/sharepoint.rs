//! SharePoint document libraries and OneDrive, through Microsoft Graph: the files of a few drives
//! that Lore's loaders read (`.pdf`, `.docx`, `.md`, `.txt`, `.html`), each with the principals
//! its sharing permissions map to.
//!
//! Sync follows Graph's delta protocol: the first sync walks `/drives/{id}/root/delta` page by page
//! (`@odata.nextLink`) to the `@odata.deltaLink`, and later syncs start from that link and see
//! only what changed. A `410 Gone` on a delta link means Graph has forgotten the token: the drive
//! is listed from scratch and compared with the previous state, so deletions come out of the
//! comparison rather than from the (lost) change feed. The delta link is sent with
//! `Prefer: deltashowsharingchanges`, which makes an item whose sharing changed show up in the
//! feed; every file the feed reports has its permissions read again.
//!
//! Paths: on OneDrive for Business and SharePoint, delta entries carry `parentReference.id` but
//! usually no `parentReference.path`, and a renamed or moved folder is reported alone, without its
//! children. So the connector keeps every folder's name and parent in its cursor
//! ([`SyncState::cursor`] is a JSON object: per drive, the delta link and the folder tree) and
//! builds paths from it when `path` is absent. When a folder is renamed, moved, deleted or its
//! sharing changes, the known files under its old path are read again one by one
//! (`GET /drives/{d}/items/{id}`, a 404 being a deletion), because the feed will not mention them.
//!
//! Item ids are `<drive id>:<item id>` (stable across renames and moves); paths are
//! `<drive name or id>/<folder path>/<file name>`. File names are kept as SharePoint has them
//! rather than slugged: they are already valid path segments, and unique within a folder only
//! as written (slugging would fold `Q1 Plan.docx` and `q1-plan.docx` into one path). The extension
//! is lower-cased for the loaders. The version is the `cTag` (which changes with the content
//! only), or the `eTag` when there is none.
//!
//! Permissions (`GET /drives/{d}/items/{id}/permissions`, inherited ones included) map to
//! principals as follows, erring towards fewer readers:
//!
//! | permission                                   | principals                                    |
//! |----------------------------------------------|-----------------------------------------------|
//! | `link.scope = "anonymous"`, no password      | `everyone`                                    |
//! | `link.scope = "organization"`                | `group:<org_group>`                           |
//! | `grantedToV2` / `grantedToIdentitiesV2` user | `user:<email>` (no email: left out)           |
//! | … group                                      | `group:<id>` or `group:<displayName>`         |
//! | … SharePoint site group                      | `group:sharepoint-<slug of its displayName>`  |
//!
//! Groups are named by their Entra object id by default (`group_names = "id"`): ids are what
//! Entra ID puts in a token's `groups` claim, they are unique, and they survive a rename, while
//! two groups may share a display name and a renamed group would silently change who can read.
//! `display_name` is for identity providers that name groups (AD-synced groups, an IdP that emits
//! names). Site groups (a site's Owners, Members, Visitors) are SharePoint's own, unknown to the
//! identity provider, so they map to a group nobody is in until an administrator provisions it:
//! a file shared only that way is hidden from Lore's readers, not leaked.
//!
//! Downloads use the item's `@microsoft.graph.downloadUrl`, which is pre-authenticated and so
//! fetched without the bearer token, or `GET /drives/{d}/items/{id}/content` when there is none.
//! The bearer token is only ever sent to the configured `graph_url` origin.
//!
//! Credentials: an access token is passed in resolved. Acquiring it (client credentials against
//! `login.microsoftonline.com`, with `Files.Read.All` or `Sites.Read.All`) and renewing it before
//! its hour runs out is the caller's job, so that the connector holds no client secret and tests
//! need no token endpoint.
//!
//! Not covered: the `path_prefix` filter is applied client side (Graph offers folder-scoped delta
//! only on personal OneDrive); password-protected and expired sharing links are not honoured as
//! grants; site users without an email are left out; OneNote notebooks and other packages are
//! skipped like any file Lore does not read.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::http::{Http, HttpError};
use crate::{Change, ConnectorError, Item, ItemError, ItemState, SyncBatch, SyncState};

const SOURCE_NAME: &str = "sharepoint";
const EXTENSIONS: [&str; 5] = ["pdf", "docx", "md", "txt", "html"];
const PREFER: &str = "deltashowremovedasdeleted, deltatraversepermissiongaps, deltashowsharingchanges";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharePointConfig {
    /// Graph's origin; another one for national clouds (`https://graph.microsoft.us`) and tests.
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    pub drives: Vec<DriveConfig>,
    /// The Lore group for "people in your organization" sharing links, e.g. `everyone-at-acme`.
    pub org_group: String,
    #[serde(default)]
    pub group_names: GroupNames,
}

fn default_graph_url() -> String {
    "https://graph.microsoft.com".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveConfig {
    /// The drive id, e.g. `b!…` for a document library.
    pub id: String,
    /// The first segment of the drive's item paths, instead of its id.
    #[serde(default)]
    pub name: Option<String>,
    /// Only files under this folder of the drive, e.g. `HR/Policies`.
    #[serde(default)]
    pub path_prefix: Option<String>,
}

/// How a Graph group becomes a Lore principal; the module header says why `id` is the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupNames {
    #[default]
    Id,
    DisplayName,
}

/// A Graph access token, resolved by the caller; never printed.
#[derive(Clone)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        AccessToken(token.into())
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

pub struct SharePointConnector {
    config: SharePointConfig,
    authorization: String,
    http: Http,
}

/// What [`SyncState::cursor`] holds, as JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    drives: BTreeMap<String, DriveCursor>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DriveCursor {
    delta_link: Option<String>,
    /// The label and prefix the paths were built with; when config changes them, the drive is
    /// listed again in full so every path is rebuilt.
    label: String,
    path_prefix: Option<String>,
    folders: BTreeMap<String, Folder>,
    /// Files that failed last time; the feed has moved past them, so they are read again.
    #[serde(default)]
    retry: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Folder {
    name: String,
    parent: Option<String>,
    #[serde(default)]
    root: bool,
}

/// The fields of a Graph `driveItem` this connector reads.
#[derive(Debug, Clone, Deserialize)]
struct DriveItem {
    id: Option<String>,
    name: Option<String>,
    file: Option<Value>,
    folder: Option<Value>,
    root: Option<Value>,
    deleted: Option<Value>,
    #[serde(rename = "parentReference")]
    parent_reference: Option<ParentReference>,
    #[serde(rename = "cTag")]
    c_tag: Option<String>,
    #[serde(rename = "eTag")]
    e_tag: Option<String>,
    #[serde(rename = "webUrl")]
    web_url: Option<String>,
    #[serde(rename = "@microsoft.graph.downloadUrl")]
    download_url: Option<String>,
    #[serde(rename = "@microsoft.graph.sharedChanged")]
    shared_changed: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct ParentReference {
    id: Option<String>,
    path: Option<String>,
}

/// The changes and state of one sync as it is built, drive by drive.
struct Run {
    changes: Vec<Change>,
    errors: Vec<ItemError>,
    items: BTreeMap<String, ItemState>,
    failed: HashSet<String>,
}

impl Run {
    fn delete(&mut self, key: &str) {
        if let Some(known) = self.items.remove(key) {
            self.changes.push(Change::Delete { id: key.to_owned(), path: known.path });
        }
    }

    fn error(&mut self, item: String, message: String) {
        tracing::warn!(source = SOURCE_NAME, item, message, "file skipped");
        self.errors.push(ItemError { item, message });
    }

    /// An error on a known file id, which keeps its previous state and is read again next sync.
    fn fail(&mut self, key: String, message: String) {
        self.failed.insert(key.clone());
        self.error(key, message);
    }
}

impl SharePointConnector {
    pub fn new(config: SharePointConfig, token: AccessToken, http: Http) -> Self {
        SharePointConnector { authorization: format!("Bearer {}", token.0), config, http }
    }

    /// One sync from `previous` (`SyncState::default()` the first time). A drive whose delta
    /// cannot be read fails the sync; a file that cannot be placed, whose permissions cannot be
    /// read or whose download fails is an [`ItemError`] and keeps its previous state, so it is
    /// neither deleted nor reported again when it recovers unchanged.
    pub async fn sync(&self, previous: &SyncState) -> Result<SyncBatch, ConnectorError> {
        let graph = self.config.graph_url.trim_end_matches('/');
        if crate::http::origin_of(graph).is_none() {
            return Err(source_error(format!("graph_url {graph} is not an http(s) URL")));
        }
        let cursor = match previous.cursor.as_deref().map(serde_json::from_str::<Cursor>) {
            None => Cursor::default(),
            Some(Ok(cursor)) => cursor,
            Some(Err(e)) => {
                tracing::warn!(source = SOURCE_NAME, error = %e, "unreadable cursor; listing every drive again");
                Cursor::default()
            }
        };
        let mut run =
            Run { changes: Vec::new(), errors: Vec::new(), items: previous.items.clone(), failed: HashSet::new() };
        let configured: HashSet<&str> = self.config.drives.iter().map(|d| d.id.as_str()).collect();
        let dropped: Vec<String> = run
            .items
            .keys()
            .filter(|key| key.split_once(':').is_none_or(|(drive, _)| !configured.contains(drive)))
            .cloned()
            .collect();
        for key in dropped {
            run.delete(&key);
        }
        let mut next = Cursor::default();
        for drive in &self.config.drives {
            if drive.id.is_empty() || drive.id.contains([':', '/', '?', '#']) {
                return Err(source_error(format!("drive id {:?} is not a Graph drive id", drive.id)));
            }
            let known = cursor.drives.get(&drive.id).cloned().unwrap_or_default();
            let drive_cursor = self.sync_drive(graph, drive, known, &mut run).await?;
            next.drives.insert(drive.id.clone(), drive_cursor);
        }
        let cursor = serde_json::to_string(&next).map_err(|e| source_error(format!("serialising the cursor: {e}")))?;
        Ok(SyncBatch {
            changes: run.changes,
            errors: run.errors,
            state: SyncState { cursor: Some(cursor), items: run.items },
        })
    }

    async fn sync_drive(
        &self,
        graph: &str,
        drive: &DriveConfig,
        mut cursor: DriveCursor,
        run: &mut Run,
    ) -> Result<DriveCursor, ConnectorError> {
        let label = drive.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| drive.id.clone());
        let prefix = drive.path_prefix.as_deref().map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        let reusable = cursor.label == label && cursor.path_prefix == prefix;
        let start = cursor.delta_link.take().filter(|_| reusable);
        let (entries, delta_link, full) = self.read_delta(graph, &drive.id, start).await?;
        if full {
            cursor.folders.clear();
        }
        let old_paths: HashMap<String, String> =
            cursor.folders.keys().filter_map(|id| Some((id.clone(), folder_path(&cursor.folders, id)?))).collect();
        let mut files: Vec<DriveItem> = Vec::new();
        let mut shared_folders = HashSet::new();
        for (index, entry) in entries.into_iter().enumerate() {
            let raw_id = entry.get("id").and_then(Value::as_str).map(str::to_owned);
            let entry: DriveItem = match serde_json::from_value(entry) {
                Ok(entry) => entry,
                Err(e) => {
                    let message = format!("not a driveItem: {e}");
                    match raw_id {
                        // Read again by id next sync, as the feed will not repeat it.
                        Some(id) => run.fail(format!("{}:{id}", drive.id), message),
                        None => run.error(format!("{}: delta entry #{}", drive.id, index + 1), message),
                    }
                    continue;
                }
            };
            let Some(id) = entry.id.clone() else {
                run.error(format!("{}: delta entry #{}", drive.id, index + 1), "the item has no id".to_owned());
                continue;
            };
            let parent = entry.parent_reference.as_ref().and_then(|p| p.id.clone());
            if entry.deleted.is_some() {
                if cursor.folders.remove(&id).is_none() {
                    files.push(entry);
                }
            } else if entry.root.is_some() {
                cursor.folders.insert(id, Folder { name: String::new(), parent: None, root: true });
            } else if entry.folder.is_some() {
                if entry.shared_changed.is_some() {
                    shared_folders.insert(id.clone());
                }
                let name = entry.name.clone().unwrap_or_default();
                cursor.folders.insert(id, Folder { name, parent, root: false });
            } else {
                files.push(entry);
            }
        }
        // A file the feed mentions more than once is as its last mention says.
        let mut last = HashMap::new();
        for (index, entry) in files.iter().enumerate() {
            last.insert(entry.id.clone().unwrap_or_default(), index);
        }
        let mut files: Vec<DriveItem> = files
            .into_iter()
            .enumerate()
            .filter(|(i, e)| last.get(e.id.as_deref().unwrap_or("")) == Some(i))
            .map(|(_, e)| e)
            .collect();
        let mut seen = HashSet::new();
        if !full {
            let stale: Vec<String> = old_paths
                .iter()
                .filter(|(id, old)| {
                    shared_folders.contains(*id) || folder_path(&cursor.folders, id).as_ref() != Some(*old)
                })
                .map(|(_, old)| old.clone())
                .collect();
            let reported: HashSet<String> = last.into_keys().collect();
            let owned = format!("{}:", drive.id);
            let mut recheck = Vec::new();
            for (key, known) in &run.items {
                let Some(item_id) = key.strip_prefix(&owned) else { continue };
                let within = known.path.strip_prefix(&format!("{label}/")).unwrap_or(&known.path).to_owned();
                if !reported.contains(item_id) && stale.iter().any(|folder| is_under(&within, folder)) {
                    recheck.push(item_id.to_owned());
                }
            }
            for item_id in &cursor.retry {
                if !reported.contains(item_id) && !recheck.contains(item_id) {
                    recheck.push(item_id.clone());
                }
            }
            for item_id in recheck {
                let url = format!("{graph}/v1.0/drives/{}/items/{}", encode(&drive.id), encode(&item_id));
                match self.get_json(&url).await {
                    Ok(value) => match serde_json::from_value::<DriveItem>(value) {
                        Ok(entry) => files.push(entry),
                        Err(e) => {
                            seen.insert(format!("{owned}{item_id}"));
                            run.fail(format!("{owned}{item_id}"), format!("not a driveItem: {e}"));
                        }
                    },
                    Err(ConnectorError::Http(e)) if e.status() == Some(404) => {
                        run.delete(&format!("{owned}{item_id}"));
                    }
                    Err(e) => run.fail(format!("{owned}{item_id}"), e.to_string()),
                }
            }
        }
        let context = DriveContext { graph, drive, label: &label, prefix: prefix.as_deref(), folders: &cursor.folders };
        for entry in files {
            self.sync_file(&context, entry, run, &mut seen).await;
        }
        let owned = format!("{}:", drive.id);
        if full {
            // A file that failed (a malformed entry included) was listed, so it is no deletion.
            let gone: Vec<String> = run
                .items
                .keys()
                .filter(|key| key.starts_with(&owned) && !seen.contains(*key) && !run.failed.contains(*key))
                .cloned()
                .collect();
            for key in gone {
                run.delete(&key);
            }
        }
        cursor.retry = run.failed.iter().filter_map(|key| Some(key.strip_prefix(&owned)?.to_owned())).collect();
        cursor.delta_link = Some(delta_link);
        cursor.label = label;
        cursor.path_prefix = prefix;
        Ok(cursor)
    }

    /// Every entry of the drive's delta from `start` (from scratch when `None`, or when Graph
    /// answers 410 to the link), the next delta link, and whether this was a full listing.
    async fn read_delta(
        &self,
        graph: &str,
        drive_id: &str,
        start: Option<String>,
    ) -> Result<(Vec<Value>, String, bool), ConnectorError> {
        let fresh = format!("{graph}/v1.0/drives/{}/root/delta", encode(drive_id));
        let mut full = start.is_none();
        let mut url = start.unwrap_or_else(|| fresh.clone());
        let mut entries = Vec::new();
        let mut visited = HashSet::new();
        loop {
            if !visited.insert(url.clone()) {
                return Err(source_error(format!("{drive_id}: delta pagination came back to {url}")));
            }
            let page = match self.get_graph(&url, &[("prefer", PREFER)]).await {
                Ok(page) => page,
                Err(ConnectorError::Http(e)) if e.status() == Some(410) && !full => {
                    tracing::info!(
                        source = SOURCE_NAME,
                        drive = drive_id,
                        "delta token expired; listing the drive again"
                    );
                    full = true;
                    entries.clear();
                    visited.clear();
                    url = fresh.clone();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(values) = page.get("value").and_then(Value::as_array) else {
                return Err(source_error(format!("{url}: no value array in the delta page")));
            };
            entries.extend(values.iter().cloned());
            if let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) {
                url = next.to_owned();
            } else if let Some(delta) = page.get("@odata.deltaLink").and_then(Value::as_str) {
                self.check_origin(delta)?;
                return Ok((entries, delta.to_owned(), full));
            } else {
                return Err(source_error(format!("{url}: neither a nextLink nor a deltaLink")));
            }
        }
    }

    /// Reports one file the feed (or a recheck) mentioned, against what `run` knows of it.
    async fn sync_file(&self, drive: &DriveContext<'_>, entry: DriveItem, run: &mut Run, seen: &mut HashSet<String>) {
        let Some(item_id) = entry.id.clone() else { return };
        let key = format!("{}:{item_id}", drive.drive.id);
        seen.insert(key.clone());
        if entry.deleted.is_some() || entry.file.is_none() {
            run.delete(&key);
            return;
        }
        let Some(name) = entry.name.clone().filter(|n| valid_segment(n)) else {
            return run.fail(key, format!("the file name {:?} is missing or not a path segment", entry.name));
        };
        let folder =
            entry.parent_reference.as_ref().and_then(|p| p.path.as_deref().and_then(path_after_root)).or_else(|| {
                entry.parent_reference.as_ref()?.id.as_deref().and_then(|id| folder_path(drive.folders, id))
            });
        let Some(folder) = folder else {
            return run.fail(key, "the file's folder is unknown (no parentReference path or known parent)".to_owned());
        };
        let Some((stem, extension)) = name.rsplit_once('.').map(|(s, e)| (s, e.to_ascii_lowercase())) else {
            return run.delete(&key);
        };
        let within = if folder.is_empty() { name.clone() } else { format!("{folder}/{name}") };
        if !EXTENSIONS.contains(&extension.as_str()) || drive.prefix.is_some_and(|p| !is_under(&within, p)) {
            // Renamed to a type Lore does not read, or moved out of the synced folder.
            return run.delete(&key);
        }
        let Some(version) = entry.c_tag.clone().or_else(|| entry.e_tag.clone()) else {
            return run.fail(key, "the file has neither cTag nor eTag".to_owned());
        };
        let acl = match self.permissions(drive, &item_id).await {
            Ok(acl) => acl,
            Err(e) => return run.fail(key, format!("reading permissions: {e}")),
        };
        let path = format!("{}/{}.{extension}", drive.label, &within[..within.len() - extension.len() - 1]);
        let known = run.items.get(&key);
        if known.is_some_and(|k| k.path == path && k.version == version && k.acl.as_ref() == Some(&acl)) {
            return;
        }
        let content = match self.download(drive, &item_id, entry.download_url.as_deref()).await {
            Ok(content) => content,
            Err(e) => return run.fail(key, format!("downloading: {e}")),
        };
        if let Some(known) = run.items.get(&key)
            && known.path != path
        {
            run.changes.push(Change::Delete { id: key.clone(), path: known.path.clone() });
        }
        run.items
            .insert(key.clone(), ItemState { path: path.clone(), version: version.clone(), acl: Some(acl.clone()) });
        run.changes.push(Change::Upsert(Item {
            id: key,
            path,
            title: Some(stem.to_owned()).filter(|s| !s.is_empty()),
            content,
            version,
            acl: Some(acl),
            url: entry.web_url,
        }));
    }

    async fn permissions(&self, drive: &DriveContext<'_>, item_id: &str) -> Result<Vec<String>, ConnectorError> {
        let mut url =
            format!("{}/v1.0/drives/{}/items/{}/permissions", drive.graph, encode(&drive.drive.id), encode(item_id));
        let mut principals = BTreeSet::new();
        let mut visited = HashSet::new();
        loop {
            if !visited.insert(url.clone()) {
                return Err(source_error(format!("permission pagination came back to {url}")));
            }
            let page = self.get_json(&url).await?;
            let Some(permissions) = page.get("value").and_then(Value::as_array) else {
                return Err(source_error(format!("{url}: no value array in the permissions")));
            };
            for permission in permissions {
                principals.extend(permission_principals(permission, &self.config));
            }
            match page.get("@odata.nextLink").and_then(Value::as_str) {
                Some(next) => url = next.to_owned(),
                None => return Ok(principals.into_iter().collect()),
            }
        }
    }

    async fn download(
        &self,
        drive: &DriveContext<'_>,
        item_id: &str,
        download_url: Option<&str>,
    ) -> Result<Vec<u8>, ConnectorError> {
        let fetched = match download_url {
            // Pre-authenticated: the token must not travel to the storage host.
            Some(url) => self.http.get(url, &[]).await?,
            None => {
                let url = format!(
                    "{}/v1.0/drives/{}/items/{}/content",
                    drive.graph,
                    encode(&drive.drive.id),
                    encode(item_id)
                );
                self.http.get(&url, &[("authorization", self.authorization.as_str())]).await?
            }
        };
        Ok(fetched.body)
    }

    async fn get_json(&self, url: &str) -> Result<Value, ConnectorError> {
        self.get_graph(url, &[]).await
    }

    async fn get_graph(&self, url: &str, extra: &[(&str, &str)]) -> Result<Value, ConnectorError> {
        self.check_origin(url)?;
        let mut headers = vec![("authorization", self.authorization.as_str()), ("accept", "application/json")];
        headers.extend_from_slice(extra);
        let fetched = self.http.get(url, &headers).await?;
        fetched.json().map_err(|message| source_error(format!("{url}: {message}")))
    }

    /// The bearer token goes with every Graph request, so links Graph hands back are only
    /// followed on the configured origin.
    fn check_origin(&self, url: &str) -> Result<(), ConnectorError> {
        let graph = crate::http::origin_of(self.config.graph_url.trim_end_matches('/'));
        if graph.is_some() && crate::http::origin_of(url) == graph {
            Ok(())
        } else {
            Err(HttpError::Failed {
                url: url.to_owned(),
                status: None,
                message: "not on the configured graph_url".into(),
            }
            .into())
        }
    }
}

struct DriveContext<'a> {
    graph: &'a str,
    drive: &'a DriveConfig,
    label: &'a str,
    prefix: Option<&'a str>,
    folders: &'a BTreeMap<String, Folder>,
}

/// The mapping in the module header.
fn permission_principals(permission: &Value, config: &SharePointConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(link) = permission.get("link") {
        match link.get("scope").and_then(Value::as_str) {
            Some("anonymous") if permission.get("hasPassword").and_then(Value::as_bool) != Some(true) => {
                out.push("everyone".to_owned())
            }
            Some("organization") => out.push(format!("group:{}", config.org_group)),
            _ => {}
        }
    }
    let granted = permission.get("grantedToV2").into_iter();
    let identities = permission.get("grantedToIdentitiesV2").and_then(Value::as_array).into_iter().flatten();
    for identity in granted.chain(identities) {
        if let Some(user) = identity.get("user") {
            match user.get("email").and_then(Value::as_str).filter(|e| e.contains('@')) {
                Some(email) => out.push(format!("user:{}", email.to_lowercase())),
                None => tracing::debug!(source = SOURCE_NAME, ?user, "user without an email left out"),
            }
        }
        if let Some(group) = identity.get("group") {
            let id = group.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
            let display = group.get("displayName").and_then(Value::as_str).filter(|s| !s.is_empty());
            let name = match config.group_names {
                GroupNames::Id => id,
                GroupNames::DisplayName => display.or(id),
            };
            if let Some(name) = name {
                out.push(format!("group:{name}"));
            }
        }
        if let Some(site_group) = identity.get("siteGroup") {
            let slug = site_group.get("displayName").and_then(Value::as_str).map(crate::slug).unwrap_or_default();
            if !slug.is_empty() {
                out.push(format!("group:sharepoint-{slug}"));
            }
        }
    }
    out
}

/// A folder's path inside its drive (`""` for the root), from the known folder tree.
fn folder_path(folders: &BTreeMap<String, Folder>, id: &str) -> Option<String> {
    let mut segments = Vec::new();
    let mut current = id;
    for _ in 0..1000 {
        let folder = folders.get(current)?;
        if folder.root {
            segments.reverse();
            return Some(segments.join("/"));
        }
        if !valid_segment(&folder.name) {
            return None;
        }
        segments.push(folder.name.as_str());
        current = folder.parent.as_deref()?;
    }
    None
}

/// The folder path in a `parentReference.path` (`/drive/root:/HR/Policies`, percent-encoded).
fn path_after_root(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("root:")?;
    let mut segments = Vec::new();
    for segment in rest.split('/').filter(|s| !s.is_empty()) {
        let segment = percent_decode(segment)?;
        if !valid_segment(&segment) {
            return None;
        }
        segments.push(segment);
    }
    Some(segments.join("/"))
}

fn valid_segment(name: &str) -> bool {
    !name.trim().is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

/// Whether `path` is `folder` or lies under it, segment by segment and ignoring case, as
/// SharePoint compares names.
fn is_under(path: &str, folder: &str) -> bool {
    if folder.is_empty() {
        return true;
    }
    let mut path = path.split('/');
    folder.split('/').all(|f| path.next().is_some_and(|p| p.eq_ignore_ascii_case(f)))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes an id for a URL path segment.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn source_error(message: String) -> ConnectorError {
    ConnectorError::Source { source_name: SOURCE_NAME.to_owned(), message }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(group_names: GroupNames) -> SharePointConfig {
        SharePointConfig {
            graph_url: default_graph_url(),
            drives: Vec::new(),
            org_group: "everyone-at-acme".into(),
            group_names,
        }
    }

    #[test]
    fn permissions_map_to_principals_erring_towards_fewer_readers() {
        let c = config(GroupNames::Id);
        let anonymous = json!({"id": "1", "roles": ["read"], "link": {"scope": "anonymous", "type": "view"}});
        assert_eq!(permission_principals(&anonymous, &c), ["everyone"]);
        let protected = json!({"id": "2", "hasPassword": true, "link": {"scope": "anonymous", "type": "view"}});
        assert!(permission_principals(&protected, &c).is_empty());
        let org = json!({"id": "3", "link": {"scope": "organization", "type": "edit"}});
        assert_eq!(permission_principals(&org, &c), ["group:everyone-at-acme"]);
        let people = json!({"id": "4", "link": {"scope": "users", "type": "view"}, "grantedToIdentitiesV2": [
            {"user": {"id": "u1", "email": "Ana@Acme.com", "displayName": "Ana"}},
            {"user": {"id": "u2", "displayName": "No Mail"}}
        ]});
        assert_eq!(permission_principals(&people, &c), ["user:ana@acme.com"]);
        let group =
            json!({"id": "5", "roles": ["write"], "grantedToV2": {"group": {"id": "9f1c", "displayName": "HR Team"}}});
        assert_eq!(permission_principals(&group, &c), ["group:9f1c"]);
        assert_eq!(permission_principals(&group, &config(GroupNames::DisplayName)), ["group:HR Team"]);
        let site = json!({"id": "6", "grantedToV2": {"siteGroup": {"id": "3", "displayName": "Acme HR Members"}}});
        assert_eq!(permission_principals(&site, &c), ["group:sharepoint-acme-hr-members"]);
    }

    #[test]
    fn paths_come_from_parent_references_or_the_folder_tree() {
        assert_eq!(path_after_root("/drive/root:/HR/Leave%20Policies").as_deref(), Some("HR/Leave Policies"));
        assert_eq!(path_after_root("/drives/b!x/root:").as_deref(), Some(""));
        assert_eq!(path_after_root("/drive/root:/a/%2E%2E"), None);
        let mut folders = BTreeMap::new();
        folders.insert("r".to_owned(), Folder { name: String::new(), parent: None, root: true });
        folders.insert("hr".to_owned(), Folder { name: "HR".into(), parent: Some("r".into()), root: false });
        folders.insert("p".to_owned(), Folder { name: "Policies".into(), parent: Some("hr".into()), root: false });
        folders.insert("lost".to_owned(), Folder { name: "Lost".into(), parent: Some("gone".into()), root: false });
        assert_eq!(folder_path(&folders, "p").as_deref(), Some("HR/Policies"));
        assert_eq!(folder_path(&folders, "r").as_deref(), Some(""));
        assert_eq!(folder_path(&folders, "lost"), None);
        assert!(is_under("hr/policies/a.pdf", "HR/Policies"));
        assert!(!is_under("HR/Policies-old/a.pdf", "HR/Policies"));
    }

    #[test]
    fn links_are_only_followed_on_the_graph_origin_and_tokens_never_print() {
        let connector = SharePointConnector::new(
            config(GroupNames::Id),
            AccessToken::new("s3cret"),
            Http::new("lore-test").unwrap(),
        );
        assert!(connector.check_origin("https://graph.microsoft.com/v1.0/drives/x/root/delta?token=1").is_ok());
        assert!(connector.check_origin("https://graph.microsoft.com.evil.example/v1.0").is_err());
        assert!(!format!("{:?}", AccessToken::new("s3cret")).contains("s3cret"));
        assert_eq!(encode("b!Ab/c d"), "b!Ab%2Fc%20d");
    }
}
