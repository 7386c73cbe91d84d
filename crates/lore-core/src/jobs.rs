//! The persistent job queue (SQLite): uploads and replacements waiting for the ingest worker.
//!
//! States: `queued` → `processing` → `indexed` | `failed` (with a reason) | `cancelled` (by
//! a manager, or because the document was deleted). A job claimed by a worker that died
//! (crash, restart) is put back in the queue when the server starts, at most
//! [`MAX_ATTEMPTS`] times in all; then it fails with that reason, so a file that keeps killing
//! the process cannot do it forever. The ingest journal has already rolled back its partial
//! index writes, so running it again is safe. The uploaded bytes stay in the staging folder
//! until the job ends.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::acl::Acl;
use crate::db;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Processing,
    Indexed,
    Failed,
    Cancelled,
}

/// How many times a job may be started (the first run and retries after restarts).
pub const MAX_ATTEMPTS: u32 = 3;

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Processing => "processing",
            JobState::Indexed => "indexed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
    fn parse(text: &str) -> JobState {
        match text {
            "queued" => JobState::Queued,
            "processing" => JobState::Processing,
            "indexed" => JobState::Indexed,
            "cancelled" => JobState::Cancelled,
            _ => JobState::Failed,
        }
    }
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Indexed | JobState::Failed | JobState::Cancelled)
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub collection: String,
    /// The document this job creates or replaces.
    pub document_id: String,
    /// Sanitised file name; the document's path inside its collection.
    pub filename: String,
    pub state: JobState,
    /// Why the job failed.
    pub error: Option<String>,
    pub attempts: u32,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub content_sha256: String,
    #[serde(skip)]
    pub staged_path: PathBuf,
    /// ACL given with the upload (else the file's own or the collection default).
    #[serde(skip)]
    pub acl: Option<Acl>,
    #[serde(skip)]
    pub metadata: serde_json::Value,
    /// Title given with the upload.
    #[serde(skip)]
    pub title: Option<String>,
}

pub struct NewJob<'a> {
    pub collection: &'a str,
    pub document_id: &'a str,
    pub filename: &'a str,
    pub content_sha256: &'a str,
    pub staged_path: &'a Path,
    pub acl: Option<&'a Acl>,
    pub metadata: &'a serde_json::Value,
    pub title: Option<&'a str>,
    pub created_by: &'a str,
}

pub struct JobStore {
    db: db::Store,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    document_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    staged_path TEXT NOT NULL,
    acl TEXT,
    metadata TEXT NOT NULL,
    title TEXT,
    state TEXT NOT NULL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_by_content ON jobs(collection, content_sha256);
"#;

const COLUMNS: &str = "id, collection, document_id, filename, state, error, attempts, created_by, created_at, \
                       updated_at, content_sha256, staged_path, acl, metadata, title";

impl JobStore {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(JobStore { db: db::Store::open(path, SCHEMA)? })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.conn()
    }

    pub fn enqueue(&self, job: NewJob<'_>) -> Result<Job> {
        let id = db::new_id("job");
        let now = db::now();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO jobs (id, collection, document_id, filename, content_sha256, staged_path, acl, metadata, title, \
             state, attempts, created_by, created_at, updated_at, seq) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', 0, ?10, ?11, ?11, \
                     (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs))",
            params![
                id,
                job.collection,
                job.document_id,
                job.filename,
                job.content_sha256,
                job.staged_path.to_string_lossy(),
                job.acl.map(|a| serde_json::to_string(a).expect("acl serializes")),
                job.metadata.to_string(),
                job.title,
                job.created_by,
                now
            ],
        )?;
        Ok(get(&conn, &id)?.expect("job just inserted"))
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>> {
        get(&self.conn(), id)
    }

    /// The oldest queued job, now marked `processing`.
    pub fn claim_next(&self) -> Result<Option<Job>> {
        let conn = self.conn();
        let id: Option<String> = conn
            .query_row(
                "UPDATE jobs SET state = 'processing', attempts = attempts + 1, updated_at = ?1 \
                 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1) RETURNING id",
                [db::now()],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => get(&conn, &id),
            None => Ok(None),
        }
    }

    /// Records how a job being processed ended; `false` (nothing changed) when it is no
    /// longer processing: it was cancelled meanwhile, and that stays.
    pub fn finish(&self, id: &str, outcome: std::result::Result<(), String>) -> Result<bool> {
        let (state, error) = match outcome {
            Ok(()) => (JobState::Indexed, None),
            Err(reason) => (JobState::Failed, Some(reason)),
        };
        Ok(self.conn().execute(
            "UPDATE jobs SET state = ?2, error = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'processing'",
            params![id, state.as_str(), error, db::now()],
        )? == 1)
    }

    /// Whether a job is still `processing` (not cancelled since it was claimed).
    pub fn is_processing(&self, id: &str) -> Result<bool> {
        Ok(self.get(id)?.is_some_and(|job| job.state == JobState::Processing))
    }

