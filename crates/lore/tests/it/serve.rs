//! The `lore serve` process: an upload job survives `kill -9` mid-processing and completes
//! after a restart; `lore ingest` sends files through the server that holds the data folder;
//! traces reach an OpenTelemetry collector (a loopback one that decodes OTLP/HTTP).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Value, json};

use crate::client::{call, upload};
use crate::{assert_success, lore, workspace_root};

struct Served {
    child: Child,
    url: String,
    addr: std::net::SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Served {
    serve_with(data_dir, &[], &[])
}

/// `lore serve` with more global arguments (`--config`) and environment variables.
fn serve_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = crate::lore_command()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start lore serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url =
        line.trim().strip_prefix("lore: listening on ").unwrap_or_else(|| panic!("unexpected: {line:?}")).to_owned();
    let addr = url.trim_start_matches("http://").parse().unwrap();
    Served { child, url, addr }
}

async fn get(url: &str, key: &str) -> Value {
    reqwest::Client::new().get(url).bearer_auth(key).send().await.unwrap().json().await.unwrap()
}

/// A long Markdown document of real text (the Sourcegraph handbook), so that indexing takes
/// several seconds and a kill lands while the job is processing.
pub(crate) fn long_document(min_bytes: usize) -> String {
    let root = workspace_root().join("../shared/data/corpora/sourcegraph-handbook/content");
    let mut text = String::from("# Handbook digest\n\n");
    for entry in walk(&root) {
        if text.len() >= min_bytes {
            break;
        }
        if let Ok(part) = std::fs::read_to_string(&entry) {
            text.push_str(&part.replace("\n# ", "\n## "));
            text.push_str("\n\n");
        }
    }
    assert!(text.len() >= min_bytes, "not enough handbook text under {}", root.display());
    text
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out
}

fn admin_key(data_dir: &Path) -> String {
    let output = lore(data_dir, &["keys", "create", "--name", "admin", "--role", "admin", "--user", "ops"]);
    assert_success(&output);
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_interrupted_by_kill_completes_after_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let key = admin_key(dir);
    assert_success(&lore(dir, &["collections", "create", "handbook", "--default-acl", "everyone"]));
    let server = serve(dir);
    let document = long_document(250_000);
    let (status, accepted) = upload(server.addr, &key, "handbook", "digest.md", document.into_bytes(), &[]).await;
    assert_eq!(status, 202, "{accepted}");
    let job_id = accepted["job"]["id"].as_str().unwrap().to_owned();
    let job_url = format!("{}/v1/jobs/{job_id}", server.url);
    let mut state = String::new();
    for _ in 0..300 {
        state = get(&job_url, &key).await["state"].as_str().unwrap().to_owned();
        if state != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "processing");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        get(&job_url, &key).await["state"],
        "processing",
        "the kill must land mid-job; make the document longer"
    );
    drop(server); // SIGKILL

    let server = serve(dir);
    let job_url = format!("{}/v1/jobs/{job_id}", server.url);
    let mut job = Value::Null;
    for _ in 0..1200 {
        job = get(&job_url, &key).await;
        if matches!(job["state"].as_str(), Some("indexed" | "failed")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job["state"], "indexed", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let query = json!({"query": "handbook", "limit": 3});
    let (_, results) = call(server.addr, "POST", "/v1/search", Some(&key), Some(query)).await;
    assert_eq!(results["results"][0]["document"]["path"], "digest.md", "{results}");
    drop(server);
    let status = lore(dir, &["status", "--check"]);
    assert_success(&status);
    assert!(String::from_utf8_lossy(&status.stdout).contains("consistency:   ok"));
}

#[tokio::test(flavor = "multi_thread")]
async fn lore_ingest_goes_through_the_server_that_holds_the_data_folder() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let docs = data.path().join("policies");
    std::fs::create_dir_all(docs.join("travel")).unwrap();
    std::fs::write(docs.join("travel/per-diem.md"), "# Per diem\n\nThe travel per diem is 60 euros a day.").unwrap();
    std::fs::write(docs.join("hours.md"), "# Hours\n\nCore hours are ten to four.").unwrap();
    std::fs::write(docs.join("hours.md.meta.toml"), "acl = [\"group:staff\"]\n").unwrap();
    let key = admin_key(&dir);
    let server = serve(&dir);

    let without_key = lore(&dir, &["ingest", docs.to_str().unwrap(), "--acl", "everyone"]);
    assert_eq!(without_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without_key.stderr).contains("LORE_API_KEY"), "{without_key:?}");

    let ingest = |extra: &[&str]| {
        let mut args = vec!["ingest", docs.to_str().unwrap(), "--acl", "everyone", "--api-key", key.as_str()];
        args.extend_from_slice(extra);
        lore(&dir, &args)
    };
    let first = ingest(&[]);
    assert_success(&first);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("2 uploaded, 2 indexed, 0 unchanged"), "{stdout}");
    let again = ingest(&[]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 uploaded, 0 indexed, 2 unchanged"), "{again:?}");

    let list: Value = get(&format!("{}/v1/collections/policies/documents", server.url), &key).await;
    let mut docs_seen: Vec<(String, Value)> = list["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["path"].as_str().unwrap().to_owned(), d["acl"].clone()))
        .collect();
    docs_seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        docs_seen,
        [("hours.md".into(), json!(["group:staff"])), ("travel/per-diem.md".into(), json!(["everyone"]))]
    );

    std::fs::remove_file(docs.join("hours.md")).unwrap();
    let synced = ingest(&["--sync"]);
    assert!(String::from_utf8_lossy(&synced.stdout).contains("1 deleted"), "{synced:?}");
    let list: Value = get(&format!("{}/v1/collections/policies/documents", server.url), &key).await;
    assert_eq!(list["documents"].as_array().unwrap().len(), 1, "{list}");
}

