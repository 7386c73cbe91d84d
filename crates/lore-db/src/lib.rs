//! The application database behind one interface: SQLite in the embedded default (one file
//! beside the indexes), PostgreSQL in scale-out (`database.url`), where replicas and workers
//! share it.
//!
//! Stores write their SQL once, with numbered parameters in SQLite's spelling (`?1`, `?2`);
//! on PostgreSQL they become `$1`, `$2`. Where the two dialects differ (identity columns,
//! `FOR UPDATE SKIP LOCKED`), a store asks [`Db::dialect`]. Values cross as [`Value`]s (null,
//! integer, real, text, bytes), which covers every column Lore stores; times are integers
//! (Unix seconds) and JSON is text, the same on both.
//!
//! Each store brings a [`Schema`]: numbered migrations per dialect, applied in order when the
//! store opens and recorded in `schema_migrations`, one writer at a time (SQLite's write lock,
//! a PostgreSQL advisory lock), so processes opening the database together apply each once.

pub mod copy;
mod pg;
pub mod testing;
mod value;

use std::path::Path;
use std::sync::Mutex;

pub use value::{FromValue, Row, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL error: {}", with_cause(.0))]
    Postgres(#[from] postgres::Error),
    #[error("column {column}: {message}")]
    Decode { column: usize, message: String },
    #[error("database error: {0}")]
    Other(String),
}

/// The client's message with its cause (the server's error, or why a parameter was refused).
fn with_cause(error: &postgres::Error) -> String {
    match std::error::Error::source(error) {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which SQL a store must speak where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A FROM item named `alias` whose column `value` holds each text element of the JSON
    /// array `expr` (a text column or parameter holding e.g. `["hr","sales"]`): how the
    /// department scopes match a row's departments against the caller's.
    pub fn json_elements(self, expr: &str, alias: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each({expr}) AS {alias}"),
            Dialect::Postgres => {
                format!("json_array_elements_text(CAST(CAST({expr} AS TEXT) AS JSON)) AS {alias}(value)")
            }
        }
    }
}

/// One step of a store's schema, in both dialects.
pub struct Migration {
    pub version: i64,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// A store's tables: its name in `schema_migrations` and its migrations in version order.
pub struct Schema {
    pub name: &'static str,
    pub migrations: &'static [Migration],
}

/// Where the application database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection string (`postgres://user:password@host:port/database`).
    Postgres(String),
}

/// Parameters of a statement: `params![a, b]` turns each into a [`Value`].
#[macro_export]
macro_rules! params {
    () => { &[] as &[$crate::Value] };
    ($($value:expr),+ $(,)?) => { &[$($crate::Value::from($value)),+] as &[$crate::Value] };
}

/// The application database, opened once per process and shared by its stores: on
/// PostgreSQL they share one connection pool; on SQLite each store gets its own connection to
/// the file (SQLite serializes writers itself).
#[derive(Clone)]
pub struct Database {
    target: Target,
}

#[derive(Clone)]
enum Target {
    Sqlite(std::path::PathBuf),
    Postgres(std::sync::Arc<pg::Pool>),
}

impl Database {
    /// Opens the database; a PostgreSQL server is connected to once here, so a wrong address
    /// or password fails at start.
    pub fn open(location: &Location) -> Result<Database> {
        Ok(Database {
            target: match location {
                Location::Sqlite(path) => Target::Sqlite(path.clone()),
                Location::Postgres(url) => Target::Postgres(std::sync::Arc::new(pg::Pool::new(url)?)),
            },
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self.target {
            Target::Sqlite(_) => Dialect::Sqlite,
            Target::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The embedded database's file (`None` on PostgreSQL), for the rare read that must use
    /// SQLite directly: streaming a large scan without copying its rows.
    pub fn sqlite_file(&self) -> Option<&Path> {
        match &self.target {
            Target::Sqlite(path) => Some(path),
            Target::Postgres(_) => None,
        }
    }

    /// A store's handle, with `schema` brought up to date.
    pub fn store(&self, schema: &Schema) -> Result<Db> {
        let db = Db {
            backend: match &self.target {
                Target::Sqlite(path) => Backend::Sqlite(Mutex::new(open_sqlite(path)?)),
                Target::Postgres(pool) => Backend::Postgres(pool.clone()),
            },
        };
        db.migrate(schema)?;
        Ok(db)
    }
}

/// A store's connection to the application database.
pub struct Db {
    backend: Backend,
}

enum Backend {
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(std::sync::Arc<pg::Pool>),
}

impl Db {
    /// Opens the database at `location` for one store and brings `schema` up to date.
    pub fn open(location: &Location, schema: &Schema) -> Result<Db> {
        Database::open(location)?.store(schema)
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        self.single(|tx| tx.execute(sql, params))
    }

    /// Runs one query; returns every row.
    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        self.single(|tx| tx.query(sql, params))
    }

    /// One statement outside an explicit transaction (it is its own).
    fn single<R: Send>(&self, work: impl FnOnce(&mut Tx<'_>) -> Result<R> + Send) -> Result<R> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                work(&mut Tx { inner: TxInner::Sqlite(&conn) })
            }
            Backend::Postgres(pool) => pool.with_client(|client| work(&mut Tx { inner: TxInner::Postgres(client) })),
        }
    }

    /// The first row of a query, if any.
    pub fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Adds `column` (with its SQL `definition`) to `table` when the table lacks it: for
    /// columns that older embedded databases gained before migrations were recorded. The
    /// check and the change are one transaction, so openers racing each other add it once.
    pub fn add_column_if_missing(&self, table: &str, column: &str, definition: &str) -> Result<()> {
        self.transaction(|tx| {
            let missing = match tx.dialect() {
                Dialect::Sqlite => tx
                    .query(&format!("SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"), params![column])?
                    .is_empty(),
                Dialect::Postgres => tx
                    .query(
                        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() \
                         AND table_name = ?1 AND column_name = ?2",
                        params![table, column],
                    )?
                    .is_empty(),
            };
            if missing {
                tx.batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {definition}"))?;
            }
            Ok(())
        })
    }

    /// Runs `work` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    /// On SQLite the transaction takes the write lock from the start (`BEGIN IMMEDIATE`).
    pub fn transaction<R: Send>(&self, work: impl FnOnce(&mut Tx<'_>) -> Result<R> + Send) -> Result<R> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let mut handle = Tx { inner: TxInner::Sqlite(&tx) };
                let result = work(&mut handle)?;
                tx.commit()?;
                Ok(result)
            }
            Backend::Postgres(pool) => pool.with_client(|client| {
                let mut tx = client.transaction()?;
                let mut handle = Tx { inner: TxInner::Postgres(&mut tx) };
                let result = work(&mut handle)?;
                tx.commit()?;
                Ok(result)
            }),
        }
    }

    fn migrate(&self, schema: &Schema) -> Result<()> {
        let dialect = self.dialect();
        self.transaction(|tx| {
            let table = match dialect {
                Dialect::Sqlite => {
                    "CREATE TABLE IF NOT EXISTS schema_migrations (store TEXT NOT NULL, version INTEGER NOT NULL, \
                     applied_at INTEGER NOT NULL, PRIMARY KEY (store, version))"
                }
                Dialect::Postgres => {
                    // One migrator at a time across processes; released at commit.
                    tx.execute("SELECT pg_advisory_xact_lock(7432)", &[])?;
                    "CREATE TABLE IF NOT EXISTS schema_migrations (store TEXT NOT NULL, version BIGINT NOT NULL, \
                     applied_at BIGINT NOT NULL, PRIMARY KEY (store, version))"
                }
            };
            tx.batch(table)?;
            let current: i64 = tx
                .query(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations WHERE store = ?1",
                    params![schema.name],
                )?
                .first()
                .map(|row| row.get(0))
                .transpose()?
                .unwrap_or(0);
            for migration in schema.migrations.iter().filter(|m| m.version > current) {
                tx.batch(match dialect {
                    Dialect::Sqlite => migration.sqlite,
                    Dialect::Postgres => migration.postgres,
                })?;
                tx.execute(
                    "INSERT INTO schema_migrations (store, version, applied_at) VALUES (?1, ?2, ?3)",
                    params![schema.name, migration.version, now()],
                )?;
            }
            Ok(())
        })
    }
}

/// A transaction (see [`Db::transaction`]).
pub struct Tx<'a> {
    inner: TxInner<'a>,
}

enum TxInner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a mut dyn pg::Exec),
}

