//! Lore as an OpenAI model (issue 19): `/v1/chat/completions` and `/v1/models` used by two real
//! OpenAI SDKs, async-openai here and the `openai` Python package in a virtual environment this
//! test creates (skipped with a message when Python cannot make one, unless
//! `LORE_REQUIRE_PYTHON=1`, as on CI).

use std::path::PathBuf;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use futures::StreamExt;
use lore_chat::testing::{FakeProvider, Reply};
use lore_core::role::Role;
use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::{Setup, TestServer, workspace_root};
use crate::usage::key;

const VACATION: &str = "How many days of paid vacation do I get?";

async fn server() -> (FakeProvider, TestServer) {
    let provider = FakeProvider::answering("model", |request| {
        if request["stream"] == true {
            Reply::stream(&["You get ", "25 days ", "of paid vacation [1]."], Duration::from_millis(5))
        } else {
            Reply::text("You get 25 days of paid vacation [1].")
        }
    })
    .await;
    let mut setup = Setup::new().with_samples();
    setup.config.chat.providers = vec![provider.config(0, 30.0)];
    (provider, setup.start())
}

fn client(server: &TestServer, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(OpenAIConfig::new().with_api_base(format!("{}/v1", server.url())).with_api_key(key))
}

fn question(text: &str) -> Vec<ChatCompletionRequestMessage> {
    vec![ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(text))]
}

