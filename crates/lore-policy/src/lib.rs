//! Policy checks on what Lore sends out and what it may be used for. This crate is a leaf: it works
//! on plain text and knows nothing of providers, requests or storage, so the server decides when a
//! check applies (for example, DLP only for providers marked external) and this crate only says
//! what the text contains.
//!
//! - [`dlp`]: detectors for personal data and secrets, and the per-request [`dlp::Redactor`] that
//!   swaps them for typed placeholders before text leaves for an external model.

pub mod dlp;
