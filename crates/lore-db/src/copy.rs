//! Copies every table of an embedded SQLite database into a PostgreSQL database whose stores
//! have been opened (so their tables exist): the database half of `lore migrate`. Rows keep
//! their values, identity columns included (the sequences are then moved past them), and the
//! copy is verified by counting both sides.
//!
//! A target table that already holds the source's rows (copied by an earlier run that stopped
//! half way) is left as it is, so running the copy again finishes it. A target table whose
//! rows all have keys the source also has (settings rows its migration seeded, such as a
//! schema version or a retention cutoff) takes the source's rows instead. A target table
//! holding rows of other keys is refused, so nothing is merged.

use std::collections::BTreeSet;

use crate::{Database, Db, Dialect, Error, Result, Schema, Value};

/// Rows read from the source per page.
const PAGE: i64 = 2_000;
/// PostgreSQL takes at most 65,535 parameters per statement.
const MAX_PARAMS: usize = 30_000;

/// A handle without a schema of its own.
const RAW: Schema = Schema { name: "copy", migrations: &[] };

#[derive(Debug, Default)]
pub struct CopyReport {
    /// Each copied table with its row count (equal on both sides).
    pub tables: Vec<(String, usize)>,
    /// Tables of the source with no counterpart in the target (SQLite's internal tables
    /// aside): nothing reads them there.
    pub skipped: Vec<String>,
    /// Tables whose rows the target already held, equal to the source's.
    pub already_there: Vec<String>,
}

/// Up to this many rows, a non-empty target table is compared with the source row by row;
/// above, by count (an earlier run of the copy wrote it in one transaction).
const COMPARE_ROWS: i64 = 10_000;

/// Copies `source` (SQLite) into `target` (PostgreSQL). Refuses a target table that holds
/// rows other than the source's; a table whose rows refer to another table's is copied after
/// it (a failed table is rolled back and retried after the others).
pub fn copy_sqlite_to_postgres(source: &Database, target: &Database) -> Result<CopyReport> {
    if source.dialect() != Dialect::Sqlite || target.dialect() != Dialect::Postgres {
        return Err(Error::Other("the copy goes from an SQLite file to PostgreSQL".into()));
    }
    let (src, dst) = (source.store(&RAW)?, target.store(&RAW)?);
    let source_tables: Vec<String> = src
        .query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_>>()?;
    let target_tables: Vec<String> = dst
        .query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() \
             AND table_type = 'BASE TABLE'",
            &[],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_>>()?;
    let mut report = CopyReport::default();
    let mut pending = Vec::new();
    for table in source_tables {
        if table == "schema_migrations" {
            continue;
        }
        if !target_tables.contains(&table) {
            report.skipped.push(table);
            continue;
        }
        let rows = count(&dst, &table)?;
        if rows == 0 {
            pending.push((table, false));
        } else if same_rows(&src, &dst, &table, rows)? {
            report.already_there.push(table);
        } else if keys_covered(&src, &dst, &table)? {
            pending.push((table, true));
        } else {
            return Err(Error::Other(format!(
                "table {table} of the target database already holds {rows} row(s) that are not this source's: \
                 migrate into an empty database"
            )));
        }
    }
    // Tables in dependency order without reading the constraints: a table whose foreign keys
    // point at a table not copied yet fails, is rolled back, and goes again after the others.
    while !pending.is_empty() {
        let (mut failed, mut errors, mut copied) = (Vec::new(), Vec::new(), 0);
        for (table, replace) in std::mem::take(&mut pending) {
            match copy_table(&src, &dst, &table, replace) {
                Ok(rows) => {
                    report.tables.push((table, rows));
                    copied += 1;
                }
                Err(error) => {
                    errors.push(format!("{table}: {error}"));
                    failed.push((table, replace));
                }
            }
        }
        if copied == 0 {
            return Err(Error::Other(format!("cannot copy {}", errors.join("; "))));
        }
        pending = failed;
    }
    for (table, rows) in &report.tables {
        let (source_rows, target_rows) = (count(&src, table)?, count(&dst, table)?);
        if source_rows != target_rows || target_rows != *rows as i64 {
            return Err(Error::Other(format!(
                "table {table}: {source_rows} row(s) in the source, {target_rows} in the target after the copy"
            )));
        }
    }
    report.tables.sort();
    Ok(report)
}

