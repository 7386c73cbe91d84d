//! The web surface's hardening (issue 12, "also observed"): `nosniff` and a complete CSP on
//! every response, every error as JSON `{code, message}`, and collection ids that cannot be
//! probed by callers who could not list the collection. Over loopback HTTP against the
//! identity fixture's server (roles, departments, collections).

use serde_json::{Value, json};

use crate::support::fixtures::roles as server;

/// One request; the response's status, headers and raw body.
async fn send(
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let s = server();
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("http://{}{path}", s.addr));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
}

fn key(role: &str) -> &'static str {
    &server().keys[role]
}

#[tokio::test]
async fn every_response_says_nosniff_and_pages_have_a_full_csp() {
    let s = server();
    let _ = s.server.state.demo_key.set("lore_demo-page-key".into());
    let widget = format!("/assets/widget.{}.js", lore_server::http::web::widget_hash());
    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        ("GET", "/widget.js".into(), None, 200),
        ("GET", widget, None, 200),
        ("GET", "/assets/app.js".into(), None, 200),
        ("GET", "/assets/app.css".into(), None, 200),
        ("GET", "/".into(), None, 200),
        ("GET", "/demo".into(), None, 200),
        ("GET", "/app-config.json".into(), None, 200),
        ("GET", "/openapi.json".into(), None, 200),
        ("GET", "/healthz".into(), None, 200),
        ("GET", "/metrics".into(), None, 200),
        ("GET", "/v1/me".into(), Some(key("employee")), 200),
        ("GET", "/v1/me".into(), None, 401),
        ("GET", "/v1/collections".into(), Some(key("employee")), 403),
        ("GET", "/no/such/route".into(), None, 404),
        ("GET", "/assets/nope.js".into(), None, 404),
    ];
    for (method, path, key, want) in cases {
        let (status, headers, _) = send(method, &path, key, &[], None).await;
        assert_eq!(status, want, "{method} {path}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff", "{method} {path}: {headers:?}");
    }
    // A revalidated widget too.
    let (_, headers, _) = send("GET", "/widget.js", None, &[], None).await;
    let etag = header(&headers, "etag").to_owned();
    let (status, headers, body) = send("GET", "/widget.js", None, &[("if-none-match", &etag)], None).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");

    for page in ["/", "/demo"] {
        let (_, headers, _) = send("GET", page, None, &[], None).await;
        let csp = header(&headers, "content-security-policy");
        for directive in ["default-src 'self'", "base-uri 'none'", "object-src 'none'", "frame-ancestors 'none'"] {
            assert!(csp.contains(directive), "{page}: no {directive:?} in {csp:?}");
        }
    }
}

/// The JSON error body of a response, checked: `application/json`, exactly `code` and `message`.
fn error_body(what: &str, status: u16, headers: &reqwest::header::HeaderMap, body: &[u8]) -> Value {
    assert!(header(headers, "content-type").starts_with("application/json"), "{what} ({status}): {headers:?}");
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{what} ({status}): not JSON ({e}): {}", String::from_utf8_lossy(body)));
    let object = value.as_object().unwrap_or_else(|| panic!("{what}: {value}"));
    assert_eq!(object.len(), 2, "{what}: {value}");
    assert!(value["code"].is_string(), "{what}: {value}");
    assert!(!value["message"].as_str().unwrap_or_default().is_empty(), "{what}: {value}");
    value
}

