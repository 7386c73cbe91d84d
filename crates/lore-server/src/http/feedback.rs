//! `POST /v1/feedback` (anyone, on their own answers) and `GET /v1/feedback` (review).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use lore_chat::feedback::{Feedback, Rating};
use lore_core::config::Role;
use serde::{Deserialize, Serialize};

use super::access;
use super::error::{ApiError, ErrorBody};
use super::{ApiJson, Authenticated};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// `message_id` of an answer (from the chat response or the conversation).
    pub message_id: i64,
    pub rating: Rating,
    pub comment: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/feedback", tag = "chat", request_body = FeedbackRequest,
    responses(
        (status = 201, description = "Stored (voting again replaces the vote)", body = Feedback),
        (status = 400, description = "Invalid request", body = ErrorBody),
        (status = 404, description = "No such answer among the caller's conversations", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<FeedbackRequest>,
) -> Result<(StatusCode, Json<Feedback>), ApiError> {
    let comment = request.comment.as_deref().map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > 2000) {
        return Err(ApiError::InvalidRequest("`comment` is longer than 2000 characters".into()));
    }
    let exchange = state
        .chat
        .conversations()
        .exchange(request.message_id, &caller.user)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or(ApiError::MessageNotFound)?;
    let feedback = state.feedback.record(&caller.user, &exchange, request.rating, comment)?;
    Ok((StatusCode::CREATED, Json(feedback)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FeedbackQuery {
    pub rating: Option<Rating>,
    /// Entries older than this id (paging).
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedbackList {
    pub feedback: Vec<Feedback>,
}

#[utoipa::path(
    get, path = "/v1/feedback", tag = "chat", params(FeedbackQuery),
    responses(
        (status = 200, description = "Feedback, newest first: all for admins; for knowledge managers, entries whose every cited document they may read or manage", body = FeedbackList),
        (status = 403, description = "Knowledge managers and admins only", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<FeedbackQuery>,
) -> Result<Json<FeedbackList>, ApiError> {
    if !matches!(caller.role, Role::Admin | Role::KnowledgeManager) {
        return Err(access::deny(&state, &caller, "feedback.list", None, "knowledge managers and admins only"));
    }
    let mut entries = state.feedback.list(query.rating, query.before, query.limit.unwrap_or(100))?;
    if !caller.is_admin() {
        // An answer repeats its cited documents: show it only to whoever may see all of them.
        entries.retain(|entry| {
            entry.citations.as_array().into_iter().flatten().all(|c| {
                let id = c["document_id"].as_str().unwrap_or_default();
                access::readable_document(&state, &caller, id).is_ok()
            })
        });
    }
    Ok(Json(FeedbackList { feedback: entries }))
}
