//! The HTTP side of authentication: `Authorization: Bearer <credential>` → [`Caller`].
//!
//! A credential is an API key (`lore_…`), an embed token minted by this server for the chat
//! widget (a public key's visitor token is one too, good only while its key is), or an SSO
//! token from the company's identity provider. Verification and scopes live in
//! [`lore_core::auth`] and `lore-identity`; this module picks the verifier, audits failures,
//! and turns them into one generic 401 (the reason is in the audit log, not in the response).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use lore_core::audit::{Event, Outcome};
use lore_core::catalog::Catalog;
use lore_core::config::Config;
use lore_core::keys::KeyStore;
use lore_core::role::RoleMap;
use lore_identity::{EmbedSigner, IdentityError, OidcVerifier};

pub use lore_core::auth::{ApiKeys, Caller, KeyRejection, new_api_key};

use super::error::ApiError;
use crate::state::AppState;

pub struct Identity {
    pub keys: ApiKeys,
    pub sso: Option<(OidcVerifier, RoleMap)>,
    pub embed: EmbedSigner,
}

/// The catalog key of the embed secret that processes sharing a database agree on.
pub const EMBED_SECRET_KEY: &str = "embed_secret";

/// Why the server cannot verify credentials: a mistake in the configuration or the embed
/// secret, found at startup.
#[derive(Debug, thiserror::Error)]
pub enum IdentitySetupError {
    #[error(transparent)]
    Keys(#[from] lore_core::Error),
    #[error("auth.oidc: {0}")]
    Oidc(IdentityError),
    #[error(transparent)]
    Embed(IdentityError),
    #[error("LORE_EMBED_SECRET must be hex: {0}")]
    SecretEnvNotHex(hex::FromHexError),
    #[error("the database's embed secret (catalog meta `embed_secret`) is not hex: {0}")]
    SecretStoredNotHex(hex::FromHexError),
    #[error("{}: not hex: {source}", path.display())]
    SecretFileNotHex { path: PathBuf, source: hex::FromHexError },
    #[error("{}: {source}", path.display())]
    SecretFile { path: PathBuf, source: std::io::Error },
}

/// Why a credential was refused: `Denied` is the client's problem (401, audited); an
/// unreachable identity provider is ours (503).
pub enum Refusal {
    Denied(String),
    Unavailable(String),
}

impl Identity {
    /// `catalog` holds the embed secret of processes sharing a database (see [`embed_secret`]).
    pub fn new(config: &Config, store: Arc<KeyStore>, catalog: &Catalog) -> Result<Self, IdentitySetupError> {
        let secret = embed_secret(config, catalog)?;
        let keys = ApiKeys::new(&config.server.api_keys, Some(store))?;
        let sso = match &config.auth.oidc {
            Some(oidc) => {
                Some((OidcVerifier::new(oidc.clone()).map_err(IdentitySetupError::Oidc)?, config.auth.roles.clone()))
            }
            None => None,
        };
        let embed = EmbedSigner::new(&secret, config.auth.embed_issuer.clone()).map_err(IdentitySetupError::Embed)?;
        Ok(Identity { keys, sso, embed })
    }

    /// Verifies a bearer credential: an API key, one of our embed tokens, or an SSO token.
    pub async fn authenticate(
        &self,
        credential: &str,
        origin: Option<&str>,
    ) -> Result<Result<Caller, Refusal>, ApiError> {
        if credential.starts_with("lore_") {
            return Ok(self.keys.verify(credential)?.map_err(|rejection| Refusal::Denied(key_refusal(&rejection))));
        }
        // The issuer only routes the token to its verifier; each verifier checks everything.
        if unverified_issuer(credential).as_deref() == Some(self.embed.issuer()) {
            let claims = match self.embed.verify(credential) {
                Ok(claims) => claims,
                Err(error) => return Ok(Err(Refusal::Denied(format!("embed token: {error}")))),
            };
            // A pinned token is for pages on that origin: a request without an Origin header
            // (not from a browser page, or a same-origin GET) cannot show where it comes from.
            match (&claims.origin, origin) {
                (Some(pinned), Some(origin)) if pinned != origin => {
                    return Ok(Err(Refusal::Denied(format!("embed token for {pinned} used from {origin}"))));
                }
                (Some(pinned), None) => {
                    return Ok(Err(Refusal::Denied(format!("embed token for {pinned} used without an Origin header"))));
                }
                _ => {}
            }
            // A visitor token lives as long as its public key: revoking the key ends them all.
            if let Some(key) = &claims.key {
                if let Err(rejection) = self.keys.public_key(key)? {
                    return Ok(Err(Refusal::Denied(format!("visitor token: {}", key_refusal(&rejection)))));
                }
                if claims.principals != ["everyone"] {
                    return Ok(Err(Refusal::Denied("visitor token with principals other than everyone".into())));
                }
            }
            return Ok(Caller::from_embed(&claims.sub, &claims.principals, &claims.jti, claims.key.as_deref())
                .map_err(|e| Refusal::Denied(format!("embed token: {e}"))));
        }
        let Some((verifier, roles)) = &self.sso else {
            return Ok(Err(Refusal::Denied("not an api key, and SSO is not configured".into())));
        };
        Ok(match verifier.verify(credential).await {
            Ok(identity) => Caller::from_sso(&identity, roles).map_err(|e| Refusal::Denied(format!("sso token: {e}"))),
            Err(error) if error.is_client_error() => Err(Refusal::Denied(format!("sso token: {error}"))),
            Err(error) => Err(Refusal::Unavailable(error.to_string())),
        })
    }
}

/// Why a key was refused, for the audit log.
fn key_refusal(rejection: &KeyRejection) -> String {
    match rejection {
        KeyRejection::Unknown => "unknown api key".into(),
        KeyRejection::Expired { name } => format!("expired api key {name:?}"),
        KeyRejection::Revoked { name } => format!("revoked api key {name:?}"),
        KeyRejection::NotPublic { name } => format!("api key {name:?} is not public"),
    }
}

/// The `iss` claim of a JWT, read without verification (to pick the verifier).
fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_owned)
}

