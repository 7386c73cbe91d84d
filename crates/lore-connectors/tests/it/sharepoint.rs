//! The SharePoint connector against a loopback Microsoft Graph that keeps a small document library
//! as a tree of driveItems with a change generation each, and answers the delta protocol from it:
//! a full delta in pages (`@odata.nextLink`), delta links that return what changed since, 410 for
//! an expired token, per-item permissions, pre-authenticated download URLs and `/content`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lore_connectors::http::Http;
use lore_connectors::sharepoint::{AccessToken, DriveConfig, GroupNames, SharePointConfig, SharePointConnector};
use lore_connectors::{Change, ConnectorError, Item, SyncState};
use serde_json::{Value, json};

const DRIVE: &str = "b!Xm1aGfYvI0qZ2uTeHRdocs";
const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJub25jZSI6Imxvb3BiYWNrIn0";

#[derive(Clone)]
enum Kind {
    Root,
    Folder,
    File { content: String, c_tag: u32, permissions: Vec<Value>, download: Download },
}

#[derive(Clone, Copy, PartialEq)]
enum Download {
    /// `@microsoft.graph.downloadUrl`, pre-authenticated.
    Url,
    /// The same, but the storage host answers 500.
    Failing,
    /// No download URL: the connector must use `/content` with its token.
    ContentEndpoint,
}

#[derive(Clone)]
struct Entity {
    id: &'static str,
    name: String,
    parent: Option<&'static str>,
    kind: Kind,
    deleted: bool,
    e_tag: u32,
    /// The generation of its last change; a delta link of generation `g` reports it if greater.
    changed: u32,
    sharing_changed: bool,
}

#[derive(Default)]
struct Fixture {
    base: String,
    entities: Vec<Entity>,
    generation: u32,
    page_size: usize,
    /// The next delta request is answered 429 with `Retry-After: 1`.
    throttle_once: bool,
    /// Delta links answer 410 Gone, as when Graph has forgotten the token.
    tokens_gone: bool,
    /// An entry that is no driveItem, served at the head of the next full listing.
    malformed_once: Option<Value>,
    requests: Vec<String>,
}

impl Fixture {
    /// Marks an entity changed in a new generation and hands it out for editing.
    fn change(&mut self, id: &str) -> &mut Entity {
        self.generation += 1;
        let generation = self.generation;
        let entity = self.entities.iter_mut().find(|e| e.id == id).unwrap();
        entity.changed = generation;
        entity.e_tag += 1;
        entity
    }

    fn folder_path(&self, id: &str) -> String {
        let entity = self.entities.iter().find(|e| e.id == id).unwrap();
        match (&entity.kind, entity.parent) {
            (Kind::Root, _) | (_, None) => String::new(),
            (_, Some(parent)) => {
                let above = self.folder_path(parent);
                if above.is_empty() { entity.name.clone() } else { format!("{above}/{}", entity.name) }
            }
        }
    }

