//! A loopback OpenAI-compatible model provider for tests and benchmarks (feature `test-provider`):
//! `POST /v1/chat/completions` served by axum on 127.0.0.1, with replies from a script or computed from
//! each request, streamed or whole, and a record of what it was asked. One fake, so every crate tests
//! against the same protocol that `async-openai` parses.
//!
//! ```no_run
//! # async fn example() {
//! use lore_chat::provider::ProviderChain;
//! use lore_chat::testing::{FakeProvider, Reply};
//!
//! let fake = FakeProvider::scripted("primary", vec![Reply::Status(503), Reply::text("25 days [1].")]).await;
//! let chain = ProviderChain::new(&[fake.config(1, 5.0)]).unwrap();
//! let completion = chain.complete("system", "How many vacation days?").await.unwrap();
//! assert_eq!(completion.text, "25 days [1].");
//! assert_eq!(fake.prompts(), ["How many vacation days?"; 2]);
//! # }
//! ```

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lore_core::config::ProviderConfig;
use serde_json::{Value, json};

/// What the provider does with one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A whole answer; sent as one chunk (after the role chunk) when the request streams.
    Text(String),
    /// An error status with an OpenAI-style error body
    /// `{"error": {"message": "scripted <code>", "type": "scripted", "param": null, "code": null}}`.
    Status(u16),
    /// `Text` after a delay.
    Delayed(Duration, String),
    /// Streamed as chat.completion.chunk events: a role chunk at once, then each part, waiting `first`
    /// before the first part and `every` before each later one, then `data: [DONE]` at once. A
    /// non-streaming request gets the parts joined after `first + every * (n-1)`.
    Stream { parts: Vec<String>, first: Duration, every: Duration },
}

impl Reply {
    pub fn text(s: impl Into<String>) -> Reply {
        Reply::Text(s.into())
    }

    /// Parts streamed one every `every`, the first one too.
    pub fn stream(parts: &[&str], every: Duration) -> Reply {
        Reply::Stream { parts: parts.iter().map(|p| p.to_string()).collect(), first: every, every }
    }
}

/// The reply a script gives once it has run out.
const DEFAULT_REPLY: &str = "Default reply [1].";

type Answer = dyn Fn(&Value) -> Reply + Send + Sync;

struct Shared {
    name: String,
    answer: Box<Answer>,
    requests: Mutex<Vec<Value>>,
    arrivals: Mutex<Vec<Instant>>,
    chunks_sent: AtomicUsize,
    cancelled: AtomicBool,
}

/// A chat-completions server on a free loopback port; it runs until the runtime stops.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeProvider {
    /// Replies from a script, in order; when it runs out, `Text("Default reply [1].")`.
    pub async fn scripted(name: &str, replies: Vec<Reply>) -> FakeProvider {
        let script = Mutex::new(VecDeque::from(replies));
        FakeProvider::answering(name, move |_| lock(&script).pop_front().unwrap_or_else(|| Reply::text(DEFAULT_REPLY)))
            .await
    }

    /// Replies computed from each request's JSON body.
    pub async fn answering(name: &str, reply: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> FakeProvider {
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            answer: Box::new(reply),
            requests: Mutex::default(),
            arrivals: Mutex::default(),
            chunks_sent: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("fake provider server") });
        FakeProvider { addr, shared }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A provider entry for this server: model `fake-<name>`, no API key, a 1 s connect timeout and 10 ms
    /// initial backoff so that retries stay quick.
    pub fn config(&self, max_retries: u32, timeout_secs: f64) -> ProviderConfig {
        ProviderConfig {
            name: self.shared.name.clone(),
            base_url: self.base_url(),
            model: self.shared.model(),
            api_key_env: None,
            timeout_secs,
            connect_timeout_secs: 1.0,
            max_retries,
            initial_backoff_ms: 10,
            temperature: None,
            max_tokens: None,
            dlp: lore_policy::dlp::Mode::default(),
        }
    }

    /// Every request body received, in order.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.requests).clone()
    }

    /// The content of each request's last message.
    pub fn prompts(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| {
                let last = r["messages"].as_array().and_then(|m| m.last());
                last.and_then(|m| m["content"].as_str()).unwrap_or_default().to_owned()
            })
            .collect()
    }

    /// Arrival times of requests since the last call (for benchmarks).
    pub fn take_arrivals(&self) -> Vec<Instant> {
        std::mem::take(&mut *lock(&self.shared.arrivals))
    }

    /// Stream chunks written so far, the role chunk and `[DONE]` included.
    pub fn chunks_sent(&self) -> usize {
        self.shared.chunks_sent.load(Ordering::SeqCst)
    }

    /// Whether a streaming response was dropped before its last frame (the client went away).
    pub fn stream_was_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

impl Shared {
    fn model(&self) -> String {
        format!("fake-{}", self.name)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn completions(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    lock(&shared.arrivals).push(Instant::now());
    lock(&shared.requests).push(body.clone());
    let mut reply = (shared.answer)(&body);
    if let Reply::Delayed(delay, text) = reply {
        tokio::time::sleep(delay).await;
        reply = Reply::Text(text);
    }
    let streaming = body["stream"] == true;
    let (parts, first, every) = match reply {
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).expect("a valid status code");
            let error = json!({"error": {"message": format!("scripted {code}"), "type": "scripted", "param": null, "code": null}});
            return (status, Json(error)).into_response();
        }
        Reply::Text(text) | Reply::Delayed(_, text) => (vec![text], Duration::ZERO, Duration::ZERO),
        Reply::Stream { parts, first, every } => (parts, first, every),
    };
    if streaming {
        return stream(shared, parts, first, every);
    }
    tokio::time::sleep(first + every * (parts.len().saturating_sub(1) as u32)).await;
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": shared.model(),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": parts.concat()}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}
    }))
    .into_response()
}

/// Flags the provider when a streaming response is dropped before its last frame.
struct CancelGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.cancelled.store(true, Ordering::SeqCst);
        }
    }
}

fn stream(shared: Arc<Shared>, parts: Vec<String>, first: Duration, every: Duration) -> Response {
    let model = shared.model();
    let chunk = |delta: Value| {
        let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": null, "logprobs": null}]});
        format!("data: {chunk}\n\n")
    };
    let mut frames = vec![(Duration::ZERO, chunk(json!({"role": "assistant", "content": ""})))];
    for (i, part) in parts.into_iter().enumerate() {
        frames.push((if i == 0 { first } else { every }, chunk(json!({"content": part}))));
    }
    frames.push((Duration::ZERO, "data: [DONE]\n\n".to_owned()));
    let guard = CancelGuard { shared, finished: false };
    let body = futures::stream::unfold((frames.into_iter().peekable(), guard), |(mut frames, mut guard)| async move {
        let (wait, frame) = frames.next()?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        guard.shared.chunks_sent.fetch_add(1, Ordering::SeqCst);
        guard.finished = frames.peek().is_none();
        Some((Ok::<_, Infallible>(frame), (frames, guard)))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(body))
        .expect("a valid response")
}
