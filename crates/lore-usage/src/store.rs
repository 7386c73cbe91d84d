//! The usage store: every [`UsageEvent`] as one append-only row, and daily rollups that keep
//! analytics over months fast.
//!
//! Its tables live in the application database (the SQLite file, or PostgreSQL in scale-out)
//! next to other stores, hence the `usage_` prefix:
//! - `usage_meta`: the schema version and the retention cutoff (`key`, `value` rows; the
//!   database's `user_version` belongs to nobody in a shared file).
//! - `usage_events`: the raw events. Triggers (plpgsql functions on PostgreSQL) abort every
//!   `UPDATE` but a pseudonym's, and every `DELETE` of a row at or after the retention cutoff,
//!   so only [`UsageStore::apply_retention`] removes rows, and only old ones.
//! - `usage_daily`: the [`Measures`] of each UTC day, department set and grouping ([`Dim`] and
//!   its value): requests, answer kinds, tokens, cost and two latency [`Histogram`]s, and who
//!   was active (a set of user ids), so distinct active users can be counted over any run of
//!   days.
//! - `usage_users`: a number for each user name, for those sets.
//!
//! [`contributions`] decides which groups an event counts in. The rollup writer and analytics
//! over raw events both use it, so a range gives the same numbers whether it is read from the
//! rollups or from the events.
//!
//! [`Recorder`] keeps the store off the request path: `record` only queues the event, and a
//! background thread writes batches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use lore_db::{Database, Db, Dialect, Location, Migration, Row, Schema, Tx, Value, params};
use serde::Serialize;

use crate::{
    DAY_SECS, Endpoint, Error, KINDS, Result, Spend, SpendSource, UsageConfig, UsageEvent, day_start, in_transaction,
    now_ms,
};

/// Version of the tables below, kept in `usage_meta` (from before migrations were recorded in
/// `schema_migrations`; later changes are migrations of [`SCHEMA`]).
const SCHEMA_VERSION: i64 = 2;

const DAY_MS: i64 = DAY_SECS * 1000;

/// The text of [`META_SCHEMA`], for `concat!`.
macro_rules! meta_schema {
    () => {
        "CREATE TABLE IF NOT EXISTS usage_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
    };
}

/// The text of [`SQLITE_TABLES`], for `concat!`.
///
/// The key of `usage_daily` starts with `dim`: every query reads one dimension over a run of
/// days, a range of the key.
///
/// A rollup row's measures are one BLOB ([`Measures::encode`]) and its active users another
/// ([`encode_ids`]), not a column per count and a row per user: analytics over a million events
/// must answer within 200 ms, and grouped by user that means adding up some 230,000 rows (a row
/// per user and day). Reading 20 columns a row took 200 ms by itself, and rows of
/// `(day, group, user)` made distinct-user counts several times too slow.
macro_rules! sqlite_tables {
    () => {
        r#"
INSERT OR IGNORE INTO usage_meta (key, value) VALUES ('retention_cutoff_ms', 0);
CREATE TABLE IF NOT EXISTS usage_events (
    id TEXT NOT NULL UNIQUE,
    time_ms INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    user TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    role TEXT NOT NULL,
    departments TEXT NOT NULL,
    credential TEXT NOT NULL,
    key_id TEXT,
    collections TEXT NOT NULL,
    kind TEXT NOT NULL,
    status INTEGER NOT NULL,
    model TEXT,
    provider TEXT,
    prompt_version TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency_ms REAL NOT NULL,
    stages TEXT NOT NULL,
    lang TEXT,
    category TEXT,
    conversation_id TEXT,
    message_id INTEGER,
    budget_warnings TEXT NOT NULL,
    dlp TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS usage_events_by_time ON usage_events(time_ms);
CREATE INDEX IF NOT EXISTS usage_events_by_message ON usage_events(message_id) WHERE message_id IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS usage_events_no_update BEFORE UPDATE OF id, time_ms, endpoint, user_id, role,
    departments, credential, key_id, collections, kind, status, model, provider, prompt_version, prompt_tokens,
    completion_tokens, cost, latency_ms, stages, lang, category, conversation_id, message_id, budget_warnings, dlp
ON usage_events
BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;
CREATE TRIGGER IF NOT EXISTS usage_events_only_pseudonymise BEFORE UPDATE OF user ON usage_events
WHEN NEW.user NOT GLOB 'erased:*'
BEGIN SELECT RAISE(ABORT, 'usage events are append-only: a user can only be replaced by a pseudonym'); END;
CREATE TRIGGER IF NOT EXISTS usage_events_keep_recent BEFORE DELETE ON usage_events
WHEN OLD.time_ms >= COALESCE((SELECT value FROM usage_meta WHERE key = 'retention_cutoff_ms'), 0)
BEGIN SELECT RAISE(ABORT, 'usage events newer than the retention cutoff cannot be deleted'); END;
CREATE TABLE IF NOT EXISTS usage_daily (
    dim TEXT NOT NULL,
    day INTEGER NOT NULL,
    departments TEXT NOT NULL,
    value TEXT NOT NULL,
    measures BLOB NOT NULL,
    users BLOB,
    PRIMARY KEY (dim, day, departments, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage_users (id INTEGER PRIMARY KEY, user TEXT NOT NULL UNIQUE);
"#
    };
}

/// `usage_meta`: the schema version and the retention cutoff.
#[cfg(test)]
const META_SCHEMA: &str = meta_schema!();

/// The tables as every SQLite file has had them since version 2 (see [`sqlite_tables`]).
#[cfg(test)]
const SQLITE_TABLES: &str = sqlite_tables!();

/// The usage tables. On SQLite, version 1 is what `open` ran before migrations were recorded
/// (files made then already have the tables, and files of `usage_meta` version 1 are brought
/// to version 2 before it runs: see [`UsageStore::open_in`]). On PostgreSQL, version 1 makes
/// the same tables: `user` is quoted (a reserved word there), `seq` stands in for SQLite's
/// `rowid` as the order of events at the same millisecond, and plpgsql functions do what
/// SQLite's triggers do.
const SCHEMA: Schema = Schema {
    name: "usage",
    migrations: &[Migration {
        version: 1,
        sqlite: concat!(
            meta_schema!(),
            ";\nINSERT OR IGNORE INTO usage_meta (key, value) VALUES ('schema', 2);",
            sqlite_tables!()
        ),
        postgres: r#"
CREATE TABLE usage_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO usage_meta (key, value) VALUES ('schema', 2), ('retention_cutoff_ms', 0);
CREATE TABLE usage_events (
    id TEXT NOT NULL UNIQUE,
    time_ms BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    "user" TEXT NOT NULL,
    user_id BIGINT NOT NULL,
    role TEXT NOT NULL,
    departments TEXT NOT NULL,
    credential TEXT NOT NULL,
    key_id TEXT,
    collections TEXT NOT NULL,
    kind TEXT NOT NULL,
    status BIGINT NOT NULL,
    model TEXT,
    provider TEXT,
    prompt_version TEXT,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    stages TEXT NOT NULL,
    lang TEXT,
    category TEXT,
    conversation_id TEXT,
    message_id BIGINT,
    budget_warnings TEXT NOT NULL,
    dlp TEXT NOT NULL DEFAULT '{}',
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX usage_events_by_time ON usage_events(time_ms, seq);
CREATE INDEX usage_events_by_message ON usage_events(message_id) WHERE message_id IS NOT NULL;
CREATE FUNCTION usage_events_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0];
END
$$;
CREATE TRIGGER usage_events_no_update BEFORE UPDATE OF id, time_ms, endpoint, user_id, role,
    departments, credential, key_id, collections, kind, status, model, provider, prompt_version, prompt_tokens,
    completion_tokens, cost, latency_ms, stages, lang, category, conversation_id, message_id, budget_warnings, dlp
ON usage_events FOR EACH ROW EXECUTE FUNCTION usage_events_refuse('usage events are append-only');
CREATE TRIGGER usage_events_only_pseudonymise BEFORE UPDATE OF "user" ON usage_events
FOR EACH ROW WHEN (NEW."user" NOT LIKE 'erased:%')
EXECUTE FUNCTION usage_events_refuse('usage events are append-only: a user can only be replaced by a pseudonym');
CREATE FUNCTION usage_events_keep_recent() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.time_ms >= COALESCE((SELECT value FROM usage_meta WHERE key = 'retention_cutoff_ms'), 0) THEN
        RAISE EXCEPTION 'usage events newer than the retention cutoff cannot be deleted';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER usage_events_keep_recent BEFORE DELETE ON usage_events
FOR EACH ROW EXECUTE FUNCTION usage_events_keep_recent();
CREATE TABLE usage_daily (
    dim TEXT NOT NULL,
    day BIGINT NOT NULL,
    departments TEXT NOT NULL,
    value TEXT NOT NULL,
    measures BYTEA NOT NULL,
    users BYTEA,
    PRIMARY KEY (dim, day, departments, value)
);
CREATE TABLE usage_users (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "user" TEXT NOT NULL UNIQUE);
"#,
    }],
};

/// Events inserted per statement, and rollup rows read or written per statement: a batch
/// takes a few round trips to PostgreSQL, not one per event.
const EVENTS_PER_STATEMENT: usize = 100;
const ROLLUPS_PER_STATEMENT: usize = 200;
const USERS_PER_STATEMENT: usize = 500;

/// The columns of an event that analytics and spend add up: what [`contributions`] and
/// [`Measures::add_event`] read, the key and user of a budget scope, and the user's id.
const TOTALS_COLUMNS: &str = "time_ms, endpoint, \"user\", departments, key_id, collections, kind, status, model, \
     prompt_tokens, completion_tokens, cost, latency_ms, category, user_id";

const EVENT_COLUMNS: &str = "id, time_ms, endpoint, \"user\", role, departments, credential, key_id, collections, kind, \
     status, model, provider, prompt_version, prompt_tokens, completion_tokens, cost, latency_ms, stages, lang, \
     category, conversation_id, message_id, budget_warnings, dlp";

/// A grouping of the daily rollups. Every event counts once under `All` and once under each of
/// its values of the others (see [`contributions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    All,
    User,
    Key,
    Category,
    Collection,
    Model,
    Endpoint,
}

impl Dim {
    pub const ALL: [Dim; 7] =
        [Dim::All, Dim::User, Dim::Key, Dim::Category, Dim::Collection, Dim::Model, Dim::Endpoint];

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::All => "all",
            Dim::User => "user",
            Dim::Key => "key",
            Dim::Category => "category",
            Dim::Collection => "collection",
            Dim::Model => "model",
            Dim::Endpoint => "endpoint",
        }
    }
}

