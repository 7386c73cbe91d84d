//! Confluence (Cloud, and Data Center, which shares the v1 REST shape): the pages of a few
//! spaces, each with who may read it. Confluence decides that in two layers — space
//! permissions, then page read restrictions inherited down the page tree — and Lore has to
//! reproduce both, because an answer citing a restricted page to someone outside it is a leak.
//!
//! Space permissions are read from config (`space_groups`), not from the API: the space
//! permission endpoints differ between Cloud and Data Center and mix in anonymous and
//! "all licensed users" grants, so an administrator states once which Lore principals may read a
//! space. Page read restrictions come from the content listing itself
//! (`expand=restrictions.read.restrictions.user,…`), and since a whole space is listed, every
//! ancestor's restrictions are at hand without another request.
//!
//! Confluence's CQL `lastmodified` search cannot see deletions, and a restriction change does not
//! bump a page's version, so every sync lists the spaces in full and leaves the comparison to
//! [`crate::diff`].
//!
//! Not covered: blog posts, comments, attachments other than PDF and DOCX, archived pages,
//! and users beyond the first page of a restriction's user list (which can only narrow who is
//! let in, never widen it).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

use crate::http::Http;
use crate::{ConnectorError, Item, ItemError, SyncBatch, SyncState};

/// The largest page Confluence hands out with body expansions; it may cap it lower, and the
/// returned `limit` is what pagination goes by.
const PAGE_SIZE: usize = 50;
const EXPAND: &str =
    "body.storage,version,restrictions.read.restrictions.user,restrictions.read.restrictions.group,ancestors";

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfluenceConfig {
    /// Where the REST API lives under: `https://example.atlassian.net/wiki` for Cloud,
    /// `https://wiki.example.com` (plus any context path) for Data Center.
    pub base_url: String,
    /// Space keys to sync, e.g. `["ENG", "HR"]`.
    pub spaces: Vec<String>,
    /// Who may read each space, as Lore principals (`{ ENG = ["group:engineering"] }`). A space
    /// missing here has no ACL of its own: its unrestricted pages get the source's default ACL.
    #[serde(default)]
    pub space_groups: BTreeMap<String, Vec<String>>,
    /// Also sync the PDF and DOCX files attached to pages. It costs one request per page on
    /// every sync, which is why it is off unless asked for.
    #[serde(default)]
    pub attachments: bool,
}

/// Resolved secrets, passed in by the caller so that none sit in a config file.
#[derive(Clone)]
pub enum Credentials {
    /// Cloud: an Atlassian account's email and an API token, sent as basic auth.
    Basic { email: String, api_token: String },
    /// Data Center: a personal access token.
    Bearer { token: String },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { email, .. } => {
                f.debug_struct("Basic").field("email", email).field("api_token", &"<redacted>").finish()
            }
            Credentials::Bearer { .. } => f.debug_struct("Bearer").field("token", &"<redacted>").finish(),
        }
    }
}

impl Credentials {
    fn authorization(&self) -> String {
        match self {
            Credentials::Basic { email, api_token } => crate::http::basic_auth(email, api_token),
            Credentials::Bearer { token } => format!("Bearer {token}"),
        }
    }
}

pub struct ConfluenceConnector {
    config: ConfluenceConfig,
    authorization: String,
    http: Http,
}

impl ConfluenceConnector {
    pub fn new(config: ConfluenceConfig, credentials: Credentials, http: Http) -> Self {
        let config = ConfluenceConfig { base_url: config.base_url.trim_end_matches('/').to_owned(), ..config };
        ConfluenceConnector { config, authorization: credentials.authorization(), http }
    }

