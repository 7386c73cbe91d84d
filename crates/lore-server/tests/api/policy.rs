//! Use policies, human review and verified answers (issue 16), over real HTTP with a loopback
//! provider: refusals by rule, both review flows with knowledge managers of the right and the
//! wrong department, and verified answers served only to askers who may read their citations.

use lore_chat::testing::{FakeProvider, Reply};
use lore_core::role::Role;
use lore_usage::CategoryConfig;
use serde_json::{Value, json};

use crate::support::client::call;
use crate::support::{Setup, TestServer};
use crate::usage::{events, key, raw};

const CONTRACTS: &str = "How long do standard customer contracts run?";
const LEAVE: &str = "How many weeks of parental leave does a parent get?";
const BONUS: &str = "How big is the bonus pool in 2026?";

/// Three collections: contracts (legal), benefits and compensation (hr; compensation is HR-only),
/// answered by `provider`, with `policy` as `[policy]`.
fn server(provider: &FakeProvider, policy: Value) -> TestServer {
    let mut setup = Setup::new();
    let write = |setup: &Setup, folder: &str, file: &str, text: &str| {
        let path = setup.folder(folder);
        std::fs::write(path.join(file), text).unwrap();
        path
    };
    let contracts = write(
        &setup,
        "contracts",
        "contract-terms.md",
        "# Customer contract terms\n\nStandard customer contracts run for 24 months and renew automatically for 12 \
         more months unless either side cancels in writing 60 days before the end of the term.\n",
    );
    let benefits = write(
        &setup,
        "benefits",
        "parental-leave.md",
        "# Parental leave\n\nEvery parent gets 16 weeks of fully paid parental leave, to be taken within the \
         child's first year.\n",
    );
    let compensation = write(
        &setup,
        "compensation",
        "bonus-pool.md",
        "# Bonus pool 2026\n\nThe 2026 bonus pool is 8 percent of base salary, paid in March after the annual \
         review.\n",
    );
    setup.config.usage.flush_interval_ms = 50;
    setup.config.usage.categories = vec![
        CategoryConfig {
            name: "IT".into(),
            examples: vec!["How do I connect to the VPN?".into(), "How do I reset my password?".into()],
        },
        CategoryConfig {
            name: "HR".into(),
            examples: vec!["How much parental leave do I get?".into(), "When is payday?".into()],
        },
    ];
    setup.config.chat.providers = vec![provider.config(0, 30.0)];
    setup.config.policy = serde_json::from_value(policy).unwrap();
    setup
        .source("contracts", contracts, &["group:staff"], Some("legal"))
        .source("benefits", benefits, &["group:staff"], Some("hr"))
        .source("compensation", compensation, &["group:hr"], Some("hr"))
        .start()
}

async fn ask(server: &TestServer, key: &str, question: &str) -> (u16, Value) {
    call(server.addr, "POST", "/v1/chat", Some(key), Some(json!({ "question": question }))).await
}

