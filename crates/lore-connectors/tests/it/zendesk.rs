//! The Zendesk connector against a loopback server speaking the Help Center API subset it uses:
//! locale article listings (offset pagination for one locale, cursor pagination for the other)
//! and user segments, behind basic auth with an API token.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lore_connectors::http::Http;
use lore_connectors::zendesk::{Credentials, ZendeskConfig, ZendeskConnector};
use lore_connectors::{Change, ConnectorError, Item, SyncState};
use serde_json::{Value, json};

/// `agent@acme.test/token:t0ken`, base64-encoded as Zendesk expects it.
const AUTHORIZATION: &str = "Basic YWdlbnRAYWNtZS50ZXN0L3Rva2VuOnQwa2Vu";

#[derive(Default)]
struct Fixture {
    base: String,
    locales: HashMap<String, LocaleFixture>,
    segments: HashMap<u64, Value>,
    /// A request key (`<locale>/<page index>`) answered with 429 once.
    throttle_once: Option<String>,
    /// Replaces the next-page link of every page, to point pagination somewhere else.
    next_page_override: Option<String>,
    /// Segments that answer 503 on every attempt.
    failing_segments: HashSet<u64>,
    /// Every request the server saw, as path and query.
    requests: Vec<String>,
}

struct LocaleFixture {
    articles: Vec<Value>,
    /// Articles per page, whatever `per_page` asks, so three pages need only a handful.
    page_size: usize,
    /// Cursor pagination (`meta.has_more`, `links.next`) instead of offset (`next_page`).
    cursor: bool,
}

type Shared = Arc<Mutex<Fixture>>;

async fn start(fixture: Fixture) -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shared = Arc::new(Mutex::new(Fixture { base: base.clone(), ..fixture }));
    let app = Router::new()
        .route("/api/v2/help_center/user_segments/{file}", get(user_segment))
        .route("/api/v2/help_center/{locale}/articles.json", get(articles))
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    (given != Some(AUTHORIZATION))
        .then(|| (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "Couldn't authenticate you"}))).into_response())
}

async fn articles(
    State(shared): State<Shared>,
    Path(locale): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut fixture = shared.lock().unwrap();
    let mut logged: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    logged.sort();
    fixture.requests.push(format!("/{locale}/articles.json?{}", logged.join("&")));
    if let Some(denied) = unauthorized(&headers) {
        return denied;
    }
    let base = fixture.base.clone();
    let next_page_override = fixture.next_page_override.clone();
    let Some(listing) = fixture.locales.get(&locale) else {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "InvalidLocale"}))).into_response();
    };
    let (cursor, page_size) = (listing.cursor, listing.page_size);
    let page = if cursor {
        query.get("page[after]").and_then(|c| c.strip_prefix("cur-")).map_or(0, |n| n.parse().unwrap())
    } else {
        query.get("page").map_or(0, |n| n.parse::<usize>().unwrap() - 1)
    };
    if fixture.throttle_once.as_deref() == Some(&format!("{locale}/{page}")) {
        fixture.throttle_once = None;
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "Too Many Requests").into_response();
    }
    let listing = &fixture.locales[&locale];
    let start = page * page_size;
    let batch: Vec<Value> = listing.articles.iter().skip(start).take(page_size).cloned().collect();
    let more = start + page_size < listing.articles.len();
    let list_url = format!("{base}/api/v2/help_center/{locale}/articles.json");
    let body = if cursor {
        let next = more.then(|| format!("{list_url}?page%5Bafter%5D=cur-{}&page%5Bsize%5D=100", page + 1));
        json!({
            "articles": batch,
            "meta": {"has_more": more, "after_cursor": next.as_ref().map(|_| format!("cur-{}", page + 1)), "before_cursor": null},
            "links": {"next": next_page_override.or(next), "prev": null},
        })
    } else {
        let next = more.then(|| format!("{list_url}?page={}&per_page=100", page + 2));
        json!({
            "articles": batch,
            "next_page": next_page_override.or(next),
            "previous_page": null,
            "count": listing.articles.len(),
            "page": page + 1,
            "per_page": 100,
            "page_count": listing.articles.len().div_ceil(page_size),
            "sort_by": "position",
            "sort_order": "asc",
        })
    };
    axum::Json(body).into_response()
}

