//! Knowledge gaps: the questions Lore could not answer (it abstained) or answered badly (a
//! thumbs down), grouped so that a knowledge manager sees "twelve people asked how to expense
//! a visa" once, not twelve times, and can mark it answered when a document covers it.
//!
//! Grouping is incremental leader clustering on the query embeddings: a question joins the
//! cluster whose centroid is most similar to it if that similarity reaches the threshold
//! (`usage.gap_similarity`), else it starts a cluster of its own. Clusters are never merged
//! or split afterwards, which is what keeps their ids stable: a status set by a person, and a
//! link shared in a report, stay attached to the same gap while questions keep arriving.
//! Centroids live in memory (loaded at open) so adding a question costs one pass over them
//! and one short transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use lore_db::{Database, Db, Dialect, Location, Migration, Schema, Value, params};
use serde::{Deserialize, Serialize};

use crate::categories::{dot, normalised};
use crate::{Error, Result, new_id, now_ms};

/// Examples returned per gap.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapStatus {
    Open,
    /// A document now answers it (set after the re-check that follows an ingest, or by hand).
    Answered,
    /// Not worth answering (off-topic, a test, a duplicate of policy nobody will write).
    Dismissed,
}

impl GapStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GapStatus::Open => "open",
            GapStatus::Answered => "answered",
            GapStatus::Dismissed => "dismissed",
        }
    }

    pub fn parse(text: &str) -> Option<GapStatus> {
        [GapStatus::Open, GapStatus::Answered, GapStatus::Dismissed].into_iter().find(|s| s.as_str() == text)
    }
}

/// Why a question is a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    Abstained,
    ThumbsDown,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Abstained => "abstained",
            GapReason::ThumbsDown => "thumbs_down",
        }
    }
}

/// A question to record as a gap.
#[derive(Debug, Clone)]
pub struct GapInput {
    pub question: String,
    /// Its query embedding (any length; normalised here).
    pub vector: Vec<f32>,
    /// The asker's departments.
    pub departments: Vec<String>,
    pub reason: GapReason,
    pub time_ms: i64,
    /// The usage event of the request.
    pub event_id: Option<String>,
}

/// Filters of [`GapStore::list`], AND-ed.
#[derive(Debug, Clone)]
pub struct GapQuery {
    /// A knowledge manager's scope: only clusters with at least one question asked from one of
    /// these departments, and their counts, dates, examples and departments taken from those
    /// questions only. `None` (admins) sees everything; an empty list sees nothing.
    pub departments: Option<Vec<String>>,
    pub status: Option<GapStatus>,
    /// Questions asked at or after this time (Unix milliseconds).
    pub from_ms: Option<i64>,
    /// Questions asked before this time (exclusive).
    pub to_ms: Option<i64>,
    /// At most this many gaps, the most asked first.
    pub limit: usize,
}

impl Default for GapQuery {
    fn default() -> Self {
        GapQuery { departments: None, status: None, from_ms: None, to_ms: None, limit: 100 }
    }
}

/// One knowledge gap as reported (counts and examples within the query's scope).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    pub id: String,
    pub count: u64,
    /// Up to five distinct questions, the most recent first.
    pub examples: Vec<String>,
    pub departments: Vec<String>,
    /// Questions per reason (`abstained`, `thumbs_down`).
    pub reasons: BTreeMap<String, u64>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub status: GapStatus,
    /// The document that answered it, when known.
    pub answered_by: Option<String>,
}

impl crate::analytics::CsvRow for Gap {
    fn csv_header() -> Vec<&'static str> {
        vec![
            "id",
            "status",
            "count",
            "abstained",
            "thumbs_down",
            "first_seen",
            "last_seen",
            "departments",
            "examples",
            "answered_by",
        ]
    }

    /// Dates are UTC days; lists are joined with ` | `.
    fn csv_cells(&self) -> Vec<crate::analytics::Cell<'_>> {
        use crate::analytics::Cell;
        let reason = |r: GapReason| Cell::Count(self.reasons.get(r.as_str()).copied().unwrap_or(0));
        vec![
            Cell::Text(&self.id),
            Cell::Text(self.status.as_str()),
            Cell::Count(self.count),
            reason(GapReason::Abstained),
            reason(GapReason::ThumbsDown),
            Cell::Owned(crate::date_text(self.first_seen_ms.div_euclid(1000))),
            Cell::Owned(crate::date_text(self.last_seen_ms.div_euclid(1000))),
            Cell::Owned(self.departments.join(" | ")),
            Cell::Owned(self.examples.join(" | ")),
            self.answered_by.as_deref().map_or(Cell::Missing, Cell::Text),
        ]
    }
}

