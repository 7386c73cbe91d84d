//! Documents over HTTP: upload → job → index, metadata and ACL changes, replacement and
//! deletion; bad uploads fail clearly and never block the queue.

use serde_json::{Value, json};

use crate::support::client::{call, search_paths, upload, wait_for_job};
use crate::support::fixtures::roles;

#[tokio::test]
async fn upload_index_patch_delete_end_to_end() {
    let s = roles();
    let km = &s.keys["km_hr"];
    let reader = &s.keys["employee"]; // group hr
    let outsider = &s.keys["nobody"];
    let text = b"# Sabbatical\n\nAfter seven years of service employees may take a three-month sabbatical.".to_vec();
    let (status, accepted) =
        upload(s.addr, km, "hr", "../../Sabbatical Policy.md", text.clone(), &[("metadata", r#"{"owner":"hr-ops"}"#)])
            .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["job"]["filename"], "Sabbatical Policy.md", "the path is sanitised");
    let job = wait_for_job(s.addr, km, accepted["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "indexed", "{job}");
    let doc_id = accepted["document_id"].as_str().unwrap().to_owned();

    let query = json!({"query": "sabbatical after seven years", "limit": 3});
    let (_, found) = call(s.addr, "POST", "/v1/search", Some(reader), Some(query.clone())).await;
    assert_eq!(search_paths(&found)[0], "Sabbatical Policy.md", "{found}");
    let (_, hidden) = call(s.addr, "POST", "/v1/search", Some(outsider), Some(query.clone())).await;
    assert!(!search_paths(&hidden).contains(&"Sabbatical Policy.md".to_owned()));

    // The same file again is the same document, with no new job.
    let (status, again) =
        upload(s.addr, km, "hr", "Sabbatical Policy.md", text.clone(), &[("metadata", r#"{"owner":"hr-ops"}"#)]).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "{again}");
    assert_eq!(again["document_id"], doc_id.as_str());

    let (status, info) = call(s.addr, "GET", &format!("/v1/documents/{doc_id}"), Some(reader), None).await;
    assert_eq!(status, 200);
    assert_eq!((info["status"].as_str(), info["metadata"]["owner"].as_str()), (Some("indexed"), Some("hr-ops")));

    // ACL change: both indexes follow without re-embedding.
    let (status, patched) =
        call(s.addr, "PATCH", &format!("/v1/documents/{doc_id}"), Some(km), Some(json!({"acl": ["user:nobody-user"]})))
            .await;
    assert_eq!(status, 200, "{patched}");
    let (_, now_hidden) = call(s.addr, "POST", "/v1/search", Some(reader), Some(query.clone())).await;
    assert!(!search_paths(&now_hidden).contains(&"Sabbatical Policy.md".to_owned()), "{now_hidden}");
    let (_, now_found) = call(s.addr, "POST", "/v1/search", Some(outsider), Some(query.clone())).await;
    assert_eq!(search_paths(&now_found)[0], "Sabbatical Policy.md");
    let (status, _) = call(s.addr, "GET", &format!("/v1/documents/{doc_id}"), Some(reader), None).await;
    assert_eq!(status, 404);
    {
        let writer = s.server.state.writer.lock().await;
        let problems = writer.indexes().check_consistency(writer.catalog()).await.unwrap().problems();
        assert!(problems.is_empty(), "{problems:?}");
    }
    let (status, bad) =
        call(s.addr, "PATCH", &format!("/v1/documents/{doc_id}"), Some(km), Some(json!({"acl": []}))).await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid_request")), "{bad}");

    // Delete: gone from both indexes and the database.
    let (status, _) = call(s.addr, "DELETE", &format!("/v1/documents/{doc_id}"), Some(km), None).await;
    assert_eq!(status, 204);
    let (_, after) = call(s.addr, "POST", "/v1/search", Some(outsider), Some(query)).await;
    assert!(!search_paths(&after).contains(&"Sabbatical Policy.md".to_owned()));
    let (status, _) = call(s.addr, "GET", &format!("/v1/documents/{doc_id}"), Some(km), None).await;
    assert_eq!(status, 404);

    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=document.&limit=1000", Some(&s.keys["admin"]), None).await;
    let actions: Vec<(&str, &str)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == doc_id.as_str())
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("document.upload", "km_hr-user"), ("document.acl_change", "km_hr-user"), ("document.delete", "km_hr-user")]
    );
    let (status, export) = call(s.addr, "GET", "/v1/audit/export?action=document.", Some(&s.keys["admin"]), None).await;
    assert_eq!(status, 200);
    let lines: Vec<Value> = export.as_str().unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().any(|l| l["action"] == "document.delete" && l["target"] == doc_id.as_str()));
    assert_eq!(s.server.state.audit.verify_chain().unwrap(), None);
}

#[tokio::test]
async fn bad_uploads_fail_clearly_and_never_block_the_queue() {
    let s = roles();
    let km = &s.keys["km_hr"];
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        ("tool.exe", b"MZ\x90\x00".to_vec(), 415, "unsupported file type .exe"),
        ("report.pdf", b"#!/bin/sh\nrm -rf /".to_vec(), 415, "not a PDF"),
        ("notes.md", b"%PDF-1.7\n\x00\x01binary".to_vec(), 415, "binary"),
        ("empty.md", Vec::new(), 415, "empty"),
        ("huge.md", vec![b'a'; 400_000], 413, "larger"),
    ];
    for (name, bytes, want, message) in cases {
        let (status, body) = upload(s.addr, km, "hr", name, bytes, &[]).await;
        assert_eq!(status, want, "{name}: {body}");
        assert!(body["message"].as_str().unwrap().contains(message), "{name}: {body}");
    }
    let (status, body) = upload(s.addr, km, "hr", "a.md", b"# A".to_vec(), &[("acl", "root")]).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_request")), "{body}");
    let (status, _) = upload(s.addr, km, "no-such-collection", "a.md", b"# A".to_vec(), &[]).await;
    assert_eq!(status, 404);

    // A corrupt PDF passes the checks, fails in the worker with a reason, and the next job runs.
    let (status, corrupt) =
        upload(s.addr, km, "hr", "broken.pdf", b"%PDF-1.4\nthis is not really a pdf".to_vec(), &[]).await;
    assert_eq!(status, 202, "{corrupt}");
    let (status, fine) =
        upload(s.addr, km, "hr", "after-broken.md", b"# Bike storage\n\nBikes go in the basement.".to_vec(), &[]).await;
    assert_eq!(status, 202);
    let failed = wait_for_job(s.addr, km, corrupt["job"]["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["error"].as_str().unwrap().to_lowercase().contains("pdf"), "{failed}");
    let ok = wait_for_job(s.addr, km, fine["job"]["id"].as_str().unwrap()).await;
    assert_eq!(ok["state"], "indexed", "{ok}");
    let (_, list) = call(s.addr, "GET", "/v1/collections/hr/documents", Some(km), None).await;
    assert!(
        list["pending"].as_array().unwrap().iter().any(|j| j["filename"] == "broken.pdf" && j["state"] == "failed"),
        "{list}"
    );
}
