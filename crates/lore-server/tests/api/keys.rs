//! API keys: shown once, listed without secrets, expiring and revocable; public keys read only
//! documents shared with everyone and never act as a user.

use serde_json::json;

use crate::support::client::call;
use crate::support::fixtures::{new_public_key, roles};

#[tokio::test]
async fn public_keys_read_everyone_documents_only() {
    let s = roles();
    let public = &s.keys["public"];
    let (status, me) = call(s.addr, "GET", "/v1/me", Some(public), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["principals"], json!(["everyone"]));
    let (status, results) = call(
        s.addr,
        "POST",
        "/v1/search",
        Some(public),
        Some(json!({"query": "salary range engineer parental leave", "limit": 20})),
    )
    .await;
    assert_eq!(status, 200);
    for result in results["results"].as_array().unwrap() {
        let id = result["document"]["id"].as_str().unwrap();
        let acl = s.server.state.catalog().document(id).unwrap().unwrap().acl.to_strings();
        assert_eq!(acl, ["everyone"], "a public key reached {id}");
    }
    let (status, refused) = call(
        s.addr,
        "POST",
        "/v1/keys",
        Some(&s.keys["admin"]),
        Some(json!({"name": "wide-public", "role": "employee", "user": "p", "public": true, "groups": ["hr"]})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
}

#[tokio::test]
async fn api_keys_are_shown_once_expire_and_revoke() {
    let s = roles();
    let admin = &s.keys["admin"];
    let (status, created) = call(
        s.addr,
        "POST",
        "/v1/keys",
        Some(admin),
        Some(json!({"name": "crm", "role": "agent", "user": "crm-bot", "groups": ["support"], "department": "sales", "expires_in_days": 30})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["info"]["id"].as_str().unwrap().to_owned();
    assert!(created["info"]["expires_at"].is_string());
    let (_, me) = call(s.addr, "GET", "/v1/me", Some(&secret), None).await;
    assert_eq!(me["principals"], json!(["dept:sales", "everyone", "group:support", "user:crm-bot"]));
    let (_, listed) = call(s.addr, "GET", "/v1/keys", Some(admin), None).await;
    let entry = listed["keys"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert!(entry["last_used_at"].is_string(), "{entry}");
    assert!(!listed.to_string().contains(&secret), "listing must never show secrets");
    let (status, _) = call(s.addr, "DELETE", &format!("/v1/keys/{id}"), Some(admin), None).await;
    assert_eq!(status, 200);
    let (status, body) = call(s.addr, "GET", "/v1/me", Some(&secret), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")));
    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=auth.failed&limit=1000", Some(admin), None).await;
    assert!(audit.to_string().contains("revoked api key \\\"crm\\\""), "{audit}");
    let (status, _) = call(s.addr, "DELETE", "/v1/keys/key_nope", Some(admin), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn public_keys_cannot_act_as_a_user() {
    let s = roles();
    let admin = &s.keys["admin"];
    let body = json!({"name": "alice-public", "role": "employee", "user": "alice@acme.example", "public": true});
    let (status, refused) = call(s.addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("invalid_request")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("public key"), "{refused}");
    // Without a user (or with the placeholder) it is created; other keys still need a user.
    new_public_key(s.addr, "no-user-public").await;
    let body = json!({"name": "placeholder-public", "role": "employee", "user": "public", "public": true});
    let (status, created) = call(s.addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let (status, refused) =
        call(s.addr, "POST", "/v1/keys", Some(admin), Some(json!({"name": "no-user", "role": "employee"}))).await;
    assert_eq!(status, 400, "{refused}");
}
