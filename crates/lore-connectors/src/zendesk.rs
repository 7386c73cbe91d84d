//! Zendesk Help Center: published articles, one item per article translation, each readable by the
//! Lore principals its user segments map to.
//!
//! Why a full listing each sync rather than the incremental export
//! (`/api/v2/help_center/incremental/articles.json?start_time=`): the export reports updates but
//! not deletions, and a change of an article's user segment, or of the segment itself, does not
//! always touch the article. Listing every locale and handing the result to [`crate::diff`] gets
//! deletions, renames and permission-only changes right with no second mechanism; a help centre
//! has thousands of articles, not millions, so the cost is a few dozen pages per sync.
//!
//! Visibility is on the article: `user_segment_id` (`null` = everyone) or, on Enterprise plans,
//! `user_segment_ids` (a reader in any of them may read). `permission_group_id` says who may edit
//! and publish, not who may read, and is ignored. A segment maps to principals as follows, always
//! erring towards fewer readers, because Lore's ACL is a union of principals and cannot say "and":
//!
//! | segment                                              | principals                               |
//! |------------------------------------------------------|------------------------------------------|
//! | none (`user_segment_id: null`)                       | `everyone`                               |
//! | `signed_in_users`, no groups, orgs or tags           | `group:<signed_in_group>`                |
//! | `staff`, no groups, orgs or tags                     | `group:<staff_group>`                    |
//! | `group_ids` only (group members are agents)          | `group:zendesk-group-<id>` for each      |
//! | `signed_in_users` with `organization_ids` only       | `group:zendesk-org-<id>` for each        |
//! | anything else (tags, or_tags, groups and orgs, staff | `group:zendesk-segment-<segment id>`     |
//! | with orgs, an unknown `user_type`)                   |                                          |
//!
//! The last row is a group nobody is in until an administrator provisions it in Lore's identity
//! provider, so an article behind a segment Lore cannot express is hidden, not leaked.
//! `added_user_ids` (users let in regardless of the criteria) are not mapped: Zendesk user ids
//! are not Lore user names, and leaving them out only narrows the readers.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Deserialize;
use serde_json::Value;

use crate::http::Http;
use crate::{Change, ConnectorError, Item, ItemError, SyncBatch, SyncState};

const SOURCE_NAME: &str = "zendesk";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    /// The help centre's API origin, e.g. `https://acme.zendesk.com`.
    pub base_url: String,
    /// Locales to sync, e.g. `["en-us", "es"]`; each translation is its own item.
    pub locales: Vec<String>,
    /// The agent whose API token is used; it must be able to see every segment's articles.
    pub email: String,
    /// The environment variable holding the API token, so the secret stays out of config files.
    pub token_env: String,
    /// The Lore group for Zendesk's "signed-in users" segment.
    #[serde(default = "default_signed_in_group")]
    pub signed_in_group: String,
    /// The Lore group for Zendesk's "staff" (agents and admins) segment.
    #[serde(default = "default_staff_group")]
    pub staff_group: String,
}

fn default_signed_in_group() -> String {
    "zendesk-signed-in".to_owned()
}

fn default_staff_group() -> String {
    "zendesk-staff".to_owned()
}

/// The API token resolved from `token_env`, kept apart from [`ZendeskConfig`] so that a config
/// can be logged or serialised without the secret, and tests can pass a token without touching
/// the process environment.
#[derive(Clone)]
pub struct Credentials {
    pub email: String,
    pub api_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("email", &self.email).field("api_token", &"<redacted>").finish()
    }
}

impl Credentials {
    /// Reads the token from the variable `config.token_env` names.
    pub fn from_env(config: &ZendeskConfig) -> Result<Self, ConnectorError> {
        Self::resolve(config, |name| std::env::var(name).ok())
    }

    /// Like [`Credentials::from_env`], with the environment passed in.
    pub fn resolve(config: &ZendeskConfig, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConnectorError> {
        match lookup(&config.token_env) {
            Some(token) if !token.trim().is_empty() => {
                Ok(Credentials { email: config.email.clone(), api_token: token.trim().to_owned() })
            }
            _ => Err(source_error(format!("the API token variable {} is not set", config.token_env))),
        }
    }

    fn authorization(&self) -> String {
        crate::http::basic_auth(&format!("{}/token", self.email), &self.api_token)
    }
}

pub struct ZendeskConnector {
    config: ZendeskConfig,
    authorization: String,
    http: Http,
}

impl ZendeskConnector {
    pub fn new(config: ZendeskConfig, credentials: Credentials, http: Http) -> Self {
        ZendeskConnector { authorization: credentials.authorization(), config, http }
    }

