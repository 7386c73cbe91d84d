//! Retrieval and grounded answers: permission-filtered hybrid search over both indexes,
//! fusion, answers and conversations.

pub mod answer;
pub mod answerability;
pub mod chat;
pub mod conversations;
pub mod feedback;
pub mod fusion;
pub mod prompts;
pub mod provider;
pub mod retrieval;
#[cfg(feature = "test-provider")]
pub mod testing;

pub use chat::{ChatAnswer, ChatEngine, ChatError, Direct, Question, ReviewMark, Trace};
pub use retrieval::{HybridResults, Passage, Retriever, SearchResults};
