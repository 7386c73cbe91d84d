//! The HTTP API end to end: a real server on a loopback port, with the real embedding model,
//! indexes and database; model and identity providers are loopback servers speaking their
//! protocols. One module per resource; fixtures and helpers are in `support`.

mod answers;
mod browser;
mod chat;
mod collections;
mod connectors;
mod console;
mod conversations;
mod dedup;
mod dlp;
mod documents;
mod feedback;
mod generation;
mod keys;
mod openai;
mod operations;
mod policy;
mod postgres;
mod privacy;
mod refusals;
mod retrieval;
mod roles;
mod search;
mod suggest;
mod support;
mod tokens;
mod usage;
mod web;
mod webhooks;
