//! Connector syncs (issue 19): a `[[connectors]]` source's changes become upload jobs and
//! deletions in its collection. An upsert is staged and queued like an upload, so the worker
//! parses it in the sandbox and writes it under the single writer, with the item's ACL (or the
//! collection's default); a deletion removes the document and cancels its pending jobs. The
//! connector's state is saved only after every change was queued, so a sync that fails half way
//! is repeated whole. Syncs run on demand (`POST /v1/connectors/{name}/sync`, `lore sync`) and,
//! with `every_minutes`, from the maintenance task; one connector never syncs twice at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use lore_connectors::{Change, Connector, ConnectorConfig, Item, SyncState};
use lore_core::acl::Acl;
use lore_core::audit::Outcome;
use lore_core::types::Collection;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::state::AppState;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS connector_syncs (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    report TEXT
);
"#;

/// What a sync did.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub connector: String,
    pub kind: String,
    /// `ok`, or `failed` with `error`.
    pub status: String,
    pub error: Option<String>,
    pub upserts: usize,
    pub deletes: usize,
    /// Items that could not be read or queued (the rest synced).
    pub item_errors: Vec<String>,
    /// Items the source holds now, as far as the connector knows.
    pub items: usize,
    pub started_at: String,
    pub finished_at: String,
}

pub struct Syncs {
    conn: Mutex<Connection>,
    running: Mutex<HashSet<String>>,
}