async fn user_segment(State(shared): State<Shared>, Path(file): Path<String>, headers: HeaderMap) -> Response {
    let mut fixture = shared.lock().unwrap();
    fixture.requests.push(format!("/user_segments/{file}"));
    if let Some(denied) = unauthorized(&headers) {
        return denied;
    }
    let id: Option<u64> = file.strip_suffix(".json").and_then(|id| id.parse().ok());
    if id.is_some_and(|id| fixture.failing_segments.contains(&id)) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    match id.and_then(|id| fixture.segments.get(&id)) {
        Some(segment) => axum::Json(json!({"user_segment": segment})).into_response(),
        None => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "RecordNotFound"}))).into_response(),
    }
}

fn article(locale: &str, id: u64, title: &str, updated_at: &str, segment: Option<u64>) -> Value {
    let slug = title.replace(' ', "-");
    json!({
        "id": id,
        "url": format!("https://acme.zendesk.com/api/v2/help_center/{locale}/articles/{id}.json"),
        "html_url": format!("https://acme.zendesk.com/hc/{locale}/articles/{id}-{slug}"),
        "author_id": 9001,
        "comments_disabled": false,
        "draft": false,
        "promoted": false,
        "position": 0,
        "vote_sum": 0,
        "vote_count": 0,
        "section_id": 360_000_111,
        "created_at": "2025-11-02T08:00:00Z",
        "updated_at": updated_at,
        "edited_at": updated_at,
        "name": title,
        "title": title,
        "source_locale": "en-us",
        "locale": locale,
        "outdated": false,
        "outdated_locales": [],
        "permission_group_id": 4401,
        "user_segment_id": segment,
        "content_tag_ids": [],
        "label_names": ["faq"],
        "body": format!("<p>{title}: the answer.</p>"),
    })
}

fn segment(id: u64, user_type: &str, group_ids: &[u64], organization_ids: &[u64]) -> Value {
    json!({
        "id": id,
        "user_type": user_type,
        "name": format!("Segment {id}"),
        "group_ids": group_ids,
        "organization_ids": organization_ids,
        "tags": [],
        "or_tags": [],
        "added_user_ids": [],
        "built_in": false,
        "created_at": "2025-10-01T00:00:00Z",
        "updated_at": "2025-10-01T00:00:00Z",
    })
}

fn help_centre() -> Fixture {
    let mut draft = article("en-us", 105, "Upcoming release", "2026-01-12T09:00:00Z", None);
    draft["draft"] = json!(true);
    let mut no_body = article("en-us", 106, "Broken article", "2026-01-12T09:00:00Z", None);
    no_body.as_object_mut().unwrap().remove("body");
    let mut two_segments = article("es", 107, "¿Cómo pido vacaciones?", "2026-01-11T10:00:00Z", None);
    two_segments["user_segment_ids"] = json!([10, 11]);
    let mut no_id = article("es", 0, "Sin id", "2026-01-11T10:00:00Z", None);
    no_id.as_object_mut().unwrap().remove("id");
    Fixture {
        locales: HashMap::from([
            (
                "en-us".to_owned(),
                LocaleFixture {
                    articles: vec![
                        article("en-us", 101, "Reset your password", "2026-01-10T09:00:00Z", None),
                        article("en-us", 102, "Billing FAQ", "2026-01-10T09:30:00Z", Some(10)),
                        article("en-us", 103, "Escalation runbook", "2026-01-10T10:00:00Z", Some(11)),
                        article("en-us", 104, "Partner pricing", "2026-01-10T11:00:00Z", Some(12)),
                        draft,
                        no_body,
                    ],
                    page_size: 2,
                    cursor: false,
                },
            ),
            (
                "es".to_owned(),
                LocaleFixture {
                    articles: vec![
                        article("es", 101, "Restablecer la contraseña", "2026-01-10T12:00:00Z", None),
                        two_segments,
                        no_id,
                    ],
                    page_size: 2,
                    cursor: true,
                },
            ),
        ]),
        segments: HashMap::from([
            (10, segment(10, "signed_in_users", &[], &[])),
            (11, segment(11, "staff", &[360_005], &[])),
            (12, segment(12, "signed_in_users", &[], &[77])),
            (13, segment(13, "staff", &[], &[])),
        ]),
        ..Fixture::default()
    }
}

