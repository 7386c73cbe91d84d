//! The review queue (`/v1/reviews`), verified answers (`/v1/verified`) and eval cases made from
//! feedback (issue 16). Knowledge managers act on their departments' entries only; a review or
//! verified answer of another department answers 404, audited, as if it did not exist.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use lore_chat::answer::Citation;
use lore_core::audit::Outcome;
use lore_policy::review::{Decision, QueueStats, Review, Status};
use lore_policy::verified::{NewVerified, Verified};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::ManagersOnly;
use super::{ApiJson, Authenticated};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(list_reviews))
        .routes(routes!(get_review))
        .routes(routes!(decide))
        .routes(routes!(review_stats))
        .routes(routes!(list_verified, create_verified))
        .routes(routes!(delete_verified))
        .routes(routes!(eval_case))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// `pending` (default), `approved`, `edited` or `rejected`.
    pub status: Option<String>,
    /// At most this many, newest first (default 100, at most 500).
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ReviewList {
    #[schema(value_type = Vec<Object>)]
    pub reviews: Vec<Review>,
}

fn parse_status(text: &str) -> Result<Status, ApiError> {
    Status::parse(text).ok_or_else(|| {
        ApiError::InvalidRequest(format!("`status` must be pending, approved, edited or rejected, not {text:?}"))
    })
}

#[utoipa::path(
    get, path = "/v1/reviews", tag = "review", params(ReviewQuery),
    responses((status = 200, description = "Reviews of the caller's departments (admins: all), newest first", body = ReviewList), ManagersOnly),
)]
pub async fn list_reviews(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(query): Query<ReviewQuery>,
) -> Result<Json<ReviewList>, ApiError> {
    let departments = access::analytics_scope(&state, &caller, "review.list")?;
    let status = parse_status(query.status.as_deref().unwrap_or("pending"))?;
    let limit = query.limit.unwrap_or(100).clamp(1, 500);
    let reviews = state.policy.reviews.list(departments.as_deref(), Some(status), limit)?;
    Ok(Json(ReviewList { reviews }))
}

/// What the asker of a review sees: where it stands and, once released, the answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReviewForAsker {
    pub id: String,
    pub status: String,
    pub mode: String,
    pub answer: Option<String>,
    pub citations: Vec<Citation>,
    /// Why a rejected answer was withdrawn.
    pub reason: Option<String>,
}

#[utoipa::path(
    get, path = "/v1/reviews/{id}", tag = "review",
    params(("id" = String, Path, description = "Review id")),
    responses(
        (status = 200, description = "To the asker: the status and, once released, the answer; to a reviewer: the whole review", body = ReviewForAsker),
        (status = 404, description = "No such review, or neither the caller's nor one they review", body = ErrorBody),
    ),
)]
pub async fn get_review(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let review = state.policy.reviews.get(&id)?.ok_or(ApiError::ReviewNotFound)?;
    if crate::policy::reviews(&caller, &review) {
        return Ok(Json(serde_json::to_value(&review).map_err(|e| ApiError::Internal(e.to_string()))?));
    }
    if review.asker != caller.user {
        return Err(access::hidden(&state, &caller, "review.read", &id, ApiError::ReviewNotFound));
    }
    let (answer, citations) = match crate::policy::released(&review) {
        Some((text, citations)) => (Some(text), citations),
        None => (None, Vec::new()),
    };
    let view = ReviewForAsker {
        id: review.id,
        status: review.status.as_str().to_owned(),
        mode: review.mode.as_str().to_owned(),
        answer,
        citations,
        reason: review.reason,
    };
    Ok(Json(serde_json::to_value(view).map_err(|e| ApiError::Internal(e.to_string()))?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `approve`, `edit` (with `answer`) or `reject` (with `reason`).
    pub action: String,
    /// The corrected answer: it keeps only the citation markers the original answer had.
    pub answer: Option<String>,
    /// Shown to the asker.
    pub reason: Option<String>,
}

#[utoipa::path(
    post, path = "/v1/reviews/{id}/decision", tag = "review", request_body = DecisionRequest,
    params(("id" = String, Path, description = "Review id")),
    responses(
        (status = 200, description = "The decided review; the asker's conversation shows the outcome", body = Object),
        (status = 400, description = "Unknown action, or its text missing", body = ErrorBody),
        (status = 404, description = "No such review among those the caller reviews", body = ErrorBody),
        (status = 409, description = "Already decided", body = ErrorBody),
    ),
)]
pub async fn decide(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<DecisionRequest>,
) -> Result<Json<Review>, ApiError> {
    let review = state.policy.reviews.get(&id)?.ok_or(ApiError::ReviewNotFound)?;
    if !crate::policy::reviews(&caller, &review) {
        return Err(access::hidden(&state, &caller, "review.decide", &id, ApiError::ReviewNotFound));
    }
    let missing = |what: &str| ApiError::InvalidRequest(format!("`{}` needs `{what}`", request.action));
    let decision = match request.action.as_str() {
        "approve" => Decision::Approve,
        "edit" => Decision::Edit { answer: request.answer.clone().ok_or_else(|| missing("answer"))? },
        "reject" => Decision::Reject { reason: request.reason.clone().ok_or_else(|| missing("reason"))? },
        other => {
            return Err(ApiError::InvalidRequest(format!("`action` must be approve, edit or reject, not {other:?}")));
        }
    };
    let decided = state
        .policy
        .reviews
        .decide(&id, &caller.user, decision, lore_usage::now_ms())?
        .ok_or(ApiError::ReviewNotFound)?;
    crate::policy::apply_decision(&state, &decided)?;
    state.audit_caller(
        &caller,
        &format!("review.{}", request.action),
        Some(&id),
        Outcome::Ok,
        serde_json::json!({ "rule": decided.rule, "mode": decided.mode, "waited_ms": decided.decided_ms.unwrap_or(0) - decided.created_ms }),
    );
    Ok(Json(decided))
}

