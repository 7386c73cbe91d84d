//! Metering, budgets, rate limits, analytics and knowledge gaps (issue 15), over real HTTP
//! against servers of their own, so every count is known exactly.

use std::net::SocketAddr;
use std::time::Duration;

use lore_chat::testing::{FakeProvider, Reply};
use lore_core::keys::NewKey;
use lore_core::role::Role;
use lore_usage::{CategoryConfig, Price, UsageEvent};
use serde_json::{Value, json};

use crate::support::client::{call, upload, wait_for_job};
use crate::support::{Setup, TestServer};

const VACATION: &str = "How many days of paid vacation do I get?";
/// Nothing in the sample corpus answers it.
const OFF_TOPIC: &str = "Who won the football world cup in 1998?";
/// `FakeProvider` reports 321 prompt and 12 completion tokens for every whole answer.
const PROMPT_TOKENS: u64 = 321;
const COMPLETION_TOKENS: u64 = 12;
/// Per million tokens, for the fake provider's model.
const INPUT_PRICE: f64 = 2.0;
const OUTPUT_PRICE: f64 = 10.0;

fn answer_cost() -> f64 {
    (PROMPT_TOKENS as f64 * INPUT_PRICE + COMPLETION_TOKENS as f64 * OUTPUT_PRICE) / 1e6
}

/// A server over the sample corpus whose answers come from `provider`, with a price for its
/// model and three categories.
fn metered_server(provider: &FakeProvider, edit: impl FnOnce(&mut Setup)) -> TestServer {
    let mut setup = Setup::new().with_samples();
    let config = provider.config(0, 30.0);
    setup.config.usage.prices =
        vec![Price { model: config.model.clone(), input_per_million: INPUT_PRICE, output_per_million: OUTPUT_PRICE }];
    setup.config.usage.categories = vec![
        category(
            "HR",
            &["How much annual leave do employees get?", "When is payday?", "What is the parental leave policy?"],
        ),
        category("IT", &["How do I connect to the VPN?", "My laptop will not start", "How do I reset my password?"]),
        category("Sales", &["What discount can I offer a customer?", "How do I qualify a sales lead?"]),
    ];
    setup.config.usage.flush_interval_ms = 50;
    setup.config.chat.providers = vec![config];
    edit(&mut setup);
    setup.start()
}

fn category(name: &str, examples: &[&str]) -> CategoryConfig {
    CategoryConfig { name: name.into(), examples: examples.iter().map(|e| e.to_string()).collect() }
}

/// Creates a key (role, user, groups, department) on `server`; returns the secret and its id.
pub(crate) fn key(
    server: &TestServer,
    role: Role,
    user: &str,
    groups: &[&str],
    department: Option<&str>,
) -> (String, String) {
    let store = server.state.identity.keys.store().unwrap().clone();
    let (secret, info) = store
        .create(&NewKey {
            groups: groups.iter().map(|g| g.to_string()).collect(),
            department: department.map(str::to_owned),
            ..NewKey::new(user, role, user, "test")
        })
        .unwrap();
    (secret, info.id)
}

/// Every event written so far (after the recorder has flushed).
pub(crate) fn events(server: &TestServer) -> Vec<UsageEvent> {
    server.state.usage.recorder.flush();
    server.state.usage.store.events(0, i64::MAX).unwrap()
}

