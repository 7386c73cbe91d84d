//! Generation through OpenAI-compatible providers, against real HTTP servers on loopback
//! that speak the chat-completions protocol with scripted replies, failures and delays.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lore_chat::conversations::Conversations;
use lore_chat::{ChatEngine, Retriever};
use lore_core::acl::{AccessScope, PrincipalSet};
use lore_core::config::{ChatConfig, ProviderConfig};
use lore_core::embed::Embedder;
use lore_ingest::{IngestOptions, Ingestor, SourceConfig};
use serde_json::{Value, json};

use crate::workspace_root;

#[derive(Clone)]
pub enum Step {
    Reply(&'static str),
    Status(u16),
    Delay(u64, &'static str),
    /// Streamed as chat.completion.chunk events, one every `delay` milliseconds.
    Stream(Vec<&'static str>, u64),
}

#[derive(Default)]
struct Script {
    steps: Mutex<VecDeque<Step>>,
    requests: Mutex<Vec<Value>>,
    /// Chunks written to streaming responses, and whether a stream was dropped unfinished.
    chunks_sent: std::sync::atomic::AtomicUsize,
    cancelled: std::sync::atomic::AtomicBool,
}

/// Flags the script when a streaming response is dropped before its last chunk.
struct CancelGuard {
    script: Arc<Script>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.script.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn stream_reply(name: &'static str, script: Arc<Script>, parts: Vec<&'static str>, delay: u64) -> Response {
    use futures::StreamExt;
    let chunk = move |content: Value| {
        json!({"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": format!("fake-{name}"),
               "choices": [{"index": 0, "delta": content, "finish_reason": null, "logprobs": null}]})
    };
    let mut frames: Vec<String> = vec![format!("data: {}\n\n", chunk(json!({"role": "assistant", "content": ""})))];
    frames.extend(parts.iter().map(|p| format!("data: {}\n\n", chunk(json!({"content": p})))));
    frames.push("data: [DONE]\n\n".into());
    let total = frames.len();
    let guard = CancelGuard { script: script.clone(), finished: false };
    let body = futures::stream::unfold((frames.into_iter().enumerate(), guard), move |(mut frames, mut guard)| {
        let script = script.clone();
        async move {
            let (i, frame) = frames.next()?;
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            script.chunks_sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i + 1 == total {
                guard.finished = true;
            }
            Some((Ok::<_, std::convert::Infallible>(frame), (frames, guard)))
        }
    })
    .boxed();
    Response::builder().header("content-type", "text/event-stream").body(axum::body::Body::from_stream(body)).unwrap()
}

pub struct FakeProvider {
    addr: SocketAddr,
    script: Arc<Script>,
}

impl FakeProvider {
    pub async fn start(name: &'static str, steps: Vec<Step>) -> FakeProvider {
        let script = Arc::new(Script { steps: Mutex::new(steps.into()), ..Script::default() });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(move |state, body| completions(name, state, body)))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeProvider { addr, script }
    }

    pub fn config(&self, name: &str, max_retries: u32, timeout_secs: f64) -> ProviderConfig {
        ProviderConfig {
            name: name.into(),
            base_url: format!("http://{}/v1", self.addr),
            model: format!("fake-{name}"),
            api_key_env: None,
            timeout_secs,
            connect_timeout_secs: 1.0,
            max_retries,
            initial_backoff_ms: 10,
            temperature: None,
            max_tokens: None,
        }
    }

    fn requests(&self) -> Vec<Value> {
        self.script.requests.lock().unwrap().clone()
    }

    /// The user message of each request.
    pub fn prompts(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn completions(name: &'static str, State(script): State<Arc<Script>>, Json(body): Json<Value>) -> Response {
    script.requests.lock().unwrap().push(body.clone());
    let step = script.steps.lock().unwrap().pop_front().unwrap_or(Step::Reply("Default reply [1]."));
    let streaming = body["stream"] == true;
    let text = match step {
        Step::Stream(parts, delay) => return stream_reply(name, script.clone(), parts, delay),
        Step::Reply(text) if streaming => return stream_reply(name, script.clone(), vec![text], 0),
        Step::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap();
            let error = json!({"error": {"message": format!("scripted {code}"), "type": "scripted", "param": null, "code": null}});
            return (status, Json(error)).into_response();
        }
        Step::Delay(ms, text) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text
        }
        Step::Reply(text) => text,
    };
    Json(json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": format!("fake-{name}"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}
    }))
    .into_response()
}

/// The sample corpus, ingested once; its retriever is shared by the tests.
fn corpus() -> (Arc<Retriever>, std::path::PathBuf) {
    static CORPUS: OnceLock<(Arc<Retriever>, tempfile::TempDir)> = OnceLock::new();
    let (retriever, dir) = CORPUS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config_in(dir.path().join("data"));
        let data_config = config.clone();
        // Built on a thread of its own: the tests calling this already run inside a runtime.
        let retriever = std::thread::spawn(move || {
            let config = data_config;
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let embedder = Arc::new(Embedder::load(&config.embedding).unwrap());
                let sources = SourceConfig::load(&workspace_root().join("ingest/samples.toml")).unwrap().sources;
                let mut ingestor = Ingestor::open(config.clone(), embedder.clone()).await.unwrap();
                ingestor.ingest(&sources, &IngestOptions::default()).await.unwrap();
                drop(ingestor);
                Arc::new(Retriever::open(&config, embedder).await.unwrap())
            })
        })
        .join()
        .unwrap();
        (retriever, dir)
    });
    (retriever.clone(), dir.path().join("data/catalog.sqlite"))
}

