//! The answer pipeline shared by `POST /v1/chat` and `lore ask`: condense a follow-up into a
//! standalone query, retrieve with the caller's scope, abstain when nothing is relevant, and
//! otherwise answer with citations: written by the model provider chain when one is configured,
//! extracted from the passages when none is or all providers fail.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use lore_core::acl::AccessScope;
use lore_core::config::ChatConfig;
use lore_core::lang::Lang;
use serde::Serialize;

use crate::answer::{AnswerKind, Citation, extracted_label, extractive_answer, no_answer_text, validate_markers};
use crate::conversations::Conversations;
use crate::prompts::Prompts;
use crate::provider::{ProviderChain, ProviderError, Usage};
use crate::retrieval::{Passage, RetrievalTimings, Retriever};

/// Sentences in an extractive answer.
const EXTRACTED_SENTENCES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Missing, or owned by someone else: both look the same to the caller.
    #[error("conversation not found")]
    ConversationNotFound,
    #[error(transparent)]
    Core(#[from] lore_core::Error),
    #[error("conversation store: {0}")]
    Store(#[from] rusqlite::Error),
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatTimings {
    pub retrieval: RetrievalTimings,
    /// Time spent waiting for model providers (condensation and answer).
    pub generation_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChatAnswer {
    pub conversation_id: String,
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
    pub usage: Option<Usage>,
    /// Why the answer is extractive although providers are configured (all of them failed).
    pub provider_errors: Vec<ProviderError>,
    pub timings: ChatTimings,
}

pub struct ChatEngine {
    retriever: Arc<Retriever>,
    conversations: Mutex<Conversations>,
    prompts: Prompts,
    providers: ProviderChain,
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
            retriever,
            conversations: Mutex::new(conversations),
            prompts: Prompts::load(config.prompts_dir.as_deref())?,
            providers: ProviderChain::new(&config.providers)?,
            config: config.clone(),
        })
    }

    pub fn prompts(&self) -> &Prompts {
        &self.prompts
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
    async fn standalone_query(&self, previous: Option<&str>, question: &str) -> (String, f64) {
        let Some(previous) = previous else { return (question.trim().to_owned(), 0.0) };
        if self.providers.is_empty() {
            return (condense(Some(previous), question), 0.0);
        }
        let started = Instant::now();
        let prompt = self.prompts.condense.render(&[("history", &format!("User: {previous}")), ("question", question)]);
        let system = self.prompts.system.render(&[("company", &self.config.company)]);
        let rewritten = match (system, prompt) {
            (Ok(system), Ok(prompt)) => self.providers.complete(&system, &prompt).await.ok(),
            _ => None,
        };
        let elapsed = started.elapsed().as_secs_f64() * 1e3;
        match rewritten.map(|c| c.text.lines().next().unwrap_or_default().trim().to_owned()) {
            Some(query) if !query.is_empty() => (query, elapsed),
            _ => (condense(Some(previous), question), elapsed),
        }
    }

    pub fn conversations(&self) -> std::sync::MutexGuard<'_, Conversations> {
        self.conversations.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn ask(
        &self,
        user: &str,
        scope: &AccessScope,
        question: &str,
        conversation_id: Option<&str>,
        earlier_question: Option<&str>,
    ) -> Result<ChatAnswer, ChatError> {
        let started = Instant::now();
        let previous = match conversation_id {
            Some(id) => {
                let messages = self.conversations().messages(id, user)?.ok_or(ChatError::ConversationNotFound)?;
                messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone())
            }
            None => earlier_question.map(str::to_owned),
        };
        let (standalone_query, mut generation_ms) = self.standalone_query(previous.as_deref(), question).await;
        let lang = Lang::detect(question);
        let retrieved = self.retriever.hybrid(&standalone_query, scope, self.config.context_passages).await?;
        let relevant = retrieved.best_dense_score.is_some_and(|score| score >= self.retriever.config().min_dense_score)
            && !retrieved.passages.is_empty();
        // Relevance needs both signals: semantic closeness of the best permitted passage, and
        // at least one passage sentence sharing a content word with the question (the
        // English-only embedding model scores unrelated Spanish texts as fairly close).
        let extracted = if relevant {
            Some(extractive_answer(&standalone_query, &retrieved.passages, EXTRACTED_SENTENCES))
                .filter(|(_, citations)| !citations.is_empty())
        } else {
            None
        };
        let mut prompt_version = None;
        let mut model = None;
        let mut usage = None;
        let mut provider_errors = Vec::new();
        let (kind, answer, citations) = match extracted {
            None => (AnswerKind::NoAnswer, no_answer_text(lang).to_owned(), Vec::new()),
            Some((body, citations)) => {
                let generated = if self.providers.is_empty() {
                    None
                } else {
                    let context = self.context(&retrieved.passages);
                    let language = match lang {
                        Lang::En => "English",
                        Lang::Es => "Spanish",
                    };
                    let system = self.prompts.system.render(&[("company", &self.config.company)])?;
                    let user = self.prompts.answer.render(&[
                        ("language", language),
                        ("context", &context.text),
                        ("question", question),
                    ])?;
                    let started = Instant::now();
                    let result = self.providers.complete(&system, &user).await;
                    generation_ms += started.elapsed().as_secs_f64() * 1e3;
                    match result {
                        Ok(completion) => Some((completion, context)),
                        Err(errors) => {
                            provider_errors = errors;
                            None
                        }
                    }
                };
                match generated {
                    Some((completion, context)) => {
                        let (text, used) = validate_markers(&completion.text, context.passages.len());
                        let citations =
                            used.iter().map(|&n| Citation::from_passage(n, &context.passages[n - 1])).collect();
                        prompt_version = Some(self.prompts.answer_version());
                        model = Some(completion.model);
                        usage = completion.usage;
                        (AnswerKind::Generated, text, citations)
                    }
                    None => (AnswerKind::Extracted, format!("{}\n\n{body}", extracted_label(lang)), citations),
                }
            }
        };

        let conversation_id = {
            let store = self.conversations();
            let id = match conversation_id {
                Some(id) => id.to_owned(),
                None => store.create(user, question)?,
            };
            store.append(&id, "user", question, &serde_json::Value::Array(vec![]))?;
            store.append(&id, "assistant", &answer, &serde_json::to_value(&citations).unwrap_or_default())?;
            id
        };
        Ok(ChatAnswer {
            conversation_id,
            kind,
            answer,
            citations,
            standalone_query,
            lang,
            prompt_version,
            model,
            usage,
            provider_errors,
            timings: ChatTimings {
                retrieval: retrieved.timings,
                generation_ms,
                total_ms: started.elapsed().as_secs_f64() * 1e3,
            },
        })
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
    use super::condense;

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