const SCHEMA: Schema = Schema {
    name: "gaps",
    migrations: &[Migration {
        version: 1,
        // Databases made before migrations were recorded already have these tables.
        sqlite: r#"
CREATE TABLE IF NOT EXISTS gap_clusters (
    id TEXT PRIMARY KEY,
    -- The running mean of the cluster's normalised question vectors, f32 little-endian.
    centroid BLOB NOT NULL,
    count INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    answered_by TEXT,
    -- When the status last changed.
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS gap_questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster_id TEXT NOT NULL REFERENCES gap_clusters(id),
    question TEXT NOT NULL,
    -- The normalised question vector, f32 little-endian: picks the representative question.
    vector BLOB NOT NULL,
    departments TEXT NOT NULL,
    reason TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    event_id TEXT
);
CREATE INDEX IF NOT EXISTS gap_questions_by_cluster ON gap_questions(cluster_id, time_ms);
"#,
        postgres: r#"
CREATE TABLE gap_clusters (
    id TEXT PRIMARY KEY,
    -- The running mean of the cluster's normalised question vectors, f32 little-endian.
    centroid BYTEA NOT NULL,
    count BIGINT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    status TEXT NOT NULL,
    answered_by TEXT,
    -- When the status last changed.
    updated_ms BIGINT NOT NULL
);
CREATE TABLE gap_questions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cluster_id TEXT NOT NULL REFERENCES gap_clusters(id),
    question TEXT NOT NULL,
    -- The normalised question vector, f32 little-endian: picks the representative question.
    vector BYTEA NOT NULL,
    departments TEXT NOT NULL,
    reason TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    event_id TEXT
);
CREATE INDEX gap_questions_by_cluster ON gap_questions(cluster_id, time_ms);
CREATE INDEX gap_questions_by_event ON gap_questions(event_id) WHERE event_id IS NOT NULL;
"#,
    }],
};

const CLUSTERS: &str = "SELECT id, centroid, count FROM gap_clusters ORDER BY first_seen_ms, id";

fn read_clusters(rows: Vec<lore_db::Row>) -> lore_db::Result<Vec<Cluster>> {
    let mut clusters = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, centroid, count): (String, Vec<u8>, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
        let mean = decode(&centroid).ok_or_else(|| {
            lore_db::Error::Other(format!(
                "gap cluster {id}: a centroid of {} bytes is not a list of f32",
                centroid.len()
            ))
        })?;
        let norm = dot(&mean, &mean).sqrt();
        clusters.push(Cluster { id, mean, norm, count: count.max(0) as u64 });
    }
    Ok(clusters)
}

/// A cluster's centroid as held in memory.
struct Cluster {
    id: String,
    /// Mean of unit vectors: shorter than 1 the more its questions differ.
    mean: Vec<f32>,
    norm: f32,
    count: u64,
}

impl Cluster {
    /// Cosine similarity to a unit vector; `None` for a vector of another length (asked with
    /// another embedding model: not comparable, so it never joins this cluster).
    fn similarity(&self, unit: &[f32]) -> Option<f32> {
        (self.mean.len() == unit.len() && self.norm > 0.0).then(|| dot(&self.mean, unit) / self.norm)
    }
}

struct State {
    clusters: Vec<Cluster>,
}

/// Gap clusters and their questions in the application database, with the centroids in
/// memory.
pub struct GapStore {
    db: Db,
    /// Held while a question is added, so memory and the database change together.
    state: Mutex<State>,
    similarity: f32,
}

impl GapStore {
    /// Opens (creating if needed) the gap tables in the SQLite database at `path` and loads
    /// the centroids. `similarity` is the cosine a question needs with a centroid to join it.
    pub fn open(path: &Path, similarity: f32) -> Result<Self> {
        Self::check(similarity)?;
        Self::open_in(&Database::open(&Location::Sqlite(path.to_owned()))?, similarity)
    }