    /// A driveItem as Graph renders it; `with_path` because business delta leaves
    /// `parentReference.path` out, while a plain item GET has it.
    fn render(&self, entity: &Entity, with_path: bool) -> Value {
        let mut parent = json!({"driveId": DRIVE, "driveType": "documentLibrary"});
        if let Some(parent_id) = entity.parent {
            parent["id"] = json!(parent_id);
            if with_path {
                let path = self.folder_path(parent_id).replace(' ', "%20");
                parent["path"] =
                    json!(if path.is_empty() { "/drive/root:".to_owned() } else { format!("/drive/root:/{path}") });
            }
        }
        if entity.deleted {
            return json!({"id": entity.id, "deleted": {"state": "deleted"}, "parentReference": parent});
        }
        let web_path = self.folder_path(entity.id);
        let mut item = json!({
            "id": entity.id,
            "name": entity.name,
            "eTag": format!("\"{{{}}},{}\"", entity.id, entity.e_tag),
            "createdDateTime": "2025-09-01T08:00:00Z",
            "lastModifiedDateTime": format!("2026-01-{:02}T09:00:00Z", 1 + entity.changed % 28),
            "webUrl": format!("https://acme.sharepoint.com/sites/hr/Shared%20Documents/{}", web_path.replace(' ', "%20")),
            "parentReference": parent,
            "fileSystemInfo": {"createdDateTime": "2025-09-01T08:00:00Z"},
        });
        match &entity.kind {
            Kind::Root => {
                item["root"] = json!({});
                item["folder"] = json!({"childCount": 3});
                item["name"] = json!("root");
            }
            Kind::Folder => item["folder"] = json!({"childCount": 2}),
            Kind::File { content, c_tag, download, .. } => {
                let mime = match entity.name.rsplit_once('.').map(|(_, e)| e) {
                    Some("pdf") => "application/pdf",
                    Some("md") => "text/markdown",
                    Some("html") => "text/html",
                    Some("txt") => "text/plain",
                    _ => "application/octet-stream",
                };
                item["file"] = json!({"mimeType": mime, "hashes": {"quickXorHash": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}});
                item["size"] = json!(content.len());
                item["cTag"] = json!(format!("\"c:{{{}}},{c_tag}\"", entity.id));
                if *download != Download::ContentEndpoint {
                    item["@microsoft.graph.downloadUrl"] =
                        json!(format!("{}/download/{}?tempauth=v1.eyJhdWQiOiJsb29wYmFjayJ9", self.base, entity.id));
                }
            }
        }
        if entity.sharing_changed {
            item["@microsoft.graph.sharedChanged"] = json!("True");
        }
        item
    }
}

type Shared = Arc<Mutex<Fixture>>;

async fn start(fixture: Fixture) -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shared = Arc::new(Mutex::new(Fixture { base: base.clone(), ..fixture }));
    let app = Router::new()
        .route("/v1.0/drives/{drive}/root/delta", get(delta))
        .route("/v1.0/drives/{drive}/items/{id}", get(drive_item))
        .route("/v1.0/drives/{drive}/items/{id}/permissions", get(permissions))
        .route("/v1.0/drives/{drive}/items/{id}/content", get(content))
        .route("/download/{id}", get(download))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn refused(headers: &HeaderMap, drive: &str) -> Option<Response> {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    if given != Some(&format!("Bearer {TOKEN}")) {
        return Some(graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token is empty."));
    }
    (drive != DRIVE).then(|| graph_error(StatusCode::NOT_FOUND, "itemNotFound", "The resource could not be found."))
}

async fn delta(
    State(shared): State<Shared>,
    Path(drive): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut fixture = shared.lock().unwrap();
    let mut logged: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    logged.sort();
    fixture.requests.push(format!("delta?{}", logged.join("&")));
    if let Some(refusal) = refused(&headers, &drive) {
        return refusal;
    }
    if fixture.throttle_once {
        fixture.throttle_once = false;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "").into_response();
    }
    let prefer = headers.get("prefer").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let sharing_changes_asked = prefer.split(',').any(|p| p.trim() == "deltashowsharingchanges");
    // `$skiptoken=<since>.<page>` continues a listing; `token=<generation>` is a delta link.
    let (since, page): (Option<u32>, usize) = if let Some(skip) = query.get("$skiptoken") {
        let (since, page) = skip.split_once('.').unwrap();
        (since.parse().ok(), page.parse().unwrap())
    } else if let Some(token) = query.get("token") {
        if fixture.tokens_gone {
            return graph_error(
                StatusCode::GONE,
                "resyncRequired",
                "Resync required. Replace any local items with the server's version (including deletes).",
            );
        }
        (Some(token.parse().unwrap()), 0)
    } else {
        (None, 0)
    };
    let listed: Vec<&Entity> = fixture
        .entities
        .iter()
        .filter(|e| match since {
            None => !e.deleted,
            // Sharing-only changes are in the feed only for clients that ask for them.
            Some(since) => e.changed > since && (!e.sharing_changed || sharing_changes_asked),
        })
        .collect();
    let page_size = fixture.page_size;
    let mut value: Vec<Value> =
        listed.iter().skip(page * page_size).take(page_size).map(|e| fixture.render(e, false)).collect();

    let more = (page + 1) * page_size < listed.len();
    if since.is_none() && page == 0 {
        value.extend(fixture.malformed_once.take());
    }
    let link = format!("{}/v1.0/drives/{DRIVE}/root/delta", fixture.base);
    let mut body =
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(driveItem)", "value": value});
    if more {
        let since = since.map_or("full".to_owned(), |s| s.to_string());
        body["@odata.nextLink"] = json!(format!("{link}?$skiptoken={since}.{}", page + 1));
    } else {
        body["@odata.deltaLink"] = json!(format!("{link}?token={}", fixture.generation));
    }
    axum::Json(body).into_response()
}

