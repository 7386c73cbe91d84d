use lore_identity::testing::{KeyChoice, SignWith, TEST_AUDIENCE, TestIdp};
use lore_identity::{JwksError, OidcConfig, OidcVerifier, TokenError};
use serde_json::json;

fn verifier(idp: &TestIdp) -> OidcVerifier {
    OidcVerifier::new(idp.oidc_config()).unwrap()
}

fn verifier_with(idp: &TestIdp, adjust: impl FnOnce(&mut OidcConfig)) -> OidcVerifier {
    let mut config = idp.oidc_config();
    adjust(&mut config);
    OidcVerifier::new(config).unwrap()
}

#[tokio::test]
async fn valid_rs256_token_gives_the_identity() {
    let idp = TestIdp::start().await;
    let token = idp.token_for("ada", &["hr", "staff"], &["finance"], 300);
    let identity = verifier(&idp).verify(&token).await.unwrap();
    assert_eq!(identity.user_id, "ada");
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert_eq!(identity.name.as_deref(), Some("ada"));
    assert_eq!(identity.groups, ["hr", "staff"]);
    assert_eq!(identity.departments, ["finance"]);
    assert_eq!(identity.issuer, idp.issuer());
    assert!(identity.expires_at > crate::now() + 200);
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn valid_es256_and_ps256_tokens_verify() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let token = idp.sign(&idp.claims_for("grace", 300), KeyChoice::Ec);
    assert_eq!(verifier.verify(&token).await.unwrap().user_id, "grace");

    let header = json!({ "alg": "PS256", "kid": idp.kid(&KeyChoice::Rsa) });
    let token = idp.sign_with_header(&header, &idp.claims_for("grace", 300), SignWith::Key(KeyChoice::Rsa));
    assert_eq!(verifier.verify(&token).await.unwrap().user_id, "grace");
    // The key set was fetched once and then served from memory.
    assert_eq!(idp.jwks_fetches(), 1);
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let now = crate::now() as i64;

    let expired = idp.token_for("ada", &[], &[], -120);
    assert_eq!(verifier.verify(&expired).await.unwrap_err(), TokenError::Expired);
    let just_expired = idp.token_for("ada", &[], &[], -30);
    assert!(verifier.verify(&just_expired).await.is_ok(), "within the 60 s leeway");

    let mut claims = idp.claims_for("ada", 600);
    claims["nbf"] = json!(now + 300);
    let early = idp.sign(&claims, KeyChoice::Rsa);
    assert_eq!(verifier.verify(&early).await.unwrap_err(), TokenError::NotYetValid);
    claims["nbf"] = json!(now + 30);
    assert!(verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.is_ok(), "within the leeway");

    let mut claims = idp.claims_for("ada", 600);
    claims["iat"] = json!(now + 300);
    assert_eq!(verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(), TokenError::NotYetValid);

    let mut claims = idp.claims_for("ada", 600);
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(),
        TokenError::MissingClaim("exp".into())
    );
}

#[tokio::test]
async fn issuer_and_audience_must_match() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);

    let mut claims = idp.claims_for("ada", 300);
    claims["iss"] = json!("https://evil.example.com");
    assert_eq!(verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(), TokenError::WrongIssuer);
    claims.as_object_mut().unwrap().remove("iss");
    assert_eq!(
        verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(),
        TokenError::MissingClaim("iss".into())
    );

    let mut claims = idp.claims_for("ada", 300);
    claims["aud"] = json!("another-app");
    assert_eq!(verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(), TokenError::WrongAudience);
    claims["aud"] = json!(["another-app", TEST_AUDIENCE]);
    assert!(verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.is_ok());
    claims["aud"] = json!(["another-app", "third-app"]);
    assert_eq!(verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(), TokenError::WrongAudience);
}

#[tokio::test]
async fn tampered_and_malformed_tokens_are_refused() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let token = idp.token_for("ada", &["staff"], &[], 300);
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = idp.claims_for("ada", 300);
    claims["groups"] = json!(["staff", "admins"]);
    let forged_payload = base64_url(claims.to_string().as_bytes());
    let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert_eq!(verifier.verify(&forged).await.unwrap_err(), TokenError::BadSignature);

    for bad in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig"] {
        assert!(matches!(verifier.verify(bad).await.unwrap_err(), TokenError::Malformed(_)), "{bad:?}");
    }
}

