//! `POST /v1/feedback` (anyone, on their own answers) and `GET /v1/feedback` (review).
//!
//! Feedback repeats a question, an answer and often a comment, so it is as confidential as
//! what it is about: each entry is reviewed by the knowledge managers of the departments
//! responsible for it (decided when the vote is recorded: the departments owning the cited
//! documents' collections, else the asker's own), and only if they may read every cited
//! document. An entry without a department is for admins only.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use lore_chat::feedback::{Feedback, Rating};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::ManagersOnly;
use super::{ApiJson, Authenticated};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(submit, list))
}

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
)]
pub async fn submit(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<FeedbackRequest>,
) -> Result<(StatusCode, Json<Feedback>), ApiError> {
    let started = std::time::Instant::now();
    let result = vote(&state, &caller, request, started);
    if let Err(error) = &result {
        state.meter(lore_usage::UsageEvent {
            status: error.status().as_u16(),
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            ..state.usage.event(&caller, lore_usage::Endpoint::Feedback, "error")
        });
    }
    result
}

fn vote(
    state: &Arc<AppState>,
    caller: &lore_core::auth::Caller,
    request: FeedbackRequest,
    started: std::time::Instant,
) -> Result<(StatusCode, Json<Feedback>), ApiError> {
    let comment = request.comment.as_deref().map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > 2000) {
        return Err(ApiError::InvalidRequest("`comment` is longer than 2000 characters".into()));
    }
    let exchange = state.chat.conversations().exchange(request.message_id, &caller.user)?;
    let Some(exchange) = exchange else {
        // Someone else's answer looks like none at all: not found (audited when it exists).
        let exists = state.chat.conversations().message_exists(request.message_id).unwrap_or(false);
        if !exists {
            return Err(ApiError::MessageNotFound);
        }
        let target = request.message_id.to_string();
        return Err(access::hidden(state, caller, "feedback.submit", &target, ApiError::MessageNotFound));
    };
    let departments = responsible_departments(state, caller, &exchange.answer.citations)?;
    let previous = state.feedback.rating_of(exchange.answer.id, &caller.user)?;
    let feedback = state.feedback.record(&caller.user, &exchange, request.rating, comment, &departments)?;
    if request.rating == Rating::Down && previous != Some(Rating::Down) {
        state.webhooks.emit(
            "feedback.negative",
            serde_json::json!({
                "feedback_id": feedback.id, "message_id": feedback.message_id,
                "departments": feedback.departments, "comment": feedback.comment,
            }),
        );
    }
    meter_vote(state, caller, &exchange, request.rating, previous, started);
    Ok((StatusCode::CREATED, Json(feedback)))
}

/// Meters a vote with the category and collections of the answer it rates (read from that
/// answer's usage event once it is written, off the request path), and sends a down-voted
/// question to the gap report. Voting again on the same answer is a `revote`: thumbs and gaps
/// count a person's first vote per answer (and a change to thumbs-down once).
fn meter_vote(
    state: &Arc<AppState>,
    caller: &lore_core::auth::Caller,
    exchange: &lore_chat::conversations::Exchange,
    rating: Rating,
    previous: Option<Rating>,
    started: std::time::Instant,
) {
    let kind = match (previous, rating) {
        (Some(_), _) => "revote",
        (None, Rating::Up) => "up",
        (None, Rating::Down) => "down",
    };
    let mut event = state.usage.event(caller, lore_usage::Endpoint::Feedback, kind);
    event.status = StatusCode::CREATED.as_u16();
    event.conversation_id = Some(exchange.conversation_id.clone());
    event.message_id = Some(exchange.answer.id);
    event.latency_ms = started.elapsed().as_secs_f64() * 1e3;
    if rating == Rating::Down && previous != Some(Rating::Down) {
        state.usage.gap(crate::usage::GapWork {
            question: exchange.question.clone(),
            vector: None,
            departments: caller.departments.clone(),
            reason: lore_usage::gaps::GapReason::ThumbsDown,
            event_id: Some(event.id.clone()),
        });
    }
    let (state, message_id, span) = (state.clone(), exchange.answer.id, tracing::Span::current());
    tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        // A streamed answer's event is written just after its last event reached the client:
        // a quick vote may come first, so it waits a little for it.
        let mut answered = Ok(None);
        for _ in 0..10 {
            state.usage.recorder.flush();
            answered = state.usage.store.chat_event_of_message(message_id);
            if !matches!(answered, Ok(None)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        match answered {
            Ok(Some(answered)) => {
                event.category = answered.category;
                event.collections = answered.collections;
                event.lang = answered.lang;
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "usage: cannot read the rated answer's event"),
        }
        state.meter(event);
    });
}

/// The departments whose knowledge managers review feedback on an answer: those owning the
/// collections of its cited documents (documents since deleted, and collections without a
/// department, add none), or, for an answer without citations, the asker's own.
fn responsible_departments(
    state: &AppState,
    caller: &lore_core::auth::Caller,
    citations: &serde_json::Value,
) -> Result<Vec<String>, ApiError> {
    let cited: Vec<&str> =
        citations.as_array().into_iter().flatten().filter_map(|c| c["document_id"].as_str()).collect();
    if cited.is_empty() {
        return Ok(caller.departments.clone());
    }
    let catalog = state.catalog();
    let mut departments = Vec::new();
    for id in cited {
        let Some(document) = catalog.document(id)? else { continue };
        if let Some(department) = catalog.collection(&document.source)?.and_then(|c| c.department)
            && !departments.contains(&department)
        {
            departments.push(department);
        }
    }
    Ok(departments)
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
        (status = 200, description = "Feedback, newest first: all for admins; for knowledge managers, entries recorded for one of their departments whose every cited document they may read or manage", body = FeedbackList),
        ManagersOnly,
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<FeedbackQuery>,
) -> Result<Json<FeedbackList>, ApiError> {
    access::require_manager_role(&state, &caller, "feedback.list")?;
    let limit = query.limit.unwrap_or(100);
    let mut entries = if caller.is_admin() {
        state.feedback.list(query.rating, query.before, limit)?
    } else {
        // The entries of the manager's departments only (none without a department).
        state.feedback.list_scoped(query.rating, query.before, limit, Some(&caller.departments))?
    };
    if !caller.is_admin() {
        // An answer repeats its cited documents: show it only to whoever may see all of them.
        entries.retain(|entry| {
            entry.citations.as_array().into_iter().flatten().all(|c| {
                let id = c["document_id"].as_str().unwrap_or_default();
                access::may_read_document(&state, &caller, id)
            })
        });
    }
    Ok(Json(FeedbackList { feedback: entries }))
}
