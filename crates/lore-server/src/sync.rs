//! Connector syncs (issue 19): a `[[connectors]]` source's changes become upload jobs and
//! deletions in its collection. An upsert is staged and queued like an upload, so the worker
//! parses it in the sandbox and writes it under the single writer, with the item's ACL (or the
//! collection's default); a deletion removes the document and cancels its pending jobs. The
//! connector's state is saved only after every change was queued, so a sync that fails half way
//! is repeated whole. Syncs run on demand (`POST /v1/connectors/{name}/sync`, `lore sync`) and,
//! with `every_minutes`, from the maintenance task; one connector never syncs twice at once,
//! not even from two processes sharing the database: a sync holds the connector's row for
//! [`RUN_LEASE_SECS`] (or until it ends), and a process that died mid-sync lets it go then.

use std::sync::Arc;

use lore_connectors::{Change, Connector, ConnectorConfig, Item, SyncState};
use lore_core::acl::Acl;
use lore_core::audit::Outcome;
use lore_core::types::Collection;
use lore_db::{Database, Db, Migration, Schema, params};
use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::state::AppState;

const SCHEMA: Schema = Schema {
    name: "connector_syncs",
    migrations: &[
        Migration {
            version: 1,
            sqlite: "CREATE TABLE IF NOT EXISTS connector_syncs (name TEXT PRIMARY KEY, state TEXT NOT NULL, report TEXT)",
            postgres: "CREATE TABLE connector_syncs (name TEXT PRIMARY KEY, state TEXT NOT NULL, report TEXT, \
                       running_until BIGINT)",
        },
        Migration {
            version: 2,
            // Unix seconds until which a sync holds the connector.
            sqlite: "ALTER TABLE connector_syncs ADD COLUMN running_until INTEGER",
            postgres: "SELECT 1",
        },
    ],
};

/// How long a sync holds its connector at most; a longer sync may be joined by a second one.
pub const RUN_LEASE_SECS: i64 = 3600;

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
    db: Db,
}

impl Syncs {
    /// The sync states and reports in the application database.
    pub fn open_in(database: &Database) -> Result<Self, lore_core::Error> {
        Ok(Syncs { db: database.store(&SCHEMA)? })
    }

    /// Embedded default only (the one process): lets go of connectors that a previous run
    /// was syncing when it stopped, without waiting for their leases.
    pub fn release_interrupted(&self) -> Result<usize, lore_core::Error> {
        Ok(self
            .db
            .execute("UPDATE connector_syncs SET running_until = NULL WHERE running_until IS NOT NULL", params![])?)
    }

    /// Takes the connector for one sync, unless another process holds it (until its lease
    /// runs out); `false` when it is taken.
    fn begin(&self, name: &str, now_secs: i64) -> Result<bool, ApiError> {
        let taken = self
            .db
            .query(
                "INSERT INTO connector_syncs (name, state, running_until) VALUES (?1, '{}', ?2) \
                 ON CONFLICT(name) DO UPDATE SET running_until = excluded.running_until \
                 WHERE connector_syncs.running_until IS NULL OR connector_syncs.running_until <= ?3 RETURNING name",
                params![name, now_secs + RUN_LEASE_SECS, now_secs],
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(!taken.is_empty())
    }

    /// Lets the connector go after a sync.
    fn end(&self, name: &str) {
        if let Err(error) =
            self.db.execute("UPDATE connector_syncs SET running_until = NULL WHERE name = ?1", params![name])
        {
            tracing::warn!(%error, connector = name, "cannot release the connector after its sync");
        }
    }

    fn state(&self, name: &str) -> Result<SyncState, ApiError> {
        let text: Option<String> = self
            .db
            .query_opt("SELECT state FROM connector_syncs WHERE name = ?1", params![name])
            .and_then(|row| row.map(|r| r.get(0)).transpose())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default())
    }

    fn save(&self, name: &str, state: Option<&SyncState>, report: &SyncReport) -> Result<(), ApiError> {
        let report = serde_json::to_string(report).map_err(|e| ApiError::Internal(e.to_string()))?;
        let result = match state {
            Some(state) => {
                let state = serde_json::to_string(state).map_err(|e| ApiError::Internal(e.to_string()))?;
                self.db.execute(
                    "INSERT INTO connector_syncs (name, state, report) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(name) DO UPDATE SET state = excluded.state, report = excluded.report",
                    params![name, state, report],
                )
            }
            None => self.db.execute(
                "INSERT INTO connector_syncs (name, state, report) VALUES (?1, '{}', ?2) \
                 ON CONFLICT(name) DO UPDATE SET report = excluded.report",
                params![name, report],
            ),
        };
        result.map(|_| ()).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The last sync of `name`, if it ever ran.
    pub fn last(&self, name: &str) -> Option<SyncReport> {
        let row = self.db.query_opt("SELECT report FROM connector_syncs WHERE name = ?1", params![name]).ok()??;
        let text: Option<String> = row.get(0).ok()?;
        text.and_then(|t| serde_json::from_str(&t).ok())
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
    if !state.syncs.begin(name, lore_core::db::now())? {
        return Err(ApiError::Conflict(format!("connector {name:?} is syncing already")));
    }
    let result = sync(state, &config).await;
    state.syncs.end(name);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connector_syncs_in_one_process_at_a_time_until_its_lease_runs_out() {
        lore_db::testing::on_both("a_connector_syncs_in_one_process_at_a_time_until_its_lease_runs_out", |database| {
            let (a, b) = (Syncs::open_in(database).unwrap(), Syncs::open_in(database).unwrap());
            let now = 1_800_000_000;
            assert!(a.begin("wiki", now).unwrap());
            assert!(!b.begin("wiki", now + 5).unwrap(), "the other process sees it syncing");
            assert!(b.begin("helpdesk", now).unwrap(), "other connectors are free");
            a.end("wiki");
            assert!(b.begin("wiki", now + 6).unwrap());
            // The process syncing it dies: the lease runs out, or the next embedded start frees it.
            assert!(!a.begin("wiki", now + RUN_LEASE_SECS).unwrap());
            assert!(a.begin("wiki", now + 6 + RUN_LEASE_SECS).unwrap());
            assert_eq!(a.release_interrupted().unwrap(), 2);
            assert!(b.begin("wiki", now + 7).unwrap() && b.begin("helpdesk", now + 7).unwrap());
            // The lease does not touch the saved state and report.
            let report = SyncReport {
                connector: "wiki".into(),
                kind: "web".into(),
                status: "ok".into(),
                error: None,
                upserts: 1,
                deletes: 0,
                item_errors: vec![],
                items: 1,
                started_at: "2027-01-15T08:00:00Z".into(),
                finished_at: "2027-01-15T08:00:01Z".into(),
            };
            a.save("wiki", Some(&SyncState::default()), &report).unwrap();
            assert!(!a.begin("wiki", now + 8).unwrap(), "saving keeps the running sync's hold");
            assert_eq!(b.last("wiki").unwrap().upserts, 1);
        });
    }
}