    /// As [`GapStore::open`], in the application database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database, similarity: f32) -> Result<Self> {
        Self::check(similarity)?;
        let db = database.store(&SCHEMA)?;
        let clusters = read_clusters(db.query(CLUSTERS, params![])?)?;
        tracing::debug!(clusters = clusters.len(), similarity, "gap store opened");
        Ok(GapStore { db, state: Mutex::new(State { clusters }), similarity })
    }

    fn check(similarity: f32) -> Result<()> {
        if !(-1.0..=1.0).contains(&similarity) {
            return Err(Error::Invalid(format!(
                "usage.gap_similarity must be a cosine similarity between -1 and 1, not {similarity}"
            )));
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a question to the most similar cluster whose centroid is at least the threshold
    /// similar, moving the centroid to the running mean of the cluster's normalised vectors;
    /// else starts a new cluster with a new random id. Returns the cluster id.
    ///
    /// A question joining an `answered` cluster reopens it: the document that answered the
    /// others did not answer this one. A `dismissed` cluster stays dismissed but counts it.
    pub fn add(&self, input: &GapInput) -> Result<String> {
        let unit = normalised(&input.vector).ok_or_else(|| {
            Error::Invalid(format!("the vector of gap question {:?} is empty or zero", input.question))
        })?;
        let departments = input.departments.iter().cloned().collect::<BTreeSet<_>>();
        let departments = serde_json::Value::from(departments.into_iter().collect::<Vec<_>>()).to_string();
        let mut guard = self.lock();
        let clusters = &mut guard.clusters;
        let shared = self.db.dialect() == lore_db::Dialect::Postgres;
        let similarity_floor = self.similarity;
        let (id, joined) = self.db.transaction(|tx| {
            if shared {
                // Replicas share the clusters: one adder at a time, starting from the
                // database's centroids (another replica may have moved them or made new ones).
                tx.execute("SELECT pg_advisory_xact_lock(7433)", params![])?;
                *clusters = read_clusters(tx.query(CLUSTERS, params![])?)?;
            }
            let nearest = clusters
                .iter()
                .enumerate()
                .filter_map(|(index, cluster)| Some((index, cluster.similarity(&unit)?)))
                .filter(|(_, similarity)| *similarity >= similarity_floor)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let now = now_ms();
            let joined = nearest.map(|(index, similarity)| {
                let cluster = &clusters[index];
                (index, similarity, running_mean(&cluster.mean, cluster.count, &unit))
            });
            let id = match &joined {
                Some((index, _, _)) => clusters[*index].id.clone(),
                None => new_id(),
            };
            match &joined {
                Some((_, _, mean)) => {
                    tx.execute(
                        "UPDATE gap_clusters SET centroid = ?2, count = count + 1, \
                         first_seen_ms = CASE WHEN ?3 < first_seen_ms THEN ?3 ELSE first_seen_ms END, \
                         last_seen_ms = CASE WHEN ?3 > last_seen_ms THEN ?3 ELSE last_seen_ms END, \
                         status = CASE status WHEN 'answered' THEN 'open' ELSE status END, \
                         answered_by = CASE status WHEN 'answered' THEN NULL ELSE answered_by END, \
                         updated_ms = CASE status WHEN 'answered' THEN ?4 ELSE updated_ms END \
                         WHERE id = ?1",
                        params![&id, encode(mean), input.time_ms, now],
                    )?;
                }
                None => {
                    tx.execute(
                        "INSERT INTO gap_clusters (id, centroid, count, first_seen_ms, last_seen_ms, status, \
                         answered_by, updated_ms) VALUES (?1, ?2, 1, ?3, ?3, 'open', NULL, ?4)",
                        params![&id, encode(&unit), input.time_ms, now],
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO gap_questions (cluster_id, question, vector, departments, reason, time_ms, event_id) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    &id,
                    &input.question,
                    encode(&unit),
                    &departments,
                    input.reason.as_str(),
                    input.time_ms,
                    input.event_id.as_deref()
                ],
            )?;
            Ok((id, joined))
        })?;
        // Memory follows the database only once the database has the change.
        match joined {
            Some((index, similarity, mean)) => {
                tracing::debug!(cluster = %id, similarity, "gap question joined a cluster");
                let cluster = &mut clusters[index];
                cluster.norm = dot(&mean, &mean).sqrt();
                cluster.mean = mean;
                cluster.count += 1;
            }
            None => {
                tracing::debug!(cluster = %id, "gap question started a cluster");
                clusters.push(Cluster { id: id.clone(), mean: unit, norm: 1.0, count: 1 });
            }
        }
        Ok(id)
    }

    /// Gaps matching `query`, the most asked first.
    pub fn list(&self, query: &GapQuery) -> Result<Vec<Gap>> {
        let filter = Filter {
            cluster: None,
            status: query.status.map(GapStatus::as_str),
            from_ms: query.from_ms,
            to_ms: query.to_ms,
            departments: query.departments.as_ref().map(|d| serde_json::Value::from(d.clone()).to_string()),
        };
        let scope = query.departments.as_ref().map(|d| d.iter().cloned().collect::<BTreeSet<_>>());
        self.gaps(filter, scope.as_ref(), query.limit)
    }

    /// One gap with all its questions, whatever its status.
    pub fn get(&self, id: &str) -> Result<Option<Gap>> {
        let filter =
            Filter { cluster: Some(id.to_owned()), status: None, from_ms: None, to_ms: None, departments: None };
        Ok(self.gaps(filter, None, 1)?.pop())
    }

    /// Sets a gap's status: an admin or knowledge manager's decision, or the re-check after an
    /// ingest finding that a new document answers it (`answered_by` names that document; it is
    /// refused with any other status). Returns whether the gap exists.
    pub fn set_status(&self, id: &str, status: GapStatus, answered_by: Option<&str>) -> Result<bool> {
        if answered_by.is_some() && status != GapStatus::Answered {
            return Err(Error::Invalid(format!(
                "a gap marked {} cannot be answered by a document; only an answered one can",
                status.as_str()
            )));
        }
        let changed = self.db.execute(
            "UPDATE gap_clusters SET status = ?2, answered_by = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, status.as_str(), answered_by, now_ms()],
        )?;
        Ok(changed > 0)
    }

    /// Deletes the questions asked in these usage events (a person's erasure): the clusters
    /// keep their counts and centroids, which hold no text. Returns the questions deleted.
    pub fn erase_questions_of_events(&self, event_ids: &[String]) -> Result<usize> {
        Ok(self.db.transaction(|tx| {
            let mut deleted = 0;
            for id in event_ids {
                deleted += tx.execute("DELETE FROM gap_questions WHERE event_id = ?1", params![id])?;
            }
            Ok(deleted)
        })?)
    }

    /// Every open gap with one representative question, the one closest to its centroid: what
    /// the re-check after an ingest asks again to learn whether new documents answer it.
    pub fn open_representatives(&self) -> Result<Vec<(String, String)>> {
        let open = self.db.query(
            "SELECT id, centroid FROM gap_clusters WHERE status = 'open' ORDER BY first_seen_ms, id",
            params![],
        )?;
        let mut representatives = Vec::with_capacity(open.len());
        for row in open {
            let (id, centroid): (String, Vec<u8>) = (row.get(0)?, row.get(1)?);
            let centroid = decode(&centroid).ok_or_else(|| {
                Error::Other(format!("gap cluster {id}: a centroid of {} bytes is not a list of f32", centroid.len()))
            })?;
            let mut best: Option<(f32, String)> = None;
            for row in
                self.db.query("SELECT question, vector FROM gap_questions WHERE cluster_id = ?1", params![&id])?
            {
                let vector = decode(&row.get::<Vec<u8>>(1)?).filter(|v| v.len() == centroid.len());
                // Question vectors are unit length: the dot product ranks them as the cosine does.
                let Some(similarity) = vector.map(|v| dot(&v, &centroid)) else { continue };
                if best.as_ref().is_none_or(|(top, _)| similarity > *top) {
                    best = Some((similarity, row.get(0)?));
                }
            }
            if let Some((_, question)) = best {
                representatives.push((id, question));
            }
        }
        Ok(representatives)
    }

    /// The gaps matching `filter`, at most `limit`; `scope` narrows the departments shown.
    fn gaps(&self, filter: Filter, scope: Option<&BTreeSet<String>>, limit: usize) -> Result<Vec<Gap>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut params = filter.params();
        params.push(Value::from(limit));
        let rows = self.db.query(
            &format!(
                "SELECT q.cluster_id, COUNT(*), MIN(q.time_ms), MAX(q.time_ms), c.status, c.answered_by {} \
                 GROUP BY q.cluster_id, c.status, c.answered_by ORDER BY COUNT(*) DESC, MAX(q.time_ms) DESC, \
                 q.cluster_id LIMIT ?6",
                from_matching(self.db.dialect())
            ),
            &params,
        )?;
        let mut gaps = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, count, first_seen_ms, last_seen_ms, status, answered_by): (
                String,
                i64,
                i64,
                i64,
                String,
                Option<String>,
            ) = (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?);
            let status = GapStatus::parse(&status)
                .ok_or_else(|| Error::Other(format!("gap cluster {id}: unknown status {status:?}")))?;
            let cluster_filter = Filter { cluster: Some(id.clone()), ..filter.clone() };
            let Details { examples, departments, reasons } = details(&self.db, &cluster_filter, scope)?;
            gaps.push(Gap {
                id,
                count: count.max(0) as u64,
                examples,
                departments,
                reasons,
                first_seen_ms,
                last_seen_ms,
                status,
                answered_by,
            });
        }
        Ok(gaps)
    }
}

