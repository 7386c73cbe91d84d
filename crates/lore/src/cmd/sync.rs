//! `lore sync <connector>`: one sync of a `[[connectors]]` source now, through the running
//! `lore serve` that holds the data folder (it is the only writer of the indexes, and its
//! worker indexes what the sync queues). Without a running server the connectors sync on their
//! schedule the next time it starts.

use std::process::ExitCode;
use std::time::Duration;

use lore_core::config::Config;
use lore_server::lock::{DataDirLock, LockError};

#[derive(clap::Args)]
pub struct SyncArgs {
    /// The connector's name (its collection), as in `[[connectors]]`.
    name: String,
    /// An admin's key, or a knowledge manager's of the connector's department.
    #[arg(long, env = "LORE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub async fn run(args: SyncArgs, config: &Config) -> anyhow::Result<ExitCode> {
    if !config.connectors.iter().any(|c| c.name == args.name) {
        let names: Vec<&str> = config.connectors.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!("no connector {:?} in [[connectors]] (configured: {names:?})", args.name);
    }
    let server = match DataDirLock::acquire(&config.data_dir) {
        Err(LockError::Held { server: Some(server), .. }) => server,
        Err(error) => return Err(error.into()),
        Ok(_lock) => anyhow::bail!(
            "no lore serve holds {}: start it (`lore serve`); it syncs the connectors and indexes what they bring",
            config.data_dir.display()
        ),
    };
    let key = args
        .api_key
        .ok_or_else(|| anyhow::anyhow!("give an admin or knowledge-manager key with --api-key or LORE_API_KEY"))?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3600)).build()?;
    let response =
        client.post(format!("{}/v1/connectors/{}/sync", server.url, args.name)).bearer_auth(key).send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("{}: {status}: {}", server.url, body["message"].as_str().unwrap_or("failed"));
    }
    println!(
        "sync {}: {} ({} upserts queued, {} deletes, {} item errors, {} items)",
        args.name,
        body["status"].as_str().unwrap_or("?"),
        body["upserts"],
        body["deletes"],
        body["item_errors"].as_array().map_or(0, Vec::len),
        body["items"]
    );
    for error in body["item_errors"].as_array().into_iter().flatten() {
        eprintln!("item error: {}", error.as_str().unwrap_or_default());
    }
    if let Some(error) = body["error"].as_str() {
        eprintln!("error: {error}");
    }
    Ok(if body["status"] == "ok" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
