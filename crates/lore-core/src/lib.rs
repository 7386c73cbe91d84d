//! Shared core of Lore: document and chunk types, principals and ACLs, configuration,
//! the embedder, the document catalog (SQLite) and the two search indexes that ingest
//! writes and chat reads.

pub mod acl;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod db;
pub mod embed;
pub mod env;
pub mod error;
pub mod index;
pub mod jobs;
pub mod keys;
pub mod lang;
pub mod role;
pub mod types;

pub use error::{Error, Result};