fn connector(base: &str, locales: &[&str]) -> ZendeskConnector {
    let config = ZendeskConfig {
        base_url: format!("{base}/"),
        locales: locales.iter().map(|l| l.to_string()).collect(),
        email: "agent@acme.test".into(),
        token_env: "LORE_TEST_ZENDESK_TOKEN".into(),
        signed_in_group: "customers".into(),
        staff_group: "support-staff".into(),
    };
    let credentials = Credentials { email: config.email.clone(), api_token: "t0ken".into() };
    let http = fast_http();
    ZendeskConnector::new(config, credentials, http)
}

/// Struct-update syntax cannot build an `Http` outside its crate (its client is private).
fn fast_http() -> Http {
    let mut http = Http::new("lore-test").unwrap();
    http.max_attempts = 3;
    http.initial_backoff = Duration::from_millis(10);
    http
}

fn upserted<'a>(changes: &'a [Change], id: &str) -> &'a Item {
    changes
        .iter()
        .find_map(|c| match c {
            Change::Upsert(item) if item.id == id => Some(item),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{id} not upserted in {changes:#?}"))
}

fn summary(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .map(|c| match c {
            Change::Upsert(item) => {
                format!("upsert {} {} {:?}", item.id, item.path, item.acl.as_deref().unwrap_or_default())
            }
            Change::Delete { id, path } => format!("delete {id} {path}"),
        })
        .collect()
}

fn acl(principals: &[&str]) -> Option<Vec<String>> {
    Some(principals.iter().map(|p| p.to_string()).collect())
}

#[tokio::test]
async fn two_locales_sync_then_report_only_what_changed() {
    let (base, shared) = start(Fixture { throttle_once: Some("en-us/1".into()), ..help_centre() }).await;
    let zendesk = connector(&base, &["en-us", "es"]);

    let first = zendesk.sync(&SyncState::default()).await.unwrap();
    assert_eq!(
        summary(&first.changes),
        [
            r#"upsert en-us:101 en-us/101-reset-your-password.html ["everyone"]"#,
            r#"upsert en-us:102 en-us/102-billing-faq.html ["group:customers"]"#,
            r#"upsert en-us:103 en-us/103-escalation-runbook.html ["group:zendesk-group-360005"]"#,
            r#"upsert en-us:104 en-us/104-partner-pricing.html ["group:zendesk-org-77"]"#,
            r#"upsert es:101 es/101-restablecer-la-contrase-a.html ["everyone"]"#,
            r#"upsert es:107 es/107-c-mo-pido-vacaciones.html ["group:customers", "group:zendesk-group-360005"]"#,
        ],
        "the draft (105) and the malformed articles are left out"
    );
    let reset = upserted(&first.changes, "en-us:101");
    assert_eq!(reset.title.as_deref(), Some("Reset your password"));
    assert_eq!(reset.version, "2026-01-10T09:00:00Z");
    assert_eq!(reset.url.as_deref(), Some("https://acme.zendesk.com/hc/en-us/articles/101-Reset-your-password"));
    let html = String::from_utf8(reset.content.clone()).unwrap();
    assert!(html.contains("<title>Reset your password</title>"), "{html}");
    assert!(html.contains("<p>Reset your password: the answer.</p>"), "{html}");
    assert!(html.contains(r#"<html lang="en-us">"#), "{html}");

    let mut errors: Vec<_> = first.errors.iter().map(|e| (e.item.clone(), e.message.clone())).collect();
    errors.sort();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0], ("en-us:106".to_owned(), "the article has no body".to_owned()));
    assert!(errors[1].0.starts_with("es:") && errors[1].1.contains("no id"), "{errors:?}");

    {
        let fixture = shared.lock().unwrap();
        let requests = &fixture.requests;
        assert!(fixture.throttle_once.is_none(), "the 429 was served");
        let count = |wanted: &str| requests.iter().filter(|r| r.as_str() == wanted).count();
        assert_eq!(count("/en-us/articles.json?per_page=100"), 1);
        assert_eq!(count("/en-us/articles.json?page=2&per_page=100"), 2, "page 2 again after its 429: {requests:#?}");
        assert_eq!(count("/en-us/articles.json?page=3&per_page=100"), 1);
        assert_eq!(count("/es/articles.json?page[after]=cur-1&page[size]=100"), 1, "{requests:#?}");
        assert_eq!(count("/user_segments/10.json"), 1, "a segment is read once per sync however many use it");
        assert_eq!(count("/user_segments/11.json"), 1);
    }

    {
        let mut fixture = shared.lock().unwrap();
        let en = &mut fixture.locales.get_mut("en-us").unwrap().articles;
        // 101: only its segment changes, as when an admin restricts it; its updated_at stays.
        en[0]["user_segment_id"] = json!(13);
        // 102: renamed.
        en[1]["title"] = json!("Billing and invoices FAQ");
        en[1]["updated_at"] = json!("2026-02-01T08:00:00Z");
        // 104: its body goes missing, which drops it rather than keep an ACL nobody checked.
        en[3].as_object_mut().unwrap().remove("body");
        // 103: deleted.
        en.remove(2);
    }
    let second = zendesk.sync(&first.state).await.unwrap();
    assert_eq!(
        summary(&second.changes),
        [
            r#"upsert en-us:101 en-us/101-reset-your-password.html ["group:support-staff"]"#,
            "delete en-us:102 en-us/102-billing-faq.html",
            r#"upsert en-us:102 en-us/102-billing-and-invoices-faq.html ["group:customers"]"#,
            "delete en-us:103 en-us/103-escalation-runbook.html",
            "delete en-us:104 en-us/104-partner-pricing.html",
        ],
        "unchanged articles (es:101, es:107) are not reported"
    );
    assert_eq!(upserted(&second.changes, "en-us:101").acl, acl(&["group:support-staff"]));
    assert_eq!(upserted(&second.changes, "en-us:102").version, "2026-02-01T08:00:00Z");
    assert_eq!(second.errors.len(), 3, "{:?}", second.errors);
    assert!(second.errors.iter().any(|e| e.item == "en-us:104"));
    let ids: Vec<_> = second.state.items.keys().cloned().collect();
    assert_eq!(ids, ["en-us:101", "en-us:102", "es:101", "es:107"]);

    {
        let mut fixture = shared.lock().unwrap();
        let en = &mut fixture.locales.get_mut("en-us").unwrap().articles;
        en[2]["body"] = json!("<p>Partner pricing: the answer.</p>");
        // Segment 10 (102 and es:107) is down for the whole sync: a fault that may pass.
        fixture.failing_segments.insert(10);
    }
    let third = zendesk.sync(&second.state).await.unwrap();
    assert_eq!(
        summary(&third.changes),
        [r#"upsert en-us:104 en-us/104-partner-pricing.html ["group:zendesk-org-77"]"#],
        "104 is back; 102 and es:107 are neither deleted nor upserted while their segment is down"
    );
    let mut failed: Vec<_> = third.errors.iter().map(|e| e.item.as_str()).collect();
    failed.sort();
    assert_eq!(failed, ["en-us:102", "en-us:106", "es: article #3 of the listing", "es:107"]);
    let segment_10_reads = shared.lock().unwrap().requests.iter().filter(|r| *r == "/user_segments/10.json").count();
    assert_eq!(segment_10_reads, 1 + 1 + 3, "one read a sync, failures too: 3 attempts for two articles");
    assert_eq!(third.state.items["en-us:102"], second.state.items["en-us:102"]);
    assert_eq!(third.state.items["es:107"], second.state.items["es:107"]);
    assert_eq!(third.state.items.len(), 5);
}

#[tokio::test]
async fn a_locale_or_a_token_the_help_centre_refuses_fails_the_whole_sync() {
    let (base, _shared) = start(help_centre()).await;
    let previous = connector(&base, &["en-us"]).sync(&SyncState::default()).await.unwrap().state;

    let unknown_locale = connector(&base, &["en-us", "fr"]).sync(&previous).await;
    match unknown_locale {
        Err(ConnectorError::Http(e)) => assert_eq!(e.status(), Some(404)),
        other => panic!("a locale that cannot be listed must not read as every article deleted: {other:?}"),
    }

    let config = zendesk_config_from_json(&base);
    let wrong_token = Credentials { email: "agent@acme.test".into(), api_token: "expired".into() };
    let http = fast_http();
    match ZendeskConnector::new(config, wrong_token, http).sync(&previous).await {
        Err(ConnectorError::Http(e)) => assert_eq!(e.status(), Some(401)),
        other => panic!("expected a 401: {other:?}"),
    }
}

#[tokio::test]
async fn an_article_whose_segment_is_gone_is_dropped_and_the_others_sync() {
    let (base, shared) = start(help_centre()).await;
    let zendesk = connector(&base, &["en-us"]);
    let first = zendesk.sync(&SyncState::default()).await.unwrap();
    assert_eq!(first.changes.len(), 4);
    shared.lock().unwrap().segments.remove(&11);
    let second = zendesk.sync(&first.state).await.unwrap();
    assert_eq!(
        summary(&second.changes),
        ["delete en-us:103 en-us/103-escalation-runbook.html"],
        "an ACL that cannot be checked any more is not kept"
    );
    let failed = second.errors.iter().find(|e| e.item == "en-us:103").expect("103 is an item error");
    assert!(failed.message.contains("user segment 11"), "{failed:?}");
}

#[tokio::test]
async fn a_next_page_on_another_host_is_not_followed_with_the_token() {
    let (base, shared) =
        start(Fixture { next_page_override: Some("http://127.0.0.2:9/steal".into()), ..help_centre() }).await;
    match connector(&base, &["en-us"]).sync(&SyncState::default()).await {
        Err(ConnectorError::Source { message, .. }) => assert!(message.contains("127.0.0.2"), "{message}"),
        other => panic!("expected a refusal: {other:?}"),
    }
    assert_eq!(shared.lock().unwrap().requests.len(), 1);
}

fn zendesk_config_from_json(base: &str) -> ZendeskConfig {
    serde_json::from_value(json!({
        "base_url": base,
        "locales": ["en-us"],
        "email": "agent@acme.test",
        "token_env": "LORE_ZENDESK_TOKEN",
    }))
    .unwrap()
}

#[test]
fn config_has_group_defaults_and_rejects_unknown_fields_such_as_an_inline_token() {
    let config = zendesk_config_from_json("https://acme.zendesk.com");
    assert_eq!((config.signed_in_group.as_str(), config.staff_group.as_str()), ("zendesk-signed-in", "zendesk-staff"));
    let inline_token = serde_json::from_value::<ZendeskConfig>(json!({
        "base_url": "https://acme.zendesk.com",
        "locales": ["en-us"],
        "email": "agent@acme.test",
        "token_env": "LORE_ZENDESK_TOKEN",
        "token": "s3cret",
    }));
    assert!(inline_token.is_err());
}
