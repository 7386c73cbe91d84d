//! The web crawler against a loopback intranet site: robots.txt with a group for LoreBot, a
//! sitemap index, links of every relative form, off-prefix and disallowed links, an alias of the
//! home page, a Latin-1 page, a page of broken bytes and one without a Content-Type, a 429 once,
//! and a second sync after a page was removed, one moved, one failing, and one answering 304
//! whose links must still be followed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use lore_connectors::http::Http;
use lore_connectors::web::{WebConfig, WebConnector};
use lore_connectors::{Change, ConnectorError, SyncBatch, SyncState};

struct Resource {
    status: u16,
    content_type: Option<&'static str>,
    etag: Option<&'static str>,
    body: Vec<u8>,
}

fn html(body: &str) -> Resource {
    Resource { status: 200, content_type: Some("text/html; charset=utf-8"), etag: None, body: body.as_bytes().to_vec() }
}

#[derive(Default)]
struct Site {
    resources: HashMap<String, Resource>,
    throttle_once: HashSet<String>,
    requests: Vec<String>,
    not_modified: Vec<String>,
}

type Shared = Arc<Mutex<Site>>;

async fn serve(State(site): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let target = uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    let mut site = site.lock().unwrap();
    site.requests.push(target.clone());
    let response = Response::builder();
    if site.throttle_once.remove(&target) {
        return response.status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "1").body(Body::empty()).unwrap();
    }
    let Some(resource) = site.resources.get(&target) else {
        return response.status(StatusCode::NOT_FOUND).body(Body::from("not found")).unwrap();
    };
    let etag = resource.etag;
    if etag.is_some() && headers.get("if-none-match").and_then(|v| v.to_str().ok()) == etag {
        site.not_modified.push(target);
        return response.status(StatusCode::NOT_MODIFIED).body(Body::empty()).unwrap();
    }
    let mut response = response.status(resource.status);
    if let Some(content_type) = resource.content_type {
        response = response.header("content-type", content_type);
    }
    if let Some(etag) = etag {
        response = response.header("etag", etag);
    }
    response.body(Body::from(resource.body.clone())).unwrap()
}

async fn start(site: impl FnOnce(&str) -> Site) -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shared = Arc::new(Mutex::new(site(&base)));
    let app = Router::new().fallback(serve).with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

