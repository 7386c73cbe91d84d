use lore_identity::embed::{EMBED_TOKEN_TYPE, MAX_EMBED_TTL_SECS};
use lore_identity::testing::{KeyChoice, TestIdp, sign_hmac};
use lore_identity::{EmbedClaimsInput, EmbedSigner, IdentityError, OidcVerifier, TokenError, generate_secret};
use serde_json::json;

const ISSUER: &str = "https://lore.example.com";

fn input(ttl_secs: u64) -> EmbedClaimsInput {
    EmbedClaimsInput {
        user_id: "ada".into(),
        principals: vec!["user:ada".into(), "group:hr".into()],
        role: "reader".into(),
        origin: Some("https://intranet.example.com".into()),
        ttl_secs,
    }
}

#[test]
fn minted_token_round_trips() {
    let signer = EmbedSigner::new(&generate_secret(), ISSUER).unwrap();
    let (token, claims) = signer.mint(input(300)).unwrap();
    assert_eq!(claims.sub, "ada");
    assert_eq!(claims.aud, "lore-embed");
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.exp, claims.iat + 300);
    assert!(!claims.jti.is_empty());
    assert_eq!(signer.verify(&token).unwrap(), claims);

    let (_, other) = signer.mint(input(300)).unwrap();
    assert_ne!(claims.jti, other.jti);
}

#[test]
fn ttl_is_capped() {
    let signer = EmbedSigner::new(&generate_secret(), ISSUER).unwrap();
    assert!(signer.mint(input(MAX_EMBED_TTL_SECS)).is_ok());
    assert!(matches!(signer.mint(input(MAX_EMBED_TTL_SECS + 1)), Err(IdentityError::OutOfRange { .. })));
    assert!(matches!(signer.mint(input(0)), Err(IdentityError::Zero(_))));
    let mut bad_user = input(60);
    bad_user.user_id = "ada lovelace".into();
    assert!(matches!(signer.mint(bad_user), Err(IdentityError::InvalidUserId)));
}

/// Signs `claims` correctly with the signer's secret, so only the claim under test is wrong.
fn resign(secret: &[u8], header: serde_json::Value, claims: serde_json::Value) -> String {
    sign_hmac(&header, &claims, secret)
}

#[test]
fn expired_wrong_type_and_wrong_issuer_are_refused() {
    let secret = generate_secret();
    let signer = EmbedSigner::new(&secret, ISSUER).unwrap();
    let (_, claims) = signer.mint(input(300)).unwrap();
    let header = json!({ "alg": "HS256", "typ": EMBED_TOKEN_TYPE });
    let now = crate::now();

    let mut expired = serde_json::to_value(&claims).unwrap();
    expired["iat"] = json!(now - 120);
    expired["exp"] = json!(now - 60);
    let token = resign(&secret, header.clone(), expired.clone());
    assert_eq!(signer.verify(&token).unwrap_err(), TokenError::Expired);
    // Only a 5 s leeway: these tokens live minutes.
    expired["exp"] = json!(now - 10);
    let token = resign(&secret, header.clone(), expired);
    assert_eq!(signer.verify(&token).unwrap_err(), TokenError::Expired);

    let token = resign(&secret, json!({ "alg": "HS256", "typ": "JWT" }), serde_json::to_value(&claims).unwrap());
    assert_eq!(signer.verify(&token).unwrap_err(), TokenError::WrongType);

    let other_issuer = EmbedSigner::new(&secret, "https://other.example.com").unwrap();
    let (token, _) = other_issuer.mint(input(300)).unwrap();
    assert_eq!(signer.verify(&token).unwrap_err(), TokenError::WrongIssuer);

    let mut wrong_audience = serde_json::to_value(&claims).unwrap();
    wrong_audience["aud"] = json!("lore-test");
    let token = resign(&secret, header, wrong_audience);
    assert_eq!(signer.verify(&token).unwrap_err(), TokenError::WrongAudience);
}

#[test]
fn tampered_payload_and_wrong_secret_fail() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let signer = EmbedSigner::new(&generate_secret(), ISSUER).unwrap();
    let (token, claims) = signer.mint(input(300)).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    for tamper in [json!({ "sub": "root" }), json!({ "principals": ["user:ada", "group:admins"] })] {
        let mut forged = serde_json::to_value(&claims).unwrap();
        for (key, value) in tamper.as_object().unwrap() {
            forged[key] = value.clone();
        }
        let payload = URL_SAFE_NO_PAD.encode(forged.to_string());
        let forged_token = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(signer.verify(&forged_token).unwrap_err(), TokenError::BadSignature);
    }

    let other = EmbedSigner::new(&generate_secret(), ISSUER).unwrap();
    assert_eq!(other.verify(&token).unwrap_err(), TokenError::BadSignature);
}

#[tokio::test]
async fn embed_and_oidc_tokens_are_not_interchangeable() {
    let idp = TestIdp::start().await;
    let oidc = OidcVerifier::new(idp.oidc_config()).unwrap();
    let signer = EmbedSigner::new(&generate_secret(), idp.issuer()).unwrap();

    let (embed_token, _) = signer.mint(input(300)).unwrap();
    assert_eq!(oidc.verify(&embed_token).await.unwrap_err(), TokenError::UnsupportedAlgorithm("HS256".into()));

    let idp_token = idp.token_for("ada", &["hr"], &[], 300);
    assert_eq!(signer.verify(&idp_token).unwrap_err(), TokenError::UnsupportedAlgorithm("RS256".into()));
    let es_token = idp.sign(&idp.claims_for("ada", 300), KeyChoice::Ec);
    assert_eq!(signer.verify(&es_token).unwrap_err(), TokenError::UnsupportedAlgorithm("ES256".into()));
    assert_eq!(idp.jwks_fetches(), 0);
}
