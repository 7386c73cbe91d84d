//! Retrieval and (with the chat issue) grounded answers. For now: permission-filtered BM25
//! and dense search over both indexes, the first consumer of what ingest writes.

pub mod retrieval;

pub use retrieval::{Hit, Retriever, SearchResults};