/// A leave policy ingested under `dir/data`, and a config (`dir/lore.toml`: `extra`, then
/// `provider` as the only model provider). Returns the config's and the data folder's paths.
fn leave_policy_served_by(
    dir: &Path,
    provider: &lore_chat::testing::FakeProvider,
    extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("leave.md"), "# Leave\n\nEmployees get twenty-five days of paid vacation a year.")
        .unwrap();
    let config = dir.join("lore.toml");
    let provider = provider.config(0, 30.0);
    std::fs::write(
        &config,
        format!(
            "{extra}\n[[chat.providers]]\nname = \"model\"\nbase_url = {:?}\nmodel = {:?}\nmax_retries = 0\n",
            provider.base_url, provider.model
        ),
    )
    .unwrap();
    let data = dir.join("data");
    let ingest = ["--config", config.to_str().unwrap(), "ingest", docs.to_str().unwrap(), "--acl", "everyone"];
    assert_success(&lore(&data, &ingest));
    (config, data)
}

/// A loopback OpenTelemetry collector: the OTLP/HTTP trace exports it received, decoded.
async fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<ExportTraceServiceRequest>>>) {
    use prost::Message;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf trace export");
            store.lock().unwrap().push(request);
            // An empty ExportTraceServiceResponse: everything accepted.
            ([(axum::http::header::CONTENT_TYPE, "application/x-protobuf")], Vec::<u8>::new())
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/traces"), received)
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let value = span.attributes.iter().find(|a| a.key == key)?.value.as_ref()?.value.as_ref()?;
    match value {
        Value::StringValue(text) => Some(text.clone()),
        Value::IntValue(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_reach_an_otlp_collector_with_a_span_per_stage_and_the_usage_ids() {
    let (endpoint, received) = collector().await;
    let provider = lore_chat::testing::FakeProvider::scripted("model", vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("[telemetry]\notlp_endpoint = {endpoint:?}\n");
    let (config, data) = leave_policy_served_by(dir.path(), &provider, &extra);
    let with_config = ["--config", config.to_str().unwrap()];
    let key = admin_key(&data);
    let served = serve_with(&data, &with_config, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);

    let (status, answer) = call(
        served.addr,
        "POST",
        "/v1/chat",
        Some(&key),
        Some(json!({"question": "How many days of paid vacation do employees get?"})),
    )
    .await;
    assert_eq!((status, answer["kind"].as_str()), (200, Some("generated")), "{answer}");

    // The request's spans: the request itself, then each stage, all in one trace.
    let stages = ["auth", "embed", "bm25", "dense", "fusion", "generation"];
    let mut spans: Vec<Span> = Vec::new();
    for _ in 0..100 {
        spans = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|export| &export.resource_spans)
            .flat_map(|resource| &resource.scope_spans)
            .flat_map(|scope| scope.spans.clone())
            .collect();
        let request =
            spans.iter().find(|s| s.name == "request" && attribute(s, "http.route").as_deref() == Some("/v1/chat"));
        if request.is_some() && stages.iter().all(|stage| spans.iter().any(|s| s.name == *stage)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let request = spans
        .iter()
        .find(|s| s.name == "request" && attribute(s, "http.route").as_deref() == Some("/v1/chat"))
        .unwrap_or_else(|| panic!("no request span: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>()));
    for stage in stages {
        let span = spans.iter().find(|s| s.name == stage && s.trace_id == request.trace_id);
        assert!(span.is_some(), "no {stage} span in the chat's trace");
    }
    assert_eq!(attribute(request, "message.id"), answer["message_id"].as_i64().map(|id| id.to_string()));
    assert_eq!(attribute(request, "conversation.id").as_deref(), answer["conversation_id"].as_str());
    assert_eq!(attribute(request, "http.status").as_deref(), Some("200"));
    // The event id on the span is the usage event's.
    let store = lore_usage::store::UsageStore::open(&data.join("catalog.sqlite")).unwrap();
    let mut chat_event = None;
    for _ in 0..50 {
        chat_event = store.events(0, i64::MAX).unwrap().into_iter().find(|e| e.endpoint.is_chat());
        if chat_event.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chat_event = chat_event.expect("the chat's usage event is written");
    assert_eq!(attribute(request, "usage.event_id"), Some(chat_event.id));
    drop(served);
}

#[tokio::test(flavor = "multi_thread")]
async fn lore_sync_runs_a_connector_through_the_server_and_lore_status_reports_it() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let repo = data.path().join("repo");
    std::fs::create_dir_all(repo.join("docs")).unwrap();
    std::fs::write(repo.join("docs/oncall.md"), "# On-call\n\nPages are answered within fifteen minutes.\n").unwrap();
    for args in [&["init", "-q", "-b", "main"][..], &["add", "."], &["commit", "-q", "-m", "on-call"]] {
        let output = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let config = data.path().join("lore.toml");
    std::fs::write(
        &config,
        format!(
            "[[connectors]]\nname = \"runbooks\"\ndefault_acl = [\"everyone\"]\ngit = {{ url = {:?} }}\n",
            repo.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let key = admin_key(&dir);
    let no_server = lore(&dir, &["--config", config, "sync", "runbooks", "--api-key", &key]);
    assert!(String::from_utf8_lossy(&no_server.stderr).contains("start it"), "{no_server:?}");
    let _server = serve_with(&dir, &["--config", config], &[]);

    let unknown = lore(&dir, &["--config", config, "sync", "wiki", "--api-key", &key]);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("configured: [\"runbooks\"]"), "{unknown:?}");
    let synced = lore(&dir, &["--config", config, "sync", "runbooks", "--api-key", &key]);
    assert_success(&synced);
    assert!(String::from_utf8_lossy(&synced.stdout).contains("sync runbooks: ok (1 upserts queued"), "{synced:?}");
    let status = lore(&dir, &["--config", config, "status"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert!(stdout.contains("connector:     runbooks (git): last sync") && stdout.contains("ok: 1 items"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openai_sdk_uses_a_running_lore_serve_as_a_model() {
    use async_openai::types::chat::{
        ChatCompletionRequestMessage, ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
    };
    use futures::StreamExt;
    let provider = lore_chat::testing::FakeProvider::answering("model", |request| {
        let parts = ["Employees get ", "twenty-five days ", "a year [1]."];
        if request["stream"] == true {
            lore_chat::testing::Reply::stream(&parts, Duration::from_millis(5))
        } else {
            lore_chat::testing::Reply::text(parts.concat())
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (config, data) = leave_policy_served_by(dir.path(), &provider, "");
    let with_config = ["--config", config.to_str().unwrap()];
    let key = admin_key(&data);
    let served = serve_with(&data, &with_config, &[]);
    let client = async_openai::Client::with_config(
        async_openai::config::OpenAIConfig::new().with_api_base(format!("{}/v1", served.url)).with_api_key(key),
    );
    let messages = vec![ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(
        "How many days of paid vacation do employees get?",
    ))];
    let whole = client
        .chat()
        .create(CreateChatCompletionRequestArgs::default().model("lore").messages(messages.clone()).build().unwrap())
        .await
        .unwrap();
    let content = whole.choices[0].message.content.clone().unwrap();
    assert!(
        content.starts_with("Employees get twenty-five days a year [^1].") && content.contains("[^1]: Leave"),
        "{content}"
    );
    let mut stream = client
        .chat()
        .create_stream(
            CreateChatCompletionRequestArgs::default().model("lore").messages(messages).stream(true).build().unwrap(),
        )
        .await
        .unwrap();
    let mut streamed = String::new();
    while let Some(chunk) = stream.next().await {
        for choice in chunk.unwrap().choices {
            streamed.push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
    }
    assert_eq!(streamed, content, "the stream adds up to the whole answer");
}
