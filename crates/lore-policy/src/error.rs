//! The one error type of the policy stores, so the server maps each failure to a status in one
//! place: a bad input (`Invalid`) is the caller's to fix, a review decided twice (`AlreadyDecided`)
//! is a conflict, and the rest are the server's.

use crate::review::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The application database (SQLite or PostgreSQL) failed.
    #[error("policy database: {0}")]
    Database(#[from] lore_db::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("the review was already decided: it is {0}")]
    AlreadyDecided(Status),
    #[error("policy store: {0}")]
    Other(String),
}
