//! Integration tests of lore-ingest (one test binary).

mod ingest;
mod loaders;
mod pdf_coverage;
mod support;
