//! `lore migrate --to <config>`: an embedded data folder (SQLite, qdrant-edge, Tantivy) copied
//! into the scale-out engines the target configuration names (PostgreSQL and a Qdrant
//! server). Every table is copied row for row into an empty database; every chunk goes to
//! Qdrant with the vector the catalog stored (nothing is embedded again) and its BM25 terms;
//! then the counts are compared and the consistency check runs on the target. A run that
//! stopped half way is finished by running it again; a target holding other data is refused.

use std::path::PathBuf;
use std::process::ExitCode;

use lore_core::catalog::Catalog;
use lore_core::config::{Config, VectorStoreConfig};
use lore_core::index::Indexes;
use lore_core::jobs::{JobState, JobStore};
use lore_server::lock::{DataDirLock, LockError};

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// The target configuration: `[database] url` (PostgreSQL, empty) and `[vector_store]
    /// kind = "qdrant"`. The source is this command's own configuration (`--config`,
    /// `--data-dir`), an embedded data folder.
    #[arg(long)]
    to: PathBuf,
}

pub async fn run(args: MigrateArgs, source: &Config) -> anyhow::Result<ExitCode> {
    if source.database.url.is_some() || !matches!(source.vector_store, VectorStoreConfig::Embedded) {
        anyhow::bail!(
            "the source must be an embedded data folder (no database.url, vector_store embedded); \
             is LORE_DATABASE_URL or QDRANT_URL set for the target? Put the target's settings in --to's file"
        );
    }
    let target = Config::load(Some(&args.to))?;
    if target.database.url.is_none() || !matches!(target.vector_store, VectorStoreConfig::Qdrant { .. }) {
        anyhow::bail!(
            "{}: the target needs [database] url (PostgreSQL) and [vector_store] kind = \"qdrant\"",
            args.to.display()
        );
    }
    if target.embedding.dimension != source.embedding.dimension {
        anyhow::bail!("the target's embedding model differs from the source's: the stored vectors would not fit");
    }
    let _lock = match DataDirLock::acquire(&source.data_dir) {
        Ok(lock) => lock,
        Err(LockError::Held { server: Some(server), .. }) => {
            anyhow::bail!("lore serve ({}) holds {}; stop it first", server.url, source.data_dir.display())
        }
        Err(error) => return Err(error.into()),
    };
    let source_db = source.open_database()?;
    let unfinished: usize = JobStore::open_in(&source_db)?
        .counts()?
        .iter()
        .filter(|(state, _)| matches!(state, JobState::Queued | JobState::Processing))
        .map(|(_, n)| n)
        .sum();
    if unfinished > 0 {
        anyhow::bail!("{unfinished} upload job(s) are not finished: let `lore serve` index them, then migrate");
    }
    let mut source_catalog = Catalog::open_in(&source_db)?;
    let source_indexes = Indexes::open(source, true).await?;
    if !source_indexes.recover(&mut source_catalog).await?.is_empty() {
        println!("rolled back an interrupted ingest in the source first");
    }
    drop(source_indexes);

    // Widget tokens signed with the folder's embed secret must keep verifying on every replica:
    // the secret goes into the source catalog's meta (which the embedded mode does not read
    // for it) and is copied with the rest.
    if let Ok(secret) = std::fs::read_to_string(source.data_dir.join("embed-secret")) {
        source_catalog.init_meta(lore_server::http::auth::EMBED_SECRET_KEY, secret.trim())?;
    }

    // BM25 terms in Qdrant are weighted with the corpus's average lengths, measured here on up
    // to 20,000 chunks spread over the catalog and recorded in it (so the copy carries them).
    let target_indexes = Indexes::open(&target, true).await?;
    let ids = source_catalog.chunk_ids()?;
    let step = ids.len().div_ceil(20_000).max(1);
    let sample: Vec<String> = ids.iter().step_by(step).cloned().collect();
    target_indexes.settle_keyword_averages(&source_catalog, &source_catalog.chunks_by_id(&sample)?)?;

    let target_db = target.open_database()?;
    lore_server::state::open_every_store(&target, &target_db)?;
    let copied = lore_db::copy::copy_sqlite_to_postgres(&source_db, &target_db)?;
    for (table, rows) in &copied.tables {
        println!("copied {table}: {rows} row(s)");
    }
    for table in &copied.already_there {
        println!("already there: {table} (the same rows)");
    }
    for table in &copied.skipped {
        println!("not copied: {table} (no such table in the target)");
    }

    // Points are written by chunk id: writing them again (a rerun after an interruption) changes
    // nothing, and points of other data would fail the consistency check below.
    let points = lore_ingest::migrate::copy_vectors(&source_catalog, &target_indexes, |done, total| {
        eprint!("\rvectors: {done} of {total} chunks");
    })
    .await?;
    if points > 0 {
        eprintln!();
    }
    let target_catalog = Catalog::open_in(&target_db)?;
    let report = target_indexes.check_consistency(&target_catalog).await?;
    let problems = report.problems();
    if !problems.is_empty() {
        for problem in &problems {
            println!("consistency: {problem}");
        }
        anyhow::bail!("the target is not consistent after the copy");
    }
    println!(
        "migrated {} table(s) and {points} chunk vector(s) (none embedded again) into {}; consistency ok \
         ({} chunk ids in catalog and Qdrant)",
        copied.tables.len(),
        args.to.display(),
        report.catalog_ids.len()
    );
    Ok(ExitCode::SUCCESS)
}
