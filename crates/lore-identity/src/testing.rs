//! A loopback OpenID provider for tests (feature `test-idp`): discovery document and JWKS served by axum on
//! 127.0.0.1, real RSA-2048 and P-256 keys generated at startup, and helpers to sign good and bad tokens.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use lore_identity::OidcVerifier;
//! use lore_identity::testing::TestIdp;
//!
//! let idp = TestIdp::start().await;
//! let verifier = OidcVerifier::new(idp.oidc_config())?;
//! let token = idp.token_for("ada", &["hr"], &["finance"], 300);
//! let identity = verifier.verify(&token).await?;
//! assert_eq!(identity.groups, ["hr"]);
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::OidcConfig;

/// The audience [`TestIdp::token_for`] puts in tokens and [`TestIdp::oidc_config`] accepts.
pub const TEST_AUDIENCE: &str = "lore-test";

/// Which key signs a token.
#[derive(Debug, Clone)]
pub enum KeyChoice {
    /// The current RSA key (the newest one; see [`TestIdp::rotate`]).
    Rsa,
    /// The P-256 key.
    Ec,
    /// Any key ever generated, including ones removed from the JWKS.
    Kid(String),
}

/// How [`TestIdp::sign_with_header`] produces the signature. With a key, the algorithm is taken from the
/// header's `alg` and must suit the key (RS*/PS* for RSA, ES256 for EC).
#[derive(Debug, Clone)]
pub enum SignWith {
    Key(KeyChoice),
    /// HS256/384/512 (from the header's `alg`) with this secret, e.g. a public key's bytes.
    Hmac(Vec<u8>),
    /// An empty signature, as `alg: none` tokens have.
    Nothing,
}

enum Material {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

struct TestKey {
    kid: String,
    material: Material,
    published: bool,
}

struct Shared {
    issuer: String,
    keys: Mutex<Vec<TestKey>>,
    discovery_issuer: Mutex<Option<String>>,
    jwks_fetches: AtomicUsize,
    /// Who "signs in" at `/authorize` (user, groups).
    login: Mutex<Option<(String, Vec<String>)>>,
    /// Authorization codes not yet redeemed.
    codes: Mutex<std::collections::HashMap<String, PendingCode>>,
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    user: String,
    groups: Vec<String>,
}

pub struct TestIdp {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestIdp {
    /// Generates two RSA keys (`rsa-1`, `rsa-2`, the current one) and one P-256 key (`ec-1`), and serves
    /// `/.well-known/openid-configuration` and `/jwks` on a free loopback port.
    pub async fn start() -> TestIdp {
        let keys = tokio::task::spawn_blocking(|| {
            vec![
                TestKey { kid: "rsa-1".into(), material: Material::Rsa(rsa_key()), published: true },
                TestKey { kid: "rsa-2".into(), material: Material::Rsa(rsa_key()), published: true },
                TestKey { kid: "ec-1".into(), material: Material::Ec(ec_key()), published: true },
            ]
        })
        .await
        .expect("key generation panicked");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            keys: Mutex::new(keys),
            discovery_issuer: Mutex::new(None),
            jwks_fetches: AtomicUsize::new(0),
            login: Mutex::new(None),
            codes: Mutex::new(Default::default()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", axum::routing::post(token))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("test idp server");
        });
        TestIdp { shared, server }
    }

    pub fn issuer(&self) -> String {
        self.shared.issuer.clone()
    }

    /// The user whom `/authorize` signs in (authorization code flow with PKCE, for browser
    /// tests): no login form, the code goes straight back to the client.
    pub fn set_login(&self, user: &str, groups: &[&str]) {
        *lock(&self.shared.login) = Some((user.to_owned(), groups.iter().map(|g| g.to_string()).collect()));
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.shared.issuer)
    }

    /// A verifier configuration for this provider, with every other setting at its default.
    pub fn oidc_config(&self) -> OidcConfig {
        OidcConfig::new(self.issuer(), vec![TEST_AUDIENCE.to_owned()])
    }

    /// How many times `/jwks` was requested.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Makes the discovery document name another issuer, as a misconfigured or malicious provider would.
    pub fn set_discovery_issuer(&self, issuer: impl Into<String>) {
        *lock(&self.shared.discovery_issuer) = Some(issuer.into());
    }

    /// The key id `choice` refers to.
    pub fn kid(&self, choice: &KeyChoice) -> String {
        let keys = lock(&self.shared.keys);
        keys[key_index(&keys, choice)].kid.clone()
    }

    /// Adds a new RSA key to the JWKS and makes it current; older keys stay published until
    /// [`TestIdp::remove_key`]. Returns the new key id.
    pub fn rotate(&self) -> String {
        let material = Material::Rsa(rsa_key());
        let mut keys = lock(&self.shared.keys);
        let kid = format!("rsa-{}", keys.len() + 1);
        keys.push(TestKey { kid: kid.clone(), material, published: true });
        kid
    }

