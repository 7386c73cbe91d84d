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
use std::time::Instant;

use lore_chat::answer::AnswerKind;
use lore_chat::chat::{ChatAnswer, ChatError, ChatEvent, Question, Streamed};
use lore_chat::provider::DlpReport;
use lore_usage::budgets::{Amount, Decision, Reservation};
use lore_usage::gaps::GapReason;
use lore_usage::{Endpoint, UsageEvent};

use crate::usage::GapWork;
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
    let metered = Metered {
        endpoint: if request.stream { Endpoint::ChatStream } else { Endpoint::Chat },
        collections: request.collections.clone().unwrap_or_default(),
        started: Instant::now(),
        caller: caller.clone(),
    };
    // The answer runs to its end in a task of its own: a client that leaves does not stop
    // its metering or the settling of its budgets (streams are cancelled by the engine).
    let span = tracing::Span::current();
    let task = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let result = answer(&state, caller, request, &metered).await;
            if let Err(error) = &result {
                state.meter(metered.failed(&state, error));
            }
            result
        },
        span,
    ));
    task.await.map_err(|e| ApiError::Internal(format!("chat task: {e}")))?
}

async fn answer(
    state: &Arc<AppState>,
    caller: Caller,
    request: ChatRequest,
    metered: &Metered,
) -> Result<Response, ApiError> {
    let caller = super::narrow(state, caller, request.on_behalf_of.as_ref())?;
    let caller = super::within_collections(state, caller, request.collections.as_ref())?;
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
    let earlier = earlier.map(|e| question_text(&e, "the earlier question").map(str::to_owned)).transpose()?;
    // Use rules and verified answers come before budgets: neither calls a model.
    let precheck = crate::policy::precheck(state, &caller, &question).await?;
    if let Some((direct, hit)) = precheck.direct {
        let asked = Question {
            conversation_id: request.conversation_id.as_deref(),
            ..Question::new(&caller.user, &caller.scope, &question)
        };
        let answer = state.chat.respond(asked, direct).map_err(|e| match (e, &request.conversation_id) {
            (ChatError::ConversationNotFound, Some(id)) => conversation_not_found(state, &caller, id),
            (e, _) => e.into(),
        })?;
        metered.direct(state, &answer, &hit, precheck.category);
        return Ok(whole(answer, request.stream, &[]));
    }
    // Budgets are the credential holder's (an agent's, not their customer's). Admission may
    // read a period's spend from the database, so it runs off the async workers.
    let admission = {
        let (state, caller, question, earlier) =
            (state.clone(), metered.caller.clone(), question.clone(), earlier.clone());
        tokio::task::spawn_blocking(move || state.admit_chat(&caller, &question, earlier.as_deref()))
            .await
            .map_err(|e| ApiError::Internal(format!("budget admission: {e}")))??
    };
    let extract_only = match &admission.decision {
        Decision::Allow => false,
        Decision::Degrade(_) => true,
        Decision::Refuse(exceeded) => return Err(crate::usage::budget_exceeded(exceeded)),
    };
    let warnings: Vec<String> = admission.warnings.iter().map(|w| w.budget_id.clone()).collect();
    // The assistant of the credential holder's department (an agent's, not their customer's).
    let assistant = state.policy.assistants.for_departments(&metered.caller.departments)?;
    let admitted = Admitted { reservation: admission.reservation, warnings, extract_only };
    // An answer that may have to be held for review cannot be streamed: it is answered whole.
    if request.stream && !state.policy.holds_answers() {
        let conversation_id = request.conversation_id;
        let asked = Asked { caller, question, conversation_id, earlier, category: precheck.category, assistant };
        return stream_answer(state.clone(), asked, admitted, metered.clone()).await;
    }
    let answer = state
        .chat
        .ask(Question {
            conversation_id: request.conversation_id.as_deref(),
            earlier_question: earlier.as_deref(),
            extract_only,
            assistant: assistant.as_ref(),
            ..Question::new(&caller.user, &caller.scope, &question)
        })
        .await
        .map_err(|e| match (e, &request.conversation_id) {
            (ChatError::ConversationNotFound, Some(id)) => conversation_not_found(state, &caller, id),
            (e, _) => e.into(),
        })?;
    state.metrics.observe_retrieval(&answer.timings.retrieval);
    state.metrics.observe_stage("answerability", answer.timings.answerability_ms / 1e3);
    if answer.model.is_some() {
        state.metrics.observe_stage("generation", answer.timings.generation_ms / 1e3);
    }
    if let (Some(model), Some(usage)) = (&answer.model, &answer.usage) {
        state.metrics.add_tokens(model, usage.prompt_tokens.into(), usage.completion_tokens.into());
    }
    let warnings = admitted.warnings.clone();
    metered.answered(state, &question, &answer, admitted);
    let mut answer = answer;
    if let Some(rule) = crate::policy::review_rule(state, &answer, precheck.category.as_deref()).cloned() {
        crate::policy::queue(state, &caller, &question, &mut answer, &rule)?;
        if rule.mode == lore_policy::config::ReviewMode::Before {
            return Ok(held(&answer, request.stream, &warnings));
        }
    }
    Ok(whole(answer, request.stream, &warnings))
}

