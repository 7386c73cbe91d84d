//! Tokens: SSO tokens from the loopback identity provider (roles from groups), embed tokens
//! minted for a user, visitor tokens of public keys (renewed, ending with their key), and
//! origin-pinned tokens.

use std::time::Duration;

use serde_json::{Value, json};

use crate::conversations::{ask_as, conversation_ids};
use crate::support::client::{call, call_with};
use crate::support::fixtures::{new_public_key, roles};

#[tokio::test]
async fn sso_tokens_sign_users_in_with_roles_from_groups() {
    let s = roles();
    let idp = &s.idp;
    let token = idp.token_for("sso-alice", &["hr"], &["hr"], 300);
    let (status, me) = call(s.addr, "GET", "/v1/me", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["user"].as_str(), me["role"].as_str(), me["auth"].as_str()),
        (Some("sso-alice"), Some("employee"), Some("sso"))
    );
    assert_eq!(me["principals"], json!(["dept:hr", "everyone", "group:hr", "user:sso-alice"]));
    let (status, _) = call(s.addr, "GET", "/v1/keys", Some(&token), None).await;
    assert_eq!(status, 403);
    let admin = idp.token_for("sso-it", &["it-admins"], &[], 300);
    let (status, _) = call(s.addr, "GET", "/v1/keys", Some(&admin), None).await;
    assert_eq!(status, 200);
    let km = idp.token_for("sso-km", &["hr-km", "hr"], &["hr"], 300);
    let (_, me) = call(s.addr, "GET", "/v1/me", Some(&km), None).await;
    assert_eq!(me["role"], "knowledge_manager");
    let (status, _) = call(
        s.addr,
        "PATCH",
        &format!("/v1/documents/{}", s.hr_docs["matrix-patch.md"]),
        Some(&km),
        Some(json!({"metadata": {"by": "sso"}})),
    )
    .await;
    assert_eq!(status, 200);
    // Refused tokens: expired, wrong audience, tampered.
    let expired = idp.token_for("sso-alice", &["hr"], &[], -600);
    let mut claims = idp.claims_for("sso-alice", 300);
    claims["aud"] = json!("someone-else");
    let wrong_audience = idp.sign(&claims, lore_identity::testing::KeyChoice::Rsa);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = {
        use base64_helper::encode;
        encode(
            &json!({"iss": idp.issuer(), "aud": "lore-test", "sub": "mallory", "groups": ["it-admins"], "exp": 4_102_444_800u64}),
        )
    };
    let tampered = parts.join(".");
    for (name, bad) in [("expired", expired), ("wrong audience", wrong_audience), ("tampered", tampered)] {
        let (status, body) = call(s.addr, "GET", "/v1/me", Some(&bad), None).await;
        assert_eq!(status, 401, "{name}: {body}");
    }
    // A signed-in user exchanges their identity for an embed token carrying the same principals.
    let (status, minted) = call(s.addr, "POST", "/v1/embed/token", Some(&token), Some(json!({}))).await;
    assert_eq!(status, 200, "{minted}");
    assert_eq!(minted["principals"], json!(["dept:hr", "everyone", "group:hr", "user:sso-alice"]));
    let (status, _) =
        call(s.addr, "POST", "/v1/embed/token", Some(&token), Some(json!({"user": "someone-else"}))).await;
    assert_eq!(status, 400, "a user cannot mint for someone else");
}

mod base64_helper {
    pub fn encode(value: &serde_json::Value) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = value.to_string().into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn embed_tokens_carry_the_user_and_expire() {
    let s = roles();
    let admin = &s.keys["admin"];
    let mint = |body: Value| call(s.addr, "POST", "/v1/embed/token", Some(admin), Some(body));
    let (status, alice) = mint(json!({"user": "alice", "groups": ["hr"], "ttl_secs": 600})).await;
    assert_eq!(status, 200, "{alice}");
    let alice = alice["token"].as_str().unwrap().to_owned();
    let (_, bob) = mint(json!({"user": "bob", "ttl_secs": 600})).await;
    let bob = bob["token"].as_str().unwrap().to_owned();

    let (_, me) = call(s.addr, "GET", "/v1/me", Some(&alice), None).await;
    assert_eq!(
        (me["user"].as_str(), me["role"].as_str(), me["auth"].as_str()),
        (Some("alice"), Some("employee"), Some("embed_token"))
    );
    let (status, _) = call(s.addr, "GET", "/v1/keys", Some(&alice), None).await;
    assert_eq!(status, 403, "an embed token never carries more than employee rights");

    // Bob's conversation is invisible to Alice's token.
    let (status, answer) =
        call(s.addr, "POST", "/v1/chat", Some(&bob), Some(json!({"question": "What is on-call?"}))).await;
    assert_eq!(status, 200, "{answer}");
    let conversation = answer["conversation_id"].as_str().unwrap();
    let (status, _) = call(s.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&alice), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(s.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&bob), None).await;
    assert_eq!(status, 200);

    // A token pinned to an origin is refused from another one.
    let (_, pinned) = mint(json!({"user": "alice", "origin": "https://intranet.example.com"})).await;
    let pinned = pinned["token"].as_str().unwrap().to_owned();
    let (status, _) =
        call_with(s.addr, "GET", "/v1/me", Some(&pinned), None, &[("origin", "https://intranet.example.com")]).await;
    assert_eq!(status, 200);
    let (status, _) =
        call_with(s.addr, "GET", "/v1/me", Some(&pinned), None, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 401);

