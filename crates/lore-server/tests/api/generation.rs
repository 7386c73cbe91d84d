//! Generation through OpenAI-compatible providers, against real HTTP servers on loopback
//! that speak the chat-completions protocol with scripted replies, failures and delays.

use std::sync::Arc;
use std::time::Duration;

use lore_chat::conversations::Conversations;
use lore_chat::testing::{FakeProvider, Reply};
use lore_chat::{ChatEngine, Question};
use lore_core::acl::{AccessScope, PrincipalSet};
use lore_core::config::{ChatConfig, ProviderConfig};

use crate::support::{sample_catalog, sample_retriever, uncached_sample_retriever};

fn engine(providers: Vec<ProviderConfig>) -> ChatEngine {
    engine_with(ChatConfig { providers, ..ChatConfig::default() })
}

fn engine_with(config: ChatConfig) -> ChatEngine {
    engine_over(sample_retriever(), config)
}

/// An engine whose retriever keeps no vectors, so weighing the evidence embeds the candidate
/// sentences each time (as for a first question) instead of finding them cached by other tests.
fn uncached_engine(config: ChatConfig) -> ChatEngine {
    engine_over(uncached_sample_retriever(), config)
}

fn engine_over(retriever: Arc<lore_chat::Retriever>, config: ChatConfig) -> ChatEngine {
    let config = ChatConfig { company: "Acme Robotics".into(), ..config };
    ChatEngine::new(retriever, Conversations::open(&sample_catalog()).unwrap(), &config).unwrap()
}

fn scope(user: &str, groups: &[&str]) -> AccessScope {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    AccessScope::impersonate_for_operator(PrincipalSet::for_user(user, &groups, &[]).unwrap(), "provider test")
}

const VACATION: &str = "How many days of paid vacation do I get?";

#[tokio::test]
async fn generated_answers_keep_valid_citations_and_drop_invented_ones() {
    let primary =
        FakeProvider::scripted("primary", vec![Reply::text("You get 25 days [1], see also [42] and [1, 77].")]).await;
    let engine = engine(vec![primary.config(0, 5.0)]);
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
    assert_eq!(answer.kind, lore_chat::answer::AnswerKind::Generated);
    assert_eq!(answer.answer, "You get 25 days [1], see also and [1].");
    assert_eq!(answer.citations.len(), 1);
    assert_eq!(answer.citations[0].marker, 1);
    assert_eq!(answer.model.as_deref(), Some("fake-primary"));
    assert_eq!(answer.prompt_version.as_deref(), Some("system-2026-11-26+answer-2026-11-30"));
    assert_eq!(answer.usage.as_ref().unwrap().prompt_tokens, 321);
    let requests = primary.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["model"], "fake-primary");
    let prompt = &primary.prompts()[0];
    assert!(prompt.contains(VACATION) && prompt.contains("[1] (Acme Robotics Employee Handbook"), "{prompt}");
    // The cited passage is the one numbered [1] in the prompt.
    assert!(prompt.contains(answer.citations[0].snippet.lines().next().unwrap()));
}

#[tokio::test]
async fn transient_errors_are_retried_then_the_fallback_answers() {
    let primary =
        FakeProvider::scripted("primary", vec![Reply::Status(500), Reply::Status(429), Reply::Status(503)]).await;
    let secondary = FakeProvider::scripted("secondary", vec![Reply::text("25 days [1].")]).await;
    let engine = engine(vec![primary.config(2, 5.0), secondary.config(2, 5.0)]);
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
    assert_eq!(answer.model.as_deref(), Some("fake-secondary"));
    assert_eq!((primary.requests().len(), secondary.requests().len()), (3, 1));
}

#[tokio::test]
async fn permanent_errors_move_on_without_retrying() {
    let primary = FakeProvider::scripted("primary", vec![Reply::Status(401)]).await;
    let secondary = FakeProvider::scripted("secondary", vec![Reply::text("25 days [1].")]).await;
    let engine = engine(vec![primary.config(3, 5.0), secondary.config(0, 5.0)]);
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
    assert_eq!(answer.model.as_deref(), Some("fake-secondary"));
    assert_eq!(primary.requests().len(), 1, "a 401 must not be retried");
}

