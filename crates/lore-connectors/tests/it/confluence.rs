//! The Confluence connector against a loopback server speaking the v1 content API: a space listed
//! over three pages of results (with the server capping `limit` as Confluence does), a 429 once,
//! read restrictions on a page and inherited by its child, PDF and DOCX attachments, and a second
//! sync after a rename (which moves its attachment too), a deletion, a restriction added, and a
//! page that lost its body.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lore_connectors::confluence::{ConfluenceConfig, ConfluenceConnector, Credentials};
use lore_connectors::http::Http;
use lore_connectors::{Change, Item, SyncState};
use serde_json::{Value, json};

/// `bot@example.com:api-token`, base64-encoded by hand, so the connector's encoding is checked.
const EXPECTED_AUTHORIZATION: &str = "Basic Ym90QGV4YW1wbGUuY29tOmFwaS10b2tlbg==";
/// Confluence Cloud caps pages with body expansions below what a client asks for.
const SERVER_LIMIT: usize = 3;
const ALICE: &str = "5b10ac8d82e05b22cc7d4ef5";

#[derive(Clone)]
struct Page {
    id: &'static str,
    title: String,
    version: u64,
    body: Option<String>,
    ancestors: Vec<&'static str>,
    users: Vec<&'static str>,
    groups: Vec<&'static str>,
}

struct Attachment {
    id: &'static str,
    page: &'static str,
    filename: &'static str,
    version: u64,
    bytes: &'static [u8],
}

struct Wiki {
    base: String,
    pages: Vec<Page>,
    attachments: Vec<Attachment>,
    throttle_next_page: bool,
    listing_requests: usize,
    downloads: Vec<String>,
}

type Shared = Arc<Mutex<Wiki>>;

fn page(id: &'static str, title: &str, version: u64, ancestors: &[&'static str]) -> Page {
    Page {
        id,
        title: title.to_owned(),
        version,
        body: Some(format!("<p>About {title}.</p><ac:structured-macro ac:name=\"toc\"/>")),
        ancestors: ancestors.to_vec(),
        users: Vec::new(),
        groups: Vec::new(),
    }
}

fn fixtures() -> Vec<Page> {
    let mut salaries = page("103", "Salaries", 7, &[]);
    salaries.users = vec![ALICE];
    salaries.groups = vec!["hr"];
    let mut broken = page("106", "Half-migrated page", 1, &[]);
    broken.body = None;
    vec![
        page("101", "Onboarding", 4, &[]),
        page("102", "Deploy Guide", 2, &[]),
        salaries,
        page("104", "Salary bands 2026", 1, &["103"]),
        page("105", "Old runbook: R&D <legacy>", 9, &[]),
        broken,
        page("107", "First week", 2, &["101"]),
    ]
}

fn page_json(page: &Page, wiki: &Wiki, expand: &str) -> Value {
    let titles: HashMap<&str, &str> = wiki.pages.iter().map(|p| (p.id, p.title.as_str())).collect();
    let mut value = json!({
        "id": page.id,
        "type": "page",
        "status": "current",
        "title": page.title,
        "_links": {
            "webui": format!("/spaces/ENG/pages/{}/{}", page.id, page.title.replace(' ', "+")),
            "self": format!("{}/rest/api/content/{}", wiki.base, page.id),
        },
    });
    if expand.contains("body.storage")
        && let Some(body) = &page.body
    {
        value["body"] = json!({ "storage": { "value": body, "representation": "storage" } });
    }
    if expand.contains("version") {
        value["version"] = json!({ "number": page.version, "when": "2026-11-02T09:14:00.000Z", "minorEdit": false });
    }
    if expand.contains("ancestors") {
        value["ancestors"] = page
            .ancestors
            .iter()
            .map(|id| json!({ "id": id, "type": "page", "status": "current", "title": titles.get(id) }))
            .collect();
    }
    if expand.contains("restrictions.read.restrictions.user") && expand.contains("restrictions.read.restrictions.group")
    {
        let users: Vec<Value> = page
            .users
            .iter()
            .map(|id| json!({ "type": "known", "accountId": id, "accountType": "atlassian", "displayName": "Alice" }))
            .collect();
        let groups: Vec<Value> = page.groups.iter().map(|name| json!({ "type": "group", "name": name })).collect();
        value["restrictions"] = json!({
            "read": {
                "operation": "read",
                "restrictions": {
                    "user": { "results": users, "start": 0, "limit": 200, "size": users.len() },
                    "group": { "results": groups, "start": 0, "limit": 200, "size": groups.len() },
                },
            },
        });
    }
    value
}

