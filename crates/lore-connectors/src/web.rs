//! The web-site connector: for the intranet wikis and documentation sites that have no API but
//! HTML. It crawls from start URLs and sitemaps, stays inside the allowed URL prefixes, obeys
//! robots.txt, and revalidates known pages with conditional GETs so an unchanged site costs 304s.
//!
//! What a page is: its canonical URL (scheme and host lower-cased, default port and fragment
//! dropped, query kept) is its id; its path is `host/path`, ending in `.html` (or `.pdf`), so the
//! ingest side's loaders read it. A page is present when this crawl reached it; a page that
//! answers 404/410 (any 4xx but 408 and 429), that is no longer linked or listed, or that
//! robots.txt now forbids, is deleted; so is what lies beyond `max_pages`.
//!
//! Why links are remembered: a 304 has no body, yet the pages it links to must still be reached
//! or they would look unlinked and be deleted. The outgoing links of every present page are kept
//! in [`SyncState::cursor`] (JSON), and a 304 page's remembered links are followed. A page whose
//! links were not remembered (an older cursor) is fetched without conditions.
//!
//! Failures: robots.txt or a sitemap that cannot be read (other than 4xx), or a start URL that
//! cannot be fetched, fail the sync, because crawling on regardless would delete half a site. A
//! single page that fails (5xx after retries, bytes that are neither UTF-8 nor Windows-1252, no
//! Content-Type) is an [`ItemError`]; if it was known, it is kept as it was, links included.
//!
//! Not covered: `Crawl-delay` (the crawl runs four requests at a time), gzip'd sitemaps,
//! `<meta name="robots">` and `rel="nofollow"`, charsets other than UTF-8 and Windows-1252, and
//! redirects: they are followed by the HTTP client, but the page keeps the URL it was linked by
//! and its relative links resolve against that URL, not the redirect target.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};

use crate::http::{Fetched, Http};
use crate::{ConnectorError, Item, ItemError, ItemState, SyncBatch, SyncState, diff, slug};

const SOURCE: &str = "web";
/// Requests in flight at once: polite to a small intranet server, yet not one page at a time.
const CONCURRENCY: usize = 4;
/// Sitemap indexes can nest; this bounds a loop or a runaway index.
const MAX_SITEMAPS: usize = 50;
/// Links that are never pages, skipped without a request.
const NOT_PAGES: &[&str] = &[
    ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".css", ".js", ".zip", ".gz", ".tar", ".mp3", ".mp4",
    ".woff", ".woff2",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Where the crawl begins; each must answer, or the sync fails.
    pub start_urls: Vec<String>,
    /// URL prefixes the crawl may visit. Default: each start URL up to its last `/`.
    #[serde(default)]
    pub allowed_prefixes: Vec<String>,
    /// A sitemap.xml (urlset or sitemapindex); `Sitemap:` lines of robots.txt are read too.
    #[serde(default)]
    pub sitemap: Option<String>,
    /// Pages requested per sync at most; what lies beyond is not reached, hence deleted.
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
    /// The robots.txt group this crawler obeys; build the [`Http`] with the same agent.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
}

fn default_max_pages() -> usize {
    1000
}

fn default_user_agent() -> String {
    "LoreBot".to_owned()
}

pub struct WebConnector {
    config: WebConfig,
    http: Http,
}

/// What the cursor holds between syncs.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CrawlMemory {
    /// Every present page's links within the allowed prefixes, by page id.
    links: BTreeMap<String, Vec<String>>,
}

/// Where this sync may go.
struct Scope {
    prefixes: Vec<String>,
    robots: BTreeMap<String, Robots>,
}

impl Scope {
    fn in_prefixes(&self, url: &Url) -> bool {
        let text = url.to_string();
        self.prefixes.iter().any(|p| text.starts_with(p.as_str()))
    }

    /// A URL whose origin's robots.txt was not read is not visited.
    fn may_visit(&self, url: &Url) -> bool {
        self.in_prefixes(url)
            && !NOT_PAGES.iter().any(|ext| url.path.to_ascii_lowercase().ends_with(ext))
            && self.robots.get(&url.origin()).is_some_and(|r| r.allows(&url.path_and_query()))
    }
}

enum Outcome {
    Page { item: Item, links: Vec<String> },
    NotModified,
    Gone(String),
    NotAPage(String),
    Failed(String),
}

impl WebConnector {
    pub fn new(config: WebConfig, http: Http) -> Self {
        WebConnector { config, http }
    }

