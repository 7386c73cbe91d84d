//! The answer pipeline shared by `POST /v1/chat` and `lore ask`: condense a follow-up into a
//! standalone query, retrieve with the caller's scope, abstain when nothing is relevant, and
//! otherwise answer with citations: written by the model provider chain when one is configured,
//! extracted from the passages when none is or all providers fail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lore_core::acl::AccessScope;
use lore_core::config::ChatConfig;
use lore_core::lang::Lang;
use serde::Serialize;
use tracing::Instrument;

use crate::answer::{
    AnswerKind, Citation, extracted_label, extractive_answer, is_not_covered, may_be_not_covered, no_answer_text,
    validate_markers,
};
use crate::answerability::{self, AnswerabilityModel, Evidence};
use crate::conversations::Conversations;
use crate::prompts::Prompts;
use crate::provider::{DlpReport, ProviderChain, ProviderError, Usage};
use crate::retrieval::{HybridResults, Passage, RetrievalTimings, Retriever};
use lore_policy::assistants::Assistant;

/// Most sentences in an extractive answer.
const EXTRACTED_SENTENCES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Missing, or owned by someone else: both look the same to the caller.
    #[error("conversation not found")]
    ConversationNotFound,
    #[error(transparent)]
    Core(#[from] lore_core::Error),
    #[error(transparent)]
    Store(#[from] crate::conversations::ConversationError),
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChatTimings {
    pub retrieval: RetrievalTimings,
    /// Time spent waiting for model providers (condensation and answer).
    pub generation_ms: f64,
    /// Weighing the evidence: the answerability model's features, including the embedding of
    /// the passages' candidate sentences (before the provider is called).
    pub answerability_ms: f64,
    /// From the question's arrival until the evidence was weighed (answer or abstain decided).
    pub weighed_at_ms: f64,
    /// From the question's arrival until the answer's model call started: before
    /// `weighed_at_ms` with `chat.speculative_generation`, after it without. `None` when the
    /// answer did not ask a model (a speculative call the evidence cancelled does not count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_called_at_ms: Option<f64>,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChatAnswer {
    pub conversation_id: String,
    /// The stored assistant message (rate it with `POST /v1/feedback`).
    pub message_id: i64,
    pub kind: AnswerKind,
    pub answer: String,
    pub citations: Vec<Citation>,
    /// The query retrieval ran with (the question itself, or the condensed follow-up).
    pub standalone_query: String,
    pub lang: Lang,
    /// Prompt template version; `None` when no model was used.
    pub prompt_version: Option<String>,
    /// Model that wrote the answer; `None` when no model was used.
    pub model: Option<String>,
    /// The provider (by its configured name) that wrote the answer.
    pub provider: Option<String>,
    /// Tokens of the model calls behind the answer (follow-up condensation included).
    pub usage: Option<Usage>,
    /// Why the answer is extractive although providers are configured (all of them failed).
    pub provider_errors: Vec<ProviderError>,
    /// Personal data and secrets kept from the providers, per kind (never the values).
    #[serde(skip_serializing_if = "DlpReport::is_empty")]
    pub dlp: DlpReport,
    /// Set when a person must check the answer (a critical collection or category).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewMark>,
    /// How likely the knowledge base answers the question (0–1), from the evidence the answer
    /// was decided on; `None` for answers given without retrieval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answerability: Option<f64>,
    pub timings: ChatTimings,
    /// The passages and evidence behind the answer (for `lore eval`); `None` for an answer given
    /// without retrieval (refused, verified). Not part of the API: the evidence's IDF weights
    /// count every document, readable or not.
    #[serde(skip)]
    pub trace: Option<Box<Trace>>,
}

/// A question as the engine takes it: who asks, what they may read, and where it stands in
/// a conversation.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    pub user: &'a str,
    pub scope: &'a AccessScope,
    pub text: &'a str,
    /// The conversation it continues; it must be `user`'s.
    pub conversation_id: Option<&'a str>,
    /// The question before it, when the client keeps the conversation itself (the API's
    /// `messages`); a stored conversation's own history wins.
    pub earlier_question: Option<&'a str>,
    /// Passages to retrieve when more than `chat.context_passages` are wanted (`lore eval`
    /// ranks 20); the answer uses the first `context_passages`, the trace holds them all.
    pub retrieve: Option<usize>,
    /// Answer without calling any model (a budget's hard limit degrades to this): the follow-up
    /// is condensed by rule and the answer extracted.
    pub extract_only: bool,
    /// The asker's department assistant: its instructions join the system prompt, and its id the
    /// prompt version.
    pub assistant: Option<&'a Assistant>,
}

impl<'a> Question<'a> {
    /// A question that starts a new conversation.
    pub fn new(user: &'a str, scope: &'a AccessScope, text: &'a str) -> Self {
        Question {
            user,
            scope,
            text,
            conversation_id: None,
            earlier_question: None,
            retrieve: None,
            extract_only: false,
            assistant: None,
        }
    }
}

/// What an answer was made from: the passages retrieved and the evidence weighed.
#[derive(Debug, Clone)]
pub struct Trace {
    pub retrieved: HybridResults,
    pub evidence: Evidence,
}

pub struct ChatEngine {
    retriever: Arc<Retriever>,
    conversations: Mutex<Conversations>,
    prompts: Prompts,
    /// Shared with the tasks that run speculative calls.
    providers: Arc<ProviderChain>,
    answerability: AnswerabilityModel,
    config: ChatConfig,
}

/// The passages given to the model, numbered as the prompt numbers them.
struct Context {
    passages: Vec<Passage>,
    text: String,
}

impl ChatEngine {
    pub fn new(
        retriever: Arc<Retriever>,
        conversations: Conversations,
        config: &ChatConfig,
    ) -> Result<Self, lore_core::Error> {
        Ok(ChatEngine {
            conversations: Mutex::new(conversations),
            prompts: Prompts::load(config.prompts_dir.as_deref())?,
            providers: Arc::new(ProviderChain::new(&config.providers)?),
            answerability: match &retriever.config().answerability_model {
                Some(path) => AnswerabilityModel::load(path).map_err(|e| lore_core::Error::Config(e.to_string()))?,
                None => AnswerabilityModel::built_in(),
            },
            retriever,
            config: config.clone(),
        })
    }

    /// Passages within the token budget, grouped by document (documents in order of their best
    /// passage) and in document order within a document.
    fn context(&self, passages: &[Passage]) -> Context {
        let mut chosen: Vec<&Passage> = Vec::new();
        let mut tokens = 0;
        for passage in passages {
            let cost = self.retriever.count_tokens(&passage.chunk.text) + 16;
            if tokens + cost > self.config.context_token_budget && !chosen.is_empty() {
                continue;
            }
            tokens += cost;
            chosen.push(passage);
        }
        let mut documents: Vec<&str> = Vec::new();
        for passage in &chosen {
            if !documents.contains(&passage.document.id.as_str()) {
                documents.push(&passage.document.id);
            }
        }
        chosen.sort_by_key(|p| {
            (documents.iter().position(|d| *d == p.document.id).unwrap_or(usize::MAX), p.chunk.ordinal)
        });
        let mut text = String::new();
        for (i, passage) in chosen.iter().enumerate() {
            let mut source = passage.document.title.clone();
            if let Some(page) = passage.chunk.page {
                source.push_str(&format!(", page {page}"));
            }
            if let Some(heading) = passage.chunk.heading_path.last() {
                source.push_str(&format!(", section \"{heading}\""));
            }
            text.push_str(&format!("[{}] ({source})\n{}\n\n", i + 1, passage.chunk.text.trim()));
        }
        Context { passages: chosen.into_iter().cloned().collect(), text: text.trim_end().to_owned() }
    }

    /// Standalone query for a follow-up: the model rewrites it when one is configured; the
    /// deterministic rule is used otherwise, or when the model fails.
    async fn standalone_query(
        &self,
        previous: Option<&str>,
        question: &str,
        use_model: bool,
        assistant: Option<&Assistant>,
    ) -> (String, f64, Option<Usage>, DlpReport) {
        let Some(previous) = previous else { return (question.trim().to_owned(), 0.0, None, DlpReport::default()) };
        if self.providers.is_empty() || !use_model {
            return (condense(Some(previous), question), 0.0, None, DlpReport::default());
        }
        let started = Instant::now();
        let prompt = self.prompts.condense.render(&[("history", &format!("User: {previous}")), ("question", question)]);
        let system = self.system_prompt(assistant);
        let (rewritten, dlp) = match (system, prompt) {
            (Ok(system), Ok(prompt)) => match self.providers.complete(&system, &prompt).await {
                Ok(completion) => {
                    let dlp = DlpReport::of_call(&completion.redacted, &[], [&system, &prompt]);
                    (Some(completion), dlp)
                }
                Err(errors) => (None, DlpReport::of_call(&Default::default(), &errors, [&system, &prompt])),
            },
            _ => (None, DlpReport::default()),
        };
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        let usage = rewritten.as_ref().and_then(|c| c.usage.clone());
        match rewritten.map(|c| c.text.lines().next().unwrap_or_default().trim().to_owned()) {
            Some(query) if !query.is_empty() => (query, elapsed, usage, dlp),
            _ => (condense(Some(previous), question), elapsed, usage, dlp),
        }
    }

    /// A stream whose client left: the model, and the tokens used so far (the prompt, the
    /// text received, the condensation).
    fn abandoned(
        &self,
        generation: &Generation,
        stream: &crate::provider::StartedStream,
        head: &str,
        answer: &str,
        prepared: &Prepared,
    ) -> Streamed {
        let said = self.estimate_usage(generation, &format!("{answer}{head}"));
        let mut dlp = prepared.condense_dlp.clone();
        dlp.add(&DlpReport { redacted: stream.redacted.clone(), ..DlpReport::default() });
        Streamed::Abandoned {
            model: Some(stream.model.clone()),
            provider: Some(stream.provider.clone()),
            usage: Usage::sum(prepared.condense_usage.clone(), Some(said)),
            dlp,
        }
    }

    /// Tokens of a streamed answer, which providers do not report: counted with the embedding
    /// model's tokenizer (close to, not the same as, the provider's), and marked estimated.
    fn estimate_usage(&self, generation: &Generation, answer: &str) -> Usage {
        let count = |text: &str| u32::try_from(self.retriever.count_tokens(text)).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens: count(&generation.system).saturating_add(count(&generation.user)),
            completion_tokens: count(answer),
            estimated: true,
        }
    }

    /// Most tokens one answer to `question` can use, prompt and completion: the system and
    /// answer templates, the context budget, the question, a condensation call with the
    /// earlier question (a stored conversation's is at most as long as a question may be), and
    /// each provider's `max_tokens` (1,024 where none is set). Budgets reserve this much while
    /// the answer runs, so they are overrun by at most one answer. Counted with the embedding
    /// model's tokenizer, which is close to, not the same as, a provider's.
    pub fn token_bound(&self, question: &str, earlier: Option<&str>) -> (u64, u64) {
        let templates = self
            .render_answer_prompt(question, Lang::En, "", None)
            .map_or(0, |(system, user)| self.retriever.count_tokens(&system) + self.retriever.count_tokens(&user));
        let passages = self.config.context_token_budget + 16 * self.config.context_passages;
        // An earlier question is at most 4,000 characters: about 1,000 tokens.
        let earlier = earlier.map_or(1024, |e| self.retriever.count_tokens(e));
        let condensation = 2 * self.retriever.count_tokens(question) + earlier + 256;
        let completion = self.config.providers.iter().map(|p| p.max_tokens.unwrap_or(1024)).max().unwrap_or(0);
        ((templates + passages + condensation) as u64, u64::from(completion) + 64)
    }

    /// Version of the answer prompt template in use.
    pub fn prompt_version(&self) -> String {
        self.prompts.answer_version()
    }

    /// The system prompt, with the assistant's lines after the company's.
    fn system_prompt(&self, assistant: Option<&Assistant>) -> Result<String, lore_core::Error> {
        let system = self.prompts.system.render(&[("company", &self.config.company)])?;
        Ok(match assistant {
            Some(assistant) => format!("{system}\n\n{}", assistant.system_addition()),
            None => system,
        })
    }

    /// The prompt version of an answer written with `assistant`: the templates' versions and the
    /// assistant's id and version.
    fn prompt_version_with(&self, assistant: Option<&Assistant>) -> String {
        match assistant {
            Some(assistant) => format!("{}+{}", self.prompts.answer_version(), assistant.prompt_id()),
            None => self.prompts.answer_version(),
        }
    }

    fn render_answer_prompt(
        &self,
        question: &str,
        lang: Lang,
        context: &str,
        assistant: Option<&Assistant>,
    ) -> Result<(String, String), lore_core::Error> {
        let language = match lang {
            Lang::En => "English",
            Lang::Es => "Spanish",
        };
        let system = self.system_prompt(assistant)?;
        let user =
            self.prompts.answer.render(&[("language", language), ("context", context), ("question", question)])?;
        Ok((system, user))
    }

    /// The system and user prompts a generated answer to `question` over these retrieved
    /// passages would be sent with (context cut to the token budget): for inspection, e.g.
    /// `lore eval --only`.
    pub fn answer_prompt(&self, question: &str, passages: &[Passage]) -> Result<(String, String), lore_core::Error> {
        let context = self.context(passages);
        self.render_answer_prompt(question, Lang::detect(question), &context.text, None)
    }

    /// Whether answers are written by model providers (otherwise they are extracted).
    pub fn has_providers(&self) -> bool {
        !self.providers.is_empty()
    }

    pub fn conversations(&self) -> std::sync::MutexGuard<'_, Conversations> {
        self.conversations.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn ask(&self, question: Question<'_>) -> Result<ChatAnswer, ChatError> {
        let providers = self.providers.clone();
        let (mut prepared, called) = self
            .prepare(question, |system, user, sent| {
                // Made here, in the request's span: the call runs in a task of its own.
                let span = tracing::info_span!("generation");
                async move { providers.complete_noting(&system, &user, &sent).instrument(span).await }
            })
            .await?;
        let outcome = match (prepared.generation.take(), called) {
            (Some(generation), Some(Called { started, result })) => {
                prepared.generation_ms += started.elapsed().as_secs_f64() * 1e3;
                let dlp = match &result {
                    Ok(completion) => DlpReport::of_call(&completion.redacted, &[], [""; 2]),
                    Err(errors) => {
                        DlpReport::of_call(&Default::default(), errors, [&generation.system, &generation.user])
                    }
                };
                let outcome = match result {
                    Ok(completion) if is_not_covered(&completion.text) => Outcome {
                        usage: completion.usage,
                        ..prepared.not_covered(prepared.prompt_version.clone(), completion.model, completion.provider)
                    },
                    Ok(completion) => {
                        let (text, used) = validate_markers(&completion.text, generation.context.passages.len());
                        Outcome {
                            kind: AnswerKind::Generated,
                            citations: generation.citations(&used),
                            answer: text,
                            prompt_version: Some(prepared.prompt_version.clone()),
                            model: Some(completion.model),
                            provider: Some(completion.provider),
                            usage: completion.usage,
                            provider_errors: Vec::new(),
                            dlp: DlpReport::default(),
                        }
                    }
                    Err(errors) => prepared.fallback(errors),
                };
                Outcome { dlp, ..outcome }
            }
            _ => prepared.fallback(Vec::new()),
        };
        self.finish(prepared, outcome)
    }

    /// Streaming variant: events go to `events` as they happen — metadata (with the passages
    /// the answer may cite) first, then answer deltas, then the final answer. Returns the answer
    /// when it is complete, or `None` as soon as `events` is closed (the client went away),
    /// which drops the provider stream and so cancels generation.
    pub async fn ask_streaming(
        &self,
        question: Question<'_>,
        events: tokio::sync::mpsc::Sender<ChatEvent>,
    ) -> Result<Streamed, ChatError> {
        use futures::StreamExt;
        // The span covers the whole stream, to the last token.
        let generation_span = tracing::info_span!("generation", streamed = true);
        let (mut prepared, called) = self
            .prepare(question, |system, user, sent| {
                let (providers, span) = (self.providers.clone(), generation_span.clone());
                async move { providers.stream_noting(&system, &user, &sent).instrument(span).await }
            })
            .await?;
        let (Some(generation), Some(Called { started, result: stream })) = (prepared.generation.take(), called) else {
            let outcome = prepared.fallback(Vec::new());
            return self.send_whole(prepared, outcome, &events).await;
        };
        let mut started_stream = match stream {
            Ok(stream) => stream,
            Err(errors) => {
                prepared.generation_ms += started.elapsed().as_secs_f64() * 1e3;
                let dlp = DlpReport::of_call(&Default::default(), &errors, [&generation.system, &generation.user]);
                let outcome = Outcome { dlp, ..prepared.fallback(errors) };
                return self.send_whole(prepared, outcome, &events).await;
            }
        };
        let stream_dlp = DlpReport { redacted: started_stream.redacted.clone(), ..DlpReport::default() };
        let sources: Vec<Citation> = (1..=generation.context.passages.len())
            .map(|n| Citation::from_passage(n, &generation.context.passages[n - 1]))
            .collect();
        let metadata = StreamMetadata {
            kind: AnswerKind::Generated,
            standalone_query: prepared.standalone_query.clone(),
            lang: prepared.lang,
            sources,
            prompt_version: Some(prepared.prompt_version.clone()),
            model: Some(started_stream.model.clone()),
        };
        // The metadata waits until the text cannot be the not-covered marker any more; the
        // text up to then waits with it.
        let mut metadata = Some(metadata);
        let mut head = String::new();
        let mut filter = MarkerFilter::new(generation.context.passages.len());
        let mut answer = String::new();
        let mut interrupted = None;
        let mut next = Some(started_stream.first.clone());
        loop {
            if let Some(mut text) = next.take() {
                if metadata.is_some() {
                    head.push_str(&text);
                    text = String::new();
                    if !may_be_not_covered(&head) {
                        let metadata = metadata.take().expect("metadata not sent yet");
                        if events.send(ChatEvent::Metadata(metadata)).await.is_err() {
                            return Ok(self.abandoned(&generation, &started_stream, &head, &answer, &prepared));
                        }
                        text = std::mem::take(&mut head);
                    }
                }
                let clean = filter.push(&text);
                if !clean.is_empty() {
                    answer.push_str(&clean);
                    if events.send(ChatEvent::Delta(clean)).await.is_err() {
                        return Ok(self.abandoned(&generation, &started_stream, &head, &answer, &prepared)); // client gone: dropping the stream cancels generation
                    }
                }
            }
            let item = tokio::select! {
                item = started_stream.rest.next() => item,
                () = events.closed() => return Ok(self.abandoned(&generation, &started_stream, &head, &answer, &prepared)),
            };
            match item {
                Some(Ok(text)) => next = Some(text),
                Some(Err(error)) => {
                    interrupted = Some(error);
                    break;
                }
                None => break,
            }
        }
        if let Some(metadata) = metadata.take() {
            if is_not_covered(&head) {
                prepared.generation_ms += started.elapsed().as_secs_f64() * 1e3;
                let outcome = Outcome {
                    provider_errors: interrupted.into_iter().collect(),
                    usage: Some(self.estimate_usage(&generation, &head)),
                    dlp: stream_dlp,
                    ..prepared.not_covered(
                        prepared.prompt_version.clone(),
                        started_stream.model,
                        started_stream.provider,
                    )
                };
                return self.send_whole(prepared, outcome, &events).await;
            }
            if head.trim().is_empty() {
                // Nothing usable came: the extracted answer stands in.
                prepared.generation_ms += started.elapsed().as_secs_f64() * 1e3;
                let outcome = Outcome { dlp: stream_dlp, ..prepared.fallback(interrupted.into_iter().collect()) };
                return self.send_whole(prepared, outcome, &events).await;
            }
            if events.send(ChatEvent::Metadata(metadata)).await.is_err() {
                return Ok(self.abandoned(&generation, &started_stream, &head, &answer, &prepared));
            }
            let clean = filter.push(&head);
            if !clean.is_empty() {
                answer.push_str(&clean);
                if events.send(ChatEvent::Delta(clean)).await.is_err() {
                    return Ok(self.abandoned(&generation, &started_stream, &head, &answer, &prepared));
                }
            }
        }
        let tail = filter.finish();
        if !tail.is_empty() {
            answer.push_str(&tail);
            if events.send(ChatEvent::Delta(tail)).await.is_err() {
                return Ok(self.abandoned(&generation, &started_stream, &head, &answer, &prepared));
            }
        }
        prepared.generation_ms += started.elapsed().as_secs_f64() * 1e3;
        let usage = Some(self.estimate_usage(&generation, &answer));
        let outcome = Outcome {
            kind: AnswerKind::Generated,
            citations: generation.citations(&filter.used),
            answer,
            prompt_version: Some(prepared.prompt_version.clone()),
            usage,
            model: Some(started_stream.model),
            provider: Some(started_stream.provider),
            provider_errors: interrupted.into_iter().collect(),
            dlp: stream_dlp,
        };
        let answer = self.finish(prepared, outcome)?;
        let _ = events.send(ChatEvent::Final(Box::new(answer.clone()))).await;
        Ok(Streamed::Answered(Box::new(answer)))
    }

    async fn send_whole(
        &self,
        prepared: Prepared,
        outcome: Outcome,
        events: &tokio::sync::mpsc::Sender<ChatEvent>,
    ) -> Result<Streamed, ChatError> {
        let metadata = StreamMetadata {
            kind: outcome.kind,
            standalone_query: prepared.standalone_query.clone(),
            lang: prepared.lang,
            sources: outcome.citations.clone(),
            prompt_version: outcome.prompt_version.clone(),
            model: outcome.model.clone(),
        };
        let delta = outcome.answer.clone();
        let answer = self.finish(prepared, outcome)?;
        let whole =
            [ChatEvent::Metadata(metadata), ChatEvent::Delta(delta), ChatEvent::Final(Box::new(answer.clone()))];
        for event in whole {
            if events.send(event).await.is_err() {
                break;
            }
        }
        Ok(Streamed::Answered(Box::new(answer)))
    }

    /// Everything before generation: ownership check, condensation, retrieval, abstention and
    /// the extractive answer (used when there is no model or every provider fails), and the
    /// model call `call(system, user)` when the knowledge base answers. With
    /// `chat.speculative_generation` the call starts as soon as retrieval is done, while the
    /// evidence is weighed (the prompt depends on the passages only), and is dropped, which
    /// cancels it, when the evidence says to abstain.
    async fn prepare<T, F, Fut>(
        &self,
        question: Question<'_>,
        call: F,
    ) -> Result<(Prepared, Option<Called<T>>), ChatError>
    where
        F: FnOnce(String, String, Arc<AtomicBool>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let Question {
            user,
            scope,
            text: question,
            conversation_id,
            earlier_question,
            retrieve,
            extract_only,
            assistant,
        } = question;
        let started = Instant::now();
        let previous = match conversation_id {
            Some(id) => {
                let messages = self.conversations().messages(id, user)?.ok_or(ChatError::ConversationNotFound)?;
                messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone())
            }
            None => earlier_question.map(str::to_owned),
        };
        let (standalone_query, generation_ms, condense_usage, condense_dlp) =
            self.standalone_query(previous.as_deref(), question, !extract_only, assistant).await;
        let depth = self.config.context_passages.max(retrieve.unwrap_or(0));
        let retrieved = self.retriever.hybrid(&standalone_query, scope, depth).await?;
        let passages = &retrieved.passages[..retrieved.passages.len().min(self.config.context_passages)];
        let lang = Lang::detect(question);
        // The prompt depends on the passages only, so a speculative call can go out before the
        // evidence is in. A template that fails to render matters only if the answer is generated.
        let may_generate = !self.providers.is_empty() && !extract_only && !passages.is_empty();
        let render = || {
            let context = self.context(passages);
            self.render_answer_prompt(question, lang, &context.text, assistant)
                .map(|(system, user_prompt)| Generation { context, system, user: user_prompt })
        };
        let prompt = (may_generate && self.config.speculative_generation).then(&render);
        let mut call = Some(call);
        let mut pending = match &prompt {
            Some(Ok(generation)) => Some(Speculative::start(call.take().expect("the call is made once"), generation)),
            _ => None,
        };
        let weighing = Instant::now();
        let evidence = self.evidence(&standalone_query, &retrieved).await?;
        let answerability_ms = weighing.elapsed().as_secs_f64() * 1e3;
        let weighed_at_ms = started.elapsed().as_secs_f64() * 1e3;
        // The reply is the same whether nothing matches or only documents the caller may not
        // read do: both engines filter by the caller's scope before anything is scored.
        let extracted = if evidence.answerable() {
            Some(extractive_answer(&evidence, passages, EXTRACTED_SENTENCES))
                .filter(|(_, citations)| !citations.is_empty())
        } else {
            None
        };
        let (generation, cancelled) = match (prompt, extracted.is_some()) {
            (Some(prompt), true) => (Some(prompt?), None),
            (None, true) if may_generate => (Some(render()?), None),
            // Abstaining: a speculative call is cancelled; what it sent is counted.
            (Some(Ok(generation)), false) => {
                let sent = match pending.take() {
                    Some(running) => running.cancel().await,
                    None => false,
                };
                let recipient = sent.then(|| self.providers.recipient(&generation.system, &generation.user)).flatten();
                (None, recipient.map(|recipient| Cancelled { recipient, usage: self.estimate_usage(&generation, "") }))
            }
            _ => (None, None),
        };
        let called = match (&generation, pending) {
            (Some(_), Some(running)) => Some(running.join().await),
            (Some(generation), None) => {
                let call = call.take().expect("a call not made speculatively is still here");
                let started = Instant::now();
                let result =
                    call(generation.system.clone(), generation.user.clone(), Arc::new(AtomicBool::new(false))).await;
                Some(Called { started, result })
            }
            _ => None,
        };
        let model_called_at_ms =
            called.as_ref().map(|called| called.started.duration_since(started).as_secs_f64() * 1e3);
        let prepared = Prepared {
            started,
            user: user.to_owned(),
            question: question.to_owned(),
            conversation_id: conversation_id.map(str::to_owned),
            standalone_query,
            lang,
            trace: Trace { retrieved, evidence },
            extracted,
            generation,
            cancelled,
            generation_ms,
            answerability_ms,
            weighed_at_ms,
            model_called_at_ms,
            condense_usage,
            condense_dlp,
            prompt_version: self.prompt_version_with(assistant),
        };
        Ok((prepared, called))
    }

    /// The answerability model and its operating point (`retrieval.min_answerability` wins).
    pub fn answerability(&self) -> (&AnswerabilityModel, f64) {
        let threshold = self.retriever.config().min_answerability.map_or(self.answerability.threshold, f64::from);
        (&self.answerability, threshold)
    }

    /// Weighs the evidence of retrieved passages: whether the knowledge base answers the
    /// question, and which sentences do.
    pub async fn evidence(&self, question: &str, retrieved: &HybridResults) -> Result<Evidence, ChatError> {
        let (model, threshold) = self.answerability();
        Ok(answerability::gather(&self.retriever, model, threshold, question, retrieved).await?)
    }

    /// Stores the exchange in the conversation and assembles the response.
    fn finish(&self, prepared: Prepared, outcome: Outcome) -> Result<ChatAnswer, ChatError> {
        let (conversation_id, message_id) = {
            let store = self.conversations();
            let id = match &prepared.conversation_id {
                Some(id) => id.clone(),
                None => store.create(&prepared.user, &prepared.question)?,
            };
            let empty = serde_json::json!({});
            store.append(&id, "user", &prepared.question, &serde_json::Value::Array(vec![]), &empty)?;
            let meta = serde_json::json!({
                "kind": outcome.kind, "prompt_version": outcome.prompt_version, "model": outcome.model,
            });
            let message_id = store.append(
                &id,
                "assistant",
                &outcome.answer,
                &serde_json::to_value(&outcome.citations).unwrap_or_default(),
                &meta,
            )?;
            (id, message_id)
        };
        Ok(ChatAnswer {
            conversation_id,
            message_id,
            kind: outcome.kind,
            answer: outcome.answer,
            citations: outcome.citations,
            standalone_query: prepared.standalone_query,
            lang: prepared.lang,
            prompt_version: outcome.prompt_version,
            model: outcome.model,
            provider: outcome.provider,
            usage: Usage::sum(prepared.condense_usage, outcome.usage),
            provider_errors: outcome.provider_errors,
            dlp: {
                let mut dlp = prepared.condense_dlp;
                dlp.add(&outcome.dlp);
                dlp
            },
            review: None,
            answerability: Some(prepared.trace.evidence.answerability),
            timings: ChatTimings {
                retrieval: prepared.trace.retrieved.timings.clone(),
                generation_ms: prepared.generation_ms,
                answerability_ms: prepared.answerability_ms,
                weighed_at_ms: prepared.weighed_at_ms,
                model_called_at_ms: prepared.model_called_at_ms,
                total_ms: prepared.started.elapsed().as_secs_f64() * 1e3,
            },
            trace: Some(Box::new(prepared.trace)),
        })
    }

    /// Answers `question` with `direct` (a use policy's refusal, a verified answer), without
    /// retrieval or a model, and stores the exchange in the conversation like any answer.
    pub fn respond(&self, question: Question<'_>, direct: Direct) -> Result<ChatAnswer, ChatError> {
        let started = Instant::now();
        let lang = Lang::detect(question.text);
        let store = self.conversations();
        let id = match question.conversation_id {
            Some(id) if store.owned_by(id, question.user)? => id.to_owned(),
            Some(_) => return Err(ChatError::ConversationNotFound),
            None => store.create(question.user, question.text)?,
        };
        store.append(&id, "user", question.text, &serde_json::Value::Array(vec![]), &serde_json::json!({}))?;
        let meta = serde_json::json!({ "kind": direct.kind });
        let citations = serde_json::to_value(&direct.citations).unwrap_or_default();
        let message_id = store.append(&id, "assistant", &direct.answer, &citations, &meta)?;
        Ok(ChatAnswer {
            conversation_id: id,
            message_id,
            kind: direct.kind,
            answer: direct.answer,
            citations: direct.citations,
            standalone_query: question.text.to_owned(),
            lang,
            prompt_version: None,
            model: None,
            provider: None,
            usage: None,
            provider_errors: Vec::new(),
            dlp: DlpReport::default(),
            review: None,
            answerability: None,
            timings: ChatTimings {
                retrieval: Default::default(),
                generation_ms: 0.0,
                answerability_ms: 0.0,
                weighed_at_ms: 0.0,
                model_called_at_ms: None,
                total_ms: started.elapsed().as_secs_f64() * 1e3,
            },
            trace: None,
        })
    }
}

