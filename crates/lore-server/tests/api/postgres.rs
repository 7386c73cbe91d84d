//! The service with its application database on PostgreSQL (`database.url`): a throwaway
//! cluster from `lore_db::testing` (skipped with a message without PostgreSQL, a failure
//! with `LORE_REQUIRE_POSTGRES=1`).

use lore_core::audit::AuditLog;
use lore_core::catalog::Catalog;
use lore_core::jobs::{JobState, JobStore};
use lore_core::keys::NewKey;
use lore_core::role::Role;
use lore_db::{Database, Location};
use serde_json::json;

use crate::support::Setup;
use crate::support::client::{call, search_paths, upload, wait_for_job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_keeps_every_store_in_postgresql_when_given_a_database_url() {
    let Some(Location::Postgres(url)) =
        lore_db::testing::database("the_service_keeps_every_store_in_postgresql_when_given_a_database_url")
    else {
        return;
    };
    let mut setup = Setup::new();
    setup.config.database.url = Some(url.clone());
    let hr = setup.folder("hr-docs");
    std::fs::write(hr.join("leave.md"), "# Leave\n\nEmployees get twenty-five days of paid leave a year.").unwrap();
    let server =
        tokio::task::spawn_blocking(move || setup.source("hr", hr, &["group:hr"], Some("hr")).start()).await.unwrap();
    let store = server.state.identity.keys.store().unwrap().clone();
    let key = |name: &str, role: Role, groups: &[&str], department: Option<&str>| {
        let new = NewKey {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            department: department.map(str::to_owned),
            ..NewKey::new(name, role, &format!("{name}-user"), "test")
        };
        store.create(&new).unwrap().0
    };
    let (km, employee, outsider) = (
        key("km", Role::KnowledgeManager, &["hr"], Some("hr")),
        key("employee", Role::Employee, &["hr"], None),
        key("outsider", Role::Employee, &[], None),
    );

    // An upload goes through the queue in PostgreSQL and is searchable with its ACL.
    let text = b"# Sabbatical\n\nAfter seven years of service employees may take a three-month sabbatical.".to_vec();
    let (status, accepted) = upload(server.addr, &km, "hr", "sabbatical.md", text, &[]).await;
    assert_eq!(status, 202, "{accepted}");
    let job = wait_for_job(server.addr, &km, accepted["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["state"], "indexed", "{job}");
    let query = json!({"query": "sabbatical after seven years", "limit": 3});
    let (_, found) = call(server.addr, "POST", "/v1/search", Some(&employee), Some(query.clone())).await;
    assert_eq!(search_paths(&found)[0], "sabbatical.md", "{found}");
    let (_, hidden) = call(server.addr, "POST", "/v1/search", Some(&outsider), Some(query)).await;
    assert!(!search_paths(&hidden).contains(&"sabbatical.md".to_owned()), "{hidden}");
    let (status, answer) = call(
        server.addr,
        "POST",
        "/v1/chat",
        Some(&employee),
        Some(json!({"question": "How many days of paid leave do employees get?"})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["conversation_id"].is_string(), "{answer}");

    // What the service wrote is in PostgreSQL, seen from another connection.
    let database = Database::open(&Location::Postgres(url)).unwrap();
    let paths: Vec<String> =
        Catalog::open_in(&database).unwrap().documents_of_source("hr").unwrap().into_iter().map(|d| d.path).collect();
    assert_eq!(paths, vec!["leave.md", "sabbatical.md"]);
    let jobs = JobStore::open_in(&database).unwrap().counts().unwrap();
    assert_eq!(jobs, vec![(JobState::Indexed, 1)]);
    let keys = lore_core::keys::KeyStore::open_in(&database).unwrap().list().unwrap();
    assert_eq!(keys.len(), 3);
    let audit = AuditLog::open_in(&database).unwrap();
    assert!(audit.count().unwrap() >= 1);
    assert_eq!(audit.verify_chain().unwrap(), None);
    let conversations = lore_chat::conversations::Conversations::open_in(&database).unwrap();
    let id = answer["conversation_id"].as_str().unwrap();
    assert!(conversations.owned_by(id, "employee-user").unwrap(), "the conversation is in PostgreSQL");
    // No store fell back to the embedded file.
    let file = server.state.config.catalog_path();
    assert!(!file.exists(), "{} was created", file.display());
}

/// The database half of `lore migrate`: every table the embedded service creates has its
/// PostgreSQL counterpart among the stores `open_every_store` opens, and its rows arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_embedded_table_copies_into_postgresql() {
    let Some(location) = lore_db::testing::database("every_embedded_table_copies_into_postgresql") else { return };
    let mut setup = Setup::new();
    let hr = setup.folder("hr-docs");
    std::fs::write(hr.join("leave.md"), "# Leave\n\nEmployees get twenty-five days of paid leave a year.").unwrap();
    setup.config.usage.enabled = true;
    let server =
        tokio::task::spawn_blocking(move || setup.source("hr", hr, &["group:hr"], Some("hr")).start()).await.unwrap();
    let store = server.state.identity.keys.store().unwrap().clone();
    let new = NewKey { groups: vec!["hr".into()], ..NewKey::new("employee", Role::Employee, "employee-user", "test") };
    let key = store.create(&new).unwrap().0;
    let question = json!({"question": "How many days of paid leave do employees get?"});
    let (status, answer) = call(server.addr, "POST", "/v1/chat", Some(&key), Some(question)).await;
    assert_eq!(status, 200, "{answer}");
    // The server keeps its temporary data folder; it is idle while its file is read.
    let config = server.state.config.clone();
    let source = config.open_database().unwrap();
    let target = Database::open(&location).unwrap();
    lore_server::state::open_every_store(&config, &target).unwrap();
    let report = lore_db::copy::copy_sqlite_to_postgres(&source, &target).unwrap();
    assert!(report.skipped.is_empty(), "tables without a PostgreSQL counterpart: {:?}", report.skipped);
    let rows = |table: &str| report.tables.iter().find(|(t, _)| t == table).map(|(_, n)| *n);
    assert_eq!(rows("documents"), Some(1), "{report:?}");
    assert_eq!(rows("api_keys"), Some(1));
    assert!(rows("chunks").is_some_and(|n| n >= 1) && rows("conversations") == Some(1), "{:?}", report.tables);
    // The copied audit chain still verifies, and the copied catalog answers.
    assert_eq!(AuditLog::open_in(&target).unwrap().verify_chain().unwrap(), None);
    let paths: Vec<String> =
        Catalog::open_in(&target).unwrap().documents_of_source("hr").unwrap().into_iter().map(|d| d.path).collect();
    assert_eq!(paths, vec!["leave.md"]);
    drop(server);
}