/// The questions of a query, joined with their clusters; every statement over them binds the
/// five parameters of [`Filter::params`] first (`?5` is a JSON array of departments).
fn from_matching(dialect: Dialect) -> String {
    let shared_department = format!(
        "SELECT 1 FROM {} WHERE asked.value IN (SELECT p.value FROM {})",
        dialect.json_elements("q.departments", "asked"),
        dialect.json_elements("?5", "p")
    );
    format!(
        "FROM gap_questions AS q JOIN gap_clusters AS c ON c.id = q.cluster_id \
         WHERE (CAST(?1 AS TEXT) IS NULL OR q.cluster_id = ?1) AND (CAST(?2 AS TEXT) IS NULL OR c.status = ?2) \
         AND (CAST(?3 AS BIGINT) IS NULL OR q.time_ms >= ?3) AND (CAST(?4 AS BIGINT) IS NULL OR q.time_ms < ?4) \
         AND (CAST(?5 AS TEXT) IS NULL OR EXISTS ({shared_department}))"
    )
}

#[derive(Clone)]
struct Filter {
    cluster: Option<String>,
    status: Option<&'static str>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    /// JSON array of department names.
    departments: Option<String>,
}

impl Filter {
    /// `?1` to `?5` of [`from_matching`].
    fn params(&self) -> Vec<Value> {
        vec![
            Value::from(self.cluster.as_deref()),
            Value::from(self.status),
            Value::from(self.from_ms),
            Value::from(self.to_ms),
            Value::from(self.departments.as_deref()),
        ]
    }
}