/// A review an answer waits for: its id, `after` (delivered, to be checked) or `before` (held
/// until released), and its status (`pending`, `approved`, `edited`, `rejected`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReviewMark {
    pub id: String,
    pub mode: String,
    pub status: String,
}

/// An answer decided before retrieval: see [`ChatEngine::respond`].
#[derive(Debug, Clone)]
pub struct Direct {
    pub kind: AnswerKind,
    pub answer: String,
    pub citations: Vec<Citation>,
}

struct Generation {
    context: Context,
    system: String,
    user: String,
}

impl Generation {
    fn citations(&self, used: &[usize]) -> Vec<Citation> {
        used.iter().map(|&n| Citation::from_passage(n, &self.context.passages[n - 1])).collect()
    }
}

/// A model call running in its own task; dropping it (an error on the way) aborts the task,
/// which drops the request and so cancels it at the provider.
struct Speculative<T> {
    started: Instant,
    running: tokio::task::JoinHandle<T>,
    /// Set once the request is handed to the HTTP client.
    sent: Arc<AtomicBool>,
}

impl<T: Send + 'static> Speculative<T> {
    /// Starts `call` with `generation`'s prompt in a task of its own, so the request goes out
    /// while the caller goes on.
    fn start<F, Fut>(call: F, generation: &Generation) -> Self
    where
        F: FnOnce(String, String, Arc<AtomicBool>) -> Fut,
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let sent = Arc::new(AtomicBool::new(false));
        let running = tokio::spawn(call(generation.system.clone(), generation.user.clone(), sent.clone()));
        Speculative { started: Instant::now(), running, sent }
    }

    async fn join(mut self) -> Called<T> {
        let result = match (&mut self.running).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => unreachable!("a speculative call is aborted only when cancelled or dropped: {error}"),
        };
        Called { started: self.started, result }
    }

    /// Stops the call and waits until its task has stopped, so whether the request had left
    /// is final: true when it had been handed to the HTTP client.
    async fn cancel(mut self) -> bool {
        self.running.abort();
        if let Err(error) = (&mut self.running).await
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
        self.sent.load(Ordering::Relaxed)
    }
}

