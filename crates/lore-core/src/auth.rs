//! Authentication: the one place that turns a verified identity into a [`Caller`] with its
//! [`AccessScope`].
//!
//! Identities arrive as API keys (config file or the key store), SSO tokens verified by
//! `lore-identity` ([`Caller::from_sso`]) or Lore's own embed tokens ([`Caller::from_embed`]).
//! Outside this module a scope can only be made through explicitly named, logged constructors
//! ([`AccessScope::impersonate_for_operator`], [`AccessScope::unrestricted_for_admin_tooling`]).

use std::collections::HashMap;
use std::sync::Arc;

use lore_identity::VerifiedIdentity;
use serde::Serialize;

use crate::acl::{AccessScope, Principal, PrincipalSet};
use crate::config::ApiKeyConfig;
use crate::keys::{KeyInfo, KeyStore, Lookup};
use crate::role::{Role, RoleMap};
use crate::types::sha256_hex;

pub use crate::keys::new_api_key;

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey {
        id: String,
        name: String,
        public: bool,
    },
    Sso {
        issuer: String,
    },
    EmbedToken {
        id: String,
        /// The public key a visitor token was minted for (metering and rate limits).
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// An agent acting for an end customer (narrowed principals).
    OnBehalf {
        agent: String,
    },
}

impl AuthMethod {
    pub fn label(&self) -> &'static str {
        match self {
            AuthMethod::ApiKey { .. } => "api_key",
            AuthMethod::Sso { .. } => "sso",
            AuthMethod::EmbedToken { .. } => "embed_token",
            AuthMethod::OnBehalf { .. } => "on_behalf",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id: conversation owner and audit actor.
    pub user: String,
    pub role: Role,
    pub principals: PrincipalSet,
    /// Departments the caller belongs to; a knowledge manager manages their collections.
    pub departments: Vec<String>,
    pub method: AuthMethod,
    pub scope: AccessScope,
}

impl Caller {
    fn new(user: String, role: Role, principals: PrincipalSet, departments: Vec<String>, method: AuthMethod) -> Self {
        let scope = AccessScope::principals(principals.clone());
        Caller { user, role, principals, departments, method, scope }
    }

    /// The caller of a user signed in through the company's identity provider. The role
    /// comes from group membership as configured ([`RoleMap`]); everyone else is an employee.
    pub fn from_sso(identity: &VerifiedIdentity, roles: &RoleMap) -> crate::Result<Self> {
        let principals = PrincipalSet::for_user(&identity.user_id, &identity.groups, &identity.departments)?;
        let role = roles.role_for(&identity.groups);
        Ok(Caller::new(
            identity.user_id.clone(),
            role,
            principals,
            identity.departments.clone(),
            AuthMethod::Sso { issuer: identity.issuer.clone() },
        ))
    }

    /// The caller of a widget session: the principals Lore put in the embed token when it
    /// minted it for a verified user (or for an anonymous visitor of a public key). Widget
    /// sessions can only ask, whatever the user's role. The departments are the token's
    /// `dept:` principals (they decide who reviews the user's feedback, never what they manage).
    /// `key`: the public key of a visitor token.
    pub fn from_embed(user: &str, principals: &[String], token_id: &str, key: Option<&str>) -> crate::Result<Self> {
        let principals = principals.iter().map(|p| p.parse::<Principal>()).collect::<crate::Result<Vec<_>>>()?;
        let departments =
            principals.iter().filter_map(|p| p.as_str().strip_prefix("dept:")).map(str::to_owned).collect();
        Ok(Caller::new(
            user.to_owned(),
            Role::Employee,
            PrincipalSet::from_principals(principals),
            departments,
            AuthMethod::EmbedToken { id: token_id.to_owned(), key: key.map(str::to_owned) },
        ))
    }

    /// The API key behind the request: the key itself, or the public key of a visitor token.
    pub fn key_id(&self) -> Option<&str> {
        match &self.method {
            AuthMethod::ApiKey { id, .. } => Some(id),
            AuthMethod::EmbedToken { key, .. } => key.as_deref(),
            AuthMethod::Sso { .. } | AuthMethod::OnBehalf { .. } => None,
        }
    }

    /// A request through a public key: the key itself or one of its visitor tokens.
    pub fn is_public(&self) -> bool {
        matches!(&self.method, AuthMethod::ApiKey { public: true, .. } | AuthMethod::EmbedToken { key: Some(_), .. })
    }

