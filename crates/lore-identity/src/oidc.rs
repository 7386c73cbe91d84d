//! Bearer JWTs from an OpenID Connect identity provider (Entra ID, Keycloak, Okta, Auth0, Google …), checked
//! against the provider's published key set (JWKS).
//!
//! Only asymmetric algorithms are accepted. The key set is public, so a verifier that accepted HS256 could be
//! fooled by a token "signed" with a public key used as the HMAC secret; `none` and HS* are refused in the
//! configuration and again in every token header, before any key is looked up.
//!
//! The key set is fetched lazily and kept in memory. It is fetched again when it is older than
//! `jwks_max_age_secs`, and when a token names a key id it does not contain (the provider rotated its keys),
//! but such forced refreshes happen at most once per `jwks_min_refresh_secs`, so a client sending tokens with
//! random key ids cannot make Lore hammer the provider. Fetches are single-flight.

use std::net::IpAddr;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::embed::EMBED_AUDIENCE;
use crate::jwt::{self, printable};
use crate::{IdentityError, JwksError, TokenError};

/// Discovery documents and key sets are small; anything larger is refused unread.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// After a failed fetch, callers get the same error for this long instead of each waiting on a fresh request.
const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(5);
const MAX_LEEWAY_SECS: u64 = 300;
const MAX_REDIRECTS: usize = 3;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Compared exactly with the token's `iss`, and with the discovery document's `issuer`.
    pub issuer: String,
    /// The token's `aud` (a string or an array) must contain at least one of these.
    pub audience: Vec<String>,
    /// Defaults to `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery_url: Option<String>,
    /// Skips discovery when set.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub claims: ClaimsMap,
    #[serde(default = "default_jwks_min_refresh_secs")]
    pub jwks_min_refresh_secs: u64,
    #[serde(default = "default_jwks_max_age_secs")]
    pub jwks_max_age_secs: u64,
    #[serde(default = "default_http_timeout_secs")]
    pub http_timeout_secs: u64,
    /// Plain http is always allowed for 127.0.0.1, `localhost` and `[::1]`.
    #[serde(default = "default_true")]
    pub require_https: bool,
}

/// Which token claims give the identity's fields. A name is looked up as a top-level claim first (Auth0's
/// namespaced claims contain dots), then as a dotted path into nested objects (Keycloak's `realm_access.roles`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimsMap {
    /// `sub` by default; Entra ID deployments usually want `oid`, some want `email`.
    pub user_id: String,
    pub email: String,
    /// A JSON array of strings or a single string.
    pub groups: String,
    /// A string or an array of strings; optional in tokens.
    pub department: String,
    pub name: String,
    /// Removed from the start of each group, e.g. `/` for Keycloak's full-path groups (`/hr` → `hr`).
    pub group_prefix_strip: Option<String>,
}

impl Default for ClaimsMap {
    fn default() -> Self {
        ClaimsMap {
            user_id: "sub".into(),
            email: "email".into(),
            groups: "groups".into(),
            department: "department".into(),
            name: "name".into(),
            group_prefix_strip: None,
        }
    }
}

fn default_leeway_secs() -> u64 {
    60
}
fn default_algorithms() -> Vec<String> {
    ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"].map(String::from).to_vec()
}
fn default_jwks_min_refresh_secs() -> u64 {
    60
}
fn default_jwks_max_age_secs() -> u64 {
    3600
}
fn default_http_timeout_secs() -> u64 {
    10
}
fn default_true() -> bool {
    true
}

impl OidcConfig {
    /// A configuration with every default, for code and tests that do not read it from a file.
    pub fn new(issuer: impl Into<String>, audience: Vec<String>) -> Self {
        OidcConfig {
            issuer: issuer.into(),
            audience,
            discovery_url: None,
            jwks_uri: None,
            leeway_secs: default_leeway_secs(),
            algorithms: default_algorithms(),
            claims: ClaimsMap::default(),
            jwks_min_refresh_secs: default_jwks_min_refresh_secs(),
            jwks_max_age_secs: default_jwks_max_age_secs(),
            http_timeout_secs: default_http_timeout_secs(),
            require_https: true,
        }
    }
}

/// Who the token says the caller is, after every check passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifiedIdentity {
    pub user_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub departments: Vec<String>,
    /// Unix seconds.
    pub expires_at: u64,
    pub issuer: String,
}

