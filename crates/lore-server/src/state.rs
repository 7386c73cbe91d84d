//! Everything the service holds: one set of indexes opened for writing, shared by the
//! retriever (readers) and the ingest writer (uploads, deletes, ACL changes), plus the stores
//! in the embedded database.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lore_chat::conversations::Conversations;
use lore_chat::{ChatEngine, Retriever};
use lore_core::audit::{AuditLog, Event, Outcome};
use lore_core::catalog::Catalog;
use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_core::index::Indexes;
use lore_core::jobs::JobStore;
use lore_core::keys::KeyStore;
use lore_ingest::{Ingestor, UploadPreparer};

use crate::http::auth::{Identity, IdentitySetupError};
use crate::http::metrics::Metrics;

/// Why the service could not start: a store, an index, the chat engine or the identity setup.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Core(#[from] lore_core::Error),
    #[error(transparent)]
    Ingest(#[from] lore_ingest::IngestError),
    #[error(transparent)]
    Identity(#[from] IdentitySetupError),
    #[error(transparent)]
    Usage(#[from] lore_usage::Error),
    #[error(transparent)]
    Policy(#[from] lore_policy::Error),
}

pub struct AppState {
    pub config: Config,
    pub retriever: Arc<Retriever>,
    pub chat: Arc<ChatEngine>,
    pub identity: Identity,
    pub metrics: Metrics,
    /// Reads of documents and collections (writes go through `writer`).
    pub catalog: Mutex<Catalog>,
    /// The only writer of both indexes: the job worker and the document handlers take turns.
    /// The worker holds it only to write a prepared upload, never while parsing or embedding.
    pub writer: tokio::sync::Mutex<Ingestor>,
    /// Parses (in child processes), chunks and embeds uploads without the writer.
    pub preparer: UploadPreparer,
    /// The job the worker is processing, with the flag that cancels it.
    pub current_job: Mutex<Option<(String, Arc<AtomicBool>)>>,
    pub jobs: JobStore,
    pub audit: AuditLog,
    /// Woken when a job is queued.
    pub job_queued: tokio::sync::Notify,
    pub feedback: lore_chat::feedback::FeedbackStore,
    /// The public key the `/demo` page embeds (`lore serve --demo`).
    pub demo_key: std::sync::OnceLock<String>,
    /// Rate limit of audited "not found" refusals.
    pub denials: crate::http::access::DenialLimiter,
    /// Metering, budgets, rate limits, categories and knowledge gaps.
    pub usage: crate::usage::Usage,
    /// Use rules, the review queue and verified answers.
    pub policy: crate::policy::Policy,
    /// Outgoing webhooks and their delivery log.
    pub webhooks: crate::webhooks::Webhooks,
    /// Connector sync states and reports.
    pub syncs: crate::sync::Syncs,
}

impl AppState {
    /// Opens the indexes (for writing), the catalog and the stores; rolls back interrupted
    /// ingests and puts interrupted jobs back in the queue.
    pub async fn open(config: Config, embedder: Arc<Embedder>) -> Result<Arc<Self>, OpenError> {
        // One database (on PostgreSQL: one connection pool) for every store of the process.
        let database = config.open_database()?;
        let indexes = Arc::new(Indexes::open(&config, true).await?);
        let writer =
            Ingestor::with_catalog(config.clone(), embedder.clone(), indexes.clone(), Catalog::open_in(&database)?)
                .await?;
        let retriever = Arc::new(Retriever::with_catalog(&config, embedder, indexes, Catalog::open_in(&database)?)?);
        let conversations = Conversations::open_in(&database)?;
        let chat = Arc::new(ChatEngine::new(retriever.clone(), conversations, &config.chat)?);
        let usage = crate::usage::Usage::open(&config, &database, retriever.clone()).await?;
        let policy = crate::policy::Policy::open(&config, &database)?;
        let webhooks = crate::webhooks::Webhooks::open_in(&config, &database)?;
        let syncs = crate::sync::Syncs::open_in(&database)?;
        let keys = Arc::new(KeyStore::open_in(&database)?);
        let catalog = Catalog::open_in(&database)?;
        let identity = Identity::new(&config, keys, &catalog)?;
        let jobs = JobStore::open_in(&database)?.with_lease(Duration::from_secs(config.ingest.job_lease_secs));
        // The embedded database belongs to this one process: what it was doing when it stopped
        // is taken up again now. A shared database's jobs and syncs may be another process's:
        // their leases say when they are free.
        if database.dialect() == lore_db::Dialect::Sqlite {
            syncs.release_interrupted()?;
            let (requeued, given_up) = jobs.requeue_interrupted()?;
            if requeued > 0 {
                tracing::warn!(jobs = requeued, "resuming jobs interrupted by a restart");
            }
            for job in &given_up {
                tracing::error!(job = %job.id, file = %job.filename, attempts = job.attempts, "job failed: interrupted too often");
            }
        }
        // In a shared uploads folder another replica may be staging an upload right now.
        let grace =
            if database.dialect() == lore_db::Dialect::Sqlite { Duration::ZERO } else { crate::worker::STAGING_GRACE };
        sweep_staging(&config.data_dir, &jobs, grace);
        let preparer = writer.preparer();
        let state = Arc::new(AppState {
            retriever,
            chat,
            identity,
            metrics: Metrics::default(),
            catalog: Mutex::new(catalog),
            writer: tokio::sync::Mutex::new(writer),
            preparer,
            current_job: Mutex::new(None),
            jobs,
            audit: AuditLog::open_in(&database)?,
            job_queued: tokio::sync::Notify::new(),
            feedback: lore_chat::feedback::FeedbackStore::open_in(&database)?,
            demo_key: std::sync::OnceLock::new(),
            denials: Default::default(),
            usage,
            policy,
            webhooks,
            syncs,
            config,
        });
        crate::usage::Usage::spawn_maintenance(&state);
        crate::webhooks::Webhooks::spawn_sender(&state);
        Ok(state)
    }

    /// Cancels the job if the worker is processing it now (its parser child is killed);
    /// returns whether it was.
    pub fn interrupt_job(&self, id: &str) -> bool {
        let current = self.current_job.lock().unwrap_or_else(|p| p.into_inner());
        match current.as_ref() {
            Some((running, cancel)) if running == id => {
                cancel.store(true, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    pub fn catalog(&self) -> std::sync::MutexGuard<'_, Catalog> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends to the audit log; a failed write is logged loudly (the request already
    /// happened, and refusing it afterwards would not undo it).
    pub fn audit(&self, event: Event) {
        if let Err(error) = self.audit.record(event) {
            tracing::error!(%error, "audit log write failed");
        }
    }

    pub fn audit_caller(
        &self,
        caller: &lore_core::auth::Caller,
        action: &str,
        target: Option<&str>,
        outcome: Outcome,
        detail: serde_json::Value,
    ) {
        self.audit(Event {
            actor: caller.actor(),
            role: Some(caller.role.as_str().to_owned()),
            auth: caller.method.label().to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            outcome,
            detail,
            remote: None,
        });
    }
}

/// Opens every store of the service in `database`, which brings each table up to date: what
/// `lore migrate` does to an empty target before copying rows into it.
pub fn open_every_store(config: &Config, database: &lore_db::Database) -> Result<(), OpenError> {
    Catalog::open_in(database)?;
    JobStore::open_in(database)?;
    KeyStore::open_in(database)?;
    AuditLog::open_in(database)?;
    Conversations::open_in(database)?;
    lore_chat::feedback::FeedbackStore::open_in(database)?;
    lore_usage::store::UsageStore::open_in(database)?;
    lore_usage::budgets::BudgetStore::open_in(database)?;
    lore_usage::gaps::GapStore::open_in(database, config.usage.gap_similarity)?;
    lore_usage::limits::RateLimiter::shared(&config.rate_limits, database)?;
    crate::policy::Policy::open(config, database)?;
    crate::webhooks::Webhooks::open_in(config, database)?;
    crate::sync::Syncs::open_in(database)?;
    Ok(())
}

/// Removes staging folders under `<data>/uploads` that no queued or processing job needs and
/// that are older than `min_age` (an upload being staged right now is younger). Failed and
/// cancelled jobs leave nothing behind.
pub fn sweep_staging(data_dir: &Path, jobs: &JobStore, min_age: Duration) {
    let pending = match jobs.pending_staged_paths() {
        Ok(paths) => paths,
        Err(error) => {
            tracing::warn!(%error, "cannot list pending uploads; staging folders kept");
            return;
        }
    };
    let Ok(entries) = std::fs::read_dir(data_dir.join("uploads")) else { return };
    for entry in entries.flatten() {
        let folder = entry.path();
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < min_age);
        if young || pending.iter().any(|path| path.starts_with(&folder)) {
            continue;
        }
        if let Err(error) = std::fs::remove_dir_all(&folder) {
            tracing::warn!(%error, folder = %folder.display(), "cannot remove a staging folder");
        }
    }
}