fn engine(providers: Vec<ProviderConfig>) -> ChatEngine {
    let (retriever, catalog) = corpus();
    let config = ChatConfig { providers, company: "Acme Robotics".into(), ..ChatConfig::default() };
    ChatEngine::new(retriever, Conversations::open(&catalog).unwrap(), &config).unwrap()
}

fn scope(user: &str, groups: &[&str]) -> AccessScope {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    AccessScope::impersonate_for_operator(PrincipalSet::for_user(user, &groups, &[]).unwrap(), "provider test")
}

const VACATION: &str = "How many days of paid vacation do I get?";

#[tokio::test]
async fn generated_answers_keep_valid_citations_and_drop_invented_ones() {
    let primary =
        FakeProvider::start("primary", vec![Step::Reply("You get 25 days [1], see also [42] and [1, 77].")]).await;
    let engine = engine(vec![primary.config("primary", 0, 5.0)]);
    let answer = engine.ask("ann", &scope("ann", &[]), VACATION, None, None).await.unwrap();
    assert_eq!(answer.kind, lore_chat::answer::AnswerKind::Generated);
    assert_eq!(answer.answer, "You get 25 days [1], see also and [1].");
    assert_eq!(answer.citations.len(), 1);
    assert_eq!(answer.citations[0].marker, 1);
    assert_eq!(answer.model.as_deref(), Some("fake-primary"));
    assert_eq!(answer.prompt_version.as_deref(), Some("system-2026-11-26+answer-2026-11-26"));
    assert_eq!(answer.usage.as_ref().unwrap().prompt_tokens, 321);
    let requests = primary.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "fake-primary");
    let prompt = &primary.prompts()[0];
    assert!(prompt.contains(VACATION) && prompt.contains("[1] (Acme Robotics Employee Handbook"), "{prompt}");
    // The cited passage is the one numbered [1] in the prompt.
    assert!(prompt.contains(answer.citations[0].snippet.lines().next().unwrap()));
}