async fn content(
    State(wiki): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut wiki = wiki.lock().unwrap();
    wiki.listing_requests += 1;
    if !authorized(&headers) {
        return (StatusCode::UNAUTHORIZED, Json(json!({ "statusCode": 401, "message": "Unauthorized" })))
            .into_response();
    }
    let start: usize = query.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
    if start > 0 && wiki.throttle_next_page {
        wiki.throttle_next_page = false;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "Rate limit exceeded").into_response();
    }
    let in_space = query.get("spaceKey").map(String::as_str) == Some("ENG")
        && query.get("type").map(String::as_str) == Some("page");
    let all: Vec<&Page> = if in_space { wiki.pages.iter().collect() } else { Vec::new() };
    let limit = query.get("limit").and_then(|s| s.parse().ok()).unwrap_or(25).min(SERVER_LIMIT);
    let expand = query.get("expand").cloned().unwrap_or_default();
    let results: Vec<Value> = all.iter().skip(start).take(limit).map(|p| page_json(p, &wiki, &expand)).collect();
    let mut links = json!({
        "base": wiki.base,
        "context": "/wiki",
        "self": format!("{}/rest/api/content?spaceKey=ENG&type=page", wiki.base),
    });
    if start + limit < all.len() {
        links["next"] = json!(format!(
            "/rest/api/content?spaceKey=ENG&type=page&expand={expand}&limit={limit}&start={}",
            start + limit
        ));
    }
    Json(json!({ "results": results, "start": start, "limit": limit, "size": results.len(), "_links": links }))
        .into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(EXPECTED_AUTHORIZATION)
}

async fn attachments(State(wiki): State<Shared>, headers: HeaderMap, Path(page): Path<String>) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let wiki = wiki.lock().unwrap();
    let results: Vec<Value> = wiki
        .attachments
        .iter()
        .filter(|a| a.page == page)
        .map(|a| {
            let media_type = if a.filename.ends_with(".png") { "image/png" } else { "application/octet-stream" };
            json!({
                "id": a.id,
                "type": "attachment",
                "status": "current",
                "title": a.filename,
                "version": { "number": a.version },
                "metadata": { "mediaType": media_type },
                "extensions": { "mediaType": media_type, "fileSize": a.bytes.len() },
                "_links": {
                    "webui": format!("/pages/viewpageattachments.action?pageId={page}&preview=/{page}/{}", a.filename),
                    "download": format!("/download/attachments/{page}/{}?version={}&api=v2", a.filename.replace(' ', "%20"), a.version),
                },
            })
        })
        .collect();
    let size = results.len();
    Json(json!({ "results": results, "start": 0, "limit": 50, "size": size, "_links": { "base": wiki.base, "context": "/wiki" } }))
        .into_response()
}

async fn download(
    State(wiki): State<Shared>,
    headers: HeaderMap,
    Path((page, filename)): Path<(String, String)>,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut wiki = wiki.lock().unwrap();
    let Some(bytes) = wiki.attachments.iter().find(|a| a.page == page && a.filename == filename).map(|a| a.bytes)
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    wiki.downloads.push(filename);
    bytes.into_response()
}

