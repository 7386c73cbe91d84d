//! The suite's HTTP scenarios against a `lore serve` process: search latency per corpus,
//! permitted share and concurrency; chat overhead against the fake provider; a mixed load
//! with memory sampling; an upload storm while queries run.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use lore_chat::testing::FakeProvider;
use lore_core::keys::{KeyStore, NewKey};
use lore_core::role::Role;
use serde_json::{Value, json};

use crate::server::{ProviderTiming, Server};

/// API keys the scenarios use, created in the data folder before the server starts.
pub struct Keys {
    /// One agent key per permitted share, as [`crate::corpus::SHARES`].
    pub shares: Vec<(String, String)>,
    pub admin: String,
}

impl Keys {
    pub fn create(catalog: &Path) -> anyhow::Result<Keys> {
        let store = KeyStore::open(catalog)?;
        let mut shares = Vec::new();
        for (label, principal) in crate::corpus::SHARES {
            let group = principal.strip_prefix("group:").context("share principals are groups")?;
            let key =
                NewKey { groups: vec![group.to_owned()], ..NewKey::new("bench", Role::Agent, "bench", "lore-bench") };
            shares.push((label.to_owned(), store.create(&key)?.0));
        }
        let admin = store.create(&NewKey::new("bench-admin", Role::Admin, "bench-admin", "lore-bench"))?.0;
        Ok(Keys { shares, admin })
    }
}

/// Latency percentiles (ms) and throughput of one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub requests_per_s: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

impl Summary {
    fn of(latencies: &mut [f64], errors: usize, wall: Duration) -> Summary {
        latencies.sort_by(f64::total_cmp);
        Summary {
            requests: latencies.len() + errors,
            errors,
            p50_ms: percentile(latencies, 0.50),
            p95_ms: percentile(latencies, 0.95),
            p99_ms: percentile(latencies, 0.99),
            requests_per_s: (latencies.len() + errors) as f64 / wall.as_secs_f64(),
        }
    }
}

/// Runs `requests` calls of `one(i)` with `concurrency` in flight; returns each call's
/// result in completion order, and the wall time.
async fn drive<F, Fut, T>(concurrency: usize, requests: usize, one: F) -> (Vec<anyhow::Result<T>>, Duration)
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
    T: Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next, one) = (next.clone(), one.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                out.push(one(i).await);
            }
            out
        }));
    }
    let mut results = Vec::with_capacity(requests);
    for worker in workers {
        results.extend(worker.await.expect("worker"));
    }
    (results, started.elapsed())
}

