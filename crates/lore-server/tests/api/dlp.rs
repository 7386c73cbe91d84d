//! Data loss prevention before external models (issue 16): what reaches a loopback provider
//! under each `dlp` mode, placeholders restored in whole and streamed answers, and the counts in
//! usage events and the audit log.

use std::time::Duration;

use lore_chat::testing::{FakeProvider, Reply};
use lore_core::role::Role;
use lore_policy::dlp::Mode;
use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::{Setup, TestServer};
use crate::usage::{events, key, raw};

const EMAIL: &str = "nora.payroll@example.com";
const PHONE: &str = "+34 612 345 678";
const COMPANY_IBAN: &str = "ES91 2100 0418 4502 0005 1332";
/// The asker's own IBAN, in the question.
const ASKER_IBAN: &str = "ES76 2077 0024 0031 0257 5766";
const QUESTION: &str =
    "Who do I contact about payroll corrections? My refund should go to ES76 2077 0024 0031 0257 5766.";

/// A server whose only document holds personal data, answered by `providers` (in order).
fn dlp_server(providers: &[(&FakeProvider, Mode)]) -> TestServer {
    let mut setup = Setup::new();
    let folder = setup.folder("payroll");
    std::fs::write(
        folder.join("payroll-corrections.md"),
        format!(
            "# Payroll corrections\n\nIf your payslip is wrong, write to {EMAIL} or call {PHONE} before the 20th \
             of the month. Payroll corrections are paid with the next salary. Overpaid deductions are refunded \
             from the company account {COMPANY_IBAN} within five working days.\n"
        ),
    )
    .unwrap();
    setup.config.usage.flush_interval_ms = 50;
    setup.config.chat.providers = providers
        .iter()
        .map(|(provider, mode)| lore_core::config::ProviderConfig { dlp: *mode, ..provider.config(0, 30.0) })
        .collect();
    setup.source("payroll", folder, &["group:staff"], Some("hr")).start()
}