/// Verifies bearer JWTs from one identity provider. Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier").field("issuer", &self.inner.config.issuer).finish_non_exhaustive()
    }
}

struct Inner {
    config: OidcConfig,
    algorithms: Vec<Algorithm>,
    discovery_url: String,
    validation: Validation,
    min_refresh: Duration,
    max_age: Duration,
    http: reqwest::Client,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held for the whole fetch, so concurrent callers wait for one request instead of sending their own.
    refresh: tokio::sync::Mutex<RefreshState>,
    overage_warned: AtomicBool,
}

#[derive(Default)]
struct RefreshState {
    jwks_uri: Option<String>,
    last_forced_refresh: Option<Instant>,
    last_failure: Option<(Instant, JwksError)>,
}

struct KeySet {
    keys: Vec<CachedKey>,
    fetched_at: Instant,
}

struct CachedKey {
    kid: Option<String>,
    kind: KeyKind,
    /// The JWK's own `alg`, when it names one; the token must then use exactly that algorithm.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl CachedKey {
    fn fits(&self, alg: Algorithm) -> bool {
        let kind_fits = match self.kind {
            KeyKind::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyKind::EcP256 => alg == Algorithm::ES256,
            KeyKind::EcP384 => alg == Algorithm::ES384,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        };
        kind_fits && self.alg.is_none_or(|own| own == alg)
    }
}

impl KeySet {
    fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|key| key.kid.as_deref() == Some(kid))
    }

    fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&CachedKey, TokenError> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|key| key.kid.as_deref() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Err(TokenError::UnknownKey(printable(kid)));
                }
                named
                    .find(|key| key.fits(alg))
                    .ok_or_else(|| TokenError::KeyMismatch { alg: format!("{alg:?}"), kid: printable(kid) })
            }
            None => {
                let mut fitting = self.keys.iter().filter(|key| key.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => Ok(only),
                    _ => Err(TokenError::AmbiguousKey(format!("{alg:?}"))),
                }
            }
        }
    }
}

impl OidcVerifier {
    /// Checks the configuration; nothing is fetched until the first token arrives.
    pub fn new(config: OidcConfig) -> Result<Self, IdentityError> {
        if config.issuer.trim().is_empty() {
            return Err(IdentityError::EmptyIssuer);
        }
        if config.audience.iter().all(|aud| aud.trim().is_empty()) {
            return Err(IdentityError::EmptyAudience);
        }
        if let Some(reserved) = config.audience.iter().find(|aud| *aud == EMBED_AUDIENCE) {
            return Err(IdentityError::ReservedAudience(reserved.clone()));
        }
        let algorithms = config.algorithms.iter().map(|name| parse_algorithm(name)).collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(IdentityError::EmptyAlgorithms);
        }
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(IdentityError::OutOfRange {
                field: "leeway_secs",
                value: config.leeway_secs,
                max: MAX_LEEWAY_SECS,
            });
        }
        if config.http_timeout_secs == 0 {
            return Err(IdentityError::Zero("http_timeout_secs"));
        }
        let claims = &config.claims;
        for (field, path) in [
            ("claims.user_id", &claims.user_id),
            ("claims.email", &claims.email),
            ("claims.groups", &claims.groups),
            ("claims.department", &claims.department),
            ("claims.name", &claims.name),
        ] {
            if path.trim().is_empty() {
                return Err(IdentityError::EmptyClaimPath(field));
            }
        }
        let discovery_url = config
            .discovery_url
            .clone()
            .unwrap_or_else(|| format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/')));
        check_url(&discovery_url, config.require_https)?;
        if let Some(jwks_uri) = &config.jwks_uri {
            check_url(jwks_uri, config.require_https)?;
        }

        let mut validation = Validation::new(algorithms[0]);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&config.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);

        let require_https = config.require_https;
        // A redirect must not take the fetch from https to plain http on another host.
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if check_url(attempt.url().as_str(), require_https).is_err() {
                attempt.error("redirect to an insecure url")
            } else {
                attempt.follow()
            }
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.http_timeout_secs))
            .redirect(redirects)
            .build()
            .map_err(|error| IdentityError::HttpClient(error.to_string()))?;
        let refresh = RefreshState { jwks_uri: config.jwks_uri.clone(), ..RefreshState::default() };
        Ok(OidcVerifier {
            inner: Arc::new(Inner {
                algorithms,
                discovery_url,
                validation,
                min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
                max_age: Duration::from_secs(config.jwks_max_age_secs),
                http,
                keys: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(refresh),
                overage_warned: AtomicBool::new(false),
                config,
            }),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.inner.config.issuer
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedIdentity, TokenError> {
        let inner = &self.inner;
        let header = jwt::parse_header(token)?;
        let alg = inner.accepted_algorithm(&header.alg)?;

        let mut keys = inner.current_keys().await?;
        if let Some(kid) = header.kid.as_deref()
            && !keys.has_kid(kid)
        {
            keys = inner.refresh_for_unknown_kid(kid).await?;
        }
        let key = keys.select(header.kid.as_deref(), alg)?;

        let mut validation = inner.validation.clone();
        validation.algorithms = vec![alg];
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|error| jwt::map_error(error, &header.alg))?;
        jwt::check_issued_at(&data.claims, inner.config.leeway_secs)?;
        inner.identity(&data.claims)
    }
}