/// One `/v1/search`: (latency ms, the server's stage timings).
async fn search_once(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    query: &str,
    limit: usize,
) -> anyhow::Result<(f64, Value)> {
    let started = Instant::now();
    let response = client
        .post(format!("{base}/v1/search"))
        .bearer_auth(key)
        .json(&json!({"query": query, "limit": limit}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "search: {status} {body}");
    Ok((started.elapsed().as_secs_f64() * 1e3, body))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchLevel {
    pub share: String,
    pub permitted_chunks: usize,
    pub concurrency: usize,
    #[serde(flatten)]
    pub summary: Summary,
    /// Means of the server's own stage timings.
    pub embed_ms: f64,
    pub bm25_ms: f64,
    pub dense_ms: f64,
    pub fusion_ms: f64,
}

/// Search latency for one share at each concurrency level; every request asks the next
/// question of `questions` (from `offset`).
#[allow(clippy::too_many_arguments)]
pub async fn search_levels(
    server: &Server,
    key: &str,
    share: &str,
    permitted_chunks: usize,
    questions: Arc<Vec<String>>,
    offset: &mut usize,
    levels: &[usize],
    requests: usize,
) -> anyhow::Result<Vec<SearchLevel>> {
    let mut rows = Vec::new();
    for &concurrency in levels {
        let queries: Vec<String> = (0..requests).map(|i| questions[(*offset + i) % questions.len()].clone()).collect();
        *offset += requests;
        let (summary, [embed_ms, bm25_ms, dense_ms, fusion_ms]) = search_run(server, key, queries, concurrency).await?;
        rows.push(SearchLevel {
            share: share.to_owned(),
            permitted_chunks,
            concurrency,
            summary,
            embed_ms,
            bm25_ms,
            dense_ms,
            fusion_ms,
        });
    }
    Ok(rows)
}

/// `/v1/search` for each of `queries` with `concurrency` in flight: the run's summary and the
/// means of the server's stage timings (embed, bm25, dense, fusion).
async fn search_run(
    server: &Server,
    key: &str,
    queries: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<(Summary, [f64; 4])> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let requests = queries.len();
    let (base, key, queries) = (server.base.clone(), key.to_owned(), Arc::new(queries));
    let (results, wall) = drive(concurrency, requests, move |i| {
        let (client, base, key, queries) = (client.clone(), base.clone(), key.clone(), queries.clone());
        async move { search_once(&client, &base, &key, &queries[i], 8).await }
    })
    .await;
    let mut latencies = Vec::new();
    let (mut errors, mut stages) = (0, [0.0f64; 4]);
    for result in results {
        match result {
            Ok((ms, body)) => {
                latencies.push(ms);
                for (sum, field) in stages.iter_mut().zip(["embed_ms", "bm25_ms", "dense_ms", "fusion_ms"]) {
                    *sum += body["timings"][field].as_f64().unwrap_or(0.0);
                }
            }
            Err(error) => {
                errors += 1;
                eprintln!("search error: {error:#}");
            }
        }
    }
    let ok = latencies.len().max(1) as f64;
    Ok((Summary::of(&mut latencies, errors, wall), stages.map(|sum| sum / ok)))
}

/// Search throughput under a question mix at one concurrency.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MixRun {
    /// `zipf`: questions drawn Zipf(1.0) from all of them, after as many again drawn the same
    /// way to warm the query cache; `distinct`: each request a question not asked before on
    /// this server.
    pub mix: String,
    pub concurrency: usize,
    /// The query cache's hit rate over the timed requests, replayed offline through the same
    /// cache (`lore_core::embed::QueryCache`, the server's capacity) in request order.
    pub cache_hit_rate: f64,
    #[serde(flatten)]
    pub summary: Summary,
    pub embed_ms: f64,
    pub bm25_ms: f64,
    pub dense_ms: f64,
    pub fusion_ms: f64,
}

/// The question mixes of the throughput targets, on a server started fresh (a cold query
/// cache): first `requests` distinct questions (`distinct` indexes them in `questions`), then
/// the Zipf stream (`requests` to warm the cache, `requests` timed). `questions` holds each
/// question once.
pub async fn question_mixes(
    server: &Server,
    key: &str,
    questions: &[String],
    distinct: Vec<usize>,
    requests: usize,
    concurrency: usize,
    cache_capacity: usize,
) -> anyhow::Result<Vec<MixRun>> {
    let row = |mix: &str, hit_rate: f64, (summary, stages): (Summary, [f64; 4])| MixRun {
        mix: mix.to_owned(),
        concurrency,
        cache_hit_rate: hit_rate,
        summary,
        embed_ms: stages[0],
        bm25_ms: stages[1],
        dense_ms: stages[2],
        fusion_ms: stages[3],
    };
    anyhow::ensure!(distinct.len() == requests, "{requests} distinct requests need as many distinct questions");
    let asked = |draws: &[usize]| draws.iter().map(|&i| questions[i].clone()).collect::<Vec<_>>();
    let distinct_run = search_run(server, key, asked(&distinct), concurrency).await?;
    let draws = crate::corpus::zipf_draws(questions.len(), 2 * requests, crate::corpus::ZIPF_SEED);
    let (warm, timed) = draws.split_at(requests);
    eprintln!("zipf mix: warming the query cache with {requests} requests");
    search_run(server, key, asked(warm), concurrency).await?;
    let warmed: Vec<usize> = distinct.iter().chain(warm).copied().collect();
    let zipf_hits = crate::corpus::cache_hit_rate(questions, timed, &warmed, cache_capacity);
    let zipf_run = search_run(server, key, asked(timed), concurrency).await?;
    Ok(vec![row("distinct", 0.0, distinct_run), row("zipf", zipf_hits, zipf_run)])
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChatOverhead {
    pub requests: usize,
    /// Questions skipped on the way because Lore abstained (no answer from the model to time).
    pub abstained: usize,
    /// Model calls those abstentions started and cancelled (speculative generation).
    pub cancelled: usize,
    /// From sending `/v1/chat` to the provider receiving the completion request.
    pub to_provider_p50_ms: f64,
    pub to_provider_p95_ms: f64,
    /// The server's own clock (the answer's `timings`): from the question to the model call,
    /// to the evidence weighed, and the weighing itself.
    pub model_called_at_p50_ms: f64,
    pub weighed_at_p50_ms: f64,
    pub answerability_p50_ms: f64,
    /// From sending to the first `delta` event, minus the provider's first-token delay.
    pub first_delta_minus_provider_p50_ms: f64,
    pub first_delta_minus_provider_p95_ms: f64,
    /// From sending to the `final` event, minus the provider's whole answer time.
    pub end_to_end_minus_provider_p50_ms: f64,
    pub end_to_end_minus_provider_p95_ms: f64,
    pub provider_first_token_ms: f64,
    pub provider_total_ms: f64,
}

/// The answer a chat stream's `final` event carries.
fn final_answer(stream: &str) -> Option<serde_json::Value> {
    let (_, after) = stream.split_once("event: final")?;
    let data = after.lines().find_map(|line| line.strip_prefix("data:"))?;
    serde_json::from_str(data.trim()).ok()
}

/// Streams `requests` chats one at a time, timing each against the provider's arrivals.
pub async fn chat_overhead(
    server: &Server,
    provider: &FakeProvider,
    timing: ProviderTiming,
    key: &str,
    questions: &[String],
    requests: usize,
) -> anyhow::Result<ChatOverhead> {
    let client = reqwest::Client::new();
    let (mut to_provider, mut first_delta, mut end_to_end) = (Vec::new(), Vec::new(), Vec::new());
    let (mut model_called, mut weighed, mut answerability) = (Vec::new(), Vec::new(), Vec::new());
    let first_token = timing.first_token.as_secs_f64() * 1e3;
    let total = timing.total().as_secs_f64() * 1e3;
    provider.take_arrivals();
    let (mut abstained, mut cancelled) = (0, 0);
    for question in questions {
        if to_provider.len() == requests {
            break;
        }
        let started = Instant::now();
        let mut response = client
            .post(format!("{}/v1/chat", server.base))
            .bearer_auth(key)
            .json(&json!({"question": question, "stream": true}))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "chat: {}", response.status());
        let (mut text, mut delta_at, mut final_at) = (String::new(), None, None);
        while let Some(bytes) = response.chunk().await? {
            text.push_str(&String::from_utf8_lossy(&bytes));
            if delta_at.is_none() && text.contains("event: delta") {
                delta_at = Some(started.elapsed());
            }
            if text.contains("event: final") {
                final_at = Some(started.elapsed());
            }
            anyhow::ensure!(!text.contains("event: error"), "chat stream error: {text}");
        }
        let arrivals = provider.take_arrivals();
        let answer = final_answer(&text).unwrap_or_default();
        if answer["kind"] != "generated" {
            // The knowledge base had nothing confident: Lore said so, cancelling the model call
            // it started while weighing the evidence (`chat.speculative_generation`).
            abstained += 1;
            cancelled += arrivals.len();
            continue;
        }
        anyhow::ensure!(arrivals.len() == 1, "expected one provider call per chat, saw {}", arrivals.len());
        to_provider.push((arrivals[0] - started).as_secs_f64() * 1e3);
        let timings = &answer["timings"];
        let ms = |field: &str| timings[field].as_f64().with_context(|| format!("no timings.{field}: {answer}"));
        model_called.push(ms("model_called_at_ms")?);
        weighed.push(ms("weighed_at_ms")?);
        answerability.push(ms("answerability_ms")?);
        first_delta.push(delta_at.context("no delta event")?.as_secs_f64() * 1e3 - first_token);
        end_to_end.push(final_at.context("no final event")?.as_secs_f64() * 1e3 - total);
    }
    for v in [&mut to_provider, &mut first_delta, &mut end_to_end, &mut model_called, &mut weighed, &mut answerability]
    {
        v.sort_by(f64::total_cmp);
    }
    anyhow::ensure!(to_provider.len() == requests, "only {} of the questions reached the provider", to_provider.len());
    Ok(ChatOverhead {
        requests: to_provider.len(),
        abstained,
        cancelled,
        to_provider_p50_ms: percentile(&to_provider, 0.5),
        to_provider_p95_ms: percentile(&to_provider, 0.95),
        model_called_at_p50_ms: percentile(&model_called, 0.5),
        weighed_at_p50_ms: percentile(&weighed, 0.5),
        answerability_p50_ms: percentile(&answerability, 0.5),
        first_delta_minus_provider_p50_ms: percentile(&first_delta, 0.5),
        first_delta_minus_provider_p95_ms: percentile(&first_delta, 0.95),
        end_to_end_minus_provider_p50_ms: percentile(&end_to_end, 0.5),
        end_to_end_minus_provider_p95_ms: percentile(&end_to_end, 0.95),
        provider_first_token_ms: first_token,
        provider_total_ms: total,
    })
}

/// Samples the server's resident memory every 250 ms until dropped.
pub struct MemorySampler {
    samples: Arc<std::sync::Mutex<Vec<(f64, f64)>>>,
    stop: Arc<AtomicBool>,
}

impl MemorySampler {
    pub fn start(server: &Server) -> MemorySampler {
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let pid_status = server.status_path();
        let (s, st) = (samples.clone(), stop.clone());
        let started = Instant::now();
        tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                if let Ok(rss) = crate::server::resident_mib(&pid_status) {
                    s.lock().expect("samples").push((started.elapsed().as_secs_f64(), rss));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        MemorySampler { samples, stop }
    }

    /// (seconds, resident MiB) samples so far; stops sampling.
    pub fn finish(self) -> Vec<(f64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.samples.lock().expect("samples").clone()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MixedLoad {
    pub concurrency: usize,
    #[serde(flatten)]
    pub all: Summary,
    pub search: Summary,
    pub chat: Summary,
    pub documents: Summary,
    /// Resident memory (MiB): mean over the first and over the last quarter of the run, peak.
    pub rss_first_quarter_mib: f64,
    pub rss_last_quarter_mib: f64,
    pub rss_peak_mib: f64,
}

/// `requests` mixed requests: 85 % search (the three shares in turn), 10 % chat (non-streamed,
/// through the fake provider), 5 % document list.
pub async fn mixed_load(
    server: &Server,
    keys: &Keys,
    collection: &str,
    questions: Arc<Vec<String>>,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<MixedLoad> {
    #[derive(Clone, Copy)]
    enum Kind {
        Search,
        Chat,
        Documents,
    }
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let share_keys: Arc<Vec<String>> = Arc::new(keys.shares.iter().map(|(_, k)| k.clone()).collect());
    let (admin, base, collection) = (keys.admin.clone(), server.base.clone(), collection.to_owned());
    let sampler = MemorySampler::start(server);
    let (results, wall) = drive(concurrency, requests, move |i| {
        let (client, base, admin, collection) = (client.clone(), base.clone(), admin.clone(), collection.clone());
        let (share_keys, questions) = (share_keys.clone(), questions.clone());
        async move {
            let kind = match i % 20 {
                0 | 10 => Kind::Chat,
                5 => Kind::Documents,
                _ => Kind::Search,
            };
            let key = &share_keys[i % share_keys.len()];
            let question = &questions[i % questions.len()];
            let started = Instant::now();
            let outcome: anyhow::Result<()> = async {
                let response = match kind {
                    Kind::Search => {
                        search_once(&client, &base, key, question, 8).await?;
                        return Ok(());
                    }
                    Kind::Chat => {
                        client.post(format!("{base}/v1/chat")).bearer_auth(key).json(&json!({"question": question}))
                    }
                    Kind::Documents => {
                        client.get(format!("{base}/v1/collections/{collection}/documents?limit=50")).bearer_auth(&admin)
                    }
                }
                .send()
                .await?;
                let status = response.status();
                let body = response.text().await?;
                anyhow::ensure!(status.is_success(), "{status}: {body}");
                Ok(())
            }
            .await;
            Ok((kind as usize, started.elapsed().as_secs_f64() * 1e3, outcome))
        }
    })
    .await;
    let samples = sampler.finish();
    let mut by_kind: [(Vec<f64>, usize); 3] = Default::default();
    for result in results {
        let (kind, ms, outcome) = result?;
        match outcome {
            Ok(()) => by_kind[kind].0.push(ms),
            Err(error) => {
                by_kind[kind].1 += 1;
                eprintln!("load error: {error:#}");
            }
        }
    }
    let mut all: Vec<f64> = by_kind.iter().flat_map(|(l, _)| l.iter().copied()).collect();
    let errors = by_kind.iter().map(|(_, e)| e).sum();
    let quarter = |from: f64, to: f64| {
        let end = samples.last().map(|s| s.0).unwrap_or(0.0);
        let picked: Vec<f64> = samples.iter().filter(|s| s.0 >= from * end && s.0 <= to * end).map(|s| s.1).collect();
        picked.iter().sum::<f64>() / picked.len().max(1) as f64
    };
    let [(mut search, search_errors), (mut chat, chat_errors), (mut documents, documents_errors)] = by_kind;
    Ok(MixedLoad {
        concurrency,
        all: Summary::of(&mut all, errors, wall),
        search: Summary::of(&mut search, search_errors, wall),
        chat: Summary::of(&mut chat, chat_errors, wall),
        documents: Summary::of(&mut documents, documents_errors, wall),
        rss_first_quarter_mib: quarter(0.0, 0.25),
        rss_last_quarter_mib: quarter(0.75, 1.0),
        rss_peak_mib: samples.iter().map(|s| s.1).fold(0.0, f64::max),
    })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadStorm {
    pub documents: usize,
    pub upload_concurrency: usize,
    pub query_concurrency: usize,
    /// From the first upload to the last job indexed.
    pub seconds_until_all_indexed: f64,
    pub failed_uploads: usize,
    pub failed_jobs: usize,
    /// Queries run during the storm.
    pub queries: Summary,
    /// Uploaded documents in the collection's document list afterwards.
    pub listed: usize,
    /// Uploaded documents found by searching their unique word afterwards (all checked).
    pub found_by_search: usize,
}

/// Uploads `documents` small Markdown files into a new collection, `upload_concurrency` at
/// a time, while searches run `query_concurrency` at a time; waits for every job; then
/// searches each document's unique word.
pub async fn upload_storm(
    server: &Server,
    keys: &Keys,
    questions: Arc<Vec<String>>,
    documents: usize,
    upload_concurrency: usize,
    query_concurrency: usize,
) -> anyhow::Result<UploadStorm> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let base = server.base.clone();
    let collection = format!("storm-{}", std::process::id());
    let created = client
        .post(format!("{base}/v1/collections"))
        .bearer_auth(&keys.admin)
        .json(&json!({"id": collection, "default_acl": ["group:all"]}))
        .send()
        .await?;
    anyhow::ensure!(created.status().is_success(), "creating the storm collection: {}", created.status());

    // Queries until the storm is over.
    let over = Arc::new(AtomicBool::new(false));
    let texts = questions.clone();
    let query_task = {
        let (client, base, key, over) = (client.clone(), base.clone(), keys.shares[2].1.clone(), over.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut handles = Vec::new();
            for worker in 0..query_concurrency {
                let (client, base, key, over, questions) =
                    (client.clone(), base.clone(), key.clone(), over.clone(), questions.clone());
                handles.push(tokio::spawn(async move {
                    let (mut latencies, mut errors, mut i) = (Vec::new(), 0usize, worker);
                    while !over.load(Ordering::Relaxed) {
                        match search_once(&client, &base, &key, &questions[i % questions.len()], 8).await {
                            Ok((ms, _)) => latencies.push(ms),
                            Err(error) => {
                                errors += 1;
                                eprintln!("query during storm failed: {error:#}");
                            }
                        }
                        i += query_concurrency;
                    }
                    (latencies, errors)
                }));
            }
            let (mut latencies, mut errors) = (Vec::new(), 0);
            for handle in handles {
                let (l, e) = handle.await.expect("query worker");
                latencies.extend(l);
                errors += e;
            }
            Summary::of(&mut latencies, errors, started.elapsed())
        })
    };

    let started = Instant::now();
    let (c, b, admin, coll) = (client.clone(), base.clone(), keys.admin.clone(), collection.clone());
    let (uploads, _) = drive(upload_concurrency, documents, move |i| {
        let (client, base, admin, collection) = (c.clone(), b.clone(), admin.clone(), coll.clone());
        // Each note has its own text (a real question), so none is a near-duplicate of another.
        let topic = texts[(texts.len() / 2 + i) % texts.len()].clone();
        async move {
            let text = format!("# Storm note {i}\n\n{topic}\n\nReference stormword{i}.\n");
            let form = reqwest::multipart::Form::new()
                .part("file", reqwest::multipart::Part::bytes(text.into_bytes()).file_name(format!("note-{i}.md")));
            let response = client
                .post(format!("{base}/v1/collections/{collection}/documents"))
                .bearer_auth(&admin)
                .multipart(form)
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::ensure!(status.is_success(), "upload {i}: {status} {body}");
            Ok(body["job"]["id"].as_str().context("no job id")?.to_owned())
        }
    })
    .await;
    let mut jobs = Vec::new();
    let mut failed_uploads = 0;
    for upload in uploads {
        match upload {
            Ok(job) => jobs.push(job),
            Err(error) => {
                failed_uploads += 1;
                eprintln!("{error:#}");
            }
        }
    }
    let mut failed_jobs = 0;
    for job in &jobs {
        loop {
            let state: Value =
                client.get(format!("{base}/v1/jobs/{job}")).bearer_auth(&keys.admin).send().await?.json().await?;
            match state["state"].as_str() {
                Some("indexed") => break,
                Some("failed") => {
                    failed_jobs += 1;
                    eprintln!("job {job} failed: {}", state["error"]);
                    break;
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                None => anyhow::bail!("job {job}: unexpected reply {state}"),
            }
        }
    }
    let seconds_until_all_indexed = started.elapsed().as_secs_f64();
    over.store(true, Ordering::Relaxed);
    let queries = query_task.await?;

    let list: Value = client
        .get(format!("{base}/v1/collections/{collection}/documents?limit=500"))
        .bearer_auth(&keys.admin)
        .send()
        .await?
        .json()
        .await?;
    let listed = list["documents"].as_array().map_or(0, Vec::len);
    let mut found_by_search = 0;
    for i in 0..documents {
        let (_, body) = search_once(&client, &base, &keys.shares[2].1, &format!("stormword{i}"), 8).await?;
        let word = format!("stormword{i}.");
        if body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["chunk"]["text"].as_str().is_some_and(|t| t.contains(&word)))
        {
            found_by_search += 1;
        }
    }
    Ok(UploadStorm {
        documents,
        upload_concurrency,
        query_concurrency,
        seconds_until_all_indexed,
        failed_uploads,
        failed_jobs,
        queries,
        listed,
        found_by_search,
    })
}