    /// One incremental sync from `previous` (`SyncState::default()` the first time).
    ///
    /// A page that cannot be read is an [`ItemError`] and keeps its previous state, and so do its
    /// attachments, so a page that is malformed for one sync is not deleted and re-added.
    pub async fn sync(&self, previous: &SyncState) -> Result<SyncBatch, ConnectorError> {
        let mut collected = Collected::default();
        for space in &self.config.spaces {
            let base = &self.config.base_url;
            let pages = self
                .list(&format!("space {space}"), |limit, start| {
                    format!(
                        "{base}/rest/api/content?spaceKey={space}&type=page&expand={EXPAND}&limit={limit}&start={start}"
                    )
                })
                .await?;
            let restrictions: HashMap<String, Option<BTreeSet<String>>> =
                pages.iter().filter_map(|page| Some((id_of(page)?, read_restrictions(page).ok()?))).collect();
            for (index, page) in pages.iter().enumerate() {
                match self.item(space, page, &restrictions) {
                    Ok(item) => {
                        if self.config.attachments {
                            self.attachments(space, &item, previous, &mut collected).await;
                        }
                        collected.items.push(item);
                    }
                    Err(message) => {
                        let name =
                            id_of(page).map_or_else(|| format!("{space}: result {index}"), |id| format!("page:{id}"));
                        if let Some(id) = id_of(page) {
                            collected.kept_ids.insert(format!("page:{id}"));
                            collected.keep_attachments_of(space, &id);
                        }
                        collected.error(name, message);
                    }
                }
            }
        }
        let Collected { items, errors, kept_ids, kept_folders } = collected;
        let (mut changes, mut state) = crate::diff(previous, items, None);
        for (id, known) in &previous.items {
            let kept = kept_ids.contains(id)
                || (id.starts_with("attachment:") && kept_folders.iter().any(|folder| known.path.starts_with(folder)));
            if kept && !state.items.contains_key(id) {
                changes.retain(|change| !matches!(change, crate::Change::Delete { id: deleted, .. } if deleted == id));
                state.items.insert(id.clone(), known.clone());
            }
        }
        Ok(SyncBatch { changes, errors, state })
    }

    /// Every result of a paged v1 listing, following `_links.next` (or, without it, `start` by the
    /// returned `size` while pages come back full). `url(limit, start)` builds a page's address.
    async fn list(&self, what: &str, url: impl Fn(usize, usize) -> String) -> Result<Vec<Value>, ConnectorError> {
        let mut next_url = url(PAGE_SIZE, 0);
        let mut start = 0;
        let mut all = Vec::new();
        loop {
            let fetched = self.http.get(&next_url, &self.headers()).await?;
            let body = fetched.json().map_err(|message| source_error(format!("listing {what}: {message}")))?;
            let results = body
                .get("results")
                .and_then(Value::as_array)
                .ok_or_else(|| source_error(format!("listing {what}: no `results` in the response")))?;
            let size = body.get("size").and_then(Value::as_u64).map_or(results.len(), |s| s as usize);
            let limit = body.get("limit").and_then(Value::as_u64).map_or(PAGE_SIZE, |l| l as usize);
            all.extend(results.iter().cloned());
            if results.is_empty() {
                break;
            }
            start += results.len();
            next_url = match body.pointer("/_links/next").and_then(Value::as_str) {
                Some(next) => self.resolve(next)?,
                None if size >= limit => url(limit, start),
                None => break,
            };
        }
        Ok(all)
    }

    fn headers(&self) -> [(&str, &str); 2] {
        [("authorization", &self.authorization), ("accept", "application/json")]
    }

    /// The PDF and DOCX attachments of one page, with the page's ACL (Confluence has no
    /// restrictions of its own on attachments). One listing request per page and sync; a file is
    /// downloaded only when its version, path or ACL changed.
    async fn attachments(&self, space: &str, page: &Item, previous: &SyncState, collected: &mut Collected) {
        let page_id = page.id.trim_start_matches("page:");
        let folder = page.path.trim_end_matches(".html");
        let base = &self.config.base_url;
        let listed = self
            .list(&format!("attachments of page {page_id}"), |limit, start| {
                format!("{base}/rest/api/content/{page_id}/child/attachment?expand=version&limit={limit}&start={start}")
            })
            .await;
        let attachments = match listed {
            Ok(attachments) => attachments,
            Err(error) => {
                collected.keep_attachments_of(space, page_id);
                collected.error(format!("{} attachments", page.id), error.to_string());
                return;
            }
        };
        for attachment in &attachments {
            let Some(id) = id_of(attachment) else {
                collected.error(format!("{} attachments", page.id), "an attachment without an id".to_owned());
                continue;
            };
            let item_id = format!("attachment:{id}");
            let Some(filename) = attachment.get("title").and_then(Value::as_str) else {
                collected.error(item_id, "no title (file name)".to_owned());
                continue;
            };
            let Some((stem, extension)) = filename.rsplit_once('.') else { continue };
            let extension = extension.to_ascii_lowercase();
            if extension != "pdf" && extension != "docx" {
                continue;
            }
            let Some(version) = attachment.pointer("/version/number").and_then(Value::as_u64) else {
                collected.error(item_id, "no version.number".to_owned());
                continue;
            };
            let Some(download) = attachment.pointer("/_links/download").and_then(Value::as_str) else {
                collected.error(item_id, "no _links.download".to_owned());
                continue;
            };
            // The id keeps two files whose names slug alike apart.
            let path = match crate::slug(stem).as_str() {
                "" => format!("{folder}/{id}.{extension}"),
                slug => format!("{folder}/{id}-{slug}.{extension}"),
            };
            let version = version.to_string();
            let mut item = Item {
                id: item_id.clone(),
                path,
                title: Some(filename.to_owned()),
                content: Vec::new(),
                version,
                acl: page.acl.clone(),
                url: None,
            };
            let unchanged = previous
                .items
                .get(&item_id)
                .is_some_and(|known| known.path == item.path && known.version == item.version && known.acl == item.acl);
            let url = match self.resolve(download) {
                Ok(url) => url,
                Err(error) => {
                    collected.kept_ids.insert(item_id.clone());
                    collected.error(item_id, error.to_string());
                    continue;
                }
            };
            item.url = Some(url.clone());
            // An unchanged file is listed with no content: `diff` only needs it to know the file is
            // still there, and does not report it.
            if !unchanged {
                match self.http.get(&url, &[("authorization", &self.authorization)]).await {
                    Ok(fetched) => item.content = fetched.body,
                    Err(error) => {
                        collected.kept_ids.insert(item_id.clone());
                        collected.error(item_id, error.to_string());
                        continue;
                    }
                }
            }
            collected.items.push(item);
        }
    }

