//! `/v1/chat` over HTTP without a model: cited extractive answers, private conversations,
//! abstention, input validation and server-sent events.

use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::fixtures::{post, samples};

#[tokio::test]
async fn chat_answers_with_citations_and_keeps_conversations_private() {
    let server = samples();
    let alice = server.key_of("alice@acme.example");
    let dana = server.key_of("dana@acme.example");
    let question = json!({"question": "How many days of paid vacation do I get?"}).to_string();
    let (status, first) = post(server, Some(&alice), "/v1/chat", question).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["kind"], "extracted");
    assert!(first["answer"].as_str().unwrap().contains("25 days"), "{first}");
    let citation = &first["citations"][0];
    assert_eq!(citation["source_path"], "samples/handbook/employee-handbook.md");
    for field in ["document_id", "title", "snippet", "score", "heading"] {
        assert!(!citation[field].is_null(), "citation lacks {field}: {citation}");
    }
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();

    // A follow-up is condensed with the previous question before retrieval.
    let follow_up = json!({"question": "Can I carry them over?", "conversation_id": conversation}).to_string();
    let (status, second) = post(server, Some(&alice), "/v1/chat", follow_up.clone()).await;
    assert_eq!(status, 200, "{second}");
    assert!(second["standalone_query"].as_str().unwrap().contains("vacation"), "{second}");
    assert!(second["answer"].as_str().unwrap().contains("carry over"), "{second}");

    let (status, detail) =
        call(server.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(detail["messages"].as_array().unwrap().len(), 4);
    let (_, list) = call(server.addr, "GET", "/v1/conversations", Some(&alice), None).await;
    assert!(list["conversations"].as_array().unwrap().iter().any(|c| c["id"] == conversation.as_str()));

    // Another user can neither read nor continue it, nor see it listed.
    let (status, body) =
        call(server.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&dana), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("conversation_not_found")));
    let (status, body) = post(server, Some(&dana), "/v1/chat", follow_up).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("conversation_not_found")));
    let (_, list) = call(server.addr, "GET", "/v1/conversations", Some(&dana), None).await;
    assert!(list["conversations"].as_array().unwrap().iter().all(|c| c["id"] != conversation.as_str()));
}

#[tokio::test]
async fn chat_abstains_without_citations_and_validates_input() {
    let server = samples();
    let dana = server.key_of("dana@acme.example");
    let (status, answer) = post(
        server,
        Some(&dana),
        "/v1/chat",
        json!({"question": "What is the salary range for an Engineer I?"}).to_string(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(answer["kind"], "no_answer", "{answer}");
    assert!(answer["citations"].as_array().unwrap().is_empty());

    let messages = json!({"messages": [
        {"role": "user", "content": "How many days of paid vacation do I get?"},
        {"role": "assistant", "content": "25 days."},
        {"role": "user", "content": "Can I carry them over?"}
    ]});
    let (status, answer) = post(server, Some(&dana), "/v1/chat", messages.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["standalone_query"].as_str().unwrap().contains("vacation"));

    for (body, message) in [
        (json!({}), "is required"),
        (json!({"question": "a", "messages": []}), "not both"),
        (json!({"messages": [{"role": "assistant", "content": "hi"}]}), "role `user`"),
        (json!({"question": "hi", "streaming": true}), "unknown field `streaming`"),
    ] {
        let (status, error) = post(server, Some(&dana), "/v1/chat", body.to_string()).await;
        assert_eq!(status, 400, "{error}");
        assert!(error["message"].as_str().unwrap().contains(message), "{error}");
    }
}

#[tokio::test]
async fn chat_streams_server_sent_events() {
    let server = samples();
    let key = server.key_of("carlos@acme.example");
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat", server.addr))
        .bearer_auth(&key)
        .json(&json!({"question": "How many days of paid vacation do I get?", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let body = response.text().await.unwrap();
    let events: Vec<(String, Value)> = body
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).unwrap()))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["metadata", "delta", "final"], "{body}");
    assert_eq!(events[0].1["kind"], "extracted");
    assert!(!events[0].1["sources"].as_array().unwrap().is_empty());
    assert_eq!(events[1].1["text"], events[2].1["answer"]);
    assert!(events[2].1["answer"].as_str().unwrap().contains("25 days"));
}