/// The groups an event counts in: `All` with value `""`, its user, its key, category and
/// model (`""` when it has none), its endpoint, and each of its distinct collections (one `""`
/// when it has none).
pub fn contributions(event: &UsageEvent) -> impl Iterator<Item = (Dim, &str)> {
    let mut collections: Vec<&str> = event.collections.iter().map(String::as_str).collect();
    collections.sort_unstable();
    collections.dedup();
    if collections.is_empty() {
        collections.push("");
    }
    [
        (Dim::All, ""),
        (Dim::User, event.user.as_str()),
        (Dim::Key, event.key_id.as_deref().unwrap_or("")),
        (Dim::Category, event.category.as_deref().unwrap_or("")),
        (Dim::Model, event.model.as_deref().unwrap_or("")),
        (Dim::Endpoint, event.endpoint.as_str()),
    ]
    .into_iter()
    .chain(collections.into_iter().map(|collection| (Dim::Collection, collection)))
}

/// An event's departments as the rollups see them: sorted, without duplicates or empty names.
pub fn normalized_departments(departments: &[String]) -> Vec<String> {
    let mut normalized: Vec<String> = departments.iter().filter(|d| !d.is_empty()).cloned().collect();
    normalized.sort_unstable();
    normalized.dedup();
    normalized
}

/// Whether events of `departments` are visible to `scope` (an analytics scope: `None` for
/// admins, else the departments a knowledge manager sees).
pub fn admits(scope: Option<&[String]>, departments: &[String]) -> bool {
    scope.is_none_or(|scope| departments.iter().any(|d| scope.contains(d)))
}

/// The `departments` column of a rollup row: the [`normalized_departments`] joined by `,`
/// (`""` for none), so an event counts once per group whatever its number of departments. A
/// `,` or `\` inside a name is escaped with `\`, so [`parse_departments_key`] gets the names
/// back exactly.
pub fn departments_key(departments: &[String]) -> String {
    let mut key = String::new();
    for (i, department) in normalized_departments(departments).iter().enumerate() {
        if i > 0 {
            key.push(',');
        }
        for c in department.chars() {
            if c == ',' || c == '\\' {
                key.push('\\');
            }
            key.push(c);
        }
    }
    key
}

/// The departments of a [`departments_key`].
pub fn parse_departments_key(key: &str) -> Vec<String> {
    let mut departments = Vec::new();
    if key.is_empty() {
        return departments;
    }
    let mut current = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ',' => departments.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    departments.push(current);
    departments
}

/// Stage times are stored to the microsecond: a shorter decimal, which JSON gives back exactly
/// (serde_json parses long decimals to within one unit of the last place only).
fn to_microseconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// A NaN or infinite number from a caller would be stored as NULL by SQLite and fail the whole
/// batch; it carries no information, so it counts as zero.
fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// Appends `n` in LEB128: 7 bits a byte, low bits first, the high bit set on every byte but
/// the last. Counts, tokens and id gaps are small, mostly one or two bytes.
fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n & 0x7f) as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Takes a [`put_varint`] number off the front of `input`; `None` if cut short or too long.
fn take_varint(input: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        n |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn take_f64(input: &mut &[u8]) -> Option<f64> {
    let (bytes, rest) = input.split_first_chunk::<8>()?;
    *input = rest;
    Some(f64::from_le_bytes(*bytes))
}

const HISTOGRAM_BUCKETS: usize = 80;

/// Latencies in logarithmic buckets: bucket `i` holds `[2^(i/4), 2^((i+1)/4))` milliseconds, so
/// the 80 buckets reach about 17 minutes (below 1 ms counts in the first bucket, above the top
/// in the last). A bucket is 19 % wide, so its geometric middle, which [`Histogram::quantile`]
/// reports, is within ±9 % of every latency in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    counts: [u64; HISTOGRAM_BUCKETS],
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: [0; HISTOGRAM_BUCKETS] }
    }
}

impl Histogram {
    pub fn record(&mut self, ms: f64) {
        // NaN compares false, so it lands in the first bucket too.
        let bucket = if ms >= 1.0 { ((ms.log2() * 4.0) as usize).min(HISTOGRAM_BUCKETS - 1) } else { 0 };
        self.counts[bucket] += 1;
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The latency below which a share `q` (0 to 1) of the recorded ones fall: the geometric
    /// middle of the bucket holding the `ceil(q × count)`-th latency; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        let bucket = self.counts.iter().position(|&count| {
            seen += count;
            seen >= rank
        })?;
        Some(2f64.powf((bucket as f64 + 0.5) / 4.0))
    }

    /// Sparse: the number of non-empty buckets, then for each in ascending order its index (one
    /// byte) and its count (varint).
    fn encode_into(&self, out: &mut Vec<u8>) {
        let filled = self.counts.iter().filter(|count| **count > 0).count();
        put_varint(out, filled as u64);
        for (bucket, &count) in self.counts.iter().enumerate().filter(|(_, count)| **count > 0) {
            out.push(bucket as u8);
            put_varint(out, count);
        }
    }

    /// Adds the counts of an [`Histogram::encode_into`] taken off the front of `input`.
    fn add_decoded(&mut self, input: &mut &[u8]) -> Option<()> {
        for _ in 0..take_varint(input)? {
            let (&bucket, rest) = input.split_first()?;
            *input = rest;
            *self.counts.get_mut(usize::from(bucket))? += take_varint(input)?;
        }
        Some(())
    }
}

/// A set of user ids as stored in `usage_daily.users`: ascending, each as a varint of its
/// difference from the previous one (the first from zero); an empty set is NULL. A day's group
/// of a few thousand users takes a few kilobytes.
fn encode_ids(ids: &[u32]) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(ids.len() * 2);
    let mut previous = 0;
    for &id in ids {
        put_varint(&mut bytes, u64::from(id - previous));
        previous = id;
    }
    (!bytes.is_empty()).then_some(bytes)
}

/// Calls `each` with every id of an [`encode_ids`] set (NULL is empty), in ascending order.
fn decode_ids(bytes: Option<&[u8]>, mut each: impl FnMut(u32)) -> Result<()> {
    let corrupt = || Error::Other("a set of user ids in usage_daily is corrupt".into());
    let mut input = bytes.unwrap_or_default();
    let mut id = 0u32;
    while !input.is_empty() {
        let delta = take_varint(&mut input).and_then(|d| u32::try_from(d).ok()).ok_or_else(corrupt)?;
        id = id.checked_add(delta).ok_or_else(corrupt)?;
        each(id);
    }
    Ok(())
}

/// The union of two ascending id lists, ascending and without duplicates.
fn union_ids(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut union = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let next = a[i].min(b[j]);
        union.push(next);
        i += usize::from(a[i] == next);
        j += usize::from(b[j] == next);
    }
    union.extend_from_slice(&a[i..]);
    union.extend_from_slice(&b[j..]);
    union
}

/// What a rollup row adds up, and what analytics accumulates per group.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Measures {
    pub requests: u64,
    /// Chats answered (status below 400).
    pub chats: u64,
    /// Per kind, in [`KINDS`] order; an event of an unknown kind counts only in `requests`.
    pub kinds: [u64; KINDS.len()],
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    /// Latencies of the chats answered and of the searches answered: a refused request's
    /// millisecond says nothing about how fast Lore answers and would only blur percentiles.
    pub chat_latency: Histogram,
    pub search_latency: Histogram,
}

impl Measures {
    pub fn add_event(&mut self, event: &UsageEvent) {
        self.requests += 1;
        if let Some(i) = KINDS.iter().position(|kind| *kind == event.kind) {
            self.kinds[i] += 1;
        }
        self.prompt_tokens += event.prompt_tokens;
        self.completion_tokens += event.completion_tokens;
        self.cost += finite_or_zero(event.cost);
        let answered = event.status < 400;
        if event.endpoint.is_chat() && answered {
            self.chats += 1;
            self.chat_latency.record(event.latency_ms);
        }
        if event.endpoint == Endpoint::Search && answered {
            self.search_latency.record(event.latency_ms);
        }
    }

    pub fn kind(&self, kind: &str) -> u64 {
        KINDS.iter().position(|k| *k == kind).map_or(0, |i| self.kinds[i])
    }

    /// The `measures` BLOB of a rollup row:
    /// - `requests`, `chats`, `prompt_tokens`, `completion_tokens`: varints;
    /// - `cost`: f64, little-endian;
    /// - `chat_latency`, `search_latency`: see [`Histogram::encode_into`];
    /// - the number of kind counts, then the count of each kind in [`KINDS`] order (varints).
    ///
    /// Kinds come last so that a kind appended to [`KINDS`] reads as zero in older rows: no
    /// migration needed.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        for n in [self.requests, self.chats, self.prompt_tokens, self.completion_tokens] {
            put_varint(&mut out, n);
        }
        out.extend_from_slice(&self.cost.to_le_bytes());
        self.chat_latency.encode_into(&mut out);
        self.search_latency.encode_into(&mut out);
        put_varint(&mut out, KINDS.len() as u64);
        for n in self.kinds {
            put_varint(&mut out, n);
        }
        out
    }

    /// Adds the [`Measures::encode`]d measures of a row, in place: analytics adds up hundreds
    /// of thousands of rows.
    fn add_encoded(&mut self, bytes: &[u8]) -> Result<()> {
        self.add_decoded(&mut &bytes[..])
            .ok_or_else(|| Error::Other("the measures of a usage_daily row are corrupt".into()))
    }

    fn add_decoded(&mut self, input: &mut &[u8]) -> Option<()> {
        for n in [&mut self.requests, &mut self.chats, &mut self.prompt_tokens, &mut self.completion_tokens] {
            *n += take_varint(input)?;
        }
        self.cost += take_f64(input)?;
        self.chat_latency.add_decoded(input)?;
        self.search_latency.add_decoded(input)?;
        let kinds = usize::try_from(take_varint(input)?).ok()?;
        // `None` when a newer build stored more kinds than this one knows.
        for count in self.kinds.get_mut(..kinds)? {
            *count += take_varint(input)?;
        }
        input.is_empty().then_some(())
    }
}