impl Inner {
    fn accepted_algorithm(&self, name: &str) -> Result<Algorithm, TokenError> {
        Algorithm::from_str(name)
            .ok()
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or_else(|| TokenError::UnsupportedAlgorithm(printable(name)))
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn is_fresh(&self, keys: &KeySet) -> bool {
        keys.fetched_at.elapsed() < self.max_age
    }

    async fn current_keys(&self) -> Result<Arc<KeySet>, JwksError> {
        if let Some(keys) = self.snapshot()
            && self.is_fresh(&keys)
        {
            return Ok(keys);
        }
        let mut state = match (self.refresh.try_lock(), self.snapshot()) {
            (Ok(state), _) => state,
            // Another task is fetching; the previous key set serves meanwhile instead of everyone waiting.
            (Err(_), Some(stale)) => return Ok(stale),
            (Err(_), None) => self.refresh.lock().await,
        };
        if let Some(keys) = self.snapshot()
            && self.is_fresh(&keys)
        {
            return Ok(keys);
        }
        match self.refresh_locked(&mut state).await {
            Ok(keys) => Ok(keys),
            Err(error) => match self.snapshot() {
                Some(stale) => {
                    // Keys the provider published an hour ago are still better than refusing everyone while
                    // it is unreachable.
                    tracing::warn!(issuer = %self.config.issuer, %error, "jwks refresh failed; using the previous key set");
                    Ok(stale)
                }
                None => Err(error),
            },
        }
    }

    async fn refresh_for_unknown_kid(&self, kid: &str) -> Result<Arc<KeySet>, JwksError> {
        let mut state = self.refresh.lock().await;
        let current = self.snapshot();
        if let Some(keys) = &current
            && keys.has_kid(kid)
        {
            return Ok(keys.clone());
        }
        if let (Some(keys), Some(last)) = (&current, state.last_forced_refresh)
            && last.elapsed() < self.min_refresh
        {
            tracing::debug!(kid = %printable(kid), "unknown key id; jwks was refreshed recently, not fetching again");
            return Ok(keys.clone());
        }
        state.last_forced_refresh = Some(Instant::now());
        tracing::info!(issuer = %self.config.issuer, kid = %printable(kid), "unknown key id; refreshing jwks");
        self.refresh_locked(&mut state).await
    }

    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<Arc<KeySet>, JwksError> {
        if let Some((at, error)) = &state.last_failure
            && at.elapsed() < FAILED_FETCH_BACKOFF
        {
            return Err(error.clone());
        }
        match self.fetch_keys(state).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(keys.clone());
                state.last_failure = None;
                Ok(keys)
            }
            Err(error) => {
                tracing::warn!(issuer = %self.config.issuer, %error, "could not fetch the identity provider's keys");
                // Discover again next time: the provider may have moved its key set.
                if self.config.jwks_uri.is_none() {
                    state.jwks_uri = None;
                }
                state.last_failure = Some((Instant::now(), error.clone()));
                Err(error)
            }
        }
    }

    async fn fetch_keys(&self, state: &mut RefreshState) -> Result<KeySet, JwksError> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let document = self.get_json(&jwks_uri).await?;
        let Some(entries) = document.get("keys").and_then(Value::as_array) else {
            return Err(JwksError::InvalidDocument { url: jwks_uri, reason: "no keys array".into() });
        };
        let keys: Vec<CachedKey> = entries.iter().filter_map(usable_key).collect();
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys(jwks_uri));
        }
        tracing::debug!(%jwks_uri, keys = keys.len(), "fetched jwks");
        Ok(KeySet { keys, fetched_at: Instant::now() })
    }

    async fn discover(&self) -> Result<String, JwksError> {
        let url = &self.discovery_url;
        let document = self.get_json(url).await?;
        let found = document.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if found != self.config.issuer {
            return Err(JwksError::IssuerMismatch {
                url: url.clone(),
                expected: self.config.issuer.clone(),
                found: found.to_owned(),
            });
        }
        let Some(jwks_uri) = document.get("jwks_uri").and_then(Value::as_str) else {
            return Err(JwksError::InvalidDocument { url: url.clone(), reason: "no jwks_uri".into() });
        };
        check_url(jwks_uri, self.config.require_https).map_err(|_| JwksError::InsecureUrl(jwks_uri.to_owned()))?;
        Ok(jwks_uri.to_owned())
    }

    async fn get_json(&self, url: &str) -> Result<Value, JwksError> {
        let request_error =
            |error: reqwest::Error| JwksError::Request { url: url.to_owned(), reason: error.to_string() };
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_error)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status { url: url.to_owned(), status: status.as_u16() });
        }
        let too_large = || JwksError::InvalidDocument { url: url.to_owned(), reason: "document too large".into() };
        if response.content_length().is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64) {
            return Err(too_large());
        }
        let body = response.bytes().await.map_err(request_error)?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(too_large());
        }
        serde_json::from_slice(&body)
            .map_err(|error| JwksError::InvalidDocument { url: url.to_owned(), reason: error.to_string() })
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<VerifiedIdentity, TokenError> {
        let map = &self.config.claims;
        let user_id = match lookup(claims, &map.user_id) {
            None => return Err(TokenError::MissingClaim(map.user_id.clone())),
            Some(Value::String(id)) if !id.is_empty() && !id.chars().any(char::is_whitespace) => id.clone(),
            Some(_) => {
                return Err(TokenError::InvalidClaim {
                    claim: map.user_id.clone(),
                    reason: "user id must be a non-empty string without whitespace",
                });
            }
        };
        let issuer = match claims.get("iss") {
            Some(Value::String(iss)) => iss.clone(),
            _ => return Err(TokenError::InvalidClaim { claim: "iss".into(), reason: "not a string" }),
        };
        let expires_at = claims
            .get("exp")
            .and_then(jwt::numeric_date)
            .ok_or_else(|| TokenError::InvalidClaim { claim: "exp".into(), reason: "not a number" })?;

        let mut groups = string_list(claims, &map.groups)?;
        if groups.is_empty() && lookup(claims, &map.groups).is_none() && has_groups_overage(claims) {
            // Once per verifier at warn level: every token of such a user has the overage marker.
            if self.overage_warned.swap(true, Ordering::Relaxed) {
                tracing::debug!(user_id = %user_id, "groups overage; accepting the token without groups");
            } else {
                tracing::warn!(
                    user_id = %user_id,
                    "token has too many groups to list them (entra id groups overage); accepting it without \
                     groups. configure group filtering on the app registration (groups assigned to the \
                     application) so the groups claim is emitted"
                );
            }
        }
        if let Some(prefix) = map.group_prefix_strip.as_deref().filter(|prefix| !prefix.is_empty()) {
            for group in &mut groups {
                if let Some(stripped) = group.strip_prefix(prefix) {
                    *group = stripped.to_owned();
                }
            }
            groups.retain(|group| !group.is_empty());
            dedup(&mut groups);
        }

        Ok(VerifiedIdentity {
            user_id,
            email: optional_string(claims, &map.email)?,
            name: optional_string(claims, &map.name)?,
            groups,
            departments: string_list(claims, &map.department)?,
            expires_at,
            issuer,
        })
    }
}

