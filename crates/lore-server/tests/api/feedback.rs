//! Feedback is seen by the managers of the departments responsible for it, and admins.

use std::net::SocketAddr;

use serde_json::json;

use crate::support::client::call;
use crate::support::fixtures::roles;

// Feedback is scoped to the departments responsible for it (issue 12, item 7).

/// `credential`'s view of `GET /v1/feedback`: the comments it shows.
async fn feedback_comments(addr: SocketAddr, credential: &str) -> Vec<String> {
    let (status, list) = call(addr, "GET", "/v1/feedback?limit=500", Some(credential), None).await;
    assert_eq!(status, 200, "{list}");
    list["feedback"].as_array().unwrap().iter().filter_map(|f| f["comment"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn feedback_is_seen_by_the_managers_of_its_departments_only() {
    let s = roles();
    let admin = &s.keys["admin"];
    // An HR employee signed in through SSO asks about something no document they can read covers.
    let hr_employee = s.idp.token_for("hr-worried", &["hr"], &["hr"], 300);
    let (status, answer) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&hr_employee),
        Some(json!({"question": "Am I on the list for next month's layoff?", "collections": ["eng"]})),
    )
    .await;
    assert_eq!((status, answer["kind"].as_str()), (200, Some("no_answer")), "{answer}");
    let comment = "HR layoff question: please tell me whether my team is affected";
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": comment});
    let (status, hr_entry) = call(s.addr, "POST", "/v1/feedback", Some(&hr_employee), Some(vote)).await;
    assert_eq!(status, 201, "{hr_entry}");

    // Someone without a department: their no-answer feedback is for admins only.
    let (status, answer) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&s.keys["nobody"]),
        Some(json!({"question": "Who decides the bonus pool?", "collections": ["eng"]})),
    )
    .await;
    assert_eq!((status, answer["kind"].as_str()), (200, Some("no_answer")), "{answer}");
    let orphan = "No department: who decides the bonus pool?";
    let vote = json!({"message_id": answer["message_id"], "rating": "down", "comment": orphan});
    let (status, stored) = call(s.addr, "POST", "/v1/feedback", Some(&s.keys["nobody"]), Some(vote)).await;
    assert_eq!(status, 201, "{stored}");

    let body = json!({"name": "km-sales", "role": "knowledge_manager", "user": "km-sales-user", "department": "sales"});
    let (status, km_sales) = call(s.addr, "POST", "/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{km_sales}");
    let km_sales = km_sales["key"].as_str().unwrap().to_owned();
    let sso_km_sales = s.idp.token_for("sso-km-sales", &["hr-km"], &["sales"], 300);
    let sso_km_hr = s.idp.token_for("sso-km-hr", &["hr-km"], &["hr"], 300);

    for (who, credential) in [("sales km key", &km_sales), ("sales km (sso)", &sso_km_sales)] {
        let seen = feedback_comments(s.addr, credential).await;
        assert!(!seen.iter().any(|c| c == comment), "{who} reads HR feedback: {seen:?}");
        assert!(!seen.iter().any(|c| c == orphan), "{who} reads feedback without a department: {seen:?}");
    }
    for (who, credential) in [("hr km key", &s.keys["km_hr"]), ("hr km (sso)", &sso_km_hr)] {
        let seen = feedback_comments(s.addr, credential).await;
        assert!(seen.iter().any(|c| c == comment), "{who} misses HR feedback: {seen:?}");
        assert!(!seen.iter().any(|c| c == orphan), "{who} reads feedback without a department: {seen:?}");
    }
    let seen = feedback_comments(s.addr, admin).await;
    assert!(seen.iter().any(|c| c == comment) && seen.iter().any(|c| c == orphan), "admins see all: {seen:?}");
    // The entry says whose it is.
    assert_eq!(hr_entry["departments"], json!(["hr"]), "{hr_entry}");

    // With citations, the cited documents' collections decide, not the asker: an engineering
    // manager's vote on an answer from HR documents is HR's to review.
    let (status, answer) = call(
        s.addr,
        "POST",
        "/v1/chat",
        Some(&s.keys["km_eng"]),
        Some(json!({"question": "How long is parental leave?", "collections": ["hr"]})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(!answer["citations"].as_array().unwrap().is_empty(), "{answer}");
    let cited = "Cited HR answer, rated by an engineering manager";
    let vote = json!({"message_id": answer["message_id"], "rating": "up", "comment": cited});
    let (status, entry) = call(s.addr, "POST", "/v1/feedback", Some(&s.keys["km_eng"]), Some(vote)).await;
    assert_eq!((status, &entry["departments"]), (201, &json!(["hr"])), "{entry}");
    assert!(feedback_comments(s.addr, &s.keys["km_hr"]).await.iter().any(|c| c == cited));
    assert!(!feedback_comments(s.addr, &s.keys["km_eng_only"]).await.iter().any(|c| c == cited));
}
