//! The service-desk flow (issue 19): `POST /v1/suggest` turns a ticket into a suggested reply,
//! and the example help-desk webhook receiver (`examples/helpdesk-webhook/receiver.py`) puts it
//! on the ticket as an internal note, against a loopback help desk that speaks Zendesk's API.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::put;
use base64::Engine;
use hmac::{Hmac, Mac};
use lore_core::role::Role;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::support::client::call;
use crate::support::{Setup, TestServer, workspace_root};
use crate::usage::key;

fn server() -> TestServer {
    Setup::new().with_samples().start()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_becomes_a_cited_suggestion_in_its_language_with_the_customers_entitlements() {
    let server = server();
    let (agent, _) = key(&server, Role::Agent, "desk", &["hr", "sales"], None);
    let ticket = json!({
        "subject": "Vacation days",
        "body": "Hello, how many days of paid vacation do I get per year? Thanks, Pat",
        "requester": { "email": "pat@example.com" }, "tags": ["hr", "vacation"],
    });
    let (status, suggestion) = call(server.addr, "POST", "/v1/suggest", Some(&agent), Some(ticket)).await;
    assert_eq!(status, 200, "{suggestion}");
    assert_eq!(suggestion["kind"], "extracted");
    assert!(suggestion["reply"].as_str().unwrap().contains("25"), "{suggestion}");
    assert!(suggestion["citations"][0]["source_path"].as_str().unwrap().contains("handbook"));
    let answerability = suggestion["answerability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&answerability) && answerability > 0.3, "{suggestion}");
    assert_eq!(suggestion["lang"], "en");

    let spanish = json!({ "subject": "Vacaciones", "body": "¿Cuántos días de vacaciones tengo al año?" });
    let (_, es) = call(server.addr, "POST", "/v1/suggest", Some(&agent), Some(spanish)).await;
    assert_eq!(es["lang"], "es", "{es}");

    // Answered with the customer's entitlements: a customer without HR access gets nothing.
    let bands = json!({
        "subject": "Salary range", "body": "What is the salary range for an Engineer I?",
        "on_behalf_of": { "user": "customer-17", "principals": ["group:sales"] },
    });
    let (status, denied) = call(server.addr, "POST", "/v1/suggest", Some(&agent), Some(bands)).await;
    assert_eq!((status, denied["kind"].as_str()), (200, Some("no_answer")), "{denied}");
    let (status, error) = call(server.addr, "POST", "/v1/suggest", Some(&agent), Some(json!({ "subject": " " }))).await;
    assert_eq!(status, 400);
    assert!(error["message"].as_str().unwrap().contains("subject"), "{error}");
}

type Notes = Arc<Mutex<Vec<(String, Value)>>>;

/// Zendesk's `PUT /api/v2/tickets/{id}.json`, recording what it was sent.
async fn update_ticket(
    State(notes): State<Notes>,
    Path(file): Path<String>,
    body: axum::Json<Value>,
) -> axum::Json<Value> {
    notes.lock().unwrap().push((file, body.0));
    axum::Json(json!({ "ticket": {} }))
}

fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_webhook_receiver_notes_the_suggestion_on_the_ticket() {
    let server = server();
    let (agent, _) = key(&server, Role::Agent, "desk", &["hr"], None);
    let notes: Notes = Arc::default();
    let helpdesk = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let helpdesk_url = format!("http://{}", helpdesk.local_addr().unwrap());
    let app = axum::Router::new().route("/api/v2/tickets/{file}", put(update_ticket)).with_state(notes.clone());
    tokio::spawn(async move { axum::serve(helpdesk, app).await.unwrap() });

    let mut receiver = tokio::process::Command::new("python3")
        .arg(workspace_root().join("examples/helpdesk-webhook/receiver.py"))
        .env("LORE_URL", server.url())
        .env("LORE_KEY", &agent)
        .env("HELPDESK_URL", &helpdesk_url)
        .env("HELPDESK_AUTH", "Basic dGVzdDp0ZXN0")
        .env("WEBHOOK_SECRET", "s3cret")
        .env("PORT", "0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the example receiver");
    let mut lines = tokio::io::BufReader::new(receiver.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let receiver_url = first.strip_prefix("listening on ").expect("the receiver prints its address").to_owned();

    let payload = json!({ "ticket": {
        "id": 4711, "subject": "Paid vacation", "description": "How many days of paid vacation do I get?",
        "requester": { "email": "pat@example.com" }, "tags": ["hr"],
    }})
    .to_string();
    let post = |signature: String| {
        reqwest::Client::new()
            .post(format!("{receiver_url}/webhook"))
            .header("X-Zendesk-Webhook-Signature-Timestamp", "2026-11-30T10:00:00Z")
            .header("X-Zendesk-Webhook-Signature", signature)
            .header("Content-Type", "application/json")
            .body(payload.clone())
            .send()
    };
    let forged = post(signature("wrong", "2026-11-30T10:00:00Z", &payload)).await.unwrap();
    assert_eq!(forged.status(), 401);
    assert!(notes.lock().unwrap().is_empty(), "a forged webhook must not reach Lore or the ticket");

    let answered = post(signature("s3cret", "2026-11-30T10:00:00Z", &payload)).await.unwrap();
    assert_eq!(answered.status(), 200);
    let notes = notes.lock().unwrap().clone();
    assert_eq!(notes.len(), 1);
    let (file, update) = &notes[0];
    assert_eq!(file, "4711.json");
    assert_eq!(update["ticket"]["comment"]["public"], false, "an internal note, not a reply to the customer");
    let body = update["ticket"]["comment"]["body"].as_str().unwrap();
    assert!(body.contains("25") && body.contains("Employee Handbook") && body.contains("Confidence"), "{body}");
}
