//! Outgoing webhooks (issue 19): a loopback receiver that checks every signature gets the events
//! an upload, a failed upload, a thumbs-down, a budget's soft limit and a review cause, after
//! failures retried with backoff, and the delivery log shows the attempts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use lore_core::config::WebhookConfig;
use lore_core::role::Role;
use serde_json::{Value, json};

use crate::support::client::{call, upload, wait_for_job};
use crate::support::{Setup, TestServer};
use crate::usage::key;

const SECRET: &str = "whsec-test-0123456789";

#[derive(Default)]
struct Receiver {
    /// Every request: its event header, whether its signature verified, its body.
    seen: Vec<(String, bool, Value)>,
    /// Answer 500 to this many requests first.
    fail_first: usize,
}

type Shared = Arc<Mutex<Receiver>>;

fn verified(headers: &HeaderMap, body: &str) -> bool {
    let Some(signature) = headers.get("lore-signature").and_then(|v| v.to_str().ok()) else { return false };
    let mut parts = signature.split(',');
    let (Some(t), Some(v1)) =
        (parts.next().and_then(|p| p.strip_prefix("t=")), parts.next().and_then(|p| p.strip_prefix("v1=")))
    else {
        return false;
    };
    let Ok(timestamp) = t.parse::<i64>() else { return false };
    if (lore_core::db::now() - timestamp).abs() > 300 {
        return false; // too old: a replay
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap_or_default()).is_ok()
}

async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
    let mut receiver = shared.lock().unwrap();
    let event = headers.get("lore-event").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    receiver.seen.push((event, verified(&headers, &body), serde_json::from_str(&body).unwrap_or(Value::Null)));
    if receiver.fail_first > 0 {
        receiver.fail_first -= 1;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    StatusCode::OK
}