#[tokio::test]
async fn transient_errors_are_retried_then_the_fallback_answers() {
    let primary = FakeProvider::start("primary", vec![Step::Status(500), Step::Status(429), Step::Status(503)]).await;
    let secondary = FakeProvider::start("secondary", vec![Step::Reply("25 days [1].")]).await;
    let engine = engine(vec![primary.config("primary", 2, 5.0), secondary.config("secondary", 2, 5.0)]);
    let answer = engine.ask("ann", &scope("ann", &[]), VACATION, None, None).await.unwrap();
    assert_eq!(answer.model.as_deref(), Some("fake-secondary"));
    assert_eq!((primary.requests().len(), secondary.requests().len()), (3, 1));
}

#[tokio::test]
async fn permanent_errors_move_on_without_retrying() {
    let primary = FakeProvider::start("primary", vec![Step::Status(401)]).await;
    let secondary = FakeProvider::start("secondary", vec![Step::Reply("25 days [1].")]).await;
    let engine = engine(vec![primary.config("primary", 3, 5.0), secondary.config("secondary", 0, 5.0)]);
    let answer = engine.ask("ann", &scope("ann", &[]), VACATION, None, None).await.unwrap();
    assert_eq!(answer.model.as_deref(), Some("fake-secondary"));
    assert_eq!(primary.requests().len(), 1, "a 401 must not be retried");
}

#[tokio::test]
async fn timeouts_count_as_transient() {
    let primary =
        FakeProvider::start("primary", vec![Step::Delay(3000, "late [1]"), Step::Delay(3000, "late [1]")]).await;
    let secondary = FakeProvider::start("secondary", vec![Step::Reply("on time [1].")]).await;
    let engine = engine(vec![primary.config("primary", 1, 0.3), secondary.config("secondary", 0, 5.0)]);
    let started = std::time::Instant::now();
    let answer = engine.ask("ann", &scope("ann", &[]), VACATION, None, None).await.unwrap();
    assert_eq!(answer.answer, "on time [1].");
    assert_eq!(primary.requests().len(), 2);
    assert!(started.elapsed() < Duration::from_secs(3), "timeouts were not enforced");
}

#[tokio::test]
async fn when_every_provider_fails_the_answer_is_extracted_not_an_error() {
    let primary = FakeProvider::start("primary", vec![Step::Status(503), Step::Status(503)]).await;
    let engine = engine(vec![primary.config("primary", 1, 5.0)]);
    let answer = engine.ask("ann", &scope("ann", &[]), VACATION, None, None).await.unwrap();
    assert_eq!(answer.kind, lore_chat::answer::AnswerKind::Extracted);
    assert!(answer.answer.contains("25 days"));
    assert_eq!(answer.provider_errors.len(), 2);
    assert!(answer.model.is_none());
}

#[tokio::test]
async fn the_prompt_holds_only_passages_the_asker_may_read() {
    let question = "What are the salary bands for engineers, and how many vacation days do we get?";
    let fake = FakeProvider::start("primary", vec![Step::Reply("See [1]."), Step::Reply("See [1].")]).await;
    let engine = engine(vec![fake.config("primary", 0, 5.0)]);
    engine.ask("dana", &scope("dana", &["sales"]), question, None, None).await.unwrap();
    engine.ask("alice", &scope("alice", &["hr"]), question, None, None).await.unwrap();
    let prompts = fake.prompts();
    assert_eq!(prompts.len(), 2);
    for hr_only in ["Salary Bands", "$95,000", "Engineer II"] {
        assert!(!prompts[0].contains(hr_only), "HR-only text {hr_only:?} in a sales user's prompt");
    }
    // The same question from HR does bring the HR passages: the check above can fail.
    assert!(prompts[1].contains("Salary Bands"), "{}", prompts[1]);
}