fn parse_algorithm(name: &str) -> Result<Algorithm, IdentityError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(IdentityError::ForbiddenAlgorithm {
            alg: name.to_owned(),
            reason: "unsigned tokens would be accepted",
        });
    }
    if name.get(..2).is_some_and(|prefix| prefix.eq_ignore_ascii_case("HS")) {
        return Err(IdentityError::ForbiddenAlgorithm {
            alg: name.to_owned(),
            reason: "hmac needs a shared secret, and anyone can sign with the public key set",
        });
    }
    Algorithm::from_str(name).map_err(|_| IdentityError::UnknownAlgorithm(name.to_owned()))
}

fn check_url(url: &str, require_https: bool) -> Result<(), IdentityError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|error| IdentityError::InvalidUrl { url: url.to_owned(), reason: error.to_string() })?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback || !require_https => Ok(()),
        "http" => Err(IdentityError::InsecureUrl(url.to_owned())),
        other => Err(IdentityError::InvalidUrl { url: url.to_owned(), reason: format!("unsupported scheme {other}") }),
    }
}

/// A key from the provider's set that can verify signatures, or `None` (with a log line) for anything else:
/// encryption keys, symmetric keys (a JWKS never legitimately carries Lore's secrets), unsupported curves.
fn usable_key(entry: &Value) -> Option<CachedKey> {
    let kid = entry.get("kid").and_then(Value::as_str).map(str::to_owned);
    let skip = |reason: &str| {
        tracing::debug!(kid = kid.as_deref().unwrap_or(""), reason, "ignoring jwks entry");
    };
    let jwk: Jwk = match serde_json::from_value(entry.clone()) {
        Ok(jwk) => jwk,
        Err(_) => {
            skip("not a jwk this verifier understands");
            return None;
        }
    };
    if jwk.common.public_key_use.as_ref().is_some_and(|key_use| *key_use != PublicKeyUse::Signature) {
        skip("not a signing key");
        return None;
    }
    if jwk.common.key_operations.as_ref().is_some_and(|ops| !ops.contains(&KeyOperations::Verify)) {
        skip("key_ops does not include verify");
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => KeyKind::EcP256,
            EllipticCurve::P384 => KeyKind::EcP384,
            EllipticCurve::P521 | EllipticCurve::Ed25519 => {
                skip("unsupported curve");
                return None;
            }
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => KeyKind::Ed25519,
        AlgorithmParameters::OctetKeyPair(_) => {
            skip("unsupported curve");
            return None;
        }
        AlgorithmParameters::OctetKey(_) => {
            skip("symmetric key");
            return None;
        }
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(key_alg) => match Algorithm::from_str(&key_alg.to_string()) {
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
                skip("not a signature algorithm");
                return None;
            }
            Ok(alg) => Some(alg),
        },
    };
    match DecodingKey::from_jwk(&jwk) {
        Ok(key) => Some(CachedKey { kid, kind, alg, key }),
        Err(_) => {
            skip("invalid key material");
            None
        }
    }
}

