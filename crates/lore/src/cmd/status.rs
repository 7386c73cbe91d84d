//! `lore status`: documents, chunks, model and index sizes; `--check` verifies both indexes
//! agree with the catalog.

use std::path::Path;
use std::process::ExitCode;

use lore_core::catalog::Catalog;
use lore_core::config::Config;

#[derive(clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    check: bool,
}

pub async fn run(args: StatusArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let database = config.open_database()?;
    let catalog = Catalog::open_in(&database)?;
    let (documents, chunks) = catalog.counts()?;
    println!("data folder:   {}", config.data_dir.display());
    println!("documents:     {documents}");
    println!("chunks:        {chunks}");
    println!("model:         {}", lore_core::index::stored_model(&catalog)?.unwrap_or_else(|| "(none yet)".into()));
    match &config.vector_store {
        lore_core::config::VectorStoreConfig::Embedded => println!("vector store:  embedded"),
        // Never the API key.
        lore_core::config::VectorStoreConfig::Qdrant { url, collection, shards, replication_factor, .. } => {
            println!(
                "vector store:  Qdrant server {url}, collection {collection} ({shards} shard(s), replication \
                 factor {replication_factor}); keyword search on its sparse vectors"
            )
        }
    }
    if matches!(config.vector_store, lore_core::config::VectorStoreConfig::Embedded) {
        for (name, dir) in [("keyword index", config.keyword_dir()), ("vector index", config.vector_dir())] {
            println!("{name}: {} ({})", human_bytes(dir_size(&dir)), dir.display());
        }
    }
    match database.sqlite_file() {
        Some(file) => println!("database:      {} ({})", human_bytes(dir_size(file)), file.display()),
        None => println!("database:      PostgreSQL (database.url)"),
    }
    let jobs = lore_core::jobs::JobStore::open_in(&database)?.counts()?;
    if !jobs.is_empty() {
        let counts: Vec<String> = jobs.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect();
        println!("upload jobs:   {}", counts.join(", "));
    }
    println!("collections:   {}", catalog.collections()?.len());
    if !config.connectors.is_empty() {
        let syncs = lore_server::sync::Syncs::open_in(&database)?;
        for connector in &config.connectors {
            let last = match syncs.last(&connector.name) {
                Some(r) if r.status == "ok" => {
                    format!("last sync {} ok: {} items, {} item errors", r.finished_at, r.items, r.item_errors.len())
                }
                Some(r) => format!("last sync {} failed: {}", r.finished_at, r.error.unwrap_or_default()),
                None => "never synced".into(),
            };
            println!("connector:     {} ({}): {last}", connector.name, connector.kind());
        }
    }
    let pending = catalog.journaled()?;
    if !pending.is_empty() {
        println!("interrupted:   {} document(s) will be rolled back by the next ingest", pending.len());
    }
    if args.check {
        let indexes = lore_core::index::Indexes::open(config, false).await?;
        let report = indexes.check_consistency(&catalog).await?;
        let problems = report.problems();
        if problems.is_empty() {
            println!("consistency:   ok ({} chunk ids in catalog, keyword and vector index)", report.catalog_ids.len());
        } else {
            for problem in &problems {
                println!("consistency:   {problem}");
            }
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn dir_size(path: &Path) -> u64 {
    if path.is_file() {
        return path.metadata().map(|m| disk_bytes(&m)).unwrap_or(0);
    }
    walkdir_size(path)
}

/// Bytes a file occupies on disk: qdrant-edge preallocates sparse files, whose length says
/// little about the space used.
fn disk_bytes(metadata: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::blocks(metadata) * 512
    }
    #[cfg(not(unix))]
    {
        metadata.len()
    }
}

fn walkdir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() { walkdir_size(&p) } else { e.metadata().map(|m| disk_bytes(&m)).unwrap_or(0) }
        })
        .sum()
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
