//! The PostgreSQL side: a small connection pool, parameter and row conversion, and running
//! the synchronous client from any thread (inside the server's runtime or not).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls};

use crate::{Error, Result, Row, Value};

/// Connections kept open at most; callers beyond wait for one to come back.
const MAX_CONNECTIONS: usize = 16;

pub(crate) struct Pool {
    config: postgres::Config,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

impl Pool {
    /// Checks the connection string and opens a first connection, so a wrong address or
    /// password fails at start, naming the server.
    pub(crate) fn new(url: &str) -> Result<Pool> {
        let mut config: postgres::Config =
            url.parse().map_err(|e| Error::Other(format!("invalid database.url (a PostgreSQL URL): {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        let first = blocking(|| config.connect(NoTls))
            .map_err(|e| Error::Other(format!("cannot connect to PostgreSQL at {}: {e}", describe(&config))))?;
        Ok(Pool { config, state: Mutex::new(PoolState { idle: vec![first], open: 1 }), returned: Condvar::new() })
    }

    /// Runs `work` with a connection of the pool, off the async runtime's worker threads.
    pub(crate) fn with_client<R: Send>(&self, work: impl FnOnce(&mut Client) -> Result<R> + Send) -> Result<R> {
        blocking(|| {
            let mut client = self.take()?;
            let result = work(&mut client);
            self.give_back(client);
            result
        })
    }

    fn take(&self) -> Result<Client> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(client) = state.idle.pop() {
                return Ok(client);
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                drop(state);
                return self.config.connect(NoTls).map_err(|e| {
                    self.state.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                    self.returned.notify_one();
                    Error::Postgres(e)
                });
            }
            state = self.returned.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A connection that broke (server restart, network) is dropped; the next caller opens
    /// a new one.
    fn give_back(&self, client: Client) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(client);
        }
        self.returned.notify_one();
    }
}

impl Drop for Pool {
    /// Closing a connection blocks on its runtime, which must not happen on a thread driving
    /// another runtime (a pool is often dropped inside async code).
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state.get_mut().unwrap_or_else(|p| p.into_inner()).idle);
        if !idle.is_empty() {
            blocking(move || drop(idle));
        }
    }
}

/// Host, port and database of a connection string, without the password.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("(default database)"))
}

/// Runs blocking database work: the synchronous client drives its own small runtime, which
/// must not run on a thread of another runtime's executor.
pub(crate) fn blocking<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        // A single-threaded runtime (tests) cannot lend its thread: use another one.
        Ok(_) => std::thread::scope(|s| s.spawn(work).join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))),
        Err(_) => work(),
    }
}

/// What a transaction or a bare connection can run.
pub(crate) trait Exec {
    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error>;
    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>, postgres::Error>;
    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error>;
}

impl Exec for postgres::Transaction<'_> {
    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error> {
        postgres::Transaction::execute(self, sql, params)
    }
    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>, postgres::Error> {
        postgres::Transaction::query(self, sql, params)
    }
    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        postgres::Transaction::batch_execute(self, sql)
    }
}

impl Exec for Client {
    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error> {
        Client::execute(self, sql, params)
    }
    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<postgres::Row>, postgres::Error> {
        Client::query(self, sql, params)
    }
    fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        Client::batch_execute(self, sql)
    }
}

/// SQLite's numbered parameters (`?1`) in PostgreSQL's spelling (`$1`); quoted text and
/// identifiers are left alone.
pub(crate) fn translate(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) => {
                out.push('$');
                continue;
            }
            None => {}
        }
        out.push(c);
    }
    out
}

pub(crate) fn params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a parameter of type {ty}").into()),
            },
            Value::Real(r) => match *ty {
                Type::FLOAT8 => r.to_sql(ty, out),
                Type::FLOAT4 => (*r as f32).to_sql(ty, out),
                _ => Err(format!("a real number given for a parameter of type {ty}").into()),
            },
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Value::Text(_) => Err(format!("text given for a parameter of type {ty}").into()),
            Value::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            Value::Bytes(_) => Err(format!("bytes given for a parameter of type {ty}").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A result row as [`Value`]s; a column of a type Lore does not store is an error naming it.
pub(crate) fn row(row: &postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| Value::Int(v.into())),
            Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(|v| Value::Int(v.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row.try_get::<_, Option<f32>>(i)?.map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(Value::Bytes),
            ref other => {
                return Err(Error::Decode {
                    column: i,
                    message: format!("column {:?} has type {other}, which Lore does not read (cast it)", column.name()),
                });
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row::new(values))
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn numbered_parameters_become_dollars_outside_quotes() {
        assert_eq!(translate("SELECT a FROM t WHERE b = ?1 AND c = ?12"), "SELECT a FROM t WHERE b = $1 AND c = $12");
        assert_eq!(translate("SELECT '?1', \"?2\" WHERE x = ?3"), "SELECT '?1', \"?2\" WHERE x = $3");
        assert_eq!(translate("SELECT 'it''s ?1' WHERE x = ?2"), "SELECT 'it''s ?1' WHERE x = $2");
    }
}