    /// The audit actor: the user id, or `key:<name>` for keys acting as a service.
    pub fn actor(&self) -> String {
        match &self.method {
            AuthMethod::ApiKey { name, public: true, .. } => format!("key:{name}"),
            _ => self.user.clone(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may manage documents of a collection owned by `department`.
    /// Admins manage all; knowledge managers their departments' collections; a collection
    /// without a department is for admins only.
    pub fn manages(&self, department: Option<&str>) -> bool {
        match self.role {
            Role::Admin => true,
            Role::KnowledgeManager => department.is_some_and(|d| self.departments.iter().any(|mine| mine == d)),
            Role::Employee | Role::Agent => false,
        }
    }

    /// An agent (or admin) asking for an end customer: the customer's principals must be a
    /// subset of the caller's own, so a scope can be narrowed but never widened.
    pub fn on_behalf_of(&self, customer: &str, principals: &[String]) -> Result<Caller, OnBehalfError> {
        if !matches!(self.role, Role::Agent | Role::Admin) {
            return Err(OnBehalfError::NotAnAgent);
        }
        if customer.is_empty() || customer.chars().any(char::is_whitespace) || customer.len() > 200 {
            return Err(OnBehalfError::InvalidCustomer);
        }
        let parsed = principals
            .iter()
            .map(|p| p.parse::<Principal>().map_err(|_| OnBehalfError::InvalidPrincipal(p.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let narrowed = PrincipalSet::from_principals(parsed);
        let wider: Vec<String> =
            narrowed.iter().filter(|p| !self.principals.iter().any(|own| own == *p)).map(|p| p.to_string()).collect();
        if !wider.is_empty() {
            return Err(OnBehalfError::Widens(wider));
        }
        Ok(Caller::new(
            format!("{}/{}", self.user, customer),
            Role::Employee,
            narrowed,
            Vec::new(),
            AuthMethod::OnBehalf { agent: self.user.clone() },
        ))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OnBehalfError {
    #[error("only agent and admin callers may ask on behalf of someone")]
    NotAnAgent,
    #[error("on_behalf_of.user must be a non-empty id without whitespace")]
    InvalidCustomer,
    #[error("invalid principal {0:?} in on_behalf_of.principals")]
    InvalidPrincipal(String),
    #[error("on_behalf_of.principals may only narrow the caller's access; not held by the caller: {0:?}")]
    Widens(Vec<String>),
}

/// Why a presented key was refused (logged and audited; the client sees one generic 401).
/// `NotPublic`: a visitor token names a key that is not public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRejection {
    Unknown,
    Expired { name: String },
    Revoked { name: String },
    NotPublic { name: String },
}

/// The user id of one request made with a public key itself: random, so whatever the request
/// creates (a conversation) belongs to nobody who could present the key again.
pub fn anonymous_user() -> String {
    format!("anonymous:{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// API keys from the config file and from the key store.
pub struct ApiKeys {
    configured: HashMap<String, Caller>,
    store: Option<Arc<KeyStore>>,
}

impl ApiKeys {
    pub fn new(configured: &[ApiKeyConfig], store: Option<Arc<KeyStore>>) -> crate::Result<Self> {
        let mut by_hash = HashMap::new();
        for key in configured {
            let principals = PrincipalSet::for_user(&key.user, &key.groups, &key.departments)?;
            by_hash.insert(
                key.sha256.clone(),
                Caller::new(
                    key.user.clone(),
                    key.role,
                    principals,
                    key.departments.clone(),
                    AuthMethod::ApiKey { id: format!("config:{}", key.name), name: key.name.clone(), public: false },
                ),
            );
        }
        Ok(ApiKeys { configured: by_hash, store })
    }

    /// Keys from the config file only (tests, tools without a database).
    pub fn from_config(keys: &[ApiKeyConfig]) -> crate::Result<Self> {
        Self::new(keys, None)
    }

    pub fn store(&self) -> Option<&Arc<KeyStore>> {
        self.store.as_ref()
    }

    /// The caller a presented key belongs to. Keys are looked up by a hash of the secret, so
    /// secrets are never compared byte by byte against attacker-controlled input.
    pub fn verify(&self, presented: &str) -> crate::Result<Result<Caller, KeyRejection>> {
        if let Some(caller) = self.configured.get(&sha256_hex(presented.as_bytes())) {
            return Ok(Ok(caller.clone()));
        }
        let Some(store) = &self.store else { return Ok(Err(KeyRejection::Unknown)) };
        Ok(match store.verify(presented)? {
            Lookup::Valid(info) => {
                let principals = info.principal_set()?;
                // Defence in depth: a public key reads `everyone` documents only, whatever
                // the stored row says.
                let principals =
                    if info.public { PrincipalSet::from_principals([Principal::everyone()]) } else { principals };
                let role = if info.public { Role::Employee } else { info.role };
                // Everyone holding a public key shares it: no request made with it may own
                // anything another one can reach, whatever user the stored row names.
                let user = if info.public { anonymous_user() } else { info.user.clone() };
                Ok(Caller::new(
                    user,
                    role,
                    principals,
                    info.department.iter().cloned().collect(),
                    AuthMethod::ApiKey { id: info.id, name: info.name, public: info.public },
                ))
            }
            Lookup::Expired(info) => Err(KeyRejection::Expired { name: info.name }),
            Lookup::Revoked(info) => Err(KeyRejection::Revoked { name: info.name }),
            Lookup::Unknown => Err(KeyRejection::Unknown),
        })
    }

    /// The public key a visitor token was minted from (by id), if it is still valid and
    /// public: a visitor token is good only while its key is.
    pub fn public_key(&self, id: &str) -> crate::Result<Result<KeyInfo, KeyRejection>> {
        let Some(store) = &self.store else { return Ok(Err(KeyRejection::Unknown)) };
        Ok(match store.verify_id(id)? {
            Lookup::Valid(info) if info.public => Ok(info),
            Lookup::Valid(info) => Err(KeyRejection::NotPublic { name: info.name }),
            Lookup::Expired(info) => Err(KeyRejection::Expired { name: info.name }),
            Lookup::Revoked(info) => Err(KeyRejection::Revoked { name: info.name }),
            Lookup::Unknown => Err(KeyRejection::Unknown),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Caller {
        let principals = PrincipalSet::for_user("crm", &["support".into(), "customers".into()], &[]).unwrap();
        Caller::new("crm".into(), Role::Agent, principals, vec![], AuthMethod::Sso { issuer: "x".into() })
    }

    #[test]
    fn agents_narrow_but_never_widen() {
        let narrowed = agent().on_behalf_of("cust-42", &["everyone".into(), "group:customers".into()]).unwrap();
        assert_eq!(narrowed.principals.to_strings(), ["everyone", "group:customers"]);
        assert_eq!(narrowed.role, Role::Employee);
        assert_eq!(narrowed.user, "crm/cust-42");
        assert_eq!(
            agent().on_behalf_of("cust-42", &["group:hr".into(), "everyone".into()]).unwrap_err(),
            OnBehalfError::Widens(vec!["group:hr".into()])
        );
        let employee = Caller { role: Role::Employee, ..agent() };
        assert_eq!(employee.on_behalf_of("x", &["everyone".into()]).unwrap_err(), OnBehalfError::NotAnAgent);
        assert!(matches!(agent().on_behalf_of("x", &["root".into()]), Err(OnBehalfError::InvalidPrincipal(_))));
    }

    #[test]
    fn knowledge_managers_manage_their_departments_only() {
        let km = Caller { role: Role::KnowledgeManager, departments: vec!["hr".into()], ..agent() };
        assert!(km.manages(Some("hr")));
        assert!(!km.manages(Some("sales")));
        assert!(!km.manages(None));
        assert!(Caller { role: Role::Admin, ..agent() }.manages(None));
        assert!(!agent().manages(Some("hr")));
    }

    #[test]
    fn each_use_of_a_public_key_is_a_different_anonymous_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(KeyStore::open(&dir.path().join("db.sqlite")).unwrap());
        let (secret, info) = store.create(&crate::keys::NewKey::public("page", "admin")).unwrap();
        let keys = ApiKeys::new(&[], Some(store.clone())).unwrap();
        let first = keys.verify(&secret).unwrap().unwrap();
        let second = keys.verify(&secret).unwrap().unwrap();
        assert!(first.user.starts_with("anonymous:") && first.user.len() == "anonymous:".len() + 32, "{}", first.user);
        assert_ne!(first.user, second.user);
        assert_eq!(first.principals.to_strings(), ["everyone"]);
        assert_eq!(first.actor(), "key:page");
        // Visitor tokens of the key are good while it is public and valid.
        assert_eq!(keys.public_key(&info.id).unwrap().map(|k| k.id), Ok(info.id.clone()));
        let (_, private) = store.create(&crate::keys::NewKey::new("crm", Role::Agent, "crm", "admin")).unwrap();
        assert_eq!(
            keys.public_key(&private.id).unwrap().map(|k| k.id),
            Err(KeyRejection::NotPublic { name: "crm".into() })
        );
        store.revoke(&info.id).unwrap();
        assert_eq!(
            keys.public_key(&info.id).unwrap().map(|k| k.id),
            Err(KeyRejection::Revoked { name: "page".into() })
        );
        assert_eq!(keys.public_key("key_nope").unwrap().map(|k| k.id), Err(KeyRejection::Unknown));
    }

    #[test]
    fn embed_callers_belong_to_their_tokens_departments() {
        let caller =
            Caller::from_embed("alice", &["everyone".into(), "dept:hr".into(), "group:hr".into()], "t", None).unwrap();
        assert_eq!(caller.departments, ["hr"]);
        assert_eq!(caller.role, Role::Employee);
        assert!(!caller.manages(Some("hr")));
    }
}