    /// Takes a key out of the JWKS; it can still sign, to test that such tokens are refused.
    pub fn remove_key(&self, kid: &str) {
        let mut keys = lock(&self.shared.keys);
        let key = keys.iter_mut().find(|key| key.kid == kid).expect("no such test key");
        key.published = false;
    }

    /// The current RSA key's public key as X.509 SubjectPublicKeyInfo DER, for HMAC key-confusion attacks.
    pub fn rsa_public_key_der(&self) -> Vec<u8> {
        let keys = lock(&self.shared.keys);
        match &keys[key_index(&keys, &KeyChoice::Rsa)].material {
            Material::Rsa(pair) => pair.public_key().as_der().expect("public key der").as_ref().to_vec(),
            Material::Ec(_) => unreachable!("KeyChoice::Rsa selects an RSA key"),
        }
    }

    /// The same key in PEM, which is what a naive verifier would hold as its "secret".
    pub fn rsa_public_key_pem(&self) -> String {
        let base64 = STANDARD.encode(self.rsa_public_key_der());
        let lines: Vec<&str> = base64.as_bytes().chunks(64).map(|chunk| std::str::from_utf8(chunk).unwrap()).collect();
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"))
    }

    /// Valid claims for `user` (issuer, audience, `iat`, `exp` = now + `ttl_secs`, email and name), to adjust
    /// before signing.
    pub fn claims_for(&self, user: &str, ttl_secs: i64) -> Value {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        json!({
            "iss": self.issuer(),
            "aud": TEST_AUDIENCE,
            "sub": user,
            "email": format!("{user}@example.com"),
            "name": user,
            "iat": now,
            "exp": now + ttl_secs,
        })
    }

    /// A valid RS256 token signed with the current key, with `groups` and `department` claims.
    pub fn token_for(&self, user: &str, groups: &[&str], departments: &[&str], ttl_secs: i64) -> String {
        let mut claims = self.claims_for(user, ttl_secs);
        claims["groups"] = json!(groups);
        claims["department"] = json!(departments);
        self.sign(&claims, KeyChoice::Rsa)
    }

    /// Signs `claims` with RS256 (RSA keys) or ES256 (the EC key), with the key's `kid` in the header.
    pub fn sign(&self, claims: &Value, key: KeyChoice) -> String {
        let kid = self.kid(&key);
        let alg = if kid.starts_with("ec-") { "ES256" } else { "RS256" };
        self.sign_with_header(&json!({ "alg": alg, "typ": "JWT", "kid": kid }), claims, SignWith::Key(key))
    }

    /// Signs with exactly the given header, to craft tokens a verifier must refuse.
    pub fn sign_with_header(&self, header: &Value, claims: &Value, with: SignWith) -> String {
        let alg = header["alg"].as_str().unwrap_or_default();
        let signing_input = signing_input(header, claims);
        let signature = match with {
            SignWith::Nothing => Vec::new(),
            SignWith::Hmac(secret) => hmac(alg, &secret, &signing_input),
            SignWith::Key(choice) => {
                let keys = lock(&self.shared.keys);
                sign_with_key(&keys[key_index(&keys, &choice)].material, alg, signing_input.as_bytes())
            }
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// A token with exactly this header and these claims, HMAC-signed (HS256/384/512 from the header's `alg`),
/// e.g. to forge embed tokens with chosen claims. Needs no running provider.
pub fn sign_hmac(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let signing_input = signing_input(header, claims);
    let signature = hmac(header["alg"].as_str().unwrap_or_default(), secret, &signing_input);
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()))
}

fn hmac(alg: &str, secret: &[u8], signing_input: &str) -> Vec<u8> {
    let algorithm = match alg {
        "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        "HS512" => aws_lc_rs::hmac::HMAC_SHA512,
        other => panic!("hmac signing needs an HS* alg, not {other}"),
    };
    let key = aws_lc_rs::hmac::Key::new(algorithm, secret);
    aws_lc_rs::hmac::sign(&key, signing_input.as_bytes()).as_ref().to_vec()
}

fn sign_with_key(material: &Material, alg: &str, message: &[u8]) -> Vec<u8> {
    let rng = SystemRandom::new();
    match material {
        Material::Rsa(pair) => {
            let padding: &'static dyn sig::RsaEncoding = match alg {
                "RS256" => &sig::RSA_PKCS1_SHA256,
                "RS384" => &sig::RSA_PKCS1_SHA384,
                "RS512" => &sig::RSA_PKCS1_SHA512,
                "PS256" => &sig::RSA_PSS_SHA256,
                "PS384" => &sig::RSA_PSS_SHA384,
                "PS512" => &sig::RSA_PSS_SHA512,
                other => panic!("an RSA key cannot sign {other}"),
            };
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(padding, &rng, message, &mut signature).expect("rsa signing");
            signature
        }
        Material::Ec(pair) => {
            assert_eq!(alg, "ES256", "the EC test key is P-256");
            pair.sign(&rng, message).expect("ecdsa signing").as_ref().to_vec()
        }
    }
}