/// A claim by its exact name, else by a dotted path through nested objects. `null` counts as absent.
fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let found = match claims.get(path) {
        Some(value) => Some(value),
        None if path.contains('.') => {
            let mut parts = path.split('.');
            let first = claims.get(parts.next()?)?;
            parts.try_fold(first, |value, part| value.as_object()?.get(part))
        }
        None => None,
    };
    found.filter(|value| !value.is_null())
}

fn optional_string(claims: &Map<String, Value>, path: &str) -> Result<Option<String>, TokenError> {
    match lookup(claims, path) {
        None => Ok(None),
        Some(Value::String(value)) if value.is_empty() => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(TokenError::InvalidClaim { claim: path.to_owned(), reason: "not a string" }),
    }
}

fn string_list(claims: &Map<String, Value>, path: &str) -> Result<Vec<String>, TokenError> {
    let invalid = || TokenError::InvalidClaim { claim: path.to_owned(), reason: "not a string or an array of strings" };
    let mut list = match lookup(claims, path) {
        None => Vec::new(),
        Some(Value::String(value)) => vec![value.clone()],
        Some(Value::Array(items)) => {
            items.iter().map(|item| item.as_str().map(str::to_owned).ok_or_else(invalid)).collect::<Result<_, _>>()?
        }
        Some(_) => return Err(invalid()),
    };
    list.retain(|item| !item.is_empty());
    dedup(&mut list);
    Ok(list)
}