/// SQLite integers are signed; counts never come near the limit.
fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The store only writes counts of zero or more.
fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// One rollup row's key.
#[derive(Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    dim: Dim,
    day: i64,
    departments: String,
    value: String,
}

/// A half-open time range cut into the whole UTC days inside it, read from the rollups, and the
/// partial days at its edges, read from raw events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DaySplit {
    /// Unix seconds of the first whole day and of the end of the last, if any whole day.
    pub days: Option<(i64, i64)>,
    /// Milliseconds, half-open, non-empty.
    pub edges: Vec<(i64, i64)>,
}

pub(crate) fn split_days(from_ms: i64, to_ms: i64) -> DaySplit {
    if from_ms >= to_ms {
        return DaySplit { days: None, edges: Vec::new() };
    }
    let next_day_ms = if from_ms.rem_euclid(DAY_MS) == 0 { 0 } else { DAY_MS };
    let first_day_ms = (from_ms.div_euclid(DAY_MS) * DAY_MS).saturating_add(next_day_ms);
    let end_day_ms = to_ms.div_euclid(DAY_MS) * DAY_MS;
    if first_day_ms >= end_day_ms {
        return DaySplit { days: None, edges: vec![(from_ms, to_ms)] };
    }
    let edges = [(from_ms, first_day_ms), (end_day_ms, to_ms)].into_iter().filter(|(from, to)| from < to).collect();
    DaySplit { days: Some((first_day_ms / 1000, end_day_ms / 1000)), edges }
}

/// The usage tables of the application database. On SQLite two connections: the writer's
/// batches never hold up a reader (budgets read spend on the request path), since WAL lets a
/// reader and a writer proceed together. On PostgreSQL the pool serves both.
pub struct UsageStore {
    writer: Db,
    /// `None` on PostgreSQL: reads go to the pool too.
    reader: Option<Db>,
    /// SQLite only: a connection of the store's own to the file, which scans rollups in place
    /// ([`UsageStore::for_each_rollup`]). [`Db::query`] copies every row out first, which
    /// made analytics grouped by user over a million events twice as slow (400 ms).
    scanner: Option<std::sync::Mutex<rusqlite::Connection>>,
}

/// `?N` placeholders of `rows` tuples of `casts.len()` parameters each, numbered from 1:
/// `(?1, ?2), (?3, ?4)`; a non-empty cast wraps its parameter (`CAST(?1 AS BIGINT)`), for
/// PostgreSQL, which cannot infer the type of a parameter in a bare `VALUES` list.
fn tuples(rows: usize, casts: &[&str]) -> String {
    let mut sql = String::with_capacity(rows * casts.len() * 6);
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for (i, cast) in casts.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            n += 1;
            let _ = if cast.is_empty() { write!(sql, "?{n}") } else { write!(sql, "CAST(?{n} AS {cast})") };
        }
        sql.push(')');
    }
    sql
}

impl UsageStore {
    /// Opens (and creates, or checks the version of) the usage tables in the SQLite database
    /// at `path`.
    pub fn open(path: &Path) -> Result<UsageStore> {
        Self::open_as(&Database::open(&Location::Sqlite(path.to_owned()))?, &path.display().to_string())
    }

    /// Opens (and creates, or checks the version of) the usage tables in the application
    /// database (SQLite or PostgreSQL).
    pub fn open_in(database: &Database) -> Result<UsageStore> {
        Self::open_as(database, "the application database")
    }

    /// `name` names the database in errors.
    fn open_as(database: &Database, name: &str) -> Result<UsageStore> {
        let refuse = |version: i64| {
            Error::Other(format!("the usage tables in {name} have schema {version}, this build knows {SCHEMA_VERSION}"))
        };
        if database.dialect() == Dialect::Sqlite {
            // Files made before migrations were recorded kept their version in `usage_meta`:
            // version 1 is brought to 2 before the migrations run, a newer one is refused
            // before anything is touched. A handle without migrations looks first.
            let raw = database.store(&Schema { name: "usage", migrations: &[] })?;
            in_transaction(&raw, |tx| {
                let meta = tx.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'usage_meta'", &[])?;
                if meta.is_empty() {
                    return Ok(());
                }
                let version: Option<i64> = tx
                    .query("SELECT value FROM usage_meta WHERE key = 'schema'", &[])?
                    .first()
                    .map(|row| row.get(0))
                    .transpose()?;
                match version {
                    Some(1) => {
                        // Version 2 adds the DLP counts, and lets erasure replace a user by a
                        // pseudonym (the migration creates the narrower trigger again).
                        tx.execute("ALTER TABLE usage_events ADD COLUMN dlp TEXT NOT NULL DEFAULT '{}'", &[])?;
                        tx.execute("DROP TRIGGER IF EXISTS usage_events_no_update", &[])?;
                        tx.execute("UPDATE usage_meta SET value = 2 WHERE key = 'schema'", &[])?;
                        Ok(())
                    }
                    Some(version) if version > SCHEMA_VERSION => Err(refuse(version)),
                    _ => Ok(()),
                }
            })?;
        }
        let writer = database.store(&SCHEMA)?;
        let version: i64 = writer
            .query_opt("SELECT value FROM usage_meta WHERE key = 'schema'", &[])?
            .map(|row| row.get(0))
            .transpose()?
            .unwrap_or(0);
        if version != SCHEMA_VERSION {
            return Err(refuse(version));
        }
        let (reader, scanner) = match writer.dialect() {
            Dialect::Sqlite => {
                // Rollup scans read rows in place on their own connection: copying each row
                // first (`Db::query`) made analytics over a million events 2.5 times slower.
                let scanner = match database.sqlite_file().filter(|file| *file != Path::new(":memory:")) {
                    Some(file) => Some(std::sync::Mutex::new(lore_db::open_sqlite(file)?)),
                    None => None,
                };
                (Some(database.store(&SCHEMA)?), scanner)
            }
            Dialect::Postgres => (None, None),
        };
        Ok(UsageStore { writer, reader, scanner })
    }

    fn reader(&self) -> &Db {
        self.reader.as_ref().unwrap_or(&self.writer)
    }

