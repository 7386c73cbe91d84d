//! Connectors synced into collections (issue 19): a loopback web site crawled by the web
//! connector, its pages indexed as upload jobs with the connector's default ACL, a page removed
//! at the source removed from the index on the next sync, scheduled syncs, and the status API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use lore_core::jobs::JobState;
use lore_core::role::Role;
use serde_json::json;

use crate::support::client::{call, search_paths};
use crate::support::{Setup, TestServer};
use crate::usage::key;

type Pages = Arc<Mutex<Vec<(String, String)>>>;

async fn page(State(pages): State<Pages>, Path(name): Path<String>) -> axum::response::Response {
    match pages.lock().unwrap().iter().find(|(n, _)| *n == name) {
        Some((_, html)) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn site() -> (String, Pages) {
    let html = |title: &str, body: &str| {
        format!(
            "<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"
        )
    };
    let pages: Pages = Arc::new(Mutex::new(vec![
        (
            "index.html".into(),
            html(
                "Facilities",
                "<p>See <a href=\"parking.html\">parking</a> and <a href=\"printers.html\">printers</a>.</p>",
            ),
        ),
        (
            "parking.html".into(),
            html("Parking", "<p>Visitors park in bay C, next to the loading dock, with a day pass from reception.</p>"),
        ),
        (
            "printers.html".into(),
            html(
                "Printers",
                "<p>The colour printer on the second floor is called Gutenberg and needs a badge to print.</p>",
            ),
        ),
    ]));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/site/", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/site/{name}", get(page))
        .route("/robots.txt", get(|| async { StatusCode::NOT_FOUND }))
        .with_state(pages.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, pages)
}

fn server(base: &str, every_minutes: u32) -> TestServer {
    let mut setup = Setup::new().with_samples();
    setup.config.connectors = vec![
        serde_json::from_value(json!({
            "name": "facilities-web", "department": "facilities", "default_acl": ["group:staff"],
            "every_minutes": every_minutes,
            "web": { "start_urls": [format!("{base}index.html")] },
        }))
        .unwrap(),
    ];
    setup.start()
}

/// Waits until the job queue is empty.
async fn indexed(server: &TestServer) {
    for _ in 0..300 {
        let counts = server.state.jobs.counts().unwrap();
        if !counts.iter().any(|(state, n)| *n > 0 && matches!(state, JobState::Queued | JobState::Processing)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("jobs still pending: {:?}", server.state.jobs.counts());
}

async fn search(server: &TestServer, key: &str, query: &str) -> Vec<String> {
    let (status, body) = call(server.addr, "POST", "/v1/search", Some(key), Some(json!({ "query": query }))).await;
    assert_eq!(status, 200, "{body}");
    search_paths(&body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_synced_site_is_searchable_by_its_readers_and_a_page_removed_at_the_source_goes() {
    let (base, pages) = site().await;
    let server = server(&base, 0);
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (staff, _) = key(&server, Role::Employee, "sam", &["staff"], Some("sales"));
    let (outsider, _) = key(&server, Role::Employee, "otto", &["contractors"], None);
    let (facilities_km, _) = key(&server, Role::KnowledgeManager, "fay", &["staff"], Some("facilities"));
    let (sales_km, _) = key(&server, Role::KnowledgeManager, "saul", &["staff"], Some("sales"));

    let (status, report) =
        call(server.addr, "POST", "/v1/connectors/facilities-web/sync", Some(&facilities_km), None).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["status"].as_str(), report["upserts"].as_u64(), report["deletes"].as_u64()),
        (Some("ok"), Some(3), Some(0)),
        "{report}"
    );
    indexed(&server).await;
    let found = search(&server, &staff, "Where do visitors park?").await;
    assert!(found.first().is_some_and(|p| p.ends_with("parking.html")), "{found:?}");
    assert!(
        !search(&server, &outsider, "Where do visitors park?").await.iter().any(|p| p.contains("parking")),
        "the default ACL holds"
    );

    // The printers page disappears at the source: the next sync removes it from the index.
    pages.lock().unwrap().retain(|(name, _)| name != "printers.html");
    let (_, report) = call(server.addr, "POST", "/v1/connectors/facilities-web/sync", Some(&admin), None).await;
    assert_eq!((report["upserts"].as_u64(), report["deletes"].as_u64()), (Some(0), Some(1)), "{report}");
    indexed(&server).await;
    assert!(!search(&server, &staff, "colour printer Gutenberg badge").await.iter().any(|p| p.contains("printers")));
    // Unchanged pages are not queued again.
    let (_, report) = call(server.addr, "POST", "/v1/connectors/facilities-web/sync", Some(&admin), None).await;
    assert_eq!(
        (report["upserts"].as_u64(), report["deletes"].as_u64(), report["items"].as_u64()),
        (Some(0), Some(0), Some(2))
    );

    // Status for the department's managers; others see nothing or are refused.
    let (_, listed) = call(server.addr, "GET", "/v1/connectors", Some(&facilities_km), None).await;
    assert_eq!(listed["connectors"][0]["kind"], "web");
    assert_eq!(listed["connectors"][0]["last_sync"]["items"], 2, "{listed}");
    let (_, other) = call(server.addr, "GET", "/v1/connectors", Some(&sales_km), None).await;
    assert_eq!(other["connectors"], json!([]));
    let (status, _) = call(server.addr, "POST", "/v1/connectors/facilities-web/sync", Some(&sales_km), None).await;
    assert_eq!(status, 403);
    let (status, _) = call(server.addr, "GET", "/v1/connectors", Some(&staff), None).await;
    assert_eq!(status, 403);
    let audit = server
        .state
        .audit
        .query(&lore_core::audit::Query { action: Some("connector.sync".into()), ..Default::default() })
        .unwrap();
    assert_eq!(audit.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_connector_syncs_by_itself() {
    let (base, _pages) = site().await;
    let server = server(&base, 60);
    for _ in 0..100 {
        if let Some(report) = server.state.syncs.last("facilities-web") {
            assert_eq!((report.status.as_str(), report.upserts), ("ok", 3), "{report:?}");
            let audit = server
                .state
                .audit
                .query(&lore_core::audit::Query { action: Some("connector.sync".into()), ..Default::default() })
                .unwrap();
            assert_eq!(audit[0].event.auth, "schedule");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the scheduled sync did not run");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_repository_syncs_into_its_collection_with_the_mirror_in_the_data_folder() {
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(repo.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    git(&["init"]);
    std::fs::create_dir_all(repo.path().join("docs")).unwrap();
    std::fs::write(
        repo.path().join("docs/oncall.md"),
        "# On-call\n\nThe on-call engineer answers pages within fifteen minutes, day and night.\n",
    )
    .unwrap();
    git(&["add", "."]);
    git(&["commit", "-m", "on-call"]);
    let mut setup = Setup::new().with_samples();
    setup.config.connectors = vec![
        serde_json::from_value(json!({
            "name": "runbooks", "default_acl": ["everyone"],
            "git": { "url": repo.path().to_str().unwrap(), "paths": ["docs/"] },
        }))
        .unwrap(),
    ];
    let server = setup.start();
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (_, report) = call(server.addr, "POST", "/v1/connectors/runbooks/sync", Some(&admin), None).await;
    assert_eq!((report["status"].as_str(), report["upserts"].as_u64()), (Some("ok"), Some(1)), "{report}");
    assert!(
        server.state.config.data_dir.join("connectors/runbooks.git").exists(),
        "the mirror lives in the data folder"
    );
    indexed(&server).await;
    let found = search(&server, &admin, "How fast does the on-call engineer answer pages?").await;
    assert_eq!(found.first().map(String::as_str), Some("docs/oncall.md"), "{found:?}");
}

/// Zendesk's Help Center, as much as the connector reads: one locale's articles and the user
/// segments they name.
#[derive(Default)]
struct HelpCenter {
    /// The segment of the VPN article: `None` is everyone.
    vpn_segment: Option<i64>,
}

async fn articles(State(center): State<Arc<Mutex<HelpCenter>>>) -> axum::Json<serde_json::Value> {
    let segment = center.lock().unwrap().vpn_segment;
    axum::Json(json!({
        "articles": [{
            "id": 360001, "title": "Connect to the VPN", "locale": "en-us", "draft": false,
            "body": "<p>Open the Acme VPN client, choose the Madrid gateway and sign in with your badge number.</p>",
            "updated_at": "2026-11-01T10:00:00Z", "html_url": "https://help.example/360001",
            "section_id": 1, "user_segment_id": segment,
        }],
        "next_page": null,
    }))
}

async fn segment(Path(file): Path<String>) -> axum::Json<serde_json::Value> {
    let id: i64 = file.trim_end_matches(".json").parse().unwrap();
    axum::Json(
        json!({ "user_segment": { "id": id, "user_type": "staff", "group_ids": [], "organization_ids": [], "tags": [] } }),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permission_changed_at_the_source_is_reflected_by_the_next_search() {
    let center = Arc::new(Mutex::new(HelpCenter::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v2/help_center/en-us/articles.json", get(articles))
        .route("/api/v2/help_center/user_segments/{file}", get(segment))
        .with_state(center.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut setup = Setup::new().with_samples();
    let token = setup.folder("secrets").join("zendesk");
    std::fs::write(&token, "zd-token\n").unwrap();
    setup.config.connectors = vec![
        serde_json::from_value(json!({
            "name": "help-center", "token_file": token,
            "zendesk": { "base_url": base, "locales": ["en-us"], "email": "bot@acme.example", "token_env": "UNUSED" },
        }))
        .unwrap(),
    ];
    let server = setup.start();
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (customer, _) = key(&server, Role::Employee, "cora", &["customers"], None);
    let (agent, _) = key(&server, Role::Employee, "ada", &["zendesk-staff"], None);
    let question = "How do I connect to the VPN gateway?";

    let (_, report) = call(server.addr, "POST", "/v1/connectors/help-center/sync", Some(&admin), None).await;
    assert_eq!(report["upserts"], 1, "{report}");
    indexed(&server).await;
    assert!(search(&server, &customer, question).await.iter().any(|p| p.contains("360001")), "public at first");

    // The article is restricted to staff at the source: the next sync carries the new ACL.
    center.lock().unwrap().vpn_segment = Some(77);
    let (_, report) = call(server.addr, "POST", "/v1/connectors/help-center/sync", Some(&admin), None).await;
    assert_eq!(report["upserts"], 1, "a permission change alone is a change: {report}");
    indexed(&server).await;
    assert!(
        !search(&server, &customer, question).await.iter().any(|p| p.contains("360001")),
        "no longer the customer's"
    );
    assert!(search(&server, &agent, question).await.iter().any(|p| p.contains("360001")), "still staff's");
}
