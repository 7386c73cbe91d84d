//! `lore`: the command-line entry point. Thin: parses arguments, loads configuration, sets
//! up tracing (`telemetry`), and hands each command to its module in `cmd/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lore_core::config::Config;

mod cmd;
mod remote;
mod telemetry;

#[derive(Parser)]
#[command(name = "lore", version, about = "Self-hosted company knowledge assistant")]
struct Cli {
    /// Configuration file (TOML); default: $LORE_CONFIG or ./lore.toml when present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data folder; overrides the config file.
    #[arg(long, global = true, env = "LORE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest a source config (.toml) or a folder/file into both indexes.
    Ingest(cmd::ingest::IngestArgs),
    /// Documents, chunks, model and index sizes; `--check` verifies both indexes agree.
    Status(cmd::status::StatusArgs),
    /// Run the HTTP API, the full-page chat at `/` and the widget until Ctrl-C.
    Serve(cmd::serve::ServeArgs),
    /// API keys in the data folder's database (works while `lore serve` runs).
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Collections (documents live in collections owned by departments).
    #[command(subcommand)]
    Collections(cmd::collections::CollectionsCommand),
    /// Answer a question from the command line, through the same pipeline as `/v1/chat`.
    Ask(cmd::ask::AskArgs),
    /// Run golden question sets: retrieval, answer, citation and permission metrics, reports,
    /// and with `--gate` a pass/fail check against the committed baseline (see eval/README.md).
    Eval(cmd::eval::EvalArgs),
    /// Search both indexes as a user, with the ACL filter applied.
    Search(cmd::search::SearchArgs),
    /// Usage analytics: requests, users, answer kinds, tokens, cost, latency and votes per group.
    Usage(cmd::usage::UsageArgs),
    /// Budgets per department, API key or user (works while `lore serve` runs).
    #[command(subcommand)]
    Budgets(cmd::usage::BudgetsCommand),
    /// Sync a `[[connectors]]` source now, through the running `lore serve`.
    Sync(cmd::sync::SyncArgs),
    /// Re-embed every stored chunk with the configured embedding model (after switching
    /// models); documents, ACLs and the keyword index stay. Stop `lore serve` first.
    Reembed,
    /// Copy this embedded data folder into PostgreSQL and a Qdrant server (the target
    /// configuration), reusing the stored vectors; verifies counts and consistency after.
    Migrate(cmd::migrate::MigrateArgs),
}

fn main() -> ExitCode {
    // A parser child (`lore __lore-parse …`, see lore_ingest::sandbox) does nothing else.
    if let Some(code) = lore_ingest::sandbox::run_child_if_requested() {
        return code;
    }
    let cli = Cli::parse();
    let result = load_config(&cli).and_then(|config| {
        // Exports the last spans when the command is done.
        let _telemetry = telemetry::init(&config.telemetry)?;
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(run(cli.command, config))
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ingest(args) => cmd::ingest::run(args, config).await,
        Command::Status(args) => cmd::status::run(args, &config).await,
        Command::Sync(args) => cmd::sync::run(args, &config).await,
        Command::Reembed => cmd::reembed::run(&config).await,
        Command::Migrate(args) => cmd::migrate::run(args, &config).await,
        Command::Serve(args) => cmd::serve::run(args, config).await,
        Command::Keys(command) => cmd::keys::run(command, &config).await,
        Command::Collections(command) => cmd::collections::run(command, &config).await,
        Command::Ask(args) => cmd::ask::run(args, &config).await,
        Command::Eval(args) => cmd::eval::run(args, &config).await,
        Command::Search(args) => cmd::search::run(args, &config).await,
        Command::Usage(args) => cmd::usage::run_usage(args, &config),
        Command::Budgets(command) => cmd::usage::run_budgets(command, &config),
    }
}
