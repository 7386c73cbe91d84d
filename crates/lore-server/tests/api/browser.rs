//! The chat widget in a real browser: Debian's chromium driven by playwright-core (npm), a host
//! page on one loopback origin embedding the widget from Lore on another. The browser part is
//! `tests/browser/widget.mjs`; this test starts the servers, runs it, and checks what it left on
//! the server (feedback). It is skipped with a message when chromium or the npm packages are
//! missing, unless `LORE_REQUIRE_BROWSER=1` (set by `.ci/run`), where that is a failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lore_chat::testing::{FakeProvider, Reply};
use lore_core::keys::NewKey;
use lore_core::role::Role;
use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::{Setup, workspace_root};

fn find_chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        let output = std::process::Command::new("which").arg(name).output().ok()?;
        output.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    })
}

/// What the fake model answers: a scripted answer streamed slowly, so the browser can watch it
/// arrive (and stop it); questions about the badge printer get markup in the answer. A
/// non-streamed request is a follow-up to condense: the question itself is a fine standalone
/// query here.
fn reply(body: &Value) -> Reply {
    let prompt = body["messages"].to_string();
    if body["stream"].as_bool().unwrap_or(false) {
        let parts: &[&str] = if prompt.contains("badge printer") {
            &[
                "The badge printer ",
                "is on the third floor [1]. ",
                "<img src=x onerror=\"window.__xss=3\"> ",
                "<script>window.__xss=4</script>",
            ]
        } else if prompt.contains("vacaciones") {
            &[
                "Tienes **25 días** ",
                "de vacaciones ",
                "pagadas al año [1].\n",
                "- Puedes pasar ",
                "hasta 5 días ",
                "al año siguiente [1].",
            ]
        } else {
            &[
                "You get **25 days** ",
                "of paid vacation ",
                "per calendar year [1].\n",
                "- Up to 5 unused days ",
                "carry over ",
                "into the next year [1].\n",
                "- Vacation accrues ",
                "monthly [1].",
            ]
        };
        return Reply::stream(parts, Duration::from_millis(150));
    }
    let last = body["messages"].as_array().and_then(|m| m.last()).map(|m| m["content"].clone()).unwrap_or_default();
    let last = last.as_str().unwrap_or_default();
    // A condensed follow-up, as a model would write it from the conversation.
    if last.contains("accrue") && last.contains("vacation") {
        Reply::text("How does paid vacation accrue?")
    } else {
        Reply::text(last.lines().last().unwrap_or_default().trim_start_matches("Last message: "))
    }
}

#[derive(Clone)]
struct Host {
    lore: String,
    addr: std::net::SocketAddr,
    admin_key: String,
}

/// The host page: CSP on by default (`?csp=0` turns it off for the XSS check, so that only the
/// widget's own rendering stands between a document and script execution).
async fn host_page(State(host): State<Arc<Host>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let lang = q.get("lang").cloned().unwrap_or_else(|| "en".into());
    let title = if lang == "es" { "Pregunta a RR. HH." } else { "Ask HR" };
    let collections = q.get("collections").map(|c| format!(" data-collections=\"{c}\"")).unwrap_or_default();
    let body = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>Intranet</title>\
         <link rel=\"stylesheet\" href=\"/host.css\"><script src=\"/host.js\"></script>\
         <script src=\"{lore}/widget.js\" data-token-function=\"getLoreToken\" data-title=\"{title}\"{collections}></script></head>\
         <body><header><h1>Acme intranet</h1></header><p>Welcome.</p><button id=\"host-button\">Host button</button></body></html>",
        lore = host.lore
    );
    let mut headers = vec![(header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned())];
    if q.get("csp").map(String::as_str) != Some("0") {
        headers.push((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'self'; script-src 'self' {lore}; connect-src 'self' {lore}; style-src 'self'; img-src 'self'",
                lore = host.lore
            ),
        ));
    }
    let mut response = body.into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// The host's backend vouches for its signed-in user and gets an embed token from Lore.
async fn host_token(State(host): State<Arc<Host>>, Query(q): Query<HashMap<String, String>>) -> String {
    let user = q.get("user").cloned().unwrap_or_else(|| "alice".into());
    let groups: Vec<&str> = match user.as_str() {
        "alice" => vec!["hr"],
        "dana" => vec!["sales"],
        _ => vec![],
    };
    let body = json!({"user": user, "groups": groups, "ttl_secs": 900});
    let (_, response) = call(host.addr, "POST", "/v1/embed/token", Some(&host.admin_key), Some(body)).await;
    response["token"].as_str().unwrap().to_owned()
}

const HOST_JS: &str = "window.__before = Object.keys(window);\n\
    window.getLoreToken = async () => (await fetch('/token' + location.search)).text();\n";