    /// One incremental sync from `previous` (`SyncState::default()` the first time).
    pub async fn sync(&self, previous: &SyncState) -> Result<SyncBatch, ConnectorError> {
        let starts = self.start_urls()?;
        let scope = self.scope(&starts).await?;
        let memory: CrawlMemory =
            previous.cursor.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
        let mut errors = Vec::new();

        let mut sitemaps: Vec<String> = self.config.sitemap.iter().cloned().collect();
        for robots in scope.robots.values() {
            sitemaps.extend(robots.sitemaps.iter().cloned());
        }
        let listed = self.read_sitemaps(sitemaps, &mut errors).await?;

        let start_ids: BTreeSet<String> = starts.iter().map(Url::to_string).collect();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::new();
        // Atomic rather than a Cell: the sync future must be Send to run in a spawned task.
        let truncated = std::sync::atomic::AtomicBool::new(false);
        let enqueue = |url: Url, seen: &mut BTreeSet<String>, queue: &mut VecDeque<Url>| {
            let id = url.to_string();
            if seen.contains(&id) || !scope.may_visit(&url) {
                return;
            }
            if seen.len() >= self.config.max_pages {
                truncated.store(true, std::sync::atomic::Ordering::Relaxed);
            } else {
                seen.insert(id);
                queue.push_back(url);
            }
        };
        for url in &starts {
            if !scope.may_visit(url) {
                return Err(source_error(format!("start url {url} is outside the allowed prefixes or robots.txt")));
            }
            enqueue(url.clone(), &mut seen, &mut queue);
        }
        for url in listed.iter().filter_map(|l| Url::parse(l)) {
            enqueue(url, &mut seen, &mut queue);
        }

        let mut fetched = Vec::new();
        let mut kept: BTreeMap<String, ItemState> = BTreeMap::new();
        let mut links_out = CrawlMemory::default();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < CONCURRENCY
                && let Some(url) = queue.pop_front()
            {
                let id = url.to_string();
                let revalidate = memory.links.contains_key(&id).then(|| previous.items.get(&id)).flatten();
                in_flight.push(self.fetch_page(url, revalidate.map(|s| s.version.clone()), &scope));
            }
            let Some((url, outcome)) = in_flight.next().await else { break };
            let id = url.to_string();
            let failure = match outcome {
                Outcome::Page { item, links } => {
                    for link in links.iter().filter_map(|l| Url::parse(l)) {
                        enqueue(link, &mut seen, &mut queue);
                    }
                    links_out.links.insert(id, links);
                    fetched.push(item);
                    continue;
                }
                Outcome::NotModified => match previous.items.get(&id) {
                    Some(known) => {
                        self.keep(&id, known, &memory, &mut kept, &mut links_out, |u| {
                            enqueue(u, &mut seen, &mut queue)
                        });
                        continue;
                    }
                    None => "answered 304 to a request that was not conditional".to_owned(),
                },
                Outcome::Gone(why) | Outcome::NotAPage(why) if !start_ids.contains(&id) => {
                    tracing::debug!(url = %id, why, "not a page of this source");
                    continue;
                }
                Outcome::Gone(why) | Outcome::NotAPage(why) | Outcome::Failed(why) => why,
            };
            if start_ids.contains(&id) {
                return Err(source_error(format!("start url {id}: {failure}")));
            }
            if let Some(known) = previous.items.get(&id) {
                self.keep(&id, known, &memory, &mut kept, &mut links_out, |u| enqueue(u, &mut seen, &mut queue));
            }
            errors.push(ItemError { item: id, message: failure });
        }