async fn serve() -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/wiki", listener.local_addr().unwrap());
    let wiki = Arc::new(Mutex::new(Wiki {
        base: base.clone(),
        pages: fixtures(),
        attachments: vec![
            Attachment {
                id: "att9001",
                page: "103",
                filename: "Pay Policy.pdf",
                version: 2,
                bytes: b"%PDF-1.7 pay policy",
            },
            Attachment {
                id: "att9002",
                page: "102",
                filename: "Runbook.docx",
                version: 1,
                bytes: b"PK\x03\x04 runbook",
            },
            Attachment { id: "att9003", page: "104", filename: "Bands.PDF", version: 5, bytes: b"%PDF-1.4 bands" },
            Attachment { id: "att9004", page: "101", filename: "office map.png", version: 1, bytes: b"\x89PNG" },
        ],
        throttle_next_page: true,
        listing_requests: 0,
        downloads: Vec::new(),
    }));
    let app = Router::new()
        .route("/wiki/rest/api/content", get(content))
        .route("/wiki/rest/api/content/{id}/child/attachment", get(attachments))
        .route("/wiki/download/attachments/{page}/{filename}", get(download))
        .with_state(wiki.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, wiki)
}

fn connector(base: &str, api_token: &str) -> ConfluenceConnector {
    let config: ConfluenceConfig = serde_json::from_value(json!({
        "base_url": format!("{base}/"),
        "spaces": ["ENG"],
        "space_groups": { "ENG": ["group:engineering"] },
        "attachments": true,
    }))
    .unwrap();
    let credentials = Credentials::Basic { email: "bot@example.com".into(), api_token: api_token.into() };
    // `Http { .., ..Http::new(..) }` is out of reach here: its client field is private to the crate.
    let mut http = Http::new("lore-test").unwrap();
    http.max_attempts = 3;
    http.initial_backoff = Duration::from_millis(10);
    ConfluenceConnector::new(config, credentials, http)
}

fn upserted(changes: &[Change]) -> HashMap<String, Item> {
    changes
        .iter()
        .filter_map(|change| match change {
            Change::Upsert(item) => Some((item.id.clone(), item.clone())),
            Change::Delete { .. } => None,
        })
        .collect()
}

fn acl(principals: &[&str]) -> Option<Vec<String>> {
    Some(principals.iter().map(|p| p.to_string()).collect())
}

