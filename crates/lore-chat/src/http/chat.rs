//! `POST /v1/chat`, `GET /v1/conversations`, `GET /v1/conversations/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{ApiJson, AppState, Caller};
use crate::chat::{ChatAnswer, ChatError};
use crate::conversations::{ConversationSummary, Message};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The question; or give `messages` instead.
    pub question: Option<String>,
    /// OpenAI-style history; the last message must be the user's question.
    pub messages: Option<Vec<ChatMessage>>,
    /// Continue one of the caller's conversations.
    pub conversation_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

pub const MAX_QUESTION_CHARS: usize = 4000;

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        match error {
            ChatError::ConversationNotFound => ApiError::ConversationNotFound,
            ChatError::Core(e) => ApiError::Internal(e.to_string()),
            ChatError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

pub async fn chat(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Json<ChatAnswer>, ApiError> {
    let (question, earlier) = match (request.question, request.messages) {
        (Some(question), None) => (question, None),
        (None, Some(messages)) => {
            let Some(last) = messages.last().filter(|m| m.role == "user") else {
                return Err(ApiError::InvalidRequest("the last of `messages` must have role `user`".into()));
            };
            if let Some(bad) = messages.iter().find(|m| !matches!(m.role.as_str(), "user" | "assistant" | "system")) {
                return Err(ApiError::InvalidRequest(format!("unknown message role {:?}", bad.role)));
            }
            let earlier = messages.iter().rev().skip(1).find(|m| m.role == "user").map(|m| m.content.clone());
            (last.content.clone(), earlier)
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest("give either `question` or `messages`, not both".into()));
        }
        (None, None) => return Err(ApiError::InvalidRequest("`question` (or `messages`) is required".into())),
    };
    let question = question.trim();
    if question.is_empty() {
        return Err(ApiError::InvalidRequest("the question must not be empty".into()));
    }
    if question.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::InvalidRequest(format!("the question is longer than {MAX_QUESTION_CHARS} characters")));
    }
    let answer = state
        .chat
        .ask(&caller.user, &caller.scope, question, request.conversation_id.as_deref(), earlier.as_deref())
        .await?;
    let r = &answer.timings.retrieval;
    for (stage, ms) in [("embed", r.embed_ms), ("bm25", r.bm25_ms), ("dense", r.dense_ms), ("fusion", r.fusion_ms)] {
        state.metrics.observe_stage(stage, ms / 1e3);
    }
    Ok(Json(answer))
}

#[derive(Serialize)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
}

pub async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Result<Json<ConversationList>, ApiError> {
    let conversations = state.chat.conversations().list(&caller.user).map_err(ChatError::from)?;
    Ok(Json(ConversationList { conversations }))
}

#[derive(Serialize)]
pub struct ConversationDetail {
    pub id: String,
    pub messages: Vec<Message>,
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConversationDetail>, ApiError> {
    let messages = state
        .chat
        .conversations()
        .messages(&id, &caller.user)
        .map_err(ChatError::from)?
        .ok_or(ApiError::ConversationNotFound)?;
    Ok(Json(ConversationDetail { id, messages }))
}