#[tokio::test]
async fn nothing_relevant_means_no_model_call() {
    let fake = FakeProvider::start("primary", vec![]).await;
    let engine = engine(vec![fake.config("primary", 0, 5.0)]);
    let answer = engine.ask("ann", &scope("ann", &[]), "What is the capital of Mongolia?", None, None).await.unwrap();
    assert_eq!(answer.kind, lore_chat::answer::AnswerKind::NoAnswer);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn follow_ups_are_condensed_by_the_model() {
    let fake = FakeProvider::start(
        "primary",
        vec![
            Step::Reply("25 days [1]."),
            Step::Reply("vacation days carry over next year"),
            Step::Reply("Up to 5 [1]."),
        ],
    )
    .await;
    let engine = engine(vec![fake.config("primary", 0, 5.0)]);
    let first = engine.ask("ann", &scope("ann", &[]), VACATION, None, None).await.unwrap();
    let second = engine
        .ask("ann", &scope("ann", &[]), "Can I carry them over?", Some(&first.conversation_id), None)
        .await
        .unwrap();
    assert_eq!(second.standalone_query, "vacation days carry over next year");
    let prompts = fake.prompts();
    assert!(
        prompts[1].contains("User: How many days of paid vacation") && prompts[1].contains("Can I carry them over?")
    );
    assert_eq!(second.answer, "Up to 5 [1].");
}

async fn collect(engine: &ChatEngine, question: &str) -> Vec<lore_chat::chat::ChatEvent> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
    engine.ask_streaming("ann", &scope("ann", &[]), question, None, None, sender).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = receiver.recv().await {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn streamed_answers_send_metadata_then_filtered_deltas_then_the_final_answer() {
    use lore_chat::chat::ChatEvent;
    let fake =
        FakeProvider::start("primary", vec![Step::Stream(vec!["You get ", "25 days [", "1]. Also [", "9] ok."], 5)])
            .await;
    let engine = engine(vec![fake.config("primary", 0, 5.0)]);
    let events = collect(&engine, VACATION).await;
    let ChatEvent::Metadata(metadata) = &events[0] else { panic!("metadata must come first") };
    assert_eq!(metadata.model.as_deref(), Some("fake-primary"));
    assert!(!metadata.sources.is_empty());
    let deltas: String = events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Delta(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let ChatEvent::Final(answer) = events.last().unwrap() else { panic!("final must come last") };
    assert_eq!(deltas, "You get 25 days [1]. Also ok.");
    assert_eq!(answer.answer, deltas);
    assert_eq!(answer.citations.len(), 1);
    assert_eq!(fake.requests()[0]["stream"], true);
}

#[tokio::test]
async fn a_stream_that_fails_to_start_falls_back() {
    use lore_chat::chat::ChatEvent;
    let primary = FakeProvider::start("primary", vec![Step::Status(500)]).await;
    let secondary = FakeProvider::start("secondary", vec![Step::Stream(vec!["25 days [1]."], 1)]).await;
    let engine = engine(vec![primary.config("primary", 0, 5.0), secondary.config("secondary", 0, 5.0)]);
    let events = collect(&engine, VACATION).await;
    let ChatEvent::Final(answer) = events.last().unwrap() else { panic!() };
    assert_eq!(answer.model.as_deref(), Some("fake-secondary"));
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_generation() {
    use lore_chat::chat::ChatEvent;
    let parts = vec!["word "; 40];
    let fake = FakeProvider::start("primary", vec![Step::Stream(parts, 100)]).await;
    let engine = Arc::new(engine(vec![fake.config("primary", 0, 10.0)]));
    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let task = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.ask_streaming("ann", &scope("ann", &[]), VACATION, None, None, sender).await })
    };
    assert!(matches!(receiver.recv().await, Some(ChatEvent::Metadata(_))));
    assert!(matches!(receiver.recv().await, Some(ChatEvent::Delta(_))));
    drop(receiver); // the client disconnects
    tokio::time::timeout(Duration::from_secs(2), task).await.expect("generation stopped").unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.script.cancelled.load(std::sync::atomic::Ordering::SeqCst), "provider stream was not closed");
    let sent = fake.script.chunks_sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 20, "the provider kept streaming after the client left ({sent} chunks)");
}
