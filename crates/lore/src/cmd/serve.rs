//! `lore serve`: the HTTP API, the full-page chat and the widget, until Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use lore_core::config::{Config, VectorStoreConfig};
use lore_core::embed::Embedder;
use lore_server::http::Role;
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
    /// `all` (default): API and job worker. `api`: the API only, several replicas behind a
    /// load balancer. `worker`: the job worker only (uploads), with /healthz, /readyz and
    /// /metrics. `api` and `worker` need `database.url` (PostgreSQL) and a Qdrant server.
    #[arg(long, value_enum, default_value_t = RoleArg::All)]
    role: RoleArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RoleArg {
    All,
    Api,
    Worker,
}

pub async fn run(args: ServeArgs, config: Config) -> anyhow::Result<ExitCode> {
    let ServeArgs { bind, demo, role } = args;
    let role = match role {
        RoleArg::All => Role::All,
        RoleArg::Api => Role::Api,
        RoleArg::Worker => Role::Worker,
    };
    let shared_engines =
        config.database.url.is_some() && matches!(config.vector_store, VectorStoreConfig::Qdrant { .. });
    if role != Role::All && !shared_engines {
        anyhow::bail!(
            "--role {} needs engines every process shares: set database.url (PostgreSQL) and a Qdrant server \
             ([vector_store] kind = \"qdrant\"); an embedded data folder belongs to one `lore serve --role all`",
            if role == Role::Api { "api" } else { "worker" }
        );
    }
    if role == Role::Worker && demo {
        anyhow::bail!("--demo serves a page: it needs --role all or api");
    }
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
    if role != Role::All {
        // Standard error: whoever reads the address from standard output may stop reading.
        eprintln!(
            "lore: role {}",
            if role == Role::Api { "api (no job worker)" } else { "worker (jobs; operations endpoints only)" }
        );
    }
    if demo {
        println!("lore: demo page with the chat widget: {url}/demo");
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    lore_server::http::serve_role(listener, state, role, shutdown).await?;
    drop(lock);
    Ok(ExitCode::SUCCESS)
}