/// Whether `dst`'s `rows` rows of `table` are `src`'s (compared by count above
/// [`COMPARE_ROWS`]).
fn same_rows(src: &Db, dst: &Db, table: &str, rows: i64) -> Result<bool> {
    if count(src, table)? != rows {
        return Ok(false);
    }
    if rows > COMPARE_ROWS {
        return Ok(true);
    }
    let columns = target_columns(src, dst, table)?;
    let (mut source, mut target) = (rendered(src, table, &columns, true)?, rendered(dst, table, &columns, false)?);
    source.sort();
    target.sort();
    Ok(source == target)
}

/// Whether every row of `dst`'s `table` has a primary key that some row of `src` has.
fn keys_covered(src: &Db, dst: &Db, table: &str) -> Result<bool> {
    let key: Vec<String> = dst
        .query(
            "SELECT k.column_name FROM information_schema.table_constraints c \
             JOIN information_schema.key_column_usage k ON k.constraint_name = c.constraint_name \
             AND k.table_schema = c.table_schema AND k.table_name = c.table_name \
             WHERE c.table_schema = current_schema() AND c.table_name = ?1 AND c.constraint_type = 'PRIMARY KEY' \
             ORDER BY k.ordinal_position",
            &[Value::from(table)],
        )?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_>>()?;
    if key.is_empty() {
        return Ok(false);
    }
    let columns: Vec<(String, String, bool)> =
        target_columns(src, dst, table)?.into_iter().filter(|(name, _, _)| key.contains(name)).collect();
    let source: BTreeSet<String> = rendered(src, table, &columns, true)?.into_iter().collect();
    Ok(rendered(dst, table, &columns, false)?.iter().all(|row| source.contains(row)))
}

