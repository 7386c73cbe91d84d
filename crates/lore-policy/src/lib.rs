//! Policy checks on what Lore sends out and what it may be used for. This crate is a leaf: it works
//! on plain text, plain vectors and its own tables, and knows nothing of providers, requests or
//! indexes, so the server decides when a check applies (for example, DLP only for providers marked
//! external) and this crate only says what the text contains or which rule it meets.
//!
//! - [`dlp`]: detectors for personal data and secrets, and the per-request [`dlp::Redactor`] that
//!   swaps them for typed placeholders before text leaves for an external model.
//! - [`config`]: the `[policy]` section of `lore.toml`: the approved-use notice, use rules, review
//!   rules and verified answers.
//! - [`rules`]: use rules compiled once ([`rules::UsePolicies`]), answering "may this person ask
//!   this?" before any retrieval or model call, with the message to show instead of an answer.
//! - [`review`]: the queue of critical answers a knowledge manager approves, edits or rejects,
//!   after delivery or before it ([`review::ReviewStore`]).
//! - [`verified`]: answers a knowledge manager has vouched for, matched to new questions by
//!   embedding similarity from memory ([`verified::VerifiedStore`]), and the calibration of that
//!   similarity threshold on labelled pairs.
//! - [`assistants`]: each department's assistant (name, greeting, tone, instructions), every
//!   edit a new version named in the prompt version of the answers written under it.
//! - [`error`]: the one error type of the stores.
//!
//! The stores keep their tables in the application database (SQLite in the embedded default,
//! PostgreSQL in scale-out) through [`lore_db`]: `open(path)` for the embedded file, `open_in` for
//! a [`lore_db::Database`] shared with the other stores. They name their tables so they cannot
//! clash with those of other crates.

pub mod assistants;
pub mod config;
pub mod dlp;
pub mod error;
pub mod review;
pub mod rules;
pub mod verified;

pub use error::Error;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use lore_db::{Database, Location};

/// The embedded database file at `path`, for the stores' SQLite constructors. Its connections
/// wait for other writers instead of failing (WAL, a busy timeout): the catalog database is
/// shared with other stores and, during a rolling restart, with another server process.
fn open_sqlite(path: &Path) -> Result<Database, Error> {
    Ok(Database::open(&Location::Sqlite(path.to_owned()))?)
}

/// A poisoned lock only means another request panicked mid-call; the database rolled its
/// transaction back, so what the lock guards is still good.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 128 random bits as 32 hex digits: ids that can be shown in links without revealing order or
/// volume.
fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