impl Syncs {
    pub fn open(config: &lore_core::config::Config) -> Result<Self, lore_core::Error> {
        let conn = lore_core::db::open(&config.catalog_path())?;
        conn.execute_batch(SCHEMA).map_err(lore_core::Error::from)?;
        Ok(Syncs { conn: Mutex::new(conn), running: Mutex::default() })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self, name: &str) -> Result<SyncState, ApiError> {
        let text: Option<String> = self
            .conn()
            .query_row("SELECT state FROM connector_syncs WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    fn save(&self, name: &str, state: Option<&SyncState>, report: &SyncReport) -> Result<(), ApiError> {
        let report = serde_json::to_string(report).map_err(|e| ApiError::Internal(e.to_string()))?;
        let conn = self.conn();
        let result = match state {
            Some(state) => {
                let state = serde_json::to_string(state).map_err(|e| ApiError::Internal(e.to_string()))?;
                conn.execute(
                    "INSERT INTO connector_syncs (name, state, report) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(name) DO UPDATE SET state = excluded.state, report = excluded.report",
                    params![name, state, report],
                )
            }
            None => conn.execute(
                "INSERT INTO connector_syncs (name, state, report) VALUES (?1, '{}', ?2) \
                 ON CONFLICT(name) DO UPDATE SET report = excluded.report",
                params![name, report],
            ),
        };
        result.map(|_| ()).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The last sync of `name`, if it ever ran.
    pub fn last(&self, name: &str) -> Option<SyncReport> {
        let text: Option<Option<String>> = self
            .conn()
            .query_row("SELECT report FROM connector_syncs WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .ok()?;
        text.flatten().and_then(|t| serde_json::from_str(&t).ok())
    }

    /// Whether a scheduled connector is due: never synced, or its last sync started
    /// `every_minutes` ago.
    pub fn due(&self, config: &ConnectorConfig, now_secs: i64) -> bool {
        if config.every_minutes == 0 {
            return false;
        }
        match self.last(&config.name).and_then(|r| lore_core::db::parse_rfc3339(&r.started_at)) {
            Some(started) => now_secs - started >= i64::from(config.every_minutes) * 60,
            None => true,
        }
    }
}

/// Runs one sync of the connector `name` for `actor` (`None`: the schedule).
pub async fn run(
    state: &Arc<AppState>,
    name: &str,
    actor: Option<&lore_core::auth::Caller>,
) -> Result<SyncReport, ApiError> {
    let config = state
        .config
        .connectors
        .iter()
        .find(|c| c.name == name)
        .cloned()
        .ok_or_else(|| ApiError::InvalidRequest(format!("no connector {name:?} in [[connectors]]")))?;
    {
        let mut running = state.syncs.running.lock().unwrap_or_else(|p| p.into_inner());
        if !running.insert(name.to_owned()) {
            return Err(ApiError::Conflict(format!("connector {name:?} is syncing already")));
        }
    }
    let result = sync(state, &config).await;
    state.syncs.running.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    let report = result?;
    let outcome = if report.status == "ok" { Outcome::Ok } else { Outcome::Failed };
    let detail = serde_json::json!({
        "kind": report.kind, "upserts": report.upserts, "deletes": report.deletes,
        "item_errors": report.item_errors.len(), "error": report.error,
    });
    match actor {
        Some(caller) => state.audit_caller(caller, "connector.sync", Some(name), outcome, detail),
        None => state.audit(lore_core::audit::Event {
            actor: "lore".into(),
            role: None,
            auth: "schedule".into(),
            action: "connector.sync".into(),
            target: Some(name.to_owned()),
            outcome,
            detail,
            remote: None,
        }),
    }
    Ok(report)
}

async fn sync(state: &Arc<AppState>, config: &ConnectorConfig) -> Result<SyncReport, ApiError> {
    let started_at = lore_core::db::rfc3339(lore_core::db::now());
    let mut report = SyncReport {
        connector: config.name.clone(),
        kind: config.kind().to_owned(),
        status: "ok".into(),
        error: None,
        upserts: 0,
        deletes: 0,
        item_errors: Vec::new(),
        items: 0,
        started_at,
        finished_at: String::new(),
    };
    ensure_collection(state, config)?;
    let previous = state.syncs.state(&config.name)?;
    let batch = match Connector::build(config, &state.config.data_dir) {
        Ok(connector) => connector.sync(&previous).await,
        Err(error) => Err(error),
    };
    let batch = match batch {
        Ok(batch) => batch,
        Err(error) => {
            report.status = "failed".into();
            report.error = Some(error.to_string());
            report.finished_at = lore_core::db::rfc3339(lore_core::db::now());
            tracing::warn!(connector = %config.name, %error, "connector sync failed");
            state.syncs.save(&config.name, None, &report)?;
            return Ok(report);
        }
    };
    report.item_errors = batch.errors.iter().map(|e| format!("{}: {}", e.item, e.message)).collect();
    let mut new_state = batch.state;
    for change in batch.changes {
        match change {
            Change::Delete { path, .. } => {
                let id = lore_ingest::document_id(&config.name, &path);
                for job in state.jobs.cancel_for_document(&id, "cancelled: deleted at the source")? {
                    crate::upload::cancel_job_work(state, &job);
                }
                if state.catalog().document(&id)?.is_some() {
                    state.writer.lock().await.delete_documents(std::slice::from_ref(&id)).await?;
                }
                report.deletes += 1;
            }
            Change::Upsert(item) => match enqueue(state, config, &item).await {
                Ok(()) => report.upserts += 1,
                Err(message) => {
                    // Not queued: forgotten, so the next sync reports it again.
                    new_state.items.remove(&item.id);
                    report.item_errors.push(format!("{}: {message}", item.id));
                }
            },
        }
    }
    report.items = new_state.items.len();
    report.finished_at = lore_core::db::rfc3339(lore_core::db::now());
    state.syncs.save(&config.name, Some(&new_state), &report)?;
    Ok(report)
}

/// The connector's collection, created with its department and default ACL on first use.
fn ensure_collection(state: &AppState, config: &ConnectorConfig) -> Result<(), ApiError> {
    let default_acl = config
        .default_acl
        .as_ref()
        .map(|a| Acl::parse(a))
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(format!("connectors {:?}: default_acl: {e}", config.name)))?;
    let collection = Collection {
        id: config.name.clone(),
        name: config.name.clone(),
        department: config.department.clone(),
        default_acl,
        created_at: String::new(),
    };
    state.catalog().create_collection(&collection)?;
    Ok(())
}

/// Stages an item's content and queues its job, as an upload would be.
async fn enqueue(state: &AppState, config: &ConnectorConfig, item: &Item) -> Result<(), String> {
    let acl = item.acl.as_ref().map(|a| Acl::parse(a)).transpose().map_err(|e| format!("its ACL: {e}"))?;
    if acl.is_none() && config.default_acl.is_none() {
        return Err("the source names no readers and the connector has no default_acl".into());
    }
    let file_name = item.path.rsplit('/').next().unwrap_or(&item.path);
    crate::upload::check_content(file_name, None, &item.content)?;
    let document_id = lore_ingest::document_id(&config.name, &item.path);
    let mut material = item.content.clone();
    material.extend_from_slice(format!("\u{1f}{}\u{1f}{:?}", item.path, item.acl).as_bytes());
    let metadata = serde_json::json!({ "url": item.url, "source_item": item.id });
    let file = crate::upload::ToStage {
        collection: &config.name,
        document_id: &document_id,
        path: &item.path,
        bytes: &item.content,
        acl: acl.as_ref(),
        metadata: &metadata,
        title: item.title.as_deref(),
        fingerprint: &lore_core::types::sha256_hex(&material),
        created_by: &format!("connector:{}", config.name),
    };
    crate::upload::stage_and_enqueue(state, file).await.map_err(|e| e.to_string())?;
    Ok(())
}
