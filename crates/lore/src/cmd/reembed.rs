//! `lore reembed`: every stored chunk re-embedded with the configured model, in place (see
//! `lore_ingest::reembed`). Needs the data folder to itself: a running server refuses it.

use std::process::ExitCode;
use std::sync::Arc;

use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_server::lock::{DataDirLock, LockError};

pub async fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let _lock = match DataDirLock::acquire(&config.data_dir) {
        Ok(lock) => lock,
        Err(LockError::Held { server: Some(server), .. }) => anyhow::bail!(
            "lore serve ({}) holds {}; stop it, run `lore reembed`, then start it again with the new model",
            server.url,
            config.data_dir.display()
        ),
        Err(error) => return Err(error.into()),
    };
    let embedder = Arc::new(Embedder::load(&config.embedding)?);
    let report = lore_ingest::reembed::reembed(config, embedder, |done, total| {
        eprint!("\rre-embedding: {done} of {total} chunks");
    })
    .await?;
    if report.chunks > 0 {
        eprintln!();
    }
    match &report.from {
        Some(from) if *from == report.to => {
            println!("{} already holds vectors of {}; nothing to do", config.data_dir.display(), report.to)
        }
        from => {
            println!(
                "re-embedded {} chunks ({} computed, the rest already converted) from {} to {} in {:.1} s",
                report.chunks,
                report.embedded,
                from.as_deref().unwrap_or("no model"),
                report.to,
                report.elapsed.as_secs_f64()
            );
            super::audit_cli(
                config,
                "index.reembed",
                &config.data_dir.display().to_string(),
                serde_json::json!({"from": from, "to": report.to, "chunks": report.chunks}),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