async fn receiver(fail_first: usize) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(Receiver { fail_first, ..Default::default() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/hook", post(hook)).with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, shared)
}

fn server(url: &str, events: &[&str], edit: impl FnOnce(&mut Setup)) -> TestServer {
    let mut setup = Setup::new().with_samples();
    let secret = setup.folder("secrets").join("webhook");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    setup.config.webhooks = vec![WebhookConfig {
        id: "ops".into(),
        url: url.into(),
        secret_env: None,
        secret_file: Some(secret),
        events: events.iter().map(|e| e.to_string()).collect(),
        max_attempts: 4,
        initial_backoff_ms: 50,
    }];
    edit(&mut setup);
    setup.start()
}

/// The delivery log's entries of `status`, once there is one.
async fn deliveries(server: &TestServer, admin: &str, status: &str) -> Value {
    for _ in 0..200 {
        let path = format!("/v1/webhooks/deliveries?status={status}");
        let (_, log) = call(server.addr, "GET", &path, Some(admin), None).await;
        if log["deliveries"].as_array().is_some_and(|d| !d.is_empty()) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {status} delivery in the log");
}

async fn ask_vacation(server: &TestServer, key: &str) -> Value {
    let question = json!({"question": "How many days of paid vacation do I get?"});
    let (status, answer) = call(server.addr, "POST", "/v1/chat", Some(key), Some(question)).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// Waits until the receiver saw `n` requests.
async fn wait_for(shared: &Shared, n: usize) -> Vec<(String, bool, Value)> {
    for _ in 0..200 {
        let seen = shared.lock().unwrap().seen.clone();
        if seen.len() >= n {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the receiver saw {:?}", shared.lock().unwrap().seen);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_arrive_signed_and_failures_are_retried_with_backoff_until_delivered() {
    let (url, shared) = receiver(2).await;
    let server = server(&url, &["document.indexed", "document.failed", "feedback.negative"], |_| {});
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (employee, _) = key(&server, Role::Employee, "erin", &["everyone"], Some("hr"));

    // An upload that is indexed: delivered on the third attempt (two 500s first).
    let (status, job) =
        upload(server.addr, &admin, "samples", "parking.md", b"# Parking\n\nVisitors park in bay C.\n".to_vec(), &[])
            .await;
    assert_eq!(status, 202, "{job}");
    wait_for_job(server.addr, &admin, job["job"]["id"].as_str().unwrap()).await;
    let seen = wait_for(&shared, 3).await;
    assert!(seen.iter().all(|(event, ok, _)| event == "document.indexed" && *ok), "{seen:?}");
    let delivery = seen[2].2["id"].as_str().unwrap().to_owned();
    assert!(seen.iter().all(|(_, _, body)| body["id"] == delivery.as_str()), "one delivery, three attempts");
    assert_eq!(seen[2].2["data"]["filename"], "parking.md");
    let log = deliveries(&server, &admin, "delivered").await;
    assert_eq!(log["deliveries"][0]["attempts"], 3, "{log}");
    assert_eq!(log["deliveries"][0]["event"], "document.indexed");

    // A corrupt PDF fails; a thumbs-down is negative feedback.
    let (_, bad) = upload(server.addr, &admin, "samples", "broken.pdf", b"%PDF-1.7 not really".to_vec(), &[]).await;
    wait_for_job(server.addr, &admin, bad["job"]["id"].as_str().unwrap()).await;
    let answer = ask_vacation(&server, &employee).await;
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": "out of date"});
    let (status, _) = call(server.addr, "POST", "/v1/feedback", Some(&employee), Some(vote)).await;
    assert_eq!(status, 201);
    let seen = wait_for(&shared, 5).await;
    let failed = seen.iter().find(|(event, _, _)| event == "document.failed").expect("document.failed");
    assert!(failed.1 && failed.2["data"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{failed:?}");
    let negative = seen.iter().find(|(event, _, _)| event == "feedback.negative").expect("feedback.negative");
    assert_eq!(negative.2["data"]["comment"], "out of date");

    // Only admins read the log; a bad status filter is named.
    let (status, _) = call(server.addr, "GET", "/v1/webhooks/deliveries", Some(&employee), None).await;
    assert_eq!(status, 403);
    let (status, error) = call(server.addr, "GET", "/v1/webhooks/deliveries?status=lost", Some(&admin), None).await;
    assert_eq!(status, 400, "{error}");
    let (_, configured) = call(server.addr, "GET", "/v1/webhooks", Some(&admin), None).await;
    assert!(!configured.to_string().contains(SECRET), "{configured}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_that_keeps_failing_is_given_up_and_can_be_retried() {
    let (url, shared) = receiver(usize::MAX).await;
    let server = server(&url, &["review.needed", "budget.threshold"], |setup| {
        setup.config.policy =
            serde_json::from_value(json!({ "review": [{ "id": "all", "collections": ["samples"], "mode": "after" }] }))
                .unwrap();
    });
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (employee, _) = key(&server, Role::Employee, "erin", &["everyone"], Some("hr"));
    let answer = ask_vacation(&server, &employee).await;
    assert_eq!(answer["review"]["status"], "pending", "{answer}");
    let seen = wait_for(&shared, 4).await;
    assert!(seen.iter().all(|(event, ok, body)| event == "review.needed" && *ok && body["data"]["rule"] == "all"));
    let log = deliveries(&server, &admin, "failed").await;
    let failed = &log["deliveries"][0];
    assert_eq!((failed["attempts"].as_u64(), failed["last_status"].as_u64()), (Some(4), Some(500)), "{log}");
    // Retried by hand once the receiver is fixed.
    shared.lock().unwrap().fail_first = 0;
    let id = failed["id"].as_str().unwrap();
    let (status, _) =
        call(server.addr, "POST", &format!("/v1/webhooks/deliveries/{id}/retry"), Some(&admin), None).await;
    assert_eq!(status, 202);
    wait_for(&shared, 5).await;
    let audit = server
        .state
        .audit
        .query(&lore_core::audit::Query { action: Some("webhook.retry".into()), ..Default::default() })
        .unwrap();
    assert_eq!(audit.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_budget_past_its_soft_limit_is_announced() {
    let (url, shared) = receiver(0).await;
    let provider =
        lore_chat::testing::FakeProvider::scripted("model", vec![lore_chat::testing::Reply::text("25 days [1].")])
            .await;
    let server = server(&url, &["budget.threshold"], |setup| {
        setup.config.chat.providers = vec![provider.config(0, 30.0)];
    });
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (employee, _) = key(&server, Role::Employee, "erin", &["everyone"], Some("hr"));
    let budget = json!({"scope": "user", "value": "erin", "period": "day", "unit": "tokens", "soft_limit": 100});
    let (status, budget) = call(server.addr, "PUT", "/v1/budgets", Some(&admin), Some(budget)).await;
    assert_eq!(status, 200, "{budget}");
    ask_vacation(&server, &employee).await;
    let seen = wait_for(&shared, 1).await;
    let (event, verified, body) = &seen[0];
    assert_eq!((event.as_str(), *verified), ("budget.threshold", true));
    assert_eq!(body["data"]["budget_id"], budget["id"], "{body}");
    assert_eq!(body["data"]["soft_limit"], 100.0);
}