/// Each row of `table` as one comparable string of `columns`' values, converted to the
/// target's types first when `convert_types` (the source's rows).
fn rendered(db: &Db, table: &str, columns: &[(String, String, bool)], convert_types: bool) -> Result<Vec<String>> {
    let list = columns.iter().map(|(name, _, _)| name.as_str()).collect::<Vec<_>>().join(", ");
    db.query(&format!("SELECT {list} FROM {table}"), &[])?
        .iter()
        .map(|row| {
            let values = columns
                .iter()
                .enumerate()
                .map(|(i, (_, data_type, _))| {
                    let value = row.get::<Value>(i)?;
                    let value = if convert_types { convert(value, data_type).map_err(Error::Other)? } else { value };
                    Ok(format!("{value:?}"))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(values.join("\u{1f}"))
        })
        .collect()
}

/// The target's columns of `table` that the source also has: name, type, identity.
fn target_columns(src: &Db, dst: &Db, table: &str) -> Result<Vec<(String, String, bool)>> {
    let columns: Vec<(String, String, bool)> = dst
        .query(
            "SELECT column_name, data_type, is_identity FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
            &[Value::from(table)],
        )?
        .iter()
        .map(|row| Ok((row.get(0)?, row.get(1)?, row.get::<String>(2)? == "YES")))
        .collect::<Result<_>>()?;
    let source_columns: Vec<String> = src
        .query(&format!("SELECT name FROM pragma_table_info('{table}')"), &[])?
        .iter()
        .map(|row| row.get(0))
        .collect::<Result<_>>()?;
    Ok(columns.into_iter().filter(|(name, _, _)| source_columns.contains(name)).collect())
}

fn count(db: &Db, table: &str) -> Result<i64> {
    db.query(&format!("SELECT COUNT(*) FROM {table}"), &[])?.first().map_or(Ok(0), |row| row.get(0))
}

/// Copies one table in one target transaction, after emptying it when `replace`; returns its
/// row count.
fn copy_table(src: &Db, dst: &Db, table: &str, replace: bool) -> Result<usize> {
    // The target's columns, with their types (values are converted to them) and whether they
    // are identity columns.
    let columns = target_columns(src, dst, table)?;
    if columns.is_empty() {
        return Ok(0);
    }
    let names: Vec<&str> = columns.iter().map(|(name, _, _)| name.as_str()).collect();
    let identity: Vec<&str> = columns.iter().filter(|(_, _, id)| *id).map(|(name, _, _)| name.as_str()).collect();
    let list = names.join(", ");
    let per_statement = (MAX_PARAMS / names.len()).clamp(1, 500);
    let overriding = if identity.is_empty() { "" } else { " OVERRIDING SYSTEM VALUE" };
    // Pages in rowid order, or in primary-key order for a table without rowids.
    let without_rowid = src
        .query("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1", &[Value::from(table)])?
        .first()
        .map(|row| row.get::<String>(0))
        .transpose()?
        .is_some_and(|sql| sql.to_uppercase().contains("WITHOUT ROWID"));
    let order: String = if without_rowid {
        let key: Vec<String> = src
            .query(&format!("SELECT name FROM pragma_table_info('{table}') WHERE pk > 0 ORDER BY pk"), &[])?
            .iter()
            .map(|row| row.get(0))
            .collect::<Result<_>>()?;
        key.join(", ")
    } else {
        "rowid".into()
    };
    dst.transaction(|tx| {
        if replace {
            tx.execute(&format!("DELETE FROM {table}"), &[])?;
        }
        let mut copied = 0;
        let mut after: i64 = i64::MIN;
        let mut offset: i64 = 0;
        loop {
            // Keyset pages in rowid order (each page one indexed read of the source); a table
            // without rowids pages by offset in key order.
            let rows = if without_rowid {
                src.query(
                    &format!("SELECT 0, {list} FROM {table} ORDER BY {order} LIMIT ?1 OFFSET ?2"),
                    &[Value::Int(PAGE), Value::Int(offset)],
                )?
            } else {
                src.query(
                    &format!("SELECT rowid, {list} FROM {table} WHERE rowid > ?1 ORDER BY {order} LIMIT ?2"),
                    &[Value::Int(after), Value::Int(PAGE)],
                )?
            };
            let Some(last) = rows.last() else { break };
            after = last.get(0)?;
            offset += rows.len() as i64;
            for batch in rows.chunks(per_statement) {
                let mut values = Vec::with_capacity(batch.len() * names.len());
                let mut tuples = Vec::with_capacity(batch.len());
                for row in batch {
                    let start = values.len();
                    for (i, (name, data_type, _)) in columns.iter().enumerate() {
                        let value = row.get::<Value>(i + 1)?;
                        values.push(convert(value, data_type).map_err(|message| {
                            Error::Other(format!("{table}.{name}: {message}"))
                        })?);
                    }
                    let placeholders: Vec<String> = (start..values.len()).map(|n| format!("?{}", n + 1)).collect();
                    tuples.push(format!("({})", placeholders.join(", ")));
                }
                tx.execute(
                    &format!("INSERT INTO {table} ({list}){overriding} VALUES {}", tuples.join(", ")),
                    &values,
                )?;
                copied += batch.len();
            }
        }
        // Identity columns continue after the copied values.
        for column in &identity {
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), COALESCE(MAX({column}), 0) + 1, false) \
                     FROM {table}"
                ),
                &[],
            )?;
        }
        Ok(copied)
    })
}

