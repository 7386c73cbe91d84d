//! `/v1/search` over HTTP: filtered by the caller's key, stable error codes, hostile queries,
//! and a randomized permission test over search, chat citations and prompts.

use serde_json::{Value, json};

use lore_chat::testing::FakeProvider;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::Setup;
use crate::support::fixtures::{agents, post, samples};

fn documents(results: &Value) -> Vec<String> {
    results["results"].as_array().unwrap().iter().map(|r| r["document"]["path"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn search_is_filtered_by_the_callers_key() {
    let server = samples();
    let body = json!({"query": "What is the salary range for an Engineer I?", "limit": 5}).to_string();
    let (status, hr) = post(server, Some(&server.key_of("alice@acme.example")), "/v1/search", body.clone()).await;
    assert_eq!(status, 200, "{hr}");
    assert_eq!(documents(&hr)[0], "hr/salary-bands.md", "{hr}");
    assert!(hr["results"][0]["chunk"]["text"].as_str().unwrap().contains("Engineer"));
    for user in ["dana@acme.example", "carlos@acme.example"] {
        let (status, other) = post(server, Some(&server.key_of(user)), "/v1/search", body.clone()).await;
        assert_eq!(status, 200);
        assert!(documents(&other).iter().all(|d| !d.starts_with("hr/")), "{user} saw HR documents: {other}");
        assert_eq!(other["results"].as_array().unwrap().len(), 5, "top-k must be filled with permitted chunks");
    }
}

#[tokio::test]
async fn bad_requests_get_stable_codes_and_clear_messages() {
    let server = samples();
    let key = server.key_of("carlos@acme.example");
    let valid = json!({"query": "vacation"}).to_string();
    let cases: Vec<(Option<&str>, String, u16, &str, &str)> = vec![
        (None, valid.clone(), 401, "missing_credentials", "Authorization"),
        (Some("lore_not-a-real-key"), valid.clone(), 401, "invalid_credentials", "credentials"),
        (Some(&key), "{\"query\": ".into(), 400, "invalid_request", "EOF"),
        (Some(&key), json!({"query": "x", "top": 3}).to_string(), 400, "invalid_request", "unknown field `top`"),
        (Some(&key), json!({"query": "   "}).to_string(), 400, "invalid_request", "must not be empty"),
        (Some(&key), json!({"query": "x", "limit": 0}).to_string(), 400, "invalid_request", "between 1 and"),
        (Some(&key), json!({"query": "x".repeat(300_000)}).to_string(), 413, "payload_too_large", "limit"),
    ];
    for (key, body, status, code, message) in cases {
        let (got_status, got) = post(server, key, "/v1/search", body).await;
        assert_eq!(got_status, status, "{got}");
        assert_eq!(got["code"], code, "{got}");
        assert!(got["message"].as_str().unwrap().contains(message), "{got}");
    }
    let (status, body) = post(server, Some(&key), "/v1/nothing-here", "{}".into()).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

/// Issue 12, item 6: user text never reaches a query syntax. Hostile search strings (query
/// operators, unbalanced quotes and brackets, deep nesting, control characters, RTL, CJK,
/// emoji, very long words) are searched as plain text: never a 500, never a crash.
#[tokio::test]
async fn hostile_search_queries_never_cause_server_errors() {
    const SEED: u64 = 0x1055_0012_0006_0500;
    #[rustfmt::skip]
    const POOL: &[&str] = &[
        "+", "-", "&&", "||", "!", "(", ")", "{", "}", "[", "]", "^", "\"", "~", "*", "?", ":", "\\", "/", "AND",
        "OR", "NOT", "IN", "TO", "'", "`", "*:*", "title_en:", "body_es:", "lang:", "acl:everyone", "[a TO z]",
        "{* TO *}", "^2", "~3", "^1e40", "-\"carry over\"", "\"e-mail\"", "'carry over'", "IN [a b]", "+vacation",
        "-vacation", "vacation", "salary", "e-mail", "3.5", "-5", "días", "vacaciones", "¿", "¡", "日本語", "한국어",
        "😀", "👩\u{200d}👩\u{200d}👧", "مرحبا", "שלום", "e\u{301}", "\u{0}", "\u{7}", "\u{1b}[31m", "\u{200b}",
        "\u{feff}", "\u{202e}", "\r\n", "\t", "\u{fffd}", "\u{10ffff}", "ß", "İ",
    ];
    fn hostile(rng: &mut StdRng) -> String {
        let mut out = String::new();
        for _ in 0..rng.random_range(1..16) {
            match rng.random_range(0..10) {
                0 => {
                    let pool = ['a', 'é', '-', '9', '.', '日', '"', '('];
                    out.extend(std::iter::repeat_n(pool[rng.random_range(0..pool.len())], rng.random_range(30..1000)));
                }
                1 => out.extend((0..rng.random_range(1..30)).map(|_| rng.random::<char>())),
                2 => out.extend(std::iter::repeat_n('(', rng.random_range(1..1000))),
                _ => out.push_str(POOL[rng.random_range(0..POOL.len())]),
            }
            if rng.random_bool(0.6) {
                out.push(' ');
            }
        }
        out.chars().take(3000).collect()
    }

    let server = samples();
    let key = server.key_of("alice@acme.example");
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut queries = vec![r#"vacation -"carry over""#.to_owned(), "(".repeat(2000) + "vacation", "   ".to_owned()];
    while queries.len() < 153 {
        let query = hostile(&mut rng);
        if !query.trim().is_empty() {
            queries.push(query);
        }
    }
    let mut ok = 0;
    for query in &queries {
        let body = json!({"query": query, "limit": 5}).to_string();
        let (status, response) = post(server, Some(&key), "/v1/search", body).await;
        assert_ne!(status, 500, "seed {SEED}: server error for {query:?}: {response}");
        let expected = if query.trim().is_empty() { 400 } else { 200 };
        assert_eq!(status, expected, "seed {SEED}: {query:?}: {response}");
        ok += usize::from(status == 200);
    }
    assert_eq!(ok, queries.len() - 1);
    let (status, response) =
        post(server, Some(&key), "/v1/search", json!({"query": r#"vacation -"carry over""#, "limit": 5}).to_string())
            .await;
    assert_eq!(status, 200, "{response}");
    assert!(!response["results"].as_array().unwrap().is_empty(), "{response}");
}

/// Random documents with random ACLs, random users, and a model provider (a loopback fake):
/// for a thousand (user, query) pairs, no search result, chat citation, streamed source or
/// passage in the prompt sent to the model lies outside the user's ACL, and k results come
/// back whenever k permitted exist.
#[tokio::test]
async fn randomized_permissions_over_http() {
    let mut rng = StdRng::seed_from_u64(20261126);
    let groups = ["hr", "sales", "eng", "legal", "ops", "finance"];
    let topics = ["vacation", "expenses", "laptop", "deployment", "contract", "invoice", "onboarding", "security"];
    let corpus = tempfile::tempdir().unwrap();
    let mut acl_of = std::collections::HashMap::new();
    for d in 0..80 {
        let mut acl: Vec<String> =
            groups.iter().filter(|_| rng.random_bool(0.2)).map(|g| format!("group:{g}")).collect();
        if rng.random_bool(0.1) {
            acl.push("everyone".into());
        }
        if acl.is_empty() {
            acl.push(format!("user:user{}", rng.random_range(0..12)));
        }
        let topic = topics[d % topics.len()];
        let text = format!(
            "---\nacl: {acl:?}\n---\n# Note {d} on {topic}\n\nThis note {d} explains the {topic} rules for team {}.\n",
            rng.random_range(0..100)
        );
        let name = format!("note-{d:02}.md");
        std::fs::write(corpus.path().join(&name), text).unwrap();
        acl_of.insert(name, acl);
    }
    let users: Vec<(String, Vec<String>)> = (0..12)
        .map(|u| (format!("user{u}"), groups.iter().filter(|_| rng.random_bool(0.3)).map(|g| g.to_string()).collect()))
        .collect();
    let fake = FakeProvider::scripted("primary", vec![]).await;
    let mut setup = Setup::new();
    setup.config.chat.providers = vec![fake.config(0, 5.0)];
    let keys = agents(&mut setup, users);
    let server = setup.source("random", corpus.path().to_owned(), &[], None).start();
    let client = reqwest::Client::new();
    let mut citations_checked = 0;
    let mut prompts_checked = 0;
    let note_of = |text: &str| -> Vec<String> {
        text.match_indices("Note ")
            .filter_map(|(i, _)| {
                let digits: String = text[i + 5..].chars().take_while(char::is_ascii_digit).collect();
                (!digits.is_empty()).then(|| format!("note-{:02}.md", digits.parse::<usize>().unwrap()))
            })
            .collect()
    };
    for _ in 0..1000 {
        let (user, key, user_groups) = &keys[rng.random_range(0..keys.len())];
        let k = rng.random_range(1..15);
        let query = format!("{} rules", topics[rng.random_range(0..topics.len())]);
        let response = client
            .post(format!("http://{}/v1/search", server.addr))
            .bearer_auth(key)
            .json(&json!({"query": query, "limit": k}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let principals: Vec<String> = ["everyone".to_owned(), format!("user:{user}")]
            .into_iter()
            .chain(user_groups.iter().map(|g| format!("group:{g}")))
            .collect();
        let permitted = acl_of.values().filter(|acl| acl.iter().any(|p| principals.contains(p))).count();
        let paths = documents(&body);
        for path in &paths {
            let acl = &acl_of[path];
            assert!(acl.iter().any(|p| principals.contains(p)), "{user} {principals:?} got {path} with ACL {acl:?}");
        }
        assert_eq!(paths.len(), k.min(permitted), "{user}: {k} requested, {permitted} permitted, got {}", paths.len());

        // Chat (JSON or streamed) cites, streams and prompts only what the ACL allows.
        if rng.random_bool(0.2) {
            let stream = rng.random_bool(0.5);
            let prompts_before = fake.prompts().len();
            let response = client
                .post(format!("http://{}/v1/chat", server.addr))
                .bearer_auth(key)
                .json(&json!({"question": query, "stream": stream}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let mut cited: Vec<Value> = Vec::new();
            if stream {
                let body = response.text().await.unwrap();
                for block in body.split("\n\n") {
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else { continue };
                    let event: Value = serde_json::from_str(data).unwrap();
                    for field in ["sources", "citations"] {
                        cited.extend(event[field].as_array().cloned().unwrap_or_default());
                    }
                }
            } else {
                let answer: Value = response.json().await.unwrap();
                cited.extend(answer["citations"].as_array().cloned().unwrap_or_default());
            }
            for citation in &cited {
                let path = citation["source_path"].as_str().unwrap().trim_start_matches("random/");
                let acl = &acl_of[path];
                assert!(acl.iter().any(|p| principals.contains(p)), "chat cited {path} ({acl:?}) to {principals:?}");
                citations_checked += 1;
            }
            for prompt in &fake.prompts()[prompts_before..] {
                for path in note_of(prompt) {
                    let acl = &acl_of[&path];
                    assert!(
                        acl.iter().any(|p| principals.contains(p)),
                        "prompt for {principals:?} held {path} ({acl:?})"
                    );
                    prompts_checked += 1;
                }
            }
        }
    }
    assert!(citations_checked > 100, "only {citations_checked} chat citations checked");
    assert!(prompts_checked > 100, "only {prompts_checked} prompt passages checked");
}
