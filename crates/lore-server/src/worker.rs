//! The background worker: takes queued jobs one at a time (embedding already uses every
//! core) and records each outcome. A file that fails never blocks the queue: its job fails
//! with the reason and the next one starts.
//!
//! A job is prepared without the writer: the file is parsed in a child process (see
//! `lore_ingest::sandbox`: limits on time, memory and output; a crash fails the file, not
//! the server), then chunked and embedded. Only the index write takes the writer, so ACL
//! changes and deletes never wait behind a slow or hostile file. Under the writer the job is
//! looked at again: if it was cancelled (or its document deleted) meanwhile nothing is
//! written, and an ACL change made meanwhile wins over the ACL it was uploaded with.
//!
//! When the queue runs dry after writes, the vector index is optimized and staging folders
//! nobody needs are removed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lore_core::jobs::{Job, JobState};
use lore_ingest::{PreparedUpload, Upload};

use crate::state::{AppState, sweep_staging};

/// Staging folders younger than this may belong to an upload being staged right now.
pub(crate) const STAGING_GRACE: Duration = Duration::from_secs(3600);

/// How often an idle worker looks at a queue shared with other processes: one indexed query.
const SHARED_QUEUE_POLL: Duration = Duration::from_secs(1);

/// Runs until `shutdown` resolves; the job in progress finishes first.
pub async fn run(state: Arc<AppState>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    // Jobs queued by this process wake it at once; jobs queued by an API replica are found by
    // polling the shared queue.
    let idle_poll = if state.config.database.url.is_some() { SHARED_QUEUE_POLL } else { Duration::from_secs(5) };
    // Documents indexed since the queue last ran dry.
    let mut written: Vec<String> = Vec::new();
    loop {
        match state.jobs.fail_expired() {
            Ok(failed) => {
                for job in failed {
                    report_failure(&state, &job);
                }
            }
            Err(error) => tracing::error!(%error, "cannot read the job queue"),
        }
        let next = match state.jobs.claim_next() {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(%error, "cannot read the job queue");
                None
            }
        };
        match next {
            Some(job) => {
                let cancel = Arc::new(AtomicBool::new(false));
                *state.current_job.lock().unwrap_or_else(|p| p.into_inner()) = Some((job.id.clone(), cancel.clone()));
                let heartbeat = tokio::spawn(keep_lease(state.clone(), job.clone(), cancel.clone()));
                let outcome = {
                    let state = state.clone();
                    let job = job.clone();
                    // A panic anywhere in ingest must fail the job, not the worker.
                    tokio::spawn(async move { process(&state, &job, &cancel).await })
                        .await
                        .unwrap_or_else(|e| Err(format!("ingest crashed: {e}")))
                };
                heartbeat.abort();
                *state.current_job.lock().unwrap_or_else(|p| p.into_inner()) = None;
                if matches!(outcome, Ok(true)) {
                    written.push(job.document_id.clone());
                }
                let written_now = matches!(outcome, Ok(true));
                match state.jobs.finish(&job, outcome.map(|_| ())) {
                    Ok(true) => {}
                    Ok(false) => tracing::info!(job = %job.id, "job was cancelled or taken over while it ran"),
                    Err(error) => tracing::error!(%error, job = %job.id, "cannot record the job outcome"),
                }
                match state.jobs.get(&job.id) {
                    Ok(Some(now @ Job { state: JobState::Failed, .. })) => report_failure(&state, &now),
                    _ if written_now => state.webhooks.emit("document.indexed", job_event(&job)),
                    _ => {}
                }
                let _ = std::fs::remove_dir_all(job.staged_path.parent().unwrap_or(&job.staged_path));
            }
            None => {
                if !written.is_empty() {
                    if let Err(error) = state.writer.lock().await.optimize().await {
                        tracing::warn!(%error, "optimizing the vector index failed");
                    }
                    sweep_staging(&state.config.data_dir, &state.jobs, STAGING_GRACE);
                    tokio::spawn(crate::usage::recheck_gaps(state.clone(), std::mem::take(&mut written)));
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = state.job_queued.notified() => {}
                    _ = tokio::time::sleep(idle_poll) => {}
                }
            }
        }
    }
}

/// Renews the job's lease while it is processed; when the lease is lost (the job was
/// cancelled, or this worker stalled past the lease and another took the job over), cancels
/// the work here.
async fn keep_lease(state: Arc<AppState>, job: Job, cancel: Arc<AtomicBool>) {
    let every = state.jobs.lease() / 4;
    loop {
        tokio::time::sleep(every).await;
        match state.jobs.renew(&job) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %job.id, "lost the job's lease; stopping its work");
                cancel.store(true, Ordering::Relaxed);
                return;
            }
            // The database is unreachable for now; the lease may still hold at the next try.
            Err(error) => tracing::warn!(%error, job = %job.id, "cannot renew the job's lease"),
        }
    }
}

fn job_event(job: &Job) -> serde_json::Value {
    serde_json::json!({
        "job_id": job.id, "document_id": job.document_id, "collection": job.collection, "filename": job.filename,
    })
}

/// Logs a failed job and tells the webhooks.
fn report_failure(state: &AppState, job: &Job) {
    let reason = job.error.clone().unwrap_or_default();
    tracing::warn!(job = %job.id, file = %job.filename, %reason, "job failed");
    let mut event = job_event(job);
    event["error"] = serde_json::Value::String(reason);
    state.webhooks.emit("document.failed", event);
}

/// Prepares and writes one job; `Ok(true)` when the indexes were written.
async fn process(state: &AppState, job: &Job, cancel: &Arc<AtomicBool>) -> Result<bool, String> {
    let collection = state
        .catalog()
        .collection(&job.collection)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("collection {:?} no longer exists", job.collection))?;
    let known = state.catalog().document(&job.document_id).map_err(|e| e.to_string())?.map(|d| d.fingerprint);
    let upload = Upload {
        collection: &collection,
        document_id: &job.document_id,
        path: &job.staged_path,
        filename: &job.filename,
        acl: job.acl.as_ref(),
        title: job.title.as_deref(),
        metadata: &job.metadata,
    };
    let prepared = state
        .preparer
        .prepare(&upload, known, cancel.clone(), |keys| state.catalog().stored_vectors(keys))
        .await
        .map_err(|e| e.to_string())?;
    if cancel.load(Ordering::Relaxed) {
        return Err("cancelled".into());
    }
    let mut writer = state.writer.lock().await;
    // Looked at again under the writer: a cancel or delete that came first wins.
    let current = match state.jobs.get(&job.id).map_err(|e| e.to_string())? {
        Some(current) if current.state == JobState::Processing && current.claim == job.claim => current,
        _ => return Ok(false),
    };
    match prepared {
        PreparedUpload::Ready(mut ready) => {
            if current.acl != job.acl
                && let Some(acl) = current.acl
            {
                ready.set_acl(acl);
            }
            let chunks = writer.write_upload(*ready, &job.metadata).await.map_err(|e| e.to_string())?;
            tracing::info!(job = %job.id, document = %job.document_id, chunks, "document indexed");
            Ok(true)
        }
        PreparedUpload::Unchanged => {
            writer.catalog().set_metadata(&job.document_id, &job.metadata).map_err(|e| e.to_string())?;
            Ok(false)
        }
        PreparedUpload::Rejected(kind) => Err(kind.to_string()),
    }
}