    // A forged token (signed with another secret) and an expired one are refused.
    let forged = lore_identity::testing::sign_hmac(
        &json!({"alg": "HS256", "typ": lore_identity::embed::EMBED_TOKEN_TYPE}),
        &json!({"iss": "lore-embed", "aud": "lore-embed", "sub": "alice", "principals": ["everyone", "group:hr"], "role": "admin", "jti": "x", "iat": 0, "exp": 4_102_444_800u64}),
        &[7u8; 32],
    );
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(&forged), None).await;
    assert_eq!(status, 401);
    let (_, short) = mint(json!({"user": "alice", "ttl_secs": 1})).await;
    let short = short["token"].as_str().unwrap().to_owned();
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(&short), None).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(7)).await; // past the expiry and the 5 s leeway
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(&short), None).await;
    assert_eq!(status, 401, "an expired embed token must not be reusable");
    let (status, _) = mint(json!({"user": "alice", "ttl_secs": 7200})).await;
    assert_eq!(status, 400, "ttl above the cap");
}

#[tokio::test]
async fn visitor_tokens_renew_and_end_with_their_key() {
    let s = roles();
    let (key, key_id) = new_public_key(s.addr, "renewals").await;
    let (other_key, _) = new_public_key(s.addr, "another-page").await;
    let mint = |key: &str, body: Value| {
        let key = key.to_owned();
        async move { call(s.addr, "POST", "/v1/embed/token", Some(&key), Some(body)).await }
    };
    let (status, first) = mint(&key, json!({})).await;
    assert_eq!(status, 200, "{first}");
    let token = first["token"].as_str().unwrap().to_owned();
    let (conversation, _) = ask_as(s.addr, &token, "How many days of paid vacation do I get?").await;

    // Renewal keeps the visitor, and so their conversation.
    let (status, renewed) = mint(&key, json!({"visitor_token": token})).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["user"], first["user"]);
    assert_ne!(renewed["token"], first["token"]);
    let renewed = renewed["token"].as_str().unwrap().to_owned();
    assert_eq!(conversation_ids(s.addr, &renewed).await, [conversation.as_str()]);

    // Refused: another key's visitor token, a user's embed token, anything else in the body.
    let (_, foreign) = mint(&other_key, json!({})).await;
    let (status, body) = mint(&key, json!({"visitor_token": foreign["token"]})).await;
    assert_eq!(status, 403, "another key's visitor cannot be taken over: {body}");
    let (_, alice) = call(
        s.addr,
        "POST",
        "/v1/embed/token",
        Some(&s.keys["admin"]),
        Some(json!({"user": "alice", "groups": ["hr"]})),
    )
    .await;
    let (status, body) = mint(&key, json!({"visitor_token": alice["token"]})).await;
    assert_eq!(status, 403, "a user's token is not a visitor's: {body}");
    for bad in [
        json!({"visitor_token": "not-a-token"}),
        json!({"user": "alice"}),
        json!({"groups": ["hr"]}),
        json!({"ttl_secs": 60}),
        json!({"origin": "https://intranet.example.com"}),
        json!({"visitor_token": renewed, "user": "alice"}),
    ] {
        let (status, body) = mint(&key, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    // A visitor token cannot mint tokens itself, and a non-public key keeps today's rules.
    let (status, _) = mint(&renewed, json!({})).await;
    assert_eq!(status, 403);
    let (status, _) = mint(&s.keys["employee"], json!({})).await;
    assert_eq!(status, 403);

    // Revoking the key ends its visitors' sessions.
    let (status, _) = call(s.addr, "DELETE", &format!("/v1/keys/{key_id}"), Some(&s.keys["admin"]), None).await;
    assert_eq!(status, 200);
    for token in [&token, &renewed] {
        let (status, body) = call(s.addr, "GET", "/v1/conversations", Some(token), None).await;
        assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")), "{body}");
    }
    let (status, _) = mint(&key, json!({"visitor_token": renewed})).await;
    assert_eq!(status, 401);
    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=auth.failed&limit=1000", Some(&s.keys["admin"]), None).await;
    assert!(audit.to_string().contains("revoked api key \\\"renewals\\\""), "{audit}");
}

#[tokio::test]
async fn origin_pinned_tokens_need_an_origin() {
    let s = roles();
    let body = json!({"user": "pinned-user", "origin": "https://intranet.example.com"});
    let (status, pinned) = call(s.addr, "POST", "/v1/embed/token", Some(&s.keys["admin"]), Some(body)).await;
    assert_eq!(status, 200, "{pinned}");
    let pinned = pinned["token"].as_str().unwrap().to_owned();
    let (status, _) =
        call_with(s.addr, "GET", "/v1/me", Some(&pinned), None, &[("origin", "https://intranet.example.com")]).await;
    assert_eq!(status, 200);
    let (status, body) = call(s.addr, "GET", "/v1/me", Some(&pinned), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("invalid_credentials")), "{body}");
    let (_, audit) = call(s.addr, "GET", "/v1/audit?action=auth.failed&limit=1000", Some(&s.keys["admin"]), None).await;
    assert!(audit.to_string().contains("without an Origin header"), "{audit}");
    // Tokens minted without `origin` work from anywhere (server-side callers, same-origin pages).
    let (_, free) =
        call(s.addr, "POST", "/v1/embed/token", Some(&s.keys["admin"]), Some(json!({"user": "free-user"}))).await;
    let (status, _) = call(s.addr, "GET", "/v1/me", Some(free["token"].as_str().unwrap()), None).await;
    assert_eq!(status, 200);
}
