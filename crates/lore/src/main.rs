//! `lore`: the command-line entry point. Thin: parses arguments, loads configuration, sets
//! up tracing, and calls into the library crates.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lore_core::acl::{AccessScope, PrincipalSet};
use lore_core::catalog::Catalog;
use lore_core::config::Config;
use lore_core::config::VectorStoreConfig;
use lore_core::embed::Embedder;
use lore_ingest::{IngestOptions, Ingestor, Source, SourceConfig};
use lore_server::lock::{DataDirLock, LockError, ServerInfo};

mod remote;

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
    Ingest {
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
    },
    /// Documents, chunks, model and index sizes; `--check` verifies both indexes agree.
    Status {
        #[arg(long)]
        check: bool,
    },
    /// Run the HTTP API, the full-page chat at `/` and the widget until Ctrl-C.
    Serve {
        /// Address to listen on (default: server.bind from the config, 127.0.0.1:8080).
        #[arg(long)]
        bind: Option<String>,
        /// Also serve `/demo`, a page embedding the widget with a new public key (reads only
        /// documents shared with everyone).
        #[arg(long)]
        demo: bool,
    },
    /// API keys in the data folder's database (works while `lore serve` runs).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Collections (documents live in collections owned by departments).
    Collections {
        #[command(subcommand)]
        command: CollectionsCommand,
    },
    /// Answer a question from the command line, through the same pipeline as `/v1/chat`.
    Ask {
        question: String,
        #[arg(long = "as")]
        user: String,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long = "depts", value_delimiter = ',')]
        departments: Vec<String>,
        /// Print the full JSON response.
        #[arg(long)]
        json: bool,
    },
    /// Run golden question sets: retrieval, answer, citation and permission metrics, reports,
    /// and with `--gate` a pass/fail check against the committed baseline (see eval/README.md).
    Eval(lore_eval::cli::EvalArgs),
    /// Search both indexes as a user, with the ACL filter applied.
    Search {
        query: String,
        /// User id of the caller.
        #[arg(long = "as")]
        user: String,
        /// Groups of the caller.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Departments of the caller.
        #[arg(long = "depts", value_delimiter = ',')]
        departments: Vec<String>,
        #[arg(long, short = 'k', default_value_t = 5)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; prints the secret once (stdout) and its id.
    #[command(alias = "new")]
    Create {
        #[arg(long)]
        name: String,
        /// employee, agent, knowledge_manager or admin (default: agent; employee with --public).
        #[arg(long)]
        role: Option<String>,
        /// The user id the key acts as (required, except with --public: a public key acts for
        /// anonymous visitors, never as a user).
        #[arg(long, required_unless_present = "public")]
        user: Option<String>,
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// The key's department (adds `dept:<d>`; a knowledge manager key manages it).
        #[arg(long)]
        department: Option<String>,
        /// A key for a public page: reads documents shared with `everyone` only.
        #[arg(long)]
        public: bool,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum CollectionsCommand {
    /// Create a collection owned by a department.
    Create {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        department: Option<String>,
        /// ACL of uploads that bring none, e.g. `group:hr,group:managers`.
        #[arg(long, value_delimiter = ',')]
        default_acl: Option<Vec<String>>,
    },
    List,
    /// Delete an empty collection.
    Delete {
        id: String,
    },
}

/// The operator running the CLI, as the audit log names them.
fn operator() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

fn audit_cli(config: &Config, action: &str, target: &str, detail: serde_json::Value) -> anyhow::Result<()> {
    lore_core::audit::AuditLog::open(&config.catalog_path())?.record(lore_core::audit::Event {
        actor: operator(),
        role: Some("admin".into()),
        auth: "cli".into(),
        action: action.into(),
        target: Some(target.into()),
        outcome: lore_core::audit::Outcome::Ok,
        detail,
        remote: None,
    })?;
    Ok(())
}

fn main() -> ExitCode {
    // A parser child (`lore __lore-parse …`, see lore_ingest::sandbox) does nothing else.
    if let Some(code) = lore_ingest::sandbox::run_child_if_requested() {
        return code;
    }
    let filter = lore_core::env::var(lore_core::env::LORE_LOG).unwrap_or_else(|| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Ingest { path, sync, acl, api_key } => {
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
        Command::Serve { bind, demo } => {
            let bind = bind.unwrap_or_else(|| config.server.bind.clone());
            let lock = match config.vector_store {
                VectorStoreConfig::Embedded => Some(DataDirLock::acquire(&config.data_dir)?),
                VectorStoreConfig::Qdrant { .. } => None,
            };
            let embedder = Arc::new(Embedder::load(&config.embedding)?);
            let state = lore_server::AppState::open(config, embedder).await?;
            let listener =
                tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("cannot listen on {bind}"))?;
            let url = format!("http://{}", listener.local_addr()?);
            if let Some(lock) = &lock {
                lock.publish(&ServerInfo { url: url.clone(), pid: std::process::id() })?;
            }
            if demo {
                let (key, _) =
                    state.identity.keys.store().expect("server key store").create(&lore_core::keys::NewKey {
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
        Command::Keys { command } => {
            let store = lore_core::keys::KeyStore::open(&config.catalog_path())?;
            match command {
                KeysCommand::Create { name, role, user, groups, department, public, expires_in_days } => {
                    let role = role.unwrap_or_else(|| if public { "employee" } else { "agent" }.to_owned());
                    let user = user.unwrap_or_else(|| lore_core::keys::PUBLIC_USER.to_owned());
                    let role = lore_core::config::Role::parse(&role).ok_or_else(|| {
                        anyhow::anyhow!("unknown role {role:?}: employee, agent, knowledge_manager or admin")
                    })?;
                    let expires_at = expires_in_days.map(|d| lore_core::db::now() + i64::from(d) * 86_400);
                    let (key, info) = store.create(&lore_core::keys::NewKey {
                        name,
                        role,
                        user,
                        groups,
                        department,
                        public,
                        expires_at,
                        created_by: operator(),
                    })?;
                    audit_cli(
                        &config,
                        "key.create",
                        &info.id,
                        serde_json::json!({ "name": info.name, "role": info.role, "principals": info.principals, "public": info.public }),
                    )?;
                    eprintln!(
                        "created key {} ({}) for {} as {}; the secret is shown once:",
                        info.id,
                        info.name,
                        info.user,
                        role.as_str()
                    );
                    println!("{key}");
                }
                KeysCommand::List { json } => {
                    let keys = store.list()?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&keys)?);
                    } else {
                        for k in keys {
                            let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                            println!(
                                "{}  {:<20} {:<17} {:<24} {state:<8} last used {}  expires {}",
                                k.id,
                                k.name,
                                k.role.as_str(),
                                k.user,
                                k.last_used_at.as_deref().unwrap_or("never"),
                                k.expires_at.as_deref().unwrap_or("never")
                            );
                        }
                    }
                }
                KeysCommand::Revoke { id } => {
                    let info = store.revoke(&id)?.ok_or_else(|| anyhow::anyhow!("no key with id {id:?}"))?;
                    audit_cli(&config, "key.revoke", &id, serde_json::json!({ "name": info.name }))?;
                    println!("revoked {} ({})", info.id, info.name);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Collections { command } => {
            let catalog = Catalog::open(&config.catalog_path())?;
            match command {
                CollectionsCommand::Create { id, name, department, default_acl } => {
                    let default_acl = default_acl.map(|a| lore_core::acl::Acl::parse(&a)).transpose()?;
                    if let Some(d) = &department {
                        lore_core::acl::Principal::dept(d)?;
                    }
                    let collection = lore_core::types::Collection {
                        name: name.unwrap_or_else(|| id.clone()),
                        id,
                        department,
                        default_acl,
                        created_at: String::new(),
                    };
                    if !catalog.create_collection(&collection)? {
                        anyhow::bail!("collection {:?} already exists", collection.id);
                    }
                    audit_cli(
                        &config,
                        "collection.create",
                        &collection.id,
                        serde_json::json!({ "department": collection.department }),
                    )?;
                    println!("created collection {}", collection.id);
                }
                CollectionsCommand::List => {
                    for c in catalog.collections()? {
                        let acl = c.default_acl.map(|a| a.to_strings().join(",")).unwrap_or_else(|| "-".into());
                        println!(
                            "{:<24} department {:<16} default ACL {acl:<30} {} documents",
                            c.id,
                            c.department.as_deref().unwrap_or("-"),
                            catalog.document_count_of_collection(&c.id)?
                        );
                    }
                }
                CollectionsCommand::Delete { id } => {
                    if !catalog.delete_collection(&id)? {
                        anyhow::bail!("no collection {id:?}");
                    }
                    audit_cli(&config, "collection.delete", &id, serde_json::json!({}))?;
                    println!("deleted collection {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { check } => {
            let catalog = Catalog::open(&config.catalog_path())?;
            let (documents, chunks) = catalog.counts()?;
            println!("data folder:   {}", config.data_dir.display());
            println!("documents:     {documents}");
            println!("chunks:        {chunks}");
            println!(
                "model:         {}",
                lore_core::index::stored_model(&catalog)?.unwrap_or_else(|| "(none yet)".into())
            );
            println!("vector store:  {:?}", config.vector_store);
            for (name, dir) in [("keyword index", config.keyword_dir()), ("vector index", config.vector_dir())] {
                println!("{name}: {} ({})", human_bytes(dir_size(&dir)), dir.display());
            }
            println!("catalog:       {}", human_bytes(dir_size(&config.catalog_path())));
            let jobs = lore_core::jobs::JobStore::open(&config.catalog_path())?.counts()?;
            if !jobs.is_empty() {
                let counts: Vec<String> = jobs.iter().map(|(state, n)| format!("{n} {}", state.as_str())).collect();
                println!("upload jobs:   {}", counts.join(", "));
            }
            println!("collections:   {}", catalog.collections()?.len());
            let pending = catalog.journaled()?;
            if !pending.is_empty() {
                println!("interrupted:   {} document(s) will be rolled back by the next ingest", pending.len());
            }
            if check {
                let indexes = lore_core::index::Indexes::open(&config, false).await?;
                let report = indexes.check_consistency(&catalog).await?;
                let problems = report.problems();
                if problems.is_empty() {
                    println!(
                        "consistency:   ok ({} chunk ids in catalog, keyword and vector index)",
                        report.catalog_ids.len()
                    );
                } else {
                    for problem in &problems {
                        println!("consistency:   {problem}");
                    }
                    return Ok(ExitCode::from(1));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ask { question, user, groups, departments, json } => {
            let scope = AccessScope::impersonate_for_operator(
                PrincipalSet::for_user(&user, &groups, &departments).context("caller principals")?,
                "lore ask --as",
            );
            let embedder = Arc::new(Embedder::load(&config.embedding)?);
            let retriever = Arc::new(lore_chat::Retriever::open(&config, embedder).await?);
            let conversations = lore_chat::conversations::Conversations::open(&config.catalog_path())?;
            let engine = lore_chat::ChatEngine::new(retriever, conversations, &config.chat)?;
            let answer = engine.ask(&user, &scope, &question, None, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("{}\n", answer.answer);
                for c in &answer.citations {
                    let page = c.page.map(|p| format!(", page {p}")).unwrap_or_default();
                    let heading = c.heading.as_ref().map(|h| format!(" — {h}")).unwrap_or_default();
                    println!("[{}] {} ({}{page}){heading}", c.marker, c.title, c.source_path);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let passed = lore_eval::cli::run(args, &config).await?;
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Search { query, user, groups, departments, limit, json } => {
            let principals = PrincipalSet::for_user(&user, &groups, &departments).context("caller principals")?;
            let scope = AccessScope::impersonate_for_operator(principals, "lore search --as");
            let embedder = Arc::new(Embedder::load(&config.embedding)?);
            let retriever = lore_chat::Retriever::open(&config, embedder).await?;
            let results = retriever.search(&query, &scope, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for (name, hits) in [("BM25", &results.bm25), ("dense", &results.dense)] {
                    println!("== {name} ({} hits)", hits.len());
                    for hit in hits {
                        let location = match hit.chunk.page {
                            Some(page) => format!("{} p.{page}", hit.doc_path),
                            None => hit.doc_path.clone(),
                        };
                        let heading = hit.chunk.heading_path.join(" > ");
                        let snippet: String = hit.chunk.text.chars().take(160).collect::<String>().replace('\n', " ");
                        println!("{:>2}. [{:.3}] {location} | {heading}\n    {snippet}", hit.rank, hit.score);
                    }
                }
                eprintln!(
                    "query language: {}; embed {:.1} ms, search {:.1} ms",
                    results.query_lang.code(),
                    results.embed_time.as_secs_f64() * 1e3,
                    results.search_time.as_secs_f64() * 1e3
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn dir_size(path: &std::path::Path) -> u64 {
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

fn walkdir_size(path: &std::path::Path) -> u64 {
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