    /// What orders events of the same millisecond: the order they were written in.
    fn seq(&self) -> &'static str {
        match self.writer.dialect() {
            Dialect::Sqlite => "rowid",
            Dialect::Postgres => "seq",
        }
    }

    /// Appends `events` and adds them to the rollups, in one transaction. An event whose id is
    /// already stored is skipped, so writing a batch again (a retry) counts nothing twice.
    pub fn write_batch(&self, events: &[UsageEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        in_transaction(&self.writer, |tx| {
            let user_ids = intern_users(tx, events)?;
            let mut inserted: HashSet<String> = HashSet::new();
            let mut values = Vec::with_capacity(EVENTS_PER_STATEMENT * 26);
            for chunk in events.chunks(EVENTS_PER_STATEMENT) {
                values.clear();
                for event in chunk {
                    push_event(&mut values, event, user_ids[event.user.as_str()])?;
                }
                // On SQLite `OR IGNORE`, which cannot abort: a statement that could (a NOT NULL
                // column, under `ON CONFLICT (id) DO NOTHING`) writes every page it changes to a
                // statement journal first, a third more time per batch.
                let sql = match tx.dialect() {
                    Dialect::Sqlite => format!(
                        "INSERT OR IGNORE INTO usage_events ({EVENT_COLUMNS}, user_id) VALUES {} RETURNING id",
                        tuples(chunk.len(), &[""; 26])
                    ),
                    Dialect::Postgres => format!(
                        "INSERT INTO usage_events ({EVENT_COLUMNS}, user_id) VALUES {} ON CONFLICT (id) DO NOTHING \
                         RETURNING id",
                        tuples(chunk.len(), &[""; 26])
                    ),
                };
                for row in tx.query(&sql, &values)? {
                    inserted.insert(row.get(0)?);
                }
            }
            let mut rollups: HashMap<GroupKey, Rollup> = HashMap::new();
            for event in events {
                // Removed, so an id repeated within the batch counts once, as it is stored.
                if !inserted.remove(&event.id) {
                    continue;
                }
                let user_id = user_ids[event.user.as_str()];
                let day = day_start(event.time_ms.div_euclid(1000));
                let departments = departments_key(&event.departments);
                for (dim, value) in contributions(event) {
                    let key = GroupKey { dim, day, departments: departments.clone(), value: value.to_owned() };
                    let rollup = rollups.entry(key).or_default();
                    rollup.measures.add_event(event);
                    // A user's own group has one active user, the user: no set needed.
                    if dim != Dim::User {
                        rollup.users.push(user_id);
                    }
                }
            }
            merge_rollups(tx, rollups)
        })
    }

    /// Deletes raw events older than `retention_days` (whole UTC days, so a day's raw events go
    /// together) and daily rollups older than `rollup_retention_days`. Returns the numbers of
    /// raw events and of `usage_daily` rows deleted.
    pub fn apply_retention(
        &self,
        now_ms: i64,
        retention_days: u32,
        rollup_retention_days: u32,
    ) -> Result<(usize, usize)> {
        let now_secs = now_ms.div_euclid(1000);
        let raw_cutoff_ms = day_start(now_secs - i64::from(retention_days) * DAY_SECS) * 1000;
        let rollup_cutoff = day_start(now_secs - i64::from(rollup_retention_days) * DAY_SECS);
        Ok(self.writer.transaction(|tx| {
            tx.execute("UPDATE usage_meta SET value = ?1 WHERE key = 'retention_cutoff_ms'", params![raw_cutoff_ms])?;
            let events = tx.execute("DELETE FROM usage_events WHERE time_ms < ?1", params![raw_cutoff_ms])?;
            let mut rollups = 0;
            // One statement per dimension, so each deletes a range of the primary key.
            for dim in Dim::ALL {
                rollups += tx.execute(
                    "DELETE FROM usage_daily WHERE dim = ?1 AND day < ?2",
                    params![dim.as_str(), rollup_cutoff],
                )?;
            }
            Ok((events, rollups))
        })?)
    }

    /// Every event of `user`, oldest first: their share of a personal-data export.
    pub fn events_of_user(&self, user: &str) -> Result<Vec<UsageEvent>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM usage_events WHERE \"user\" = ?1 ORDER BY time_ms, {}", self.seq());
        self.reader().query(&sql, params![user])?.iter().map(read_event).collect()
    }

    /// Replaces `user` by a pseudonym in the events, the rollups and the user table, in one
    /// transaction, so every total (distinct users included) stays what it was. The pseudonym is
    /// `erased:` and 16 random hex digits: a hash under a salt that is thrown away at once, so
    /// nothing left can lead back to the person. Returns the pseudonym and the events changed
    /// (none, and no pseudonym, when the user has no usage).
    pub fn pseudonymise_user(&self, user: &str) -> Result<Option<(String, usize)>> {
        Ok(self.writer.transaction(|tx| {
            if tx.query("SELECT 1 FROM usage_users WHERE \"user\" = ?1", params![user])?.is_empty() {
                return Ok(None);
            }
            let pseudonym = format!("erased:{:016x}", rand::random::<u64>());
            let events =
                tx.execute("UPDATE usage_events SET \"user\" = ?2 WHERE \"user\" = ?1", params![user, &pseudonym])?;
            tx.execute("UPDATE usage_users SET \"user\" = ?2 WHERE \"user\" = ?1", params![user, &pseudonym])?;
            tx.execute(
                "UPDATE usage_daily SET value = ?2 WHERE dim = ?3 AND value = ?1",
                params![user, &pseudonym, Dim::User.as_str()],
            )?;
            Ok(Some((pseudonym, events)))
        })?)
    }

    /// The events of `[from_ms, to_ms)`, oldest first.
    pub fn events(&self, from_ms: i64, to_ms: i64) -> Result<Vec<UsageEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE time_ms >= ?1 AND time_ms < ?2 ORDER BY time_ms, {}",
            self.seq()
        );
        self.reader().query(&sql, params![from_ms, to_ms])?.iter().map(read_event).collect()
    }

    /// The events of `[from_ms, to_ms)` with their users' ids, but only their
    /// [`TOTALS_COLUMNS`], the other fields left empty: several times faster than
    /// [`UsageStore::events`] (no stages to parse), for the partial days at the edges of an
    /// analytics or spend range.
    pub(crate) fn events_to_total(&self, from_ms: i64, to_ms: i64) -> Result<Vec<(u32, UsageEvent)>> {
        let sql = format!(
            "SELECT {TOTALS_COLUMNS} FROM usage_events WHERE time_ms >= ?1 AND time_ms < ?2 ORDER BY time_ms, {}",
            self.seq()
        );
        self.reader().query(&sql, params![from_ms, to_ms])?.iter().map(read_totals).collect()
    }

    /// The assistant messages of the chats of `[from_ms, to_ms)`, newest first, at most `limit`;
    /// with `departments`, only those of askers in one of them. What the top questions of a
    /// period are read from (the questions themselves live with the conversations, and go
    /// with them when they are deleted or expire).
    pub fn chat_messages(
        &self,
        from_ms: i64,
        to_ms: i64,
        departments: Option<&[String]>,
        limit: usize,
    ) -> Result<Vec<i64>> {
        // Read a page at a time, each after the last row of the one before, until `limit`
        // messages within `departments` are found.
        let seq = self.seq();
        let sql = format!(
            "SELECT message_id, departments, time_ms, {seq} FROM usage_events WHERE time_ms >= ?1 AND time_ms < ?2 \
             AND message_id IS NOT NULL AND endpoint IN ('chat', 'chat_stream') \
             AND (time_ms < ?3 OR (time_ms = ?3 AND {seq} < ?4)) ORDER BY time_ms DESC, {seq} DESC LIMIT ?5"
        );
        let page = limit.clamp(16, 1_000);
        let mut ids = Vec::new();
        let mut after = (to_ms, i64::MAX);
        while ids.len() < limit {
            let rows = self.reader().query(&sql, params![from_ms, to_ms, after.0, after.1, page])?;
            for row in &rows {
                if ids.len() == limit {
                    break;
                }
                let id: i64 = row.get(0)?;
                let asker: String = row.get(1)?;
                let within = departments.is_none()
                    || admits(
                        departments,
                        &serde_json::from_str::<Vec<String>>(&asker)
                            .map_err(|e| Error::Other(format!("reading a usage event's departments: {e}")))?,
                    );
                if within {
                    ids.push(id);
                }
            }
            match rows.last() {
                Some(last) if rows.len() == page => after = (last.get(2)?, last.get(3)?),
                _ => break,
            }
        }
        Ok(ids)
    }

    /// The chat (streamed or not) that produced message `message_id`: what feedback on that
    /// message refers to.
    pub fn chat_event_of_message(&self, message_id: i64) -> Result<Option<UsageEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM usage_events WHERE message_id = ?1 AND endpoint IN ('chat', 'chat_stream') \
             ORDER BY time_ms, {} LIMIT 1",
            self.seq()
        );
        self.reader().query_opt(&sql, params![message_id])?.as_ref().map(read_event).transpose()
    }

    /// Calls `each(day, departments_key, value, row)` for every rollup row of `dim` whose day
    /// starts in `[from_day, to_day)` (Unix seconds); `row` adds its measures and users where
    /// asked.
    pub(crate) fn for_each_rollup(
        &self,
        dim: Dim,
        from_day: i64,
        to_day: i64,
        mut each: impl FnMut(i64, &str, &str, &RollupRow<'_>) -> Result<()>,
    ) -> Result<()> {
        const SQL: &str = "SELECT day, departments, value, users, measures FROM usage_daily WHERE dim = ?1 AND day >= ?2 AND day < ?3";
        if let Some(scanner) = &self.scanner {
            let conn = scanner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut statement = conn.prepare_cached(SQL).map_err(sqlite_error)?;
            let mut rows = statement.query(rusqlite::params![dim.as_str(), from_day, to_day]).map_err(sqlite_error)?;
            while let Some(row) = rows.next().map_err(sqlite_error)? {
                let column = |i: usize| row.get_ref(i).map_err(sqlite_error);
                let corrupt = |i: usize, e: rusqlite::types::FromSqlError| {
                    Error::Other(format!("usage_daily column {i} is not of its type: {e}"))
                };
                let day = column(0)?.as_i64().map_err(|e| corrupt(0, e))?;
                let departments = column(1)?.as_str().map_err(|e| corrupt(1, e))?;
                let value = column(2)?.as_str().map_err(|e| corrupt(2, e))?;
                let users = column(3)?.as_blob_or_null().map_err(|e| corrupt(3, e))?;
                let measures = column(4)?.as_blob().map_err(|e| corrupt(4, e))?;
                each(day, departments, value, &RollupRow::Borrowed { users, measures })?;
            }
            return Ok(());
        }
        // A week at a time: rows are read whole before they are handed over, and a long range
        // grouped by user has hundreds of thousands.
        const DAYS_PER_QUERY: i64 = 7;
        let mut from = from_day;
        while from < to_day {
            let to = from.saturating_add(DAYS_PER_QUERY * DAY_SECS).min(to_day);
            for row in &self.reader().query(SQL, params![dim.as_str(), from, to])? {
                let departments: String = row.get(1)?;
                let value: String = row.get(2)?;
                each(row.get(0)?, &departments, &value, &RollupRow::Db(row))?;
            }
            from = to;
        }
        Ok(())
    }
}

fn sqlite_error(error: rusqlite::Error) -> Error {
    Error::Database(error.into())
}

/// A number for each user of `events` in `usage_users`, the same ever after. Known users are
/// looked up a few hundred at a time; a new one is inserted first.
fn intern_users<'e>(tx: &mut Tx<'_>, events: &'e [UsageEvent]) -> Result<HashMap<&'e str, u32>> {
    let mut users: Vec<&str> = events.iter().map(|e| e.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    let to_u32 = |id: i64| {
        u32::try_from(id)
            .map_err(|_| Error::Other(format!("user number {id} is past the 4 billion usage_users can hold")))
    };
    let mut ids = HashMap::with_capacity(users.len());
    for chunk in users.chunks(USERS_PER_STATEMENT) {
        let sql =
            format!("SELECT \"user\", id FROM usage_users WHERE \"user\" IN {}", tuples(1, &vec![""; chunk.len()]));
        let params: Vec<Value> = chunk.iter().map(|&u| Value::from(u)).collect();
        let known: HashMap<String, i64> =
            tx.query(&sql, &params)?.iter().map(|r| Ok((r.get(0)?, r.get(1)?))).collect::<Result<_>>()?;
        for &user in chunk {
            let id = match known.get(user) {
                Some(&id) => id,
                None => {
                    // Inserted only when missing: a PostgreSQL sequence would advance on every
                    // conflict, and the numbers would grow by one per user and batch.
                    tx.execute("INSERT INTO usage_users (\"user\") VALUES (?1) ON CONFLICT DO NOTHING", params![user])?;
                    tx.query("SELECT id FROM usage_users WHERE \"user\" = ?1", params![user])?
                        .first()
                        .ok_or_else(|| Error::Other(format!("user {user:?} was not numbered")))?
                        .get(0)?
                }
            };
            ids.insert(user, to_u32(id)?);
        }
    }
    Ok(ids)
}

/// The [`EVENT_COLUMNS`] of `event`, then its user's number.
fn push_event(values: &mut Vec<Value>, event: &UsageEvent, user_id: u32) -> Result<()> {
    let stages: BTreeMap<&str, f64> = event
        .stages
        .iter()
        .filter(|(_, ms)| ms.is_finite())
        .map(|(stage, ms)| (stage.as_str(), to_microseconds(*ms)))
        .collect();
    values.extend([
        Value::from(&event.id),
        Value::from(event.time_ms),
        Value::from(event.endpoint.as_str()),
        Value::from(&event.user),
        Value::from(&event.role),
        Value::from(json(&event.departments)?),
        Value::from(&event.credential),
        Value::from(event.key_id.as_deref()),
        Value::from(json(&event.collections)?),
        Value::from(&event.kind),
        Value::from(event.status),
        Value::from(event.model.as_deref()),
        Value::from(event.provider.as_deref()),
        Value::from(event.prompt_version.as_deref()),
        Value::from(signed(event.prompt_tokens)),
        Value::from(signed(event.completion_tokens)),
        Value::from(finite_or_zero(event.cost)),
        Value::from(finite_or_zero(event.latency_ms)),
        Value::from(json(&stages)?),
        Value::from(event.lang.as_deref()),
        Value::from(event.category.as_deref()),
        Value::from(event.conversation_id.as_deref()),
        Value::from(event.message_id),
        Value::from(json(&event.budget_warnings)?),
        Value::from(json(&event.dlp)?),
        Value::from(user_id),
    ]);
    Ok(())
}

/// What a batch adds to one rollup row.
#[derive(Default)]
struct Rollup {
    measures: Measures,
    /// Ids of the users active, in any order, repeated.
    users: Vec<u32>,
}

/// A `usage_daily` row under [`UsageStore::for_each_rollup`]: read through the store's
/// [`Db`], or borrowed from SQLite as it is scanned.
pub(crate) enum RollupRow<'r> {
    Db(&'r Row),
    Borrowed { users: Option<&'r [u8]>, measures: &'r [u8] },
}

impl RollupRow<'_> {
    pub fn add_to(&self, measures: &mut Measures) -> Result<()> {
        match self {
            RollupRow::Db(row) => measures.add_encoded(&row.get::<Vec<u8>>(4)?),
            RollupRow::Borrowed { measures: bytes, .. } => measures.add_encoded(bytes),
        }
    }

    /// Adds the ids of the users active in the row's group and day (none in `user` rows: their
    /// only user is their value).
    pub fn add_users_to(&self, users: &mut HashSet<u32>) -> Result<()> {
        let insert = |id| {
            users.insert(id);
        };
        match self {
            RollupRow::Db(row) => decode_ids(row.get::<Option<Vec<u8>>>(3)?.as_deref(), insert),
            RollupRow::Borrowed { users: bytes, .. } => decode_ids(*bytes, insert),
        }
    }
}

