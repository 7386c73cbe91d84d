//! The background worker: takes queued jobs one at a time (the indexes have one writer, and
//! embedding already uses every core), runs the ingest pipeline on the staged file and
//! records the outcome. A file that fails never blocks the queue: its job fails with the
//! reason and the next one starts. When the queue runs dry after writes, the vector index
//! is optimized.

use std::sync::Arc;
use std::time::Duration;

use lore_core::jobs::Job;
use lore_ingest::{Upload, UploadOutcome};

use crate::state::AppState;

/// Runs until `shutdown` resolves; the job in progress finishes first.
pub async fn run(state: Arc<AppState>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut wrote = false;
    loop {
        let next = match state.jobs.claim_next() {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(%error, "cannot read the job queue");
                None
            }
        };
        match next {
            Some(job) => {
                wrote = true;
                let outcome = {
                    let state = state.clone();
                    let job = job.clone();
                    // A panic in a parser must fail the job, not the worker.
                    tokio::spawn(async move { process(&state, &job).await })
                        .await
                        .unwrap_or_else(|e| Err(format!("ingest crashed: {e}")))
                };
                if let Err(reason) = &outcome {
                    tracing::warn!(job = %job.id, file = %job.filename, %reason, "job failed");
                }
                if let Err(error) = state.jobs.finish(&job.id, outcome) {
                    tracing::error!(%error, job = %job.id, "cannot record the job outcome");
                }
                let _ = std::fs::remove_dir_all(job.staged_path.parent().unwrap_or(&job.staged_path));
            }
            None => {
                if wrote {
                    wrote = false;
                    if let Err(error) = state.writer.lock().await.optimize().await {
                        tracing::warn!(%error, "optimizing the vector index failed");
                    }
                }
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = state.job_queued.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

async fn process(state: &AppState, job: &Job) -> Result<(), String> {
    let collection = state
        .catalog()
        .collection(&job.collection)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("collection {:?} no longer exists", job.collection))?;
    let mut writer = state.writer.lock().await;
    let outcome = writer
        .ingest_upload(Upload {
            collection: &collection,
            document_id: &job.document_id,
            path: &job.staged_path,
            filename: &job.filename,
            acl: job.acl.as_ref(),
            title: job.title.as_deref(),
            metadata: &job.metadata,
        })
        .await
        .map_err(|e| e.to_string())?;
    match outcome {
        UploadOutcome::Indexed { chunks } => {
            tracing::info!(job = %job.id, document = %job.document_id, chunks, "document indexed");
            Ok(())
        }
        UploadOutcome::Unchanged => Ok(()),
        UploadOutcome::Rejected(kind) => Err(kind.to_string()),
    }
}
