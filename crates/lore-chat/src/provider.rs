//! Model providers: any OpenAI-compatible chat-completions endpoint through `async-openai`,
//! in a chain: the primary, then fallbacks. Transient errors (timeouts, connection failures,
//! 408, 429, 5xx) are retried with exponential backoff before moving on; permanent ones
//! (other 4xx, malformed responses) move on at once.
//!
//! Data loss prevention happens here, per provider, because the chain may fall back from an
//! on-premises model (`dlp = "off"`) to an external one: each provider's `dlp` mode decides what
//! its request carries. `redact` swaps personal data and secrets for typed placeholders in the
//! whole prompt (question, condensed follow-up, passages, earlier turns) and puts the values back
//! in the reply, streamed or not; the mapping lives in that call only. `block` refuses to send a
//! prompt holding any, which moves the chain on like a permanent error.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::types::chat::{
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    CreateChatCompletionRequestArgs,
};
use lore_core::config::ProviderConfig;
use lore_policy::dlp::{self, Mode, Redactor, StreamRestorer};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Worth retrying: timeouts, connection failures, 408, 429, 5xx.
    Transient,
    /// The request was too long for the model's context window.
    ContextTooLong,
    /// Retrying the same request will not help (bad key, bad request, malformed reply).
    Permanent,
    /// Not sent: the provider has `dlp = "block"` and the prompt holds personal data or secrets.
    Blocked,
}

#[derive(Debug, Clone, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{provider}: {kind:?}: {message}")]
pub struct ProviderError {
    pub provider: String,
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Counted by Lore (streamed answers), not reported by the provider.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl Usage {
    /// Both calls' tokens (either may be missing); estimated if either part is.
    pub fn sum(a: Option<Usage>, b: Option<Usage>) -> Option<Usage> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Usage {
                prompt_tokens: a.prompt_tokens.saturating_add(b.prompt_tokens),
                completion_tokens: a.completion_tokens.saturating_add(b.completion_tokens),
                estimated: a.estimated || b.estimated,
            }),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Completion {
    pub text: String,
    pub provider: String,
    pub model: String,
    pub usage: Option<Usage>,
    /// Attempts made across the chain, including failed ones.
    pub attempts: u32,
    /// Values the provider that answered received as placeholders, per kind.
    pub redacted: BTreeMap<String, usize>,
}

/// What data loss prevention did to the prompts of one answer, per kind of value (e-mail, phone,
/// IBAN…): never the values. Counted per model call and added up over the calls (a follow-up's
/// condensation and the answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DlpReport {
    /// Values replaced by placeholders before a prompt left.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub redacted: BTreeMap<String, usize>,
    /// Values that kept a prompt from a provider with `dlp = "block"`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub blocked: BTreeMap<String, usize>,
}

impl DlpReport {
    pub fn is_empty(&self) -> bool {
        self.redacted.is_empty() && self.blocked.is_empty()
    }

    pub fn add(&mut self, other: &DlpReport) {
        for (mine, theirs) in [(&mut self.redacted, &other.redacted), (&mut self.blocked, &other.blocked)] {
            for (kind, count) in theirs {
                *mine.entry(kind.clone()).or_default() += count;
            }
        }
    }

    /// The report of one model call: what the provider that answered received redacted, and,
    /// when any provider refused the prompt, what it holds.
    pub fn of_call(redacted: &BTreeMap<String, usize>, errors: &[ProviderError], prompt: [&str; 2]) -> DlpReport {
        let blocked = if errors.iter().any(|e| e.kind == ErrorKind::Blocked) {
            named(dlp::counts(prompt))
        } else {
            BTreeMap::new()
        };
        DlpReport { redacted: redacted.clone(), blocked }
    }
}

fn named(counts: BTreeMap<dlp::Kind, usize>) -> BTreeMap<String, usize> {
    counts.into_iter().map(|(kind, count)| (kind.as_str().to_owned(), count)).collect()
}

struct Provider {
    config: ProviderConfig,
    client: Client<OpenAIConfig>,
}

pub struct ProviderChain {
    providers: Vec<Provider>,
}

