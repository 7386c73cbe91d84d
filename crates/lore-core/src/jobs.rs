//! The persistent job queue (SQLite): uploads and replacements waiting for the ingest worker.
//!
//! States: `queued` → `processing` → `indexed` | `failed` (with a reason) | `cancelled` (by
//! a manager, or because the document was deleted).
//!
//! The queue lives in the application database: SQLite in the embedded default, PostgreSQL
//! when several workers share it. A claim takes the oldest queued job and holds it under a
//! lease that the worker renews while it works (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//! concurrent workers never take the same job and never wait on each other). A worker that
//! dies stops renewing: once the lease runs out another worker takes the job over, and the
//! dead worker's outcome, should it come back, is refused (it no longer holds the claim). In
//! the embedded default the one process also puts its own interrupted jobs back in the queue
//! when it starts, without waiting for their leases. A job is started at most
//! [`MAX_ATTEMPTS`] times in all; then it fails with that reason, so a file that keeps
//! killing workers cannot do it forever. Running a job again is safe: the ingest journal has
//! rolled back partial index writes and chunk ids are stable. The uploaded bytes stay in the
//! staging folder until the job ends.

use std::path::{Path, PathBuf};

use std::time::Duration;

use lore_db::{Database, Db, Dialect, Location, Migration, Row, Schema, params};
use lore_usage::now_ms;
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

/// How long a claim holds without renewal; the worker renews it every quarter of that.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

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
    /// The claim of the worker processing the job (see [`JobStore::claim_next`]).
    #[serde(skip)]
    pub claim: Option<String>,
    /// The worker process holding the job while it is processed (`host:pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
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
    db: Db,
    lease: Duration,
}

const SCHEMA: Schema = Schema {
    name: "jobs",
    migrations: &[
        Migration {
            version: 1,
            // Databases made before migrations were recorded already have this table.
            sqlite: r#"
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
"#,
            postgres: r#"
CREATE TABLE jobs (
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
    attempts BIGINT NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    lease_until BIGINT,
    claim TEXT
);
CREATE INDEX jobs_queue ON jobs(state, seq);
CREATE INDEX jobs_by_content ON jobs(collection, content_sha256);
CREATE INDEX jobs_by_document ON jobs(document_id, seq);
"#,
        },
        Migration {
            version: 2,
            // Leases: Unix milliseconds, and the claim holding them.
            sqlite: "ALTER TABLE jobs ADD COLUMN lease_until INTEGER; ALTER TABLE jobs ADD COLUMN claim TEXT; \
                     CREATE INDEX IF NOT EXISTS jobs_by_document ON jobs(document_id, seq);",
            postgres: "SELECT 1",
        },
    ],
};

const COLUMNS: &str = "id, collection, document_id, filename, state, error, attempts, created_by, created_at, \
                       updated_at, content_sha256, staged_path, acl, metadata, title, claim";

/// This process as a worker: `host:pid`.
fn worker_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    })
    .clone()
}