#[tokio::test]
async fn syncs_pages_with_inherited_restrictions_then_renames_deletions_and_acl_changes() {
    let (base, wiki) = serve().await;
    let connector = connector(&base, "api-token");

    let first = connector.sync(&SyncState::default()).await.unwrap();
    assert_eq!(wiki.lock().unwrap().listing_requests, 4, "three pages of results and one 429");
    assert_eq!(first.errors.len(), 1, "{:?}", first.errors);
    assert_eq!(first.errors[0].item, "page:106");
    assert!(first.errors[0].message.contains("body"), "{}", first.errors[0].message);
    assert!(first.changes.iter().all(|c| matches!(c, Change::Upsert(_))));
    let items = upserted(&first.changes);
    assert_eq!(items.len(), 9, "six pages and three PDF or DOCX attachments; the PNG is left out");

    let onboarding = &items["page:101"];
    assert_eq!(onboarding.path, "ENG/101-onboarding.html");
    assert_eq!(onboarding.version, "4");
    assert_eq!(onboarding.acl, acl(&["group:engineering"]));
    assert_eq!(onboarding.url.as_deref(), Some(format!("{base}/spaces/ENG/pages/101/Onboarding").as_str()));
    let html = String::from_utf8(onboarding.content.clone()).unwrap();
    assert!(html.contains("<title>Onboarding</title>"), "{html}");
    assert!(html.contains("<p>About Onboarding.</p>"), "{html}");

    let runbook = &items["page:105"];
    assert_eq!(runbook.path, "ENG/105-old-runbook-r-d-legacy.html");
    assert!(String::from_utf8_lossy(&runbook.content).contains("<title>Old runbook: R&amp;D &lt;legacy&gt;</title>"));

    let restricted = acl(&["group:hr", &format!("user:{ALICE}")]);
    assert_eq!(items["page:103"].acl, restricted);
    assert_eq!(items["page:104"].acl, restricted, "a child inherits its parent's read restrictions");
    assert_eq!(items["page:107"].acl, acl(&["group:engineering"]));

    let policy = &items["attachment:att9001"];
    assert_eq!(policy.path, "ENG/103-salaries/att9001-pay-policy.pdf");
    assert_eq!(policy.content, b"%PDF-1.7 pay policy");
    assert_eq!(policy.version, "2");
    assert_eq!(policy.acl, restricted, "an attachment is readable by whoever may read its page");
    assert_eq!(items["attachment:att9003"].path, "ENG/104-salary-bands-2026/att9003-bands.pdf");
    assert_eq!(wiki.lock().unwrap().downloads.len(), 3);

    {
        let mut wiki = wiki.lock().unwrap();
        wiki.listing_requests = 0;
        wiki.downloads.clear();
        wiki.pages.retain(|p| p.id != "105");
        for page in &mut wiki.pages {
            match page.id {
                "101" => page.groups = vec!["onboarding-team"],
                "102" => {
                    page.title = "Deployment Guide".into();
                    page.version = 3;
                }
                "103" => page.body = None,
                _ => {}
            }
        }
    }

    let second = connector.sync(&first.state).await.unwrap();
    assert_eq!(wiki.lock().unwrap().listing_requests, 3, "two full pages, then an empty one to be sure");
    let mut failed: Vec<&str> = second.errors.iter().map(|e| e.item.as_str()).collect();
    failed.sort_unstable();
    assert_eq!(failed, ["page:103", "page:106"]);
    let summary: Vec<(&str, &str, &str)> = second
        .changes
        .iter()
        .map(|change| match change {
            Change::Upsert(item) => ("upsert", item.id.as_str(), item.path.as_str()),
            Change::Delete { id, path } => ("delete", id.as_str(), path.as_str()),
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("upsert", "page:101", "ENG/101-onboarding.html"),
            ("delete", "attachment:att9002", "ENG/102-deploy-guide/att9002-runbook.docx"),
            ("upsert", "attachment:att9002", "ENG/102-deployment-guide/att9002-runbook.docx"),
            ("delete", "page:102", "ENG/102-deploy-guide.html"),
            ("upsert", "page:102", "ENG/102-deployment-guide.html"),
            ("upsert", "page:107", "ENG/107-first-week.html"),
            ("delete", "page:105", "ENG/105-old-runbook-r-d-legacy.html"),
        ],
        "unchanged page:104 and its attachment, and unreadable page:103 and its attachment, are not reported"
    );
    assert_eq!(wiki.lock().unwrap().downloads, ["Runbook.docx"], "only the moved attachment is downloaded again");
    assert_eq!(second.state.items["attachment:att9001"], first.state.items["attachment:att9001"]);
    let items = upserted(&second.changes);
    assert_eq!(items["page:101"].acl, acl(&["group:onboarding-team"]));
    assert_eq!(items["page:101"].version, "4", "a restriction change alone does not bump the version");
    assert_eq!(items["page:107"].acl, acl(&["group:onboarding-team"]));
    assert_eq!(second.state.items["page:103"], first.state.items["page:103"], "a page unreadable once keeps its state");
    assert!(!second.state.items.contains_key("page:105"));
}

#[tokio::test]
async fn a_space_that_cannot_be_listed_fails_the_sync() {
    let (base, wiki) = serve().await;
    wiki.lock().unwrap().throttle_next_page = false;
    let error = connector(&base, "wrong-token").sync(&SyncState::default()).await.unwrap_err();
    assert!(error.to_string().contains("401"), "{error}");
}