/// A raw request: status, headers and body text.
pub(crate) async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), format!("http://{addr}{path}")).bearer_auth(key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

async fn chat(addr: SocketAddr, key: &str, question: &str) -> (u16, Value) {
    call(addr, "POST", "/v1/chat", Some(key), Some(json!({ "question": question }))).await
}

/// Waits until the gap worker has clustered `count` questions.
async fn wait_for_gaps(server: &TestServer, count: u64) {
    for _ in 0..200 {
        let query =
            lore_usage::gaps::GapQuery { departments: None, status: None, from_ms: None, to_ms: None, limit: 100 };
        let total: u64 = server.state.usage.gaps.list(&query).unwrap().iter().map(|g| g.count).sum();
        if total >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gap worker did not cluster {count} questions");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metered_endpoint_writes_one_event_with_what_it_cost() {
    let provider = FakeProvider::scripted("model", vec![]).await;
    let server = metered_server(&provider, |_| {});
    let addr = server.addr;
    let (alice, alice_key) = key(&server, Role::Employee, "alice", &["hr"], Some("hr"));
    // The sample collection has no department: admins manage it.
    let (km, _) = key(&server, Role::Admin, "kim", &[], None);

    let (status, _) =
        call(addr, "POST", "/v1/search", Some(&alice), Some(json!({"query": "How do I set up the VPN?"}))).await;
    assert_eq!(status, 200);
    let (status, answer) = chat(addr, &alice, VACATION).await;
    assert_eq!((status, answer["kind"].as_str()), (200, Some("generated")), "{answer}");
    let (status, _, stream) =
        raw(addr, "POST", "/v1/chat", &alice, Some(json!({"question": VACATION, "stream": true})), &[]).await;
    assert_eq!(status, 200);
    assert!(stream.contains("event: final"), "{stream}");
    let (status, abstained) = chat(addr, &alice, OFF_TOPIC).await;
    assert_eq!((status, abstained["kind"].as_str()), (200, Some("no_answer")), "{abstained}");
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": "wrong"});
    let (status, _) = call(addr, "POST", "/v1/feedback", Some(&alice), Some(vote)).await;
    assert_eq!(status, 201);
    let file = b"# Desk booking\n\nDesks are booked through the facilities portal.".to_vec();
    let (status, job) = upload(addr, &km, "samples", "desks.md", file.clone(), &[("acl", "everyone")]).await;
    assert_eq!(status, 202, "{job}");
    wait_for_job(addr, &km, job["job"]["id"].as_str().unwrap()).await;
    let (status, _) = upload(addr, &km, "samples", "desks.md", file, &[("acl", "everyone")]).await;
    assert_eq!(status, 200);
    // Let the feedback event (written after the rated answer's event is read) land.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let events = events(&server);
    let summary: Vec<(&str, &str)> = events.iter().map(|e| (e.endpoint.as_str(), e.kind.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("search", "results"),
            ("chat", "generated"),
            ("chat_stream", "generated"),
            ("chat", "no_answer"),
            ("feedback", "down"),
            ("upload", "queued"),
            ("upload", "duplicate"),
        ],
        "one event per request, in order"
    );
    for event in &events[..5] {
        assert_eq!((event.user.as_str(), event.role.as_str()), ("alice", "employee"));
        assert_eq!((event.credential.as_str(), event.key_id.as_deref()), ("api_key", Some(alice_key.as_str())));
        assert_eq!(event.departments, ["hr"]);
        assert!(event.latency_ms > 0.0);
    }
    let (search, generated, streamed, no_answer, feedback) =
        (&events[0], &events[1], &events[2], &events[3], &events[4]);
    assert_eq!(search.category.as_deref(), Some("IT"), "{search:?}");
    assert!(search.stages.contains_key("embed") && search.stages.contains_key("bm25"));
    assert_eq!(generated.category.as_deref(), Some("HR"));
    assert_eq!((generated.prompt_tokens, generated.completion_tokens), (PROMPT_TOKENS, COMPLETION_TOKENS));
    assert!((generated.cost - answer_cost()).abs() < 1e-12, "{}", generated.cost);
    assert_eq!(generated.model.as_deref(), answer["model"].as_str());
    assert_eq!(generated.provider.as_deref(), Some("model"));
    assert_eq!(generated.prompt_version.as_deref(), answer["prompt_version"].as_str());
    assert_eq!(generated.message_id, answer["message_id"].as_i64());
    assert_eq!(generated.conversation_id.as_deref(), answer["conversation_id"].as_str());
    assert_eq!(generated.lang.as_deref(), Some("en"));
    assert_eq!(generated.collections, ["samples"]);
    assert!(generated.stages.contains_key("generation"));
    // Providers do not report a stream's tokens: Lore counts them.
    assert!(streamed.prompt_tokens > 100 && streamed.completion_tokens > 0, "{streamed:?}");
    assert!(streamed.cost > 0.0);
    // The abstention cancelled the model call it started while weighing the evidence: the
    // prompt that went out is counted and priced, nothing was written.
    assert!(no_answer.prompt_tokens > 100 && no_answer.completion_tokens == 0, "{no_answer:?}");
    assert!(no_answer.cost > 0.0 && no_answer.model.as_deref() == generated.model.as_deref(), "{no_answer:?}");
    assert_eq!(no_answer.prompt_version, None);
    assert_eq!(feedback.message_id, generated.message_id);
    assert_eq!(feedback.category.as_deref(), Some("HR"), "a vote is counted under its answer's category");
    assert_eq!(events[5].collections, ["samples"]);
    assert_eq!(events[5].user, "kim");

    // The metrics count them by department and kind.
    let (status, metrics) = call(addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(r#"lore_usage_events_total{endpoint="chat",department="hr",kind="generated"} 1"#),
        "{metrics}"
    );
    // The abstention and the down-voted question are knowledge gaps.
    wait_for_gaps(&server, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn analytics_count_a_scripted_day_exactly_and_scope_managers_to_their_departments() {
    let provider = FakeProvider::scripted("model", vec![]).await;
    // Exact sums: the abstention asks no model (a speculative call's tokens are estimated, and
    // `every_metered_endpoint_writes_one_event_with_what_it_cost` checks them).
    let server = metered_server(&provider, |setup| setup.config.chat.speculative_generation = false);
    let addr = server.addr;
    let (ana, _) = key(&server, Role::Employee, "ana", &["hr"], Some("hr"));
    let (sam, _) = key(&server, Role::Employee, "sam", &["sales"], Some("sales"));
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (km_sales, _) = key(&server, Role::KnowledgeManager, "kms", &["sales"], Some("sales"));

    // ana: two generated answers, one search, a thumbs-up; sam: one abstention, one search, a thumbs-down.
    let (_, first) = chat(addr, &ana, VACATION).await;
    let (_, second) = chat(addr, &ana, "How many vacation days carry over to next year?").await;
    assert_eq!((first["kind"].as_str(), second["kind"].as_str()), (Some("generated"), Some("generated")));
    call(addr, "POST", "/v1/search", Some(&ana), Some(json!({"query": "salary bands"}))).await;
    let (_, missed) = chat(addr, &sam, OFF_TOPIC).await;
    assert_eq!(missed["kind"], "no_answer");
    call(addr, "POST", "/v1/search", Some(&sam), Some(json!({"query": "discount approval"}))).await;
    let up = json!({"message_id": first["message_id"], "rating": "up"});
    assert_eq!(call(addr, "POST", "/v1/feedback", Some(&ana), Some(up)).await.0, 201);
    let down = json!({"message_id": missed["message_id"], "rating": "down"});
    assert_eq!(call(addr, "POST", "/v1/feedback", Some(&sam), Some(down)).await.0, 201);
    // ana changes her mind: a re-vote is counted as such, not as a second thumb.
    let again = json!({"message_id": first["message_id"], "rating": "down"});
    assert_eq!(call(addr, "POST", "/v1/feedback", Some(&ana), Some(again)).await.0, 201);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.state.usage.recorder.flush();

    let today = lore_usage::date_text(lore_usage::now_ms() / 1000);
    let tomorrow = lore_usage::date_text(lore_usage::now_ms() / 1000 + 86_400);
    let range = format!("from={today}&to={tomorrow}");
    let (status, report) =
        call(addr, "GET", &format!("/v1/analytics/usage?{range}&group_by=department"), Some(&admin), None).await;
    assert_eq!(status, 200, "{report}");
    let rows = report["rows"].as_array().unwrap();
    let row = |group: &str| rows.iter().find(|r| r["group"] == group).unwrap_or_else(|| panic!("{group}: {report}"));
    let hr = row("hr");
    assert_eq!(hr["requests"], 5);
    assert_eq!(hr["active_users"], 1);
    assert_eq!(hr["chats"], 2);
    assert_eq!(hr["kinds"], json!({"generated": 2, "results": 1, "up": 1, "revote": 1}));
    assert_eq!(hr["abstention_rate"], 0.0);
    assert_eq!((hr["prompt_tokens"].as_u64(), hr["completion_tokens"].as_u64()), (Some(642), Some(24)));
    assert!((hr["cost"].as_f64().unwrap() - 2.0 * answer_cost()).abs() < 1e-12, "{hr}");
    assert_eq!((hr["thumbs_up"].as_u64(), hr["thumbs_down"].as_u64()), (Some(1), Some(0)));
    assert!(hr["latency_p50_ms"].as_f64().unwrap() > 0.0 && hr["latency_p95_ms"].as_f64().is_some());
    let sales = row("sales");
    assert_eq!((sales["requests"].as_u64(), sales["chats"].as_u64()), (Some(3), Some(1)));
    assert_eq!(sales["kinds"], json!({"no_answer": 1, "results": 1, "down": 1}));
    assert_eq!((sales["abstention_rate"].as_f64(), sales["cost"].as_f64()), (Some(1.0), Some(0.0)));
    assert_eq!(rows.len(), 2, "{report}");

    // One day, everything in it.
    let (_, by_day) = call(addr, "GET", &format!("/v1/analytics/usage?{range}&group_by=day"), Some(&admin), None).await;
    let day = &by_day["rows"][0];
    assert_eq!((day["group"].as_str(), day["requests"].as_u64()), (Some(today.as_str()), Some(8)));
    assert_eq!((day["active_users"].as_u64(), day["chats"].as_u64()), (Some(2), Some(3)));
    assert!((day["abstention_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-12);
    // The same numbers from the raw events of a window that is not whole days.
    let now = lore_usage::now_ms() / 1000;
    let (from, to) = (lore_core::db::rfc3339(now - 600), lore_core::db::rfc3339(now + 60));
    let (_, recent) =
        call(addr, "GET", &format!("/v1/analytics/usage?from={from}&to={to}&group_by=day"), Some(&admin), None).await;
    assert_eq!(recent["rows"][0]["requests"], 8, "{recent}");
    assert_eq!(recent["rows"][0]["kinds"], day["kinds"]);

    // A knowledge manager of sales sees sales only, whatever the grouping.
    let (status, scoped) =
        call(addr, "GET", &format!("/v1/analytics/usage?{range}&group_by=user"), Some(&km_sales), None).await;
    assert_eq!(status, 200, "{scoped}");
    let users: Vec<&str> = scoped["rows"].as_array().unwrap().iter().map(|r| r["group"].as_str().unwrap()).collect();
    assert_eq!(users, ["sam"]);
    let (_, scoped) =
        call(addr, "GET", &format!("/v1/analytics/usage?{range}&group_by=department"), Some(&km_sales), None).await;
    assert_eq!(scoped["rows"].as_array().unwrap().len(), 1, "{scoped}");
    assert_eq!(scoped["rows"][0]["group"], "sales");
    // Employees see no analytics.
    let (status, _) = call(addr, "GET", "/v1/analytics/usage", Some(&ana), None).await;
    assert_eq!(status, 403);

    // Categories: the HR questions and their vote under HR.
    let (_, by_category) =
        call(addr, "GET", &format!("/v1/analytics/usage?{range}&group_by=category"), Some(&admin), None).await;
    let hr_category = by_category["rows"].as_array().unwrap().iter().find(|r| r["group"] == "HR").unwrap();
    assert_eq!(hr_category["chats"], 2, "{by_category}");

    // CSV of the same table.
    let path = format!("/v1/analytics/usage?{range}&group_by=department");
    let (status, headers, csv) = raw(addr, "GET", &path, &admin, None, &[("accept", "text/csv")]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("group,requests,active_users"), "{csv}");
    assert!(lines.iter().any(|l| l.starts_with("hr,5,1,")), "{csv}");

    // Return on investment: two answered questions, five minutes each, at 50 an hour.
    let (status, roi) = call(addr, "GET", &format!("/v1/analytics/roi?{range}&period=day"), Some(&admin), None).await;
    assert_eq!(status, 200, "{roi}");
    let hr_roi = roi["rows"].as_array().unwrap().iter().find(|r| r["department"] == "hr").unwrap();
    assert_eq!(hr_roi["answered"], 2);
    assert!((hr_roi["value"].as_f64().unwrap() - 10.0 / 60.0 * 50.0).abs() < 1e-9, "{roi}");
    assert!((hr_roi["model_cost"].as_f64().unwrap() - 2.0 * answer_cost()).abs() < 1e-12, "{roi}");

    // Bad parameters are named.
    for (query, name) in [
        ("group_by=team", "`group_by`"),
        ("from=yesterday", "`from`"),
        ("to=2026-13-01", "`to`"),
        ("from=2026-02-01&to=2026-01-01", "`from`"),
    ] {
        let (status, body) = call(addr, "GET", &format!("/v1/analytics/usage?{query}"), Some(&admin), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().contains(name), "{query}: {body}");
    }
    let (status, body) = call(addr, "GET", "/v1/analytics/usage?grouping=day", Some(&admin), None).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("grouping"), "{body}");
    let (status, body) = call(addr, "GET", "/v1/analytics/roi?period=year", Some(&admin), None).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("`period`"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn budgets_warn_refuse_and_degrade_and_hold_under_concurrency() {
    // Slow answers, so the parallel requests overlap.
    let provider =
        FakeProvider::answering("model", |_| Reply::Delayed(Duration::from_millis(200), "25 days [1].".into())).await;
    let server = metered_server(&provider, |_| {});
    let addr = server.addr;
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (soft_user, _) = key(&server, Role::Employee, "soft", &["hr"], None);
    let (refused, refused_id) = key(&server, Role::Employee, "refused", &["hr"], None);
    let (degraded, _) = key(&server, Role::Employee, "degraded", &["hr"], None);
    let (crowd, _) = key(&server, Role::Employee, "crowd", &["hr"], None);
    let set = |body: Value| {
        let admin = admin.clone();
        async move {
            let (status, budget) = call(addr, "PUT", "/v1/budgets", Some(&admin), Some(body)).await;
            assert_eq!(status, 200, "{budget}");
            budget["id"].as_str().unwrap().to_owned()
        }
    };

    // Soft: the first answer past it carries a warning, and the crossing is audited.
    let soft =
        set(json!({"scope": "user", "value": "soft", "period": "day", "unit": "tokens", "soft_limit": 100})).await;
    let (status, headers, _) =
        raw(addr, "POST", "/v1/chat", &soft_user, Some(json!({"question": VACATION})), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["lore-budget-warning"].to_str().unwrap(), soft);
    let query = lore_core::audit::Query { action: Some("budget.soft_limit".into()), ..Default::default() };
    let audit = server.state.audit.query(&query).unwrap();
    assert!(audit.iter().any(|r| r.event.target.as_deref() == Some(soft.as_str())), "{audit:?}");

    // Hard, refusing: answers until the key has spent 1,000 tokens, then 429 naming the budget.
    let hard = set(json!({"scope": "key", "value": refused_id, "period": "day", "unit": "tokens", "hard_limit": 1000, "on_hard": "refuse"})).await;
    for _ in 0..4 {
        assert_eq!(chat(addr, &refused, VACATION).await.0, 200);
    }
    let (status, headers, body) =
        raw(addr, "POST", "/v1/chat", &refused, Some(json!({"question": VACATION})), &[]).await;
    assert_eq!(status, 429, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "budget_exceeded");
    let tomorrow = lore_core::db::rfc3339(lore_usage::day_start(lore_usage::now_ms() / 1000) + 86_400);
    assert!(body["message"].as_str().unwrap().contains(&hard), "{body}");
    assert!(body["message"].as_str().unwrap().contains(&tomorrow), "{body}");
    assert!(headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);

    // Hard, degrading: past it, answers are extracted and no model is called.
    set(json!({"scope": "user", "value": "degraded", "period": "day", "unit": "tokens", "hard_limit": 1, "on_hard": "degrade"})).await;
    assert_eq!(chat(addr, &degraded, VACATION).await.1["kind"], "generated");
    let calls = provider.requests().len();
    let (status, answer) = chat(addr, &degraded, VACATION).await;
    assert_eq!((status, answer["kind"].as_str()), (200, Some("extracted")), "{answer}");
    assert_eq!(provider.requests().len(), calls, "a degraded answer calls no model");

    // At the boundary, parallel requests cannot overrun the budget by more than one answer.
    set(json!({"scope": "user", "value": "crowd", "period": "day", "unit": "tokens", "hard_limit": 700, "on_hard": "refuse"})).await;
    let requests = (0..8).map(|_| {
        let crowd = crowd.clone();
        tokio::spawn(async move { chat(addr, &crowd, VACATION).await.0 })
    });
    let statuses: Vec<u16> = futures::future::join_all(requests).await.into_iter().map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    let spent: u64 = events(&server).iter().filter(|e| e.user == "crowd").map(UsageEvent::tokens).sum();
    let one_answer = PROMPT_TOKENS + COMPLETION_TOKENS;
    assert!(spent > 0 && spent <= 700 + one_answer, "spent {spent} of 700 ({statuses:?})");
    // And the budget's status says so.
    let (status, list) = call(addr, "GET", "/v1/budgets", Some(&admin), None).await;
    assert_eq!(status, 200, "{list}");
    let crowd_budget = list["budgets"].as_array().unwrap().iter().find(|b| b["budget"]["value"] == "crowd").unwrap();
    assert_eq!(crowd_budget["spent"].as_f64(), Some(spent as f64), "{list}");
    assert_eq!(crowd_budget["reserved"].as_f64(), Some(0.0));

    // Budgets are the admins'; bad ones are refused with the field named.
    let (status, _) = call(addr, "PUT", "/v1/budgets", Some(&crowd), Some(json!({"scope": "user", "value": "crowd", "period": "day", "unit": "tokens", "hard_limit": 1e9, "on_hard": "refuse"}))).await;
    assert_eq!(status, 403);
    let (status, body) = call(addr, "PUT", "/v1/budgets", Some(&admin), Some(json!({"scope": "user", "value": "x", "period": "day", "unit": "tokens", "soft_limit": 10, "hard_limit": 5, "on_hard": "refuse"}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("soft_limit"), "{body}");
    let (status, _) = call(addr, "DELETE", &format!("/v1/budgets/{hard}"), Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, body) = call(addr, "DELETE", &format!("/v1/budgets/{hard}"), Some(&admin), None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("budget_not_found")), "{body}");
    assert_eq!(chat(addr, &refused, VACATION).await.0, 200, "no budget, no limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_answer_429_with_retry_after_per_key_and_per_origin() {
    let provider = FakeProvider::scripted("model", vec![]).await;
    let server = metered_server(&provider, |setup| {
        setup.config.rate_limits.per_key = lore_usage::RateLimit { per_minute: 30, burst: 3 };
        setup.config.rate_limits.per_origin = lore_usage::RateLimit { per_minute: 6, burst: 2 };
        setup.config.server.cors_origins = vec!["http://intranet.example".into(), "http://wiki.example".into()];
    });
    let addr = server.addr;
    let (agent, _) = key(&server, Role::Agent, "crm", &["hr"], None);
    let search = json!({"query": "vpn"});
    for _ in 0..3 {
        assert_eq!(call(addr, "POST", "/v1/search", Some(&agent), Some(search.clone())).await.0, 200);
    }
    let (status, headers, body) = raw(addr, "POST", "/v1/search", &agent, Some(search.clone()), &[]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], "rate_limited");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "30 a minute refills one every 2 s: {retry_after}");
    assert!(events(&server).iter().any(|e| e.kind == "rate_limited" && e.status == 429 && e.user == "crm"));

    // A public key: limited per page origin (and per visitor); another origin has its own bucket.
    let store = server.state.identity.keys.store().unwrap().clone();
    let (public, _) = store.create(&NewKey::public("intranet", "test")).unwrap();
    let from = |origin: &'static str| [("origin", origin)];
    for _ in 0..2 {
        let (status, _, body) =
            raw(addr, "POST", "/v1/search", &public, Some(search.clone()), &from("http://intranet.example")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, _) =
        raw(addr, "POST", "/v1/search", &public, Some(search.clone()), &from("http://intranet.example")).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    let (status, _, _) = raw(addr, "POST", "/v1/search", &public, Some(search), &from("http://wiki.example")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_the_client_leaves_is_metered_with_the_tokens_it_used() {
    use futures::StreamExt;
    let parts = vec!["word "; 60];
    let provider = FakeProvider::scripted("model", vec![Reply::stream(&parts, Duration::from_millis(50))]).await;
    let server = metered_server(&provider, |_| {});
    let (user, _) = key(&server, Role::Employee, "leaver", &["hr"], Some("hr"));
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/chat", server.addr))
        .bearer_auth(&user)
        .json(&json!({"question": VACATION, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    drop(body); // the client leaves mid-answer
    let mut event = None;
    for _ in 0..100 {
        event = events(&server).into_iter().find(|e| e.user == "leaver");
        if event.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let event = event.expect("the abandoned stream is metered");
    assert_eq!((event.endpoint.as_str(), event.kind.as_str(), event.status), ("chat_stream", "error", 499));
    assert!(event.prompt_tokens > 100 && event.completion_tokens > 0, "{event:?}");
    assert!(event.completion_tokens < 60, "only what was streamed before the client left: {event:?}");
    assert!(event.cost > 0.0 && event.model.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn knowledge_gaps_cluster_paraphrases_together_and_topics_apart() {
    let provider = FakeProvider::scripted("model", vec![]).await;
    let server = metered_server(&provider, |_| {});
    let addr = server.addr;
    let (hr, _) = key(&server, Role::Employee, "hana", &["hr"], Some("hr"));
    let (sales, _) = key(&server, Role::Employee, "sol", &["sales"], Some("sales"));
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let (km_sales, _) = key(&server, Role::KnowledgeManager, "kms", &["sales"], Some("sales"));
    let pets =
        ["Can I bring my dog to the office?", "Are dogs allowed at work?", "Is it ok to take my dog into the office?"];
    let crypto = ["Can I be paid my salary in bitcoin?", "Is salary payment in cryptocurrency possible?"];
    let gym = ["Is there a company gym membership discount?"];
    for question in pets.iter().chain(&gym) {
        let (_, answer) = chat(addr, &hr, question).await;
        assert_eq!(answer["kind"], "no_answer", "{question}: {answer}");
    }
    for question in crypto {
        let (_, answer) = chat(addr, &sales, question).await;
        assert_eq!(answer["kind"], "no_answer", "{question}: {answer}");
    }
    wait_for_gaps(&server, 6).await;

    let (status, list) = call(addr, "GET", "/v1/analytics/gaps", Some(&admin), None).await;
    assert_eq!(status, 200, "{list}");
    let gaps = list["gaps"].as_array().unwrap();
    let cluster_of = |question: &str| {
        gaps.iter()
            .find(|g| g["examples"].as_array().unwrap().iter().any(|e| e == question))
            .unwrap_or_else(|| panic!("{question}: {list}"))
    };
    let pet_gap = cluster_of(pets[0]);
    for question in &pets[1..] {
        assert_eq!(cluster_of(question)["id"], pet_gap["id"], "{question}: {list}");
    }
    assert_eq!(pet_gap["count"], 3);
    assert_eq!(cluster_of(crypto[0])["id"], cluster_of(crypto[1])["id"], "{list}");
    assert_ne!(cluster_of(crypto[0])["id"], pet_gap["id"]);
    assert_ne!(cluster_of(gym[0])["id"], pet_gap["id"]);
    assert_ne!(cluster_of(gym[0])["id"], cluster_of(crypto[0])["id"]);
    assert_eq!(gaps.len(), 3, "{list}");
    assert_eq!(pet_gap["status"], "open");
    assert_eq!(pet_gap["departments"], json!(["hr"]));

    // A knowledge manager of sales sees the sales question only; a dismissed gap leaves the open list.
    let (_, scoped) = call(addr, "GET", "/v1/analytics/gaps", Some(&km_sales), None).await;
    let ids: Vec<&Value> = scoped["gaps"].as_array().unwrap().iter().map(|g| &g["id"]).collect();
    assert_eq!(ids, [&cluster_of(crypto[0])["id"]], "{scoped}");
    let path = format!("/v1/analytics/gaps/{}", pet_gap["id"].as_str().unwrap());
    let (status, body) = call(addr, "PATCH", &path, Some(&km_sales), Some(json!({"status": "dismissed"}))).await;
    assert_eq!(status, 404, "not a sales gap");
    assert_eq!(body["code"], "gap_not_found", "{body}");
    let (status, updated) = call(addr, "PATCH", &path, Some(&admin), Some(json!({"status": "dismissed"}))).await;
    assert_eq!((status, updated["status"].as_str()), (200, Some("dismissed")), "{updated}");
    let (_, open) = call(addr, "GET", "/v1/analytics/gaps?status=open", Some(&admin), None).await;
    assert_eq!(open["gaps"].as_array().unwrap().len(), 2, "{open}");
    let (status, body) = call(addr, "GET", "/v1/analytics/gaps?status=closed", Some(&admin), None).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("`status`"), "{body}");
    let (status, headers, csv) = raw(addr, "GET", "/v1/analytics/gaps", &admin, None, &[("accept", "text/csv")]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(csv.lines().count(), 4, "{csv}");

    // A document that answers a gap marks it answered once it is indexed.
    let payroll = b"# Payroll\n\nSalaries are paid monthly by bank transfer in euros. Payment of salary in \
        bitcoin or any other cryptocurrency is not possible.";
    let (status, job) = upload(addr, &admin, "samples", "payroll.md", payroll.to_vec(), &[("acl", "everyone")]).await;
    assert_eq!(status, 202, "{job}");
    wait_for_job(addr, &admin, job["job"]["id"].as_str().unwrap()).await;
    let crypto_id = cluster_of(crypto[0])["id"].as_str().unwrap().to_owned();
    let mut gap = Value::Null;
    for _ in 0..100 {
        gap = call(addr, "GET", "/v1/analytics/gaps", Some(&admin), None).await.1["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == crypto_id.as_str())
            .cloned()
            .unwrap();
        if gap["status"] == "answered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gap["status"], "answered", "{gap}");
    assert_eq!(gap["answered_by"], job["document_id"], "{gap}");

    // A sales employee asks the pet question too: the sales manager sees the gap, with the
    // sales question only, and may not close a gap that is also HR's.
    let (_, answer) = chat(addr, &sales, "May I bring my dog along to work?").await;
    assert_eq!(answer["kind"], "no_answer", "{answer}");
    wait_for_gaps(&server, 7).await;
    let (_, scoped) = call(addr, "GET", "/v1/analytics/gaps", Some(&km_sales), None).await;
    let shared = scoped["gaps"].as_array().unwrap().iter().find(|g| g["id"] == pet_gap["id"]).cloned();
    let shared = shared.unwrap_or_else(|| panic!("{scoped}"));
    assert_eq!((shared["count"].as_u64(), &shared["departments"]), (Some(1), &json!(["sales"])), "{shared}");
    assert_eq!(shared["examples"], json!(["May I bring my dog along to work?"]));
    let (status, body) = call(addr, "PATCH", &path, Some(&km_sales), Some(json!({"status": "open"}))).await;
    assert_eq!(status, 403, "{body}");
}