impl JobStore {
    /// The queue in the embedded database file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?)
    }

    /// The queue in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> Result<Self> {
        Ok(JobStore { db: database.store(&SCHEMA)?, lease: DEFAULT_LEASE })
    }

    /// Claims hold for `lease` without renewal (tests use short ones).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    pub fn enqueue(&self, job: NewJob<'_>) -> Result<Job> {
        let id = db::new_id("job");
        let now = db::now();
        let seq = match self.db.dialect() {
            // SQLite has one writer at a time; PostgreSQL numbers the rows itself.
            Dialect::Sqlite => {
                ", seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', 0, ?10, ?11, ?11, \
                                (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs))"
            }
            Dialect::Postgres => ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', 0, ?10, ?11, ?11)",
        };
        let row = self.db.query_opt(
            &format!(
                "INSERT INTO jobs (id, collection, document_id, filename, content_sha256, staged_path, acl, metadata, \
                 title, state, attempts, created_by, created_at, updated_at{seq} RETURNING {COLUMNS}"
            ),
            params![
                id,
                job.collection,
                job.document_id,
                job.filename,
                job.content_sha256,
                job.staged_path.to_string_lossy().into_owned(),
                job.acl.map(|a| serde_json::to_string(a).expect("acl serializes")),
                job.metadata.to_string(),
                job.title,
                job.created_by,
                now
            ],
        )?;
        row_to_job(&row.expect("INSERT … RETURNING gives the row"))
    }

    pub fn get(&self, id: &str) -> Result<Option<Job>> {
        self.db
            .query_opt(&format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"), params![id])?
            .map(|r| row_to_job(&r))
            .transpose()
    }

    /// The oldest queued job, or one whose worker stopped renewing its lease, now
    /// `processing` under a new claim held for the lease.
    pub fn claim_next(&self) -> Result<Option<Job>> {
        let now = now_ms();
        let skip_locked = match self.db.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let row = self.db.query_opt(
            &format!(
                "UPDATE jobs SET state = 'processing', attempts = attempts + 1, updated_at = ?1, lease_until = ?2, \
                 claim = ?3 WHERE id = (SELECT id FROM jobs WHERE state = 'queued' \
                 OR (state = 'processing' AND lease_until < ?4 AND attempts < ?5) ORDER BY seq LIMIT 1{skip_locked}) \
                 RETURNING {COLUMNS}"
            ),
            params![
                now / 1000,
                now + self.lease.as_millis() as i64,
                format!("{}/{}", worker_name(), db::new_id("claim")),
                now,
                MAX_ATTEMPTS
            ],
        )?;
        row.map(|r| row_to_job(&r)).transpose()
    }

    /// Extends the lease of a job this worker holds; `false` when it no longer holds it
    /// (cancelled, or taken over after the lease ran out): the worker should stop.
    pub fn renew(&self, job: &Job) -> Result<bool> {
        Ok(self.db.execute(
            "UPDATE jobs SET lease_until = ?3 WHERE id = ?1 AND claim = ?2 AND state = 'processing'",
            params![job.id.as_str(), job.claim.as_deref(), now_ms() + self.lease.as_millis() as i64],
        )? == 1)
    }

    /// Whether this claim still holds the job (it was neither cancelled nor taken over).
    pub fn holds(&self, job: &Job) -> Result<bool> {
        Ok(self.get(&job.id)?.is_some_and(|now| now.state == JobState::Processing && now.claim == job.claim))
    }

    /// Records how a claimed job ended; `false` (nothing changed) when the claim no longer
    /// holds it: it was cancelled meanwhile, and that stays, or another worker took it over.
    pub fn finish(&self, job: &Job, outcome: std::result::Result<(), String>) -> Result<bool> {
        let (state, error) = match outcome {
            Ok(()) => (JobState::Indexed, None),
            Err(reason) => (JobState::Failed, Some(reason)),
        };
        Ok(self.db.execute(
            "UPDATE jobs SET state = ?3, error = ?4, updated_at = ?5, lease_until = NULL \
             WHERE id = ?1 AND claim = ?2 AND state = 'processing'",
            params![job.id.as_str(), job.claim.as_deref(), state.as_str(), error, db::now()],
        )? == 1)
    }

    /// Cancels a queued or processing job; returns it, or `None` when there is no such job.
    /// A finished job stays as it ended.
    pub fn cancel(&self, id: &str, reason: &str) -> Result<Option<Job>> {
        self.db.execute(
            "UPDATE jobs SET state = 'cancelled', error = ?2, updated_at = ?3 \
             WHERE id = ?1 AND state IN ('queued', 'processing')",
            params![id, reason, db::now()],
        )?;
        self.get(id)
    }

    /// Cancels the jobs still queued that were staged before `cutoff_secs` (Unix time), with
    /// `reason`: the retention of staged uploads. Returns them.
    pub fn cancel_queued_before(&self, cutoff_secs: i64, reason: &str) -> Result<Vec<Job>> {
        self.jobs(
            &format!(
                "UPDATE jobs SET state = 'cancelled', error = ?2, updated_at = ?3 \
                 WHERE state = 'queued' AND created_at < ?1 RETURNING {COLUMNS}"
            ),
            params![cutoff_secs, reason, db::now()],
        )
    }

    /// Cancels the unfinished jobs of a document (it was deleted); returns them.
    pub fn cancel_for_document(&self, document_id: &str, reason: &str) -> Result<Vec<Job>> {
        self.jobs(
            &format!(
                "UPDATE jobs SET state = 'cancelled', error = ?2, updated_at = ?3 \
                 WHERE document_id = ?1 AND state IN ('queued', 'processing') RETURNING {COLUMNS}"
            ),
            params![document_id, reason, db::now()],
        )
    }

    /// Gives the unfinished jobs of a document a new ACL (an ACL change made while a new
    /// version waits must not be undone when that version is written).
    pub fn set_pending_acl(&self, document_id: &str, acl: &Acl) -> Result<usize> {
        Ok(self.db.execute(
            "UPDATE jobs SET acl = ?2, updated_at = ?3 WHERE document_id = ?1 AND state IN ('queued', 'processing')",
            params![document_id, serde_json::to_string(acl).expect("acl serializes"), db::now()],
        )?)
    }

    /// Embedded default only (the one process owns every job): puts jobs left `processing`
    /// by a previous run back in the queue without waiting for their leases, unless they were
    /// started [`MAX_ATTEMPTS`] times already: those fail with the reason. Returns (requeued,
    /// failed). With shared workers, leases do this instead.
    pub fn requeue_interrupted(&self) -> Result<(usize, Vec<Job>)> {
        let reason = format!(
            "the server stopped while processing this file {MAX_ATTEMPTS} times; not retried again (upload it again \
             to retry)"
        );
        self.db
            .transaction(|tx| {
                let failed = tx
                    .query(
                        &format!(
                            "UPDATE jobs SET state = 'failed', error = ?1, updated_at = ?2 \
                         WHERE state = 'processing' AND attempts >= ?3 RETURNING {COLUMNS}"
                        ),
                        params![reason.as_str(), db::now(), MAX_ATTEMPTS],
                    )?
                    .iter()
                    .map(row_to_job)
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| lore_db::Error::Other(e.to_string()))?;
                let requeued = tx.execute(
                    "UPDATE jobs SET state = 'queued', updated_at = ?1, lease_until = NULL, claim = NULL \
                 WHERE state = 'processing'",
                    params![db::now()],
                )?;
                Ok((requeued, failed))
            })
            .map_err(Into::into)
    }

    /// Fails the jobs whose lease ran out after their last allowed attempt (their workers
    /// died [`MAX_ATTEMPTS`] times); returns them.
    pub fn fail_expired(&self) -> Result<Vec<Job>> {
        let reason = format!(
            "a worker stopped while processing this file {MAX_ATTEMPTS} times; not retried again (upload it again \
             to retry)"
        );
        self.jobs(
            &format!(
                "UPDATE jobs SET state = 'failed', error = ?1, updated_at = ?2 \
                 WHERE state = 'processing' AND lease_until < ?3 AND attempts >= ?4 RETURNING {COLUMNS}"
            ),
            params![reason, db::now(), now_ms(), MAX_ATTEMPTS],
        )
    }

    /// Staging paths of the jobs that still need their file (queued or processing).
    pub fn pending_staged_paths(&self) -> Result<Vec<PathBuf>> {
        self.db
            .query("SELECT staged_path FROM jobs WHERE state IN ('queued', 'processing')", params![])?
            .iter()
            .map(|r| Ok(PathBuf::from(r.get::<String>(0)?)))
            .collect()
    }

    /// The newest job of a document.
    pub fn latest_for_document(&self, document_id: &str) -> Result<Option<Job>> {
        self.db
            .query_opt(
                &format!("SELECT {COLUMNS} FROM jobs WHERE document_id = ?1 ORDER BY seq DESC LIMIT 1"),
                params![document_id],
            )?
            .map(|r| row_to_job(&r))
            .transpose()
    }

    /// Unfinished (or failed) jobs of a collection whose document is not indexed yet.
    pub fn unindexed_of_collection(&self, collection: &str) -> Result<Vec<Job>> {
        self.jobs(
            &format!(
                "SELECT {COLUMNS} FROM jobs j WHERE collection = ?1 \
                 AND seq = (SELECT MAX(seq) FROM jobs WHERE document_id = j.document_id) \
                 AND state != 'indexed' ORDER BY filename"
            ),
            params![collection],
        )
    }

    pub fn counts(&self) -> Result<Vec<(JobState, usize)>> {
        self.db
            .query("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state", params![])?
            .iter()
            .map(|r| Ok((JobState::parse(&r.get::<String>(0)?), r.get::<usize>(1)?)))
            .collect()
    }

    fn jobs(&self, sql: &str, params: &[lore_db::Value]) -> Result<Vec<Job>> {
        self.db.query(sql, params)?.iter().map(row_to_job).collect()
    }
}