/// Aggressive host styles that must not reach into the widget.
const HOST_CSS: &str = "button { background: rgb(255, 0, 0) !important; font-family: serif !important; }\n\
    * { color: rgb(0, 128, 0); }\n";

#[tokio::test(flavor = "multi_thread")]
async fn the_widget_in_a_real_browser() {
    let required = std::env::var("LORE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let playwright = workspace_root().join("node_modules/playwright-core");
    let Some(chromium) = find_chromium().filter(|_| playwright.exists()) else {
        assert!(!required, "LORE_REQUIRE_BROWSER=1 but chromium or node_modules/playwright-core is missing");
        eprintln!("skipping the browser test: install chromium (apt) and run `npm ci` in the repository root");
        return;
    };

    // The provider, the host and Lore listen on three loopback ports: two origins for the browser.
    let provider = FakeProvider::answering("model", reply).await;
    let host_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_url = format!("http://{}", host_listener.local_addr().unwrap());

    let mut setup = Setup::new().with_samples();
    let xss = setup.folder("facilities");
    std::fs::write(
        xss.join("badge-printer.txt"),
        "Badge printer\n\nThe badge printer is on the third floor, next to the mail room. \
         Label template: <img src=x onerror=\"window.__xss=1\"> and <script>window.__xss=2</script> are printed as text.",
    )
    .unwrap();
    setup.config.server.cors_origins = vec![host_url.clone()];
    // Single sign-on for the full page: the test provider runs the authorization code flow.
    let idp = lore_identity::testing::TestIdp::start().await;
    idp.set_login("alice", &["hr"]);
    setup.config.auth.oidc = Some(idp.oidc_config());
    setup.config.server.web_client_id = Some("lore-web".into());
    setup.config.chat.providers = vec![provider.config(0, 30.0)];
    setup.config.policy = serde_json::from_value(json!({
        "notice": { "text": "Lore answers from company documents; check what matters.",
                    "link": "https://intranet.example/ai-policy" },
        "rules": [{ "id": "no-legal-advice", "patterns": ["\\blawsuit\\b"], "message": "Lore does not give legal advice." }],
    }))
    .unwrap();
    let server = setup.source("facilities", xss, &["everyone"], None).start();
    let documents: HashMap<String, String> = ["samples", "facilities"]
        .iter()
        .flat_map(|c| server.documents_of(c).into_iter().map(move |(path, id)| (format!("{c}/{path}"), id)))
        .collect();
    let state = server.state.clone();
    let (admin_key, _) = state
        .identity
        .keys
        .store()
        .unwrap()
        .create(&NewKey::new("intranet-backend", Role::Admin, "intranet", "test"))
        .unwrap();
    // `lore serve --demo`: the /demo page embeds the widget with a public key.
    let (public_key, _) = state.identity.keys.store().unwrap().create(&NewKey::public("demo-page", "test")).unwrap();
    state.demo_key.set(public_key).unwrap();
    // The company's assistant greets everyone without a department assistant of their own.
    let greeting = lore_policy::assistants::AssistantSpec {
        name: "Acme Helper".into(),
        greeting: Some("Hi! Ask me about Acme's policies.".into()),
        greeting_es: Some("¡Hola! Pregúntame por las políticas de Acme.".into()),
        ..Default::default()
    };
    state.policy.assistants.set(lore_policy::assistants::COMPANY, &greeting, "test", 0).unwrap();
    let lore_url = server.url();
    let host = Arc::new(Host { lore: lore_url.clone(), addr: server.addr, admin_key });
    let host_app = axum::Router::new()
        .route("/", get(host_page))
        .route("/token", get(host_token))
        .route("/host.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], HOST_JS) }))
        .route("/host.css", get(|| async { ([(header::CONTENT_TYPE, "text/css")], HOST_CSS) }))
        .with_state(host.clone());
    tokio::spawn(async move { axum::serve(host_listener, host_app).await.unwrap() });

    // Server-side checks the browser cannot see: CORS allowlist and cache headers.
    let client = reqwest::Client::new();
    let preflight = |origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{lore_url}/v1/chat"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight(&host_url).await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], host_url.as_str());
    let refused = preflight("http://127.0.0.1:1").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let widget = client.get(format!("{lore_url}/widget.js")).send().await.unwrap();
    assert_eq!(widget.headers()["cache-control"], "no-cache");
    let etag = widget.headers()["etag"].to_str().unwrap().to_owned();
    let hash = etag.trim_matches('"').to_owned();
    let again = client.get(format!("{lore_url}/widget.js")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    let versioned = client.get(format!("{lore_url}/assets/widget.{hash}.js")).send().await.unwrap();
    assert_eq!(versioned.headers()["cache-control"], "public, max-age=31536000, immutable");
    let stale = client.get(format!("{lore_url}/assets/widget.000000000000.js")).send().await.unwrap();
    assert_eq!(stale.status(), 404);

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let script = workspace_root().join("crates/lore-server/tests/browser/widget.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .current_dir(workspace_root())
        .env("LORE_URL", &lore_url)
        .env("HOST_URL", &host_url)
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .env("DOCUMENTS", serde_json::to_string(&documents).unwrap())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "browser scenarios failed (screenshots in {})", artifacts.display());

    // The thumbs-down with its comment reached the server, with the exchange it rates.
    let feedback = state.feedback.list(None, None, 100).unwrap();
    let down = feedback.iter().find(|f| f.comment.as_deref() == Some("Please mention the carry-over deadline."));
    let down = down.unwrap_or_else(|| panic!("feedback not stored: {feedback:?}"));
    assert_eq!(down.rating, lore_chat::feedback::Rating::Down);
    assert_eq!(down.user, "alice");
    assert!(down.question.contains("vacation"), "{down:?}");
    assert!(down.answer.contains("25 days"), "{down:?}");
    // Written under the company's assistant, which the prompt version names.
    let version = format!("{}+assistant-company-1", state.chat.prompt_version());
    assert_eq!(down.prompt_version.as_deref(), Some(version.as_str()));
    assert_eq!(down.citations[0]["document_id"], documents["samples/handbook/employee-handbook.md"].as_str());
    eprintln!("screenshots: {}", artifacts.display());
    drop(state);
    drop(server);
}

/// The console test's model: a follow-up is condensed to its last line; any other request is
/// answered from the first passage, streamed when asked to stream.
fn console_reply(body: &Value) -> Reply {
    let last = body["messages"].as_array().and_then(|m| m.last()).map(|m| m["content"].clone()).unwrap_or_default();
    let last = last.as_str().unwrap_or_default();
    if let Some(question) = last.lines().find_map(|l| l.strip_prefix("Last message: ")) {
        return Reply::text(question);
    }
    if body["stream"].as_bool().unwrap_or(false) {
        Reply::stream(&["The documents ", "say so [1]."], Duration::from_millis(20))
    } else {
        Reply::text("The documents say so [1].")
    }
}

/// Files and people of the console's browser test.
const CONSOLE_DOCS: [(&str, &str, &str); 3] = [
    ("hr-docs", "vacation.md", "# Vacation\n\nEmployees get twenty-five days of paid vacation a year."),
    ("handbook", "office-hours.md", "# Office hours\n\nThe office opens at eight and closes at six on weekdays."),
    ("eng-docs", "oncall.md", "# On-call\n\nThe on-call engineer answers pages within fifteen minutes."),
];

/// The console in a real browser (`tests/browser/console.mjs`): knowledge managers upload by
/// drag and drop, watch jobs, edit ACLs (checked through another user's chat) and delete;
/// a corrupt PDF fails with its reason and an oversize file never leaves the page; another
/// department's manager and an employee see nothing of it; an admin creates and revokes a
/// key; analytics draw the numbers of a scripted sequence of requests; a review is approved
/// and edited and a gap marked answered. Screenshots of every screen, in English and Spanish,
/// go to `LORE_SCREENSHOTS` (e.g. `docs/screenshots`) or the test's artifacts folder.
#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    let required = std::env::var("LORE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let playwright = workspace_root().join("node_modules/playwright-core");
    let Some(chromium) = find_chromium().filter(|_| playwright.exists()) else {
        assert!(!required, "LORE_REQUIRE_BROWSER=1 but chromium or node_modules/playwright-core is missing");
        eprintln!(
            "skipping the console's browser test: install chromium (apt) and run `npm ci` in the repository root"
        );
        return;
    };
    let provider = FakeProvider::answering("model", console_reply).await;
    let mut setup = Setup::new();
    let folders: Vec<(&str, PathBuf)> = CONSOLE_DOCS
        .iter()
        .map(|(collection, file, text)| {
            let folder = setup.folder(collection);
            std::fs::write(folder.join(file), text).unwrap();
            (*collection, folder)
        })
        .collect();
    setup.config.chat.providers = vec![provider.config(0, 30.0)];
    setup.config.usage.flush_interval_ms = 50;
    setup.config.usage.prices = vec![lore_usage::Price {
        model: provider.config(0, 30.0).model,
        input_per_million: 2.0,
        output_per_million: 10.0,
    }];
    // Small enough that the page can make an oversize file cheaply.
    setup.config.ingest.max_file_bytes = 200_000;
    // Answers citing the hr collection are reviewed (after they are given).
    setup.config.policy = serde_json::from_value(json!({
        "review": [{ "id": "hr-answers", "collections": ["hr-docs"], "mode": "after" }],
        "rules": [{ "id": "no-legal-advice", "patterns": ["\\blawsuit\\b"], "message": "Lore does not give legal advice." }],
    }))
    .unwrap();
    let mut folders = folders.into_iter();
    let (_, hr) = folders.next().unwrap();
    let (_, handbook) = folders.next().unwrap();
    let (_, eng) = folders.next().unwrap();
    let server = setup
        .source("hr-docs", hr, &["group:hr"], Some("hr"))
        .source("handbook", handbook, &["everyone"], Some("hr"))
        .source("eng-docs", eng, &["group:engineering"], Some("engineering"))
        .start();
    let state = server.state.clone();
    let key = |role: Role, user: &str, groups: &[&str], department: Option<&str>| {
        crate::usage::key(&server, role, user, groups, department).0
    };
    let keys = json!({
        "admin": key(Role::Admin, "ada", &[], None),
        "km_hr": key(Role::KnowledgeManager, "kim", &["hr"], Some("hr")),
        "km_eng": key(Role::KnowledgeManager, "eli", &["engineering"], Some("engineering")),
        "bob": key(Role::Employee, "bob", &["hr"], Some("hr")),
        "sara": key(Role::Employee, "sara", &["sales"], Some("sales")),
    });
    let addr = server.addr;

    // The scripted requests analytics must show: three from hr, two from sales, today.
    let script = [
        ("bob", "How many days of paid vacation do I get?"),
        ("bob", "Who won the football world cup in 1998?"),
        ("bob", "When does the office open?"),
        ("sara", "When does the office open?"),
        ("sara", "What time does the office close?"),
    ];
    for (who, question) in script {
        let (status, body) =
            call(addr, "POST", "/v1/chat", keys[who].as_str(), Some(json!({ "question": question }))).await;
        assert_eq!(status, 200, "{question}: {body}");
    }
    state.usage.recorder.flush();
    let events = state.usage.store.events(0, i64::MAX).unwrap();
    assert_eq!(events.len(), script.len());
    let mut kinds = std::collections::BTreeMap::<String, u64>::new();
    for event in &events {
        *kinds.entry(event.kind.clone()).or_default() += 1;
    }
    let cost: f64 = events.iter().map(|e| e.cost).sum();
    assert!(kinds.get("no_answer").is_some_and(|n| *n >= 1), "the off-topic question abstains: {kinds:?}");
    // The abstention becomes a gap and the vacation answer a review, before the browser looks.
    let km_hr = keys["km_hr"].as_str().unwrap();
    for (path, field) in [("/v1/analytics/gaps?status=open", "gaps"), ("/v1/reviews", "reviews")] {
        let mut found = false;
        for _ in 0..100 {
            let (status, body) = call(addr, "GET", path, Some(km_hr), None).await;
            assert_eq!(status, 200, "{path}: {body}");
            if body[field].as_array().is_some_and(|a| !a.is_empty()) {
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "no {field} appeared");
    }
    // A daily cost budget for hr, which the cost chart draws as a line.
    let budget = json!({"scope": "department", "value": "hr", "period": "day", "unit": "cost", "soft_limit": 0.5, "hard_limit": 1.0});
    let (status, body) = call(addr, "PUT", "/v1/budgets", keys["admin"].as_str(), Some(budget)).await;
    assert_eq!(status, 200, "{body}");
    let expected = json!({
        "total": script.len(),
        "departments": { "hr": 3, "sales": 2 },
        "kinds": kinds,
        "cost": cost,
    });

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshots = std::env::var("LORE_SCREENSHOTS")
        .map(|dir| workspace_root().join(dir))
        .unwrap_or_else(|_| artifacts.join("screenshots"));
    std::fs::create_dir_all(&screenshots).unwrap();
    let script_path = workspace_root().join("crates/lore-server/tests/browser/console.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script_path)
        .current_dir(workspace_root())
        .env("LORE_URL", server.url())
        .env("CHROMIUM", &chromium)
        .env("ARTIFACTS", &artifacts)
        .env("SCREENSHOTS", &screenshots)
        .env("KEYS", keys.to_string())
        .env("EXPECTED", expected.to_string())
        .env("CORRUPT_PDF", workspace_root().join("crates/lore-ingest/tests/fixtures/corrupt.pdf"))
        .output()
        .await
        .unwrap();
    eprintln!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "console scenarios failed (screenshots in {})", artifacts.display());

    // What the browser did, as the server recorded it.
    let audit = state.audit.query(&lore_core::audit::Query { limit: Some(1000), ..Default::default() }).unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.event.action.as_str()).collect();
    for action in [
        "document.acl_change",
        "document.metadata_change",
        "document.delete",
        "key.create",
        "key.revoke",
        "review.approve",
        "analytics.gap.update",
    ] {
        assert!(actions.contains(&action), "no {action} in the audit log: {actions:?}");
    }
    assert_eq!(state.audit.verify_chain().unwrap(), None);
    drop(state);
    drop(server);
}
