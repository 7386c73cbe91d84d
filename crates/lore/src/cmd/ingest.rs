//! `lore ingest`: a source config or a folder/file into both indexes, or, when `lore serve`
//! holds the data folder, through its API (see `remote`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_ingest::{IngestOptions, Ingestor, Source, SourceConfig};
use lore_server::lock::{DataDirLock, LockError};

use crate::remote;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// A source config file, or a folder or file.
    path: PathBuf,
    /// Remove documents whose files disappeared from the ingested sources.
    #[arg(long)]
    sync: bool,
    /// Default ACL for a bare folder, e.g. `--acl everyone` or `--acl group:hr,group:finance`.
    #[arg(long, value_delimiter = ',')]
    acl: Option<Vec<String>>,
    /// API key for sending the files to a running `lore serve` that holds the data folder.
    #[arg(long, env = "LORE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub async fn run(args: IngestArgs, config: Config) -> anyhow::Result<ExitCode> {
    let IngestArgs { path, sync, acl, api_key } = args;
    let sources = if path.extension().is_some_and(|e| e == "toml") {
        if acl.is_some() {
            anyhow::bail!("--acl applies to a folder or file; a source config sets default_acl itself");
        }
        SourceConfig::load(&path)?.sources
    } else if path.exists() {
        vec![Source::ad_hoc(&path, acl)]
    } else {
        anyhow::bail!("{} does not exist", path.display());
    };
    // One writer per data folder: when a server holds it, go through its API.
    let _lock = match DataDirLock::acquire(&config.data_dir) {
        Ok(lock) => lock,
        Err(LockError::Held { server: Some(server), .. }) => {
            let key = api_key.ok_or_else(|| {
                anyhow::anyhow!(
                    "lore serve ({}) holds {}; give an admin or knowledge-manager key with --api-key or \
                     LORE_API_KEY to ingest through it",
                    server.url,
                    config.data_dir.display()
                )
            })?;
            eprintln!("lore serve holds the data folder; sending the files to {}", server.url);
            let report = remote::ingest(&server.url, &key, &sources, sync).await?;
            for failure in &report.failures {
                eprintln!("failed: {failure}");
            }
            println!(
                "ingest via {}: {} uploaded, {} indexed, {} unchanged, {} deleted, {} failed",
                server.url,
                report.uploaded,
                report.indexed,
                report.unchanged,
                report.deleted,
                report.failures.len()
            );
            return Ok(if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
        }
        Err(error) => return Err(error.into()),
    };
    let embedder = Arc::new(Embedder::load(&config.embedding)?);
    let mut ingestor = Ingestor::open(config, embedder).await?;
    let options = IngestOptions { sync, progress: true };
    let report = ingestor.ingest(&sources, &options).await?;
    if report.recovered > 0 {
        eprintln!("recovered {} document(s) from an interrupted ingest", report.recovered);
    }
    for failure in &report.failures {
        eprintln!("failed: {failure}");
    }
    let t = &report.timings;
    eprintln!(
        "stages: parse {:.2}s, chunk {:.2}s, embed {:.2}s, index {:.2}s",
        t.parse.as_secs_f64(),
        t.chunk.as_secs_f64(),
        t.embed.as_secs_f64(),
        t.index.as_secs_f64()
    );
    println!("{}", report.summary_line());
    Ok(if report.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