/// The text of every message a provider received, joined.
fn received(provider: &FakeProvider) -> Vec<String> {
    provider
        .requests()
        .iter()
        .map(|request| {
            request["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["content"].as_str().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// A reply that echoes the placeholders the prompt holds, as a model quoting its context does.
fn echo_placeholders(request: &Value) -> String {
    let prompt: String =
        request["messages"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap_or("")).collect();
    let placeholder = |tag: &str| {
        let start = prompt.find(&format!("[{tag}_")).unwrap_or_else(|| panic!("no {tag} placeholder in {prompt}"));
        prompt[start..start + prompt[start..].find(']').unwrap() + 1].to_owned()
    };
    format!(
        "Write to {} or call {} [1]. Refunds come from {} [1].",
        placeholder("EMAIL"),
        placeholder("PHONE"),
        placeholder("IBAN")
    )
}

fn audit_actions(server: &TestServer, prefix: &str) -> Vec<lore_core::audit::Record> {
    let query = lore_core::audit::Query { action: Some(prefix.into()), ..Default::default() };
    server.state.audit.query(&query).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn redact_sends_placeholders_and_the_answer_shows_the_values() {
    let provider = FakeProvider::answering("external", |request| Reply::text(echo_placeholders(request))).await;
    let server = dlp_server(&[(&provider, Mode::Redact)]);
    let (employee, _) = key(&server, Role::Employee, "erin", &["staff"], Some("hr"));
    let (status, answer) =
        call(server.addr, "POST", "/v1/chat", Some(&employee), Some(json!({"question": QUESTION}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "generated", "{answer}");

    let prompts = received(&provider);
    assert_eq!(prompts.len(), 1);
    for value in [EMAIL, PHONE, COMPANY_IBAN, ASKER_IBAN, "ES7620770024"] {
        assert!(!prompts[0].contains(value), "{value:?} reached the external provider:\n{}", prompts[0]);
    }
    assert!(prompts[0].contains("[EMAIL_1]") && prompts[0].contains("[IBAN_2]"), "{}", prompts[0]);
    // The asker sees the values, not the placeholders.
    let text = answer["answer"].as_str().unwrap();
    assert!(text.contains(EMAIL) && text.contains(PHONE) && text.contains(COMPANY_IBAN), "{text}");
    assert!(!text.contains("[EMAIL_"), "{text}");
    assert_eq!(answer["dlp"]["redacted"], json!({"email": 1, "phone": 1, "iban": 2}), "{answer}");

    // Counts, never values, in the usage event and the audit log.
    let event = events(&server).into_iter().find(|e| e.user == "erin").expect("metered");
    assert_eq!(event.dlp.redacted.get("iban"), Some(&2));
    let audit = audit_actions(&server, "dlp.");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].event.action, "dlp.redacted");
    assert_eq!(audit[0].event.detail["redacted"]["email"], 1);
    let stored = serde_json::to_string(&audit[0]).unwrap() + &serde_json::to_string(&event).unwrap();
    assert!(!stored.contains(EMAIL) && !stored.contains("2077"), "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_answer_is_restored_even_when_a_placeholder_is_split_across_chunks() {
    let provider = FakeProvider::answering("external", |request| {
        let text = echo_placeholders(request);
        // Chunks of 3 bytes split every placeholder.
        let parts: Vec<String> = text.as_bytes().chunks(3).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        Reply::stream(&parts, Duration::from_millis(1))
    })
    .await;
    let server = dlp_server(&[(&provider, Mode::Redact)]);
    let (employee, _) = key(&server, Role::Employee, "erin", &["staff"], Some("hr"));
    let (status, _, body) =
        raw(server.addr, "POST", "/v1/chat", &employee, Some(json!({"question": QUESTION, "stream": true})), &[]).await;
    assert_eq!(status, 200, "{body}");
    let mut streamed = String::new();
    let mut last = None;
    for frame in body.split("\n\n") {
        let event = frame.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default();
        let data: String = frame.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
        match event {
            "delta" => streamed.push_str(serde_json::from_str::<Value>(&data).unwrap()["text"].as_str().unwrap()),
            "final" => last = Some(serde_json::from_str::<Value>(&data).unwrap()),
            _ => {}
        }
    }
    let last = last.expect("a final event");
    assert!(streamed.contains(EMAIL) && streamed.contains(COMPANY_IBAN), "{streamed}");
    assert!(!streamed.contains("[EMA") && !streamed.contains("IL_1]"), "{streamed}");
    assert_eq!(last["answer"].as_str().unwrap(), streamed);
    assert_eq!(last["dlp"]["redacted"]["email"], 1);
    assert!(!received(&provider)[0].contains(EMAIL));
}

#[tokio::test(flavor = "multi_thread")]
async fn block_sends_nothing_and_the_answer_is_extracted_or_left_to_an_on_premises_model() {
    // Alone, a blocking provider receives nothing and the answer is extracted.
    let blocking = FakeProvider::scripted("external", vec![Reply::text("should never be asked [1].")]).await;
    let server = dlp_server(&[(&blocking, Mode::Block)]);
    let (employee, _) = key(&server, Role::Employee, "erin", &["staff"], Some("hr"));
    let (status, answer) =
        call(server.addr, "POST", "/v1/chat", Some(&employee), Some(json!({"question": QUESTION}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "extracted", "{answer}");
    assert!(blocking.requests().is_empty(), "a blocking provider received a prompt");
    assert_eq!(answer["provider_errors"][0]["kind"], "blocked", "{answer}");
    assert_eq!(answer["dlp"]["blocked"], json!({"email": 1, "phone": 1, "iban": 2}), "{answer}");
    let event = events(&server).into_iter().find(|e| e.user == "erin").expect("metered");
    assert_eq!(event.dlp.blocked.get("email"), Some(&1));
    assert_eq!(audit_actions(&server, "dlp.")[0].event.action, "dlp.blocked");
    // A question without personal data still goes to the blocking provider.
    let (_, clean) = call(
        server.addr,
        "POST",
        "/v1/chat",
        Some(&employee),
        Some(json!({"question": "When are payroll corrections paid?"})),
    )
    .await;
    assert_eq!(clean["kind"], "extracted", "the passage itself holds personal data: {clean}");
    assert!(blocking.requests().is_empty());

    // With an on-premises model (`off`) behind it, that model answers from the raw prompt.
    let blocking = FakeProvider::scripted("external", vec![]).await;
    let on_premises = FakeProvider::scripted("local", vec![Reply::text(format!("Write to {EMAIL} [1]."))]).await;
    let server = dlp_server(&[(&blocking, Mode::Block), (&on_premises, Mode::Off)]);
    let (employee, _) = key(&server, Role::Employee, "erin", &["staff"], Some("hr"));
    let (_, answer) = call(server.addr, "POST", "/v1/chat", Some(&employee), Some(json!({"question": QUESTION}))).await;
    assert_eq!(answer["kind"], "generated", "{answer}");
    assert_eq!(answer["provider"], "local");
    assert!(blocking.requests().is_empty());
    let prompt = &received(&on_premises)[0];
    assert!(prompt.contains(EMAIL) && prompt.contains(ASKER_IBAN), "off sends the prompt as it is: {prompt}");
}