/// `$LORE_EMBED_SECRET` (hex); else, on a shared database (replicas behind a load balancer,
/// where a token minted by one must verify on another), the database's, generated by the
/// first replica (the catalog's `embed_secret`); else `<data>/embed-secret`, generated on first
/// use (mode 0600).
fn embed_secret(config: &Config, catalog: &Catalog) -> Result<Vec<u8>, IdentitySetupError> {
    if let Some(hex_secret) = lore_core::env::var(lore_core::env::LORE_EMBED_SECRET) {
        return hex::decode(hex_secret.trim()).map_err(IdentitySetupError::SecretEnvNotHex);
    }
    if config.database.url.is_some() {
        let proposed = hex::encode(lore_identity::generate_secret());
        let stored = catalog.init_meta(EMBED_SECRET_KEY, &proposed)?;
        return hex::decode(stored.trim()).map_err(IdentitySetupError::SecretStoredNotHex);
    }
    let path = config.data_dir.join("embed-secret");
    match std::fs::read_to_string(&path) {
        Ok(text) => hex::decode(text.trim()).map_err(|source| IdentitySetupError::SecretFileNotHex { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = lore_identity::generate_secret();
            write_new_secret(&path, &secret).map_err(|source| IdentitySetupError::SecretFile { path, source })?;
            Ok(secret.to_vec())
        }
        Err(source) => Err(IdentitySetupError::SecretFile { path, source }),
    }
}

/// Writes a secret only its owner can read; fails rather than replace a file that appeared meanwhile.
fn write_new_secret(path: &Path, secret: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, hex::encode(secret).as_bytes())
}

/// Extractor of the verified [`Caller`] of a request (401 when there is none).
pub struct Authenticated(pub Caller);

pub fn remote_addr(parts: &Parts) -> Option<String> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string())
}

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or(ApiError::MissingCredentials)?;
        let value = header.to_str().map_err(|_| ApiError::MissingCredentials)?;
        let credential = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::MissingCredentials)?;
        let origin = parts.headers.get(axum::http::header::ORIGIN).and_then(|o| o.to_str().ok());
        let verified = state.identity.authenticate(credential, origin);
        match tracing::Instrument::instrument(verified, tracing::info_span!("auth")).await? {
            Ok(caller) => {
                if let Err(limited) = state.usage.check_rate(&caller, origin) {
                    if let Some(endpoint) = metered_endpoint(parts) {
                        state.meter(lore_usage::UsageEvent {
                            status: limited.status().as_u16(),
                            ..state.usage.event(&caller, endpoint, "rate_limited")
                        });
                    }
                    return Err(limited);
                }
                Ok(Authenticated(caller))
            }
            Err(Refusal::Unavailable(detail)) => Err(ApiError::IdentityProviderUnavailable(detail)),
            Err(Refusal::Denied(reason)) => {
                state.audit(Event {
                    actor: "anonymous".into(),
                    role: None,
                    auth: "none".into(),
                    action: "auth.failed".into(),
                    target: Some(parts.uri.path().to_owned()),
                    outcome: Outcome::Denied,
                    detail: serde_json::json!({ "reason": reason }),
                    remote: remote_addr(parts),
                });
                Err(ApiError::InvalidCredentials)
            }
        }
    }
}

/// The metered endpoint a request is for, by its method and route (rate-limited requests are
/// metered before their handler runs; a chat's `stream` flag is in the body, unread here).
fn metered_endpoint(parts: &Parts) -> Option<lore_usage::Endpoint> {
    use axum::http::Method;
    use lore_usage::Endpoint;
    let route = parts.extensions.get::<axum::extract::MatchedPath>()?.as_str();
    match (&parts.method, route) {
        (&Method::POST, "/v1/search") => Some(Endpoint::Search),
        (&Method::POST, "/v1/chat") => Some(Endpoint::Chat),
        (&Method::POST, "/v1/feedback") => Some(Endpoint::Feedback),
        (&Method::POST, "/v1/collections/{id}/documents") | (&Method::PUT, "/v1/documents/{id}") => {
            Some(Endpoint::Upload)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas on one database sign embed tokens with one secret, made by whichever starts
    /// first; another database gets its own. (Skipped with a message without PostgreSQL.)
    #[test]
    fn replicas_sharing_a_database_share_the_embed_secret() {
        if lore_core::env::var(lore_core::env::LORE_EMBED_SECRET).is_some() {
            eprintln!("skipped: LORE_EMBED_SECRET is set, which every process would use");
            return;
        }
        let test = "replicas_sharing_a_database_share_the_embed_secret";
        let (Some(shared), Some(other)) = (lore_db::testing::database(test), lore_db::testing::database(test)) else {
            return;
        };
        let secret = |location: &lore_db::Location| {
            let lore_db::Location::Postgres(url) = location else { unreachable!("the test databases are PostgreSQL") };
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config { data_dir: dir.path().to_owned(), ..Config::default() };
            config.database.url = Some(url.clone());
            let catalog = Catalog::open_in(&lore_db::Database::open(location).unwrap()).unwrap();
            let secret = embed_secret(&config, &catalog).unwrap();
            assert!(!dir.path().join("embed-secret").exists(), "no file beside a shared database");
            secret
        };
        let first = secret(&shared);
        assert_eq!(first.len(), 32);
        assert_eq!(secret(&shared), first, "a second replica reads the first one's secret");
        assert_ne!(secret(&other), first);
    }
}