    /// `_links.next` and `_links.download` are relative to the site's base, taken to be the
    /// configured `base_url`: the response's own `_links.base` names the public address, which a
    /// Data Center behind a proxy may not be reachable at. An absolute link elsewhere is refused,
    /// because the credentials go with it.
    fn resolve(&self, link: &str) -> Result<String, ConnectorError> {
        let base = &self.config.base_url;
        if link.starts_with('/') {
            return Ok(format!("{base}{link}"));
        }
        if link.starts_with(&format!("{base}/")) {
            return Ok(link.to_owned());
        }
        Err(source_error(format!("refusing to follow a link off the site: {link}")))
    }

    fn item(
        &self,
        space: &str,
        page: &Value,
        restrictions: &HashMap<String, Option<BTreeSet<String>>>,
    ) -> Result<Item, String> {
        let id = id_of(page).ok_or("no page id")?;
        let title = page.get("title").and_then(Value::as_str).ok_or("no title")?;
        let storage = page.pointer("/body/storage/value").and_then(Value::as_str).ok_or("no body.storage.value")?;
        let version = page.pointer("/version/number").and_then(Value::as_u64).ok_or("no version.number")?;
        let acl = self.acl(space, page, restrictions)?;
        let slug = crate::slug(title);
        let path = if slug.is_empty() { format!("{space}/{id}.html") } else { format!("{space}/{id}-{slug}.html") };
        let title_html = crate::escape_html(title);
        let content = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title_html}</title></head>\n<body>\n<h1>{title_html}</h1>\n{storage}\n</body></html>\n"
        );
        let url = page
            .pointer("/_links/webui")
            .and_then(Value::as_str)
            .map(|webui| format!("{}{webui}", self.config.base_url));
        Ok(Item {
            id: format!("page:{id}"),
            path,
            title: Some(title.to_owned()),
            content: content.into_bytes(),
            version: version.to_string(),
            acl,
            url,
        })
    }

    /// Confluence lets a user read a page when they pass the read restrictions of the page and of
    /// every ancestor. A Lore ACL is a list any one of which grants access, so restrictions on
    /// several levels are intersected as principals: someone named on one level and let in through a
    /// group on another is left out. That errs on the side of hiding a page, never of showing it.
    fn acl(
        &self,
        space: &str,
        page: &Value,
        restrictions: &HashMap<String, Option<BTreeSet<String>>>,
    ) -> Result<Option<Vec<String>>, String> {
        let mut levels = vec![read_restrictions(page)?];
        for ancestor in page.get("ancestors").and_then(Value::as_array).into_iter().flatten() {
            let ancestor_id = id_of(ancestor).ok_or("an ancestor without an id")?;
            let level = restrictions
                .get(&ancestor_id)
                .ok_or_else(|| format!("ancestor {ancestor_id} is not in the listing; its restrictions are unknown"))?;
            levels.push(level.clone());
        }
        let effective = levels.into_iter().flatten().reduce(|a, b| a.intersection(&b).cloned().collect());
        Ok(match effective {
            Some(principals) => Some(principals.into_iter().collect()),
            None => self.config.space_groups.get(space).map(|groups| {
                let set: BTreeSet<String> = groups.iter().cloned().collect();
                set.into_iter().collect()
            }),
        })
    }
}