#[tokio::test(flavor = "multi_thread")]
async fn async_openai_gets_cited_answers_whole_and_streamed_with_the_callers_permissions() {
    let (_provider, server) = server().await;
    let (alice, _) = key(&server, Role::Employee, "alice", &["hr"], Some("hr"));
    let (dana, _) = key(&server, Role::Employee, "dana", &["sales"], Some("sales"));
    let openai = client(&server, &alice);

    let request = CreateChatCompletionRequestArgs::default()
        .model("lore")
        .messages(question(VACATION))
        .temperature(0.1)
        .build()
        .unwrap();
    let response = openai.chat().create(request.clone()).await.unwrap();
    let content = response.choices[0].message.content.clone().unwrap();
    assert!(content.starts_with("You get 25 days of paid vacation [^1]."), "{content}");
    assert!(content.contains("\n\n[^1]: Acme Robotics Employee Handbook"), "{content}");
    assert_eq!(response.usage.as_ref().map(|u| u.total_tokens), Some(333));

    let mut stream = openai
        .chat()
        .create_stream(
            CreateChatCompletionRequestArgs::default()
                .model("lore")
                .messages(question(VACATION))
                .stream(true)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut streamed = String::new();
    let mut finish = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        if let Some(choice) = chunk.choices.first() {
            streamed.push_str(choice.delta.content.as_deref().unwrap_or_default());
            finish = finish.or(choice.finish_reason);
        }
    }
    assert!(streamed.starts_with("You get 25 days of paid vacation [^1]."), "{streamed}");
    assert!(streamed.contains("[^1]: Acme Robotics Employee Handbook"), "{streamed}");
    assert!(finish.is_some());

    // The caller's permissions hold: a sales user's question about salary bands finds nothing.
    let bands = CreateChatCompletionRequestArgs::default()
        .model("lore")
        .messages(question("What is the salary range for an Engineer I?"))
        .build()
        .unwrap();
    let denied = client(&server, &dana).chat().create(bands).await.unwrap();
    let text = denied.choices[0].message.content.clone().unwrap();
    assert!(!text.contains("$") && !text.contains("[^"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn lore_fields_errors_and_unknown_parameters_over_plain_http() {
    let (provider, server) = server().await;
    let (alice, _) = key(&server, Role::Employee, "alice", &["hr"], Some("hr"));
    let body = json!({
        "model": "gpt-4o", "temperature": 0.7, "top_p": 0.9, "tools": [], "user": "someone",
        "messages": [{ "role": "system", "content": "Answer like a pirate." }, { "role": "user", "content": VACATION }],
    });
    let (status, response) = call(server.addr, "POST", "/v1/chat/completions", Some(&alice), Some(body)).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["object"], "chat.completion");
    assert_eq!(response["model"], "gpt-4o", "the model asked for is echoed");
    assert_eq!(response["lore"]["kind"], "generated");
    assert!(response["lore"]["conversation_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(response["lore"]["citations"][0]["marker"], 1);
    // The client's system message never reaches the model: Lore writes its own.
    let system = provider.requests().last().unwrap()["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(!system.contains("pirate"), "{system}");
    // Continuing the conversation through the extra field.
    let conversation = response["lore"]["conversation_id"].clone();
    let follow_up = json!({ "messages": [{ "role": "user", "content": "And can I carry days over?" }], "conversation_id": conversation });
    let (status, next) = call(server.addr, "POST", "/v1/chat/completions", Some(&alice), Some(follow_up)).await;
    assert_eq!((status, &next["lore"]["conversation_id"]), (200, &conversation), "{next}");

    // Errors in OpenAI's shape.
    let (status, error) =
        call(server.addr, "POST", "/v1/chat/completions", Some(&alice), Some(json!({ "model": "lore" }))).await;
    assert_eq!(status, 400);
    assert!(error["error"]["message"].as_str().unwrap().contains("messages"), "{error}");
    assert_eq!(error["error"]["code"], "invalid_request");
    let (status, error) = call(server.addr, "POST", "/v1/chat/completions", Some("nope"), Some(json!({}))).await;
    assert_eq!(status, 401, "{error}");
    let (status, models) = call(server.addr, "GET", "/v1/models", Some(&alice), None).await;
    assert_eq!((status, &models["data"][0]["id"]), (200, &json!("lore")), "{models}");
    let (status, _) = call(server.addr, "GET", "/v1/models", None, None).await;
    assert_eq!(status, 401);
}

/// A virtual environment with the `openai` package, made once per machine.
fn python_with_openai() -> Option<PathBuf> {
    let venv = std::env::temp_dir().join("lore-openai-1.59.9");
    let python = venv.join("bin/python");
    let has_openai = |python: &PathBuf| {
        std::process::Command::new(python).args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success())
    };
    if has_openai(&python) {
        return Some(python);
    }
    let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).output();
    if !made.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let pip = std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "openai==1.59.9"])
        .output();
    (pip.is_ok_and(|o| o.status.success()) && has_openai(&python)).then_some(python)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openai_python_package_uses_lore_as_a_model() {
    let required = std::env::var("LORE_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let Some(python) = tokio::task::spawn_blocking(python_with_openai).await.unwrap() else {
        assert!(!required, "LORE_REQUIRE_PYTHON=1 but no virtual environment with openai could be made");
        eprintln!("skipping the Python openai test: `python3 -m venv` or `pip install openai` failed");
        return;
    };
    let (_provider, server) = server().await;
    let (alice, _) = key(&server, Role::Employee, "alice", &["hr"], Some("hr"));
    let script = workspace_root().join("crates/lore-server/tests/python/openai_client.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .env("LORE_URL", server.url())
        .env("LORE_KEY", &alice)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["models"], json!(["lore"]));
    assert!(seen["content"].as_str().unwrap().starts_with("You get 25 days of paid vacation [^1]."), "{seen}");
    assert_eq!(seen["finish_reason"], "stop");
    assert_eq!(seen["lore"]["kind"], "generated");
    assert_eq!(seen["usage"], 333);
    assert!(seen["streamed"].as_str().unwrap().contains("[^1]: Acme Robotics Employee Handbook"), "{seen}");
    assert_eq!(seen["stream_finish"], "stop");
    assert_eq!(seen["stream_lore"]["kind"], "generated");
    assert_eq!(seen["error"]["status"], 400, "{seen}");
}
