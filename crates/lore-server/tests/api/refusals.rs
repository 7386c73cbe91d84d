//! Refusals answered "not found" (so that existence does not leak) are still audited as
//! `access.denied`, at most once a minute per caller, action and target.

use serde_json::{Value, json};

use crate::support::client::{call, upload, wait_for_job};
use crate::support::fixtures::handbook as start;

async fn denials(server: &crate::support::fixtures::Handbook) -> Vec<Value> {
    let (status, body) =
        call(server.addr, "GET", "/v1/audit?action=access.denied&limit=1000", Some(&server.admin), None).await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().iter().filter(|e| e["actor"] == "emp").cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_refusals_are_audited_without_flooding_the_log() {
    let server = start();
    let (addr, admin, employee) = (server.addr, &server.admin, &server.employee);
    // A document the employee may not read, a job and a conversation that are not theirs.
    let doc = &server.acl_doc;
    let (status, body) =
        call(addr, "PATCH", &format!("/v1/documents/{doc}"), Some(admin), Some(json!({"acl": ["group:hr"]}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload(addr, admin, "handbook", "memo.md", b"# Memo\n\nQuarterly plans.".to_vec(), &[]).await;
    assert_eq!(status, 202, "{body}");
    let job = body["job"]["id"].as_str().unwrap().to_owned();
    wait_for_job(addr, admin, &job).await;
    let (status, body) =
        call(addr, "POST", "/v1/chat", Some(admin), Some(json!({"question": "When does the garage open?"}))).await;
    assert_eq!(status, 200, "{body}");
    let conversation = body["conversation_id"].as_str().unwrap().to_owned();
    let message = body["message_id"].as_i64().unwrap();

    let probes = [
        ("GET", format!("/v1/documents/{doc}"), None, "document.read", doc.clone()),
        ("GET", format!("/v1/documents/{doc}/content"), None, "document.read", doc.clone()),
        ("GET", format!("/v1/jobs/{job}"), None, "job.read", job.clone()),
        ("GET", format!("/v1/conversations/{conversation}"), None, "conversation.read", conversation.clone()),
        (
            "POST",
            "/v1/chat".to_owned(),
            Some(json!({"question": "and on Sundays?", "conversation_id": conversation})),
            "conversation.read",
            conversation.clone(),
        ),
        (
            "POST",
            "/v1/feedback".to_owned(),
            Some(json!({"message_id": message, "rating": "down"})),
            "feedback.submit",
            message.to_string(),
        ),
    ];
    for _round in 0..3 {
        for (method, path, body, _, _) in &probes {
            let (status, answer) = call(addr, method, path, Some(employee), body.clone()).await;
            assert_eq!(status, 404, "{method} {path}: {answer}");
        }
    }
    // Nonexistent things are plain "not found": nothing was refused.
    let (status, _) = call(addr, "GET", "/v1/documents/no-such-document", Some(employee), None).await;
    assert_eq!(status, 404);
    let (status, _) =
        call(addr, "POST", "/v1/feedback", Some(employee), Some(json!({"message_id": 999_999, "rating": "up"}))).await;
    assert_eq!(status, 404);

    let events = denials(&server).await;
    for (_, _, _, action, target) in &probes {
        let matching = events.iter().filter(|e| e["target"] == *target && e["detail"]["attempted"] == *action).count();
        assert_eq!(matching, 1, "one audited refusal for {action} {target} after three probes: {events:#?}");
    }
    assert!(
        events.iter().all(|e| e["outcome"] == "denied" && e["target"] != "no-such-document" && e["target"] != "999999"),
        "{events:#?}"
    );
}