/// An error response, checked: its status, code and (part of its) bounded message.
fn expect_error(
    what: &str,
    (status, headers, body): (u16, reqwest::header::HeaderMap, Vec<u8>),
    want_status: u16,
    want_code: &str,
    want_message: &str,
) {
    assert_eq!(status, want_status, "{what}: {}", String::from_utf8_lossy(&body));
    let error = error_body(what, status, &headers, &body);
    assert_eq!(error["code"], want_code, "{what}: {error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.to_lowercase().contains(&want_message.to_lowercase()), "{what}: {error}");
    assert!(message.chars().count() <= 500, "{what}: a bounded message: {error}");
}

#[tokio::test]
async fn every_error_response_is_json() {
    let km = Some(key("km_hr"));
    let documents = "/v1/collections/hr/documents";
    // Uploads refused before the form is read (by the multipart extractor), or while reading it.
    for (what, content_type, message) in [
        ("upload not multipart", "text/plain", "multipart"),
        ("upload without boundary", "multipart/form-data", "boundary"),
        ("upload with empty boundary", "multipart/form-data; boundary=", "multipart"),
        ("upload with a broken body", "multipart/form-data; boundary=x", "multipart"),
    ] {
        let body = Some(b"--x\r\nnot a form".to_vec());
        let response = send("POST", documents, km, &[("content-type", content_type)], body).await;
        expect_error(what, response, 400, "invalid_request", message);
    }
    // Query and path rejections.
    let response = send("GET", &format!("{documents}?limit=abc"), km, &[], None).await;
    expect_error("query not a number", response, 400, "invalid_request", "limit");
    let response = send("GET", &format!("{documents}?bogus=1"), km, &[], None).await;
    expect_error("unknown query parameter", response, 400, "invalid_request", "bogus");
    let response = send("GET", "/v1/documents/%FF%FE", km, &[], None).await;
    expect_error("path not UTF-8", response, 400, "invalid_request", "UTF-8");
    // Routing: a wrong method keeps its `Allow` header; an unknown asset.
    for (method, path, key) in [("DELETE", "/v1/search", km), ("PUT", "/healthz", None)] {
        let response = send(method, path, key, &[], None).await;
        let allow = header(&response.1, "allow").to_owned();
        expect_error(&format!("{method} {path}"), response, 405, "method_not_allowed", "method");
        assert!(allow.contains("GET") || allow.contains("POST"), "{method} {path}: `Allow` kept: {allow:?}");
    }
    let response = send("GET", "/assets/nope.js", None, &[], None).await;
    expect_error("unknown asset", response, 404, "not_found", "route");

    // Successful non-JSON responses are left alone.
    let (status, headers, body) = send("GET", "/metrics", None, &[], None).await;
    assert_eq!((status, header(&headers, "content-type")), (200, "text/plain; version=0.0.4"));
    assert!(String::from_utf8_lossy(&body).contains("# TYPE"));
    let (status, headers, body) = send("GET", "/healthz", None, &[], None).await;
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    assert!(header(&headers, "content-type").starts_with("text/plain"));
    let (status, headers, _) = send("GET", "/", None, &[], None).await;
    assert_eq!((status, header(&headers, "content-type")), (200, "text/html; charset=utf-8"));
    let question = json!({"question": "How long is parental leave?", "stream": true}).to_string();
    let (status, headers, body) = send(
        "POST",
        "/v1/chat",
        Some(key("employee")),
        &[("content-type", "application/json")],
        Some(question.into_bytes()),
    )
    .await;
    assert_eq!((status, header(&headers, "content-type")), (200, "text/event-stream"));
    assert!(String::from_utf8_lossy(&body).contains("event: final"), "{}", String::from_utf8_lossy(&body));
}

/// Search and chat bodies without what differs from call to call.
fn stable(mut body: Value) -> Value {
    if let Some(object) = body.as_object_mut() {
        for volatile in ["timings", "conversation_id", "message_id"] {
            object.remove(volatile);
        }
    }
    body
}

#[tokio::test]
async fn collection_ids_cannot_be_probed() {
    // `eng` exists (group:engineering only); `no-such-collection` does not. Neither key can
    // list collections nor read a document of `eng`.
    for role in ["employee", "agent", "km_hr"] {
        let key = Some(key(role));
        for query in ["", "?limit=5", "?cursor=m"] {
            let existing = send("GET", &format!("/v1/collections/eng/documents{query}"), key, &[], None).await;
            let unknown =
                send("GET", &format!("/v1/collections/no-such-collection/documents{query}"), key, &[], None).await;
            assert_eq!(existing.0, 404, "{role}{query}: {}", String::from_utf8_lossy(&existing.2));
            assert_eq!((existing.0, &existing.2), (unknown.0, &unknown.2), "{role}{query}: a probe tells them apart");
            assert_eq!(error_body(role, existing.0, &existing.1, &existing.2)["code"], "collection_not_found");
        }
        let post = |path: &'static str, body: Value| async move {
            let (status, _, bytes) =
                send("POST", path, key, &[("content-type", "application/json")], Some(body.to_string().into_bytes()))
                    .await;
            (status, stable(serde_json::from_slice(&bytes).unwrap()))
        };
        for (path, body) in [
            ("/v1/search", json!({"query": "on-call engineer pages"})),
            ("/v1/chat", json!({"question": "How fast does the on-call engineer answer pages?"})),
        ] {
            let mut existing = body.clone();
            existing["collections"] = json!(["eng"]);
            let mut unknown = body.clone();
            unknown["collections"] = json!(["no-such-collection"]);
            let (existing, unknown) = (post(path, existing).await, post(path, unknown).await);
            assert_eq!(existing.0, 200, "{role} {path}: {}", existing.1);
            assert_eq!(existing, unknown, "{role} {path}: a probe tells them apart");
        }
    }
    // Whoever may read or manage a collection still sees it; admins, who can list every
    // collection, are told about a typo.
    let (status, _, body) = send("GET", "/v1/collections/hr/documents", Some(key("employee")), &[], None).await;
    assert_eq!(status, 200);
    assert!(!serde_json::from_slice::<Value>(&body).unwrap()["documents"].as_array().unwrap().is_empty());
    for (role, collection) in [("km_eng_only", "eng"), ("admin", "eng"), ("admin", "hr")] {
        let (status, _, body) =
            send("GET", &format!("/v1/collections/{collection}/documents"), Some(key(role)), &[], None).await;
        assert_eq!(status, 200, "{role} on {collection}: {}", String::from_utf8_lossy(&body));
    }
    let search = json!({"query": "on-call", "collections": ["no-such-collection"]}).to_string();
    let (status, headers, body) = send(
        "POST",
        "/v1/search",
        Some(key("admin")),
        &[("content-type", "application/json")],
        Some(search.into_bytes()),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_body("admin typo", status, &headers, &body)["code"], "invalid_request");
}
