//! The loopback test provider seen through this crate's own provider chain, so that its replies stay
//! ones that `async-openai` parses.

use std::time::Duration;

use futures::StreamExt as _;
use lore_chat::provider::{ErrorKind, ProviderChain};
use lore_chat::testing::{FakeProvider, Reply};

#[tokio::test]
async fn scripted_replies_come_in_order_and_a_status_is_an_error() {
    let fake = FakeProvider::scripted("primary", vec![Reply::Status(503), Reply::text("25 days [1].")]).await;
    let chain = ProviderChain::new(&[fake.config(1, 5.0)]).unwrap();
    let completion = chain.complete("system", "How many vacation days?").await.unwrap();
    assert_eq!(completion.text, "25 days [1].");
    assert_eq!(completion.model, "fake-primary");
    assert_eq!(completion.attempts, 2, "the 503 was retried");
    assert_eq!(completion.usage.map(|u| u.prompt_tokens), Some(321));
    assert_eq!(fake.prompts(), ["How many vacation days?"; 2]);
    assert_eq!(fake.requests()[0]["model"], "fake-primary");
    assert_eq!(fake.take_arrivals().len(), 2);
    assert!(fake.take_arrivals().is_empty());

    // A 401 is permanent: no retry, and the script has run out for the next call.
    let fake = FakeProvider::scripted("primary", vec![Reply::Status(401)]).await;
    let chain = ProviderChain::new(&[fake.config(3, 5.0)]).unwrap();
    let errors = chain.complete("system", "question").await.unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].kind, ErrorKind::Permanent);
    assert!(errors[0].message.contains("scripted 401"), "{}", errors[0].message);
    assert_eq!(chain.complete("system", "question").await.unwrap().text, "Default reply [1].");
}

#[tokio::test]
async fn streamed_parts_arrive_in_order() {
    let parts = ["You get ", "25 days ", "[1]."];
    let fake = FakeProvider::answering("primary", move |request| {
        assert_eq!(request["stream"], true);
        Reply::stream(&parts, Duration::from_millis(5))
    })
    .await;
    let chain = ProviderChain::new(&[fake.config(0, 5.0)]).unwrap();
    let started = chain.stream("system", "question").await.unwrap();
    assert_eq!(started.model, "fake-primary");
    let rest: Vec<String> = started.rest.map(Result::unwrap).collect().await;
    let mut received = vec![started.first];
    received.extend(rest);
    assert_eq!(received, parts);
    assert_eq!(fake.chunks_sent(), parts.len() + 2, "a role chunk, the parts and [DONE]");
    assert!(!fake.stream_was_cancelled());
}

#[tokio::test]
async fn a_dropped_stream_is_seen_as_cancelled() {
    let fake = FakeProvider::scripted("primary", vec![Reply::stream(&["word "; 40], Duration::from_millis(50))]).await;
    let chain = ProviderChain::new(&[fake.config(0, 10.0)]).unwrap();
    let started = chain.stream("system", "question").await.unwrap();
    assert_eq!(started.first, "word ");
    drop(started);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.stream_was_cancelled(), "the provider did not see the client go away");
    let sent = fake.chunks_sent();
    assert!(sent < 20, "the provider kept streaming after the client left ({sent} chunks)");
}
