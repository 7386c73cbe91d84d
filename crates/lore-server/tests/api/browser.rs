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
