//! Authentication: the one place that turns a verified identity into an [`AccessScope`].
//!
//! API keys (`Authorization: Bearer <key>`) are stored as sha256 hashes, each mapped to a role
//! and a principal set. SSO slots in here as another way to produce a [`Caller`]. Outside this
//! module a scope can only be made through explicitly named, logged constructors
//! ([`AccessScope::impersonate_for_operator`], [`AccessScope::unrestricted_for_admin_tooling`]).

use std::collections::HashMap;

use crate::acl::{AccessScope, PrincipalSet};
use crate::config::{ApiKeyConfig, Role};
use crate::types::sha256_hex;

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
    pub fn from_config(keys: &[ApiKeyConfig]) -> crate::Result<Self> {
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

    /// The caller a presented key belongs to. The map is keyed by a hash of the secret, so
    /// lookups never compare secrets byte by byte against attacker-controlled input.
    pub fn verify(&self, presented: &str) -> Option<&Caller> {
        self.by_hash.get(&sha256_hex(presented.as_bytes()))
    }
}

/// A new random API key (`lore_` + 32 URL-safe characters) and its sha256.
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