/// What a [`Gap`] says about its questions beyond counts and dates.
struct Details {
    examples: Vec<String>,
    departments: Vec<String>,
    reasons: BTreeMap<String, u64>,
}

/// The details of one cluster's matching questions.
fn details(db: &Db, filter: &Filter, scope: Option<&BTreeSet<String>>) -> Result<Details> {
    let from_matching = from_matching(db.dialect());
    let params = filter.params();
    // The most recent questions first, until five distinct ones are found: a page, then a
    // longer one if repeats filled it.
    let mut examples = Vec::new();
    let mut page = 64usize;
    loop {
        let mut paged = params.clone();
        paged.push(Value::from(page));
        let rows = db
            .query(&format!("SELECT q.question {from_matching} ORDER BY q.time_ms DESC, q.id DESC LIMIT ?6"), &paged)?;
        examples.clear();
        let mut seen = BTreeSet::new();
        for row in &rows {
            let question: String = row.get(0)?;
            if seen.insert(question.trim().to_lowercase()) {
                examples.push(question);
                if examples.len() == EXAMPLES {
                    break;
                }
            }
        }
        if examples.len() == EXAMPLES || rows.len() < page {
            break;
        }
        page = page.saturating_mul(8);
    }
    // Every department asked from, in order (as Rust orders text, the same on both databases).
    let mut departments = BTreeSet::new();
    for row in db.query(&format!("SELECT DISTINCT q.departments {from_matching}"), &params)? {
        let asked: String = row.get(0)?;
        let asked: Vec<String> = serde_json::from_str(&asked)
            .map_err(|e| Error::Other(format!("gap question departments {asked:?} are not a list of names: {e}")))?;
        departments.extend(asked.into_iter().filter(|d| scope.is_none_or(|scope| scope.contains(d))));
    }
    let mut reasons = BTreeMap::new();
    for row in db.query(&format!("SELECT q.reason, COUNT(*) {from_matching} GROUP BY q.reason"), &params)? {
        reasons.insert(row.get::<String>(0)?, row.get::<i64>(1)?.max(0) as u64);
    }
    Ok(Details { examples, departments: departments.into_iter().collect(), reasons })
}

/// The mean of `count` vectors averaging `mean`, and `unit`.
fn running_mean(mean: &[f32], count: u64, unit: &[f32]) -> Vec<f32> {
    let weight = 1.0 / (count as f32 + 1.0);
    mean.iter().zip(unit).map(|(m, u)| m + (u - m) * weight).collect()
}