    /// One sync from `previous` (`SyncState::default()` the first time): lists every locale in
    /// full and reports what differs. An article that cannot be read is an [`ItemError`]. When
    /// the fault may pass (its segment answered 5xx, 429 or not at all, after the retries) the
    /// article keeps its previous state, so it is neither deleted from the index nor reported
    /// again when it recovers unchanged. Any other fault (a malformed article, a segment that is
    /// gone or refused) drops it like a deletion: keeping it would keep an ACL that can no longer
    /// be checked.
    pub async fn sync(&self, previous: &SyncState) -> Result<SyncBatch, ConnectorError> {
        let base = self.config.base_url.trim_end_matches('/');
        let origin = crate::http::origin_of(base)
            .ok_or_else(|| source_error(format!("base_url {base} is not an http(s) URL")))?;
        let mut segments = SegmentCache::default();
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        let mut errors = Vec::new();
        let mut kept_ids = HashSet::new();
        for locale in &self.config.locales {
            if locale.is_empty() || !locale.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(source_error(format!("locale {locale:?} is not a Zendesk locale code")));
            }
            let articles = self.list_articles(base, origin, locale).await?;
            for (index, article) in articles.into_iter().enumerate() {
                match self.article_item(base, locale, &article, &mut segments).await {
                    Ok(None) => {}
                    Ok(Some(item)) => {
                        // A translation missing in one locale may come back in its source locale;
                        // the first listing to report an id wins.
                        if seen.insert(item.id.clone()) {
                            items.push(item);
                        }
                    }
                    Err(Unreadable { message, passing }) => {
                        let item = match article_id(&article) {
                            Some(id) => {
                                let id = format!("{}:{id}", article_locale(&article, locale));
                                if passing {
                                    kept_ids.insert(id.clone());
                                }
                                id
                            }
                            None => format!("{locale}: article #{} of the listing", index + 1),
                        };
                        tracing::warn!(source = SOURCE_NAME, item, message, passing, "article skipped");
                        errors.push(ItemError { item, message });
                    }
                }
            }
        }
        let (mut changes, mut state) = crate::diff(previous, items, None);
        changes.retain(|change| !matches!(change, Change::Delete { id, .. } if kept_ids.contains(id)));
        for id in kept_ids {
            if let Some(known) = previous.items.get(&id) {
                state.items.entry(id).or_insert_with(|| known.clone());
            }
        }
        Ok(SyncBatch { changes, errors, state })
    }