/// A source value as the target column's type holds it. SQLite keeps what it was given, so
/// an integer in a `REAL` column or a number in a `TEXT` one is possible there.
fn convert(value: Value, data_type: &str) -> std::result::Result<Value, String> {
    Ok(match (value, data_type) {
        (Value::Null, _) => Value::Null,
        (Value::Int(i), "text" | "character varying") => Value::Text(i.to_string()),
        (Value::Real(r), "text" | "character varying") => Value::Text(r.to_string()),
        (Value::Real(r), "bigint" | "integer" | "smallint") if r.fract() == 0.0 => Value::Int(r as i64),
        (Value::Int(i), "double precision" | "real") => Value::Real(i as f64),
        (Value::Text(t), "bigint" | "integer" | "smallint") => {
            Value::Int(t.trim().parse().map_err(|_| format!("{t:?} is not an integer"))?)
        }
        (Value::Text(t), "double precision" | "real") => {
            Value::Real(t.trim().parse().map_err(|_| format!("{t:?} is not a number"))?)
        }
        (Value::Text(t), "bytea") => Value::Bytes(t.into_bytes()),
        (value, _) => value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Location, Migration, params};

    const SCHEMA: Schema = Schema {
        name: "copy_test",
        migrations: &[Migration {
            version: 1,
            // `a_children` sorts first and refers to `z_parents`: the copy must order them.
            sqlite: "CREATE TABLE z_parents (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);
                     CREATE TABLE a_children (id TEXT PRIMARY KEY, parent INTEGER NOT NULL REFERENCES z_parents(seq),
                         score REAL, data BLOB);
                     CREATE TABLE settings (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
                     INSERT INTO settings VALUES ('cutoff', 0);",
            postgres:
                "CREATE TABLE z_parents (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name TEXT NOT NULL);
                       CREATE TABLE a_children (id TEXT PRIMARY KEY, parent BIGINT NOT NULL REFERENCES z_parents(seq),
                           score DOUBLE PRECISION, data BYTEA);
                       CREATE TABLE settings (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
                       INSERT INTO settings VALUES ('cutoff', 0);",
        }],
    };

    #[test]
    fn tables_are_copied_in_dependency_order_with_their_identities() {
        let Some(postgres) = crate::testing::database("tables_are_copied_in_dependency_order_with_their_identities")
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let source = Database::open(&Location::Sqlite(dir.path().join("db.sqlite"))).unwrap();
        let src = source.store(&SCHEMA).unwrap();
        src.execute("CREATE TABLE only_here (x INTEGER)", &[]).unwrap();
        // A seeded settings row the source has changed since.
        src.execute("UPDATE settings SET value = 5", &[]).unwrap();
        for n in 0..2_500_i64 {
            src.execute("INSERT INTO z_parents (name) VALUES (?1)", params![format!("parent {n}")]).unwrap();
        }
        // Gaps in the identity survive the copy.
        src.execute("DELETE FROM z_parents WHERE seq % 7 = 0", &[]).unwrap();
        for n in 1..=2_500_i64 {
            if n % 7 != 0 {
                // An integer in the REAL column, as SQLite allows.
                let score = if n % 2 == 0 { Value::Int(n) } else { Value::Real(n as f64 / 3.0) };
                src.execute(
                    "INSERT INTO a_children (id, parent, score, data) VALUES (?1, ?2, ?3, ?4)",
                    &[Value::from(format!("c{n}")), Value::Int(n), score, Value::Bytes(vec![n as u8; 3])],
                )
                .unwrap();
            }
        }
        let target = Database::open(&postgres).unwrap();
        let dst = target.store(&SCHEMA).unwrap();
        let report = copy_sqlite_to_postgres(&source, &target).unwrap();
        let tables =
            vec![("a_children".to_owned(), 2_143), ("settings".to_owned(), 1), ("z_parents".to_owned(), 2_143)];
        assert_eq!(report.tables, tables);
        let cutoff: i64 = dst.query("SELECT value FROM settings", &[]).unwrap()[0].get(0).unwrap();
        assert_eq!(cutoff, 5, "the source's setting replaced the seeded one");
        assert_eq!(report.skipped, vec!["only_here".to_owned()]);
        let read = |db: &Db| {
            db.query("SELECT c.id, c.parent, c.score, c.data, p.name FROM a_children c JOIN z_parents p ON p.seq = c.parent ORDER BY c.id", &[])
                .unwrap()
                .iter()
                .map(|r| {
                    let score: f64 = r.get(2).unwrap();
                    (r.get::<String>(0).unwrap(), r.get::<i64>(1).unwrap(), score, r.get::<Vec<u8>>(3).unwrap(), r.get::<String>(4).unwrap())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(read(&src), read(&dst));
        // The identity continues after the copied values.
        let next: i64 =
            dst.query("INSERT INTO z_parents (name) VALUES ('new') RETURNING seq", &[]).unwrap()[0].get(0).unwrap();
        assert_eq!(next, 2_501);
        // Copying again finds everything there and changes nothing; a target holding other
        // rows is refused, naming the table.
        dst.execute("DELETE FROM z_parents WHERE name = 'new'", &[]).unwrap();
        let again = copy_sqlite_to_postgres(&source, &target).unwrap();
        assert!(again.tables.is_empty(), "{:?}", again.tables);
        assert_eq!(again.already_there, vec!["a_children".to_owned(), "settings".to_owned(), "z_parents".to_owned()]);
        dst.execute("INSERT INTO a_children (id, parent) VALUES ('not-from-the-source', 1)", &[]).unwrap();
        let error = copy_sqlite_to_postgres(&source, &target).unwrap_err().to_string();
        assert!(error.contains("not this source's") && error.contains("a_children"), "{error}");
    }
}