#[tokio::test]
async fn timeouts_count_as_transient() {
    let primary = FakeProvider::scripted(
        "primary",
        vec![
            Reply::Delayed(Duration::from_millis(3000), "late [1]".into()),
            Reply::Delayed(Duration::from_millis(3000), "late [1]".into()),
        ],
    )
    .await;
    let secondary = FakeProvider::scripted("secondary", vec![Reply::text("on time [1].")]).await;
    let engine = engine(vec![primary.config(1, 0.3), secondary.config(0, 5.0)]);
    let started = std::time::Instant::now();
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
    assert_eq!(answer.answer, "on time [1].");
    assert_eq!(primary.requests().len(), 2);
    assert!(started.elapsed() < Duration::from_secs(3), "timeouts were not enforced");
}

#[tokio::test]
async fn when_every_provider_fails_the_answer_is_extracted_not_an_error() {
    let primary = FakeProvider::scripted("primary", vec![Reply::Status(503), Reply::Status(503)]).await;
    let engine = engine(vec![primary.config(1, 5.0)]);
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
    assert_eq!(answer.kind, lore_chat::answer::AnswerKind::Extracted);
    assert!(answer.answer.contains("25 days"));
    assert_eq!(answer.provider_errors.len(), 2);
    assert!(answer.model.is_none());
}

#[tokio::test]
async fn the_prompt_holds_only_passages_the_asker_may_read() {
    let question = "What are the salary bands for engineers, and how many vacation days do we get?";
    let fake = FakeProvider::scripted("primary", vec![Reply::text("See [1]."), Reply::text("See [1].")]).await;
    let engine = engine(vec![fake.config(0, 5.0)]);
    engine.ask(Question::new("dana", &scope("dana", &["sales"]), question)).await.unwrap();
    engine.ask(Question::new("alice", &scope("alice", &["hr"]), question)).await.unwrap();
    let prompts = fake.prompts();
    assert_eq!(prompts.len(), 2);
    for hr_only in ["Salary Bands", "$95,000", "Engineer II"] {
        assert!(!prompts[0].contains(hr_only), "HR-only text {hr_only:?} in a sales user's prompt");
    }
    // The same question from HR does bring the HR passages: the check above can fail.
    assert!(prompts[1].contains("Salary Bands"), "{}", prompts[1]);
}

const MONGOLIA: &str = "What is the capital of Mongolia?";

#[tokio::test]
async fn nothing_relevant_means_no_model_call_without_speculation() {
    let fake = FakeProvider::scripted("primary", vec![]).await;
    let engine = engine_with(ChatConfig {
        providers: vec![fake.config(0, 5.0)],
        speculative_generation: false,
        ..Default::default()
    });
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), MONGOLIA)).await.unwrap();
    assert_eq!(answer.kind, lore_chat::answer::AnswerKind::NoAnswer);
    assert!(fake.requests().is_empty());
    assert!(answer.usage.is_none() && answer.model.is_none());
}

/// With speculative generation (the default) the model is asked while the evidence is weighed;
/// an abstention cancels the call at once, and counts what it sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abstention_cancels_the_speculative_call_and_counts_its_prompt() {
    use lore_chat::answer::AnswerKind;
    use lore_chat::chat::ChatEvent;
    let slow =
        Reply::Stream { parts: vec!["Ulaanbaatar.".into()], first: Duration::from_secs(5), every: Duration::ZERO };
    let fake =
        FakeProvider::scripted("primary", vec![slow, Reply::Delayed(Duration::from_secs(5), "Late.".into())]).await;
    let engine = uncached_engine(ChatConfig { providers: vec![fake.config(0, 10.0)], ..Default::default() });

    let started = std::time::Instant::now();
    let events = collect(&engine, MONGOLIA).await;
    let ChatEvent::Final(answer) = events.last().unwrap() else { panic!("final must come last") };
    assert_eq!(answer.kind, AnswerKind::NoAnswer);
    assert!(started.elapsed() < Duration::from_secs(3), "the abstention waited for the model: {:?}", started.elapsed());
    assert_eq!(fake.requests().len(), 1, "the call starts before the evidence is in");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake.stream_was_cancelled(), "the abstention did not cancel the provider stream");
    let usage = answer.usage.as_ref().expect("the cancelled call's prompt is counted");
    assert!(usage.estimated && usage.prompt_tokens > 100 && usage.completion_tokens == 0, "{usage:?}");
    assert_eq!((answer.model.as_deref(), answer.provider.as_deref()), (Some("fake-primary"), Some("primary")));
    assert!(answer.citations.is_empty() && answer.prompt_version.is_none());

    let started = std::time::Instant::now();
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), MONGOLIA)).await.unwrap();
    assert_eq!(answer.kind, AnswerKind::NoAnswer);
    assert!(started.elapsed() < Duration::from_secs(3), "the abstention waited for the model: {:?}", started.elapsed());
    assert_eq!(fake.requests().len(), 2);
    assert!(answer.usage.as_ref().is_some_and(|u| u.estimated && u.prompt_tokens > 100));
}

