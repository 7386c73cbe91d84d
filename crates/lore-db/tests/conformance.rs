//! The database layer behaves the same on SQLite and PostgreSQL: every test runs on both
//! (PostgreSQL through the throwaway cluster of `lore_db::testing`, skipped with a message
//! when it is not installed and not required).

use lore_db::{Database, Db, Dialect, Location, Migration, Schema, Value, params};

/// Runs `check` on a fresh SQLite file and on a fresh PostgreSQL database.
fn on_both(test: &str, check: impl Fn(&Location)) {
    let dir = tempfile::tempdir().unwrap();
    check(&Location::Sqlite(dir.path().join("db.sqlite")));
    if let Some(postgres) = lore_db::testing::database(test) {
        check(&postgres);
    }
}

const NOTES_V1: Migration = Migration {
    version: 1,
    sqlite: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, score REAL, raw BLOB, at INTEGER)",
    postgres: "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT, score DOUBLE PRECISION, raw BYTEA, at BIGINT)",
};
const NOTES_V2: Migration = Migration {
    version: 2,
    sqlite: "ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'",
    postgres: "ALTER TABLE notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'",
};
const NOTES: Schema = Schema { name: "notes", migrations: &[NOTES_V1] };
const NOTES_NEXT: Schema = Schema { name: "notes", migrations: &[NOTES_V1, NOTES_V2] };

#[test]
fn values_round_trip_with_their_types() {
    on_both("values_round_trip_with_their_types", |location| {
        let db = Db::open(location, &NOTES).unwrap();
        db.execute(
            "INSERT INTO notes (id, body, score, raw, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![1, "café ?1 'quoted'", 0.25, vec![0u8, 255, 7], Some(-5i64)],
        )
        .unwrap();
        db.execute(
            "INSERT INTO notes (id, body, score, raw, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![2, None::<String>, None::<f64>, None::<Vec<u8>>, None::<i64>],
        )
        .unwrap();
        let rows =
            db.query("SELECT id, body, score, raw, at FROM notes WHERE id >= ?1 ORDER BY id", params![1]).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].get::<i64>(0).unwrap(), 1);
        assert_eq!(rows[0].get::<String>(1).unwrap(), "café ?1 'quoted'");
        assert_eq!(rows[0].get::<f64>(2).unwrap(), 0.25);
        assert_eq!(rows[0].get::<Vec<u8>>(3).unwrap(), vec![0, 255, 7]);
        assert_eq!(rows[0].get::<Option<i64>>(4).unwrap(), Some(-5));
        assert_eq!(rows[1].get::<Option<String>>(1).unwrap(), None);
        assert_eq!(rows[1].get::<Option<f64>>(2).unwrap(), None);
        let error = rows[1].get::<String>(1).unwrap_err().to_string();
        assert!(error.contains("column 1") && error.contains("Null"), "{error}");
        // Counts and sums come back as integers on both (PostgreSQL's SUM of BIGINT is
        // NUMERIC, hence the cast).
        let total = db.query_opt("SELECT COUNT(*), CAST(SUM(id) AS BIGINT) FROM notes", params![]).unwrap().unwrap();
        assert_eq!((total.get::<i64>(0).unwrap(), total.get::<i64>(1).unwrap()), (2, 3));
    });
}

#[test]
fn a_failed_transaction_leaves_nothing() {
    on_both("a_failed_transaction_leaves_nothing", |location| {
        let db = Db::open(location, &NOTES).unwrap();
        let result: lore_db::Result<()> = db.transaction(|tx| {
            tx.execute("INSERT INTO notes (id, body) VALUES (?1, ?2)", params![1, "kept?"])?;
            tx.execute("INSERT INTO notes (id, body) VALUES (?1, ?2)", params![1, "duplicate key"])?;
            Ok(())
        });
        assert!(result.is_err());
        assert!(db.query("SELECT id FROM notes", params![]).unwrap().is_empty());
        db.transaction(|tx| {
            tx.execute("INSERT INTO notes (id, body) VALUES (?1, ?2)", params![1, "one"])?;
            tx.execute("INSERT INTO notes (id, body) VALUES (?1, ?2)", params![2, "two"])
        })
        .unwrap();
        assert_eq!(db.query("SELECT id FROM notes", params![]).unwrap().len(), 2);
    });
}

#[test]
fn migrations_apply_once_in_order_even_when_processes_open_together() {
    on_both("migrations_apply_once_in_order_even_when_processes_open_together", |location| {
        let database = Database::open(location).unwrap();
        let openers: Vec<_> = (0..6)
            .map(|_| {
                let database = database.clone();
                std::thread::spawn(move || database.store(&NOTES).map(|_| ()))
            })
            .collect();
        for opener in openers {
            opener.join().unwrap().unwrap();
        }
        let db = database.store(&NOTES).unwrap();
        db.execute("INSERT INTO notes (id, body) VALUES (?1, ?2)", params![1, "before v2"]).unwrap();
        // A new version adds its column to the existing table and keeps the rows.
        let db = database.store(&NOTES_NEXT).unwrap();
        let row = db.query_opt("SELECT body, tag FROM notes", params![]).unwrap().unwrap();
        assert_eq!((row.get::<String>(0).unwrap(), row.get::<String>(1).unwrap()), ("before v2".into(), "none".into()));
        let versions: Vec<i64> = db
            .query("SELECT version FROM schema_migrations WHERE store = ?1 ORDER BY version", params!["notes"])
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        assert_eq!(versions, vec![1, 2]);
        // Opening again with the older schema changes nothing.
        database.store(&NOTES).unwrap();
        assert_eq!(db.query("SELECT tag FROM notes", params![]).unwrap().len(), 1);
    });
}

#[test]
fn wrong_types_and_unreachable_servers_are_named() {
    on_both("wrong_types_and_unreachable_servers_are_named", |location| {
        let db = Db::open(location, &NOTES).unwrap();
        let error = db.execute("INSERT INTO notes (id, body) VALUES (?1, ?2)", params!["one", "x"]).unwrap_err();
        if db.dialect() == Dialect::Postgres {
            assert!(error.to_string().contains("text given for a parameter of type int8"), "{error}");
        }
        assert!(matches!(Value::from(None::<u32>), Value::Null));
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let error = match Database::open(&Location::Postgres(format!("postgres://lore:secret@127.0.0.1:{port}/lore"))) {
        Err(error) => error.to_string(),
        Ok(_) => panic!("nothing listens on port {port}"),
    };
    assert!(error.contains(&format!("127.0.0.1:{port}/lore")) && !error.contains("secret"), "{error}");
    let error = Database::open(&Location::Postgres("mysql://nope".into())).err().unwrap().to_string();
    assert!(error.contains("invalid database.url"), "{error}");
}