    /// Every article of one locale, following either pagination style: cursor (`meta.has_more`
    /// and `links.next`) or offset (`next_page`). A page that fails fails the sync, since a
    /// partial listing would read as deletions.
    async fn list_articles(&self, base: &str, origin: &str, locale: &str) -> Result<Vec<Value>, ConnectorError> {
        let mut url = format!("{base}/api/v2/help_center/{locale}/articles.json?per_page=100");
        let mut visited = HashSet::new();
        let mut articles = Vec::new();
        loop {
            if !visited.insert(url.clone()) {
                return Err(source_error(format!("{locale}: pagination came back to {url}")));
            }
            let page = self.get_json(&url).await?;
            let Some(batch) = page.get("articles").and_then(Value::as_array) else {
                return Err(source_error(format!("{url}: no articles array in the answer")));
            };
            articles.extend(batch.iter().cloned());
            let cursor_next = page
                .pointer("/meta/has_more")
                .and_then(Value::as_bool)
                .filter(|more| *more)
                .and_then(|_| page.pointer("/links/next").and_then(Value::as_str));
            let next = cursor_next.or_else(|| page.get("next_page").and_then(Value::as_str));
            match next {
                None => return Ok(articles),
                // The token goes with every request, so it is only ever sent back to the
                // configured origin.
                Some(next) if crate::http::origin_of(next) == Some(origin) => url = next.to_owned(),
                Some(next) => {
                    return Err(source_error(format!("{locale}: next page {next} is not on {origin}")));
                }
            }
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, ConnectorError> {
        let fetched = self
            .http
            .get(url, &[("authorization", self.authorization.as_str()), ("accept", "application/json")])
            .await?;
        fetched.json().map_err(|message| source_error(format!("{url}: {message}")))
    }

    /// The item for one listed article, `None` for a draft (an unpublished article is gone for
    /// readers, so a diff deletes it), or why it cannot be read.
    async fn article_item(
        &self,
        base: &str,
        listed_locale: &str,
        article: &Value,
        segments: &mut SegmentCache,
    ) -> Result<Option<Item>, Unreadable> {
        let article: Article = serde_json::from_value(article.clone())
            .map_err(|e| Unreadable::malformed(format!("not an article: {e}")))?;
        let id = article.id.ok_or_else(|| Unreadable::malformed("the article has no id"))?;
        if article.draft {
            return Ok(None);
        }
        let body = article.body.ok_or_else(|| Unreadable::malformed("the article has no body"))?;
        let updated_at = article
            .updated_at
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Unreadable::malformed("the article has no updated_at"))?;
        let locale = article.locale.unwrap_or_else(|| listed_locale.to_owned());
        let title = article.title.unwrap_or_default();
        let segment_ids: Vec<u64> = match article.user_segment_ids {
            Some(ids) if !ids.is_empty() => ids,
            _ => article.user_segment_id.into_iter().collect(),
        };
        let acl = if segment_ids.is_empty() {
            vec!["everyone".to_owned()]
        } else {
            let mut principals = BTreeSet::new();
            for segment in segment_ids {
                principals.extend(segments.principals(self, base, segment).await?);
            }
            principals.into_iter().collect()
        };
        let slug = crate::slug(&title);
        let path = if slug.is_empty() { format!("{locale}/{id}.html") } else { format!("{locale}/{id}-{slug}.html") };
        Ok(Some(Item {
            id: format!("{locale}:{id}"),
            path,
            content: html_document(&locale, &title, &body).into_bytes(),
            title: Some(title).filter(|t| !t.is_empty()),
            version: updated_at,
            acl: Some(acl),
            url: article.html_url,
        }))
    }
}

/// Why one article could not be made an item.
#[derive(Debug, Clone)]
struct Unreadable {
    message: String,
    /// Whether the same request may succeed later (throttled, a server error, no answer).
    passing: bool,
}

impl Unreadable {
    fn malformed(message: impl Into<String>) -> Self {
        Unreadable { message: message.into(), passing: false }
    }
}

/// The fields of an article this connector reads; the rest of Zendesk's object is ignored.
#[derive(Debug, Deserialize)]
struct Article {
    id: Option<u64>,
    title: Option<String>,
    body: Option<String>,
    locale: Option<String>,
    updated_at: Option<String>,
    #[serde(default)]
    draft: bool,
    html_url: Option<String>,
    user_segment_id: Option<u64>,
    user_segment_ids: Option<Vec<u64>>,
}

#[derive(Debug, Deserialize)]
struct UserSegment {
    user_type: String,
    #[serde(default)]
    group_ids: Vec<u64>,
    #[serde(default)]
    organization_ids: Vec<u64>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    or_tags: Vec<String>,
}

/// Segments looked up once per sync, failures included, so fifty articles behind one
/// unreadable segment cost one request.
#[derive(Default)]
struct SegmentCache {
    principals: HashMap<u64, Result<Vec<String>, Unreadable>>,
}

impl SegmentCache {
    async fn principals(
        &mut self,
        connector: &ZendeskConnector,
        base: &str,
        id: u64,
    ) -> Result<Vec<String>, Unreadable> {
        if let Some(known) = self.principals.get(&id) {
            return known.clone();
        }
        let url = format!("{base}/api/v2/help_center/user_segments/{id}.json");
        let resolved = match connector.get_json(&url).await {
            Ok(answer) => match answer.get("user_segment").cloned().map(serde_json::from_value::<UserSegment>) {
                Some(Ok(segment)) => Ok(segment_principals(id, &segment, &connector.config)),
                Some(Err(e)) => Err(Unreadable::malformed(format!("user segment {id} is malformed: {e}"))),
                None => Err(Unreadable::malformed(format!("user segment {id}: no user_segment in the answer"))),
            },
            Err(e) => {
                let passing = match &e {
                    ConnectorError::Http(http) => http.status().is_none_or(|s| s == 429 || s >= 500),
                    ConnectorError::Source { .. } => false,
                };
                Err(Unreadable { message: format!("user segment {id} could not be read: {e}"), passing })
            }
        };
        self.principals.insert(id, resolved.clone());
        resolved
    }
}

/// The mapping in the module header.
fn segment_principals(id: u64, segment: &UserSegment, config: &ZendeskConfig) -> Vec<String> {
    let has_tags = !segment.tags.is_empty() || !segment.or_tags.is_empty();
    let groups = &segment.group_ids;
    let orgs = &segment.organization_ids;
    match (segment.user_type.as_str(), has_tags, groups.is_empty(), orgs.is_empty()) {
        ("signed_in_users", false, true, true) => vec![format!("group:{}", config.signed_in_group)],
        ("staff", false, true, true) => vec![format!("group:{}", config.staff_group)],
        ("signed_in_users" | "staff", false, false, true) => {
            groups.iter().map(|g| format!("group:zendesk-group-{g}")).collect()
        }
        ("signed_in_users", false, true, false) => orgs.iter().map(|o| format!("group:zendesk-org-{o}")).collect(),
        (user_type, ..) => {
            tracing::debug!(source = SOURCE_NAME, segment = id, user_type, "segment has no exact Lore equivalent");
            vec![format!("group:zendesk-segment-{id}")]
        }
    }
}

fn article_id(article: &Value) -> Option<u64> {
    article.get("id").and_then(Value::as_u64)
}

fn article_locale(article: &Value, listed_locale: &str) -> String {
    article.get("locale").and_then(Value::as_str).unwrap_or(listed_locale).to_owned()
}

/// A standalone page for the HTML loader: the title in `<title>` and as a heading, then the
/// article body as Zendesk stores it (already HTML).
fn html_document(locale: &str, title: &str, body: &str) -> String {
    let title = crate::escape_html(title);
    let locale = crate::escape_html(locale);
    format!(
        "<!DOCTYPE html>\n<html lang=\"{locale}\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n</head>\n\
         <body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    )
}

fn source_error(message: String) -> ConnectorError {
    ConnectorError::Source { source_name: SOURCE_NAME.to_owned(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ZendeskConfig {
        ZendeskConfig {
            base_url: "https://acme.zendesk.com".into(),
            locales: vec!["en-us".into()],
            email: "bot@acme.com".into(),
            token_env: "LORE_ZENDESK_TOKEN".into(),
            signed_in_group: default_signed_in_group(),
            staff_group: default_staff_group(),
        }
    }

    fn segment(user_type: &str, groups: &[u64], orgs: &[u64], tags: &[&str]) -> UserSegment {
        UserSegment {
            user_type: user_type.into(),
            group_ids: groups.to_vec(),
            organization_ids: orgs.to_vec(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            or_tags: Vec::new(),
        }
    }

    #[test]
    fn segments_map_to_principals_or_to_a_group_nobody_is_in() {
        let c = config();
        assert_eq!(segment_principals(1, &segment("signed_in_users", &[], &[], &[]), &c), ["group:zendesk-signed-in"]);
        assert_eq!(segment_principals(2, &segment("staff", &[], &[], &[]), &c), ["group:zendesk-staff"]);
        assert_eq!(
            segment_principals(3, &segment("staff", &[7, 8], &[], &[]), &c),
            ["group:zendesk-group-7", "group:zendesk-group-8"]
        );
        assert_eq!(segment_principals(4, &segment("signed_in_users", &[], &[9], &[]), &c), ["group:zendesk-org-9"]);
        // Each of these needs an "and" that a union of principals cannot say.
        assert_eq!(
            segment_principals(5, &segment("signed_in_users", &[], &[9], &["vip"]), &c),
            ["group:zendesk-segment-5"]
        );
        assert_eq!(
            segment_principals(6, &segment("signed_in_users", &[7], &[9], &[]), &c),
            ["group:zendesk-segment-6"]
        );
        assert_eq!(segment_principals(7, &segment("staff", &[], &[9], &[]), &c), ["group:zendesk-segment-7"]);
        assert_eq!(segment_principals(8, &segment("everybody_new", &[], &[], &[]), &c), ["group:zendesk-segment-8"]);
    }

    #[test]
    fn next_pages_are_only_followed_on_the_configured_origin() {
        assert_eq!(
            crate::http::origin_of("https://acme.zendesk.com/api/v2/x?page=2"),
            Some("https://acme.zendesk.com")
        );
        assert_eq!(crate::http::origin_of("http://127.0.0.1:8080?x"), Some("http://127.0.0.1:8080"));
        assert_eq!(
            crate::http::origin_of("https://acme.zendesk.com.evil.example/api"),
            Some("https://acme.zendesk.com.evil.example")
        );
        assert_eq!(crate::http::origin_of("ftp://acme"), None);
        assert_eq!(crate::http::origin_of("https:///path"), None);
    }

    #[test]
    fn credentials_come_from_the_named_variable_and_never_print() {
        let c = config();
        let credentials =
            Credentials::resolve(&c, |name| (name == "LORE_ZENDESK_TOKEN").then(|| "s3cret\n".to_owned())).unwrap();
        assert_eq!(credentials.authorization(), "Basic Ym90QGFjbWUuY29tL3Rva2VuOnMzY3JldA==");
        assert!(!format!("{credentials:?}").contains("s3cret"));
        assert!(Credentials::resolve(&c, |_| None).is_err());
        assert!(Credentials::resolve(&c, |_| Some("  ".into())).is_err());
    }

    #[test]
    fn titles_are_escaped_and_bodies_kept() {
        let page = html_document("en-us", "Q&A <beta>", "<p>Hi</p>");
        assert!(page.contains("<title>Q&amp;A &lt;beta&gt;</title>"));
        assert!(page.contains("<p>Hi</p>"));
    }
}
