//! The Lore service: the HTTP API over retrieval, chat, identity and document management,
//! and the background workers that turn uploads into indexed documents.

pub mod http;
pub mod lock;
pub mod policy;
pub mod privacy;
pub mod state;
pub mod sync;
pub mod upload;
pub mod usage;
pub mod webhooks;
pub mod worker;

pub use state::AppState;