fn rsa_key() -> RsaKeyPair {
    RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa key generation")
}

fn ec_key() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("ec key generation")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn key_index(keys: &[TestKey], choice: &KeyChoice) -> usize {
    let found = match choice {
        KeyChoice::Rsa => keys.iter().rposition(|key| matches!(key.material, Material::Rsa(_))),
        KeyChoice::Ec => keys.iter().position(|key| matches!(key.material, Material::Ec(_))),
        KeyChoice::Kid(kid) => keys.iter().position(|key| key.kid == *kid),
    };
    found.unwrap_or_else(|| panic!("no test key for {choice:?}"))
}

fn public_jwk(key: &TestKey) -> Value {
    match &key.material {
        // No `alg` on RSA keys (as Entra ID publishes them), so PS* tokens are checked against them too.
        Material::Rsa(pair) => json!({
            "kty": "RSA",
            "use": "sig",
            "kid": key.kid,
            "n": URL_SAFE_NO_PAD.encode(pair.public_key().modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(pair.public_key().exponent().big_endian_without_leading_zero()),
        }),
        Material::Ec(pair) => {
            // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            json!({
                "kty": "EC",
                "use": "sig",
                "alg": "ES256",
                "crv": "P-256",
                "kid": key.kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            })
        }
    }
}

/// Browsers fetch discovery and redeem codes cross-origin, as with real providers.
const CORS: [(axum::http::HeaderName, &str); 1] = [(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];

async fn discovery(State(shared): State<Arc<Shared>>) -> impl axum::response::IntoResponse {
    let issuer = lock(&shared.discovery_issuer).clone().unwrap_or_else(|| shared.issuer.clone());
    (
        CORS,
        axum::Json(json!({
            "issuer": issuer,
            "jwks_uri": format!("{}/jwks", shared.issuer),
            "authorization_endpoint": format!("{}/authorize", shared.issuer),
            "token_endpoint": format!("{}/token", shared.issuer),
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        })),
    )
}

#[derive(serde::Deserialize)]
struct AuthorizeQuery {
    response_type: String,
    client_id: String,
    redirect_uri: String,
    state: String,
    code_challenge: String,
    code_challenge_method: String,
}

/// `/authorize`: checks the PKCE request and redirects back with a code for the set login.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<AuthorizeQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some((user, groups)) = lock(&shared.login).clone() else {
        return (axum::http::StatusCode::FORBIDDEN, "no test login set").into_response();
    };
    if q.response_type != "code" || q.code_challenge_method != "S256" || q.code_challenge.len() < 43 {
        return (axum::http::StatusCode::BAD_REQUEST, "authorization code with S256 PKCE required").into_response();
    }
    let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 18]>());
    let redirect = format!("{}?code={code}&state={}", q.redirect_uri, q.state);
    lock(&shared.codes).insert(
        code,
        PendingCode { client_id: q.client_id, redirect_uri: q.redirect_uri, challenge: q.code_challenge, user, groups },
    );
    axum::response::Redirect::to(&redirect).into_response()
}

#[derive(serde::Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    client_id: String,
    code_verifier: String,
}

/// `/token`: redeems a code once, if the verifier hashes to the challenge and the client and
/// redirect URI match; returns an RS256 access token for the signed-in user.
async fn token(State(shared): State<Arc<Shared>>, axum::Form(form): axum::Form<TokenForm>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let refused =
        || (axum::http::StatusCode::BAD_REQUEST, CORS, axum::Json(json!({"error": "invalid_grant"}))).into_response();
    let Some(pending) = lock(&shared.codes).remove(&form.code) else { return refused() };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, form.code_verifier.as_bytes());
    if form.grant_type != "authorization_code"
        || form.client_id != pending.client_id
        || form.redirect_uri != pending.redirect_uri
        || URL_SAFE_NO_PAD.encode(digest.as_ref()) != pending.challenge
    {
        return refused();
    }
    let now = jsonwebtoken::get_current_timestamp() as i64;
    let claims = json!({
        "iss": shared.issuer, "aud": TEST_AUDIENCE, "sub": pending.user, "groups": pending.groups,
        "iat": now, "exp": now + 300,
    });
    let keys = lock(&shared.keys);
    let index = key_index(&keys, &KeyChoice::Rsa);
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": keys[index].kid });
    let signing_input = signing_input(&header, &claims);
    let signature = sign_with_key(&keys[index].material, "RS256", signing_input.as_bytes());
    let access_token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
    (CORS, axum::Json(json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300}))).into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    shared.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let keys: Vec<Value> = lock(&shared.keys).iter().filter(|key| key.published).map(public_jwk).collect();
    axum::Json(json!({ "keys": keys }))
}