        // Pages arrive in whatever order the server answers; changes come out in URL order.
        fetched.sort_by(|a, b| a.id.cmp(&b.id));
        let (fetched, kept) = one_page_per_path(fetched, kept);
        let present: BTreeSet<&str> =
            fetched.iter().map(|i| i.id.as_str()).chain(kept.keys().map(String::as_str)).collect();
        links_out.links.retain(|id, _| present.contains(id.as_str()));
        if truncated.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                max_pages = self.config.max_pages,
                "page limit reached: pages beyond it are not crawled, so deleted"
            );
        }
        let cursor = serde_json::to_string(&links_out).map_err(|e| source_error(format!("cursor: {e}")))?;
        let (mut changes, mut state) = diff(previous, fetched, Some(cursor));
        changes.retain(|c| !matches!(c, crate::Change::Delete { id, .. } if kept.contains_key(id)));
        // A deletion may free the path an upsert takes (an alias that lost its path to the
        // page's own URL): deletions go first so the ingest side never drops the new document.
        changes.sort_by_key(|c| !matches!(c, crate::Change::Delete { .. }));
        state.items.extend(kept);
        errors.sort_by(|a, b| a.item.cmp(&b.item));
        Ok(SyncBatch { changes, errors, state })
    }

    /// A known page that was not modified or could not be read this time stays as it was, and
    /// its remembered links are followed.
    fn keep(
        &self,
        id: &str,
        known: &ItemState,
        memory: &CrawlMemory,
        kept: &mut BTreeMap<String, ItemState>,
        links_out: &mut CrawlMemory,
        mut enqueue: impl FnMut(Url),
    ) {
        kept.insert(id.to_owned(), known.clone());
        let links = memory.links.get(id).cloned().unwrap_or_default();
        for link in links.iter().filter_map(|l| Url::parse(l)) {
            enqueue(link);
        }
        links_out.links.insert(id.to_owned(), links);
    }

    fn start_urls(&self) -> Result<Vec<Url>, ConnectorError> {
        if self.config.start_urls.is_empty() {
            return Err(source_error("no start_urls"));
        }
        self.config
            .start_urls
            .iter()
            .map(|s| Url::parse(s).ok_or_else(|| source_error(format!("start url {s:?} is not an http(s) url"))))
            .collect()
    }

    /// The allowed prefixes, and robots.txt of every origin they name.
    async fn scope(&self, starts: &[Url]) -> Result<Scope, ConnectorError> {
        let prefixes: Vec<String> = if self.config.allowed_prefixes.is_empty() {
            starts.iter().map(|u| format!("{}{}", u.origin(), &u.path[..=u.path.rfind('/').unwrap_or(0)])).collect()
        } else {
            self.config.allowed_prefixes.clone()
        };
        let mut origins = BTreeSet::new();
        for prefix in &prefixes {
            let url = Url::parse(prefix)
                .ok_or_else(|| source_error(format!("allowed prefix {prefix:?} is not an http(s) url")))?;
            origins.insert(url.origin());
        }
        origins.extend(starts.iter().map(Url::origin));
        let mut robots = BTreeMap::new();
        for origin in origins {
            let rules = match self.http.get(&format!("{origin}/robots.txt"), &[]).await {
                Ok(f) => Robots::parse(&String::from_utf8_lossy(&f.body), &self.config.user_agent),
                // RFC 9309: robots.txt "unavailable" (4xx) allows everything; "unreachable"
                // (5xx, network) forbids everything, which here means no sync at all.
                Err(e) if e.status().is_some_and(is_gone) => Robots::default(),
                Err(e) => return Err(source_error(format!("robots.txt of {origin} could not be read: {e}"))),
            };
            robots.insert(origin, rules);
        }
        Ok(Scope { prefixes, robots })
    }

    /// Page URLs listed by the sitemaps, following sitemap indexes.
    async fn read_sitemaps(
        &self,
        roots: Vec<String>,
        errors: &mut Vec<ItemError>,
    ) -> Result<Vec<String>, ConnectorError> {
        let mut queue: VecDeque<String> = roots.into();
        let mut seen = BTreeSet::new();
        let mut pages = Vec::new();
        while let Some(url) = queue.pop_front() {
            if !seen.insert(url.clone()) {
                continue;
            }
            if seen.len() > MAX_SITEMAPS {
                tracing::warn!(url, "too many sitemaps; the rest are not read");
                break;
            }
            let xml = match self.http.get(&url, &[]).await {
                Ok(f) => String::from_utf8_lossy(&f.body).into_owned(),
                Err(e) if e.status().is_some_and(is_gone) => {
                    errors.push(ItemError { item: url, message: format!("sitemap not found: {e}") });
                    continue;
                }
                Err(e) => return Err(source_error(format!("sitemap could not be read: {e}"))),
            };
            let locs = xml_locs(&xml);
            if xml.contains("<sitemapindex") {
                queue.extend(locs);
            } else {
                pages.extend(locs);
            }
        }
        Ok(pages)
    }

    async fn fetch_page(&self, url: Url, known_version: Option<String>, scope: &Scope) -> (Url, Outcome) {
        let target = url.to_string();
        let mut conditions = Vec::new();
        if let Some(version) = &known_version {
            if let Some(etag) = version.strip_prefix("etag:") {
                conditions.push(("if-none-match", etag));
            } else if let Some(date) = version.strip_prefix("lm:") {
                conditions.push(("if-modified-since", date));
            }
        }
        let fetched = match self.http.get(&target, &conditions).await {
            Ok(f) => f,
            Err(e) if e.status().is_some_and(is_gone) => return (url, Outcome::Gone(e.to_string())),
            Err(e) => return (url, Outcome::Failed(e.to_string())),
        };
        if fetched.not_modified() {
            return (url, Outcome::NotModified);
        }
        let outcome = page(&url, fetched, scope);
        (url, outcome)
    }
}

