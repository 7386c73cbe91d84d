//! With a model provider configured, answers are generated, an LLM judge scores them and a
//! closed-book "model only" run is added: tested against a real OpenAI-compatible server on
//! loopback.

use lore_chat::testing::{FakeProvider, Reply};
use lore_core::config::RetrievalMode;
use lore_eval::EvalSet;

use crate::{case, config, options, run, workspace_root};

fn reply(prompt: &str) -> Reply {
    if prompt.contains("Reply with only a JSON object") {
        Reply::text(r#"{"faithfulness": 0.9, "relevance": 0.8}"#)
    } else if prompt.contains("NO_ANSWER") {
        Reply::text("Employees usually get 20 days of vacation.")
    } else {
        Reply::text(
            "Every full-time employee receives 25 days of paid vacation per calendar year [1]. At most 5 days carry over [1].",
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_answers_are_judged_and_compared_with_the_model_alone() {
    let fake = FakeProvider::answering("fake", |request| {
        let last = request["messages"].as_array().and_then(|m| m.last());
        reply(last.and_then(|m| m["content"].as_str()).unwrap_or(""))
    })
    .await;

    let mut config = config();
    config.chat.providers = vec![fake.config(0, 10.0)];
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

    let prompts = fake.prompts();
    let judge = prompts.iter().find(|p| p.contains("Reply with only a JSON object")).expect("judge was asked");
    assert!(judge.contains("How many days of paid vacation") && judge.contains("25 days of paid vacation"), "{judge}");
    assert!(prompts.iter().any(|p| p.contains("NO_ANSWER") && p.contains("How many days of paid vacation")));
    let detail = rag.detail.as_ref().unwrap();
    assert!(detail.user_prompt.as_deref().unwrap().contains("Context passages"));
}