#[tokio::test]
async fn unknown_kids_trigger_at_most_one_refetch_per_interval() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    verifier.verify(&idp.token_for("ada", &[], &[], 300)).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 1);

    let claims = idp.claims_for("mallory", 300);
    let mut tasks = tokio::task::JoinSet::new();
    for attempt in 0..25 {
        let header = json!({ "alg": "RS256", "kid": format!("random-{attempt}") });
        let token = idp.sign_with_header(&header, &claims, SignWith::Key(KeyChoice::Rsa));
        let verifier = verifier.clone();
        tasks.spawn(async move { verifier.verify(&token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(matches!(result.unwrap(), Err(TokenError::UnknownKey(kid)) if kid.starts_with("random-")));
    }
    assert_eq!(idp.jwks_fetches(), 2, "one refetch for all unknown kids within jwks_min_refresh_secs");
}

#[tokio::test]
async fn rotated_key_verifies_after_a_refresh_and_removed_key_is_refused() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let old_kid = idp.kid(&KeyChoice::Rsa);
    let old_token = idp.token_for("ada", &[], &[], 300);
    verifier.verify(&old_token).await.unwrap();

    let new_kid = idp.rotate();
    idp.remove_key(&old_kid);
    let new_token = idp.token_for("ada", &[], &[], 300);
    assert_eq!(idp.kid(&KeyChoice::Rsa), new_kid);
    verifier.verify(&new_token).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 2);

    assert_eq!(verifier.verify(&old_token).await.unwrap_err(), TokenError::UnknownKey(old_kid));
    assert_eq!(idp.jwks_fetches(), 2, "rate limited: no second refetch");
    // A key that was never removed still works.
    verifier.verify(&idp.sign(&idp.claims_for("ada", 300), KeyChoice::Kid("rsa-1".into()))).await.unwrap();
}

#[tokio::test]
async fn stale_key_set_is_refetched_after_max_age() {
    let idp = TestIdp::start().await;
    let verifier = verifier_with(&idp, |config| config.jwks_max_age_secs = 0);
    let token = idp.token_for("ada", &[], &[], 300);
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(idp.jwks_fetches(), 2);
}

#[tokio::test]
async fn none_and_hmac_algorithms_are_refused_before_any_key_lookup() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let claims = idp.claims_for("mallory", 300);
    let kid = idp.kid(&KeyChoice::Rsa);

    for alg in ["none", "None", "NONE"] {
        let token = idp.sign_with_header(&json!({ "alg": alg, "kid": kid }), &claims, SignWith::Nothing);
        assert_eq!(verifier.verify(&token).await.unwrap_err(), TokenError::UnsupportedAlgorithm(alg.into()));
    }
    // The classic key-confusion attack: HS256 with the provider's public key as the HMAC secret.
    for secret in [idp.rsa_public_key_pem().into_bytes(), idp.rsa_public_key_der()] {
        for alg in ["HS256", "HS384", "HS512"] {
            let header = json!({ "alg": alg, "typ": "JWT", "kid": kid });
            let token = idp.sign_with_header(&header, &claims, SignWith::Hmac(secret.clone()));
            assert_eq!(verifier.verify(&token).await.unwrap_err(), TokenError::UnsupportedAlgorithm(alg.into()));
        }
    }
    let restricted = verifier_with(&idp, |config| config.algorithms = vec!["ES256".into()]);
    let rs256 = idp.token_for("ada", &[], &[], 300);
    assert_eq!(restricted.verify(&rs256).await.unwrap_err(), TokenError::UnsupportedAlgorithm("RS256".into()));
    assert_eq!(idp.jwks_fetches(), 0);
}

#[tokio::test]
async fn algorithm_must_fit_the_key_type() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let claims = idp.claims_for("mallory", 300);
    let ec_kid = idp.kid(&KeyChoice::Ec);
    let rsa_kid = idp.kid(&KeyChoice::Rsa);

    let token = idp.sign_with_header(&json!({ "alg": "RS256", "kid": ec_kid }), &claims, SignWith::Key(KeyChoice::Rsa));
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        TokenError::KeyMismatch { alg: "RS256".into(), kid: ec_kid }
    );
    let token = idp.sign_with_header(&json!({ "alg": "ES256", "kid": rsa_kid }), &claims, SignWith::Key(KeyChoice::Ec));
    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        TokenError::KeyMismatch { alg: "ES256".into(), kid: rsa_kid }
    );
}

#[tokio::test]
async fn tokens_without_kid_need_exactly_one_fitting_key() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let claims = idp.claims_for("ada", 300);
    let es256 = idp.sign_with_header(&json!({ "alg": "ES256" }), &claims, SignWith::Key(KeyChoice::Ec));
    assert_eq!(verifier.verify(&es256).await.unwrap().user_id, "ada");
    // Two RSA keys are published, so an RS256 token must say which one.
    let rs256 = idp.sign_with_header(&json!({ "alg": "RS256" }), &claims, SignWith::Key(KeyChoice::Rsa));
    assert_eq!(verifier.verify(&rs256).await.unwrap_err(), TokenError::AmbiguousKey("RS256".into()));
}