fn encode(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `None` when the length is not a multiple of 4.
fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = bytes.chunks_exact(4);
    chunks.remainder().is_empty().then(|| chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use lore_db::testing::on_both;

    const DIM: usize = 64;

    fn unit(rng: &mut StdRng) -> Vec<f32> {
        let v = (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>();
        normalised(&v).unwrap()
    }

    /// `topic` plus random noise of length `noise` (a paraphrase: cosine ≈ 1/√(1+noise²)).
    fn paraphrase(rng: &mut StdRng, topic: &[f32], noise: f32) -> Vec<f32> {
        let n = unit(rng);
        topic.iter().zip(n).map(|(t, n)| t + noise * n).collect()
    }

    /// Replicas on one PostgreSQL add to the same clusters: a paraphrase asked through the
    /// second joins the cluster the first started, and the counts add up, however the
    /// questions alternate between them.
    #[test]
    fn replicas_on_postgresql_share_clusters() {
        let Some(location) = lore_db::testing::database("replicas_on_postgresql_share_clusters") else { return };
        let database = Database::open(&location).unwrap();
        let replicas = [GapStore::open_in(&database, 0.8).unwrap(), GapStore::open_in(&database, 0.8).unwrap()];
        let mut rng = StdRng::seed_from_u64(18);
        let topics: Vec<Vec<f32>> = (0..4).map(|_| unit(&mut rng)).collect();
        let mut ids = std::collections::BTreeMap::new();
        for n in 0..40 {
            let topic = n % topics.len();
            let question = input(
                &format!("question {n}"),
                paraphrase(&mut rng, &topics[topic], 0.2),
                &["hr"],
                GapReason::Abstained,
                n as i64,
            );
            let id = replicas[(n / topics.len()) % 2].add(&question).unwrap();
            assert_eq!(*ids.entry(topic).or_insert_with(|| id.clone()), id, "question {n} left its topic's cluster");
        }
        let gaps = replicas[0]
            .list(&GapQuery { departments: None, status: None, from_ms: None, to_ms: None, limit: 100 })
            .unwrap();
        assert_eq!(gaps.len(), topics.len());
        assert!(gaps.iter().all(|gap| gap.count == 10), "{:?}", gaps.iter().map(|g| g.count).collect::<Vec<_>>());
    }

    fn input(question: &str, vector: Vec<f32>, departments: &[&str], reason: GapReason, time_ms: i64) -> GapInput {
        GapInput {
            question: question.to_owned(),
            vector,
            departments: departments.iter().map(|d| (*d).to_owned()).collect(),
            reason,
            time_ms,
            event_id: Some(format!("event-{time_ms}")),
        }
    }

    fn store(database: &Database) -> GapStore {
        GapStore::open_in(database, 0.86).unwrap()
    }

    #[test]
    fn paraphrases_share_a_cluster_and_topics_do_not() {
        on_both("paraphrases_share_a_cluster_and_topics_do_not", |database| {
            let store = store(database);
            let mut rng = StdRng::seed_from_u64(15);
            let topics = [unit(&mut rng), unit(&mut rng), unit(&mut rng)];
            let mut ids = vec![Vec::new(); topics.len()];
            // Interleaved, as questions arrive.
            for round in 0..6 {
                for (t, topic) in topics.iter().enumerate() {
                    let vector = paraphrase(&mut rng, topic, 0.3);
                    let time = (round * 10 + t) as i64;
                    let id =
                        store.add(&input(&format!("topic {t} take {round}"), vector, &[], GapReason::Abstained, time));
                    ids[t].push(id.unwrap());
                }
            }
            for topic_ids in &ids {
                assert!(topic_ids.iter().all(|id| id == &topic_ids[0]), "one topic, several clusters: {topic_ids:?}");
                assert_eq!(topic_ids[0].len(), 32);
            }
            let distinct = ids.iter().map(|topic_ids| &topic_ids[0]).collect::<BTreeSet<_>>();
            assert_eq!(distinct.len(), 3, "two topics share a cluster");
            let gaps = store.list(&GapQuery::default()).unwrap();
            assert_eq!(gaps.iter().map(|g| g.count).collect::<Vec<_>>(), [6, 6, 6]);
            // The centroid stays near its topic although it moved with every question.
            let state = store.lock();
            for (topic, topic_ids) in topics.iter().zip(&ids) {
                let cluster = state.clusters.iter().find(|c| c.id == topic_ids[0]).unwrap();
                assert!(cluster.similarity(topic).unwrap() > 0.97);
                assert_eq!(cluster.count, 6);
            }
        });
    }

    #[test]
    fn cluster_ids_and_centroids_survive_reopening() {
        on_both("cluster_ids_and_centroids_survive_reopening", |database| {
            let mut rng = StdRng::seed_from_u64(7);
            let topic = unit(&mut rng);
            let first = {
                let store = store(database);
                let id = store
                    .add(&input("how do I expense a visa?", topic.clone(), &["hr"], GapReason::Abstained, 1))
                    .unwrap();
                assert!(store.set_status(&id, GapStatus::Dismissed, None).unwrap());
                id
            };
            let store = store(database);
            let again = store
                .add(&input(
                    "visa fees, can I claim them?",
                    paraphrase(&mut rng, &topic, 0.3),
                    &[],
                    GapReason::ThumbsDown,
                    2,
                ))
                .unwrap();
            assert_eq!(again, first);
            let gap = store.get(&first).unwrap().unwrap();
            assert_eq!(gap.count, 2);
            assert_eq!(gap.status, GapStatus::Dismissed, "a dismissed gap stays dismissed");
            assert_eq!((gap.first_seen_ms, gap.last_seen_ms), (1, 2));
            assert_eq!(store.get("no such gap").unwrap(), None);
        });
    }

    #[test]
    fn a_gap_reports_recent_distinct_examples_reasons_and_departments() {
        on_both("a_gap_reports_recent_distinct_examples_reasons_and_departments", |database| {
            let store = store(database);
            let mut rng = StdRng::seed_from_u64(3);
            let topic = unit(&mut rng);
            let asked = [
                ("q1", GapReason::Abstained, &["sales"][..]),
                ("q2", GapReason::Abstained, &["hr", "sales"][..]),
                ("Q2 ", GapReason::ThumbsDown, &[][..]),
                ("q3", GapReason::Abstained, &["it"][..]),
                ("q4", GapReason::ThumbsDown, &["hr"][..]),
                ("q5", GapReason::Abstained, &[][..]),
                ("q6", GapReason::Abstained, &[][..]),
            ];
            let mut id = String::new();
            for (time, (question, reason, departments)) in asked.iter().enumerate() {
                let vector = paraphrase(&mut rng, &topic, 0.2);
                id = store.add(&input(question, vector, departments, *reason, 100 + time as i64)).unwrap();
            }
            let gap = store.get(&id).unwrap().unwrap();
            assert_eq!(gap.count, 7);
            // "Q2 " repeats "q2"; the most recent first, five at most.
            assert_eq!(gap.examples, ["q6", "q5", "q4", "q3", "Q2 "]);
            assert_eq!(gap.departments, ["hr", "it", "sales"]);
            assert_eq!(gap.reasons, BTreeMap::from([("abstained".into(), 5), ("thumbs_down".into(), 2)]));
            assert_eq!((gap.first_seen_ms, gap.last_seen_ms), (100, 106));
            // A time window counts the questions inside it only.
            let window = GapQuery { from_ms: Some(101), to_ms: Some(104), ..GapQuery::default() };
            let gaps = store.list(&window).unwrap();
            assert_eq!(gaps.len(), 1);
            assert_eq!((gaps[0].count, gaps[0].first_seen_ms, gaps[0].last_seen_ms), (3, 101, 103));
            assert_eq!(gaps[0].examples, ["q3", "Q2 "]);
        });
    }

    #[test]
    fn a_knowledge_manager_sees_only_questions_of_their_departments() {
        on_both("a_knowledge_manager_sees_only_questions_of_their_departments", |database| {
            let store = store(database);
            let mut rng = StdRng::seed_from_u64(11);
            let (visas, parking) = (unit(&mut rng), unit(&mut rng));
            let mut add = |question: &str, topic: &[f32], departments: &[&str], time: i64| {
                let vector = paraphrase(&mut rng, topic, 0.2);
                store.add(&input(question, vector, departments, GapReason::Abstained, time)).unwrap()
            };
            let visa_gap = add("visa for Brazil?", &visas, &["sales"], 1);
            add("visa costs?", &visas, &["hr"], 2);
            add("who pays the visa?", &visas, &["hr", "sales"], 3);
            let parking_gap = add("parking downtown?", &parking, &["hr"], 4);
            add("parking refund?", &parking, &["hr"], 5);
            add("parking badge?", &parking, &["hr"], 6);
            add("parking at night?", &parking, &["hr"], 7);

            let admin = store.list(&GapQuery::default()).unwrap();
            assert_eq!(
                admin.iter().map(|g| (g.id.as_str(), g.count)).collect::<Vec<_>>(),
                [(parking_gap.as_str(), 4), (visa_gap.as_str(), 3)]
            );
            let sales = GapQuery { departments: Some(vec!["sales".into()]), ..GapQuery::default() };
            let gaps = store.list(&sales).unwrap();
            assert_eq!(gaps.len(), 1, "the parking gap has no sales question");
            assert_eq!(gaps[0].id, visa_gap);
            assert_eq!(gaps[0].count, 2);
            assert_eq!(gaps[0].examples, ["who pays the visa?", "visa for Brazil?"]);
            assert_eq!(gaps[0].departments, ["sales"], "other departments' names stay out of a scoped view");
            assert_eq!(gaps[0].first_seen_ms, 1);
            let nobody = GapQuery { departments: Some(Vec::new()), ..GapQuery::default() };
            assert!(store.list(&nobody).unwrap().is_empty());
            let one = GapQuery { limit: 1, ..GapQuery::default() };
            assert_eq!(store.list(&one).unwrap().len(), 1);
        });
    }

    #[test]
    fn status_changes_and_a_new_question_reopens_an_answered_gap() {
        on_both("status_changes_and_a_new_question_reopens_an_answered_gap", |database| {
            let store = store(database);
            let mut rng = StdRng::seed_from_u64(5);
            let (a, b) = (unit(&mut rng), unit(&mut rng));
            let gap_a = store.add(&input("a", a.clone(), &[], GapReason::Abstained, 1)).unwrap();
            let gap_b = store.add(&input("b", b.clone(), &[], GapReason::Abstained, 2)).unwrap();

            assert!(store.set_status(&gap_a, GapStatus::Answered, Some("doc-42")).unwrap());
            let answered = store.get(&gap_a).unwrap().unwrap();
            assert_eq!((answered.status, answered.answered_by.as_deref()), (GapStatus::Answered, Some("doc-42")));
            let open = GapQuery { status: Some(GapStatus::Open), ..GapQuery::default() };
            assert_eq!(store.list(&open).unwrap().iter().map(|g| g.id.as_str()).collect::<Vec<_>>(), [gap_b.as_str()]);
            assert_eq!(store.open_representatives().unwrap(), [(gap_b.clone(), "b".to_owned())]);

            let misuse = store.set_status(&gap_b, GapStatus::Dismissed, Some("doc-42")).unwrap_err();
            assert!(misuse.to_string().contains("marked dismissed"), "{misuse}");
            assert!(!store.set_status("no such gap", GapStatus::Dismissed, None).unwrap());

            let again =
                store.add(&input("a again", paraphrase(&mut rng, &a, 0.2), &[], GapReason::ThumbsDown, 3)).unwrap();
            assert_eq!(again, gap_a);
            let reopened = store.get(&gap_a).unwrap().unwrap();
            assert_eq!((reopened.status, reopened.answered_by), (GapStatus::Open, None));
            assert_eq!(reopened.count, 2);

            assert!(store.set_status(&gap_a, GapStatus::Dismissed, None).unwrap());
            assert!(store.set_status(&gap_a, GapStatus::Open, None).unwrap());
            assert_eq!(store.get(&gap_a).unwrap().unwrap().status, GapStatus::Open);
        });
    }

    #[test]
    fn the_representative_is_the_question_nearest_the_centroid() {
        on_both("the_representative_is_the_question_nearest_the_centroid", |database| {
            let store = store(database);
            let axis = |weights: [f32; 3]| {
                let mut v = vec![0.0; DIM];
                v[..3].copy_from_slice(&weights);
                v
            };
            let id = store.add(&input("off to one side", axis([1.0, 0.3, 0.0]), &[], GapReason::Abstained, 1)).unwrap();
            store.add(&input("right in the middle", axis([1.0, 0.0, 0.0]), &[], GapReason::Abstained, 2)).unwrap();
            store.add(&input("off to the other side", axis([1.0, 0.0, 0.3]), &[], GapReason::Abstained, 3)).unwrap();
            assert_eq!(store.get(&id).unwrap().unwrap().count, 3);
            assert_eq!(store.open_representatives().unwrap(), [(id, "right in the middle".to_owned())]);
        });
    }

    #[test]
    fn unusable_vectors_are_refused_and_other_models_do_not_mix() {
        on_both("unusable_vectors_are_refused_and_other_models_do_not_mix", |database| {
            let store = store(database);
            let zero = store.add(&input("zero", vec![0.0; DIM], &[], GapReason::Abstained, 1)).unwrap_err();
            assert!(zero.to_string().contains("\"zero\" is empty or zero"), "{zero}");
            let long = store.add(&input("long", vec![1.0; DIM], &[], GapReason::Abstained, 1)).unwrap();
            let short = store.add(&input("short", vec![1.0; 8], &[], GapReason::Abstained, 2)).unwrap();
            assert_ne!(long, short);
            assert!(GapStore::open_in(database, 1.5).is_err());
        });
    }

    #[test]
    fn a_database_from_before_migrations_were_recorded_opens_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let topic = axis_vector();
        {
            // What `open` made before: the tables, with a cluster and its question.
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(SCHEMA.migrations[0].sqlite).unwrap();
            conn.execute(
                "INSERT INTO gap_clusters (id, centroid, count, first_seen_ms, last_seen_ms, status, answered_by, \
                 updated_ms) VALUES ('old', ?1, 1, 5, 5, 'open', NULL, 5)",
                [encode(&topic)],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO gap_questions (cluster_id, question, vector, departments, reason, time_ms, event_id) \
                 VALUES ('old', 'asked before', ?1, '[\"hr\"]', 'abstained', 5, NULL)",
                [encode(&topic)],
            )
            .unwrap();
        }
        let store = GapStore::open(&path, 0.86).unwrap();
        let id = store.add(&input("asked again", topic, &["it"], GapReason::ThumbsDown, 6)).unwrap();
        assert_eq!(id, "old", "the centroid was loaded");
        let gap = store.get("old").unwrap().unwrap();
        assert_eq!((gap.count, gap.first_seen_ms, gap.last_seen_ms), (2, 5, 6));
        assert_eq!(gap.departments, ["hr", "it"]);
    }

    fn axis_vector() -> Vec<f32> {
        let mut v = vec![0.0; DIM];
        v[0] = 1.0;
        v
    }

    #[test]
    fn vectors_round_trip_through_blobs() {
        let vector = vec![0.25, -1.5, f32::MIN_POSITIVE, 3.0e7];
        assert_eq!(decode(&encode(&vector)), Some(vector));
        assert_eq!(decode(&[0, 0, 0]), None);
        assert_eq!(running_mean(&[1.0, 0.0], 3, &[0.0, 1.0]), [0.75, 0.25]);
    }
}