async fn drive_item(
    State(shared): State<Shared>,
    Path((drive, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut fixture = shared.lock().unwrap();
    fixture.requests.push(format!("item {id}"));
    if let Some(refusal) = refused(&headers, &drive) {
        return refusal;
    }
    match fixture.entities.iter().find(|e| e.id == id && !e.deleted) {
        Some(entity) => axum::Json(fixture.render(entity, true)).into_response(),
        None => graph_error(StatusCode::NOT_FOUND, "itemNotFound", "The resource could not be found."),
    }
}

async fn permissions(
    State(shared): State<Shared>,
    Path((drive, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut fixture = shared.lock().unwrap();
    fixture.requests.push(format!("permissions {id}"));
    if let Some(refusal) = refused(&headers, &drive) {
        return refusal;
    }
    match fixture.entities.iter().find(|e| e.id == id && !e.deleted).map(|e| &e.kind) {
        Some(Kind::File { permissions, .. }) => axum::Json(json!({"value": permissions})).into_response(),
        _ => graph_error(StatusCode::NOT_FOUND, "itemNotFound", "The resource could not be found."),
    }
}

async fn content(
    State(shared): State<Shared>,
    Path((drive, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut fixture = shared.lock().unwrap();
    fixture.requests.push(format!("content {id}"));
    if let Some(refusal) = refused(&headers, &drive) {
        return refusal;
    }
    match fixture.entities.iter().find(|e| e.id == id && !e.deleted).map(|e| &e.kind) {
        Some(Kind::File { content, .. }) => content.clone().into_response(),
        _ => graph_error(StatusCode::NOT_FOUND, "itemNotFound", "The resource could not be found."),
    }
}

async fn download(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut fixture = shared.lock().unwrap();
    fixture.requests.push(format!("download {id}"));
    // The URL carries its own authorization; a bearer token here would be leaked to storage.
    if headers.contains_key("authorization") || !query.contains_key("tempauth") {
        return (StatusCode::BAD_REQUEST, "unexpected authorization").into_response();
    }
    match fixture.entities.iter().find(|e| e.id == id && !e.deleted).map(|e| &e.kind) {
        Some(Kind::File { download: Download::Failing, .. }) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "storage unavailable").into_response()
        }
        Some(Kind::File { content, .. }) => content.clone().into_response(),
        _ => (StatusCode::NOT_FOUND, "").into_response(),
    }
}

fn folder(id: &'static str, name: &str, parent: &'static str) -> Entity {
    Entity {
        id,
        name: name.into(),
        parent: Some(parent),
        kind: Kind::Folder,
        deleted: false,
        e_tag: 1,
        changed: 0,
        sharing_changed: false,
    }
}

fn file(id: &'static str, name: &str, parent: &'static str, permissions: Vec<Value>, download: Download) -> Entity {
    Entity {
        id,
        name: name.into(),
        parent: Some(parent),
        kind: Kind::File { content: format!("{name}: contents, version 1"), c_tag: 1, permissions, download },
        deleted: false,
        e_tag: 1,
        changed: 0,
        sharing_changed: false,
    }
}

fn group_grant(id: &str, display_name: &str) -> Value {
    json!({"id": format!("g-{id}"), "roles": ["read"], "grantedToV2": {"group": {"id": id, "displayName": display_name, "email": format!("{id}@acme.com")}}, "inheritedFrom": {}})
}

fn user_grant(email: &str) -> Value {
    json!({"id": format!("u-{email}"), "roles": ["write"], "grantedToV2": {"user": {"id": "7d3e", "displayName": email, "email": email}}})
}

fn link(scope: &str) -> Value {
    json!({"id": format!("l-{scope}"), "roles": ["read"], "link": {"scope": scope, "type": "view", "webUrl": "https://acme.sharepoint.com/:b:/s/hr/EaBc"}, "grantedToIdentitiesV2": []})
}

/// HR's document library: three folders, eight files, one of them a spreadsheet Lore does not
/// read and one whose storage host fails.
fn library() -> Fixture {
    let hr_team = || group_grant("4f1c2d3e-hr", "HR Team");
    let site_members = json!({"id": "s-3", "roles": ["read"], "grantedToV2": {"siteGroup": {"id": "3", "displayName": "HR Site Members", "loginName": "HR Site Members"}}});
    Fixture {
        entities: vec![
            Entity {
                id: "01ROOT",
                name: "root".into(),
                parent: None,
                kind: Kind::Root,
                deleted: false,
                e_tag: 1,
                changed: 0,
                sharing_changed: false,
            },
            folder("01HR", "HR", "01ROOT"),
            folder("01LEAVE", "Leave Policies", "01HR"),
            folder("01ENG", "Engineering", "01ROOT"),
            file("01HANDBOOK", "Handbook.docx", "01HR", vec![hr_team()], Download::Url),
            file("01PARENTAL", "Parental Leave.PDF", "01LEAVE", vec![link("organization")], Download::Url),
            file("01ONBOARD", "Onboarding.md", "01ENG", vec![user_grant("Ana@acme.com")], Download::Url),
            file("01RUNBOOK", "Runbook.txt", "01ENG", vec![link("anonymous")], Download::Url),
            file("01BUDGET", "Budget.xlsx", "01HR", vec![hr_team()], Download::Url),
            file("01WELCOME", "Welcome.html", "01ROOT", vec![site_members], Download::ContentEndpoint),
            file("01BROKEN", "Salaries.pdf", "01HR", vec![hr_team()], Download::Failing),
            file("01NOTES", "Notes.txt", "01HR", vec![hr_team(), link("users")], Download::Url),
        ],
        page_size: 5,
        ..Fixture::default()
    }
}

fn connector(base: &str, token: &str) -> SharePointConnector {
    let config: SharePointConfig = serde_json::from_value(json!({
        "graph_url": format!("{base}/"),
        "drives": [{"id": DRIVE, "name": "hr-site"}],
        "org_group": "everyone-at-acme",
    }))
    .unwrap();
    assert_eq!(config.group_names, GroupNames::Id);
    SharePointConnector::new(config, AccessToken::new(token), fast_http())
}

/// Struct-update syntax cannot build an `Http` outside its crate (its client is private).
fn fast_http() -> Http {
    let mut http = Http::new("lore-test").unwrap();
    http.max_attempts = 3;
    http.initial_backoff = Duration::from_millis(10);
    http
}

fn upserted<'a>(changes: &'a [Change], id: &str) -> &'a Item {
    changes
        .iter()
        .find_map(|c| match c {
            Change::Upsert(item) if item.id == id => Some(item),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{id} not upserted in {changes:#?}"))
}

fn summary(changes: &[Change]) -> Vec<String> {
    let mut lines: Vec<String> = changes
        .iter()
        .map(|c| match c {
            Change::Upsert(item) => {
                let id = item.id.strip_prefix(&format!("{DRIVE}:")).unwrap_or(&item.id);
                format!("upsert {id} {} {:?}", item.path, item.acl.as_deref().unwrap_or_default())
            }
            Change::Delete { id, path } => {
                format!("delete {} {path}", id.strip_prefix(&format!("{DRIVE}:")).unwrap_or(id))
            }
        })
        .collect();
    lines.sort();
    lines
}

fn error_items(errors: &[lore_connectors::ItemError]) -> Vec<String> {
    errors.iter().map(|e| e.item.strip_prefix(&format!("{DRIVE}:")).unwrap_or(&e.item).to_owned()).collect()
}

fn count(shared: &Shared, wanted: &str) -> usize {
    shared.lock().unwrap().requests.iter().filter(|r| r.as_str() == wanted).count()
}

#[tokio::test]
async fn a_library_syncs_in_full_then_by_delta_link_and_resyncs_after_a_410() {
    let odd = json!({"id": "01ODD", "name": ["Quarterly", "Review.pdf"], "file": {"mimeType": "application/pdf"}});
    let (base, shared) = start(Fixture { throttle_once: true, malformed_once: Some(odd), ..library() }).await;
    let sharepoint = connector(&base, TOKEN);

    let first = sharepoint.sync(&SyncState::default()).await.unwrap();
    assert_eq!(
        summary(&first.changes),
        [
            r#"upsert 01HANDBOOK hr-site/HR/Handbook.docx ["group:4f1c2d3e-hr"]"#,
            r#"upsert 01NOTES hr-site/HR/Notes.txt ["group:4f1c2d3e-hr"]"#,
            r#"upsert 01ONBOARD hr-site/Engineering/Onboarding.md ["user:ana@acme.com"]"#,
            r#"upsert 01PARENTAL hr-site/HR/Leave Policies/Parental Leave.pdf ["group:everyone-at-acme"]"#,
            r#"upsert 01RUNBOOK hr-site/Engineering/Runbook.txt ["everyone"]"#,
            r#"upsert 01WELCOME hr-site/Welcome.html ["group:sharepoint-hr-site-members"]"#,
        ],
        "the spreadsheet is skipped and the failing download is an error"
    );
    assert_eq!(error_items(&first.errors), ["01ODD", "01BROKEN"]);
    assert!(first.errors[0].message.contains("not a driveItem"), "{:?}", first.errors);
    assert!(first.errors[1].message.contains("downloading"), "{:?}", first.errors);
    let parental = upserted(&first.changes, &format!("{DRIVE}:01PARENTAL"));
    assert_eq!(parental.title.as_deref(), Some("Parental Leave"));
    assert_eq!(parental.version, "\"c:{01PARENTAL},1\"");
    assert_eq!(parental.content, b"Parental Leave.PDF: contents, version 1");
    assert_eq!(
        parental.url.as_deref(),
        Some("https://acme.sharepoint.com/sites/hr/Shared%20Documents/HR/Leave%20Policies/Parental%20Leave.PDF")
    );
    assert_eq!(upserted(&first.changes, &format!("{DRIVE}:01WELCOME")).content, b"Welcome.html: contents, version 1");
    {
        let fixture = shared.lock().unwrap();
        let requests = &fixture.requests;
        assert!(!fixture.throttle_once, "the 429 was served");
        let deltas: Vec<_> = requests.iter().filter(|r| r.starts_with("delta")).collect();
        assert_eq!(
            deltas,
            ["delta?", "delta?", "delta?$skiptoken=full.1", "delta?$skiptoken=full.2"],
            "the first page again after its 429, then two more pages"
        );
        assert!(requests.iter().any(|r| r == "content 01WELCOME"), "no download URL: /content with the token");
        assert!(!requests.iter().any(|r| r == "permissions 01BUDGET"), "skipped files cost nothing");
        assert_eq!(requests.iter().filter(|r| *r == "download 01BROKEN").count(), 3, "three attempts");
    }
    let cursor: Value = serde_json::from_str(first.state.cursor.as_deref().unwrap()).unwrap();
    assert_eq!(cursor["drives"][DRIVE]["delta_link"], format!("{base}/v1.0/drives/{DRIVE}/root/delta?token=0"));

    {
        let mut fixture = shared.lock().unwrap();
        fixture.change("01RUNBOOK").deleted = true;
        fixture.change("01ONBOARD").name = "New Hire Onboarding.md".into();
        fixture.change("01HANDBOOK").parent = Some("01ENG");
        let parental = fixture.change("01PARENTAL");
        parental.sharing_changed = true;
        if let Kind::File { permissions, .. } = &mut parental.kind {
            permissions.push(user_grant("bob@acme.com"));
        }
        // Metadata only (its eTag moves, its cTag and permissions do not): nothing to report.
        fixture.change("01NOTES");
    }
    let second = sharepoint.sync(&first.state).await.unwrap();
    assert_eq!(
        summary(&second.changes),
        [
            "delete 01HANDBOOK hr-site/HR/Handbook.docx",
            "delete 01ONBOARD hr-site/Engineering/Onboarding.md",
            "delete 01RUNBOOK hr-site/Engineering/Runbook.txt",
            r#"upsert 01HANDBOOK hr-site/Engineering/Handbook.docx ["group:4f1c2d3e-hr"]"#,
            r#"upsert 01ONBOARD hr-site/Engineering/New Hire Onboarding.md ["user:ana@acme.com"]"#,
            r#"upsert 01PARENTAL hr-site/HR/Leave Policies/Parental Leave.pdf ["group:everyone-at-acme", "user:bob@acme.com"]"#,
        ]
    );
    assert_eq!(error_items(&second.errors), ["01BROKEN"], "the failed file is tried again though the feed moved on");
    assert_eq!(count(&shared, "delta?token=0"), 1);
    assert_eq!(count(&shared, "item 01BROKEN"), 1);
    assert_eq!(count(&shared, "item 01ODD"), 1, "the malformed entry is read again by id, and is gone");
    assert_eq!(count(&shared, "download 01NOTES"), 1, "an unchanged file is not downloaded again");
    assert!(!second.state.items.contains_key(&format!("{DRIVE}:01RUNBOOK")));
    assert!(!second.state.items.contains_key(&format!("{DRIVE}:01BROKEN")));

    {
        let mut fixture = shared.lock().unwrap();
        // While the token is gone, Graph forgets tombstones: Welcome.html just disappears.
        fixture.tokens_gone = true;
        fixture.entities.retain(|e| e.id != "01WELCOME");
        if let Kind::File { download, .. } = &mut fixture.change("01BROKEN").kind {
            *download = Download::Url;
        }
        if let Kind::File { content, c_tag, .. } = &mut fixture.change("01NOTES").kind {
            *content = "Notes.txt: contents, version 2".into();
            *c_tag += 1;
        }
    }
    let third = sharepoint.sync(&second.state).await.unwrap();
    assert_eq!(
        summary(&third.changes),
        [
            "delete 01WELCOME hr-site/Welcome.html",
            r#"upsert 01BROKEN hr-site/HR/Salaries.pdf ["group:4f1c2d3e-hr"]"#,
            r#"upsert 01NOTES hr-site/HR/Notes.txt ["group:4f1c2d3e-hr"]"#,
        ],
        "the full listing is compared with the state: unchanged files are not reported"
    );
    assert!(third.errors.is_empty(), "{:?}", third.errors);
    assert_eq!(upserted(&third.changes, &format!("{DRIVE}:01NOTES")).content, b"Notes.txt: contents, version 2");
    {
        let fixture = shared.lock().unwrap();
        let deltas: Vec<_> = fixture.requests.iter().filter(|r| r.starts_with("delta")).skip(5).collect();
        assert_eq!(deltas, ["delta?token=5", "delta?", "delta?$skiptoken=full.1"], "410, then from scratch");
    }
    assert_eq!(third.state.items.len(), 5);

    {
        let mut fixture = shared.lock().unwrap();
        fixture.tokens_gone = false;
        // Only the folder is in the feed; the file under it is read again to learn its path.
        fixture.change("01LEAVE").name = "Leave".into();
    }
    let fourth = sharepoint.sync(&third.state).await.unwrap();
    assert_eq!(
        summary(&fourth.changes),
        [
            "delete 01PARENTAL hr-site/HR/Leave Policies/Parental Leave.pdf",
            r#"upsert 01PARENTAL hr-site/HR/Leave/Parental Leave.pdf ["group:everyone-at-acme", "user:bob@acme.com"]"#,
        ]
    );
    assert_eq!(count(&shared, "item 01PARENTAL"), 1);
    assert!(fourth.errors.is_empty(), "{:?}", fourth.errors);

    let fifth = sharepoint.sync(&fourth.state).await.unwrap();
    assert!(fifth.changes.is_empty(), "{:?}", summary(&fifth.changes));
    assert_eq!(fifth.state.items, fourth.state.items);

    {
        let mut fixture = shared.lock().unwrap();
        // A deleted folder is reported alone; its files go with it, unmentioned.
        fixture.change("01ENG").deleted = true;
        for entity in fixture.entities.iter_mut().filter(|e| e.parent == Some("01ENG")) {
            entity.deleted = true;
        }
        // HR's sharing changes; its files inherit it without appearing in the feed themselves.
        fixture.change("01HR").sharing_changed = true;
        let notes = fixture.entities.iter_mut().find(|e| e.id == "01NOTES").unwrap();
        if let Kind::File { permissions, .. } = &mut notes.kind {
            permissions.push(link("anonymous"));
        }
    }
    let sixth = sharepoint.sync(&fifth.state).await.unwrap();
    assert_eq!(
        summary(&sixth.changes),
        [
            "delete 01HANDBOOK hr-site/Engineering/Handbook.docx",
            "delete 01ONBOARD hr-site/Engineering/New Hire Onboarding.md",
            r#"upsert 01NOTES hr-site/HR/Notes.txt ["everyone", "group:4f1c2d3e-hr"]"#,
        ],
        "the other files under HR are read again but unchanged"
    );
    assert_eq!(count(&shared, "item 01BROKEN"), 2);
    assert_eq!(sixth.state.items.len(), 3);
}

#[tokio::test]
async fn a_refused_token_or_an_unknown_drive_fails_the_sync() {
    let (base, _shared) = start(library()).await;
    match connector(&base, "expired").sync(&SyncState::default()).await {
        Err(ConnectorError::Http(e)) => assert_eq!(e.status(), Some(401)),
        other => panic!("expected a 401: {other:?}"),
    }
    let config = SharePointConfig {
        graph_url: base.clone(),
        drives: vec![DriveConfig { id: "b!missing".into(), name: None, path_prefix: None }],
        org_group: "everyone-at-acme".into(),
        group_names: GroupNames::DisplayName,
    };
    match SharePointConnector::new(config, AccessToken::new(TOKEN), fast_http()).sync(&SyncState::default()).await {
        Err(ConnectorError::Http(e)) => assert_eq!(e.status(), Some(404)),
        other => panic!("a drive that cannot be listed must not read as everything deleted: {other:?}"),
    }
}

#[tokio::test]
async fn a_path_prefix_limits_the_drive_and_group_display_names_can_be_chosen() {
    let (base, _shared) = start(library()).await;
    let config: SharePointConfig = serde_json::from_value(json!({
        "graph_url": base,
        "drives": [{"id": DRIVE, "path_prefix": "/hr/"}],
        "org_group": "staff",
        "group_names": "display_name",
    }))
    .unwrap();
    let sharepoint = SharePointConnector::new(config, AccessToken::new(TOKEN), fast_http());
    let batch = sharepoint.sync(&SyncState::default()).await.unwrap();
    assert_eq!(
        summary(&batch.changes),
        [
            format!(r#"upsert 01HANDBOOK {DRIVE}/HR/Handbook.docx ["group:HR Team"]"#),
            format!(r#"upsert 01NOTES {DRIVE}/HR/Notes.txt ["group:HR Team"]"#),
            format!(r#"upsert 01PARENTAL {DRIVE}/HR/Leave Policies/Parental Leave.pdf ["group:staff"]"#),
        ]
    );
    assert!(
        serde_json::from_value::<SharePointConfig>(json!({"drives": [], "org_group": "x", "site": "y"})).is_err(),
        "unknown config keys are refused"
    );
}