impl<T> Drop for Speculative<T> {
    fn drop(&mut self) {
        self.running.abort();
    }
}

/// A model call `prepare` made, and when it started.
struct Called<T> {
    started: Instant,
    result: T,
}

/// A speculative call dropped, after it was sent, because the answer abstained: where it most
/// likely went, and its prompt's tokens (estimated; a provider bills a prompt it received).
struct Cancelled {
    recipient: crate::provider::Recipient,
    usage: Usage,
}

struct Prepared {
    started: Instant,
    user: String,
    question: String,
    conversation_id: Option<String>,
    standalone_query: String,
    lang: Lang,
    trace: Trace,
    extracted: Option<(String, Vec<Citation>)>,
    generation: Option<Generation>,
    /// A speculative call the evidence turned down.
    cancelled: Option<Cancelled>,
    generation_ms: f64,
    answerability_ms: f64,
    weighed_at_ms: f64,
    model_called_at_ms: Option<f64>,
    /// Tokens the follow-up condensation used.
    condense_usage: Option<Usage>,
    /// What data loss prevention did to the condensation's prompt.
    condense_dlp: DlpReport,
    /// The prompt version a generated answer carries.
    prompt_version: String,
}

impl Prepared {
    /// The extracted answer, or the no-answer reply when nothing relevant was found.
    fn fallback(&mut self, provider_errors: Vec<ProviderError>) -> Outcome {
        let (kind, answer, citations) = match self.extracted.take() {
            Some((body, citations)) => {
                (AnswerKind::Extracted, format!("{}\n\n{body}", extracted_label(self.lang)), citations)
            }
            None => (AnswerKind::NoAnswer, no_answer_text(self.lang).to_owned(), Vec::new()),
        };
        let outcome = Outcome {
            kind,
            answer,
            citations,
            prompt_version: None,
            model: None,
            provider: None,
            usage: None,
            provider_errors,
            dlp: DlpReport::default(),
        };
        match self.cancelled.take() {
            // The model was asked, then told to stop: its tokens and what it was sent count.
            Some(Cancelled { recipient, usage }) => Outcome {
                model: Some(recipient.model),
                provider: Some(recipient.provider),
                usage: Some(usage),
                dlp: DlpReport { redacted: recipient.redacted, ..DlpReport::default() },
                ..outcome
            },
            None => outcome,
        }
    }

