//! Re-uploads are compared with the document as it is now: the same bytes are a duplicate
//! only while the document still is what they made it; after an ACL change, a metadata
//! change or a newer version they are an update.

use serde_json::{Value, json};

use crate::support::client::{call, upload, wait_for_job};
use crate::support::fixtures::handbook as start;

async fn upload_and_wait(
    server: &crate::support::fixtures::Handbook,
    name: &str,
    bytes: &[u8],
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let (status, body) = upload(server.addr, &server.admin, "handbook", name, bytes.to_vec(), fields).await;
    assert!(status == 200 || status == 202, "{body}");
    let done = wait_for_job(server.addr, &server.admin, body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "indexed", "{done}");
    (status, body)
}

async fn document(server: &crate::support::fixtures::Handbook, id: &str) -> Value {
    let (status, body) = call(server.addr, "GET", &format!("/v1/documents/{id}"), Some(&server.admin), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn text(server: &crate::support::fixtures::Handbook, id: &str) -> String {
    let (status, body) =
        call(server.addr, "GET", &format!("/v1/documents/{id}/content"), Some(&server.admin), None).await;
    assert_eq!(status, 200, "{body}");
    body["chunks"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuploads_are_duplicates_only_of_the_current_state() {
    let server = start();
    let bytes = b"# Pricing\n\nThe enterprise discount is twelve percent.";
    let sales = [("acl", "group:sales")];

    let (status, first) = upload_and_wait(&server, "pricing.md", bytes, &sales).await;
    assert_eq!(status, 202);
    let id = first["document_id"].as_str().unwrap().to_owned();
    let (status, again) = upload(server.addr, &server.admin, "handbook", "pricing.md", bytes.to_vec(), &sales).await;
    assert_eq!((status, again["duplicate"].as_bool()), (200, Some(true)), "unchanged: a duplicate, {again}");

    // ACL widened through the API, then the original upload again: an update, not a duplicate.
    let path = format!("/v1/documents/{id}");
    let (status, body) =
        call(server.addr, "PATCH", &path, Some(&server.admin), Some(json!({"acl": ["everyone"]}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload_and_wait(&server, "pricing.md", bytes, &sales).await;
    assert_eq!((status, body["duplicate"].as_bool()), (202, Some(false)), "{body}");
    assert_eq!(document(&server, &id).await["acl"], json!(["group:sales"]), "the upload's ACL is back");

    // Metadata changed through the API, then the original upload again: an update.
    let (status, body) =
        call(server.addr, "PATCH", &path, Some(&server.admin), Some(json!({"metadata": {"owner": "x"}}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload_and_wait(&server, "pricing.md", bytes, &sales).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(document(&server, &id).await["metadata"], json!({}), "{body}");

    // v1, replaced by v2, then v1 uploaded again: v1 is back.
    let v2 = b"# Pricing\n\nThe enterprise discount is fifteen percent.";
    let (status, replaced) =
        upload(server.addr, &server.admin, &format!("/v1/documents/{id}"), "pricing.md", v2.to_vec(), &sales).await;
    assert_eq!(status, 202, "{replaced}");
    assert_eq!(
        wait_for_job(server.addr, &server.admin, replaced["job"]["id"].as_str().unwrap()).await["state"],
        "indexed"
    );
    assert!(text(&server, &id).await.contains("fifteen"));
    let (status, body) = upload_and_wait(&server, "pricing.md", bytes, &sales).await;
    assert_eq!((status, body["duplicate"].as_bool()), (202, Some(false)), "{body}");
    assert!(text(&server, &id).await.contains("twelve"), "v1 is the current version again");
}
