//! Admin endpoints: API keys and the audit log; and `/v1/me`, the caller's own identity.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use lore_core::audit::{Outcome, Query as AuditQuery, Record};
use lore_core::keys::{KeyInfo, NewKey};
use lore_core::role::Role;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::AdminsOnly;
use super::{ApiJson, Authenticated};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(embed_token))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(audit))
        .routes(routes!(audit_export))
        .routes(routes!(audit_verify))
        .routes(routes!(settings))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub name: String,
    pub role: Role,
    /// The user id the key acts as; required, except for a public key, which acts for anonymous
    /// visitors and cannot name a user (leave it out).
    pub user: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub department: Option<String>,
    /// A key for a public page: reads `everyone` documents only.
    #[serde(default)]
    pub public: bool,
    /// Days until the key expires (none: never).
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    /// The secret, shown this once; only its hash is stored.
    pub key: String,
    pub info: KeyInfo,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
}

fn key_store(state: &AppState) -> Result<&lore_core::keys::KeyStore, ApiError> {
    state.identity.keys.store().map(|s| s.as_ref()).ok_or_else(|| ApiError::Internal("no key store".into()))
}

#[utoipa::path(
    post, path = "/v1/keys", tag = "admin", request_body = KeyRequest,
    responses(
        (status = 201, description = "The key (shown once) and its record", body = CreatedKey),
        (status = 400, description = "Invalid key request", body = ErrorBody),
        AdminsOnly,
    ),
)]
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<KeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    access::require_admin(&state, &caller, "key.create", Some(&request.name))?;
    let expires_at = request.expires_in_days.map(|days| lore_core::db::now() + i64::from(days) * 86_400);
    let user = match request.user {
        Some(user) => user,
        None if request.public => lore_core::keys::PUBLIC_USER.to_owned(),
        None => return Err(ApiError::InvalidRequest("`user` is required (except for public keys)".into())),
    };
    let (key, info) = key_store(&state)?.create(&NewKey {
        name: request.name,
        role: request.role,
        user,
        groups: request.groups,
        department: request.department,
        public: request.public,
        expires_at,
        created_by: caller.actor(),
    })?;
    state.audit_caller(&caller, "key.create", Some(&info.id), Outcome::Ok, serde_json::json!({
        "name": info.name, "role": info.role, "principals": info.principals, "public": info.public, "expires_at": info.expires_at
    }));
    Ok((StatusCode::CREATED, Json(CreatedKey { key, info })))
}

#[utoipa::path(
    get, path = "/v1/keys", tag = "admin",
    responses((status = 200, description = "Every key (without secrets)", body = KeyList), AdminsOnly),
)]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<KeyList>, ApiError> {
    access::require_admin(&state, &caller, "key.list", None)?;
    Ok(Json(KeyList { keys: key_store(&state)?.list()? }))
}

#[utoipa::path(
    delete, path = "/v1/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 200, description = "Revoked (revoking again keeps the first time)", body = KeyInfo),
        AdminsOnly,
        (status = 404, description = "No such key", body = ErrorBody),
    ),
)]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<KeyInfo>, ApiError> {
    access::require_admin(&state, &caller, "key.revoke", Some(&id))?;
    let info = key_store(&state)?.revoke(&id)?.ok_or(ApiError::KeyNotFound)?;
    state.audit_caller(&caller, "key.revoke", Some(&id), Outcome::Ok, serde_json::json!({ "name": info.name }));
    Ok(Json(info))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<Record>,
}

#[utoipa::path(
    get, path = "/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, description = "Audit events in order", body = AuditPage), AdminsOnly),
)]
pub async fn audit(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    access::require_admin(&state, &caller, "audit.read", None)?;
    Ok(Json(AuditPage { events: state.audit.query(&query)? }))
}

