//! Collections narrow a search (the widget's `data-collections`) and never widen it.

use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::fixtures::roles;

#[tokio::test]
async fn collections_narrow_search_and_never_widen_it() {
    let s = roles();
    let search = |key: &'static str, collections: Value| {
        let body = json!({"query": "parental leave on-call pages vacation", "limit": 20, "collections": collections});
        call(s.addr, "POST", "/v1/search", Some(&s.keys[key]), Some(body))
    };
    let collection_of = |r: &Value| -> Vec<String> {
        r["results"].as_array().unwrap().iter().map(|p| p["document"]["source"].as_str().unwrap().to_owned()).collect()
    };
    let (status, hr) = search("agent", json!(["hr"])).await;
    assert_eq!(status, 200, "{hr}");
    let sources = collection_of(&hr);
    assert!(!sources.is_empty() && sources.iter().all(|c| c == "hr"), "{sources:?}");
    let (_, both) = search("agent", json!(["hr", "samples"])).await;
    let sources = collection_of(&both);
    assert!(
        sources.iter().any(|c| c == "samples") && sources.iter().all(|c| c == "hr" || c == "samples"),
        "{sources:?}"
    );
    // The ACL still applies inside the chosen collections.
    let (_, eng) = search("employee", json!(["eng"])).await;
    assert!(eng["results"].as_array().unwrap().is_empty(), "{eng}");
    let (status, unknown) = search("admin", json!(["nope"])).await;
    assert_eq!((status, unknown["code"].as_str()), (400, Some("invalid_request")), "{unknown}");
    let (status, chat) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&s.keys["employee"]),
        Some(json!({"question": "How long is parental leave?", "collections": ["eng"]})),
    )
    .await;
    assert_eq!((status, chat["kind"].as_str()), (200, Some("no_answer")), "{chat}");
}