fn page(url: &Url, fetched: Fetched, scope: &Scope) -> Outcome {
    let Some(content_type) = fetched.header("content-type").map(str::to_owned) else {
        return Outcome::Failed("no content-type".to_owned());
    };
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let version = version_of(&fetched);
    let id = url.to_string();
    match mime.as_str() {
        "application/pdf" => Outcome::Page {
            item: Item {
                id: id.clone(),
                path: url.item_path("pdf"),
                title: None,
                content: fetched.body,
                version,
                acl: None,
                url: Some(id),
            },
            links: Vec::new(),
        },
        "text/html" | "application/xhtml+xml" => {
            let text = match decode_html(&fetched.body, &content_type) {
                Ok(text) => text,
                Err(message) => return Outcome::Failed(message),
            };
            let html = Html::parse(&text);
            let base = html.base.as_deref().and_then(|b| url.resolve(b)).unwrap_or_else(|| url.clone());
            let mut links: Vec<String> = html
                .hrefs
                .iter()
                .filter_map(|h| base.resolve(h))
                .filter(|l| scope.in_prefixes(l))
                .map(|l| l.to_string())
                .collect();
            links.sort();
            links.dedup();
            let item = Item {
                id: id.clone(),
                path: url.item_path("html"),
                title: html.title,
                content: text.into_bytes(),
                version,
                acl: None,
                url: Some(id),
            };
            Outcome::Page { item, links }
        }
        other => Outcome::NotAPage(format!("content-type {other}")),
    }
}

/// The server's validator, so the next sync can ask "changed since?"; a hash of the body when
/// the server gives none.
fn version_of(fetched: &Fetched) -> String {
    if let Some(etag) = fetched.header("etag") {
        format!("etag:{etag}")
    } else if let Some(date) = fetched.header("last-modified") {
        format!("lm:{date}")
    } else {
        format!("fnv:{:016x}", fnv1a(&fetched.body))
    }
}

/// 4xx other than throttling: the page is not there (robots.txt: there are no rules).
fn is_gone(status: u16) -> bool {
    (400..500).contains(&status) && status != 429 && status != 408
}

/// Two URLs can map to one path (`/docs/` and `/docs/index.html`, `/a` and `/a.html`): they are
/// nearly always one page under two names, so one item is kept: the URL whose path is its own
/// (no `.html` appended, no query), else the first in order, so the choice is stable.
fn one_page_per_path(
    fetched: Vec<Item>,
    kept: BTreeMap<String, ItemState>,
) -> (Vec<Item>, BTreeMap<String, ItemState>) {
    let mut owners: BTreeMap<&str, (bool, &str)> = BTreeMap::new();
    let candidates = fetched
        .iter()
        .map(|i| (i.id.as_str(), i.path.as_str()))
        .chain(kept.iter().map(|(id, s)| (id.as_str(), s.path.as_str())));
    for (id, path) in candidates {
        let alias = Url::parse(id).is_none_or(|u| !u.owns_path(path));
        let owner = owners.entry(path).or_insert((alias, id));
        if (alias, id) < *owner {
            *owner = (alias, id);
        }
    }
    let owns = |id: &str, path: &str| owners.get(path).is_some_and(|(_, owner)| *owner == id);
    let keep_fetched: Vec<bool> = fetched.iter().map(|i| owns(&i.id, &i.path)).collect();
    let keep_kept: BTreeSet<String> =
        kept.iter().filter(|(id, s)| owns(id, &s.path)).map(|(id, _)| id.clone()).collect();
    for (item, keep) in fetched.iter().zip(&keep_fetched) {
        if !keep {
            tracing::debug!(url = item.id, path = item.path, "another url of the same page is kept");
        }
    }
    let fetched = fetched.into_iter().zip(keep_fetched).filter_map(|(item, keep)| keep.then_some(item)).collect();
    let kept = kept.into_iter().filter(|(id, _)| keep_kept.contains(id)).collect();
    (fetched, kept)
}

