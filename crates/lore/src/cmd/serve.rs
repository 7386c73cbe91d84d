//! `lore serve`: the HTTP API, the full-page chat and the widget, until Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use lore_core::config::{Config, VectorStoreConfig};
use lore_core::embed::Embedder;
use lore_server::lock::{DataDirLock, ServerInfo};

use super::operator;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (default: server.bind from the config, 127.0.0.1:8080).
    #[arg(long)]
    bind: Option<String>,
    /// Also serve `/demo`, a page embedding the widget with a new public key (reads only
    /// documents shared with everyone).
    #[arg(long)]
    demo: bool,
}

pub async fn run(args: ServeArgs, config: Config) -> anyhow::Result<ExitCode> {
    let ServeArgs { bind, demo } = args;
    let bind = bind.unwrap_or_else(|| config.server.bind.clone());
    let lock = match config.vector_store {
        VectorStoreConfig::Embedded => Some(DataDirLock::acquire(&config.data_dir)?),
        VectorStoreConfig::Qdrant { .. } => None,
    };
    let embedder = Arc::new(Embedder::load(&config.embedding)?);
    let state = lore_server::AppState::open(config, embedder).await?;
    let listener = tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("cannot listen on {bind}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    if let Some(lock) = &lock {
        lock.publish(&ServerInfo { url: url.clone(), pid: std::process::id() })?;
    }
    if demo {
        let (key, _) = state.identity.keys.store().expect("server key store").create(&lore_core::keys::NewKey {
            expires_at: Some(lore_core::db::now() + 7 * 86_400),
            ..lore_core::keys::NewKey::public(&format!("demo-page-{}", lore_core::db::now()), &operator())
        })?;
        let _ = state.demo_key.set(key);
    }
    println!("lore: listening on {url}");
    if demo {
        println!("lore: demo page with the chat widget: {url}/demo");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    lore_server::http::serve(listener, state, shutdown).await?;
    drop(lock);
    Ok(ExitCode::SUCCESS)
}