/// The answers a reply quotes its first passage with.
async fn quoting_provider() -> FakeProvider {
    FakeProvider::answering("model", |_| Reply::text("According to the policy it is as stated [1].")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn use_policies_refuse_by_keyword_pattern_and_category_for_the_departments_and_roles_they_name() {
    let provider = quoting_provider().await;
    let server = server(
        &provider,
        json!({ "rules": [
            { "id": "no-compensation", "departments": ["sales"], "keywords": ["bonus pool"],
              "message": "Compensation questions go to your HR partner.",
              "message_es": "Las preguntas de compensación van a tu contacto de RR. HH." },
            { "id": "no-legal-advice", "patterns": ["\\b(sue|lawsuit|demandar)\\b"],
              "message": "Lore does not give legal advice." },
            { "id": "agents-no-it", "roles": ["agent"], "categories": ["IT"],
              "message": "IT questions go to the service desk." },
        ]}),
    );
    let (sales, _) = key(&server, Role::Employee, "sam", &["staff"], Some("sales"));
    let (hr, _) = key(&server, Role::Employee, "hana", &["staff", "hr"], Some("hr"));
    let (agent, _) = key(&server, Role::Agent, "desk", &["staff"], None);

    let (status, refused) = ask(&server, &sales, BONUS).await;
    assert_eq!(status, 200, "{refused}");
    assert_eq!(refused["kind"], "refused", "{refused}");
    assert_eq!(refused["answer"], "Compensation questions go to your HR partner.");
    assert_eq!(refused["citations"], json!([]));
    // Accents and capitals do not matter; the Spanish message answers a Spanish question.
    let (_, spanish) = ask(&server, &sales, "¿De cuánto es el BONUS POOL de este año?").await;
    assert_eq!(spanish["answer"], "Las preguntas de compensación van a tu contacto de RR. HH.", "{spanish}");
    // The rule names sales: HR asks the same and gets the answer.
    let (_, answered) = ask(&server, &hr, BONUS).await;
    assert_eq!(answered["kind"], "generated", "{answered}");
    // A pattern applies to everyone.
    let (_, legal) = ask(&server, &hr, "Can we sue a customer who never paid?").await;
    assert_eq!(
        (legal["kind"].as_str(), legal["answer"].as_str()),
        (Some("refused"), Some("Lore does not give legal advice."))
    );
    // A category rule for agents only.
    let (_, it) = ask(&server, &agent, "How can I connect to the VPN from home?").await;
    assert_eq!(it["answer"], "IT questions go to the service desk.", "{it}");
    let (_, employee_it) = ask(&server, &sales, "How can I connect to the VPN from home?").await;
    assert_ne!(employee_it["kind"], "refused", "{employee_it}");
    // A refused stream is refused too.
    let (_, _, body) =
        raw(server.addr, "POST", "/v1/chat", &sales, Some(json!({"question": BONUS, "stream": true})), &[]).await;
    assert!(body.contains("event: final") && body.contains("\"kind\":\"refused\""), "{body}");

    // No model call for refusals: only HR's bonus question reached the provider.
    assert_eq!(provider.requests().len(), 1);
    let refused_events: Vec<_> = events(&server).into_iter().filter(|e| e.kind == "refused").collect();
    assert_eq!(refused_events.len(), 5);
    assert!(refused_events.iter().any(|e| e.category.as_deref() == Some("IT")));
    let audit = server
        .state
        .audit
        .query(&lore_core::audit::Query { action: Some("policy.refused".into()), ..Default::default() })
        .unwrap();
    let rules: Vec<&str> = audit.iter().map(|r| r.event.target.as_deref().unwrap()).collect();
    assert_eq!(rules, ["no-compensation", "no-compensation", "no-legal-advice", "agents-no-it", "no-compensation"]);
    // The refusal is part of the conversation, so a follow-up continues it.
    let conversation = refused["conversation_id"].as_str().unwrap();
    let (_, stored) = call(server.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&sales), None).await;
    assert_eq!(stored["messages"][1]["content"], "Compensation questions go to your HR partner.");
}

#[tokio::test(flavor = "multi_thread")]
async fn review_before_holds_the_answer_until_a_manager_of_the_department_releases_it() {
    let provider = quoting_provider().await;
    let server =
        server(&provider, json!({ "review": [{ "id": "contracts", "collections": ["contracts"], "mode": "before" }] }));
    let (agent, _) = key(&server, Role::Agent, "desk", &["staff"], None);
    let (legal_km, _) = key(&server, Role::KnowledgeManager, "lena", &["staff"], Some("legal"));
    let (hr_km, _) = key(&server, Role::KnowledgeManager, "hugo", &["staff"], Some("hr"));

    // Not critical: answered at once.
    let (status, leave) = ask(&server, &agent, LEAVE).await;
    assert_eq!((status, leave["kind"].as_str()), (200, Some("generated")), "{leave}");
    assert!(leave.get("review").is_none());

    let (status, held) = ask(&server, &agent, CONTRACTS).await;
    assert_eq!(status, 202, "{held}");
    assert_eq!(held["review"]["mode"], "before");
    assert!(held.get("answer").is_none(), "a held answer must not reach the asker: {held}");
    let id = held["review"]["id"].as_str().unwrap().to_owned();
    let (_, polled) = call(server.addr, "GET", &format!("/v1/reviews/{id}"), Some(&agent), None).await;
    assert_eq!((polled["status"].as_str(), polled["answer"].as_str()), (Some("pending"), None), "{polled}");
    let conversation = held["conversation_id"].as_str().unwrap();
    let (_, stored) = call(server.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&agent), None).await;
    assert!(stored["messages"][1]["content"].as_str().unwrap().contains("waiting"), "{stored}");
    // A held stream gets one review event, and no text.
    let (_, _, body) =
        raw(server.addr, "POST", "/v1/chat", &agent, Some(json!({"question": CONTRACTS, "stream": true})), &[]).await;
    assert!(body.contains("event: review") && !body.contains("event: delta"), "{body}");

    // The wrong department's manager neither sees nor decides it.
    let (_, queue) = call(server.addr, "GET", "/v1/reviews", Some(&hr_km), None).await;
    assert_eq!(queue["reviews"], json!([]), "{queue}");
    let decision = json!({"action": "approve"});
    let (status, _) =
        call(server.addr, "POST", &format!("/v1/reviews/{id}/decision"), Some(&hr_km), Some(decision.clone())).await;
    assert_eq!(status, 404);
    let (status, _) =
        call(server.addr, "POST", &format!("/v1/reviews/{id}/decision"), Some(&agent), Some(decision)).await;
    assert_eq!(status, 404);
    let (_, stats) = call(server.addr, "GET", "/v1/analytics/reviews", Some(&legal_km), None).await;
    assert_eq!(stats["pending"], 2, "{stats}");
    assert!(stats["oldest_pending_age_ms"].as_i64().unwrap() >= 0);

    // Legal's manager edits it: an invented citation marker is dropped.
    let (_, queue) = call(server.addr, "GET", "/v1/reviews", Some(&legal_km), None).await;
    assert_eq!(queue["reviews"].as_array().unwrap().len(), 2);
    let edit = json!({"action": "edit", "answer": "Contracts run for 24 months and renew for 12 [1], see [7]."});
    let (status, decided) =
        call(server.addr, "POST", &format!("/v1/reviews/{id}/decision"), Some(&legal_km), Some(edit.clone())).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["status"], "edited");
    let (status, _) =
        call(server.addr, "POST", &format!("/v1/reviews/{id}/decision"), Some(&legal_km), Some(edit)).await;
    assert_eq!(status, 409, "a decided review cannot be decided again");
    let (_, released) = call(server.addr, "GET", &format!("/v1/reviews/{id}"), Some(&agent), None).await;
    assert_eq!(released["status"], "edited");
    assert_eq!(released["answer"], "Contracts run for 24 months and renew for 12 [1], see.");
    assert_eq!(released["citations"].as_array().unwrap().len(), 1);
    assert!(released["citations"][0]["source_path"].as_str().unwrap().starts_with("contracts/"));
    let (_, stored) = call(server.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&agent), None).await;
    assert_eq!(stored["messages"][1]["content"], "Contracts run for 24 months and renew for 12 [1], see.");
    assert_eq!(stored["messages"][1]["meta"]["review"]["status"], "edited");

    // The other one is rejected; the asker learns why.
    let other = queue["reviews"].as_array().unwrap().iter().find(|r| r["id"] != id.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reject = json!({"action": "reject", "reason": "the renewal terms changed in 2026"});
    let (status, _) =
        call(server.addr, "POST", &format!("/v1/reviews/{other}/decision"), Some(&legal_km), Some(reject)).await;
    assert_eq!(status, 200);
    let (_, rejected) = call(server.addr, "GET", &format!("/v1/reviews/{other}"), Some(&agent), None).await;
    assert_eq!((rejected["status"].as_str(), rejected["answer"].as_str()), (Some("rejected"), None));
    assert_eq!(rejected["reason"], "the renewal terms changed in 2026");
    let (_, stats) = call(server.addr, "GET", "/v1/analytics/reviews", Some(&legal_km), None).await;
    assert_eq!(stats["pending"], 0);
    let audit = server
        .state
        .audit
        .query(&lore_core::audit::Query { action: Some("review.".into()), ..Default::default() })
        .unwrap();
    let actions: Vec<&str> = audit.iter().map(|r| r.event.action.as_str()).collect();
    assert_eq!(actions, ["review.queue", "review.queue", "review.edit", "review.reject"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn review_after_delivers_the_answer_marked_and_queues_it_for_the_department() {
    let provider = quoting_provider().await;
    let server =
        server(&provider, json!({ "review": [{ "id": "contracts", "collections": ["contracts"], "mode": "after" }] }));
    let (employee, _) = key(&server, Role::Employee, "erin", &["staff"], Some("sales"));
    let (legal_km, _) = key(&server, Role::KnowledgeManager, "lena", &["staff"], Some("legal"));
    let (hr_km, _) = key(&server, Role::KnowledgeManager, "hugo", &["staff"], Some("hr"));
    let (status, answer) = ask(&server, &employee, CONTRACTS).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["kind"], "generated");
    assert!(answer["answer"].as_str().unwrap().contains("[1]"));
    assert_eq!(
        (answer["review"]["mode"].as_str(), answer["review"]["status"].as_str()),
        (Some("after"), Some("pending"))
    );
    // Streamed: the text streams, and the review mark follows the final answer.
    let (_, _, body) =
        raw(server.addr, "POST", "/v1/chat", &employee, Some(json!({"question": CONTRACTS, "stream": true})), &[])
            .await;
    let final_at = body.find("event: final").expect("a final event");
    assert!(body.contains("event: delta") && body[final_at..].contains("event: review"), "{body}");

    let (_, queue) = call(server.addr, "GET", "/v1/reviews", Some(&legal_km), None).await;
    assert_eq!(queue["reviews"].as_array().unwrap().len(), 2, "{queue}");
    assert_eq!(queue["reviews"][0]["departments"], json!(["legal"]));
    let (_, other) = call(server.addr, "GET", "/v1/reviews", Some(&hr_km), None).await;
    assert_eq!(other["reviews"], json!([]));
    let id = answer["review"]["id"].as_str().unwrap();
    let (status, _) = call(
        server.addr,
        "POST",
        &format!("/v1/reviews/{id}/decision"),
        Some(&legal_km),
        Some(json!({"action": "approve"})),
    )
    .await;
    assert_eq!(status, 200);
    let conversation = answer["conversation_id"].as_str().unwrap();
    let (_, stored) =
        call(server.addr, "GET", &format!("/v1/conversations/{conversation}"), Some(&employee), None).await;
    assert_eq!(stored["messages"][1]["meta"]["review"]["status"], "approved");
    assert_eq!(stored["messages"][1]["content"], answer["answer"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_answers_are_served_without_a_model_only_to_askers_who_may_read_their_citations() {
    let provider = quoting_provider().await;
    let server = server(&provider, json!({ "verified": { "threshold": 0.9 } }));
    let (hr_employee, _) = key(&server, Role::Employee, "hana", &["staff", "hr"], Some("hr"));
    let (staff, _) = key(&server, Role::Employee, "sol", &["staff"], Some("hr"));
    let (hr_km, _) = key(&server, Role::KnowledgeManager, "hugo", &["staff", "hr"], Some("hr"));
    let (legal_km, _) = key(&server, Role::KnowledgeManager, "lena", &["staff"], Some("legal"));

    // HR's manager promotes an answer about the HR-only bonus pool, from its feedback.
    let (_, first) = ask(&server, &hr_employee, BONUS).await;
    assert_eq!(first["kind"], "generated", "{first}");
    let vote = json!({"message_id": first["message_id"], "rating": "up"});
    let (status, feedback) = call(server.addr, "POST", "/v1/feedback", Some(&hr_employee), Some(vote)).await;
    assert_eq!(status, 201, "{feedback}");
    let promote = json!({
        "from_feedback": feedback["id"],
        "answer": "The 2026 bonus pool is 8 percent of base salary, paid in March [1].",
        "questions": ["What percentage is the bonus pool this year?", "¿De cuánto es la bolsa de bonus de 2026?"],
    });
    let (status, _) = call(server.addr, "POST", "/v1/verified", Some(&legal_km), Some(promote.clone())).await;
    assert_eq!(status, 404, "another department's manager cannot promote HR's feedback");
    let (status, verified) = call(server.addr, "POST", "/v1/verified", Some(&hr_km), Some(promote)).await;
    assert_eq!(status, 201, "{verified}");
    assert_eq!(verified["department"], "hr");
    let calls = provider.requests().len();

    // An HR employee gets it for the same question and for a close one, without a model call.
    for question in [BONUS, "What percentage is the bonus pool this year?"] {
        let (_, answer) = ask(&server, &hr_employee, question).await;
        assert_eq!(answer["kind"], "verified", "{question}: {answer}");
        assert_eq!(answer["answer"], "The 2026 bonus pool is 8 percent of base salary, paid in March [1].");
        assert!(answer["citations"][0]["source_path"].as_str().unwrap().starts_with("compensation/"));
    }
    assert_eq!(provider.requests().len(), calls, "a verified answer needs no model");
    // Not in a language the embedding model was trained on, even word for word.
    let (_, spanish) = ask(&server, &hr_employee, "¿De cuánto es la bolsa de bonus de 2026?").await;
    assert_ne!(spanish["kind"], "verified", "{spanish}");
    // Someone who may not read the bonus document never gets it.
    let (_, answer) = ask(&server, &staff, BONUS).await;
    assert_ne!(answer["kind"], "verified", "{answer}");
    assert!(!answer.to_string().contains("8 percent"), "{answer}");
    // A different question is not matched.
    let (_, leave) = ask(&server, &hr_employee, LEAVE).await;
    assert_eq!(leave["kind"], "generated", "{leave}");
    let verified_events = events(&server).into_iter().filter(|e| e.kind == "verified").count();
    assert_eq!(verified_events, 2);

    // Managers list and delete their own department's only.
    let (_, listed) = call(server.addr, "GET", "/v1/verified", Some(&legal_km), None).await;
    assert_eq!(listed["verified"], json!([]));
    let id = verified["id"].as_str().unwrap();
    let (status, _) = call(server.addr, "DELETE", &format!("/v1/verified/{id}"), Some(&legal_km), None).await;
    assert_eq!(status, 404);
    let (status, _) = call(server.addr, "DELETE", &format!("/v1/verified/{id}"), Some(&hr_km), None).await;
    assert_eq!(status, 204);
    let (_, after) = ask(&server, &hr_employee, BONUS).await;
    assert_eq!(after["kind"], "generated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thumbs_down_becomes_an_eval_case_in_one_call() {
    let provider = quoting_provider().await;
    let server = server(&provider, json!({}));
    let (employee, _) = key(&server, Role::Employee, "erin", &["staff"], Some("hr"));
    let (hr_km, _) = key(&server, Role::KnowledgeManager, "hugo", &["staff"], Some("hr"));
    let (_, answer) = ask(&server, &employee, LEAVE).await;
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": "it is 18 weeks now"});
    let (_, feedback) = call(server.addr, "POST", "/v1/feedback", Some(&employee), Some(vote)).await;
    let path = format!("/v1/feedback/{}/eval-case", feedback["id"]);
    let (status, error) = call(server.addr, "POST", &path, Some(&hr_km), Some(json!({}))).await;
    assert_eq!(status, 400, "{error}");
    let body = json!({"relevant": ["benefits/parental-leave.md"], "reference_answer": "18 weeks", "groups": ["staff"]});
    let (status, made) = call(server.addr, "POST", &path, Some(&hr_km), Some(body)).await;
    assert_eq!(status, 200, "{made}");
    let line: Value = serde_json::from_str(made["line"].as_str().unwrap()).unwrap();
    assert_eq!(line["question"], LEAVE);
    assert_eq!(line["relevant"], json!(["benefits/parental-leave.md"]));
    assert_eq!(line["asker"]["groups"], json!(["staff"]));
    assert!(!made.to_string().contains("erin"), "the voter stays out of the eval set: {made}");
}

#[tokio::test(flavor = "multi_thread")]
async fn department_assistants_are_versioned_and_name_themselves_in_the_prompt_and_its_version() {
    let provider = quoting_provider().await;
    let server = server(
        &provider,
        json!({ "notice": { "text": "Use Lore for work questions only.", "link": "https://intranet.example/ai" } }),
    );
    let (hr_employee, _) = key(&server, Role::Employee, "hana", &["staff"], Some("hr"));
    let (sales, _) = key(&server, Role::Employee, "sam", &["staff"], Some("sales"));
    let (hr_km, _) = key(&server, Role::KnowledgeManager, "hugo", &["staff"], Some("hr"));
    let (admin, _) = key(&server, Role::Admin, "root", &[], None);
    let petra = json!({"name": "Petra", "greeting": "Hi, I answer HR questions.", "tone": "warm and brief",
                       "instructions": "Point people to the HR portal for forms."});

    // Only HR's managers (and admins) edit HR's assistant; only admins the company default.
    let (status, _) = call(server.addr, "PUT", "/v1/assistants/hr", Some(&hr_employee), Some(petra.clone())).await;
    assert_eq!(status, 403);
    let (status, _) = call(server.addr, "PUT", "/v1/assistants/company", Some(&hr_km), Some(petra.clone())).await;
    assert_eq!(status, 403);
    let (status, bad) = call(server.addr, "PUT", "/v1/assistants/hr", Some(&hr_km), Some(json!({"name": ""}))).await;
    assert_eq!(status, 400, "{bad}");
    let (status, first) = call(server.addr, "PUT", "/v1/assistants/hr", Some(&hr_km), Some(petra.clone())).await;
    assert_eq!((status, first["version"].as_i64()), (200, Some(1)), "{first}");
    let edited = json!({"name": "Petra", "greeting": "Hi, I answer HR questions.", "tone": "warm and brief",
                        "instructions": "Point people to the HR portal at hr.example for forms."});
    let (_, second) = call(server.addr, "PUT", "/v1/assistants/hr", Some(&hr_km), Some(edited)).await;
    assert_eq!(second["version"], 2);
    let (_, history) = call(server.addr, "GET", "/v1/assistants/hr/history", Some(&hr_km), None).await;
    assert_eq!(history["assistants"].as_array().unwrap().len(), 2);
    let company = json!({"name": "Acme Helper", "greeting": "Ask me anything about Acme."});
    let (status, _) = call(server.addr, "PUT", "/v1/assistants/company", Some(&admin), Some(company)).await;
    assert_eq!(status, 200);

    // Each asker gets their department's assistant, else the company's, with the notice.
    let (_, mine) = call(server.addr, "GET", "/v1/assistant", Some(&hr_employee), None).await;
    assert_eq!((mine["name"].as_str(), mine["greeting"].as_str()), (Some("Petra"), Some("Hi, I answer HR questions.")));
    assert_eq!(mine["notice"]["link"], "https://intranet.example/ai");
    let (_, theirs) = call(server.addr, "GET", "/v1/assistant", Some(&sales), None).await;
    assert_eq!(theirs["name"], "Acme Helper");

    // The model hears the variant, and the answer's prompt version names it.
    let (_, answer) = ask(&server, &hr_employee, LEAVE).await;
    assert!(answer["prompt_version"].as_str().unwrap().ends_with("+assistant-hr-2"), "{answer}");
    let system = provider.requests().last().unwrap()["messages"][0]["content"].as_str().unwrap().to_owned();
    assert!(system.contains("called Petra") && system.contains("hr.example"), "{system}");
    let (_, other) = ask(&server, &sales, LEAVE).await;
    assert!(other["prompt_version"].as_str().unwrap().ends_with("+assistant-company-1"), "{other}");
    let audit = server
        .state
        .audit
        .query(&lore_core::audit::Query { action: Some("assistant.set".into()), ..Default::default() })
        .unwrap();
    assert_eq!(audit.len(), 3);
}