/// A complete answer as JSON, or as the events of a stream sent at once (metadata, the text,
/// the final answer, its review mark).
fn whole(answer: ChatAnswer, stream: bool, warnings: &[String]) -> Response {
    use axum::response::sse::Sse;
    let mut response = if stream {
        let metadata = lore_chat::chat::StreamMetadata {
            kind: answer.kind,
            standalone_query: answer.standalone_query.clone(),
            lang: answer.lang,
            sources: answer.citations.clone(),
            prompt_version: answer.prompt_version.clone(),
            model: answer.model.clone(),
        };
        let mut events = vec![ChatEvent::Metadata(metadata), ChatEvent::Delta(answer.answer.clone())];
        let review = answer.review.clone();
        events.push(ChatEvent::Final(Box::new(answer)));
        events.extend(review.map(ChatEvent::Review));
        let events = events.into_iter().map(|event| Ok::<_, std::convert::Infallible>(sse_event(event)));
        Sse::new(futures::stream::iter(events)).into_response()
    } else {
        Json(answer).into_response()
    };
    set_warning_header(&mut response, warnings);
    response
}

/// What a held answer's asker gets: 202 with the review to poll (`GET /v1/reviews/{id}`), or
/// in a stream one `review` event.
fn held(answer: &ChatAnswer, stream: bool, warnings: &[String]) -> Response {
    use axum::response::sse::Sse;
    let Some(mark) = answer.review.clone() else { return whole(answer.clone(), stream, warnings) };
    let mut response = if stream {
        let event = Ok::<_, std::convert::Infallible>(sse_event(ChatEvent::Review(mark)));
        Sse::new(futures::stream::iter([event])).into_response()
    } else {
        let body = serde_json::json!({
            "review": mark, "conversation_id": answer.conversation_id, "message_id": answer.message_id,
        });
        (axum::http::StatusCode::ACCEPTED, Json(body)).into_response()
    };
    set_warning_header(&mut response, warnings);
    response
}

fn sse_event(event: ChatEvent) -> axum::response::sse::Event {
    use axum::response::sse::Event;
    let sse = match event {
        ChatEvent::Metadata(metadata) => Event::default().event("metadata").json_data(metadata),
        ChatEvent::Delta(text) => Event::default().event("delta").json_data(serde_json::json!({ "text": text })),
        ChatEvent::Final(answer) => Event::default().event("final").json_data(answer),
        ChatEvent::Review(mark) => Event::default().event("review").json_data(mark),
        ChatEvent::Failed(message) => {
            Event::default().event("error").json_data(serde_json::json!({ "code": "internal", "message": message }))
        }
    };
    sse.unwrap_or_else(|_| Event::default().event("error"))
}

/// A question as a stream answers it.
struct Asked {
    caller: Caller,
    question: String,
    conversation_id: Option<String>,
    earlier: Option<String>,
    /// The question's category when a policy needed it (review rules by category).
    category: Option<String>,
    assistant: Option<lore_policy::assistants::Assistant>,
}

/// What a chat was admitted with: the budget reservation to settle, the budgets past their
/// soft limit, and whether a hard limit degrades it to an extracted answer.
struct Admitted {
    reservation: Option<Reservation>,
    warnings: Vec<String>,
    extract_only: bool,
}

/// `Lore-Budget-Warning: <budget ids>`; ids are printable ASCII there (anything else escaped
/// as `\u{…}`), so a budget on a department with a non-ASCII name still warns.
fn set_warning_header(response: &mut Response, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    let text: String = warnings.join(", ").chars().flat_map(|c| c.escape_default()).collect();
    if let Ok(value) = text.parse() {
        response.headers_mut().insert(crate::usage::BUDGET_WARNING_HEADER, value);
    }
}

