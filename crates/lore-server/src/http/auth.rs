//! The HTTP side of authentication: `Authorization: Bearer <credential>` → [`Caller`].
//!
//! A credential is an API key (`lore_…`), an embed token minted by this server for the chat
//! widget, or an SSO token from the company's identity provider. Verification and scopes
//! live in [`lore_core::auth`] and `lore-identity`; this module picks the verifier, audits
//! failures, and turns them into one generic 401 (the reason is in the audit log, not in the
//! response).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use lore_core::audit::{Event, Outcome};
use lore_core::config::Config;
use lore_core::keys::KeyStore;

pub use lore_core::auth::{ApiKeys, Caller, KeyRejection, new_api_key};

use super::error::ApiError;
use crate::state::AppState;

pub struct Identity {
    pub keys: ApiKeys,
}

impl Identity {
    pub fn new(config: &Config, store: Arc<KeyStore>) -> lore_core::Result<Self> {
        Ok(Identity { keys: ApiKeys::new(&config.server.api_keys, Some(store))? })
    }

    /// Verifies a bearer credential. `Err` carries the reason for the audit log.
    pub async fn authenticate(&self, credential: &str) -> Result<Result<Caller, String>, ApiError> {
        if credential.starts_with("lore_") {
            return Ok(match self.keys.verify(credential)? {
                Ok(caller) => Ok(caller),
                Err(KeyRejection::Unknown) => Err("unknown api key".into()),
                Err(KeyRejection::Expired { name }) => Err(format!("expired api key {name:?}")),
                Err(KeyRejection::Revoked { name }) => Err(format!("revoked api key {name:?}")),
            });
        }
        Ok(Err("unrecognised credential".into()))
    }
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
        match state.identity.authenticate(credential).await? {
            Ok(caller) => Ok(Authenticated(caller)),
            Err(reason) => {
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