/// Adds the measures and users of a batch to the rollup rows they belong to (merged here, in
/// Rust, so each row is read and written once per batch, a few hundred rows a statement).
fn merge_rollups(tx: &mut Tx<'_>, rollups: HashMap<GroupKey, Rollup>) -> Result<()> {
    let mut rollups: Vec<(GroupKey, Rollup)> = rollups.into_iter().collect();
    let mut values = Vec::with_capacity(ROLLUPS_PER_STATEMENT * 6);
    for chunk in rollups.chunks_mut(ROLLUPS_PER_STATEMENT) {
        values.clear();
        for (key, _) in chunk.iter() {
            values.extend([
                Value::from(key.dim.as_str()),
                Value::from(key.day),
                Value::from(&key.departments),
                Value::from(&key.value),
            ]);
        }
        // A join rather than `(dim, day, departments, value) IN (VALUES …)`, which SQLite
        // answers by scanning the whole table; `columnN` names a `VALUES` column on both.
        let select = format!(
            "SELECT d.dim, d.day, d.departments, d.value, d.users, d.measures FROM (VALUES {}) AS k \
             JOIN usage_daily AS d ON d.dim = k.column1 AND d.day = k.column2 AND d.departments = k.column3 \
             AND d.value = k.column4",
            tuples(chunk.len(), &["TEXT", "BIGINT", "TEXT", "TEXT"])
        );
        let stored = tx.query(&select, &values)?;
        let position: HashMap<(&str, i64, &str, &str), usize> = chunk
            .iter()
            .enumerate()
            .map(|(i, (key, _))| ((key.dim.as_str(), key.day, key.departments.as_str(), key.value.as_str()), i))
            .collect();
        let mut found: Vec<Option<&Row>> = vec![None; chunk.len()];
        for row in &stored {
            let (dim, day, departments, value): (String, i64, String, String) =
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
            if let Some(&i) = position.get(&(dim.as_str(), day, departments.as_str(), value.as_str())) {
                found[i] = Some(row);
            }
        }
        values.clear();
        for ((key, Rollup { measures, users }), stored) in chunk.iter_mut().zip(found) {
            users.sort_unstable();
            users.dedup();
            if let Some(row) = stored {
                let mut before = Vec::new();
                decode_ids(row.get::<Option<Vec<u8>>>(4)?.as_deref(), |id| before.push(id))?;
                *users = union_ids(&before, users);
                measures.add_encoded(&row.get::<Vec<u8>>(5)?)?;
            }
            values.extend([
                Value::from(key.dim.as_str()),
                Value::from(key.day),
                Value::from(&key.departments),
                Value::from(&key.value),
                Value::from(encode_ids(users)),
                Value::from(measures.encode()),
            ]);
        }
        // One row a statement on SQLite (in process, and a statement of several rows that may
        // abort needs a statement journal), all at once on PostgreSQL.
        let rows_per_upsert = match tx.dialect() {
            Dialect::Sqlite => 1,
            Dialect::Postgres => chunk.len(),
        };
        let upsert = |rows: usize| {
            format!(
                "INSERT INTO usage_daily (dim, day, departments, value, users, measures) VALUES {} \
                 ON CONFLICT (dim, day, departments, value) DO UPDATE SET users = excluded.users, \
                 measures = excluded.measures",
                tuples(rows, &[""; 6])
            )
        };
        let whole = upsert(rows_per_upsert);
        for rows in values.chunks(rows_per_upsert * 6) {
            if rows.len() == rows_per_upsert * 6 {
                tx.execute(&whole, rows)?;
            } else {
                tx.execute(&upsert(rows.len() / 6), rows)?;
            }
        }
    }
    Ok(())
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Other(format!("encoding a usage event field: {e}")))
}

/// An HTTP status as stored.
fn status(row: &Row, column: usize) -> Result<u16> {
    let status: i64 = row.get(column)?;
    u16::try_from(status).map_err(|_| Error::Other(format!("a usage event has the status {status}")))
}

/// Reads a row of [`EVENT_COLUMNS`].
fn read_event(row: &Row) -> Result<UsageEvent> {
    let id: String = row.get(0)?;
    let endpoint: String = row.get(2)?;
    let text = |i: usize| row.get::<String>(i);
    let list = |i: usize| -> Result<Vec<String>> {
        serde_json::from_str(&text(i)?)
            .map_err(|e| Error::Other(format!("usage event {id}: column {i} is not a list of strings: {e}")))
    };
    Ok(UsageEvent {
        endpoint: Endpoint::parse(&endpoint)
            .ok_or_else(|| Error::Other(format!("usage event {id}: unknown endpoint {endpoint:?}")))?,
        time_ms: row.get(1)?,
        user: row.get(3)?,
        role: row.get(4)?,
        departments: list(5)?,
        credential: row.get(6)?,
        key_id: row.get(7)?,
        collections: list(8)?,
        kind: row.get(9)?,
        status: status(row, 10)?,
        model: row.get(11)?,
        provider: row.get(12)?,
        prompt_version: row.get(13)?,
        prompt_tokens: unsigned(row.get(14)?),
        completion_tokens: unsigned(row.get(15)?),
        cost: row.get(16)?,
        latency_ms: row.get(17)?,
        stages: serde_json::from_str(&text(18)?)
            .map_err(|e| Error::Other(format!("usage event {id}: stages are not a map of milliseconds: {e}")))?,
        lang: row.get(19)?,
        category: row.get(20)?,
        conversation_id: row.get(21)?,
        message_id: row.get(22)?,
        budget_warnings: list(23)?,
        dlp: serde_json::from_str(&text(24)?)
            .map_err(|e| Error::Other(format!("usage event {id}: DLP counts are not a map of counts: {e}")))?,
        id,
    })
}

/// Reads a row of [`TOTALS_COLUMNS`]: the user's id and the event.
fn read_totals(row: &Row) -> Result<(u32, UsageEvent)> {
    let time_ms: i64 = row.get(0)?;
    let endpoint: String = row.get(1)?;
    let list = |i: usize| -> Result<Vec<String>> {
        serde_json::from_str(&row.get::<String>(i)?).map_err(|e| {
            Error::Other(format!("the usage event at {time_ms} ms: column {i} is not a list of strings: {e}"))
        })
    };
    let event = UsageEvent {
        id: String::new(),
        time_ms,
        endpoint: Endpoint::parse(&endpoint)
            .ok_or_else(|| Error::Other(format!("the usage event at {time_ms} ms: unknown endpoint {endpoint:?}")))?,
        user: row.get(2)?,
        role: String::new(),
        departments: list(3)?,
        credential: String::new(),
        key_id: row.get(4)?,
        collections: list(5)?,
        kind: row.get(6)?,
        status: status(row, 7)?,
        model: row.get(8)?,
        provider: None,
        prompt_version: None,
        prompt_tokens: unsigned(row.get(9)?),
        completion_tokens: unsigned(row.get(10)?),
        cost: row.get(11)?,
        latency_ms: row.get(12)?,
        stages: BTreeMap::new(),
        lang: None,
        category: row.get(13)?,
        conversation_id: None,
        message_id: None,
        budget_warnings: Vec::new(),
        dlp: Default::default(),
    };
    Ok((row.get(14)?, event))
}

impl SpendSource for UsageStore {
    /// Whole days are summed from the rollups (`user` and `key` rows, or for a department the
    /// `all` rows whose departments include it); partial days at the edges from raw events.
    fn spend(&self, dim: &str, value: &str, from_secs: i64, to_secs: i64) -> Result<Spend> {
        let (rollup_dim, matches): (Dim, fn(&UsageEvent, &str) -> bool) = match dim {
            "department" => (Dim::All, |event, value| event.departments.iter().any(|d| d == value)),
            "key" => (Dim::Key, |event, value| event.key_id.as_deref() == Some(value)),
            "user" => (Dim::User, |event, value| event.user == value),
            other => {
                return Err(Error::Invalid(format!("unknown budget scope {other:?}: use department, key or user")));
            }
        };
        let split = split_days(from_secs.saturating_mul(1000), to_secs.saturating_mul(1000));
        let mut spend = Spend::default();
        if let Some((from_day, to_day)) = split.days {
            let value_filter = (rollup_dim != Dim::All).then_some(value);
            let rows = self.reader().query(
                "SELECT departments, measures FROM usage_daily \
                 WHERE dim = ?1 AND day >= ?2 AND day < ?3 AND (CAST(?4 AS TEXT) IS NULL OR value = ?4)",
                params![rollup_dim.as_str(), from_day, to_day, value_filter],
            )?;
            for row in &rows {
                let counts =
                    rollup_dim != Dim::All || parse_departments_key(&row.get::<String>(0)?).iter().any(|d| d == value);
                if counts {
                    let mut measures = Measures::default();
                    measures.add_encoded(&row.get::<Vec<u8>>(1)?)?;
                    spend.tokens += measures.prompt_tokens + measures.completion_tokens;
                    spend.cost += measures.cost;
                }
            }
        }
        for (from_ms, to_ms) in split.edges {
            for (_, event) in self.events_to_total(from_ms, to_ms)?.iter().filter(|(_, event)| matches(event, value)) {
                spend.tokens += event.tokens();
                spend.cost += finite_or_zero(event.cost);
            }
        }
        Ok(spend)
    }
}

