//! The HTTP side of authentication: the `Authorization: Bearer <key>` extractor. Verification
//! and scopes live in [`lore_core::auth`].

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
pub use lore_core::auth::{ApiKeys, Caller, new_api_key};

use super::AppState;
use super::error::ApiError;

/// Extractor of the verified [`Caller`] of a request (401 when there is none).
pub struct Authenticated(pub Caller);

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or(ApiError::MissingCredentials)?;
        let value = header.to_str().map_err(|_| ApiError::MissingCredentials)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::MissingCredentials)?;
        state.keys.verify(token).cloned().map(Authenticated).ok_or(ApiError::InvalidCredentials)
    }
}