fn row_to_job(r: &Row) -> Result<Job> {
    let acl: Option<String> = r.get(12)?;
    let metadata: String = r.get(13)?;
    Ok(Job {
        id: r.get(0)?,
        collection: r.get(1)?,
        document_id: r.get(2)?,
        filename: r.get(3)?,
        state: JobState::parse(&r.get::<String>(4)?),
        error: r.get(5)?,
        attempts: r.get(6)?,
        created_by: r.get(7)?,
        created_at: db::rfc3339(r.get(8)?),
        updated_at: db::rfc3339(r.get(9)?),
        content_sha256: r.get(10)?,
        staged_path: PathBuf::from(r.get::<String>(11)?),
        acl: acl.and_then(|a| serde_json::from_str(&a).ok()),
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        title: r.get(14)?,
        worker: None,
        claim: r.get(15)?,
    })
    .map(|mut job: Job| {
        if job.state == JobState::Processing {
            job.worker = job.claim.as_deref().and_then(|c| c.rsplit_once('/')).map(|(worker, _)| worker.to_owned());
        }
        job
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

    use lore_db::testing::on_both;

    #[test]
    fn queue_claims_in_order_and_requeues_interrupted_jobs() {
        on_both("queue_claims_in_order_and_requeues_interrupted_jobs", |database| {
            let store = JobStore::open_in(database).unwrap();
            let meta = serde_json::json!({"team": "hr"});
            let new = |name| new_job(name, &meta);
            let a = store.enqueue(new("a")).unwrap();
            let b = store.enqueue(new("b")).unwrap();
            assert_eq!((a.state, &a.metadata, a.claim.as_deref()), (JobState::Queued, &meta, None));
            let claimed = store.claim_next().unwrap().unwrap();
            assert_eq!(
                (claimed.id.as_str(), claimed.state, claimed.attempts),
                (a.id.as_str(), JobState::Processing, 1)
            );
            assert!(claimed.claim.is_some());
            assert_eq!(store.requeue_interrupted().unwrap().0, 1);
            let again = store.claim_next().unwrap().unwrap();
            assert_eq!(again.id, a.id, "the interrupted job runs first again");
            assert!(!store.finish(&claimed, Ok(())).unwrap(), "the interrupted run's claim is gone");
            assert!(store.finish(&again, Err("bad pdf".into())).unwrap());
            let b_claimed = store.claim_next().unwrap().unwrap();
            assert_eq!(b_claimed.id, b.id);
            assert!(store.finish(&b_claimed, Ok(())).unwrap());
            assert!(store.claim_next().unwrap().is_none());
            let failed = store.get(&a.id).unwrap().unwrap();
            assert_eq!((failed.state, failed.error.as_deref()), (JobState::Failed, Some("bad pdf")));
            assert!(!store.finish(&again, Ok(())).unwrap(), "a finished job is not finished again");
            assert_eq!(store.latest_for_document("b").unwrap().unwrap().state, JobState::Indexed);
            let counts = store.counts().unwrap();
            assert_eq!(counts, vec![(JobState::Failed, 1), (JobState::Indexed, 1)]);
            assert_eq!(store.unindexed_of_collection("hr").unwrap().len(), 1, "a failed, b indexed");
        });
    }

    #[test]
    fn retention_cancels_only_jobs_still_queued_since_before_the_cutoff() {
        on_both("retention_cancels_only_jobs_still_queued_since_before_the_cutoff", |database| {
            let store = JobStore::open_in(database).unwrap();
            let meta = serde_json::json!({});
            let queued = store.enqueue(new_job("waiting.pdf", &meta)).unwrap();
            let running = store.enqueue(new_job("running.pdf", &meta)).unwrap();
            let done = store.enqueue(new_job("done.pdf", &meta)).unwrap();
            store.claim_next().unwrap();
            store.claim_next().unwrap();
            let done_claim = store.claim_next().unwrap().unwrap();
            assert!(store.finish(&done_claim, Ok(())).unwrap());
            store.requeue_interrupted().unwrap(); // waiting.pdf and running.pdf: queued again
            store.claim_next().unwrap(); // waiting.pdf
            let now = db::now();
            assert!(store.cancel_queued_before(now - 3600, "old").unwrap().is_empty(), "nothing is an hour old");
            let cancelled = store.cancel_queued_before(now + 1, "the upload waited too long").unwrap();
            let ids: Vec<&str> = cancelled.iter().map(|j| j.id.as_str()).collect();
            assert_eq!(ids, vec![running.id.as_str()]);
            let left = store.get(ids[0]).unwrap().unwrap();
            assert_eq!((left.state, left.error.as_deref()), (JobState::Cancelled, Some("the upload waited too long")));
            let states: Vec<JobState> =
                [&queued.id, &running.id, &done.id].iter().map(|id| store.get(id).unwrap().unwrap().state).collect();
            assert_eq!(states, vec![JobState::Processing, JobState::Cancelled, JobState::Indexed]);
        });
    }

    #[test]
    fn a_job_that_keeps_dying_fails_after_its_attempts_and_cancelled_jobs_stay_cancelled() {
        on_both("a_job_that_keeps_dying_fails_after_its_attempts_and_cancelled_jobs_stay_cancelled", |database| {
            let store = JobStore::open_in(database).unwrap();
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
            let claimed = store.claim_next().unwrap().unwrap();
            assert_eq!(claimed.id, stuck.id);
            let cancelled = store.cancel(&stuck.id, "cancelled by admin").unwrap().unwrap();
            assert_eq!(cancelled.state, JobState::Cancelled);
            assert!(!store.holds(&claimed).unwrap());
            assert!(!store.renew(&claimed).unwrap(), "a cancelled job's lease is not renewed");
            assert!(!store.finish(&claimed, Ok(())).unwrap(), "the worker's late outcome does not undo a cancel");
            assert_eq!(store.get(&stuck.id).unwrap().unwrap().state, JobState::Cancelled);
            assert!(store.pending_staged_paths().unwrap().is_empty());
        });
    }

    #[test]
    fn a_lapsed_lease_is_taken_over_and_the_first_claim_is_refused() {
        on_both("a_lapsed_lease_is_taken_over_and_the_first_claim_is_refused", |database| {
            // Renewals come six times per lease, so a loaded machine's scheduling delays do not
            // let a renewed lease lapse.
            let lease = Duration::from_millis(600);
            // Two workers: separate stores (as separate processes would have).
            let first = JobStore::open_in(database).unwrap().with_lease(lease);
            let second = JobStore::open_in(database).unwrap().with_lease(lease);
            let meta = serde_json::json!({});
            let job = first.enqueue(new_job("slow.pdf", &meta)).unwrap();
            let held = first.claim_next().unwrap().unwrap();
            // While the first worker renews, the second finds nothing, longer than one lease.
            for _ in 0..9 {
                std::thread::sleep(lease / 6);
                assert!(first.renew(&held).unwrap());
                assert!(second.claim_next().unwrap().is_none(), "a renewed lease holds");
            }
            // The first worker stops renewing (it died, or hangs): the lease runs out.
            std::thread::sleep(lease * 2);
            let taken = second.claim_next().unwrap().unwrap();
            assert_eq!((taken.id.as_str(), taken.attempts), (job.id.as_str(), 2));
            assert_ne!(taken.claim, held.claim);
            assert!(!first.holds(&held).unwrap() && !first.renew(&held).unwrap());
            assert!(!first.finish(&held, Err("late".into())).unwrap(), "the lapsed claim cannot record an outcome");
            assert!(second.finish(&taken, Ok(())).unwrap());
            assert_eq!(first.get(&job.id).unwrap().unwrap().state, JobState::Indexed);

            // A job whose worker dies on every attempt fails once its last lease runs out.
            let doomed = first.enqueue(new_job("doomed.pdf", &meta)).unwrap();
            for attempt in 1..=MAX_ATTEMPTS {
                assert_eq!(first.claim_next().unwrap().unwrap().attempts, attempt);
                assert!(first.fail_expired().unwrap().is_empty(), "its lease still runs");
                std::thread::sleep(lease + Duration::from_millis(50));
            }
            assert!(first.claim_next().unwrap().is_none(), "not started a fourth time");
            let failed = second.fail_expired().unwrap();
            assert_eq!(failed.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec![doomed.id.as_str()]);
            assert!(failed[0].error.as_deref().unwrap().contains("a worker stopped"));
        });
    }

    #[test]
    fn concurrent_workers_claim_every_job_exactly_once() {
        on_both("concurrent_workers_claim_every_job_exactly_once", |database| {
            let meta = serde_json::json!({});
            let queue = JobStore::open_in(database).unwrap();
            let names: Vec<String> = (0..120).map(|i| format!("doc-{i}")).collect();
            let enqueued: std::collections::BTreeSet<String> =
                names.iter().map(|name| queue.enqueue(new_job(name, &meta)).unwrap().id).collect();
            let workers: Vec<_> = (0..6)
                .map(|_| {
                    let store = JobStore::open_in(database).unwrap();
                    std::thread::spawn(move || {
                        let mut done = Vec::new();
                        while let Some(job) = store.claim_next().unwrap() {
                            assert!(store.finish(&job, Ok(())).unwrap(), "a claim is held until finished");
                            done.push(job.id);
                        }
                        done
                    })
                })
                .collect();
            let mut claimed: Vec<String> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
            claimed.sort();
            let unique: std::collections::BTreeSet<String> = claimed.iter().cloned().collect();
            assert_eq!(claimed.len(), unique.len(), "no job was claimed twice");
            assert_eq!(unique, enqueued, "every job was claimed");
            assert_eq!(queue.counts().unwrap(), vec![(JobState::Indexed, names.len())]);
        });
    }
}