/// The model a call is priced as: the configured provider's `model` (providers answer with
/// dated names such as `gpt-4o-mini-2024-07-18`), else the name the provider answered with.
fn priced_model<'a>(state: &'a AppState, provider: Option<&str>, answered: Option<&'a str>) -> Option<&'a str> {
    let configured = state.config.chat.providers.iter().find(|p| Some(p.name.as_str()) == provider);
    configured.map(|p| p.model.as_str()).or(answered)
}

/// Who a chat is metered for and since when.
#[derive(Clone)]
struct Metered {
    caller: Caller,
    endpoint: Endpoint,
    collections: Vec<String>,
    started: Instant,
}

impl Metered {
    /// The event of a chat refused before or while answering.
    fn failed(&self, state: &AppState, error: &ApiError) -> UsageEvent {
        let kind = if matches!(error, ApiError::BudgetExceeded { .. }) { "budget_exceeded" } else { "error" };
        UsageEvent {
            status: error.status().as_u16(),
            collections: self.collections.clone(),
            latency_ms: self.started.elapsed().as_secs_f64() * 1e3,
            ..state.usage.event(&self.caller, self.endpoint, kind)
        }
    }

    /// A stream the client left: settles the budgets with the tokens used so far and records
    /// the event (status 499).
    fn abandoned(
        &self,
        state: &AppState,
        model: Option<String>,
        provider: Option<String>,
        usage: Option<lore_chat::provider::Usage>,
        dlp: &DlpReport,
        admitted: Admitted,
    ) {
        let usage = usage.unwrap_or_default();
        let (prompt, completion) = (u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
        let cost = priced_model(state, provider.as_deref(), model.as_deref())
            .map_or(0.0, |model| state.config.usage.cost(model, prompt, completion));
        if let Some(reservation) = admitted.reservation {
            reservation.settle(Amount { tokens: prompt + completion, cost });
        }
        let event = UsageEvent {
            model,
            provider,
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost,
            budget_warnings: admitted.warnings,
            dlp: crate::usage::dlp_counts(dlp),
            ..self.failed(state, &ApiError::Status(CLIENT_CLOSED, String::new()))
        };
        crate::usage::audit_dlp(state, &self.caller, &event, None);
        state.meter(event);
    }

    /// A refused or verified answer: no model, no budget; a refusal is audited with its rule.
    fn direct(&self, state: &AppState, answer: &ChatAnswer, hit: &crate::policy::Hit, category: Option<String>) {
        let kind = if answer.kind == AnswerKind::Refused { "refused" } else { "verified" };
        let event = UsageEvent {
            collections: crate::usage::cited_collections(&answer.citations),
            latency_ms: self.started.elapsed().as_secs_f64() * 1e3,
            lang: Some(answer.lang.code().to_owned()),
            category,
            conversation_id: Some(answer.conversation_id.clone()),
            message_id: Some(answer.message_id),
            ..state.usage.event(&self.caller, self.endpoint, kind)
        };
        match hit {
            crate::policy::Hit::Refused(refusal) => state.audit_caller(
                &self.caller,
                "policy.refused",
                Some(&refusal.rule),
                lore_core::audit::Outcome::Denied,
                serde_json::json!({ "matched": refusal.matched, "usage_event": event.id }),
            ),
            crate::policy::Hit::Verified { id, similarity } => {
                tracing::info!(verified = %id, similarity, "answered by a verified answer");
            }
        }
        state.meter(event);
    }

    /// Settles the budgets, records the event, and sends an abstention to the gap report.
    fn answered(&self, state: &AppState, question: &str, answer: &ChatAnswer, admitted: Admitted) {
        let usage = answer.usage.clone().unwrap_or_default();
        let (prompt, completion) = (u64::from(usage.prompt_tokens), u64::from(usage.completion_tokens));
        let cost = priced_model(state, answer.provider.as_deref(), answer.model.as_deref())
            .map_or(0.0, |model| state.config.usage.cost(model, prompt, completion));
        if let Some(reservation) = admitted.reservation {
            reservation.settle(Amount { tokens: prompt + completion, cost });
        }
        let query_vector = answer.trace.as_ref().map_or(&[][..], |t| t.retrieved.query_vector.as_slice());
        let mut stages = super::search::retrieval_stages(&answer.timings.retrieval);
        stages.insert("generation".into(), answer.timings.generation_ms);
        stages.insert("answerability".into(), answer.timings.answerability_ms);
        let kind = serde_json::to_value(answer.kind).ok().and_then(|k| k.as_str().map(str::to_owned));
        let collections = if self.collections.is_empty() {
            crate::usage::cited_collections(&answer.citations)
        } else {
            self.collections.clone()
        };
        let event = UsageEvent {
            collections,
            model: answer.model.clone(),
            provider: answer.provider.clone(),
            prompt_version: answer.prompt_version.clone(),
            prompt_tokens: prompt,
            completion_tokens: completion,
            cost,
            latency_ms: self.started.elapsed().as_secs_f64() * 1e3,
            stages,
            lang: Some(answer.lang.code().to_owned()),
            category: state.usage.category(query_vector),
            conversation_id: Some(answer.conversation_id.clone()),
            message_id: Some(answer.message_id),
            budget_warnings: admitted.warnings,
            dlp: crate::usage::dlp_counts(&answer.dlp),
            ..state.usage.event(&self.caller, self.endpoint, kind.as_deref().unwrap_or("error"))
        };
        crate::usage::audit_dlp(state, &self.caller, &event, Some(answer.message_id));
        if answer.kind == AnswerKind::NoAnswer {
            state.usage.gap(GapWork {
                question: question.to_owned(),
                vector: (!query_vector.is_empty()).then(|| query_vector.to_vec()),
                departments: self.caller.departments.clone(),
                reason: GapReason::Abstained,
                event_id: Some(event.id.clone()),
            });
        }
        state.meter(event);
    }
}

async fn stream_answer(
    state: Arc<AppState>,
    asked: Asked,
    admitted: Admitted,
    metered: Metered,
) -> Result<Response, ApiError> {
    let Asked { caller, question, conversation_id, earlier, category, assistant } = asked;
    use axum::response::sse::{KeepAlive, Sse};
    use futures::StreamExt;
    // Checked before the stream starts, so a foreign conversation is a plain 404.
    if let Some(id) = &conversation_id {
        let owned = state.chat.conversations().owned_by(id, &caller.user)?;
        if !owned {
            return Err(conversation_not_found(&state, &caller, id));
        }
    }
    let warnings = admitted.warnings.clone();
    let (sender, receiver) = tokio::sync::mpsc::channel::<ChatEvent>(32);
    let engine = state.chat.clone();
    let span = tracing::Span::current();
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let result = engine
                .ask_streaming(
                    Question {
                        conversation_id: conversation_id.as_deref(),
                        earlier_question: earlier.as_deref(),
                        extract_only: admitted.extract_only,
                        assistant: assistant.as_ref(),
                        ..Question::new(&caller.user, &caller.scope, &question)
                    },
                    sender.clone(),
                )
                .await;
            match result {
                Ok(Streamed::Answered(answer)) => {
                    metered.answered(&state, &question, &answer, admitted);
                    // Streams run only without `before` rules: an answer under review was
                    // delivered, and the mark follows it.
                    let mut answer = *answer;
                    if let Some(rule) = crate::policy::review_rule(&state, &answer, category.as_deref()).cloned() {
                        match crate::policy::queue(&state, &caller, &question, &mut answer, &rule) {
                            Ok(_) => {
                                if let Some(mark) = answer.review {
                                    let _ = sender.send(ChatEvent::Review(mark)).await;
                                }
                            }
                            Err(error) => tracing::error!(%error, "cannot queue a streamed answer for review"),
                        }
                    }
                }
                // The client left before the answer was complete: what the model used so far counts.
                Ok(Streamed::Abandoned { model, provider, usage, dlp }) => {
                    metered.abandoned(&state, model, provider, usage, &dlp, admitted)
                }
                Err(error) => {
                    tracing::error!(%error, "streamed answer failed");
                    state.meter(metered.failed(&state, &ApiError::Internal(error.to_string())));
                    let _ = sender.send(ChatEvent::Failed("the answer could not be completed".into())).await;
                }
            }
        },
        span,
    ));
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (event, receiver))
    })
    .map(|event| Ok::<_, std::convert::Infallible>(sse_event(event)));
    let mut response = Sse::new(events).keep_alive(KeepAlive::default()).into_response();
    set_warning_header(&mut response, &warnings);
    Ok(response)
}

/// The status metered for a streamed answer whose client left before it was complete
/// (nginx's "client closed request").
const CLIENT_CLOSED: axum::http::StatusCode = match axum::http::StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => axum::http::StatusCode::BAD_REQUEST,
};

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
