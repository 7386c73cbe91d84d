//! HTTP calls to a test server: JSON in, status and JSON (or the raw text as a string) out.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

pub async fn call(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    call_with(addr, method, path, key, body, &[]).await
}

pub async fn call_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("http://{addr}{path}"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    response(request).await
}

async fn response(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Multipart upload (`POST /v1/collections/{collection}/documents`, or `PUT` to a document when
/// `collection` starts with `/v1/documents/`).
pub async fn upload(
    addr: SocketAddr,
    key: &str,
    collection: &str,
    filename: &str,
    bytes: Vec<u8>,
    fields: &[(&str, &str)],
) -> (u16, Value) {
    let mut form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()));
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    let client = reqwest::Client::new();
    let request = if collection.starts_with("/v1/documents/") {
        client.put(format!("http://{addr}{collection}"))
    } else {
        client.post(format!("http://{addr}/v1/collections/{collection}/documents"))
    };
    response(request.bearer_auth(key).multipart(form)).await
}

/// Polls a job until it is indexed, failed or cancelled.
pub async fn wait_for_job(addr: SocketAddr, key: &str, job: &str) -> Value {
    for _ in 0..600 {
        let (status, body) = call(addr, "GET", &format!("/v1/jobs/{job}"), Some(key), None).await;
        assert_eq!(status, 200, "{body}");
        if matches!(body["state"].as_str(), Some("indexed" | "failed" | "cancelled")) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {job} did not finish");
}

/// The document paths of a `/v1/search` response, in rank order.
pub fn search_paths(body: &Value) -> Vec<String> {
    body["results"].as_array().unwrap().iter().map(|r| r["document"]["path"].as_str().unwrap().to_owned()).collect()
}
