//! The test provider's authorization code flow with PKCE (used by the full-page chat's browser
//! test): a code is redeemed once, only with the verifier that hashes to its challenge.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lore_identity::OidcVerifier;
use lore_identity::testing::TestIdp;

async fn authorize(idp: &TestIdp, challenge: &str) -> String {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = client
        .get(format!(
            "{}/authorize?response_type=code&client_id=web&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2F&state=s1\
             &code_challenge={challenge}&code_challenge_method=S256",
            idp.issuer()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("http://127.0.0.1:9/?code=") && location.ends_with("&state=s1"), "{location}");
    location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned()
}

async fn redeem(idp: &TestIdp, code: &str, verifier: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/token", idp.issuer()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2F&client_id=web&code_verifier={verifier}"
        ))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn codes_are_redeemed_once_with_the_right_verifier() {
    let idp = TestIdp::start().await;
    idp.set_login("ada", &["hr"]);
    let verifier = "a-verifier-of-at-least-forty-three-characters-long-0123";
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));

    let code = authorize(&idp, &challenge).await;
    let (status, body) = redeem(&idp, &code, "a-different-verifier-of-at-least-forty-three-chars").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "a wrong verifier is refused");

    let code = authorize(&idp, &challenge).await;
    let (status, body) = redeem(&idp, &code, verifier).await;
    assert_eq!(status, 200, "{body}");
    let identity =
        OidcVerifier::new(idp.oidc_config()).unwrap().verify(body["access_token"].as_str().unwrap()).await.unwrap();
    assert_eq!((identity.user_id.as_str(), identity.groups.as_slice()), ("ada", ["hr".to_owned()].as_slice()));
    let (status, _) = redeem(&idp, &code, verifier).await;
    assert_eq!(status, 400, "a code is redeemed once");
}
