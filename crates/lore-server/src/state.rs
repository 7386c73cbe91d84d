//! Everything the service holds: one set of indexes opened for writing, shared by the
//! retriever (readers) and the ingest writer (uploads, deletes, ACL changes), plus the stores
//! in the embedded database.

use std::sync::{Arc, Mutex};

use lore_chat::conversations::Conversations;
use lore_chat::{ChatEngine, Retriever};
use lore_core::audit::{AuditLog, Event, Outcome};
use lore_core::catalog::Catalog;
use lore_core::config::Config;
use lore_core::embed::Embedder;
use lore_core::index::Indexes;
use lore_core::jobs::JobStore;
use lore_core::keys::KeyStore;
use lore_ingest::Ingestor;

use crate::http::auth::Identity;
use crate::http::metrics::Metrics;

pub struct AppState {
    pub config: Config,
    pub retriever: Arc<Retriever>,
    pub chat: Arc<ChatEngine>,
    pub identity: Identity,
    pub metrics: Metrics,
    /// Reads of documents and collections (writes go through `writer`).
    pub catalog: Mutex<Catalog>,
    /// The only writer of both indexes: the job worker and the document handlers take turns.
    pub writer: tokio::sync::Mutex<Ingestor>,
    pub jobs: JobStore,
    pub audit: AuditLog,
    /// Woken when a job is queued.
    pub job_queued: tokio::sync::Notify,
    pub feedback: lore_chat::feedback::FeedbackStore,
    /// The public key the `/demo` page embeds (`lore serve --demo`).
    pub demo_key: std::sync::OnceLock<String>,
}

impl AppState {
    /// Opens the indexes (for writing), the catalog and the stores; rolls back interrupted
    /// ingests and puts interrupted jobs back in the queue.
    pub async fn open(config: Config, embedder: Arc<Embedder>) -> Result<Arc<Self>, lore_ingest::IngestError> {
        let indexes = Arc::new(Indexes::open(&config, true).await?);
        let writer = Ingestor::with_indexes(config.clone(), embedder.clone(), indexes.clone()).await?;
        let retriever = Arc::new(Retriever::with_indexes(&config, embedder, indexes)?);
        let conversations = Conversations::open(&config.catalog_path())?;
        let chat = Arc::new(
            ChatEngine::new(retriever.clone(), conversations, &config.chat)
                .map_err(|e| lore_ingest::IngestError::Other(e.to_string()))?,
        );
        let db = config.catalog_path();
        let keys = Arc::new(KeyStore::open(&db)?);
        let identity = Identity::new(&config, keys).map_err(lore_ingest::IngestError::Other)?;
        let jobs = JobStore::open(&db)?;
        let requeued = jobs.requeue_interrupted()?;
        if requeued > 0 {
            tracing::warn!(jobs = requeued, "resuming jobs interrupted by a restart");
        }
        Ok(Arc::new(AppState {
            retriever,
            chat,
            identity,
            metrics: Metrics::default(),
            catalog: Mutex::new(Catalog::open(&db)?),
            writer: tokio::sync::Mutex::new(writer),
            jobs,
            audit: AuditLog::open(&db)?,
            job_queued: tokio::sync::Notify::new(),
            feedback: lore_chat::feedback::FeedbackStore::open(&db)?,
            demo_key: std::sync::OnceLock::new(),
            config,
        }))
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
