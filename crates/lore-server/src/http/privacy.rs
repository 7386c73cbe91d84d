//! A person's data (issue 16): `GET /v1/me/export`, `DELETE /v1/me/data`, and for admins
//! `DELETE /v1/users/{id}/data`. Every request is audited; see [`crate::privacy`] for what an
//! erasure removes and what it pseudonymises.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use lore_core::audit::Outcome;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Authenticated;
use super::access;
use super::error::ApiError;
use super::responses::AdminsOnly;
use crate::privacy::{self, Erasure};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(export)).routes(routes!(erase_mine)).routes(routes!(erase_user))
}

#[utoipa::path(
    get, path = "/v1/me/export", tag = "privacy",
    responses((status = 200, description = "The caller's conversations, feedback, usage events and the audit entries where they are the actor, as JSON", body = Object)),
)]
pub async fn export(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (user, actor) = (caller.user.clone(), caller.actor());
    state.audit_caller(&caller, "privacy.export", None, Outcome::Ok, serde_json::json!({}));
    let exported = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || privacy::export(&state, &user, &actor))
            .await
            .map_err(|e| ApiError::Internal(format!("export task: {e}")))??
    };
    Ok(Json(exported))
}

#[utoipa::path(
    delete, path = "/v1/me/data", tag = "privacy",
    responses((status = 200, description = "What was erased and the pseudonyms left in its place", body = Erasure)),
)]
pub async fn erase_mine(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<Erasure>, ApiError> {
    // Recorded before the erasure, so this entry too ends under the pseudonym.
    state.audit_caller(&caller, "privacy.erase", None, Outcome::Ok, serde_json::json!({ "by": "self" }));
    let (user, actor) = (caller.user.clone(), caller.actor());
    let erasure = run_erasure(&state, user, actor).await?;
    Ok(Json(erasure))
}

#[utoipa::path(
    delete, path = "/v1/users/{id}/data", tag = "privacy",
    params(("id" = String, Path, description = "The user id (as their SSO identity or API keys name them)")),
    responses(
        (status = 200, description = "What was erased and the pseudonyms left in its place", body = Erasure),
        AdminsOnly,
    ),
)]
pub async fn erase_user(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Erasure>, ApiError> {
    access::require_admin(&state, &caller, "privacy.erase", None)?;
    if id.trim().is_empty() {
        return Err(ApiError::InvalidRequest("the user id must not be empty".into()));
    }
    let erasure = run_erasure(&state, id.clone(), id).await?;
    // The entry names the person by the audit pseudonym they had, never by name.
    let target = erasure.audit_pseudonym.clone().or_else(|| erasure.usage_pseudonym.clone());
    state.audit_caller(
        &caller,
        "privacy.erase",
        target.as_deref(),
        Outcome::Ok,
        serde_json::json!({ "by": "admin", "conversations": erasure.conversations, "feedback": erasure.feedback,
                            "usage_events": erasure.usage_events }),
    );
    Ok(Json(erasure))
}

async fn run_erasure(state: &Arc<AppState>, user: String, actor: String) -> Result<Erasure, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || privacy::erase(&state, &user, &actor))
        .await
        .map_err(|e| ApiError::Internal(format!("erasure task: {e}")))?
}
