//! The webhooks' configuration and delivery log for admins: `GET /v1/webhooks`,
//! `GET /v1/webhooks/deliveries`, `POST /v1/webhooks/deliveries/{id}/retry`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use lore_core::audit::Outcome;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Authenticated;
use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::AdminsOnly;
use crate::state::AppState;
use crate::webhooks::Delivery;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(deliveries)).routes(routes!(retry))
}

#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, description = "The configured webhooks (never their secrets)", body = Object), AdminsOnly),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    access::require_admin(&state, &caller, "webhook.list", None)?;
    let webhooks: Vec<serde_json::Value> = state
        .webhooks
        .configured()
        .iter()
        .map(|w| serde_json::json!({ "id": w.id, "url": w.url, "events": w.events, "max_attempts": w.max_attempts }))
        .collect();
    Ok(Json(serde_json::json!({ "webhooks": webhooks })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub webhook: Option<String>,
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// At most this many, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}

#[utoipa::path(
    get, path = "/v1/webhooks/deliveries", tag = "webhooks", params(DeliveryQuery),
    responses((status = 200, description = "Deliveries, newest first, with their attempts and last error", body = DeliveryList), AdminsOnly),
)]
pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    access::require_admin(&state, &caller, "webhook.deliveries", None)?;
    if let Some(status) = query.status.as_deref().filter(|s| !matches!(*s, "pending" | "delivered" | "failed")) {
        return Err(ApiError::InvalidRequest(format!("`status` must be pending, delivered or failed, not {status:?}")));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let deliveries = state
        .webhooks
        .deliveries(query.webhook.as_deref(), query.status.as_deref(), limit)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(DeliveryList { deliveries }))
}

#[utoipa::path(
    post, path = "/v1/webhooks/deliveries/{id}/retry", tag = "webhooks",
    params(("id" = String, Path, description = "Delivery id")),
    responses((status = 202, description = "Queued again"), (status = 404, description = "No such undelivered delivery", body = ErrorBody), AdminsOnly),
)]
pub async fn retry(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    access::require_admin(&state, &caller, "webhook.retry", Some(&id))?;
    if !state.webhooks.retry(&id).map_err(|e| ApiError::Internal(e.to_string()))? {
        return Err(ApiError::InvalidRequest(format!("no undelivered delivery {id:?}")));
    }
    state.audit_caller(&caller, "webhook.retry", Some(&id), Outcome::Ok, serde_json::json!({}));
    Ok(StatusCode::ACCEPTED)
}
