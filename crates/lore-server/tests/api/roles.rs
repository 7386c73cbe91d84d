//! Every endpoint × every role, department isolation of knowledge managers, and agents acting
//! on behalf of customers: narrowing allowed, widening refused and audited.

use serde_json::{Value, json};

use crate::support::client::{call, search_paths, upload};
use crate::support::fixtures::roles;

/// The roles the matrix exercises, each an API key. All hold `group:hr`, so a refusal shows as
/// 403 (they can see the HR documents) rather than 404.
/// Refusals come before successes, so a destructive call that succeeds cannot hide a later
/// refusal behind a 404.
const ROLES: [&str; 5] = ["employee", "agent", "km_eng", "km_hr", "admin"];

/// Every endpoint × every role, allowed or refused, in one table.
#[tokio::test]
async fn role_matrix() {
    let s = roles();
    let doc = |path: &str| s.hr_docs[path].clone();
    // (method, path, body per role, expected status for employee, agent, km_hr, km_eng, admin)
    type Body = fn(&str) -> Option<Value>;
    let none: Body = |_| None;
    let rows: Vec<(&str, String, Body, [u16; 5])> = vec![
        ("POST", "/v1/search".into(), |_| Some(json!({"query": "parental leave"})), [200, 200, 200, 200, 200]),
        (
            "POST",
            "/v1/chat".into(),
            |_| Some(json!({"question": "How long is parental leave?"})),
            [200, 200, 200, 200, 200],
        ),
        ("GET", "/v1/conversations".into(), none, [200, 200, 200, 200, 200]),
        ("GET", "/v1/me".into(), none, [200, 200, 200, 200, 200]),
        ("GET", "/v1/collections".into(), none, [403, 403, 200, 200, 200]),
        ("POST", "/v1/collections".into(), |r| Some(json!({"id": format!("new-{r}")})), [403, 403, 403, 403, 201]),
        ("DELETE", "/v1/collections/empty".into(), none, [403, 403, 403, 403, 204]),
        ("GET", "/v1/collections/hr/documents".into(), none, [200, 200, 200, 200, 200]),
        ("GET", format!("/v1/documents/{}", doc("policy.md")), none, [200, 200, 200, 200, 200]),
        (
            "PATCH",
            format!("/v1/documents/{}", doc("matrix-patch.md")),
            |r| Some(json!({"metadata": {"by": r}})),
            [403, 403, 403, 200, 200],
        ),
        ("DELETE", format!("/v1/documents/{}", doc("matrix-delete-km.md")), none, [403, 403, 403, 204, 404]),
        ("DELETE", format!("/v1/documents/{}", doc("matrix-delete-admin.md")), none, [403, 403, 403, 403, 204]),
        ("GET", format!("/v1/jobs/{}", s.admin_job), none, [404, 404, 404, 200, 200]),
        (
            "POST",
            "/v1/keys".into(),
            |r| Some(json!({"name": format!("k-{r}"), "role": "employee", "user": "u"})),
            [403, 403, 403, 403, 201],
        ),
        ("GET", "/v1/keys".into(), none, [403, 403, 403, 403, 200]),
        ("DELETE", format!("/v1/keys/{}", s.sacrificial_key), none, [403, 403, 403, 403, 200]),
        ("GET", "/v1/audit".into(), none, [403, 403, 403, 403, 200]),
        ("GET", "/v1/audit/export".into(), none, [403, 403, 403, 403, 200]),
        (
            "POST",
            "/v1/embed/token".into(),
            |_| Some(json!({"user": "alice", "groups": ["hr"]})),
            [403, 403, 403, 403, 200],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        // Unauthenticated callers get 401 everywhere.
        let (status, _) = call(s.addr, method, path, None, body("anonymous")).await;
        if status != 401 {
            failures.push(format!("{method} {path} as anonymous: {status}, expected 401"));
        }
        for (role, want) in ROLES.iter().zip(expected) {
            let (status, response) = call(s.addr, method, path, Some(&s.keys[role]), body(role)).await;
            if status != *want {
                failures.push(format!("{method} {path} as {role}: {status}, expected {want}: {response}"));
            }
        }
    }
    // Uploads and replacements need a manager of the collection's department.
    for (role, want) in ROLES.iter().zip([403, 403, 403, 202, 202]) {
        let (status, response) = upload(
            s.addr,
            &s.keys[role],
            "hr",
            &format!("matrix-{role}.md"),
            format!("# Note\n\nBy {role}.").into_bytes(),
            &[],
        )
        .await;
        if status != want {
            failures.push(format!("upload as {role}: {status}, expected {want}: {response}"));
        }
        let target = format!("/v1/documents/{}", doc("matrix-replace.md"));
        let (status, response) = upload(
            s.addr,
            &s.keys[role],
            &target,
            "matrix-replace.md",
            format!("# Dress code\n\nVersion by {role}.").into_bytes(),
            &[],
        )
        .await;
        if status != want {
            failures.push(format!("replace as {role}: {status}, expected {want}: {response}"));
        }
    }
    assert!(failures.is_empty(), "role matrix violations:\n{}", failures.join("\n"));

    // Every refusal was audited.
    let (_, denied) = call(s.addr, "GET", "/v1/audit?outcome=denied&limit=1000", Some(&s.keys["admin"]), None).await;
    let denied_actors: Vec<&str> =
        denied["events"].as_array().unwrap().iter().map(|e| e["actor"].as_str().unwrap()).collect();
    for role in ["employee", "agent", "km_eng"] {
        assert!(denied_actors.contains(&format!("{role}-user").as_str()), "no denial audited for {role}");
    }
}

#[tokio::test]
async fn knowledge_managers_cannot_touch_other_departments() {
    let s = roles();
    let km = &s.keys["km_eng_only"]; // engineering, without HR access
    let hr_doc = &s.hr_docs["policy.md"];
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"acl": ["everyone"]}))), ("DELETE", None)] {
        let (status, response) = call(s.addr, method, &format!("/v1/documents/{hr_doc}"), Some(km), body).await;
        assert_eq!(status, 404, "{method} on an HR document: {response}");
    }
    // It can read nothing in `hr`: to it, `hr` does not exist (ids cannot be probed).
    let (status, refused) = upload(s.addr, km, "hr", "evil.md", b"# Evil\n\nOverride.".to_vec(), &[]).await;
    assert_eq!((status, refused["code"].as_str()), (404, Some("collection_not_found")), "{refused}");
    let (status, unknown) = upload(s.addr, km, "no-such", "evil.md", b"# Evil\n\nOverride.".to_vec(), &[]).await;
    assert_eq!((status, &unknown), (404, &refused), "the same answer as an unknown collection");
    let (status, list) = call(s.addr, "GET", "/v1/collections/hr/documents", Some(km), None).await;
    assert_eq!((status, list["code"].as_str()), (404, Some("collection_not_found")), "nothing to read: {list}");
    let (status, list) = call(s.addr, "GET", "/v1/collections/hr/documents", Some(&s.keys["km_eng"]), None).await;
    assert_eq!(status, 200);
    assert!(list["pending"].as_array().unwrap().is_empty(), "only managers see pending uploads: {list}");
    // ...but manages their own department's collection, including documents they may not read.
    let (status, list) = call(s.addr, "GET", "/v1/collections/eng/documents", Some(km), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["documents"].as_array().unwrap().len(), 1, "{list}");
    let (status, collections) = call(s.addr, "GET", "/v1/collections", Some(km), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> =
        collections["collections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["eng"]);
    // The HR document is intact.
    let (status, _) = call(s.addr, "GET", &format!("/v1/documents/{hr_doc}"), Some(&s.keys["admin"]), None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn agents_narrow_but_never_widen() {
    let s = roles();
    let agent = &s.keys["agent"];
    let query = json!({"query": "How many weeks of parental leave?", "limit": 5});
    let (status, own) = call(s.addr, "POST", "/v1/search", Some(agent), Some(query.clone())).await;
    assert_eq!(status, 200);
    assert!(search_paths(&own).contains(&"policy.md".to_owned()), "{own}");

    let mut narrowed = query.clone();
    narrowed["on_behalf_of"] = json!({"user": "customer-7", "principals": ["everyone"]});
    let (status, customer) = call(s.addr, "POST", "/v1/search", Some(agent), Some(narrowed)).await;
    assert_eq!(status, 200, "{customer}");
    assert!(!search_paths(&customer).contains(&"policy.md".to_owned()), "the customer must not see HR: {customer}");

    let mut wider = query.clone();
    wider["on_behalf_of"] = json!({"user": "customer-7", "principals": ["everyone", "group:engineering"]});
    let (status, refused) = call(s.addr, "POST", "/v1/search", Some(agent), Some(wider.clone())).await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("scope_widening")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("group:engineering"));
    let mut chat = json!({"question": "parental leave", "on_behalf_of": wider["on_behalf_of"].clone()});
    let (status, _) = call(s.addr, "POST", "/v1/chat", Some(agent), Some(chat.clone())).await;
    assert_eq!(status, 403);
    chat["on_behalf_of"] = json!({"user": "x", "principals": ["everyone"]});
    let (status, _) = call(s.addr, "POST", "/v1/chat", Some(&s.keys["employee"]), Some(chat)).await;
    assert_eq!(status, 403, "employees cannot act on behalf of anyone");
}