fn dedup(list: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|item| seen.insert(item.clone()));
}

/// Entra ID leaves `groups` out when a user is in too many groups and points to Microsoft Graph instead
/// (`_claim_names.groups`, or `hasgroups: true` in implicit-flow tokens).
fn has_groups_overage(claims: &Map<String, Value>) -> bool {
    claims.get("_claim_names").and_then(|names| names.get("groups")).is_some()
        || claims.get("hasgroups").and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base_config() -> OidcConfig {
        OidcConfig::new("https://idp.example.com", vec!["lore".into()])
    }

    #[test]
    fn defaults_are_valid() {
        let verifier = OidcVerifier::new(base_config()).unwrap();
        assert_eq!(verifier.inner.discovery_url, "https://idp.example.com/.well-known/openid-configuration");
        assert_eq!(verifier.inner.algorithms.len(), 8);
    }

    #[test]
    fn config_deserializes_with_defaults_and_rejects_unknown_fields() {
        let config: OidcConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://idp.example.com/realms/acme",
            "audience": ["lore"],
            "claims": { "groups": "realm_access.roles", "group_prefix_strip": "/" }
        }))
        .unwrap();
        assert_eq!(config.leeway_secs, 60);
        assert_eq!(config.jwks_min_refresh_secs, 60);
        assert_eq!(config.claims.user_id, "sub");
        assert_eq!(config.claims.groups, "realm_access.roles");
        assert!(config.require_https);

        let unknown = serde_json::from_value::<OidcConfig>(serde_json::json!({
            "issuer": "https://idp.example.com", "audience": ["lore"], "audiences": ["typo"]
        }));
        assert!(unknown.is_err());
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused() {
        for alg in ["none", "None", "HS256", "HS384", "HS512", "hs256"] {
            let mut config = base_config();
            config.algorithms = vec!["RS256".into(), alg.into()];
            let error = OidcVerifier::new(config).unwrap_err();
            assert!(matches!(error, IdentityError::ForbiddenAlgorithm { .. }), "{alg}: {error}");
        }
        let mut config = base_config();
        config.algorithms = vec!["RS1024".into()];
        assert!(matches!(OidcVerifier::new(config), Err(IdentityError::UnknownAlgorithm(_))));
        let mut config = base_config();
        config.algorithms = vec![];
        assert!(matches!(OidcVerifier::new(config), Err(IdentityError::EmptyAlgorithms)));
    }

    #[test]
    fn empty_or_reserved_audience_is_refused() {
        let mut config = base_config();
        config.audience = vec![];
        assert!(matches!(OidcVerifier::new(config), Err(IdentityError::EmptyAudience)));
        let mut config = base_config();
        config.audience = vec![" ".into()];
        assert!(matches!(OidcVerifier::new(config), Err(IdentityError::EmptyAudience)));
        let mut config = base_config();
        config.audience = vec![EMBED_AUDIENCE.into()];
        assert!(matches!(OidcVerifier::new(config), Err(IdentityError::ReservedAudience(_))));
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for url in ["http://127.0.0.1:8080", "http://localhost:9000/realms/x", "http://[::1]:1"] {
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        assert!(matches!(check_url("http://idp.example.com", true), Err(IdentityError::InsecureUrl(_))));
        assert!(check_url("http://idp.internal", false).is_ok());
        assert!(matches!(check_url("ftp://idp.example.com", false), Err(IdentityError::InvalidUrl { .. })));

        let mut config = base_config();
        config.issuer = "http://idp.example.com".into();
        assert!(matches!(OidcVerifier::new(config), Err(IdentityError::InsecureUrl(_))));
    }

    #[test]
    fn claims_are_found_by_name_then_by_path() {
        let claims = serde_json::json!({
            "https://example.com/groups": ["a"],
            "realm_access": { "roles": ["admin", "user"] },
            "nothing": null,
        });
        let claims = claims.as_object().unwrap();
        assert_eq!(string_list(claims, "https://example.com/groups").unwrap(), ["a"]);
        assert_eq!(string_list(claims, "realm_access.roles").unwrap(), ["admin", "user"]);
        assert!(lookup(claims, "realm_access.missing").is_none());
        assert!(lookup(claims, "nothing").is_none());
    }
}
