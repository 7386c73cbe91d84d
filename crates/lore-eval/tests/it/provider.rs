//! With a model provider configured, answers are generated, an LLM judge scores them and a
//! closed-book "model only" run is added: tested against a real OpenAI-compatible server on
//! loopback.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use lore_core::config::{ProviderConfig, RetrievalMode};
use lore_eval::EvalSet;
use serde_json::{Value, json};

use crate::{case, config, options, run, workspace_root};

type Seen = Arc<Mutex<Vec<String>>>;

async fn completions(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    let prompt = body["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("");
    seen.lock().unwrap().push(prompt.to_owned());
    let reply = if prompt.contains("Reply with only a JSON object") {
        r#"{"faithfulness": 0.9, "relevance": 0.8}"#
    } else if prompt.contains("NO_ANSWER") {
        "Employees usually get 20 days of vacation."
    } else {
        "Every full-time employee receives 25 days of paid vacation per calendar year [1]. At most 5 days carry over [1]."
    };
    Json(json!({
        "id": "chatcmpl-eval", "object": "chat.completion", "created": 1_700_000_000, "model": "fake-judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop", "logprobs": null}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_answers_are_judged_and_compared_with_the_model_alone() {
    let seen: Seen = Arc::default();
    let app =
        axum::Router::new().route("/v1/chat/completions", axum::routing::post(completions)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut config = config();
    config.chat.providers = vec![ProviderConfig {
        name: "fake".into(),
        base_url: format!("http://{addr}/v1"),
        model: "fake-judge".into(),
        api_key_env: None,
        timeout_secs: 10.0,
        connect_timeout_secs: 1.0,
        max_retries: 0,
        initial_backoff_ms: 10,
        temperature: None,
        max_tokens: None,
    }];
    let set = EvalSet::load(&workspace_root().join("eval/sets/samples.toml")).unwrap();
    let mut options = options();
    options.only = Some("vacation-days".into());
    options.modes = vec![RetrievalMode::Hybrid];
    let result = run(&set, &config, &options).await;
    assert_eq!(result.modes, ["hybrid", "model-only"]);

    let rag = case(&result, "vacation-days", "hybrid");
    assert_eq!(rag.kind, "generated");
    assert_eq!(rag.judge.map(|j| (j.faithfulness, j.relevance)), Some((0.9, 0.8)), "{:?}", rag.judge_error);
    assert_eq!(rag.groundedness, Some(1.0));
    assert_eq!(rag.citation_recall, Some(1.0));
    let closed = case(&result, "vacation-days", "model-only");
    assert!(closed.retrieved.is_empty() && closed.judge.is_none());
    assert!(closed.f1.unwrap() < rag.f1.unwrap(), "closed book {:?} vs rag {:?}", closed.f1, rag.f1);

    let prompts = seen.lock().unwrap().clone();
    let judge = prompts.iter().find(|p| p.contains("Reply with only a JSON object")).expect("judge was asked");
    assert!(judge.contains("How many days of paid vacation") && judge.contains("25 days of paid vacation"), "{judge}");
    assert!(prompts.iter().any(|p| p.contains("NO_ANSWER") && p.contains("How many days of paid vacation")));
    let detail = rag.detail.as_ref().unwrap();
    assert!(detail.user_prompt.as_deref().unwrap().contains("Context passages"));
}