impl Tx<'_> {
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            TxInner::Sqlite(_) => Dialect::Sqlite,
            TxInner::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn execute(&mut self, sql: &str, params: &[Value]) -> Result<usize> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => Ok(tx.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params.iter()))?),
            TxInner::Postgres(tx) => Ok(tx.execute(&pg::translate(sql), &pg::params(params))? as usize),
        }
    }

    pub fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => {
                let mut stmt = tx.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..columns).map(|i| row.get::<_, Value>(i)).collect::<rusqlite::Result<_>>()?;
                    out.push(Row::new(values));
                }
                Ok(out)
            }
            TxInner::Postgres(tx) => {
                let rows = tx.query(&pg::translate(sql), &pg::params(params))?;
                rows.iter().map(pg::row).collect()
            }
        }
    }

    /// Statements without parameters, separated by `;` (schema changes).
    fn batch(&mut self, sql: &str) -> Result<()> {
        match &mut self.inner {
            TxInner::Sqlite(tx) => Ok(tx.execute_batch(sql)?),
            TxInner::Postgres(tx) => Ok(tx.batch_execute(sql)?),
        }
    }
}

/// Opens the embedded database file: WAL, so readers and the one writer at a time proceed
/// together across threads and processes.
pub fn open_sqlite(path: &Path) -> Result<rusqlite::Connection> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::Other(format!("cannot create {}: {e}", parent.display())))?;
    }
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Statements are prepared once per connection and reused.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