    /// Cancels a queued or processing job; returns it, or `None` when there is no such job.
    /// A finished job stays as it ended.
    pub fn cancel(&self, id: &str, reason: &str) -> Result<Option<Job>> {
        let conn = self.conn();
        conn.execute(
            "UPDATE jobs SET state = 'cancelled', error = ?2, updated_at = ?3 \
             WHERE id = ?1 AND state IN ('queued', 'processing')",
            params![id, reason, db::now()],
        )?;
        get(&conn, id)
    }

    /// Cancels the jobs still queued that were staged before `cutoff_secs` (Unix time), with
    /// `reason`: the retention of staged uploads. Returns them.
    pub fn cancel_queued_before(&self, cutoff_secs: i64, reason: &str) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "UPDATE jobs SET state = 'cancelled', error = ?2, updated_at = ?3 \
             WHERE state = 'queued' AND created_at < ?1 RETURNING {COLUMNS}"
        ))?;
        let rows = stmt.query_map(params![cutoff_secs, reason, db::now()], row_to_job)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Cancels the unfinished jobs of a document (it was deleted); returns them.
    pub fn cancel_for_document(&self, document_id: &str, reason: &str) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "UPDATE jobs SET state = 'cancelled', error = ?2, updated_at = ?3 \
             WHERE document_id = ?1 AND state IN ('queued', 'processing') RETURNING {COLUMNS}"
        ))?;
        let rows = stmt.query_map(params![document_id, reason, db::now()], row_to_job)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Gives the unfinished jobs of a document a new ACL (an ACL change made while a new
    /// version waits must not be undone when that version is written).
    pub fn set_pending_acl(&self, document_id: &str, acl: &Acl) -> Result<usize> {
        Ok(self.conn().execute(
            "UPDATE jobs SET acl = ?2, updated_at = ?3 WHERE document_id = ?1 AND state IN ('queued', 'processing')",
            params![document_id, serde_json::to_string(acl).expect("acl serializes"), db::now()],
        )?)
    }

    /// Puts jobs left `processing` by a previous run back in the queue, unless they were
    /// started [`MAX_ATTEMPTS`] times already: those fail with the reason. Returns (requeued,
    /// failed).
    pub fn requeue_interrupted(&self) -> Result<(usize, Vec<Job>)> {
        let conn = self.conn();
        let reason = format!(
            "the server stopped while processing this file {MAX_ATTEMPTS} times; not retried again (upload it again \
             to retry)"
        );
        let mut stmt = conn.prepare(&format!(
            "UPDATE jobs SET state = 'failed', error = ?1, updated_at = ?2 \
             WHERE state = 'processing' AND attempts >= ?3 RETURNING {COLUMNS}"
        ))?;
        let failed = stmt
            .query_map(params![reason, db::now(), MAX_ATTEMPTS], row_to_job)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let requeued =
            conn.execute("UPDATE jobs SET state = 'queued', updated_at = ?1 WHERE state = 'processing'", [db::now()])?;
        Ok((requeued, failed))
    }

    /// Staging paths of the jobs that still need their file (queued or processing).
    pub fn pending_staged_paths(&self) -> Result<Vec<PathBuf>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT staged_path FROM jobs WHERE state IN ('queued', 'processing')")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.map(|r| r.map(PathBuf::from)).collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The newest job of a document.
    pub fn latest_for_document(&self, document_id: &str) -> Result<Option<Job>> {
        let conn = self.conn();
        let id: Option<String> = conn
            .query_row("SELECT id FROM jobs WHERE document_id = ?1 ORDER BY seq DESC LIMIT 1", [document_id], |r| {
                r.get(0)
            })
            .optional()?;
        match id {
            Some(id) => get(&conn, &id),
            None => Ok(None),
        }
    }

    /// Unfinished (or failed) jobs of a collection whose document is not indexed yet.
    pub fn unindexed_of_collection(&self, collection: &str) -> Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs j WHERE collection = ?1 \
             AND seq = (SELECT MAX(seq) FROM jobs WHERE document_id = j.document_id) \
             AND state != 'indexed' ORDER BY filename"
        ))?;
        let rows = stmt.query_map([collection], row_to_job)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn counts(&self) -> Result<Vec<(JobState, usize)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")?;
        let rows =
            stmt.query_map([], |r| Ok((JobState::parse(&r.get::<_, String>(0)?), r.get::<_, i64>(1)? as usize)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn get(conn: &Connection, id: &str) -> Result<Option<Job>> {
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), [id], row_to_job).optional()?)
}