#[utoipa::path(
    get, path = "/v1/audit/export", tag = "admin", params(AuditQuery),
    responses((status = 200, description = "Audit events as JSON lines (application/x-ndjson), all pages", content_type = "application/x-ndjson"), AdminsOnly),
)]
pub async fn audit_export(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(mut query): Query<AuditQuery>,
) -> Result<impl IntoResponse, ApiError> {
    access::require_admin(&state, &caller, "audit.export", None)?;
    state.audit_caller(&caller, "audit.export", None, Outcome::Ok, serde_json::json!({}));
    let mut body = String::new();
    query.limit = Some(1000);
    loop {
        let page = state.audit.query(&query)?;
        for record in &page {
            body.push_str(&serde_json::to_string(record).expect("record serializes"));
            body.push('\n');
        }
        match page.last() {
            Some(last) if page.len() == 1000 => query.after = Some(last.seq),
            _ => break,
        }
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChainStatus {
    /// Every event's hash chains to the one before.
    pub ok: bool,
    /// The sequence number of the first event whose hash disagrees.
    pub first_mismatch: Option<i64>,
    pub events: u64,
}

#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "admin",
    responses((status = 200, description = "Whether the audit log's hash chain is intact", body = ChainStatus), AdminsOnly),
)]
pub async fn audit_verify(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<ChainStatus>, ApiError> {
    access::require_admin(&state, &caller, "audit.verify", None)?;
    let shared = state.clone();
    let (first_mismatch, events) = tokio::task::spawn_blocking(move || -> lore_core::Result<_> {
        Ok((shared.audit.verify_chain()?, shared.audit.count()?))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("audit verification task: {e}")))??;
    Ok(Json(ChainStatus { ok: first_mismatch.is_none(), first_mismatch, events }))
}

/// The settings an admin reads in the console; they are changed in `lore.toml`. No secret is
/// in them (provider keys are named by environment variable only).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Settings {
    #[schema(value_type = Option<Object>)]
    pub sso: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub rate_limits: lore_usage::RateLimitConfig,
    #[schema(value_type = Object)]
    pub policy: lore_policy::config::PolicyConfig,
    #[schema(value_type = Vec<Object>)]
    pub providers: Vec<serde_json::Value>,
    pub currency: String,
    pub max_file_bytes: u64,
}

#[utoipa::path(
    get, path = "/v1/admin/settings", tag = "admin",
    responses((status = 200, description = "Single sign-on, rate limits, use policies and model providers as configured (read-only)", body = Settings), AdminsOnly),
)]
pub async fn settings(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Settings>, ApiError> {
    access::require_admin(&state, &caller, "settings.read", None)?;
    let config = &state.config;
    let sso = config.auth.oidc.as_ref().map(|oidc| {
        serde_json::json!({
            "issuer": oidc.issuer,
            "audience": oidc.audience,
            "algorithms": oidc.algorithms,
            "claims": oidc.claims,
            "web_client_id": config.server.web_client_id,
            "web_scopes": config.server.web_scopes,
            "roles": config.auth.roles,
        })
    });
    let providers = config
        .chat
        .providers
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name, "base_url": p.base_url, "model": p.model, "dlp": p.dlp,
                "api_key_env": p.api_key_env, "timeout_secs": p.timeout_secs,
            })
        })
        .collect();
    Ok(Json(Settings {
        sso,
        rate_limits: config.rate_limits.clone(),
        policy: config.policy.clone(),
        providers,
        currency: config.usage.currency.clone(),
        max_file_bytes: config.ingest.max_file_bytes,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user: String,
    pub role: Role,
    pub principals: Vec<String>,
    pub departments: Vec<String>,
    /// `api_key`, `sso`, `embed_token` or `on_behalf`.
    pub auth: String,
}

#[utoipa::path(
    get, path = "/v1/me", tag = "identity",
    responses((status = 200, description = "Who the credentials identify", body = Me), (status = 401, description = "Missing or invalid credentials", body = ErrorBody)),
)]
pub async fn me(Authenticated(caller): Authenticated) -> Json<Me> {
    Json(Me {
        user: caller.user.clone(),
        role: caller.role,
        principals: caller.principals.to_strings(),
        departments: caller.departments.clone(),
        auth: caller.method.label().to_owned(),
    })
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedTokenRequest {
    /// Admin keys only: the user the token is for (a signed-in user always gets their own).
    pub user: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub departments: Vec<String>,
    /// Lifetime in seconds (default `auth.embed_token_ttl_secs`, at most 3600).
    pub ttl_secs: Option<u64>,
    /// Pin the token to the page origin the widget runs on, e.g. `https://intranet.example.com`.
    /// A pinned token is accepted only from requests that carry that `Origin` header.
    pub origin: Option<String>,
    /// Public keys only: renew this still-valid visitor token of the same key (same visitor).
    pub visitor_token: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EmbedToken {
    pub token: String,
    pub user: String,
    pub principals: Vec<String>,
    /// Unix seconds.
    pub expires_at: u64,
}

#[utoipa::path(
    post, path = "/v1/embed/token", tag = "identity", request_body = EmbedTokenRequest,
    responses(
        (status = 200, description = "A short-lived token for the chat widget", body = EmbedToken),
        (status = 400, description = "Invalid request (for a public key: anything but `{}` or a valid `visitor_token`)", body = ErrorBody),
        (status = 403, description = "Only signed-in users (for themselves), admin keys and public keys (for visitors) may mint; a public key renews only its own visitors", body = ErrorBody),
    ),
)]
/// A short-lived token for the chat widget. Signed-in users get one for themselves, admin keys
/// for the user they name. A public key gets a visitor token: `{}` starts a new anonymous
/// visitor (`visitor:<random>`, principals `["everyone"]`); `{"visitor_token": …}` renews one
/// of the key's own visitors before the token expires. A visitor token is good only while its
/// key is valid and public.
pub async fn embed_token(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<EmbedTokenRequest>,
) -> Result<Json<EmbedToken>, ApiError> {
    use lore_core::auth::AuthMethod;
    if let AuthMethod::ApiKey { id, public: true, .. } = &caller.method {
        return visitor_token(&state, &caller, id, request);
    }
    if request.visitor_token.is_some() {
        return Err(ApiError::InvalidRequest(
            "`visitor_token` is renewed with the public key it was minted for".into(),
        ));
    }
    let (user, principals) = match (&caller.method, caller.role) {
        // A signed-in user exchanges their own identity: the token can only narrow it.
        (AuthMethod::Sso { .. }, _) => {
            if request.user.is_some() || !request.groups.is_empty() || !request.departments.is_empty() {
                return Err(ApiError::InvalidRequest(
                    "a signed-in user gets a token for themselves; omit user, groups and departments".into(),
                ));
            }
            (caller.user.clone(), caller.principals.to_strings())
        }
        // The host page's backend, holding an admin key, vouches for the user it signed in.
        (AuthMethod::ApiKey { public: false, .. }, Role::Admin) => {
            let user = request.user.clone().ok_or_else(|| ApiError::InvalidRequest("`user` is required".into()))?;
            let principals = lore_core::acl::PrincipalSet::for_user(&user, &request.groups, &request.departments)
                .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
            (user, principals.to_strings())
        }
        _ => {
            return Err(access::deny(
                &state,
                &caller,
                "embed_token.mint",
                request.user.as_deref(),
                "only signed-in users (for themselves) and admin keys may mint embed tokens",
            ));
        }
    };
    let ttl_secs = request.ttl_secs.unwrap_or(state.config.auth.embed_token_ttl_secs);
    let (token, claims) = state
        .identity
        .embed
        .mint(lore_identity::EmbedClaimsInput {
            user_id: user.clone(),
            principals: principals.clone(),
            role: Role::Employee.as_str().to_owned(),
            origin: request.origin.clone(),
            ttl_secs,
        })
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    state.audit_caller(
        &caller,
        "embed_token.mint",
        Some(&user),
        Outcome::Ok,
        serde_json::json!({
            "principals": principals, "ttl_secs": ttl_secs, "origin": request.origin, "token_id": claims.jti
        }),
    );
    Ok(Json(EmbedToken { token, user, principals, expires_at: claims.exp }))
}