pub fn classify(error: &OpenAIError) -> ErrorKind {
    match error {
        OpenAIError::Reqwest(e) if e.is_timeout() || e.is_connect() || e.is_request() => ErrorKind::Transient,
        OpenAIError::Reqwest(e) => match e.status() {
            Some(status) if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 => {
                ErrorKind::Transient
            }
            Some(_) => ErrorKind::Permanent,
            None => ErrorKind::Transient,
        },
        OpenAIError::ApiError(response) => {
            let status = response.status_code.as_u16();
            let code = response.api_error.code.as_deref().unwrap_or_default();
            if code == "context_length_exceeded" || response.api_error.message.contains("maximum context length") {
                ErrorKind::ContextTooLong
            } else if status == 408 || status == 429 || status >= 500 {
                ErrorKind::Transient
            } else {
                ErrorKind::Permanent
            }
        }
        OpenAIError::StreamError(_) => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

impl ProviderChain {
    pub fn new(configs: &[ProviderConfig]) -> Result<Self, lore_core::Error> {
        let mut providers = Vec::with_capacity(configs.len());
        for config in configs {
            let mut openai = OpenAIConfig::new().with_api_base(config.base_url.trim_end_matches('/'));
            if let Some(variable) = &config.api_key_env {
                let key = std::env::var(variable).map_err(|_| {
                    lore_core::Error::Config(format!(
                        "provider {:?}: environment variable {variable} (api_key_env) is not set",
                        config.name
                    ))
                })?;
                openai = openai.with_api_key(key);
            }
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs_f64(config.timeout_secs))
                .connect_timeout(Duration::from_secs_f64(config.connect_timeout_secs))
                .build()
                .map_err(|e| lore_core::Error::Config(format!("provider {:?}: {e}", config.name)))?;
            // async-openai's default transport retries 429/5xx by itself; this chain decides
            // retries (and moves to fallbacks), so the client gets the bare transport.
            let client = Client::with_config(openai).with_http_service(ReqwestService::new(http));
            providers.push(Provider { config: config.clone(), client });
        }
        Ok(ProviderChain { providers })
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Runs the chain. Returns every error met when all providers failed.
    pub async fn complete(&self, system: &str, user: &str) -> Result<Completion, Vec<ProviderError>> {
        self.complete_noting(system, user, &AtomicBool::new(false)).await
    }

    /// [`complete`](Self::complete), setting `sent` once a request is handed to the HTTP client
    /// (a call cancelled before that sent nothing).
    pub async fn complete_noting(
        &self,
        system: &str,
        user: &str,
        sent: &AtomicBool,
    ) -> Result<Completion, Vec<ProviderError>> {
        let (mut completion, attempts) = self.run(|i| self.providers[i].complete_once(system, user, sent)).await?;
        completion.attempts = attempts;
        Ok(completion)
    }

    /// Where a call with this prompt goes first: the first provider whose `dlp` mode lets it
    /// out, with its configured model and what it receives as placeholders. What a call that
    /// was cancelled after it was sent and before it answered most likely went to (a failure
    /// may have moved it on to a fallback, which cannot be known once it is dropped).
    pub fn recipient(&self, system: &str, user: &str) -> Option<Recipient> {
        self.providers.iter().find_map(|provider| {
            provider.outgoing(system, user).ok().map(|outgoing| Recipient {
                provider: provider.config.name.clone(),
                model: provider.config.model.clone(),
                redacted: outgoing.redacted(),
            })
        })
    }

    /// The retry/fallback policy shared by [`complete`](Self::complete) and
    /// [`stream`](Self::stream): each provider in order, transient errors retried with
    /// exponential backoff, permanent ones moving on at once. Returns the result and the
    /// number of attempts made.
    async fn run<T, F, Fut>(&self, mut attempt_once: F) -> Result<(T, u32), Vec<ProviderError>>
    where
        F: FnMut(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let mut errors = Vec::new();
        let mut attempts = 0;
        for (index, provider) in self.providers.iter().enumerate() {
            let config = &provider.config;
            let mut backoff = Duration::from_millis(config.initial_backoff_ms);
            for attempt in 0..=config.max_retries {
                attempts += 1;
                match attempt_once(index).await {
                    Ok(value) => return Ok((value, attempts)),
                    Err(error) => {
                        tracing::warn!(provider = %config.name, attempt, kind = ?error.kind, message = %error.message, "model call failed");
                        let retry = error.kind == ErrorKind::Transient && attempt < config.max_retries;
                        errors.push(error);
                        if !retry {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
            }
        }
        Err(errors)
    }
}

/// The provider a prompt goes to first: see [`ProviderChain::recipient`].
#[derive(Debug, Clone)]
pub struct Recipient {
    pub provider: String,
    pub model: String,
    pub redacted: BTreeMap<String, usize>,
}

/// A started streaming completion: the first content already arrived, the rest follows.
pub struct StartedStream {
    pub provider: String,
    pub model: String,
    pub first: String,
    pub rest: futures::stream::BoxStream<'static, Result<String, ProviderError>>,
    pub attempts: u32,
    /// Values the provider received as placeholders, per kind.
    pub redacted: BTreeMap<String, usize>,
}

impl ProviderChain {
    /// Like [`complete`](Self::complete) but streaming. A provider counts as answering once its
    /// first chunk arrived; failures before that are retried and fall back as usual. Dropping
    /// the returned stream closes the connection to the provider (cancels generation).
    pub async fn stream(&self, system: &str, user: &str) -> Result<StartedStream, Vec<ProviderError>> {
        self.stream_noting(system, user, &AtomicBool::new(false)).await
    }

    /// [`stream`](Self::stream), setting `sent` as [`complete_noting`](Self::complete_noting) does.
    pub async fn stream_noting(
        &self,
        system: &str,
        user: &str,
        sent: &AtomicBool,
    ) -> Result<StartedStream, Vec<ProviderError>> {
        let (mut started, attempts) = self.run(|i| self.providers[i].start_stream(system, user, sent)).await?;
        started.attempts = attempts;
        Ok(started)
    }
}

/// A prompt as one provider may receive it.
struct Outgoing<'a> {
    system: Cow<'a, str>,
    user: Cow<'a, str>,
    redactor: Option<Redactor>,
}

impl Outgoing<'_> {
    fn redacted(&self) -> BTreeMap<String, usize> {
        self.redactor.as_ref().map(|r| named(r.counts())).unwrap_or_default()
    }
}

impl Provider {
    /// The prompt under this provider's `dlp` mode, or the refusal to send it.
    fn outgoing<'a>(&self, system: &'a str, user: &'a str) -> Result<Outgoing<'a>, ProviderError> {
        match self.config.dlp {
            Mode::Off => Ok(Outgoing { system: Cow::Borrowed(system), user: Cow::Borrowed(user), redactor: None }),
            Mode::Redact => {
                let mut redactor = Redactor::new();
                let system = redactor.redact(system);
                let user = redactor.redact(user);
                Ok(Outgoing { system: Cow::Owned(system), user: Cow::Owned(user), redactor: Some(redactor) })
            }
            Mode::Block => {
                let counts = dlp::counts([system, user]);
                if counts.is_empty() {
                    return Ok(Outgoing { system: Cow::Borrowed(system), user: Cow::Borrowed(user), redactor: None });
                }
                let found: Vec<String> = counts.iter().map(|(kind, n)| format!("{n} {}", kind.as_str())).collect();
                Err(ProviderError {
                    provider: self.config.name.clone(),
                    kind: ErrorKind::Blocked,
                    message: format!("not sent (dlp = \"block\"): the prompt holds {}", found.join(", ")),
                })
            }
        }
    }

    fn request(
        &self,
        system: &str,
        user: &str,
    ) -> Result<async_openai::types::chat::CreateChatCompletionRequest, ProviderError> {
        let config = &self.config;
        let messages = vec![
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage::from(system)),
            ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage::from(user)),
        ];
        let mut request = CreateChatCompletionRequestArgs::default();
        request.model(&config.model).messages(messages);
        if let Some(temperature) = config.temperature {
            request.temperature(temperature);
        }
        if let Some(max_tokens) = config.max_tokens {
            request.max_completion_tokens(max_tokens);
        }
        request.build().map_err(|e| ProviderError {
            provider: config.name.clone(),
            kind: ErrorKind::Permanent,
            message: e.to_string(),
        })
    }

    async fn start_stream(&self, system: &str, user: &str, sent: &AtomicBool) -> Result<StartedStream, ProviderError> {
        use futures::StreamExt;
        let name = self.config.name.clone();
        let fail = |kind, message: String| ProviderError { provider: name.clone(), kind, message };
        let outgoing = self.outgoing(system, user)?;
        let redacted = outgoing.redacted();
        let request = self.request(&outgoing.system, &outgoing.user)?;
        sent.store(true, Ordering::Relaxed);
        let mut stream =
            self.client.chat().create_stream(request).await.map_err(|e| fail(classify(&e), e.to_string()))?;
        // Skip role-only chunks until the first content arrives.
        let (first, model) = loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    let model = chunk.model.clone();
                    if let Some(text) = chunk.choices.into_iter().next().and_then(|c| c.delta.content)
                        && !text.is_empty()
                    {
                        break (text, model);
                    }
                }
                Some(Err(e)) => return Err(fail(classify(&e), e.to_string())),
                None => return Err(fail(ErrorKind::Permanent, "stream ended before any content".into())),
            }
        };
        let provider = self.config.name.clone();
        let rest = stream
            .filter_map(move |item| {
                let provider = provider.clone();
                async move {
                    match item {
                        Ok(chunk) => chunk.choices.into_iter().next().and_then(|c| c.delta.content).map(Ok),
                        Err(e) => Some(Err(ProviderError { provider, kind: classify(&e), message: e.to_string() })),
                    }
                }
            })
            .boxed();
        let (first, rest) = match outgoing.redactor {
            Some(redactor) => {
                let mut restorer = redactor.into_stream_restorer();
                (restorer.push(&first), restoring(rest, restorer))
            }
            None => (first, rest),
        };
        Ok(StartedStream { provider: self.config.name.clone(), model, first, rest, attempts: 0, redacted })
    }

    async fn complete_once(&self, system: &str, user: &str, sent: &AtomicBool) -> Result<Completion, ProviderError> {
        let config = &self.config;
        let fail = |kind, message: String| ProviderError { provider: config.name.clone(), kind, message };
        let outgoing = self.outgoing(system, user)?;
        let request = self.request(&outgoing.system, &outgoing.user)?;
        sent.store(true, Ordering::Relaxed);
        let response = self.client.chat().create(request).await.map_err(|e| fail(classify(&e), e.to_string()))?;
        let text = response
            .choices
            .into_iter()
            .next()
            .and_then(|choice| choice.message.content)
            .ok_or_else(|| fail(ErrorKind::Permanent, "reply has no message content".into()))?;
        let redacted = outgoing.redacted();
        let text = match &outgoing.redactor {
            Some(redactor) => redactor.restore(&text),
            None => text,
        };
        Ok(Completion {
            redacted,
            text,
            provider: config.name.clone(),
            model: response.model,
            usage: response.usage.map(|u| Usage {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                estimated: false,
            }),
            attempts: 0,
        })
    }
}

/// A redacted stream's text with the values put back; what the restorer holds back at the end
/// (an unclosed `[`) comes out last.
fn restoring(
    rest: futures::stream::BoxStream<'static, Result<String, ProviderError>>,
    restorer: StreamRestorer,
) -> futures::stream::BoxStream<'static, Result<String, ProviderError>> {
    use futures::StreamExt;
    futures::stream::unfold((rest, Some(restorer)), |(mut rest, mut restorer)| async move {
        loop {
            let active = restorer.as_mut()?;
            match rest.next().await {
                // A chunk held back whole (it ends inside a placeholder) shows nothing yet.
                Some(Ok(text)) => {
                    let shown = active.push(&text);
                    if !shown.is_empty() {
                        return Some((Ok(shown), (rest, restorer)));
                    }
                }
                Some(Err(error)) => return Some((Err(error), (rest, restorer))),
                None => {
                    let tail = restorer.take()?.finish();
                    return (!tail.is_empty()).then_some((Ok(tail), (rest, None)));
                }
            }
        }
    })
    .boxed()
}
