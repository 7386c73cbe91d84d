//! Scale-out on real engines: two `lore serve --role api` and two `lore serve --role worker`
//! processes on loopback sharing a PostgreSQL (a throwaway cluster) and a Qdrant server
//! (`QDRANT_URL`; skipped with a message without it, or without PostgreSQL).
//!
//! An upload through replica A is searchable through B; a worker killed with SIGKILL mid-job
//! has its job completed by the other, with no duplicate chunk; random callers see only what
//! their groups may read through either replica; a replica killed under load leaves the other
//! serving every request it accepted.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::assert_success;
use crate::client::{call, upload, wait_for_job};

struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared engines: a config file naming the PostgreSQL database and the Qdrant collection.
struct Cluster {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    data: std::path::PathBuf,
    qdrant: String,
    collection: String,
}

impl Cluster {
    fn lore(&self, args: &[&str]) -> std::process::Output {
        command().arg("--config").arg(&self.config).args(args).output().expect("run lore")
    }

    fn serve(&self, role: &str) -> Process {
        let mut command = command();
        command.arg("--config").arg(&self.config).args(["serve", "--bind", "127.0.0.1:0", "--role", role]);
        Process::spawn(command)
    }

    fn key(&self, name: &str, role: &str, groups: &[&str]) -> String {
        let groups = groups.join(",");
        let mut args = vec!["keys", "create", "--name", name, "--role", role, "--user", name];
        if !groups.is_empty() {
            args.extend(["--groups", &groups]);
        }
        let output = self.lore(&args);
        assert_success(&output);
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

/// `lore` with only its configuration file choosing the engines (`QDRANT_URL` names the
/// server to these tests, not to the processes they start).
fn command() -> Command {
    crate::lore_command()
}

/// `lore` on an embedded data folder.
fn embedded_lore(folder: &std::path::Path, args: &[&str]) -> std::process::Output {
    command().arg("--data-dir").arg(folder).args(args).output().expect("run lore")
}

fn cluster(test: &str) -> Option<Cluster> {
    let Some(qdrant) = lore_core::env::var(lore_core::env::QDRANT_URL) else {
        eprintln!("SKIP {test}: set QDRANT_URL (e.g. http://127.0.0.1:6334) to run against a Qdrant server");
        return None;
    };
    let Some(lore_db::Location::Postgres(database)) = lore_db::testing::database(test) else { return None };
    let dir = tempfile::tempdir().unwrap();
    // One data folder for every process: in scale-out it holds only the staged uploads (a
    // volume the API replicas and the workers share).
    let data = dir.path().join("shared");
    // One collection per test: the tests of this binary run at the same time.
    let collection = format!("lore_{}_{}", test.split('_').next().unwrap_or("test"), std::process::id());
    let config = dir.path().join("lore.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data:?}\n\n[database]\nurl = {database:?}\n\n[vector_store]\nkind = \"qdrant\"\nurl = {qdrant:?}\n\
             collection = {collection:?}\n\n[ingest]\njob_lease_secs = 3\n\n[ingest.parser]\nprogram = {:?}\n",
            env!("CARGO_BIN_EXE_lore")
        ),
    )
    .unwrap();
    Some(Cluster { _dir: dir, config, data, qdrant, collection })
}

async fn search(addr: SocketAddr, key: &str, query: &str) -> (u16, Value) {
    call(addr, "POST", "/v1/search", Some(key), Some(json!({ "query": query, "limit": 20 }))).await
}

fn paths(body: &Value) -> Vec<String> {
    body["results"].as_array().map_or_else(Vec::new, |results| {
        results.iter().map(|r| r["document"]["path"].as_str().unwrap().to_owned()).collect()
    })
}

const GROUPS: [&str; 4] = ["hr", "sales", "eng", "legal"];
const TOPICS: [&str; 6] =
    ["parental leave", "travel expenses", "laptop refresh", "sales commission", "on-call rota", "contract review"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_api_replicas_and_two_workers_share_postgresql_and_qdrant() {
    let Some(cluster) = cluster("two_api_replicas_and_two_workers_share_postgresql_and_qdrant") else { return };
    let admin = cluster.key("admin", "admin", &[]);
    // Reads everything the test uploads (an admin key reads only what its groups may).
    let reader = cluster.key("reader", "employee", &GROUPS);
    assert_success(&cluster.lore(&["collections", "create", "policies", "--default-acl", "group:hr"]));
    let (a, b) = (cluster.serve("api"), cluster.serve("api"));
    let workers = vec![cluster.serve("worker"), cluster.serve("worker")];
    let mut workers: Vec<Option<Process>> = workers.into_iter().map(Some).collect();

    // A worker serves its health checks and nothing else.
    let worker_addr = workers[0].as_ref().unwrap().addr;
    assert_eq!(call(worker_addr, "GET", "/healthz", None, None).await.0, 200);
    assert_eq!(call(worker_addr, "POST", "/v1/search", Some(&admin), Some(json!({"query": "x"}))).await.0, 404);

    // Documents with random ACLs, uploaded half through A and half through B; the workers
    // index them.
    let mut rng = StdRng::seed_from_u64(18);
    let mut acls: Vec<(String, Vec<&str>)> = Vec::new();
    let mut jobs = Vec::new();
    for (n, topic) in TOPICS.iter().enumerate() {
        let acl: Vec<&str> = GROUPS.iter().copied().filter(|_| rng.random_bool(0.4)).collect();
        let acl = if acl.is_empty() { vec![GROUPS[n % GROUPS.len()]] } else { acl };
        let principals: Vec<String> = acl.iter().map(|g| format!("group:{g}")).collect();
        let name = format!("{}.md", topic.replace(' ', "-"));
        let text =
            format!("# {topic}\n\nThe {topic} policy: every request about {topic} goes to the team lead first.\n");
        let via = if n % 2 == 0 { a.addr } else { b.addr };
        let (status, accepted) =
            upload(via, &admin, "policies", &name, text.into_bytes(), &[("acl", &principals.join(","))]).await;
        assert_eq!(status, 202, "{accepted}");
        jobs.push(accepted["job"]["id"].as_str().unwrap().to_owned());
        acls.push((name, acl));
    }
    for job in &jobs {
        let done = wait_for_job(b.addr, &admin, job).await;
        assert_eq!(done["state"], "indexed", "{done}");
    }
    // Uploaded through A (the first), found through B.
    let (_, found) = search(b.addr, &reader, "parental leave policy").await;
    assert_eq!(paths(&found).first().map(String::as_str), Some("parental-leave.md"), "{found}");

    // Random callers see only what their groups may read, through either replica, and both
    // replicas give the same answer.
    let mut callers = Vec::new();
    for n in 0..5 {
        let groups: Vec<&str> = GROUPS.iter().copied().filter(|_| rng.random_bool(0.4)).collect();
        callers.push((cluster.key(&format!("caller{n}"), "employee", &groups), groups));
    }
    let mut seen = 0;
    for round in 0..30 {
        let (key, groups) = &callers[rng.random_range(0..callers.len())];
        let query = format!("{} policy", TOPICS[rng.random_range(0..TOPICS.len())]);
        let (status_a, via_a) = search(a.addr, key, &query).await;
        let (status_b, via_b) = search(b.addr, key, &query).await;
        assert_eq!((status_a, status_b), (200, 200), "round {round}: {via_a} {via_b}");
        assert_eq!(paths(&via_a), paths(&via_b), "round {round}: the replicas disagree");
        for path in paths(&via_a) {
            let (_, acl) = acls.iter().find(|(name, _)| *name == path).expect("a known document");
            assert!(acl.iter().any(|g| groups.contains(g)), "{path} (ACL {acl:?}) shown to groups {groups:?}");
            seen += 1;
        }
        let readable = acls.iter().filter(|(_, acl)| acl.iter().any(|g| groups.contains(g))).count();
        assert_eq!(paths(&via_a).len(), readable, "round {round}: every readable document matches {query:?}");
    }
    assert!(seen > 0, "the callers should see some documents");

    // A worker killed with SIGKILL mid-job: the other takes the job over when its lease runs
    // out and completes it, without duplicate chunks.
    let digest = crate::serve::long_document(60_000);
    let (status, accepted) = upload(a.addr, &admin, "policies", "digest.md", digest.into_bytes(), &[]).await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job"]["id"].as_str().unwrap().to_owned();
    let mut holder = None;
    for _ in 0..600 {
        let (_, state) = call(b.addr, "GET", &format!("/v1/jobs/{job}"), Some(&admin), None).await;
        if let Some(worker) = state["worker"].as_str() {
            holder = Some(worker.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let holder = holder.expect("a worker claims the job");
    let pid: u32 = holder.rsplit(':').next().unwrap().parse().unwrap();
    let victim = workers.iter().position(|w| w.as_ref().is_some_and(|w| w.child.id() == pid)).expect("one of ours");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut killed = workers[victim].take().unwrap();
    killed.child.kill().unwrap(); // SIGKILL
    killed.child.wait().unwrap();
    let done = wait_for_job(b.addr, &admin, &job).await;
    assert_eq!(done["state"], "indexed", "{done}");
    assert_eq!(done["attempts"], 2, "the surviving worker took the job over: {done}");
    let status = cluster.lore(&["status", "--check"]);
    assert_success(&status);
    assert!(String::from_utf8_lossy(&status.stdout).contains("consistency:   ok"), "{status:?}");

    // One replica killed under load: every request the other accepted succeeds.
    let survivor = b.addr;
    let load = tokio::spawn({
        let reader = reader.clone();
        async move {
            let mut statuses = Vec::new();
            for n in 0..60 {
                let query = format!("{} policy", TOPICS[n % TOPICS.len()]);
                statuses.push(search(survivor, &reader, &query).await.0);
            }
            statuses
        }
    });
    let doomed = tokio::spawn({
        let reader = reader.clone();
        let addr = a.addr;
        async move {
            for _ in 0..30 {
                let _ = reqwest::Client::new()
                    .post(format!("http://{addr}/v1/search"))
                    .bearer_auth(&reader)
                    .json(&json!({"query": "travel expenses"}))
                    .send()
                    .await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let _ = doomed.await;
    let statuses = load.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "the surviving replica failed requests: {statuses:?}");

    // Nothing else is left behind: staged uploads are gone once their jobs are done.
    let staged = std::fs::read_dir(cluster.data.join("uploads")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(staged, 0, "staged uploads left in {}", cluster.data.display());
    let admin_client = qdrant_client::Qdrant::from_url(&cluster.qdrant).skip_compatibility_check().build().unwrap();
    let _ = admin_client.delete_collection(&cluster.collection).await;
    drop(workers);
}

/// `lore migrate`: an embedded data folder moves into PostgreSQL and a Qdrant server; the
/// counts and the consistency check hold, keys made before still work, the same question finds
/// the same document, and a second migration into the same engines is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_moves_an_embedded_folder_into_postgresql_and_qdrant() {
    let Some(cluster) = cluster("migrate_moves_an_embedded_folder_into_postgresql_and_qdrant") else { return };
    let embedded = tempfile::tempdir().unwrap();
    let folder = embedded.path().to_str().unwrap();
    let samples = crate::workspace_root().join("ingest/samples.toml");
    assert_success(&embedded_lore(embedded.path(), &["ingest", samples.to_str().unwrap()]));
    let output =
        embedded_lore(embedded.path(), &["keys", "create", "--name", "ops", "--role", "employee", "--user", "ops"]);
    assert_success(&output);
    let key = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let before = embedded_lore(embedded.path(), &["status"]);
    assert_success(&before);

    let migrated = embedded_lore(embedded.path(), &["migrate", "--to", cluster.config.to_str().unwrap()]);
    assert_success(&migrated);
    let report = String::from_utf8_lossy(&migrated.stdout);
    assert!(report.contains("consistency ok") && report.contains("none embedded again"), "{report}");
    assert!(report.contains("copied chunks:") && report.contains("copied api_keys: 1 row(s)"), "{report}");
    assert!(!report.contains("not copied"), "every embedded table has its PostgreSQL counterpart:\n{report}");

    let after = cluster.lore(&["status", "--check"]);
    assert_success(&after);
    let line = |text: &str, prefix: &str| text.lines().find(|l| l.starts_with(prefix)).map(str::to_owned);
    let (before, after) = (String::from_utf8_lossy(&before.stdout), String::from_utf8_lossy(&after.stdout));
    for prefix in ["documents:", "chunks:", "model:"] {
        assert_eq!(line(&before, prefix), line(&after, prefix), "{prefix}\n{before}\n{after}");
    }
    assert!(after.contains("consistency:   ok"), "{after}");

    // The key made in the embedded folder authenticates against the migrated service, and a
    // question finds the same document as before.
    let question = json!({ "query": "How many vacation days do employees get?", "limit": 3 });
    let server = Process::embedded(folder);
    let (_, expected) = call(server.addr, "POST", "/v1/search", Some(&key), Some(question.clone())).await;
    drop(server);
    let server = cluster.serve("all");
    let (status, found) = call(server.addr, "POST", "/v1/search", Some(&key), Some(question)).await;
    assert_eq!(status, 200, "{found}");
    assert!(!paths(&found).is_empty(), "{found}");
    assert_eq!(paths(&found)[0], paths(&expected)[0], "{found}\n{expected}");
    drop(server);

    // Running it again changes nothing; a different folder is refused.
    let again = embedded_lore(embedded.path(), &["migrate", "--to", cluster.config.to_str().unwrap()]);
    assert_success(&again);
    let report = String::from_utf8_lossy(&again.stdout);
    assert!(!report.contains("copied chunks") && report.contains("already there: chunks"), "{report}");
    let other = tempfile::tempdir().unwrap();
    let folder = crate::workspace_root().join("ingest/samples/it");
    assert_success(&embedded_lore(other.path(), &["ingest", folder.to_str().unwrap(), "--acl", "everyone"]));
    let refused = embedded_lore(other.path(), &["migrate", "--to", cluster.config.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not this source's"), "{refused:?}");
    let admin_client = qdrant_client::Qdrant::from_url(&cluster.qdrant).skip_compatibility_check().build().unwrap();
    let _ = admin_client.delete_collection(&cluster.collection).await;
}

impl Process {
    /// `lore serve` on an embedded data folder.
    fn embedded(folder: &str) -> Process {
        let mut command = command();
        command.args(["--data-dir", folder, "serve", "--bind", "127.0.0.1:0"]);
        Process::spawn(command)
    }

    /// Starts a `lore serve` command and reads the address it listens on (the first line of
    /// its standard output; it prints nothing else there).
    fn spawn(mut command: Command) -> Process {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("start lore serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("lore: listening on ")
            .unwrap_or_else(|| panic!("unexpected output of lore serve: {line:?}"))
            .to_owned();
        Process { child, addr: url.trim_start_matches("http://").parse().unwrap() }
    }
}
