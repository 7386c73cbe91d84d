//! The OpenAI-compatible face of the chat (issue 19): `POST /v1/chat/completions` (streamed or
//! not) and `GET /v1/models`, so clients built on an OpenAI SDK (Open WebUI, LibreChat,
//! LangChain, editor plugins, bots) use Lore as a model, with the caller's permissions: the bearer
//! is a Lore API key or embed token.
//!
//! A completion is a `POST /v1/chat` underneath — the same handler, so use rules, verified
//! answers, budgets, review, DLP and metering apply unchanged — and this module only translates:
//! the messages in, the answer out as `choices[0].message.content` with its citations as Markdown
//! footnotes (`[^1]`), and Lore's own fields under `lore` (`kind`, `conversation_id`,
//! `message_id`, `citations`, `review`). A stream's Lore events become `chat.completion.chunk`s
//! and end with `[DONE]`. Parameters Lore has no use for (`temperature`, `tools`, …) are accepted
//! and ignored, as OpenAI does with unknown ones; errors come in OpenAI's `{"error": {…}}` shape.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use lore_chat::answer::Citation;
use lore_core::lang::Lang;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::chat::{ChatMessage, ChatRequest};
use super::error::ApiError;
use super::{ApiJson, AppState, Authenticated};

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(completions)).routes(routes!(models))
}

/// The one model Lore offers: answers from the documents the caller may read.
const MODEL: &str = "lore";

#[utoipa::path(
    get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "OpenAI's model list: the one model, `lore`", body = Object)),
)]
pub async fn models(Authenticated(_caller): Authenticated) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{ "id": MODEL, "object": "model", "created": 0, "owned_by": "lore" }],
    }))
}

#[utoipa::path(
    post, path = "/v1/chat/completions", tag = "openai", request_body = Object,
    responses(
        (status = 200, description = "An OpenAI chat completion (or with `stream: true`, `chat.completion.chunk` events and `[DONE]`), with `lore` holding kind, conversation, message and citations", body = Object),
        (status = 400, description = "No user message (OpenAI's error shape)", body = Object),
    ),
)]
pub async fn completions(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(body): ApiJson<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or(MODEL).to_owned();
    let request = match chat_request(&body) {
        Ok(request) => request,
        Err(error) => return openai_error(error),
    };
    let stream = request.stream;
    let question = request.messages.as_ref().and_then(|m| m.last()).map(|m| m.content.clone()).unwrap_or_default();
    let response = match super::chat::chat(State(state), Authenticated(caller), ApiJson(request)).await {
        Ok(response) => response,
        Err(error) => return openai_error(error),
    };
    let lang = Lang::detect(&question);
    if stream && response.status() == StatusCode::OK {
        streamed(response, model, lang)
    } else {
        whole(response, &model, lang).await
    }
}

/// The chat request a completion asks for. The last user message is the question and the one
/// before it the earlier question; system and developer messages are Lore's to write, and tool
/// messages have no meaning here, so both are left out.
fn chat_request(body: &Value) -> Result<ChatRequest, ApiError> {
    let Some(messages) = body["messages"].as_array() else {
        return Err(ApiError::InvalidRequest("`messages` is required: a list of {role, content}".into()));
    };
    let mut kept = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message["role"].as_str().unwrap_or_default();
        if !matches!(role, "user" | "assistant") {
            continue;
        }
        let content = match &message["content"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter(|part| part["type"] == "text")
                .filter_map(|part| part["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            Value::Null => String::new(),
            _ => return Err(ApiError::InvalidRequest(format!("`messages[{i}].content` must be text or text parts"))),
        };
        kept.push(ChatMessage { role: role.to_owned(), content });
    }
    if kept.last().is_none_or(|m| m.role != "user") {
        return Err(ApiError::InvalidRequest("the last message must be the user's question".into()));
    }
    let strings = |key: &str| -> Option<Vec<String>> {
        body[key].as_array().map(|list| list.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
    };
    Ok(ChatRequest {
        question: None,
        messages: Some(kept),
        conversation_id: body["conversation_id"].as_str().map(str::to_owned),
        stream: body["stream"].as_bool().unwrap_or(false),
        on_behalf_of: None,
        collections: strings("collections"),
    })
}

/// A Lore error in OpenAI's shape, with the same status (and headers, such as `Retry-After`).
fn openai_error(error: ApiError) -> Response {
    let (status, code, message) = (error.status(), error.code(), error.to_string());
    let original = error.into_response();
    let body = json!({ "error": { "message": message, "type": code, "code": code, "param": null } });
    let mut converted = (status, Json(body)).into_response();
    for (name, value) in original.headers() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            converted.headers_mut().insert(name.clone(), value.clone());
        }
    }
    converted
}

