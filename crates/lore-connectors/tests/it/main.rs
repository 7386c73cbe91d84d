//! Each connector against a loopback server that implements the documented subset of its
//! source's API with realistic fixtures: pagination, throttling with 429, an item deleted and
//! one renamed between two syncs, permissions changed between two syncs, malformed responses.

mod confluence;
mod git;
mod sharepoint;
mod web;
mod zendesk;