/// A public key's visitor token: a new anonymous visitor for `{}`, the same visitor for a
/// renewal. The token carries `everyone` only and names the key, so it dies with the key.
/// Not audited one by one (a public page mints one per visitor and renewal, and the token
/// carries nothing the key does not); refusals are.
fn visitor_token(
    state: &AppState,
    caller: &lore_core::auth::Caller,
    key_id: &str,
    request: EmbedTokenRequest,
) -> Result<Json<EmbedToken>, ApiError> {
    if request.user.is_some()
        || !request.groups.is_empty()
        || !request.departments.is_empty()
        || request.ttl_secs.is_some()
        || request.origin.is_some()
    {
        return Err(ApiError::InvalidRequest(
            "a public key gets visitor tokens only: send {} for a new visitor, or {\"visitor_token\": …} to renew one"
                .into(),
        ));
    }
    let user = match &request.visitor_token {
        None => lore_identity::embed::new_visitor_id(),
        Some(previous) => {
            let claims = state.identity.embed.verify(previous).map_err(|e| {
                ApiError::InvalidRequest(format!(
                    "`visitor_token` cannot be renewed ({e}); send {{}} for a new visitor"
                ))
            })?;
            if claims.key.as_deref() != Some(key_id) || !claims.sub.starts_with(lore_identity::embed::VISITOR_PREFIX) {
                return Err(access::deny(
                    state,
                    caller,
                    "embed_token.renew",
                    Some(&claims.sub),
                    "`visitor_token` is not a visitor token of this key",
                ));
            }
            claims.sub
        }
    };
    let principals = vec![lore_core::acl::Principal::everyone().as_str().to_owned()];
    let (token, claims) = state
        .identity
        .embed
        .mint_for_key(
            lore_identity::EmbedClaimsInput {
                user_id: user.clone(),
                principals: principals.clone(),
                role: Role::Employee.as_str().to_owned(),
                origin: None,
                ttl_secs: state.config.auth.embed_token_ttl_secs,
            },
            key_id,
        )
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(EmbedToken { token, user, principals, expires_at: claims.exp }))
}