    /// The model found no answer in the passages: the no-answer reply, citing nothing.
    fn not_covered(&self, prompt_version: String, model: String, provider: String) -> Outcome {
        Outcome {
            kind: AnswerKind::NoAnswer,
            answer: no_answer_text(self.lang).to_owned(),
            citations: Vec::new(),
            prompt_version: Some(prompt_version),
            model: Some(model),
            provider: Some(provider),
            usage: None,
            provider_errors: Vec::new(),
            dlp: DlpReport::default(),
        }
    }
}

struct Outcome {
    kind: AnswerKind,
    answer: String,
    citations: Vec<Citation>,
    prompt_version: Option<String>,
    model: Option<String>,
    provider: Option<String>,
    usage: Option<Usage>,
    provider_errors: Vec<ProviderError>,
    dlp: DlpReport,
}

/// How a streamed answer ended.
pub enum Streamed {
    Answered(Box<ChatAnswer>),
    /// The client left first: the model and the tokens used until then (estimated).
    Abandoned {
        model: Option<String>,
        provider: Option<String>,
        usage: Option<Usage>,
        dlp: DlpReport,
    },
}

/// What a streamed answer announces before its text.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamMetadata {
    pub kind: AnswerKind,
    pub standalone_query: String,
    pub lang: Lang,
    /// The passages the answer may cite, numbered as its markers (for a generated answer:
    /// the context given to the model).
    pub sources: Vec<Citation>,
    pub prompt_version: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ChatEvent {
    Metadata(StreamMetadata),
    Delta(String),
    Final(Box<ChatAnswer>),
    /// After the final answer: a person will check it.
    Review(ReviewMark),
    /// The pipeline failed after the stream started (the message is safe to show).
    Failed(String),
}

