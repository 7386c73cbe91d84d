//! A person's data (issue 16): export, erasure by the person and by an admin (the audit chain
//! still verifying, aggregates surviving), and the retention purge under a clock the test sets.

use lore_core::role::Role;
use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::{Setup, TestServer};
use crate::usage::{events, key};

const VACATION: &str = "How many days of paid vacation do I get?";
const OFF_TOPIC: &str = "Who won the football world cup in 1998?";

fn server() -> TestServer {
    let mut setup = Setup::new().with_samples();
    setup.config.usage.flush_interval_ms = 50;
    setup.start()
}

/// Two chats (one the knowledge base cannot answer, which the gap report keeps) and a vote.
async fn use_lore(server: &TestServer, key: &str) {
    let (status, answer) = call(server.addr, "POST", "/v1/chat", Some(key), Some(json!({"question": VACATION}))).await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = call(server.addr, "POST", "/v1/chat", Some(key), Some(json!({"question": OFF_TOPIC}))).await;
    assert_eq!(status, 200);
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": "my manager said 30"});
    let (status, body) = call(server.addr, "POST", "/v1/feedback", Some(key), Some(vote)).await;
    assert_eq!(status, 201, "{body}");
}

async fn export(server: &TestServer, key: &str) -> Value {
    let (status, body) = call(server.addr, "GET", "/v1/me/export", Some(key), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn requests_in_rollups(server: &TestServer) -> u64 {
    let query = lore_usage::analytics::UsageQuery {
        from_ms: 0,
        to_ms: lore_usage::now_ms() + 86_400_000,
        group_by: lore_usage::analytics::GroupBy::Day,
        departments: None,
    };
    server.state.usage.recorder.flush();
    lore_usage::analytics::usage(&server.state.usage.store, &query).unwrap().iter().map(|row| row.requests).sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_erasure_by_the_person_and_by_an_admin() {
    let server = server();
    let (pat, _) = key(&server, Role::Employee, "pat", &["hr"], Some("hr"));
    let (quinn, _) = key(&server, Role::Employee, "quinn", &["hr"], Some("hr"));
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    use_lore(&server, &pat).await;
    use_lore(&server, &quinn).await;

    let mine = export(&server, &pat).await;
    assert_eq!(mine["user"], "pat");
    assert_eq!(mine["conversations"].as_array().unwrap().len(), 2, "{mine}");
    assert_eq!(mine["conversations"][0]["messages"].as_array().unwrap().len(), 2);
    assert_eq!(mine["feedback"].as_array().unwrap().len(), 1);
    assert_eq!(mine["feedback"][0]["comment"], "my manager said 30");
    let usage = mine["usage_events"].as_array().unwrap();
    assert_eq!(usage.len(), 3, "two chats and a vote: {usage:?}");
    assert!(usage.iter().all(|e| e["user"] == "pat"));
    let audit = mine["audit"].as_array().unwrap();
    assert!(audit.iter().any(|r| r["action"] == "privacy.export"), "{audit:?}");
    assert!(audit.iter().all(|r| r["actor"] == "pat"));
    // Nothing of quinn's.
    assert!(!mine.to_string().contains("quinn"));

    let total = requests_in_rollups(&server);
    let (status, erased) = call(server.addr, "DELETE", "/v1/me/data", Some(&pat), None).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!((erased["conversations"].as_u64(), erased["feedback"].as_u64()), (Some(2), Some(1)), "{erased}");
    assert_eq!(erased["usage_events"], 3);
    assert!(erased["gap_questions"].as_u64().unwrap() >= 1, "{erased}");
    let usage_pseudonym = erased["usage_pseudonym"].as_str().unwrap().to_owned();
    let audit_pseudonym = erased["audit_pseudonym"].as_str().unwrap().to_owned();

    // Gone or pseudonymous everywhere; totals unchanged; the audit chain verifies.
    let after = export(&server, &pat).await;
    for part in ["conversations", "feedback", "usage_events"] {
        assert_eq!(after[part].as_array().unwrap().len(), 0, "{part}: {after}");
    }
    assert!(events(&server).iter().all(|e| e.user != "pat"));
    assert_eq!(events(&server).iter().filter(|e| e.user == usage_pseudonym).count(), 3);
    assert_eq!(requests_in_rollups(&server), total, "the erasure keeps every request in the totals");
    assert_eq!(total, 6, "three requests each (exports are not metered)");
    assert_eq!(server.state.audit.verify_chain().unwrap(), None);
    let everything = server.state.audit.query(&lore_core::audit::Query { limit: Some(1000), ..Default::default() });
    let everything = everything.unwrap();
    let erasure = everything
        .iter()
        .find(|r| r.event.actor == audit_pseudonym && r.event.action == "privacy.erase")
        .expect("the erasure is audited under the pseudonym");
    // Only what pat did after the erasure (the export just above) names pat.
    let named: Vec<&str> =
        everything.iter().filter(|r| r.event.actor == "pat").map(|r| r.event.action.as_str()).collect();
    assert_eq!(named, ["privacy.export"]);
    assert!(everything.iter().filter(|r| r.seq < erasure.seq).all(|r| r.event.actor != "pat"));
    let gaps = server.state.usage.gaps.list(&lore_usage::gaps::GapQuery {
        departments: None,
        status: None,
        from_ms: None,
        to_ms: None,
        limit: 100,
    });
    assert!(!serde_json::to_string(&gaps.unwrap()).unwrap().contains("my manager"));

    // Only admins erase others; quinn's data was untouched by pat's erasure.
    let (status, _) = call(server.addr, "DELETE", "/v1/users/quinn/data", Some(&pat), None).await;
    assert_eq!(status, 403);
    assert_eq!(export(&server, &quinn).await["conversations"].as_array().unwrap().len(), 2);
    let (status, erased) = call(server.addr, "DELETE", "/v1/users/quinn/data", Some(&admin), None).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["conversations"], 2);
    let record = server
        .state
        .audit
        .query(&lore_core::audit::Query { action: Some("privacy.erase".into()), ..Default::default() })
        .unwrap()
        .into_iter()
        .find(|r| r.event.actor == "root")
        .expect("the admin's erasure is audited");
    assert!(record.event.target.as_deref().unwrap().starts_with("a:"), "{record:?}");
    assert!(!serde_json::to_string(&record).unwrap().contains("quinn"));
    assert_eq!(server.state.audit.verify_chain().unwrap(), None);
    // A second erasure finds nothing left.
    let (_, again) = call(server.addr, "DELETE", "/v1/users/quinn/data", Some(&admin), None).await;
    assert_eq!((again["conversations"].as_u64(), again["usage_events"].as_u64()), (Some(0), Some(0)), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_purges_old_conversations_and_usage_events_by_the_clock_given() {
    let server = server();
    let (pat, _) = key(&server, Role::Employee, "pat", &["hr"], Some("hr"));
    use_lore(&server, &pat).await;
    // Two chats and a vote. Events reach the recorder asynchronously (a vote's after the
    // response), so wait for all three before moving the clock.
    for _ in 0..100 {
        if events(&server).len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let now = lore_core::db::now();
    const DAY: i64 = 86_400;
    // Today nothing is old enough.
    let purged = server.state.purge(now);
    assert_eq!((purged.conversations, purged.usage_events), (0, 0));
    assert_eq!(server.state.chat.conversations().list("pat").unwrap().len(), 2);
    // A year and a day on (conversations: 365 days), conversations go; usage events stay 400 days.
    let purged = server.state.purge(now + 366 * DAY);
    assert_eq!(purged.conversations, 2);
    assert_eq!(purged.usage_events, 0);
    assert!(server.state.chat.conversations().list("pat").unwrap().is_empty());
    let kept = events(&server);
    assert_eq!(
        kept.len(),
        3,
        "{:?} (dropped {})",
        kept.iter().map(|e| (e.endpoint, e.kind.clone(), e.time_ms)).collect::<Vec<_>>(),
        server.state.usage.recorder.dropped()
    );
    let purged = server.state.purge(now + 402 * DAY);
    assert_eq!(purged.usage_events, 3);
    assert!(events(&server).is_empty());
}