/// How many events may wait for the writer thread; more are dropped (and counted) rather than
/// slow a request or grow memory without bound while the database is stuck.
const QUEUE_CAPACITY: usize = 65_536;

/// How often the writer thread deletes what is past retention.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// How long the writer waits before retrying a failed batch once.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

enum Message {
    /// Boxed, so the queue's slots stay small.
    Event(Box<UsageEvent>),
    /// Write everything queued so far, then answer.
    Flush(SyncSender<()>),
}

/// Takes usage events off the request path: [`Recorder::record`] only queues the event, and a
/// background thread writes them in batches (every `flush_batch` events or `flush_interval_ms`)
/// and applies retention about hourly. Cheap to clone; when the last clone is dropped the
/// thread writes what is left and ends.
#[derive(Clone)]
pub struct Recorder {
    /// `None` when metering is off.
    sender: Option<SyncSender<Message>>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    pub fn start(store: Arc<UsageStore>, config: &UsageConfig) -> Recorder {
        let (sender, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            store,
            receiver,
            dropped: dropped.clone(),
            batch: config.flush_batch.max(1),
            interval: Duration::from_millis(config.flush_interval_ms.max(1)),
            retention_days: config.retention_days,
            rollup_retention_days: config.rollup_retention_days,
        };
        // Should the thread not start, the receiver is gone with it and every event counts as
        // dropped: metering fails, requests do not.
        if let Err(error) = std::thread::Builder::new().name("lore-usage-writer".into()).spawn(move || writer.run()) {
            tracing::error!(%error, "the usage writer thread did not start; usage events will be dropped");
        }
        Recorder { sender: Some(sender), dropped }
    }

    /// A recorder that records nothing (`usage.enabled = false`).
    pub fn disabled() -> Recorder {
        Recorder { sender: None, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queues `event`; never blocks. When the queue is full the event is dropped and counted.
    pub fn record(&self, event: UsageEvent) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Message::Event(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Logs at 1, 2, 4, 8, … drops: visible without flooding the log.
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "usage event dropped: the writer is behind or stopped");
                }
            }
        }
    }

    /// Blocks until every event recorded before the call is written (or failed to be).
    pub fn flush(&self) {
        let Some(sender) = &self.sender else { return };
        let (ack, done) = mpsc::sync_channel(1);
        if sender.send(Message::Flush(ack)).is_ok() {
            // An error means the writer thread is gone: nothing is left to wait for.
            let _ = done.recv();
        }
    }

    /// Events lost so far: dropped from a full queue, or in a batch the database refused twice.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The background side of a [`Recorder`].
struct Writer {
    store: Arc<UsageStore>,
    receiver: Receiver<Message>,
    dropped: Arc<AtomicU64>,
    batch: usize,
    interval: Duration,
    retention_days: u32,
    rollup_retention_days: u32,
}

