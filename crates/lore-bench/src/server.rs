//! What the suite measures against: a real `lore serve` process on loopback (so its memory
//! and startup are its own), and a loopback model provider (`lore_chat::testing`) that speaks
//! the OpenAI chat-completions protocol with a fixed latency and notes when each request arrived.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use lore_chat::testing::{FakeProvider, Reply};

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
    write_config_with(path, data_dir, provider, embedding, true)
}

/// [`write_config`] with `chat.speculative_generation` set as given.
pub fn write_config_with(
    path: &Path,
    data_dir: &Path,
    provider: SocketAddr,
    embedding: &lore_core::config::EmbeddingConfig,
    speculative: bool,
) -> anyhow::Result<PathBuf> {
    let absolute = |p: &Path| std::path::absolute(p).map(|p| p.display().to_string());
    let text = format!(
        "data_dir = {data:?}\n\n[embedding]\nmodel_dir = {model:?}\nonnxruntime_library = {ort:?}\n\n\
         [chat]\nspeculative_generation = {speculative}\n\n\
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

    /// A loopback provider that answers every request at this pace, streamed or whole, and notes
    /// when each request arrived. The reply cites passage 1, as a grounded answer does.
    pub async fn start_provider(self) -> FakeProvider {
        let n = self.tokens;
        let parts: Vec<String> =
            (0..n).map(|i| if i + 1 == n { " [1].".to_owned() } else { format!(" word{i}") }).collect();
        FakeProvider::answering("bench", move |_| Reply::Stream {
            parts: parts.clone(),
            first: self.first_token,
            every: self.per_token,
        })
        .await
    }
}