fn intranet(base: &str) -> Site {
    let home = r##"<!doctype html><html><head><title>IT &amp; HR docs</title></head><body>
        <nav><a href="#top">Top</a> <a href="mailto:it@example.com">Mail IT</a></nav>
        <a href="vpn">VPN</a> <a href="onboarding/">Onboarding</a> <a href="faq.html">FAQ</a>
        <a href="private/salaries.html">Salaries</a> <a href="private/handbook.html">Handbook</a>
        <a href="https://elsewhere.example.com/docs/x.html">Partner</a> <a href="/blog/launch.html">Blog</a>
        <a href="latin.html">Café</a> <a href="broken.html">Broken</a> <a href="raw">Raw</a>
        <a href="data.csv">Data</a> <a href="logo.png">Logo</a>
        <a href="search?q=vpn&amp;lang=en#results">Search VPN</a></body></html>"##;
    let resources = HashMap::from([
        (
            "/robots.txt".to_owned(),
            Resource {
                status: 200,
                content_type: Some("text/plain"),
                etag: None,
                body: format!(
                    "User-agent: *\nDisallow: /\n\nUser-agent: LoreBot\nDisallow: /docs/private/\n\
                     Allow: /docs/private/handbook.html\n\nSitemap: {base}/sitemap-index.xml\n"
                )
                .into_bytes(),
            },
        ),
        (
            "/sitemap-index.xml".to_owned(),
            Resource {
                status: 200,
                content_type: Some("application/xml"),
                etag: None,
                body: format!(
                    "<?xml version=\"1.0\"?><sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                     <sitemap><loc>{base}/sitemaps/pages.xml</loc></sitemap></sitemapindex>"
                )
                .into_bytes(),
            },
        ),
        (
            "/sitemaps/pages.xml".to_owned(),
            Resource {
                status: 200,
                content_type: Some("application/xml"),
                etag: None,
                body: format!(
                    "<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\
                     <url><loc>{base}/docs/onboarding/leave.html</loc></url>\
                     <url><loc>{base}/docs/private/salaries.html</loc></url>\
                     <url><loc>{base}/blog/launch.html</loc></url></urlset>"
                )
                .into_bytes(),
            },
        ),
        ("/docs/index.html".to_owned(), html(home)),
        ("/docs/".to_owned(), html(home)),
        ("/docs/vpn".to_owned(), html("<title>VPN</title><p>Use the VPN from home.</p>")),
        (
            "/docs/onboarding/".to_owned(),
            html(
                "<title>Onboarding</title><a href='leave.html'>Leave</a> <a href=old-policy.html>Policy</a> \
                 <a href=\"../\">Docs</a> <a href=\"../vpn\">VPN</a>",
            ),
        ),
        (
            "/docs/onboarding/leave.html".to_owned(),
            Resource {
                etag: Some("\"leave-v1\""),
                ..html("<title>Leave</title><p>See <a href=\"./holidays.html\">holidays</a>.</p>")
            },
        ),
        ("/docs/onboarding/holidays.html".to_owned(), html("<title>Holidays</title><p>25 days.</p>")),
        ("/docs/onboarding/old-policy.html".to_owned(), html("<title>Travel policy</title><p>Economy.</p>")),
        ("/docs/private/handbook.html".to_owned(), html("<title>Handbook</title>")),
        ("/docs/private/salaries.html".to_owned(), html("<title>Salaries</title>")),
        ("/docs/faq.html".to_owned(), html("<title>FAQ</title>")),
        ("/blog/launch.html".to_owned(), html("<title>Launch</title>")),
        ("/docs/search?q=vpn&lang=en".to_owned(), html("<title>Search: vpn</title>")),
        (
            "/docs/latin.html".to_owned(),
            Resource {
                content_type: Some("text/html; charset=ISO-8859-1"),
                body: b"<title>Caf\xe9 menu</title><p>Cr\xe8me br\xfbl\xe9e</p>".to_vec(),
                ..html("")
            },
        ),
        ("/docs/broken.html".to_owned(), Resource { body: b"<title>\xff\xfe broken</title>".to_vec(), ..html("") }),
        ("/docs/raw".to_owned(), Resource { content_type: None, ..html("<title>Raw</title>") }),
        ("/docs/data.csv".to_owned(), Resource { content_type: Some("text/csv"), ..html("a,b\n1,2\n") }),
    ]);
    Site { resources, throttle_once: HashSet::from(["/docs/vpn".to_owned()]), ..Site::default() }
}

fn connector(base: &str) -> WebConnector {
    let config: WebConfig =
        serde_json::from_value(serde_json::json!({ "start_urls": [format!("{base}/docs/index.html")] })).unwrap();
    // `Http { .., ..Http::new(..) }` is not allowed outside the crate: `client` is private.
    let mut http = Http::new(&config.user_agent).unwrap();
    http.max_attempts = 3;
    http.initial_backoff = Duration::from_millis(10);
    WebConnector::new(config, http)
}

fn upserted(batch: &SyncBatch) -> BTreeSet<String> {
    batch
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert(item) => Some(item.id.clone()),
            Change::Delete { .. } => None,
        })
        .collect()
}

fn deleted(batch: &SyncBatch) -> BTreeSet<(String, String)> {
    batch
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Delete { id, path } => Some((id.clone(), path.clone())),
            Change::Upsert(_) => None,
        })
        .collect()
}

