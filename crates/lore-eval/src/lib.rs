//! Evaluation of retrieval and answers against golden question sets: sets and importers of
//! public formats, an in-process (or remote) runner, metrics, reports and the regression gate.
//!
//! A run ingests the set's corpus into a cached data folder, asks every question as its asker
//! in each retrieval mode (hybrid, BM25-only, dense-only), scores retrieval, answers,
//! citations and permissions, and compares the summary with a committed baseline.

pub mod calibrate;
pub mod categories;
pub mod cli;
pub mod corpus;
pub mod error;
pub mod gate;
pub mod import;
pub mod judge;
pub mod metrics;
pub mod remote;
pub mod report;
pub mod runner;
pub mod set;
pub mod text;
pub mod verified;

pub use error::EvalError;
pub use runner::{CaseResult, RunOptions, RunResult};
pub use set::{Asker, Case, EvalSet, Relevant, SetManifest};
