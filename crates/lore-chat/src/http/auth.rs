//! Authentication: API keys (`Authorization: Bearer <key>`), stored as sha256 hashes, each
//! mapped to a role and a principal set. This is the layer that turns a verified identity
//! into an [`AccessScope`]; SSO slots in here as another way to produce a [`Caller`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lore_core::acl::{AccessScope, PrincipalSet};
use lore_core::config::{ApiKeyConfig, Role};
use lore_core::types::sha256_hex;

use super::AppState;
use super::error::ApiError;

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_name: String,
    pub user: String,
    pub role: Role,
    pub scope: AccessScope,
}

pub struct ApiKeys {
    by_hash: HashMap<String, Caller>,
}

impl ApiKeys {
    pub fn from_config(keys: &[ApiKeyConfig]) -> lore_core::Result<Self> {
        let mut by_hash = HashMap::new();
        for key in keys {
            let principals = PrincipalSet::for_user(&key.user, &key.groups, &key.departments)?;
            by_hash.insert(
                key.sha256.clone(),
                Caller {
                    key_name: key.name.clone(),
                    user: key.user.clone(),
                    role: key.role,
                    scope: AccessScope::principals(principals),
                },
            );
        }
        Ok(ApiKeys { by_hash })
    }

    fn verify(&self, presented: &str) -> Option<&Caller> {
        // The map is keyed by a hash of the secret, so lookups do not compare secrets
        // byte by byte against attacker-controlled input.
        self.by_hash.get(&sha256_hex(presented.as_bytes()))
    }
}

/// A new random API key (`lore_` + 43 URL-safe characters) and its sha256.
pub fn new_api_key() -> (String, String) {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let key: String = std::iter::once("lore_".to_owned())
        .chain(bytes.iter().map(|b| (ALPHABET[(*b & 63) as usize] as char).to_string()))
        .collect();
    let hash = sha256_hex(key.as_bytes());
    (key, hash)
}

impl FromRequestParts<Arc<AppState>> for Caller {
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
        state.keys.verify(token).cloned().ok_or(ApiError::InvalidCredentials)
    }
}