/// The model is asked before the evidence is weighed, not after; the answer is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_speculative_call_reaches_the_provider_before_the_evidence_is_in() {
    use lore_chat::answer::AnswerKind;
    for speculative in [true, false] {
        let fake = FakeProvider::scripted("primary", vec![Reply::text("You get 25 days [1].")]).await;
        let engine = uncached_engine(ChatConfig {
            providers: vec![fake.config(0, 5.0)],
            speculative_generation: speculative,
            ..Default::default()
        });
        let started = std::time::Instant::now();
        let answer = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
        assert_eq!((answer.kind, answer.answer.as_str()), (AnswerKind::Generated, "You get 25 days [1]."));
        assert_eq!(answer.citations.len(), 1);
        // The engine's clock starts after the call to `ask` did; the provider's arrival is
        // measured from before it, so it can only look later than it was.
        let arrived = (fake.take_arrivals()[0] - started).as_secs_f64() * 1e3;
        let timings = &answer.timings;
        let called = timings.model_called_at_ms.expect("the model wrote the answer");
        if speculative {
            assert!(
                called + timings.answerability_ms <= timings.weighed_at_ms + 0.5,
                "the call did not start before the evidence was weighed: {timings:?}"
            );
            assert!(arrived < timings.weighed_at_ms, "the provider got the call at {arrived:.1} ms: {timings:?}");
        } else {
            assert!(called >= timings.weighed_at_ms && arrived >= timings.weighed_at_ms, "{timings:?}");
        }
    }
}

#[tokio::test]
async fn follow_ups_are_condensed_by_the_model() {
    let fake = FakeProvider::scripted(
        "primary",
        vec![
            Reply::text("25 days [1]."),
            Reply::text("vacation days carry over next year"),
            Reply::text("Up to 5 [1]."),
        ],
    )
    .await;
    let engine = engine(vec![fake.config(0, 5.0)]);
    let first = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
    let second = engine
        .ask(Question {
            conversation_id: Some(&first.conversation_id),
            ..Question::new("ann", &scope("ann", &[]), "Can I carry them over?")
        })
        .await
        .unwrap();
    assert_eq!(second.standalone_query, "vacation days carry over next year");
    let prompts = fake.prompts();
    assert!(
        prompts[1].contains("User: How many days of paid vacation") && prompts[1].contains("Can I carry them over?")
    );
    assert_eq!(second.answer, "Up to 5 [1].");
}

async fn collect(engine: &ChatEngine, question: &str) -> Vec<lore_chat::chat::ChatEvent> {
    let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
    engine.ask_streaming(Question::new("ann", &scope("ann", &[]), question), sender).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = receiver.recv().await {
        events.push(event);
    }
    events
}