/// `[n]` markers of cited passages as Markdown footnote references (`[^n]`).
fn footnote_markers(text: &str, citations: &[Citation]) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let marker = after[..digits].parse::<usize>().ok();
        match marker {
            Some(n) if after[digits..].starts_with(']') && citations.iter().any(|c| c.marker == n) => {
                out.push_str(&format!("[^{n}]"));
                rest = &after[digits + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The footnotes themselves: `[^1]: Title, page 3 (collection/path)`.
fn footnotes(citations: &[Citation], lang: Lang) -> String {
    let page = if lang == Lang::Es { "página" } else { "page" };
    citations
        .iter()
        .map(|c| match c.page {
            Some(p) => format!("[^{}]: {}, {page} {p} ({})", c.marker, c.title, c.source_path),
            None => format!("[^{}]: {} ({})", c.marker, c.title, c.source_path),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn content_of(answer: &Value, lang: Lang) -> (String, Vec<Citation>) {
    let citations: Vec<Citation> = serde_json::from_value(answer["citations"].clone()).unwrap_or_default();
    let text = footnote_markers(answer["answer"].as_str().unwrap_or_default(), &citations);
    let notes = footnotes(&citations, lang);
    let content = if notes.is_empty() { text } else { format!("{text}\n\n{notes}") };
    (content, citations)
}

fn lore_fields(answer: &Value, citations: &[Citation]) -> Value {
    json!({
        "kind": answer["kind"], "conversation_id": answer["conversation_id"], "message_id": answer["message_id"],
        "citations": citations, "review": answer.get("review"),
    })
}

fn now_secs() -> i64 {
    lore_core::db::now()
}

/// A whole answer (or a held one, 202) as a `chat.completion`.
async fn whole(response: Response, model: &str, lang: Lang) -> Response {
    let status = response.status();
    let bytes = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => return openai_error(ApiError::Internal(format!("reading the answer: {e}"))),
    };
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let message = answer["message"].as_str().unwrap_or("error").to_owned();
        let code = answer["code"].as_str().unwrap_or("error").to_owned();
        let body = json!({ "error": { "message": message, "type": code, "code": code, "param": null } });
        return (status, Json(body)).into_response();
    }
    let (content, lore) = if status == StatusCode::ACCEPTED {
        // Held for review: the notice now, the answer from `GET /v1/reviews/{id}` once released.
        (crate::policy::held_notice(lang).to_owned(), lore_fields(&answer, &[]))
    } else {
        let (content, citations) = content_of(&answer, lang);
        (content, lore_fields(&answer, &citations))
    };
    let usage = &answer["usage"];
    let (prompt, completion) =
        (usage["prompt_tokens"].as_u64().unwrap_or(0), usage["completion_tokens"].as_u64().unwrap_or(0));
    Json(json!({
        "id": format!("chatcmpl-{}", answer["message_id"].as_i64().unwrap_or(0)),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop", "logprobs": null }],
        "usage": { "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion },
        "lore": lore,
    }))
    .into_response()
}

/// One server-sent event of Lore's stream.
struct Frame {
    event: String,
    data: Value,
}

/// Splits Lore's SSE body into frames (keep-alive comments dropped).
fn frames(buffer: &mut String) -> Vec<Frame> {
    let mut out = Vec::new();
    while let Some(end) = buffer.find("\n\n") {
        let raw: String = buffer.drain(..end + 2).collect();
        let mut event = String::new();
        let mut data = String::new();
        for line in raw.lines() {
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(text) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(text.strip_prefix(' ').unwrap_or(text));
            }
        }
        if !event.is_empty() {
            out.push(Frame { event, data: serde_json::from_str(&data).unwrap_or(Value::Null) });
        }
    }
    out
}

/// Lore's events as `chat.completion.chunk`s: the role first, the text as it comes (its markers
/// as footnote references), the footnotes and Lore's fields with the last chunk, then `[DONE]`.
fn streamed(response: Response, model: String, lang: Lang) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let id = format!("chatcmpl-{}", lore_usage::new_id());
    let created = now_secs();
    let chunk = move |delta: Value, finish: Option<&str>, lore: Option<Value>| {
        let mut chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
        });
        if let Some(lore) = lore {
            chunk["lore"] = lore;
        }
        Event::default().data(chunk.to_string())
    };
    struct Progress {
        body: axum::body::BodyDataStream,
        buffer: String,
        sources: Vec<Citation>,
        last: Option<Value>,
        review: Option<Value>,
        started: bool,
        done: bool,
    }
    let progress = Progress {
        body: response.into_body().into_data_stream(),
        buffer: String::new(),
        sources: Vec::new(),
        last: None,
        review: None,
        started: false,
        done: false,
    };
    let events = futures::stream::unfold(progress, move |mut p| {
        let chunk = chunk.clone();
        async move {
            if p.done {
                return None;
            }
            let mut out: Vec<Event> = Vec::new();
            match p.body.next().await {
                Some(Ok(bytes)) => {
                    p.buffer.push_str(&String::from_utf8_lossy(&bytes));
                    for frame in frames(&mut p.buffer) {
                        if !p.started && matches!(frame.event.as_str(), "metadata" | "review") {
                            p.started = true;
                            out.push(chunk(json!({ "role": "assistant", "content": "" }), None, None));
                        }
                        match frame.event.as_str() {
                            "metadata" => {
                                p.sources = serde_json::from_value(frame.data["sources"].clone()).unwrap_or_default();
                            }
                            "delta" => {
                                let text = frame.data["text"].as_str().unwrap_or_default();
                                let text = footnote_markers(text, &p.sources);
                                out.push(chunk(json!({ "content": text }), None, None));
                            }
                            "final" => p.last = Some(frame.data),
                            "review" => p.review = Some(frame.data),
                            "error" => {
                                let message = frame.data["message"].as_str().unwrap_or("error").to_owned();
                                let error = json!({ "error": { "message": message, "type": "internal", "code": "internal", "param": null } });
                                out.push(Event::default().data(error.to_string()));
                            }
                            _ => {}
                        }
                    }
                }
                Some(Err(_)) | None => {
                    p.done = true;
                    let mut closing = String::new();
                    let lore = match &p.last {
                        Some(answer) => {
                            let citations: Vec<Citation> =
                                serde_json::from_value(answer["citations"].clone()).unwrap_or_default();
                            let notes = footnotes(&citations, lang);
                            if !notes.is_empty() {
                                closing = format!("\n\n{notes}");
                            }
                            let mut fields = lore_fields(answer, &citations);
                            fields["review"] = p.review.clone().unwrap_or(Value::Null);
                            fields
                        }
                        None => {
                            // Held for review: no answer yet, only the notice.
                            closing = crate::policy::held_notice(lang).to_owned();
                            json!({ "review": p.review })
                        }
                    };
                    if !closing.is_empty() {
                        out.push(chunk(json!({ "content": closing }), None, None));
                    }
                    out.push(chunk(json!({}), Some("stop"), Some(lore)));
                    out.push(Event::default().data("[DONE]"));
                }
            }
            Some((futures::stream::iter(out.into_iter().map(Ok::<_, std::convert::Infallible>)), p))
        }
    })
    .flatten();
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn citation(marker: usize) -> Citation {
        Citation {
            marker,
            document_id: "d".into(),
            title: "Employee Handbook".into(),
            source_path: "samples/handbook/employee-handbook.md".into(),
            page: Some(3),
            heading: None,
            snippet: String::new(),
            score: 1.0,
            chunk_id: "c".into(),
        }
    }

    #[test]
    fn cited_markers_become_footnotes_and_others_stay_text() {
        let citations = [citation(1), citation(3)];
        assert_eq!(
            footnote_markers("25 days [1], see [2] and [3]; arrays [x] [10", &citations),
            "25 days [^1], see [2] and [^3]; arrays [x] [10"
        );
        assert_eq!(
            footnotes(&citations[..1], Lang::Es),
            "[^1]: Employee Handbook, página 3 (samples/handbook/employee-handbook.md)"
        );
    }

    #[test]
    fn sse_frames_are_split_and_keep_alives_dropped() {
        let mut buffer =
            "event: delta\ndata: {\"text\":\"a\"}\n\n:keep-alive\n\nevent: final\ndata: {\"x\":".to_owned();
        let frames = frames(&mut buffer);
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].event.as_str(), frames[0].data["text"].as_str()), ("delta", Some("a")));
        assert_eq!(buffer, "event: final\ndata: {\"x\":");
    }

    #[test]
    fn the_messages_become_a_question_and_unknown_parameters_are_ignored() {
        let body = json!({
            "model": "gpt-4o", "temperature": 0.2, "tools": [], "stream": true,
            "messages": [
                { "role": "system", "content": "You are a pirate." },
                { "role": "user", "content": "How many vacation days?" },
                { "role": "assistant", "content": "25 [^1]" },
                { "role": "user", "content": [{ "type": "text", "text": "And in Spain?" }, { "type": "image_url" }] },
            ],
        });
        let request = chat_request(&body).unwrap();
        let messages = request.messages.unwrap();
        assert_eq!(messages.len(), 3, "the system message is Lore's to write");
        assert_eq!(messages[2].content, "And in Spain?");
        assert!(request.stream);
        assert!(chat_request(&json!({ "messages": [{ "role": "assistant", "content": "hi" }] })).is_err());
        assert!(chat_request(&json!({ "model": "lore" })).is_err());
    }
}