#[tokio::test]
async fn user_id_claim_is_required_and_well_formed() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let mut claims = idp.claims_for("ada", 300);
    claims.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(),
        TokenError::MissingClaim("sub".into())
    );
    for bad in [json!(""), json!("ada lovelace"), json!(42)] {
        claims["sub"] = bad;
        assert!(matches!(
            verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(),
            TokenError::InvalidClaim { claim, .. } if claim == "sub"
        ));
    }
}

#[tokio::test]
async fn claims_mapping_for_entra_id() {
    let idp = TestIdp::start().await;
    let verifier = verifier_with(&idp, |config| config.claims.user_id = "oid".into());
    let mut claims = idp.claims_for("pairwise-subject", 300);
    claims["oid"] = json!("00000000-0000-0000-0000-00000000a11e");
    claims["groups"] = json!("single-group");
    claims["department"] = json!("Finance");
    let identity = verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap();
    assert_eq!(identity.user_id, "00000000-0000-0000-0000-00000000a11e");
    assert_eq!(identity.groups, ["single-group"]);
    assert_eq!(identity.departments, ["Finance"]);

    claims.as_object_mut().unwrap().remove("oid");
    assert_eq!(
        verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(),
        TokenError::MissingClaim("oid".into())
    );
}

#[tokio::test]
async fn entra_id_groups_overage_is_accepted_without_groups() {
    let idp = TestIdp::start().await;
    let verifier = verifier(&idp);
    let mut claims = idp.claims_for("ada", 300);
    claims["_claim_names"] = json!({ "groups": "src1" });
    claims["_claim_sources"] =
        json!({ "src1": { "endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects" } });
    let identity = verifier.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap();
    assert!(identity.groups.is_empty());
}

#[tokio::test]
async fn claims_mapping_for_keycloak() {
    let idp = TestIdp::start().await;
    let roles = verifier_with(&idp, |config| config.claims.groups = "realm_access.roles".into());
    let mut claims = idp.claims_for("ada", 300);
    claims["realm_access"] = json!({ "roles": ["offline_access", "lore-reader"] });
    claims["groups"] = json!(["/hr", "/hr/payroll", "/staff", "staff"]);
    claims.as_object_mut().unwrap().remove("email");
    let identity = roles.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap();
    assert_eq!(identity.groups, ["offline_access", "lore-reader"]);
    assert_eq!(identity.email, None);
    assert!(identity.departments.is_empty());

    let full_path = verifier_with(&idp, |config| config.claims.group_prefix_strip = Some("/".into()));
    let identity = full_path.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap();
    assert_eq!(identity.groups, ["hr", "hr/payroll", "staff"]);

    claims["groups"] = json!(["/hr", 7]);
    assert!(matches!(
        full_path.verify(&idp.sign(&claims, KeyChoice::Rsa)).await.unwrap_err(),
        TokenError::InvalidClaim { claim, .. } if claim == "groups"
    ));
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let idp = TestIdp::start().await;
    idp.set_discovery_issuer("https://evil.example.com");
    let verifier = verifier(&idp);
    let error = verifier.verify(&idp.token_for("ada", &[], &[], 300)).await.unwrap_err();
    assert!(
        matches!(&error, TokenError::Jwks(JwksError::IssuerMismatch { found, .. }) if found == "https://evil.example.com")
    );
    assert!(!error.is_client_error());
    assert_eq!(idp.jwks_fetches(), 0);

    // A configured jwks_uri skips discovery altogether.
    let direct = verifier_with(&idp, |config| config.jwks_uri = Some(idp.jwks_uri()));
    direct.verify(&idp.token_for("ada", &[], &[], 300)).await.unwrap();
}

#[tokio::test]
async fn unreachable_provider_is_not_a_client_error() {
    let idp = TestIdp::start().await;
    let token = idp.token_for("ada", &[], &[], 300);
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let verifier = verifier_with(&idp, |config| {
        config.discovery_url = Some(format!("http://127.0.0.1:{closed_port}/.well-known/openid-configuration"));
        config.http_timeout_secs = 2;
    });
    let error = verifier.verify(&token).await.unwrap_err();
    assert!(matches!(error, TokenError::Jwks(JwksError::Request { .. })), "{error:?}");
    assert!(!error.is_client_error());
    assert!(!error.to_string().contains(&token));

    // Client mistakes are client errors.
    assert!(TokenError::Expired.is_client_error());
    assert!(TokenError::UnknownKey("k".into()).is_client_error());
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