#[tokio::test]
async fn streamed_answers_send_metadata_then_filtered_deltas_then_the_final_answer() {
    use lore_chat::chat::ChatEvent;
    let fake = FakeProvider::scripted(
        "primary",
        vec![Reply::stream(&["You get ", "25 days [", "1]. Also [", "9] ok."], Duration::from_millis(5))],
    )
    .await;
    let engine = engine(vec![fake.config(0, 5.0)]);
    let events = collect(&engine, VACATION).await;
    let ChatEvent::Metadata(metadata) = &events[0] else { panic!("metadata must come first") };
    assert_eq!(metadata.model.as_deref(), Some("fake-primary"));
    assert!(!metadata.sources.is_empty());
    let deltas: String = events
        .iter()
        .filter_map(|e| match e {
            ChatEvent::Delta(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    let ChatEvent::Final(answer) = events.last().unwrap() else { panic!("final must come last") };
    assert_eq!(deltas, "You get 25 days [1]. Also ok.");
    assert_eq!(answer.answer, deltas);
    assert_eq!(answer.citations.len(), 1);
    assert_eq!(fake.requests()[0]["stream"], true);
}

#[tokio::test]
async fn a_stream_that_fails_to_start_falls_back() {
    use lore_chat::chat::ChatEvent;
    let primary = FakeProvider::scripted("primary", vec![Reply::Status(500)]).await;
    let secondary =
        FakeProvider::scripted("secondary", vec![Reply::stream(&["25 days [1]."], Duration::from_millis(1))]).await;
    let engine = engine(vec![primary.config(0, 5.0), secondary.config(0, 5.0)]);
    let events = collect(&engine, VACATION).await;
    let ChatEvent::Final(answer) = events.last().unwrap() else { panic!() };
    assert_eq!(answer.model.as_deref(), Some("fake-secondary"));
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_generation() {
    use lore_chat::chat::ChatEvent;
    let parts = vec!["word "; 40];
    let fake = FakeProvider::scripted("primary", vec![Reply::stream(&parts, Duration::from_millis(100))]).await;
    let engine = Arc::new(engine(vec![fake.config(0, 10.0)]));
    let (sender, mut receiver) = tokio::sync::mpsc::channel(4);
    let task = {
        let engine = engine.clone();
        tokio::spawn(
            async move { engine.ask_streaming(Question::new("ann", &scope("ann", &[]), VACATION), sender).await },
        )
    };
    assert!(matches!(receiver.recv().await, Some(ChatEvent::Metadata(_))));
    assert!(matches!(receiver.recv().await, Some(ChatEvent::Delta(_))));
    drop(receiver); // the client disconnects
    tokio::time::timeout(Duration::from_secs(2), task).await.expect("generation stopped").unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake.stream_was_cancelled(), "provider stream was not closed");
    let sent = fake.chunks_sent();
    assert!(sent < 20, "the provider kept streaming after the client left ({sent} chunks)");
}

#[tokio::test]
async fn a_model_that_finds_no_answer_in_the_passages_gives_the_no_answer_reply() {
    use lore_chat::answer::AnswerKind;
    use lore_chat::chat::ChatEvent;
    let fake = FakeProvider::scripted(
        "primary",
        vec![
            Reply::text("NOT_COVERED"),
            // Streamed in pieces, with the emphasis and full stop models like to add.
            Reply::stream(&["**NOT", "_COV", "ERED**."], Duration::from_millis(2)),
            // Text that merely starts like the marker is an answer.
            Reply::stream(&["NOT", " every plan covers it [1]."], Duration::from_millis(2)),
        ],
    )
    .await;
    let engine = engine(vec![fake.config(0, 5.0)]);
    let answer = engine.ask(Question::new("ann", &scope("ann", &[]), VACATION)).await.unwrap();
    assert_eq!(answer.kind, AnswerKind::NoAnswer);
    assert_eq!(answer.answer, lore_chat::answer::no_answer_text(lore_core::lang::Lang::En));
    assert!(answer.citations.is_empty());
    assert_eq!(answer.model.as_deref(), Some("fake-primary"));
    // The prompt asked for the marker.
    assert!(fake.prompts()[0].contains("NOT_COVERED"));

    let events = collect(&engine, VACATION).await;
    let ChatEvent::Metadata(metadata) = &events[0] else { panic!("metadata must come first") };
    assert_eq!(metadata.kind, AnswerKind::NoAnswer);
    assert!(metadata.sources.is_empty());
    let ChatEvent::Final(answer) = events.last().unwrap() else { panic!("final must come last") };
    assert_eq!(answer.kind, AnswerKind::NoAnswer);
    assert!(events.iter().all(|e| !matches!(e, ChatEvent::Delta(text) if text.contains("NOT"))));

    let events = collect(&engine, VACATION).await;
    let ChatEvent::Metadata(metadata) = &events[0] else { panic!("metadata must come first") };
    assert_eq!(metadata.kind, AnswerKind::Generated);
    let ChatEvent::Final(answer) = events.last().unwrap() else { panic!("final must come last") };
    assert_eq!(answer.answer, "NOT every plan covers it [1].");
}
