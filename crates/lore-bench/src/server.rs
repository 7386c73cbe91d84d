//! What the suite measures against: a real `lore serve` process on loopback (so its memory
//! and startup are its own), and a loopback model provider that speaks the OpenAI
//! chat-completions protocol with a fixed latency and notes when each request arrived.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A `lore serve` child process; killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    /// From spawning the process to the first `200` from `/readyz`.
    pub startup: Duration,
}

impl Server {
    pub async fn start(lore: &Path, config: &Path) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let base = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(config.with_extension("log"))?;
        let started = Instant::now();
        let child = Command::new(lore)
            .arg("--config")
            .arg(config)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", lore.display()))?;
        let mut server = Server { child, base, startup: Duration::ZERO };
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("lore serve exited with {status}; see {}", config.with_extension("log").display());
            }
            let ready = client.get(format!("{}/readyz", server.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "lore serve not ready after 300 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.startup = started.elapsed();
        Ok(server)
    }

    pub fn status_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/status", self.child.id()))
    }

    /// Peak resident memory so far (MiB), from `/proc/<pid>/status`.
    pub fn peak_mib(&self) -> anyhow::Result<f64> {
        status_field(&self.status_path(), "VmHWM:")
    }
}

/// Resident memory now (MiB) of the process whose `/proc/<pid>/status` this is.
pub fn resident_mib(status: &Path) -> anyhow::Result<f64> {
    status_field(status, "VmRSS:")
}

fn status_field(status: &Path, name: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(status)?;
    let line =
        text.lines().find(|l| l.starts_with(name)).with_context(|| format!("no {name} in {}", status.display()))?;
    let kib: f64 = line.split_whitespace().nth(1).context("no value")?.parse()?;
    Ok(kib / 1024.0)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the server's config: the data folder, and the fake provider as the only model.
pub fn write_config(
    path: &Path,
    data_dir: &Path,
    provider: SocketAddr,
    embedding: &lore_core::config::EmbeddingConfig,
) -> anyhow::Result<PathBuf> {
    let absolute = |p: &Path| std::path::absolute(p).map(|p| p.display().to_string());
    let text = format!(
        "data_dir = {data:?}\n\n[embedding]\nmodel_dir = {model:?}\nonnxruntime_library = {ort:?}\n\n\
         [[chat.providers]]\nname = \"fake\"\nbase_url = \"http://{provider}/v1\"\nmodel = \"fake\"\nmax_retries = 0\n",
        data = absolute(data_dir)?,
        model = absolute(&embedding.model_dir)?,
        ort = absolute(&embedding.onnxruntime_library)?,
    );
    std::fs::write(path, text)?;
    Ok(path.to_owned())
}

/// The fake provider's timing: the first token after `first_token`, then `tokens - 1` more,
/// one every `per_token`.
#[derive(Debug, Clone, Copy)]
pub struct ProviderTiming {
    pub first_token: Duration,
    pub tokens: usize,
    pub per_token: Duration,
}

impl ProviderTiming {
    /// The time the provider itself takes for a whole answer.
    pub fn total(&self) -> Duration {
        self.first_token + self.per_token * (self.tokens.saturating_sub(1) as u32)
    }
}

#[derive(Clone)]
struct ProviderState {
    timing: ProviderTiming,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

/// A loopback chat-completions server; its handler notes each request's arrival.
pub struct FakeProvider {
    pub addr: SocketAddr,
    pub timing: ProviderTiming,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl FakeProvider {
    pub async fn start(timing: ProviderTiming) -> anyhow::Result<FakeProvider> {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let state = ProviderState { timing, arrivals: arrivals.clone() };
        let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(completions)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FakeProvider { addr, timing, arrivals })
    }

    /// Arrival times noted since the last call.
    pub fn take_arrivals(&self) -> Vec<Instant> {
        std::mem::take(&mut *self.arrivals.lock().expect("arrivals"))
    }
}

/// The reply cites passage 1, as a grounded answer does.
fn reply_tokens(n: usize) -> Vec<String> {
    (0..n).map(|i| if i + 1 == n { " [1].".to_owned() } else { format!(" word{i}") }).collect()
}

async fn completions(State(state): State<ProviderState>, Json(request): Json<Value>) -> Response {
    state.arrivals.lock().expect("arrivals").push(Instant::now());
    let timing = state.timing;
    let tokens = reply_tokens(timing.tokens);
    if !request["stream"].as_bool().unwrap_or(false) {
        tokio::time::sleep(timing.total()).await;
        return Json(json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                         "message": {"role": "assistant", "content": tokens.concat()}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": timing.tokens, "total_tokens": 1000 + timing.tokens}
        }))
        .into_response();
    }
    let chunk = |delta: Value| {
        let value = json!({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": "fake", "choices": [{"index": 0, "delta": delta, "finish_reason": null, "logprobs": null}]});
        format!("data: {value}\n\n")
    };
    let mut frames = vec![(Duration::ZERO, chunk(json!({"role": "assistant", "content": ""})))];
    for (i, token) in tokens.into_iter().enumerate() {
        let wait = if i == 0 { timing.first_token } else { timing.per_token };
        frames.push((wait, chunk(json!({"content": token}))));
    }
    frames.push((Duration::ZERO, "data: [DONE]\n\n".to_owned()));
    let body = futures::stream::unfold(frames.into_iter(), |mut frames| async move {
        let (wait, frame) = frames.next()?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Some((Ok::<_, std::convert::Infallible>(frame), frames))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(body))
        .expect("response")
}