/// Removes invented citation markers from streamed text. Text after an unclosed `[` (and the
/// whitespace before it) is held back until the bracket closes, so every emitted delta is
/// final: the concatenated deltas equal the final answer.
pub struct MarkerFilter {
    pending: String,
    context_len: usize,
    pub used: Vec<usize>,
}

impl MarkerFilter {
    pub fn new(context_len: usize) -> Self {
        MarkerFilter { pending: String::new(), context_len, used: Vec::new() }
    }

    pub fn push(&mut self, text: &str) -> String {
        self.pending.push_str(text);
        let open = self.pending.rfind('[').filter(|&i| !self.pending[i..].contains(']'));
        let mut cut = match open {
            // Give up holding a bracket that is clearly not a citation marker.
            Some(i) if self.pending.len() - i <= 12 => i,
            _ => self.pending.len(),
        };
        cut = self.pending[..cut].trim_end().len();
        let ready: String = self.pending.drain(..cut).collect();
        self.validate(&ready)
    }

    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.validate(&rest)
    }

    fn validate(&mut self, text: &str) -> String {
        let (clean, used) = validate_markers(text, self.context_len);
        for n in used {
            if !self.used.contains(&n) {
                self.used.push(n);
            }
        }
        clean
    }
}

const FOLLOW_UP_MARKERS: [&str; 22] = [
    "it",
    "its",
    "that",
    "this",
    "those",
    "these",
    "they",
    "them",
    "there",
    "he",
    "she",
    "and",
    "what about",
    "eso",
    "esto",
    "ese",
    "esa",
    "ello",
    "y",
    "él",
    "ella",
    "ellos",
];