#[tokio::test]
async fn crawls_within_prefix_and_robots_then_syncs_removals_moves_failures_and_304s() {
    let (base, site) = start(intranet).await;
    let host = base.trim_start_matches("http://").replace(':', "_");
    let url = |path: &str| format!("{base}{path}");
    let web = connector(&base);

    let first = web.sync(&SyncState::default()).await.unwrap();
    let expected: BTreeSet<String> = [
        "/docs/index.html",
        "/docs/vpn",
        "/docs/onboarding/",
        "/docs/onboarding/leave.html",
        "/docs/onboarding/holidays.html",
        "/docs/onboarding/old-policy.html",
        "/docs/private/handbook.html",
        "/docs/faq.html",
        "/docs/latin.html",
        "/docs/search?q=vpn&lang=en",
    ]
    .iter()
    .map(|p| url(p))
    .collect();
    assert_eq!(upserted(&first), expected);
    assert!(deleted(&first).is_empty());
    let items: HashMap<String, _> = first
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Upsert(item) => Some((item.id.clone(), item.clone())),
            Change::Delete { .. } => None,
        })
        .collect();
    let vpn = &items[&url("/docs/vpn")];
    assert_eq!(vpn.path, format!("{host}/docs/vpn.html"));
    assert_eq!(vpn.title.as_deref(), Some("VPN"));
    assert_eq!(vpn.acl, None);
    assert_eq!(vpn.url.as_deref(), Some(url("/docs/vpn").as_str()));
    assert!(String::from_utf8(vpn.content.clone()).unwrap().contains("Use the VPN from home."));
    assert_eq!(items[&url("/docs/index.html")].title.as_deref(), Some("IT & HR docs"));
    assert_eq!(items[&url("/docs/onboarding/")].path, format!("{host}/docs/onboarding/index.html"));
    assert_eq!(items[&url("/docs/onboarding/leave.html")].version, "etag:\"leave-v1\"");
    let search = &items[&url("/docs/search?q=vpn&lang=en")].path;
    assert!(search.starts_with(&format!("{host}/docs/search-q-vpn-lang-en-")) && search.ends_with(".html"), "{search}");
    let latin = &items[&url("/docs/latin.html")];
    assert_eq!(latin.title.as_deref(), Some("Café menu"));
    assert!(String::from_utf8(latin.content.clone()).unwrap().contains("Crème brûlée"));
    let paths: BTreeSet<&str> = items.values().map(|i| i.path.as_str()).collect();
    assert_eq!(paths.len(), items.len(), "paths are unique; /docs/ is an alias of /docs/index.html");
    assert!(paths.iter().all(|p| p.ends_with(".html")));

    let failed: Vec<&str> = first.errors.iter().map(|e| e.item.as_str()).collect();
    assert_eq!(failed, vec![url("/docs/broken.html"), url("/docs/raw")]);
    assert!(first.errors[0].message.contains("UTF-8"), "{:?}", first.errors);
    assert!(first.errors[1].message.contains("content-type"), "{:?}", first.errors);
    {
        let site = site.lock().unwrap();
        for never in ["/blog/launch.html", "/docs/private/salaries.html", "/docs/logo.png"] {
            assert!(!site.requests.iter().any(|r| r == never), "{never} must not be requested");
        }
        assert_eq!(site.requests.iter().filter(|r| *r == "/docs/vpn").count(), 2, "429 once, then the page");
        assert!(site.requests.iter().any(|r| r == "/docs/data.csv"), "a linked csv is fetched, then skipped");
        assert_eq!(site.requests.iter().filter(|r| *r == "/docs/index.html").count(), 1);
    }
    assert_eq!(first.state.items.len(), expected.len());

    {
        let mut site = site.lock().unwrap();
        site.requests.clear();
        site.resources.remove("/docs/faq.html");
        site.resources.remove("/docs/onboarding/old-policy.html");
        site.resources.insert("/docs/onboarding/travel-policy.html".into(), html("<title>Travel policy</title>"));
        site.resources.insert(
            "/docs/onboarding/".into(),
            html("<title>Onboarding</title><a href='leave.html'>Leave</a> <a href=travel-policy.html>Policy</a>"),
        );
        site.resources.get_mut("/docs/vpn").unwrap().status = 500;
    }
    let second = web.sync(&first.state).await.unwrap();
    assert_eq!(
        deleted(&second),
        BTreeSet::from([
            (url("/docs/faq.html"), format!("{host}/docs/faq.html")),
            (url("/docs/onboarding/old-policy.html"), format!("{host}/docs/onboarding/old-policy.html")),
        ])
    );
    assert_eq!(
        upserted(&second),
        BTreeSet::from([url("/docs/onboarding/"), url("/docs/onboarding/travel-policy.html")]),
        "unchanged pages are not reported again"
    );
    assert!(matches!(second.changes[0], Change::Delete { .. }) && matches!(second.changes[1], Change::Delete { .. }));
    let failed: Vec<&str> = second.errors.iter().map(|e| e.item.as_str()).collect();
    assert_eq!(failed, vec![url("/docs/broken.html"), url("/docs/raw"), url("/docs/vpn")]);
    {
        let site = site.lock().unwrap();
        assert_eq!(site.not_modified, vec!["/docs/onboarding/leave.html"]);
        assert!(
            site.requests.iter().any(|r| r == "/docs/onboarding/holidays.html"),
            "the 304 page's remembered links are followed"
        );
    }
    let state = &second.state.items;
    assert!(state.contains_key(&url("/docs/onboarding/holidays.html")));
    assert!(state.contains_key(&url("/docs/onboarding/leave.html")), "a 304 page is still present");
    assert!(state.contains_key(&url("/docs/vpn")), "a page failing this time is kept, not deleted");
    assert_eq!(state.len(), expected.len() - 1);

    site.lock().unwrap().resources.get_mut("/docs/vpn").unwrap().status = 200;
    let third = web.sync(&second.state).await.unwrap();
    assert!(third.changes.is_empty(), "{:?}", third.changes);
    assert_eq!(third.state, second.state);
}

