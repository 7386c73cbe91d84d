//! The answer pipeline shared by `POST /v1/chat` and `lore ask`: condense a follow-up into a
//! standalone query, retrieve with the caller's scope, abstain when nothing is relevant, and
//! otherwise answer with citations (extractively while no model provider is configured).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use lore_core::acl::AccessScope;
use lore_core::lang::Lang;
use serde::Serialize;

use crate::answer::{AnswerKind, Citation, extracted_label, extractive_answer, no_answer_text};
use crate::conversations::Conversations;
use crate::retrieval::{RetrievalTimings, Retriever};

/// Passages given to the answer step.
const CONTEXT_PASSAGES: usize = 6;
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
    pub timings: ChatTimings,
}

pub struct ChatEngine {
    retriever: Arc<Retriever>,
    conversations: Mutex<Conversations>,
}

impl ChatEngine {
    pub fn new(retriever: Arc<Retriever>, conversations: Conversations) -> Self {
        ChatEngine { retriever, conversations: Mutex::new(conversations) }
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
        let standalone_query = condense(previous.as_deref(), question);
        let lang = Lang::detect(question);
        let retrieved = self.retriever.hybrid(&standalone_query, scope, CONTEXT_PASSAGES).await?;
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
        let (kind, answer, citations) = match extracted {
            Some((body, citations)) => {
                (AnswerKind::Extracted, format!("{}\n\n{body}", extracted_label(lang)), citations)
            }
            None => (AnswerKind::NoAnswer, no_answer_text(lang).to_owned(), Vec::new()),
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
            prompt_version: None,
            model: None,
            timings: ChatTimings { retrieval: retrieved.timings, total_ms: started.elapsed().as_secs_f64() * 1e3 },
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