/// Deterministic follow-up condensation (used when no model is configured): a short question,
/// or one that leans on a pronoun, is joined to the previous question.
pub fn condense(previous: Option<&str>, question: &str) -> String {
    let Some(previous) = previous else { return question.trim().to_owned() };
    let lower = question.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let leans_on_context = words.len() <= 4
        || words.iter().any(|w| FOLLOW_UP_MARKERS.contains(w))
        || lower.starts_with("what about")
        || lower.starts_with("and ")
        || lower.starts_with("¿y ");
    if leans_on_context { format!("{} {}", previous.trim(), question.trim()) } else { question.trim().to_owned() }
}

#[cfg(test)]
mod tests {
    use super::{MarkerFilter, condense};
    use crate::answer::validate_markers;

    #[test]
    fn streamed_deltas_add_up_to_the_validated_answer() {
        let raw = "Vacation is 25 days [1]. Carry over 5 [7]. See [2, 9] and [a link](x).";
        for split in 1..raw.len() {
            if !raw.is_char_boundary(split) {
                continue;
            }
            let mut filter = MarkerFilter::new(3);
            let mut out = filter.push(&raw[..split]);
            out.push_str(&filter.push(&raw[split..]));
            out.push_str(&filter.finish());
            assert_eq!(out, validate_markers(raw, 3).0, "split at {split}");
            assert_eq!(filter.used, [1, 2]);
        }
    }

    #[test]
    fn follow_ups_are_joined_to_the_previous_question() {
        assert_eq!(condense(None, " How many vacation days? "), "How many vacation days?");
        let previous = Some("How many vacation days do I get?");
        assert_eq!(condense(previous, "And in Spain?"), "How many vacation days do I get? And in Spain?");
        assert_eq!(
            condense(previous, "Can I carry them over?"),
            "How many vacation days do I get? Can I carry them over?"
        );
        assert_eq!(
            condense(previous, "What is the minimum password length for laptops?"),
            "What is the minimum password length for laptops?"
        );
    }
}