#[tokio::test]
async fn an_unreadable_robots_txt_or_start_url_fails_the_sync_instead_of_deleting_the_site() {
    let (base, site) = start(intranet).await;
    let web = connector(&base);
    let first = web.sync(&SyncState::default()).await.unwrap();

    site.lock().unwrap().resources.get_mut("/robots.txt").unwrap().status = 503;
    let error = web.sync(&first.state).await.unwrap_err();
    assert!(matches!(error, ConnectorError::Source { ref message, .. } if message.contains("robots.txt")), "{error}");

    {
        let mut site = site.lock().unwrap();
        site.resources.get_mut("/robots.txt").unwrap().status = 200;
        site.resources.remove("/docs/index.html");
    }
    let error = web.sync(&first.state).await.unwrap_err();
    assert!(matches!(error, ConnectorError::Source { ref message, .. } if message.contains("start url")), "{error}");

    site.lock().unwrap().resources.remove("/robots.txt");
    let error = web.sync(&first.state).await.unwrap_err();
    assert!(
        matches!(error, ConnectorError::Source { ref message, .. } if message.contains("start url")),
        "a missing robots.txt allows everything, so the sync gets as far as the missing start url: {error}"
    );
}

#[tokio::test]
async fn max_pages_bounds_the_requests_and_the_items() {
    let (base, site) = start(intranet).await;
    let config: WebConfig = serde_json::from_value(serde_json::json!({
        "start_urls": [format!("{base}/docs/index.html")],
        "allowed_prefixes": [format!("{base}/docs/")],
        "max_pages": 2,
    }))
    .unwrap();
    let web = WebConnector::new(config, Http::new("LoreBot/1.0").unwrap());
    let batch = web.sync(&SyncState::default()).await.unwrap();
    assert_eq!(
        upserted(&batch),
        BTreeSet::from([format!("{base}/docs/index.html"), format!("{base}/docs/onboarding/leave.html")]),
        "the start url, then the sitemap's one allowed page; the home page's links are over the limit"
    );
    let pages = site.lock().unwrap().requests.iter().filter(|r| r.starts_with("/docs/")).count();
    assert_eq!(pages, 2);
}
