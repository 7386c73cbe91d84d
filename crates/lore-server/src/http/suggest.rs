//! `POST /v1/suggest` (issue 19): the service-desk flow. A ticket (subject, body, requester,
//! tags) becomes a suggested reply with citations and an answerability score, in the ticket's
//! language, for the agent to check and send. It is a chat underneath — the same handler, so
//! permissions (with `on_behalf_of`, the customer's entitlements), policies, budgets, DLP and
//! metering apply — asked with the subject and body as the question.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lore_chat::answer::Citation;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::chat::{ChatRequest, MAX_QUESTION_CHARS};
use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Authenticated, OnBehalfOf};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(suggest))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub subject: String,
    #[serde(default)]
    pub body: String,
    /// Who asked, as the help desk records it: accepted, not used (the answer depends on the
    /// caller's and `on_behalf_of`'s permissions only, never on a name in the ticket).
    #[serde(rename = "requester")]
    #[schema(value_type = Option<Object>)]
    pub _requester: Option<serde_json::Value>,
    /// The help desk's tags: accepted, not used.
    #[serde(default, rename = "tags")]
    pub _tags: Vec<String>,
    /// Answer with the customer's entitlements (agents and admins).
    pub on_behalf_of: Option<OnBehalfOf>,
    /// Only from these collections.
    pub collections: Option<Vec<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Suggestion {
    /// The suggested reply, in the ticket's language.
    pub reply: String,
    pub citations: Vec<Citation>,
    /// `generated`, `extracted`, `no_answer`, `refused`, `verified`.
    pub kind: String,
    /// How likely the knowledge base answers the ticket (0–1); absent for a refused or verified
    /// reply, which was not looked for.
    pub answerability: Option<f64>,
    pub lang: String,
    /// The conversation the suggestion is stored in (the agent's).
    pub conversation_id: String,
    pub message_id: i64,
    /// Set when a knowledge manager must check the reply first.
    #[schema(value_type = Option<Object>)]
    pub review: Option<serde_json::Value>,
}

#[utoipa::path(
    post, path = "/v1/suggest", tag = "chat", request_body = Ticket,
    responses(
        (status = 200, description = "A suggested reply with citations and an answerability score", body = Suggestion),
        (status = 202, description = "The reply is held for review (`review.id` to poll)", body = Object),
        (status = 400, description = "Invalid ticket (named in the message)", body = ErrorBody),
    ),
)]
pub async fn suggest(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(ticket): ApiJson<Ticket>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let subject = ticket.subject.trim();
    if subject.is_empty() {
        return Err(ApiError::InvalidRequest("`subject` must not be empty".into()));
    }
    // The subject first: it is the question more often than the body's first line.
    let mut question = format!("{subject}\n\n{}", ticket.body.trim());
    if question.chars().count() > MAX_QUESTION_CHARS {
        question = question.chars().take(MAX_QUESTION_CHARS).collect();
    }
    let request = ChatRequest {
        question: Some(question.trim().to_owned()),
        messages: None,
        conversation_id: None,
        stream: false,
        on_behalf_of: ticket.on_behalf_of,
        collections: ticket.collections,
    };
    let response = super::chat::chat(State(state), Authenticated(caller), ApiJson(request)).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the answer: {e}")))?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
    if status == StatusCode::ACCEPTED {
        return Ok((status, Json(answer)));
    }
    let suggestion = Suggestion {
        reply: answer["answer"].as_str().unwrap_or_default().to_owned(),
        citations: serde_json::from_value(answer["citations"].clone()).unwrap_or_default(),
        kind: answer["kind"].as_str().unwrap_or_default().to_owned(),
        answerability: answer["answerability"].as_f64(),
        lang: answer["lang"].as_str().unwrap_or("en").to_owned(),
        conversation_id: answer["conversation_id"].as_str().unwrap_or_default().to_owned(),
        message_id: answer["message_id"].as_i64().unwrap_or_default(),
        review: answer.get("review").cloned(),
    };
    Ok((StatusCode::OK, Json(serde_json::to_value(suggestion).map_err(|e| ApiError::Internal(e.to_string()))?)))
}