#[utoipa::path(
    get, path = "/v1/analytics/reviews", tag = "review",
    responses((status = 200, description = "Pending reviews and the age of the oldest, in the caller's departments (admins: all)", body = Object), ManagersOnly),
)]
pub async fn review_stats(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<QueueStats>, ApiError> {
    let departments = access::analytics_scope(&state, &caller, "analytics.reviews")?;
    Ok(Json(state.policy.reviews.queue_stats(departments.as_deref(), lore_usage::now_ms())?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifiedRequest {
    /// Example questions it answers (with `from_review` or `from_feedback`, that question is added).
    #[serde(default)]
    pub questions: Vec<String>,
    /// The answer text (taken from the review or feedback when promoting one).
    pub answer: Option<String>,
    /// Citations as answers carry them (taken from the review or feedback when promoting one).
    pub citations: Option<Vec<Citation>>,
    /// The department that owns it (defaults to the review's or feedback's first).
    pub department: Option<String>,
    /// RFC 3339 time after which it is no longer served.
    pub expires_at: Option<String>,
    /// Promote a decided review's answer (approved or edited).
    pub from_review: Option<String>,
    /// Promote an answer someone voted on.
    pub from_feedback: Option<i64>,
}

#[utoipa::path(
    post, path = "/v1/verified", tag = "review", request_body = VerifiedRequest,
    responses(
        (status = 201, description = "Created", body = Object),
        (status = 400, description = "Invalid (named in the message)", body = ErrorBody),
        ManagersOnly,
    ),
)]
pub async fn create_verified(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<VerifiedRequest>,
) -> Result<(StatusCode, Json<Verified>), ApiError> {
    access::require_manager_role(&state, &caller, "verified.create")?;
    let mut questions = request.questions.clone();
    let (answer, citations, department, source, source_ref) = match (&request.from_review, request.from_feedback) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest("give `from_review` or `from_feedback`, not both".into()));
        }
        (Some(id), None) => {
            let review = state.policy.reviews.get(id)?.ok_or(ApiError::ReviewNotFound)?;
            if !crate::policy::reviews(&caller, &review) {
                return Err(access::hidden(&state, &caller, "verified.create", id, ApiError::ReviewNotFound));
            }
            let (answer, citations) = crate::policy::released(&review).ok_or_else(|| {
                ApiError::InvalidRequest(format!("review {id} is {}: only an approved or edited answer", review.status))
            })?;
            questions.insert(0, review.question.clone());
            (answer, citations, review.departments.first().cloned(), "review", Some(id.clone()))
        }
        (None, Some(id)) => {
            let feedback = state.feedback.get(id)?.ok_or(ApiError::MessageNotFound)?;
            if !caller.is_admin() && !feedback.departments.iter().any(|d| caller.manages(Some(d))) {
                return Err(access::hidden(
                    &state,
                    &caller,
                    "verified.create",
                    &id.to_string(),
                    ApiError::MessageNotFound,
                ));
            }
            let citations: Vec<Citation> = serde_json::from_value(feedback.citations.clone()).unwrap_or_default();
            questions.insert(0, feedback.question.clone());
            (
                feedback.answer.clone(),
                citations,
                feedback.departments.first().cloned(),
                "feedback",
                Some(id.to_string()),
            )
        }
        (None, None) => (
            request.answer.clone().ok_or_else(|| ApiError::InvalidRequest("`answer` is required".into()))?,
            request.citations.clone().ok_or_else(|| ApiError::InvalidRequest("`citations` is required".into()))?,
            None,
            "manual",
            None,
        ),
    };
    let answer = request.answer.clone().unwrap_or(answer);
    let citations = request.citations.clone().unwrap_or(citations);
    let department = request.department.clone().or(department);
    if !caller.manages(department.as_deref()) {
        return Err(access::deny(
            &state,
            &caller,
            "verified.create",
            department.as_deref(),
            "you do not manage this department",
        ));
    }
    // Every cited document must exist and be readable by the manager who vouches for it.
    for citation in &citations {
        if !access::may_read_document(&state, &caller, &citation.document_id) {
            return Err(ApiError::InvalidRequest(format!("cited document {:?} does not exist", citation.document_id)));
        }
    }
    let mut document_ids: Vec<String> = citations.iter().map(|c| c.document_id.clone()).collect();
    document_ids.sort();
    document_ids.dedup();
    let expires_ms = match &request.expires_at {
        Some(text) => Some(crate::usage::time_param(text, "`expires_at`").map_err(ApiError::InvalidRequest)?),
        None => None,
    };
    let vectors = state.retriever.embed_queries(questions.clone()).await?;
    let verified = state.policy.verified.create(
        NewVerified {
            department,
            questions,
            vectors,
            answer,
            citations: serde_json::to_value(&citations).map_err(|e| ApiError::Internal(e.to_string()))?,
            document_ids,
            owner: caller.user.clone(),
            expires_ms,
            source: source.into(),
            source_ref,
        },
        lore_usage::now_ms(),
    )?;
    state.audit_caller(
        &caller,
        "verified.create",
        Some(&verified.id),
        Outcome::Ok,
        serde_json::json!({ "source": source }),
    );
    Ok((StatusCode::CREATED, Json(verified)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct VerifiedList {
    #[schema(value_type = Vec<Object>)]
    pub verified: Vec<Verified>,
}

#[utoipa::path(
    get, path = "/v1/verified", tag = "review",
    responses((status = 200, description = "Verified answers of the caller's departments (admins: all)", body = VerifiedList), ManagersOnly),
)]
pub async fn list_verified(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<VerifiedList>, ApiError> {
    access::require_manager_role(&state, &caller, "verified.list")?;
    let mut verified = state.policy.verified.list(None)?;
    verified.retain(|v| caller.manages(v.department.as_deref()));
    Ok(Json(VerifiedList { verified }))
}

#[utoipa::path(
    delete, path = "/v1/verified/{id}", tag = "review",
    params(("id" = String, Path, description = "Verified answer id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not among the caller's", body = ErrorBody)),
)]
pub async fn delete_verified(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let verified = state.policy.verified.get(&id)?.ok_or(ApiError::VerifiedNotFound)?;
    if !caller.manages(verified.department.as_deref()) {
        return Err(access::hidden(&state, &caller, "verified.delete", &id, ApiError::VerifiedNotFound));
    }
    state.policy.verified.delete(&id)?;
    state.audit_caller(&caller, "verified.delete", Some(&id), Outcome::Ok, serde_json::json!({}));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EvalCaseRequest {
    /// Documents that answer the question (`collection/path` or `collection/path#page=N`).
    pub relevant: Vec<String>,
    /// False when the knowledge base should not answer it at all.
    pub answerable: Option<bool>,
    /// What a good answer says.
    pub reference_answer: Option<String>,
    /// The groups to ask as (the asker's departments come from the feedback).
    pub groups: Vec<String>,
}

#[utoipa::path(
    post, path = "/v1/feedback/{id}/eval-case", tag = "review", request_body = EvalCaseRequest,
    params(("id" = i64, Path, description = "Feedback id")),
    responses(
        (status = 200, description = "`case` and `line`: the vote as a `lore eval` JSONL case", body = Object),
        (status = 400, description = "An answerable case without relevant documents", body = ErrorBody),
        (status = 404, description = "Not among the caller's feedback", body = ErrorBody),
    ),
)]
pub async fn eval_case(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<i64>,
    ApiJson(request): ApiJson<EvalCaseRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    access::require_manager_role(&state, &caller, "feedback.eval_case")?;
    let feedback = state.feedback.get(id)?.ok_or(ApiError::MessageNotFound)?;
    if !caller.is_admin() && !feedback.departments.iter().any(|d| caller.manages(Some(d))) {
        return Err(access::hidden(&state, &caller, "feedback.eval_case", &id.to_string(), ApiError::MessageNotFound));
    }
    let answerable = request.answerable.unwrap_or(true);
    if answerable && request.relevant.is_empty() {
        return Err(ApiError::InvalidRequest(
            "an answerable case needs `relevant` documents; or say `answerable: false`".into(),
        ));
    }
    let mut case = serde_json::json!({
        "id": format!("feedback-{id}"),
        "question": feedback.question,
        // Not the voter: an eval set is shared, and retrieval depends on principals only.
        "asker": { "user": format!("feedback-{id}@lore.invalid"), "groups": request.groups, "departments": feedback.departments },
        "relevant": request.relevant,
        "answerable": answerable,
        "tags": ["feedback", format!("rating:{}", serde_json::to_value(feedback.rating).unwrap_or_default().as_str().unwrap_or_default())],
    });
    if let Some(reference) = request.reference_answer {
        case["reference_answer"] = serde_json::Value::String(reference);
    }
    state.audit_caller(&caller, "feedback.eval_case", Some(&id.to_string()), Outcome::Ok, serde_json::json!({}));
    Ok(Json(serde_json::json!({ "line": case.to_string(), "case": case })))
}