impl Writer {
    fn run(self) {
        let mut pending: Vec<UsageEvent> = Vec::with_capacity(self.batch);
        // When the oldest waiting event must be written.
        let mut due: Option<Instant> = None;
        let mut next_retention = Instant::now();
        loop {
            if Instant::now() >= next_retention {
                self.apply_retention();
                next_retention = Instant::now() + RETENTION_EVERY;
            }
            let wake = due.map_or(next_retention, |due| due.min(next_retention));
            match self.receiver.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Message::Event(event)) => {
                    pending.push(*event);
                    let deadline = *due.get_or_insert_with(|| Instant::now() + self.interval);
                    if pending.len() >= self.batch || Instant::now() >= deadline {
                        self.write(&mut pending);
                        due = None;
                    }
                }
                Ok(Message::Flush(ack)) => {
                    self.write(&mut pending);
                    due = None;
                    // The flusher may have given up waiting; nothing to do then.
                    let _ = ack.send(());
                }
                Err(RecvTimeoutError::Timeout) => {
                    if due.is_some_and(|due| Instant::now() >= due) {
                        self.write(&mut pending);
                        due = None;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.write(&mut pending);
                    return;
                }
            }
        }
    }

    /// Writes and empties `pending`, retrying once; a batch refused twice is logged and lost.
    fn write(&self, pending: &mut Vec<UsageEvent>) {
        if pending.is_empty() {
            return;
        }
        if let Err(error) = self.store.write_batch(pending) {
            tracing::error!(%error, events = pending.len(), "writing usage events failed; retrying once");
            std::thread::sleep(RETRY_PAUSE);
            // Retrying is safe: a batch is one transaction, and stored ids are skipped.
            if let Err(error) = self.store.write_batch(pending) {
                tracing::error!(%error, events = pending.len(), "writing usage events failed again; they are lost");
                self.dropped.fetch_add(pending.len() as u64, Ordering::Relaxed);
            }
        }
        pending.clear();
    }

    fn apply_retention(&self) {
        match self.store.apply_retention(now_ms(), self.retention_days, self.rollup_retention_days) {
            Ok((events, rollups)) => {
                if events > 0 || rollups > 0 {
                    tracing::info!(events, rollups, "usage retention: deleted old events and rollups");
                }
            }
            Err(error) => tracing::error!(%error, "usage retention failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{month_bounds, synthetic};
    use lore_db::testing::on_both;

    /// 2026-11-30T10:00:00Z, a Monday.
    const NOW_MS: i64 = 1_796_032_800_000;

    fn open(database: &Database) -> Arc<UsageStore> {
        Arc::new(UsageStore::open_in(database).expect("open"))
    }

    fn event(time_ms: i64, user: &str, departments: &[&str], kind: &str) -> UsageEvent {
        UsageEvent {
            time_ms,
            departments: departments.iter().map(|d| d.to_string()).collect(),
            prompt_tokens: 100,
            completion_tokens: 20,
            cost: 0.25,
            latency_ms: 900.0,
            ..UsageEvent::new(Endpoint::Chat, user, kind)
        }
    }

    /// Sums of the `all` rollup rows of `[from_day, to_day)`.
    fn rollup_totals(store: &UsageStore, from_day: i64, to_day: i64) -> Measures {
        let mut totals = Measures::default();
        store.for_each_rollup(Dim::All, from_day, to_day, |_, _, _, row| row.add_to(&mut totals)).expect("rollups");
        totals
    }

    #[test]
    fn histogram_buckets_percentiles_and_encoding() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        // Bucket 0 holds everything below 2^(1/4) ms, NaN and negatives included.
        for ms in [0.0, 0.5, -3.0, f64::NAN, 1.0, 1.18] {
            histogram.record(ms);
        }
        assert_eq!(histogram.counts[0], 6);
        histogram.record(1e12);
        assert_eq!(histogram.counts[HISTOGRAM_BUCKETS - 1], 1);
        let mut bytes = Vec::new();
        histogram.encode_into(&mut bytes);
        assert_eq!(bytes, [2, 0, 6, 79, 1], "two buckets: their number, then index and count of each");
        let mut decoded = Histogram::default();
        decoded.add_decoded(&mut &bytes[..]).expect("decode");
        assert_eq!(decoded, histogram);

        // Percentiles land within ±9 % of the exact ones.
        let latencies: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 3.7).collect();
        let mut histogram = Histogram::default();
        latencies.iter().for_each(|&ms| histogram.record(ms));
        for (q, exact) in [(0.5, latencies[499]), (0.95, latencies[949]), (0.99, latencies[989])] {
            let estimate = histogram.quantile(q).expect("non-empty");
            assert!((estimate / exact - 1.0).abs() <= 0.091, "p{q}: {estimate} for {exact}");
        }

        // Cut short, and a bucket past the last.
        assert_eq!(Histogram::default().add_decoded(&mut &[2, 0, 6][..]), None);
        assert_eq!(Histogram::default().add_decoded(&mut &[1, 80, 1][..]), None);
    }

    #[test]
    fn measures_encode_add_up_and_reject_corruption() {
        let mut measures = Measures::default();
        let mut chat = event(NOW_MS, "ana", &["hr"], "no_answer");
        chat.prompt_tokens = 300;
        measures.add_event(&chat);
        measures.add_event(&UsageEvent { latency_ms: 12.0, ..UsageEvent::new(Endpoint::Search, "ben", "results") });
        let bytes = measures.encode();

        let mut sum = Measures::default();
        sum.add_encoded(&bytes).expect("decode");
        assert_eq!(sum, measures);
        sum.add_encoded(&bytes).expect("decode");
        assert_eq!((sum.requests, sum.chats, sum.kind("no_answer"), sum.kind("results")), (4, 2, 2, 2));
        assert_eq!((sum.prompt_tokens, sum.completion_tokens, sum.cost), (600, 40, 0.5));
        assert_eq!((sum.chat_latency.count(), sum.search_latency.count()), (2, 2));

        // A row written before a kind was appended to KINDS reads that kind as zero.
        let kinds_at = bytes.len() - 1 - KINDS.len();
        let mut older = bytes[..kinds_at].to_vec();
        older.push(KINDS.len() as u8 - 1);
        older.extend(&bytes[kinds_at + 1..bytes.len() - 1]);
        let mut read = Measures::default();
        read.add_encoded(&older).expect("a row with fewer kinds");
        assert_eq!(read, measures);

        for corrupt in [&bytes[..bytes.len() - 1], &[bytes.as_slice(), &[0]].concat()[..], &[]] {
            assert!(matches!(Measures::default().add_encoded(corrupt), Err(Error::Other(_))));
        }
        let mut newer = bytes[..kinds_at].to_vec();
        newer.push(KINDS.len() as u8 + 1);
        newer.extend(&bytes[kinds_at + 1..]);
        newer.push(0);
        assert!(Measures::default().add_encoded(&newer).is_err(), "kinds this build does not know");
    }

    #[test]
    fn user_id_sets_encode_merge_and_reject_corruption() {
        let ids = [1, 2, 127, 128, 300, 16_384, u32::MAX];
        let bytes = encode_ids(&ids).expect("non-empty");
        assert_eq!(bytes.len(), 1 + 1 + 1 + 1 + 2 + 2 + 5);
        let mut decoded = Vec::new();
        decode_ids(Some(&bytes), |id| decoded.push(id)).expect("decode");
        assert_eq!(decoded, ids);
        assert_eq!(encode_ids(&[]), None);
        decode_ids(None, |_| panic!("NULL is empty")).expect("decode");

        assert_eq!(union_ids(&[1, 3, 5], &[2, 3, 6, 7]), [1, 2, 3, 5, 6, 7]);
        assert_eq!(union_ids(&[], &[4]), [4]);
        // A last byte that promises more, and a number past 32 bits.
        assert!(decode_ids(Some(&[0x81]), |_| {}).is_err());
        assert!(decode_ids(Some(&[0xff, 0xff, 0xff, 0xff, 0x7f]), |_| {}).is_err());
        assert!(decode_ids(Some(&[0xff, 0xff, 0xff, 0xff, 0x0f, 1]), |_| {}).is_err());
    }

    #[test]
    fn departments_key_is_sorted_deduplicated_and_reversible() {
        let departments = ["sales", "hr", "", "sales", "r,d\\x"].map(String::from);
        let key = departments_key(&departments);
        assert_eq!(key, "hr,r\\,d\\\\x,sales");
        assert_eq!(parse_departments_key(&key), ["hr", "r,d\\x", "sales"]);
        assert_eq!(departments_key(&[]), "");
        assert!(parse_departments_key("").is_empty());
    }

    #[test]
    fn contributions_name_every_dimension_once_per_value() {
        let mut e = event(NOW_MS, "ana", &["hr"], "generated");
        e.key_id = Some("k1".into());
        e.collections = vec!["b".into(), "a".into(), "b".into()];
        let got: Vec<(Dim, &str)> = contributions(&e).collect();
        assert_eq!(
            got,
            [
                (Dim::All, ""),
                (Dim::User, "ana"),
                (Dim::Key, "k1"),
                (Dim::Category, ""),
                (Dim::Model, ""),
                (Dim::Endpoint, "chat"),
                (Dim::Collection, "a"),
                (Dim::Collection, "b"),
            ]
        );
        e.collections.clear();
        assert_eq!(
            contributions(&e).filter(|(d, _)| *d == Dim::Collection).collect::<Vec<_>>(),
            [(Dim::Collection, "")]
        );
    }

    #[test]
    fn split_days_cuts_whole_days_and_edges() {
        let day = DAY_MS;
        assert_eq!(
            split_days(10 * day, 12 * day),
            DaySplit { days: Some((10 * DAY_SECS, 12 * DAY_SECS)), edges: vec![] }
        );
        assert_eq!(
            split_days(10 * day + 5, 12 * day + 7),
            DaySplit {
                days: Some((11 * DAY_SECS, 12 * DAY_SECS)),
                edges: vec![(10 * day + 5, 11 * day), (12 * day, 12 * day + 7)]
            }
        );
        assert_eq!(
            split_days(10 * day + 5, 11 * day + 7),
            DaySplit { days: None, edges: vec![(10 * day + 5, 11 * day + 7)] }
        );
        assert_eq!(split_days(5, 5), DaySplit { days: None, edges: vec![] });
    }

    #[test]
    fn events_round_trip_and_a_batch_written_twice_counts_once() {
        on_both("events_round_trip_and_a_batch_written_twice_counts_once", |database| {
            let store = open(database);
            let mut events: Vec<UsageEvent> = synthetic::events(300, 3, 3, NOW_MS).collect();
            events.sort_by_key(|e| e.time_ms);
            for event in &mut events {
                event.stages.values_mut().for_each(|ms| *ms = to_microseconds(*ms));
            }
            // A NaN would be NULL in SQLite; it is stored as zero and dropped from the stages.
            events[0].cost = f64::NAN;
            events[0].stages.insert("embed".into(), f64::INFINITY);
            store.write_batch(&events).expect("write");
            store.write_batch(&events).expect("write again");

            let stored = store.events(NOW_MS - 3 * DAY_MS, NOW_MS).expect("events");
            assert_eq!(stored.len(), events.len());
            assert_eq!(stored[0].cost, 0.0);
            assert!(!stored[0].stages.contains_key("embed"));
            // Equal times keep the order they were written in.
            assert_eq!(stored[1..], events[1..]);

            let totals = rollup_totals(&store, 0, NOW_MS / 1000 + DAY_SECS);
            assert_eq!(totals.requests, 300);
            assert_eq!(totals.prompt_tokens, events.iter().map(|e| e.prompt_tokens).sum::<u64>());

            // The users active each day, by their numbers.
            let names: HashMap<u32, String> = store
                .writer
                .query("SELECT id, \"user\" FROM usage_users", &[])
                .expect("query")
                .iter()
                .map(|r| (r.get(0).expect("id"), r.get(1).expect("user")))
                .collect();
            let mut active_days = HashSet::new();
            store
                .for_each_rollup(Dim::All, 0, NOW_MS / 1000 + DAY_SECS, |day, _, _, row| {
                    let mut ids = HashSet::new();
                    row.add_users_to(&mut ids)?;
                    active_days.extend(ids.into_iter().map(|id| (day, names[&id].clone())));
                    Ok(())
                })
                .expect("rollups");
            let expected: HashSet<(i64, String)> =
                events.iter().map(|e| (day_start(e.time_ms / 1000), e.user.clone())).collect();
            assert_eq!(active_days, expected);
        });
    }

    #[test]
    fn erasure_pseudonymises_a_user_everywhere_and_keeps_the_totals() {
        on_both("erasure_pseudonymises_a_user_everywhere_and_keeps_the_totals", |database| {
            let store = open(database);
            let mut events: Vec<UsageEvent> = (0..40)
                .map(|i| {
                    event(
                        NOW_MS - i64::from(i) * DAY_MS / 4,
                        if i % 3 == 0 { "ana" } else { "luis" },
                        &["hr"],
                        "generated",
                    )
                })
                .collect();
            events[0].dlp.redacted.insert("email".into(), 2);
            store.write_batch(&events).expect("write");
            let before = rollup_totals(&store, 0, NOW_MS / 1000 + DAY_SECS);
            let per_user = |store: &UsageStore| {
                let mut users = HashMap::new();
                store
                    .for_each_rollup(Dim::User, 0, NOW_MS / 1000 + DAY_SECS, |_, _, value, row| {
                        let mut m = Measures::default();
                        row.add_to(&mut m)?;
                        *users.entry(value.to_owned()).or_insert(0) += m.requests;
                        Ok(())
                    })
                    .expect("rollups");
                users
            };
            assert_eq!(per_user(&store)["ana"], 14);
            let exported = store.events_of_user("ana").expect("export");
            assert_eq!(exported.last().expect("newest").dlp.redacted["email"], 2);

            let (pseudonym, changed) = store.pseudonymise_user("ana").expect("erase").expect("ana has usage");
            assert_eq!(changed, 14);
            assert!(pseudonym.starts_with("erased:"), "{pseudonym}");
            assert!(store.events_of_user("ana").expect("export").is_empty());
            assert_eq!(store.events_of_user(&pseudonym).expect("events").len(), 14);
            let users = per_user(&store);
            assert!(!users.contains_key("ana"));
            assert_eq!(users[&pseudonym], 14);
            let after = rollup_totals(&store, 0, NOW_MS / 1000 + DAY_SECS);
            assert_eq!((after.requests, after.prompt_tokens), (before.requests, before.prompt_tokens));
            assert_eq!(store.pseudonymise_user("ana").expect("again"), None);

            // The triggers still refuse every other change, and a pseudonym that is not one.
            for statement in [
                "UPDATE usage_events SET cost = 0",
                "UPDATE usage_events SET \"user\" = 'mallory' WHERE \"user\" = 'luis'",
                "UPDATE usage_events SET \"user\" = 'erased:1', kind = 'error' WHERE \"user\" = 'luis'",
            ] {
                let error = store.writer.execute(statement, &[]).expect_err(statement).to_string();
                assert!(error.contains("append-only"), "{statement}: {error}");
            }
        });
    }

    #[test]
    fn a_version_1_database_is_migrated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("catalog.sqlite");
        {
            let conn = rusqlite::Connection::open(&path).expect("open");
            let v1 = SQLITE_TABLES
                .replace("    dlp TEXT NOT NULL DEFAULT '{}'\n", "")
                .replace("budget_warnings TEXT NOT NULL,", "budget_warnings TEXT NOT NULL");
            conn.execute_batch(META_SCHEMA).expect("meta");
            conn.execute("INSERT INTO usage_meta (key, value) VALUES ('schema', 1)", []).expect("version");
            conn.execute_batch(&v1).expect("version 1 tables");
            conn.execute_batch(
                "DROP TRIGGER usage_events_no_update; DROP TRIGGER usage_events_only_pseudonymise; \
                CREATE TRIGGER usage_events_no_update BEFORE UPDATE ON usage_events \
                BEGIN SELECT RAISE(ABORT, 'usage events are append-only'); END;",
            )
            .expect("version 1 trigger");
            conn.execute(
                "INSERT INTO usage_events (id, time_ms, endpoint, user, user_id, role, departments, credential, \
                 collections, kind, status, prompt_tokens, completion_tokens, cost, latency_ms, stages, budget_warnings) \
                 VALUES ('e1', 1, 'chat', 'ana', 1, 'employee', '[]', 'sso', '[]', 'generated', 200, 1, 1, 0, 1, '{}', '[]')",
                [],
            )
            .expect("a version 1 event");
            conn.execute("INSERT INTO usage_users (id, user) VALUES (1, 'ana')", []).expect("user");
        }
        let store = UsageStore::open(&path).expect("migrated");
        let events = store.events_of_user("ana").expect("events");
        assert_eq!(events.len(), 1);
        assert!(events[0].dlp.is_empty());
        assert!(store.pseudonymise_user("ana").expect("erase").is_some());
    }

    #[test]
    fn chat_event_of_message_finds_the_chat_not_its_feedback() {
        on_both("chat_event_of_message_finds_the_chat_not_its_feedback", |database| {
            let store = open(database);
            let mut feedback = UsageEvent::new(Endpoint::Feedback, "ana", "down");
            feedback.time_ms = NOW_MS - 10;
            feedback.message_id = Some(42);
            let mut chat = event(NOW_MS, "ana", &["hr"], "generated");
            chat.message_id = Some(42);
            store.write_batch(&[feedback, chat.clone()]).expect("write");
            assert_eq!(store.chat_event_of_message(42).expect("query"), Some(chat));
            assert_eq!(store.chat_event_of_message(43).expect("query"), None);
        });
    }

    #[test]
    fn chat_messages_are_newest_first_within_departments_and_the_limit() {
        on_both("chat_messages_are_newest_first_within_departments_and_the_limit", |database| {
            let store = open(database);
            // Pairs of chats at the same millisecond, so the order of writing breaks ties; a
            // search (no message) and chats of other departments in between.
            let mut events = Vec::new();
            for i in 0..60i64 {
                let departments: &[&str] = if i % 3 == 0 { &["hr"] } else { &["it"] };
                let mut chat = event(NOW_MS - 1_000 + i / 2, "ana", departments, "generated");
                chat.message_id = Some(i);
                events.push(chat);
            }
            events.push(UsageEvent { time_ms: NOW_MS - 10, ..UsageEvent::new(Endpoint::Search, "ana", "results") });
            store.write_batch(&events).expect("write");

            let all = store.chat_messages(0, NOW_MS, None, 100).expect("all");
            // Of two chats at the same millisecond, the one written last is the newer.
            let expected: Vec<i64> = (0..60i64).rev().collect();
            assert_eq!(all, expected);
            assert_eq!(store.chat_messages(0, NOW_MS, None, 3).expect("three"), expected[..3]);
            // More than a page of other departments' chats before the 20 of hr are found.
            let hr: Vec<i64> = expected.iter().copied().filter(|i| i % 3 == 0).collect();
            assert_eq!(store.chat_messages(0, NOW_MS, Some(&["hr".to_owned()]), 100).expect("hr"), hr);
            assert_eq!(store.chat_messages(0, NOW_MS, Some(&["hr".to_owned()]), 19).expect("hr"), hr[..19]);
            assert!(store.chat_messages(0, NOW_MS, Some(&["legal".to_owned()]), 5).expect("legal").is_empty());
            assert!(store.chat_messages(NOW_MS - 1_000, NOW_MS - 999, None, 0).expect("none").is_empty());
            assert_eq!(store.chat_messages(NOW_MS - 1_000, NOW_MS - 999, None, 5).expect("first ms"), [1, 0]);
        });
    }

    #[test]
    fn retention_deletes_only_old_rows_and_recent_rows_cannot_be_changed() {
        on_both("retention_deletes_only_old_rows_and_recent_rows_cannot_be_changed", |database| {
            let store = open(database);
            let old = event(NOW_MS - 10 * DAY_MS, "ana", &["hr"], "generated");
            let recent = event(NOW_MS - DAY_MS, "ben", &["it"], "generated");
            store.write_batch(&[old.clone(), recent.clone()]).expect("write");
            // An event without collections has one rollup row per dimension.
            let rows_per_event = Dim::ALL.len();

            let delete = |id: &str| store.writer.execute("DELETE FROM usage_events WHERE id = ?1", params![id]);
            assert!(delete(&recent.id).is_err(), "deleting a recent event must fail");
            assert!(delete(&old.id).is_err(), "before retention ran, nothing is past the cutoff");
            let update = store.writer.execute("UPDATE usage_events SET cost = 0 WHERE id = ?1", params![&recent.id]);
            assert!(update.is_err(), "usage events are append-only");

            // Raw events past 5 days go, rollups stay (kept 30 days).
            assert_eq!(store.apply_retention(NOW_MS, 5, 30).expect("retention"), (1, 0));
            assert_eq!(store.events(0, NOW_MS).expect("events"), std::slice::from_ref(&recent));
            assert!(delete(&recent.id).is_err(), "the cutoff does not reach recent events");
            assert_eq!(rollup_totals(&store, 0, NOW_MS / 1000).requests, 2);

            // Rollups past 7 days go too.
            assert_eq!(store.apply_retention(NOW_MS, 5, 7).expect("retention"), (0, rows_per_event));
            assert_eq!(rollup_totals(&store, 0, NOW_MS / 1000).requests, 1);
            let rows: i64 = store
                .writer
                .query_opt("SELECT COUNT(*) FROM usage_daily", &[])
                .expect("count")
                .expect("a row")
                .get(0)
                .expect("a number");
            assert_eq!(rows, rows_per_event as i64, "only the recent event's groups are left");
            assert!(delete(&recent.id).is_err());
        });
    }

    #[test]
    fn a_newer_schema_is_refused() {
        on_both("a_newer_schema_is_refused", |database| {
            let store = open(database);
            store.writer.execute("UPDATE usage_meta SET value = 3 WHERE key = 'schema'", &[]).expect("update");
            drop(store);
            let error = UsageStore::open_in(database).err().expect("schema 3 must be refused");
            assert!(error.to_string().contains("schema 3"), "{error}");
        });
    }

    #[test]
    fn a_newer_schema_in_a_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data/catalog.sqlite");
        drop(UsageStore::open(&path).expect("open"));
        let raw = rusqlite::Connection::open(&path).expect("raw connection");
        raw.execute("UPDATE usage_meta SET value = 3 WHERE key = 'schema'", []).expect("update");
        let error = UsageStore::open(&path).err().expect("schema 3 must be refused").to_string();
        assert!(error.contains("schema 3") && error.contains("catalog.sqlite"), "{error}");
    }

    #[test]
    fn spend_sums_match_the_raw_events_for_days_months_and_odd_bounds() {
        on_both("spend_sums_match_the_raw_events_for_days_months_and_odd_bounds", |database| {
            let store = open(database);
            let events: Vec<UsageEvent> = synthetic::events(3_000, 11, 45, NOW_MS).collect();
            for batch in events.chunks(700) {
                store.write_batch(batch).expect("write");
            }
            let now = NOW_MS / 1000;
            let (month_from, month_to) = month_bounds(now);
            let yesterday = day_start(now) - DAY_SECS;
            let ranges = [
                (month_from, month_to),
                (month_bounds(month_from - 1).0, month_from),
                (yesterday, yesterday + DAY_SECS),
                (yesterday - 3 * DAY_SECS + 4_321, now - 1_234),
                (yesterday + 3_600, yesterday + 7_200),
            ];
            let user = events.iter().find(|e| e.tokens() > 0).map(|e| e.user.clone()).expect("a user");
            let scopes = [("department", "sales"), ("department", "hr"), ("key", "key-03"), ("user", user.as_str())];
            for (from, to) in ranges {
                for (dim, value) in scopes {
                    let matching =
                        events.iter().filter(|e| (from * 1000..to * 1000).contains(&e.time_ms)).filter(|e| match dim {
                            "department" => e.departments.iter().any(|d| d == value),
                            "key" => e.key_id.as_deref() == Some(value),
                            _ => e.user == value,
                        });
                    let (tokens, cost) = matching.fold((0, 0.0), |(t, c), e| (t + e.tokens(), c + e.cost));
                    let spend = store.spend(dim, value, from, to).expect("spend");
                    assert_eq!(spend.tokens, tokens, "{dim} {value} [{from}, {to})");
                    assert!((spend.cost - cost).abs() < 1e-9, "{dim} {value} [{from}, {to}): {} vs {cost}", spend.cost);
                }
            }
            let (month_from, month_to) = month_bounds(now);
            assert!(store.spend("department", "sales", month_from, month_to).expect("spend").tokens > 0);
            assert!(matches!(store.spend("team", "x", month_from, month_to), Err(Error::Invalid(_))));
        });
    }

    fn wait_for(store: &UsageStore, count: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if store.events(0, i64::MAX).expect("events").len() == count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn recorder_flush_makes_everything_visible() {
        on_both("recorder_flush_makes_everything_visible", |database| {
            let store = open(database);
            // Neither the batch size nor the interval would write during the test.
            let config = UsageConfig { flush_batch: 10_000, flush_interval_ms: 600_000, ..UsageConfig::default() };
            let recorder = Recorder::start(store.clone(), &config);
            let clone = recorder.clone();
            for i in 0..50 {
                let recorder = if i % 2 == 0 { &recorder } else { &clone };
                recorder.record(event(NOW_MS - i, "ana", &["hr"], "generated"));
            }
            recorder.flush();
            assert_eq!(store.events(0, i64::MAX).expect("events").len(), 50);
            assert_eq!(rollup_totals(&store, 0, NOW_MS / 1000 + DAY_SECS).requests, 50);
            assert_eq!(recorder.dropped(), 0);

            // Dropping every clone writes what is left.
            recorder.record(event(NOW_MS, "ben", &["it"], "no_answer"));
            drop((recorder, clone));
            assert!(wait_for(&store, 51), "the last event was not written when the recorder was dropped");
        });
    }

    #[test]
    fn recorder_writes_by_batch_size_and_by_interval() {
        on_both("recorder_writes_by_batch_size_and_by_interval", |database| {
            let store = open(database);
            let by_size = Recorder::start(
                store.clone(),
                &UsageConfig { flush_batch: 3, flush_interval_ms: 600_000, ..UsageConfig::default() },
            );
            for i in 0..3 {
                by_size.record(event(NOW_MS + i, "ana", &[], "generated"));
            }
            assert!(wait_for(&store, 3), "a full batch was not written");

            let by_time = Recorder::start(
                store.clone(),
                &UsageConfig { flush_batch: 1_000, flush_interval_ms: 50, ..UsageConfig::default() },
            );
            by_time.record(event(NOW_MS + 10, "ana", &[], "generated"));
            assert!(wait_for(&store, 4), "a waiting event was not written after the interval");
        });
    }

    #[test]
    fn a_disabled_recorder_records_nothing() {
        let recorder = Recorder::disabled();
        recorder.record(event(NOW_MS, "ana", &[], "generated"));
        recorder.flush();
        assert_eq!(recorder.dropped(), 0);
    }
}