fn row_to_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let acl: Option<String> = r.get(12)?;
    let metadata: String = r.get(13)?;
    Ok(Job {
        id: r.get(0)?,
        collection: r.get(1)?,
        document_id: r.get(2)?,
        filename: r.get(3)?,
        state: JobState::parse(&r.get::<_, String>(4)?),
        error: r.get(5)?,
        attempts: r.get::<_, i64>(6)? as u32,
        created_by: r.get(7)?,
        created_at: db::rfc3339(r.get(8)?),
        updated_at: db::rfc3339(r.get(9)?),
        content_sha256: r.get(10)?,
        staged_path: PathBuf::from(r.get::<_, String>(11)?),
        acl: acl.and_then(|a| serde_json::from_str(&a).ok()),
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        title: r.get(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job in `hr` for document `name`, by alice.
    fn new_job<'a>(name: &'a str, metadata: &'a serde_json::Value) -> NewJob<'a> {
        NewJob {
            collection: "hr",
            document_id: name,
            filename: name,
            content_sha256: name,
            staged_path: Path::new("/tmp/x"),
            acl: None,
            metadata,
            title: None,
            created_by: "alice",
        }
    }

    #[test]
    fn queue_claims_in_order_and_requeues_interrupted_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("db.sqlite")).unwrap();
        let meta = serde_json::json!({});
        let new = |name| new_job(name, &meta);
        let a = store.enqueue(new("a")).unwrap();
        let b = store.enqueue(new("b")).unwrap();
        assert_eq!(a.state, JobState::Queued);
        let claimed = store.claim_next().unwrap().unwrap();
        assert_eq!((claimed.id.as_str(), claimed.state, claimed.attempts), (a.id.as_str(), JobState::Processing, 1));
        assert_eq!(store.requeue_interrupted().unwrap().0, 1);
        assert_eq!(store.claim_next().unwrap().unwrap().id, a.id, "the interrupted job runs first again");
        assert!(store.finish(&a.id, Err("bad pdf".into())).unwrap());
        assert_eq!(store.claim_next().unwrap().unwrap().id, b.id);
        assert!(store.finish(&b.id, Ok(())).unwrap());
        assert!(store.claim_next().unwrap().is_none());
        let failed = store.get(&a.id).unwrap().unwrap();
        assert_eq!((failed.state, failed.error.as_deref()), (JobState::Failed, Some("bad pdf")));
        assert!(!store.finish(&a.id, Ok(())).unwrap(), "a finished job is not finished again");
    }

    #[test]
    fn retention_cancels_only_jobs_still_queued_since_before_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("db.sqlite")).unwrap();
        let meta = serde_json::json!({});
        let queued = store.enqueue(new_job("waiting.pdf", &meta)).unwrap();
        let running = store.enqueue(new_job("running.pdf", &meta)).unwrap();
        let done = store.enqueue(new_job("done.pdf", &meta)).unwrap();
        store.claim_next().unwrap();
        store.claim_next().unwrap();
        store.claim_next().unwrap();
        store.finish(&done.id, Ok(())).unwrap();
        store.requeue_interrupted().unwrap(); // waiting.pdf and running.pdf: queued again
        store.claim_next().unwrap(); // running.pdf
        let now = db::now();
        assert!(store.cancel_queued_before(now - 3600, "old").unwrap().is_empty(), "nothing is an hour old");
        let cancelled = store.cancel_queued_before(now + 1, "the upload waited too long").unwrap();
        let ids: Vec<&str> = cancelled.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids.len(), 1);
        let left = store.get(ids[0]).unwrap().unwrap();
        assert_eq!((left.state, left.error.as_deref()), (JobState::Cancelled, Some("the upload waited too long")));
        let states: Vec<JobState> =
            [&queued.id, &running.id, &done.id].iter().map(|id| store.get(id).unwrap().unwrap().state).collect();
        assert_eq!(states.iter().filter(|s| **s == JobState::Cancelled).count(), 1);
        assert!(states.contains(&JobState::Processing) && states.contains(&JobState::Indexed), "{states:?}");
    }

    #[test]
    fn a_job_that_keeps_dying_fails_after_its_attempts_and_cancelled_jobs_stay_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("db.sqlite")).unwrap();
        let meta = serde_json::json!({});
        let new = |name| new_job(name, &meta);
        let crashing = store.enqueue(new("crash.pdf")).unwrap();
        for attempt in 1..=MAX_ATTEMPTS {
            let claimed = store.claim_next().unwrap().unwrap();
            assert_eq!((claimed.id.as_str(), claimed.attempts), (crashing.id.as_str(), attempt));
            // The process dies here; the next start looks at the queue.
            let (requeued, failed) = store.requeue_interrupted().unwrap();
            if attempt < MAX_ATTEMPTS {
                assert_eq!((requeued, failed.len()), (1, 0));
            } else {
                assert_eq!((requeued, failed.len()), (0, 1));
            }
        }
        let failed = store.get(&crashing.id).unwrap().unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert!(failed.error.unwrap().contains("3 times"));
        assert!(store.claim_next().unwrap().is_none(), "never started a fourth time");

        let stuck = store.enqueue(new("stuck.pdf")).unwrap();
        assert_eq!(store.claim_next().unwrap().unwrap().id, stuck.id);
        let cancelled = store.cancel(&stuck.id, "cancelled by admin").unwrap().unwrap();
        assert_eq!(cancelled.state, JobState::Cancelled);
        assert!(!store.is_processing(&stuck.id).unwrap());
        assert!(!store.finish(&stuck.id, Ok(())).unwrap(), "the worker's late outcome does not undo a cancel");
        assert_eq!(store.get(&stuck.id).unwrap().unwrap().state, JobState::Cancelled);
        assert!(store.pending_staged_paths().unwrap().is_empty());
    }
}
