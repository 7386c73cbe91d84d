//! Runs a set against a running `lore serve` over its HTTP API (`POST /v1/search`,
//! `POST /v1/chat`). Each case is asked as its asker, with an embed token the admin key mints
//! for exactly the asker's principals (`POST /v1/embed/token`), the same way the widget asks.
//! The server's corpus is used as it is, and documents' ACLs are not visible from outside:
//! leaks are checked against `must_not_cite` only.

use std::collections::HashMap;
use std::time::Instant;

use lore_core::config::Config;
use lore_core::embed::Embedder;
use serde::Deserialize;
use serde_json::json;

use crate::error::EvalError;
use crate::runner::{Answered, CitedSource, RetrievedPassage, RunOptions, RunResult, Scorer, summarize};
use crate::set::EvalSet;

#[derive(Deserialize)]
struct EmbedTokenJson {
    token: String,
}

#[derive(Deserialize)]
struct SearchResponse {
    results: Vec<PassageJson>,
}

#[derive(Deserialize)]
struct PassageJson {
    rank: usize,
    score: f32,
    bm25_rank: Option<usize>,
    dense_rank: Option<usize>,
    document: DocumentJson,
    chunk: ChunkJson,
}

#[derive(Deserialize)]
struct DocumentJson {
    id: String,
    source: String,
    path: String,
}

#[derive(Deserialize)]
struct ChunkJson {
    id: String,
    page: Option<u32>,
    #[serde(default)]
    heading_path: Vec<String>,
    text: String,
}

#[derive(Deserialize)]
struct ChatResponse {
    kind: String,
    answer: String,
    citations: Vec<CitationJson>,
    timings: ChatTimingsJson,
}

#[derive(Deserialize)]
struct CitationJson {
    marker: usize,
    document_id: String,
    source_path: String,
    page: Option<u32>,
    heading: Option<String>,
    snippet: String,
    chunk_id: String,
}

#[derive(Deserialize)]
struct ChatTimingsJson {
    generation_ms: f64,
    total_ms: f64,
}

async fn post<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    body: serde_json::Value,
) -> Result<T, EvalError> {
    let err = |message: String| EvalError::Remote { url: url.to_owned(), message };
    let response = client.post(url).bearer_auth(api_key).json(&body).send().await.map_err(|e| err(e.to_string()))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        return Err(err(format!("{status}: {text}")));
    }
    serde_json::from_str(&text).map_err(|e| err(format!("unexpected response ({e}): {text}")))
}

pub async fn run_remote(
    set: &EvalSet,
    config: &Config,
    server: &str,
    api_key: &str,
    options: &RunOptions,
) -> Result<RunResult, EvalError> {
    let base = server.trim_end_matches('/');
    let client = reqwest::Client::new();
    let cases: Vec<&crate::set::Case> = match &options.only {
        Some(id) => vec![set.case(id)?],
        None => set.cases.iter().collect(),
    };
    // Similarity needs the embedding model locally; without it the metric is left out.
    let embedder = match Embedder::load(&config.embedding) {
        Ok(embedder) => Some(embedder),
        Err(error) => {
            eprintln!("lore eval: answer similarity skipped: {error}");
            None
        }
    };
    let scorer = Scorer::new(None, embedder.as_ref(), None);
    let mut results = Vec::new();
    let mut tokens: HashMap<String, String> = HashMap::new();
    for case in cases {
        let asker = &case.asker;
        let asker_key = format!("{}|{}|{}", asker.user, asker.groups.join(","), asker.departments.join(","));
        if !tokens.contains_key(&asker_key) {
            let minted: EmbedTokenJson = post(
                &client,
                &format!("{base}/v1/embed/token"),
                api_key,
                json!({ "user": asker.user, "groups": asker.groups, "departments": asker.departments, "ttl_secs": 3600 }),
            )
            .await?;
            tokens.insert(asker_key.clone(), minted.token);
        }
        let token = &tokens[&asker_key];
        let started = Instant::now();
        let search: SearchResponse = post(
            &client,
            &format!("{base}/v1/search"),
            token,
            json!({ "query": case.question, "limit": options.passages.min(50) }),
        )
        .await?;
        let retrieval_ms = started.elapsed().as_secs_f64() * 1e3;
        let chat: ChatResponse =
            post(&client, &format!("{base}/v1/chat"), token, json!({ "question": case.question })).await?;
        let retrieved = search
            .results
            .into_iter()
            .map(|p| RetrievedPassage {
                rank: p.rank,
                score: p.score,
                document_id: p.document.id,
                source: p.document.source,
                path: p.document.path,
                page: p.chunk.page,
                headings: p.chunk.heading_path,
                chunk_id: p.chunk.id,
                bm25_rank: p.bm25_rank,
                dense_rank: p.dense_rank,
                text: p.chunk.text,
            })
            .collect::<Vec<_>>();
        let texts: HashMap<&str, &str> = retrieved.iter().map(|p| (p.chunk_id.as_str(), p.text.as_str())).collect();
        let answered = Answered {
            kind: chat.kind,
            text: chat.answer,
            cited_texts: chat
                .citations
                .iter()
                .map(|c| (c.marker, texts.get(c.chunk_id.as_str()).map_or(c.snippet.clone(), |t| (*t).to_owned())))
                .collect(),
            citations: chat
                .citations
                .into_iter()
                .map(|c| CitedSource {
                    marker: c.marker,
                    document_id: c.document_id,
                    source_path: c.source_path,
                    page: c.page,
                    heading: c.heading,
                    chunk_id: c.chunk_id,
                    snippet: c.snippet,
                })
                .collect(),
            retrieval_ms: Some(retrieval_ms),
            generation_ms: chat.timings.generation_ms,
            answer_ms: chat.timings.total_ms,
        };
        results.push(scorer.score(case, "server", retrieved, answered).await?);
    }
    let summary = summarize(&results);
    Ok(RunResult {
        set: set.name.clone(),
        target: base.to_owned(),
        settings: Default::default(),
        corpus: None,
        modes: vec!["server".into()],
        cases: results,
        summary,
    })
}
