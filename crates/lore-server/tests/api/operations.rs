//! Health, readiness, metrics and the OpenAPI description.

use serde_json::{Value, json};

use crate::support::fixtures::{post, samples};

#[tokio::test]
async fn health_readiness_and_metrics() {
    let server = samples();
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("http://{}{path}", server.addr)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let key = server.key_of("carlos@acme.example");
    let (status, _) = post(server, Some(&key), "/v1/search", json!({"query": "travel policy"}).to_string()).await;
    assert_eq!(status, 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("lore_http_request_duration_seconds_count{route=\"/v1/search\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("lore_retrieval_stage_duration_seconds_count{stage=\"dense\"}"), "{metrics}");
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let server = samples();
    let spec: Value = reqwest::get(format!("http://{}/openapi.json", server.addr)).await.unwrap().json().await.unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for path in
        ["/v1/search", "/v1/chat", "/v1/conversations", "/v1/conversations/{id}", "/healthz", "/readyz", "/metrics"]
    {
        assert!(paths.contains_key(path), "{path} missing from openapi.json");
    }
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for schema in
        ["SearchRequest", "SearchResponse", "ChatRequest", "ChatAnswer", "Citation", "ErrorBody", "StreamMetadata"]
    {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    assert_eq!(spec["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    // The request schema forbids what the server rejects.
    assert!(schemas["SearchRequest"]["required"].as_array().unwrap().contains(&json!("query")));
}