fn source_error(message: impl Into<String>) -> ConnectorError {
    ConnectorError::Source { source_name: SOURCE.to_owned(), message: message.into() }
}

/// FNV-1a: a stable hash (std's hasher may change between releases) for versions and paths.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// An http(s) URL in canonical form. Only what a crawler needs: no userinfo, no IDNA, no
/// percent-decoding (the same page is always linked the same way on the sites we crawl).
#[derive(Debug, Clone, PartialEq)]
struct Url {
    scheme: String,
    /// Lower case, with the port when it is not the scheme's default.
    host: String,
    /// Starts with `/`, dot segments removed.
    path: String,
    query: Option<String>,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.origin(), self.path_and_query())
    }
}

impl Url {
    fn parse(text: &str) -> Option<Url> {
        let text = clean(text);
        let text = text.split('#').next().unwrap_or("");
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_ascii_lowercase();
        let default_port = if scheme == "http" { ":80" } else { ":443" };
        let host = authority.strip_suffix(default_port).or_else(|| authority.strip_suffix(':')).unwrap_or(&authority);
        if host.is_empty() {
            return None;
        }
        let (path, query) = split_query(&rest[authority_end..]);
        let path = if path.is_empty() { "/".to_owned() } else { remove_dot_segments(path) };
        Some(Url { scheme, host: host.to_owned(), path, query })
    }

    /// RFC 3986 reference resolution, for the reference forms HTML links use; `None` for other
    /// schemes (`mailto:`, `javascript:`).
    fn resolve(&self, reference: &str) -> Option<Url> {
        let reference = clean(reference);
        let reference = reference.split('#').next().unwrap_or("");
        if reference.starts_with("//") {
            return Url::parse(&format!("{}:{reference}", self.scheme));
        }
        let scheme_end = reference.find(':');
        let before_delimiters = reference.find(['/', '?']).unwrap_or(reference.len());
        if let Some(end) = scheme_end
            && end < before_delimiters
            && reference[..end].chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && reference[..end].chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Url::parse(reference);
        }
        let (path, query) = split_query(reference);
        let mut url = self.clone();
        if path.is_empty() {
            if reference.starts_with('?') {
                url.query = query;
            }
        } else if path.starts_with('/') {
            url.path = remove_dot_segments(path);
            url.query = query;
        } else {
            let directory = &self.path[..=self.path.rfind('/').unwrap_or(0)];
            url.path = remove_dot_segments(&format!("{directory}{path}"));
            url.query = query;
        }
        Some(url)
    }

    fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// `host/path`, ending in `.ext`: a directory becomes `…/index.ext`, a query a slug and a
    /// hash of it (a slug alone would let `?a=b` and `?a-b` collide). A port is joined with `_`,
    /// which no host name contains, so paths of different ports cannot collide.
    fn item_path(&self, ext: &str) -> String {
        let suffix = format!(".{ext}");
        let mut path = format!("{}{}", self.host.replace(':', "_"), self.path);
        if path.ends_with('/') {
            path.push_str("index");
        } else if path.ends_with(&suffix) {
            path.truncate(path.len() - suffix.len());
        }
        if let Some(query) = &self.query {
            let slug = slug(query);
            if !slug.is_empty() {
                path.push('-');
                path.push_str(&slug);
            }
            path.push_str(&format!("-{:08x}", fnv1a(query.as_bytes()) as u32));
        }
        path.push_str(&suffix);
        path
    }

    /// Whether `path` is this URL's own, not one made up for it.
    fn owns_path(&self, path: &str) -> bool {
        self.query.is_none() && path.strip_prefix(&self.host.replace(':', "_")) == Some(self.path.as_str())
    }
}

/// Browsers drop tabs and newlines inside URLs and trim them; spaces must be escaped.
fn clean(text: &str) -> String {
    text.trim().chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect::<String>().replace(' ', "%20")
}

fn split_query(text: &str) -> (&str, Option<String>) {
    match text.split_once('?') {
        Some((path, "")) => (path, None),
        Some((path, query)) => (path, Some(query.to_owned())),
        None => (text, None),
    }
}

fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
        if last && matches!(*segment, "." | "..") {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

/// (allow, pattern); patterns may use `*` and a final `$`.
type Rule = (bool, String);

/// The rules of robots.txt that apply to one user agent (RFC 9309).
#[derive(Debug, Default)]
struct Robots {
    rules: Vec<Rule>,
    sitemaps: Vec<String>,
}

impl Robots {
    /// The groups naming this agent's product token if any, else the `*` groups.
    fn parse(text: &str, user_agent: &str) -> Robots {
        let token = |agent: &str| agent.split('/').next().unwrap_or("").trim().to_ascii_lowercase();
        let ours = token(user_agent);
        let mut groups: Vec<(Vec<String>, Vec<Rule>)> = Vec::new();
        let mut sitemaps = Vec::new();
        let mut reading_agents = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key.trim().to_ascii_lowercase().as_str() {
                "user-agent" => {
                    if !reading_agents {
                        groups.push((Vec::new(), Vec::new()));
                        reading_agents = true;
                    }
                    if let Some((agents, _)) = groups.last_mut() {
                        agents.push(token(value));
                    }
                }
                key @ ("allow" | "disallow") => {
                    reading_agents = false;
                    if let Some((_, rules)) = groups.last_mut()
                        && !value.is_empty()
                    {
                        rules.push((key == "allow", value.to_owned()));
                    }
                }
                "sitemap" => sitemaps.push(value.to_owned()),
                _ => {}
            }
        }
        let named = |name: &str| groups.iter().any(|(agents, _)| agents.iter().any(|a| a == name));
        let chosen = if named(&ours) { ours } else { "*".to_owned() };
        let rules = groups
            .iter()
            .filter(|(agents, _)| agents.contains(&chosen))
            .flat_map(|(_, rules)| rules.iter().cloned())
            .collect();
        Robots { rules, sitemaps }
    }

    /// The longest matching rule decides; on a tie, allow wins; no rule, allowed.
    fn allows(&self, path: &str) -> bool {
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if robots_match(pattern, path) {
                match best {
                    Some((len, allowed)) if len > pattern.len() || (len == pattern.len() && allowed) => {}
                    _ => best = Some((pattern.len(), *allow)),
                }
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

fn robots_match(pattern: &str, path: &str) -> bool {
    let (pattern, anchored) = match pattern.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pattern, false),
    };
    let parts: Vec<&str> = pattern.split('*').collect();
    let Some(rest) = path.strip_prefix(parts[0]) else { return false };
    let mut rest = rest;
    if parts.len() == 1 {
        return !anchored || rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate().skip(1) {
        if anchored && i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// `<loc>` values of a sitemap or sitemap index.
fn xml_locs(xml: &str) -> Vec<String> {
    let mut locs = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<loc>") {
        rest = &rest[start + 5..];
        let Some(end) = rest.find("</loc>") else { break };
        let value = rest[..end].trim();
        let value = value.strip_prefix("<![CDATA[").and_then(|v| v.strip_suffix("]]>")).unwrap_or(value);
        locs.push(decode_entities(value.trim()));
        rest = &rest[end..];
    }
    locs
}

/// What the crawl needs of a page: its title, its links and the base they resolve against.
/// A scan, not a parser: comments, scripts and styles are skipped, attributes may be quoted
/// either way or not at all.
#[derive(Debug, Default)]
struct Html {
    title: Option<String>,
    base: Option<String>,
    hrefs: Vec<String>,
}

impl Html {
    fn parse(html: &str) -> Html {
        // ASCII lower-casing keeps every byte offset, so `lower` finds and `html` slices.
        let lower = html.to_ascii_lowercase();
        let mut page = Html::default();
        let mut at = 0;
        while let Some(offset) = lower[at..].find('<') {
            let open = at + offset;
            if lower[open..].starts_with("<!--") {
                at = lower[open..].find("-->").map_or(lower.len(), |end| open + end + 3);
                continue;
            }
            let name_end =
                lower[open + 1..].find(|c: char| !c.is_ascii_alphanumeric()).map_or(lower.len(), |e| open + 1 + e);
            let name = &lower[open + 1..name_end];
            if name.is_empty() {
                // A closing tag, a doctype, or a `<` in text: nothing to read, and scanning it
                // for its `>` could take an apostrophe in the text for a quote.
                at = open + 1;
                continue;
            }
            let close = tag_end(&lower, name_end);
            let attributes = &html[name_end..close];
            at = (close + 1).min(lower.len());
            match name {
                "a" | "area" => page.hrefs.extend(attribute(attributes, "href")),
                "base" if page.base.is_none() => page.base = attribute(attributes, "href"),
                "title" if page.title.is_none() => {
                    let end = lower[at..].find("</title").map_or(lower.len(), |e| at + e);
                    let title = decode_entities(&html[at..end]).split_whitespace().collect::<Vec<_>>().join(" ");
                    page.title = (!title.is_empty()).then_some(title);
                    at = end;
                }
                "script" | "style" => {
                    at = lower[at..].find(&format!("</{name}")).map_or(lower.len(), |e| at + e);
                }
                _ => {}
            }
        }
        page
    }
}

/// The `>` closing a tag, outside quoted attribute values.
fn tag_end(lower: &str, from: usize) -> usize {
    let mut quote = None;
    for (i, b) in lower.bytes().enumerate().skip(from) {
        match (quote, b) {
            (None, b'>') => return i,
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), b) if q == b => quote = None,
            _ => {}
        }
    }
    lower.len()
}

fn attribute(attributes: &str, wanted: &str) -> Option<String> {
    let bytes = attributes.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'=' && bytes[i] != b'/' {
            i += 1;
        }
        let name = &attributes[name_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = "";
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let start = i + 1;
                i = start;
                while i < bytes.len() && bytes[i] != quote {
                    i += 1;
                }
                value = &attributes[start..i];
                i += 1;
            } else {
                let start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = &attributes[start..i];
            }
        }
        if name.eq_ignore_ascii_case(wanted) {
            return Some(decode_entities(value));
        }
        if i == name_start {
            i += 1;
        }
    }
    None
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let entity = rest[1..].find(';').filter(|&end| end <= 10).map(|end| &rest[1..=end]);
        let decoded = entity.and_then(|e| match e {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => {
                let number = e.strip_prefix('#')?;
                let code = match number.strip_prefix(['x', 'X']) {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => number.parse().ok()?,
                };
                char::from_u32(code)
            }
        });
        match (entity, decoded) {
            (Some(e), Some(c)) => {
                out.push(c);
                rest = &rest[e.len() + 2..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The page as UTF-8, which is what the loaders read. Bytes that are not UTF-8 are decoded as
/// Windows-1252 when the page says Latin-1 or Windows-1252 (WHATWG: browsers treat the one as
/// the other); any other charset is an error for this page.
fn decode_html(body: &[u8], content_type: &str) -> Result<String, String> {
    if let Ok(text) = std::str::from_utf8(body) {
        return Ok(text.to_owned());
    }
    let head = String::from_utf8_lossy(&body[..body.len().min(1024)]).to_ascii_lowercase();
    let charset = charset_in(&content_type.to_ascii_lowercase()).or_else(|| charset_in(&head));
    match charset.as_deref() {
        Some("iso-8859-1" | "latin1" | "latin-1" | "windows-1252" | "cp1252" | "us-ascii") => {
            Ok(body.iter().map(|&b| windows_1252(b)).collect())
        }
        other => Err(format!("not valid UTF-8 (charset {})", other.unwrap_or("undeclared"))),
    }
}

fn charset_in(text: &str) -> Option<String> {
    let after = &text[text.find("charset=")? + 8..];
    let after = after.trim_start_matches(['"', '\'']);
    let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(after.len());
    (end > 0).then(|| after[..end].to_owned())
}

fn windows_1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2c6}',
        '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}', '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}',
        '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}',
        '\u{153}', '\u{9d}', '\u{17e}', '\u{178}',
    ];
    match byte {
        0x80..=0x9f => HIGH[usize::from(byte - 0x80)],
        _ => char::from(byte),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a url")
    }

    #[test]
    fn urls_are_canonical_and_references_resolve() {
        assert_eq!(url("HTTP://Wiki.Example.com:80/docs?x=1#top").to_string(), "http://wiki.example.com/docs?x=1");
        assert_eq!(url("https://wiki.example.com").to_string(), "https://wiki.example.com/");
        let base = url("https://wiki.example.com/docs/it/vpn.html?v=2");
        let resolved = |r: &str| base.resolve(r).map(|u| u.to_string());
        assert_eq!(resolved("setup.html").as_deref(), Some("https://wiki.example.com/docs/it/setup.html"));
        assert_eq!(resolved("../hr/leave.html#x").as_deref(), Some("https://wiki.example.com/docs/hr/leave.html"));
        assert_eq!(resolved("../../../../a").as_deref(), Some("https://wiki.example.com/a"));
        assert_eq!(resolved("/root?q=a b").as_deref(), Some("https://wiki.example.com/root?q=a%20b"));
        assert_eq!(resolved("//cdn.example.com/x").as_deref(), Some("https://cdn.example.com/x"));
        assert_eq!(resolved("?page=2").as_deref(), Some("https://wiki.example.com/docs/it/vpn.html?page=2"));
        assert_eq!(resolved("#top").as_deref(), Some("https://wiki.example.com/docs/it/vpn.html?v=2"));
        assert_eq!(resolved("./").as_deref(), Some("https://wiki.example.com/docs/it/"));
        assert_eq!(resolved("..").as_deref(), Some("https://wiki.example.com/docs/"));
        assert_eq!(resolved("mailto:it@example.com"), None);
        assert_eq!(resolved("javascript:void(0)"), None);
    }

    #[test]
    fn item_paths_end_in_the_extension_and_keep_queries_apart() {
        assert_eq!(url("https://wiki.example.com/docs/vpn").item_path("html"), "wiki.example.com/docs/vpn.html");
        assert_eq!(url("https://wiki.example.com/docs/vpn.html").item_path("html"), "wiki.example.com/docs/vpn.html");
        assert_eq!(url("http://127.0.0.1:8080/docs/").item_path("html"), "127.0.0.1_8080/docs/index.html");
        let a = url("https://w.example.com/search?a=b").item_path("html");
        let b = url("https://w.example.com/search?a-b").item_path("html");
        assert!(a.starts_with("w.example.com/search-a-b-") && a.ends_with(".html"), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn robots_longest_match_wins_and_our_group_replaces_the_star_group() {
        let text = "User-agent: *\nDisallow: /\n\nUser-agent: Other\nUser-agent: LoreBot\nDisallow: /docs/private/ # hr\nAllow: /docs/private/handbook\nDisallow: /*.pdf$\nSitemap: https://w.example.com/sitemap.xml\n";
        let robots = Robots::parse(text, "LoreBot/1.0");
        assert!(robots.allows("/docs/vpn.html"));
        assert!(!robots.allows("/docs/private/salaries.html"));
        assert!(robots.allows("/docs/private/handbook.html"));
        assert!(!robots.allows("/docs/forms/leave.pdf"));
        assert!(robots.allows("/docs/forms/leave.pdf?download=1"));
        assert_eq!(robots.sitemaps, vec!["https://w.example.com/sitemap.xml"]);
        let others = Robots::parse(text, "SomeBot");
        assert!(!others.allows("/docs/vpn.html"));
        assert!(Robots::parse("", "LoreBot").allows("/anything"));
    }

    #[test]
    fn html_scan_finds_title_links_and_base_but_not_commented_or_scripted_ones() {
        let html = r#"<html><head><TITLE> VPN &amp; remote
            access </TITLE><base href="/docs/"><script>var s = "<a href='nope'>";</script></head>
            <body><!-- <a href="old.html"> --><a class=x HREF=setup.html>Setup</a>
            5 < 6, don't worry <a title="a > b" href='faq.html?x=1&amp;y=2'>FAQ</a><a name="top">top</a></body></html>"#;
        let page = Html::parse(html);
        assert_eq!(page.title.as_deref(), Some("VPN & remote access"));
        assert_eq!(page.base.as_deref(), Some("/docs/"));
        assert_eq!(page.hrefs, vec!["setup.html", "faq.html?x=1&y=2"]);
    }

    #[test]
    fn sitemap_locs_are_unescaped() {
        let xml = "<urlset><url><loc> https://w.example.com/a?x=1&amp;y=2 </loc></url><url><loc><![CDATA[https://w.example.com/b]]></loc></url></urlset>";
        assert_eq!(xml_locs(xml), vec!["https://w.example.com/a?x=1&y=2", "https://w.example.com/b"]);
    }

    #[test]
    fn latin1_pages_become_utf8_and_undeclared_bytes_are_an_error() {
        assert_eq!(decode_html(b"caf\xe9 \x80", "text/html; charset=ISO-8859-1").as_deref(), Ok("café €"));
        assert_eq!(
            decode_html(b"<meta charset='windows-1252'>caf\xe9", "text/html").as_deref(),
            Ok("<meta charset='windows-1252'>café")
        );
        assert!(decode_html(b"caf\xe9", "text/html").is_err());
    }
}