/// A page's own read restrictions as principals; `None` when it has none (anyone who may read the
/// space, and its ancestors, may read it). A response without the expansion is an error, not
/// "unrestricted": not knowing must not open a page up.
fn read_restrictions(page: &Value) -> Result<Option<BTreeSet<String>>, String> {
    let read = page.pointer("/restrictions/read/restrictions").ok_or("no restrictions.read in the response")?;
    let mut principals = BTreeSet::new();
    for user in read.pointer("/user/results").and_then(Value::as_array).into_iter().flatten() {
        // Cloud names users by accountId; Data Center by username (userKey as a last resort).
        let name = ["accountId", "username", "userKey"]
            .iter()
            .find_map(|key| user.get(*key).and_then(Value::as_str))
            .ok_or("a restricted user without accountId or username")?;
        principals.insert(format!("user:{name}"));
    }
    for group in read.pointer("/group/results").and_then(Value::as_array).into_iter().flatten() {
        let name = group.get("name").and_then(Value::as_str).ok_or("a restricted group without a name")?;
        principals.insert(format!("group:{name}"));
    }
    Ok(if principals.is_empty() { None } else { Some(principals) })
}

/// Content ids are strings in the API, but numbers show up in older Data Center answers.
fn id_of(content: &Value) -> Option<String> {
    match content.get("id")? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// What one sync gathers before the comparison with the previous state.
#[derive(Default)]
struct Collected {
    items: Vec<Item>,
    errors: Vec<ItemError>,
    /// Ids whose previous state stands because they could not be read this time.
    kept_ids: BTreeSet<String>,
    /// Path prefixes under which previously synced attachments stand, for the same reason.
    kept_folders: Vec<String>,
}

impl Collected {
    fn error(&mut self, item: String, message: String) {
        tracing::warn!(%item, %message, "confluence item skipped");
        self.errors.push(ItemError { item, message });
    }

    /// By page id rather than by the page's current path, so that attachments still under a
    /// renamed page's old folder are kept too.
    fn keep_attachments_of(&mut self, space: &str, page_id: &str) {
        self.kept_folders.push(format!("{space}/{page_id}-"));
        self.kept_folders.push(format!("{space}/{page_id}/"));
    }
}

fn source_error(message: String) -> ConnectorError {
    ConnectorError::Source { source_name: "confluence".to_owned(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn restricted(id: &str, ancestors: &[&str], users: Value, groups: &[&str]) -> Value {
        let groups: Vec<Value> =
            groups.iter().map(|name| serde_json::json!({ "type": "group", "name": name })).collect();
        serde_json::json!({
            "id": id,
            "ancestors": ancestors.iter().map(|id| serde_json::json!({ "id": id })).collect::<Vec<_>>(),
            "restrictions": { "read": { "restrictions": {
                "user": { "results": users },
                "group": { "results": groups },
            } } },
        })
    }

    #[test]
    fn restrictions_on_several_levels_let_in_only_principals_named_on_all_of_them() {
        let config = ConfluenceConfig {
            base_url: "http://127.0.0.1:9".into(),
            spaces: vec!["OPS".into()],
            space_groups: BTreeMap::from([("OPS".into(), vec!["group:ops".into()])]),
            attachments: false,
        };
        let connector = ConfluenceConnector::new(
            config,
            Credentials::Bearer { token: "pat".into() },
            Http::new("lore-test").unwrap(),
        );
        // Data Center names users by username.
        let root =
            restricted("1", &[], serde_json::json!([{ "type": "known", "username": "jsmith" }]), &["sre", "ops"]);
        let child = restricted("2", &["1"], serde_json::json!([]), &["sre", "security"]);
        let open = restricted("3", &[], serde_json::json!([]), &[]);
        let orphan = restricted("4", &["99"], serde_json::json!([]), &[]);
        let pages = [&root, &child, &open, &orphan];
        let restrictions: HashMap<String, Option<BTreeSet<String>>> =
            pages.iter().map(|page| (id_of(page).unwrap(), read_restrictions(page).unwrap())).collect();

        let acl = |page: &Value| connector.acl("OPS", page, &restrictions);
        let principals = |list: &[&str]| Ok(Some(list.iter().map(|p| p.to_string()).collect()));
        assert_eq!(acl(&root), principals(&["group:ops", "group:sre", "user:jsmith"]));
        assert_eq!(acl(&child), principals(&["group:sre"]));
        assert_eq!(acl(&open), principals(&["group:ops"]));
        assert!(acl(&orphan).is_err(), "an ancestor whose restrictions are unknown must not open the page up");
        assert!(read_restrictions(&serde_json::json!({ "id": "5" })).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let credentials = Credentials::Basic { email: "bot@example.com".into(), api_token: "s3cret".into() };
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert!(!format!("{:?}", Credentials::Bearer { token: "pat-s3cret".into() }).contains("s3cret"));
    }
}
