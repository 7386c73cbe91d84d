//! `POST /v1/chat`, `GET /v1/conversations`, `GET /v1/conversations/{id}`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::{ApiJson, AppState, Authenticated, Caller};
use lore_chat::chat::{ChatError, ChatEvent, Question};
use lore_chat::conversations::{ConversationSummary, Message};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(chat)).routes(routes!(list)).routes(routes!(get))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The question; or give `messages` instead.
    pub question: Option<String>,
    /// OpenAI-style history; the last message must be the user's question.
    pub messages: Option<Vec<ChatMessage>>,
    /// Continue one of the caller's conversations.
    pub conversation_id: Option<String>,
    /// Answer as Server-Sent Events: `metadata`, then `delta`s, then `final` (or `error`).
    #[serde(default)]
    pub stream: bool,
    /// Agents: ask as an end customer with a narrower principal set.
    pub on_behalf_of: Option<super::OnBehalfOf>,
    /// Only answer from the documents of these collections.
    pub collections: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

pub const MAX_QUESTION_CHARS: usize = 4000;

/// A question (or search query) without the space around it: not empty, and at most
/// [`MAX_QUESTION_CHARS`] long. `what` names it in the error.
pub(super) fn question_text<'a>(text: &'a str, what: &str) -> Result<&'a str, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::InvalidRequest(format!("{what} must not be empty")));
    }
    if text.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::InvalidRequest(format!("{what} is longer than {MAX_QUESTION_CHARS} characters")));
    }
    Ok(text)
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        match error {
            ChatError::ConversationNotFound => ApiError::ConversationNotFound,
            ChatError::Core(e) => ApiError::Internal(e.to_string()),
            ChatError::Store(e) => ApiError::Internal(e.to_string()),
        }
    }
}

#[utoipa::path(
    post, path = "/v1/chat", tag = "chat",
    request_body = ChatRequest,
    responses(
        (status = 200, description = "The answer (JSON), or with `stream: true` Server-Sent Events: `metadata` (StreamMetadata), `delta` ({text}), `final` (ChatAnswer), `error`", body = lore_chat::chat::ChatAnswer),
        (status = 400, description = "Invalid request", body = super::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = super::error::ErrorBody),
        (status = 404, description = "Conversation not found (or not the caller's)", body = super::error::ErrorBody),
    ),
)]
pub async fn chat(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let caller = super::narrow(&state, caller, request.on_behalf_of.as_ref())?;
    let caller = super::within_collections(&state, caller, request.collections.as_ref())?;
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
    let question = question_text(&question, "the question")?.to_owned();
    if request.stream {
        return stream_answer(state, caller, question, request.conversation_id, earlier).await;
    }
    let answer = state
        .chat
        .ask(Question {
            conversation_id: request.conversation_id.as_deref(),
            earlier_question: earlier.as_deref(),
            ..Question::new(&caller.user, &caller.scope, &question)
        })
        .await
        .map_err(|e| match (e, &request.conversation_id) {
            (ChatError::ConversationNotFound, Some(id)) => conversation_not_found(&state, &caller, id),
            (e, _) => e.into(),
        })?;
    state.metrics.observe_retrieval(&answer.timings.retrieval);
    if answer.model.is_some() {
        state.metrics.observe_stage("generation", answer.timings.generation_ms / 1e3);
    }
    if let (Some(model), Some(usage)) = (&answer.model, &answer.usage) {
        state.metrics.add_tokens(model, usage.prompt_tokens.into(), usage.completion_tokens.into());
    }
    Ok(Json(answer).into_response())
}

async fn stream_answer(
    state: Arc<AppState>,
    caller: Caller,
    question: String,
    conversation_id: Option<String>,
    earlier: Option<String>,
) -> Result<Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    // Checked before the stream starts, so a foreign conversation is a plain 404.
    if let Some(id) = &conversation_id {
        let owned = state.chat.conversations().owned_by(id, &caller.user)?;
        if !owned {
            return Err(conversation_not_found(&state, &caller, id));
        }
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<ChatEvent>(32);
    let engine = state.chat.clone();
    tokio::spawn(async move {
        let result = engine
            .ask_streaming(
                Question {
                    conversation_id: conversation_id.as_deref(),
                    earlier_question: earlier.as_deref(),
                    ..Question::new(&caller.user, &caller.scope, &question)
                },
                sender.clone(),
            )
            .await;
        if let Err(error) = result {
            tracing::error!(%error, "streamed answer failed");
            let _ = sender.send(ChatEvent::Failed("the answer could not be completed".into())).await;
        }
    });
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    })
    .map(|event| {
        let sse = match event {
            ChatEvent::Metadata(metadata) => Event::default().event("metadata").json_data(metadata),
            ChatEvent::Delta(text) => Event::default().event("delta").json_data(serde_json::json!({ "text": text })),
            ChatEvent::Final(answer) => Event::default().event("final").json_data(answer),
            ChatEvent::Failed(message) => {
                Event::default().event("error").json_data(serde_json::json!({ "code": "internal", "message": message }))
            }
        };
        Ok::<_, std::convert::Infallible>(sse.unwrap_or_else(|_| Event::default().event("error")))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// "Not found" for a conversation the caller does not own; audited when it exists (someone
/// else's), so a refused read is on record without telling the caller it exists.
fn conversation_not_found(state: &AppState, caller: &Caller, id: &str) -> ApiError {
    if state.chat.conversations().exists(id).unwrap_or(false) {
        super::access::hidden(state, caller, "conversation.read", id, ApiError::ConversationNotFound)
    } else {
        ApiError::ConversationNotFound
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationSummary>,
}

#[utoipa::path(
    get, path = "/v1/conversations", tag = "chat",
    responses((status = 200, description = "The caller's conversations, most recent first", body = ConversationList)),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<ConversationList>, ApiError> {
    let conversations = state.chat.conversations().list(&caller.user)?;
    Ok(Json(ConversationList { conversations }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversationDetail {
    pub id: String,
    pub messages: Vec<Message>,
}

#[utoipa::path(
    get, path = "/v1/conversations/{id}", tag = "chat",
    params(("id" = String, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "The conversation's messages", body = ConversationDetail),
        (status = 404, description = "Conversation not found (or not the caller's)", body = super::error::ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ConversationDetail>, ApiError> {
    let messages = state.chat.conversations().messages(&id, &caller.user)?;
    let messages = messages.ok_or_else(|| conversation_not_found(&state, &caller, &id))?;
    Ok(Json(ConversationDetail { id, messages }))
}
