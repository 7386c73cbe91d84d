//! A throwaway PostgreSQL for tests. The first test of a test binary that asks starts one
//! cluster: `initdb` in a fresh temporary folder, then `postgres` on a free loopback port,
//! as the unprivileged `nobody` when the tests run as root (PostgreSQL refuses root). Each
//! test gets its own database in it. A watchdog shell holds the cluster: when the test
//! process ends, however it ends, its pipe closes and the watchdog stops the server and
//! removes the folder.
//!
//! The binaries come from `LORE_POSTGRES_BIN`, else the newest `/usr/lib/postgresql/*/bin`
//! (Debian's `postgresql` package), else `initdb` on the `PATH`. Without them a test is
//! skipped with a message, unless `LORE_REQUIRE_POSTGRES=1` (CI), where that is a failure.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Location;

struct Cluster {
    port: u16,
    /// Its stdin is the pipe whose end stops the cluster.
    _watchdog: Child,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// Runs `check` on a fresh SQLite file, then on a fresh PostgreSQL database (skipped with a
/// message when PostgreSQL is not installed and not required): a store's conformance tests.
pub fn on_both(test: &str, check: impl Fn(&crate::Database)) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    check(&crate::Database::open(&Location::Sqlite(dir.path().join("db.sqlite"))).expect("open SQLite"));
    if let Some(postgres) = database(test) {
        check(&crate::Database::open(&postgres).expect("open the test PostgreSQL"));
    }
}

/// A fresh, empty database for `test`, or `None` (with a message) when PostgreSQL is not
/// installed and not required.
pub fn database(test: &str) -> Option<Location> {
    let cluster = CLUSTER.get_or_init(start).as_ref();
    let Some(cluster) = cluster else {
        eprintln!("skipped {test}: PostgreSQL is not installed (apt-get install postgresql, or set LORE_POSTGRES_BIN)");
        return None;
    };
    let name = format!("t{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
    let admin = format!("postgres://lore@127.0.0.1:{}/postgres", cluster.port);
    crate::pg::blocking(|| {
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).expect("connect to the test cluster");
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
    });
    Some(Location::Postgres(format!("postgres://lore@127.0.0.1:{}/{name}", cluster.port)))
}

fn required() -> bool {
    std::env::var("LORE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LORE_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| dir.join("initdb").exists()))
        .and_then(|dir| std::fs::canonicalize(dir.join("initdb")).ok())
        .and_then(|initdb| initdb.parent().map(PathBuf::from))
}

const WATCHDOG: &str = r#"
set -u
bin="$1"; port="$2"
dir=$(mktemp -d /tmp/lore-pg.XXXXXX) || exit 1
pg=
trap '[ -n "$pg" ] && kill -INT "$pg" 2>/dev/null && wait "$pg"; rm -rf "$dir"' EXIT
if ! "$bin/initdb" -D "$dir/data" -A trust -U lore -E UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
  cat "$dir/initdb.log" >&2; exit 1
fi
"$bin/postgres" -D "$dir/data" -p "$port" -k "$dir" -c listen_addresses=127.0.0.1 -c fsync=off \
  -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 >"$dir/server.log" 2>&1 &
pg=$!
for _ in $(seq 1 200); do
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
  kill -0 "$pg" 2>/dev/null || break
  sleep 0.05
done
if ! "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  cat "$dir/server.log" >&2; exit 1
fi
echo ready
cat >/dev/null
"#;

fn start() -> Option<Cluster> {
    let Some(bin) = binaries() else {
        assert!(
            !required(),
            "LORE_REQUIRE_POSTGRES=1 but no PostgreSQL binaries were found: install Debian's postgresql package \
             or set LORE_POSTGRES_BIN to the folder holding initdb"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let args = [bin.to_string_lossy().into_owned(), port.to_string()];
    // PostgreSQL will not run as root.
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", "bash", "-c", WATCHDOG, "watchdog"]);
        c
    } else {
        let mut c = Command::new("bash");
        c.args(["-c", WATCHDOG, "watchdog"]);
        c
    };
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the PostgreSQL watchdog");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("read the watchdog");
    if line.trim() != "ready" {
        let mut log = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut log);
        panic!("the test PostgreSQL cluster (binaries in {}) did not start:\n{log}", bin.display());
    }
    Some(Cluster { port, _watchdog: child })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}
