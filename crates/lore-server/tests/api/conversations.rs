//! Conversations belong to one person: holders of the same public key are different people.

use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::fixtures::roles;

// Public keys: every holder is someone else (issue 12, item 2).

/// Asks `question` as `credential`; the conversation id and the answer's message id.
pub async fn ask_as(addr: SocketAddr, credential: &str, question: &str) -> (String, i64) {
    let (status, answer) = call(addr, "POST", "/v1/chat", Some(credential), Some(json!({"question": question}))).await;
    assert_eq!(status, 200, "{answer}");
    (answer["conversation_id"].as_str().unwrap().to_owned(), answer["message_id"].as_i64().unwrap())
}

/// Ids of the conversations `credential` lists.
pub async fn conversation_ids(addr: SocketAddr, credential: &str) -> Vec<String> {
    let (status, list) = call(addr, "GET", "/v1/conversations", Some(credential), None).await;
    assert_eq!(status, 200, "{list}");
    list["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

/// `credential` can neither list, read, continue nor rate someone else's conversation.
async fn assert_cannot_reach(addr: SocketAddr, credential: &str, conversation: &str, message: i64, who: &str) {
    assert!(!conversation_ids(addr, credential).await.iter().any(|c| c == conversation), "{who} lists it");
    let (status, body) = call(addr, "GET", &format!("/v1/conversations/{conversation}"), Some(credential), None).await;
    assert_eq!(status, 404, "{who} reads it: {body}");
    let follow_up = json!({"question": "And what else?", "conversation_id": conversation});
    let (status, body) = call(addr, "POST", "/v1/chat", Some(credential), Some(follow_up.clone())).await;
    assert_eq!(status, 404, "{who} continues it: {body}");
    let mut streamed = follow_up;
    streamed["stream"] = json!(true);
    let (status, body) = call(addr, "POST", "/v1/chat", Some(credential), Some(streamed)).await;
    assert_eq!(status, 404, "{who} continues it streaming: {body}");
    let vote = json!({"message_id": message, "rating": "down", "comment": "not mine"});
    let (status, body) = call(addr, "POST", "/v1/feedback", Some(credential), Some(vote)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("message_not_found")), "{who} rates it: {body}");
}

#[tokio::test]
async fn public_key_holders_never_share_conversations_or_feedback() {
    let s = roles();
    let public = &s.keys["public"];
    let mint = |body: Value| call(s.addr, "POST", "/v1/embed/token", Some(public), Some(body));

    // Two visitors of the same page: two visitor tokens, two people.
    let (status, first) = mint(json!({})).await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = mint(json!({})).await;
    let (v1, v2) = (first["token"].as_str().unwrap().to_owned(), second["token"].as_str().unwrap().to_owned());
    let (u1, u2) = (first["user"].as_str().unwrap(), second["user"].as_str().unwrap());
    assert!(u1.starts_with("visitor:") && u1.len() >= "visitor:".len() + 22, "{first}");
    assert_ne!(u1, u2);
    assert_eq!(first["principals"], json!(["everyone"]));
    let (status, me) = call(s.addr, "GET", "/v1/me", Some(&v1), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some(u1), Some("employee")));
    assert_eq!(me["principals"], json!(["everyone"]));

    let (c1, m1) = ask_as(s.addr, &v1, "How many days of paid vacation do I get?").await;
    assert_eq!(conversation_ids(s.addr, &v1).await, [c1.as_str()]);
    assert_cannot_reach(s.addr, &v2, &c1, m1, "the second visitor").await;
    // The first visitor keeps their own conversation and may rate it.
    let (status, _) = call(s.addr, "GET", &format!("/v1/conversations/{c1}"), Some(&v1), None).await;
    assert_eq!(status, 200);
    let (status, vote) =
        call(s.addr, "POST", "/v1/feedback", Some(&v1), Some(json!({"message_id": m1, "rating": "up"}))).await;
    assert_eq!(status, 201, "{vote}");

    // The key itself, used twice, is two strangers: nothing it creates can be found again.
    let (_, me1) = call(s.addr, "GET", "/v1/me", Some(public), None).await;
    let (_, me2) = call(s.addr, "GET", "/v1/me", Some(public), None).await;
    assert!(me1["user"].as_str().unwrap().starts_with("anonymous:"), "{me1}");
    assert_ne!(me1["user"], me2["user"]);
    let (c3, m3) = ask_as(s.addr, public, "How many days of paid vacation do I get?").await;
    assert_cannot_reach(s.addr, public, &c3, m3, "the same key again").await;
    assert_cannot_reach(s.addr, public, &c1, m1, "the raw key").await;
    assert_cannot_reach(s.addr, &v1, &c3, m3, "a visitor").await;

    // A vote on someone else's answer is audited as a refusal.
    let (_, audit) =
        call(s.addr, "GET", "/v1/audit?action=access.denied&limit=1000", Some(&s.keys["admin"]), None).await;
    assert!(
        audit["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == u2 && e["detail"]["attempted"] == "feedback.submit"),
        "{audit}"
    );
}
