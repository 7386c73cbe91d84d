//! Usage analytics (`/v1/analytics/usage`, `/gaps`, `/roi`) for admins and, scoped to their
//! departments, knowledge managers; budgets (`/v1/budgets`) for admins. Times are RFC 3339 or
//! dates (UTC); `Accept: text/csv` turns a table into CSV.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lore_core::audit::Outcome;
use lore_usage::analytics::{self, GroupBy, RoiPeriod, RoiQuery, UsageQuery};
use lore_usage::budgets::BudgetSpec;
use lore_usage::gaps::{GapQuery, GapStatus};
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
        .routes(routes!(usage_report))
        .routes(routes!(top_questions))
        .routes(routes!(gaps))
        .routes(routes!(update_gap))
        .routes(routes!(roi))
        .routes(routes!(list_budgets, set_budget))
        .routes(routes!(delete_budget))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageParams {
    /// Start (inclusive), RFC 3339 or `YYYY-MM-DD`; default 30 days before `to`.
    pub from: Option<String>,
    /// End (exclusive); default now.
    pub to: Option<String>,
    /// `department`, `user`, `key`, `category`, `collection`, `model`, `endpoint`, `day` (default) or `week`.
    pub group_by: Option<String>,
    /// Only the requests of people in this department (knowledge managers: one of theirs).
    pub department: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    pub group_by: String,
    pub currency: String,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<analytics::UsageRow>,
}

#[utoipa::path(
    get, path = "/v1/analytics/usage", tag = "analytics", params(UsageParams),
    responses(
        (status = 200, description = "Requests, active users, answer kinds, abstention rate, tokens, cost, latency and votes per group (CSV with `Accept: text/csv`)", body = UsageReport),
        (status = 400, description = "A parameter is invalid (named in the message)", body = ErrorBody),
        ManagersOnly,
    ),
)]
pub async fn usage_report(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    Query(params): Query<UsageParams>,
) -> Result<Response, ApiError> {
    let departments =
        within_department(&state, &caller, access::analytics_scope(&state, &caller, "analytics.usage")?, &params)?;
    let (from_ms, to_ms) = window(params.from.as_deref(), params.to.as_deref())?;
    let group_by = match params.group_by.as_deref() {
        None => GroupBy::Day,
        Some(text) => crate::usage::group_by(text, "`group_by`").map_err(ApiError::InvalidRequest)?,
    };
    let query = UsageQuery { from_ms, to_ms, group_by, departments };
    let store = state.usage.store.clone();
    let rows = off_runtime(move || analytics::usage(&store, &query)).await?;
    if wants_csv(&headers) {
        return Ok(csv_response("lore-usage.csv", analytics::to_csv(&rows)));
    }
    Ok(Json(UsageReport {
        from: rfc3339_ms(from_ms),
        to: rfc3339_ms(to_ms),
        group_by: group_by.as_str().to_owned(),
        currency: state.config.usage.currency.clone(),
        rows,
    })
    .into_response())
}

/// Narrows an analytics scope to the `department` asked for, which a knowledge manager must
/// belong to.
fn within_department(
    state: &AppState,
    caller: &lore_core::auth::Caller,
    scope: Option<Vec<String>>,
    params: &UsageParams,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(department) = params.department.as_deref() else { return Ok(scope) };
    if department.trim().is_empty() {
        return Err(ApiError::InvalidRequest("`department` must not be empty".into()));
    }
    if scope.as_ref().is_some_and(|mine| !mine.iter().any(|d| d == department)) {
        return Err(access::deny(
            state,
            caller,
            "analytics.usage",
            Some(department),
            "knowledge managers see the analytics of their own departments only",
        ));
    }
    Ok(Some(vec![department.to_owned()]))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuestionParams {
    /// Start (inclusive), RFC 3339 or `YYYY-MM-DD`; default 30 days before `to`.
    pub from: Option<String>,
    /// End (exclusive); default now.
    pub to: Option<String>,
    /// At most this many questions (default 20, at most 100).
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopQuestion {
    /// The question as last asked.
    pub question: String,
    /// How many times it was asked (ignoring case, spacing and end punctuation).
    pub count: u64,
    pub last_asked: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopQuestions {
    pub questions: Vec<TopQuestion>,
    /// How many chats were read (the newest 20,000 of the period at most).
    pub chats: usize,
}

/// Chats read for the top questions of a period: enough for a clear ranking, bounded so the
/// report stays fast on a busy month.
const TOP_QUESTION_CHATS: usize = 20_000;

#[utoipa::path(
    get, path = "/v1/analytics/questions", tag = "analytics", params(QuestionParams),
    responses(
        (status = 200, description = "The questions asked most often in the period (of conversations that still exist)", body = TopQuestions),
        (status = 400, description = "A parameter is invalid (named in the message)", body = ErrorBody),
        ManagersOnly,
    ),
)]
pub async fn top_questions(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(params): Query<QuestionParams>,
) -> Result<Json<TopQuestions>, ApiError> {
    let departments = access::analytics_scope(&state, &caller, "analytics.questions")?;
    let (from_ms, to_ms) = window(params.from.as_deref(), params.to.as_deref())?;
    let limit = super::page_limit(params.limit.unwrap_or(20), 100)?;
    let shared = state.clone();
    let questions = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let ids = shared.usage.store.chat_messages(from_ms, to_ms, departments.as_deref(), TOP_QUESTION_CHATS)?;
        let asked = shared.chat.conversations().questions_before(&ids)?;
        Ok((ids.len(), asked))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("analytics task: {e}")))??;
    let (chats, asked) = questions;
    Ok(Json(TopQuestions { questions: rank_questions(asked, limit), chats }))
}

/// Counts questions that differ only in case, spacing or end punctuation as one, most asked
/// first (then most recent); each shown as last asked. `asked` is newest first.
fn rank_questions(asked: Vec<(String, String)>, limit: usize) -> Vec<TopQuestion> {
    let mut groups: std::collections::HashMap<String, TopQuestion> = std::collections::HashMap::new();
    for (question, at) in asked {
        let key = question
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .trim_end_matches(['?', '.', '!', ' '])
            .trim_start_matches('¿')
            .to_lowercase();
        if key.is_empty() {
            continue;
        }
        groups.entry(key).or_insert_with(|| TopQuestion { question, count: 0, last_asked: at }).count += 1;
    }
    let mut ranked: Vec<TopQuestion> = groups.into_values().collect();
    ranked.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| b.last_asked.cmp(&a.last_asked)));
    ranked.truncate(limit);
    ranked
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GapParams {
    /// `open`, `answered` or `dismissed`; default all.
    pub status: Option<String>,
    /// Gaps seen since (RFC 3339 or date).
    pub from: Option<String>,
    /// Gaps seen before.
    pub to: Option<String>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GapList {
    #[schema(value_type = Vec<Object>)]
    pub gaps: Vec<lore_usage::gaps::Gap>,
}

#[utoipa::path(
    get, path = "/v1/analytics/gaps", tag = "analytics", params(GapParams),
    responses(
        (status = 200, description = "Knowledge gaps: abstained and down-voted questions clustered by similarity, largest first", body = GapList),
        (status = 400, description = "A parameter is invalid (named in the message)", body = ErrorBody),
        ManagersOnly,
    ),
)]
pub async fn gaps(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    Query(params): Query<GapParams>,
) -> Result<Response, ApiError> {
    let departments = access::analytics_scope(&state, &caller, "analytics.gaps")?;
    let status = params.status.as_deref().map(parse_status).transpose()?;
    let from_ms = params.from.as_deref().map(|t| time_param(t, "`from`")).transpose()?;
    let to_ms = params.to.as_deref().map(|t| time_param(t, "`to`")).transpose()?;
    let limit = super::page_limit(params.limit.unwrap_or(50), 500)?;
    let mut gaps = state.usage.gaps.list(&GapQuery { departments, status, from_ms, to_ms, limit })?;
    for gap in &mut gaps {
        hide_unreadable_answer(&state, &caller, gap);
    }
    if wants_csv(&headers) {
        return Ok(csv_response("lore-gaps.csv", analytics::to_csv(&gaps)));
    }
    Ok(Json(GapList { gaps }).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GapUpdate {
    /// `open`, `answered` or `dismissed`.
    pub status: String,
    /// The document that answers it (with `answered`).
    pub answered_by: Option<String>,
}

#[utoipa::path(
    patch, path = "/v1/analytics/gaps/{id}", tag = "analytics", request_body = GapUpdate,
    params(("id" = String, Path, description = "Gap id")),
    responses(
        (status = 200, description = "The gap with its new status", body = Object),
        (status = 400, description = "Invalid status", body = ErrorBody),
        (status = 404, description = "No such gap among those the caller may see", body = ErrorBody),
        ManagersOnly,
    ),
)]
pub async fn update_gap(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(update): ApiJson<GapUpdate>,
) -> Result<Json<lore_usage::gaps::Gap>, ApiError> {
    let departments = access::analytics_scope(&state, &caller, "analytics.gaps.update")?;
    let status = parse_status(&update.status)?;
    let Some(gap) = state.usage.gaps.get(&id)? else { return Err(ApiError::GapNotFound) };
    if let Some(mine) = &departments {
        // A gap none of whose questions came from the manager's departments does not exist
        // for them (audited); one shared with other departments is theirs to see, not to close.
        if !gap.departments.iter().any(|d| mine.contains(d)) {
            return Err(access::hidden(&state, &caller, "analytics.gap.update", &id, ApiError::GapNotFound));
        }
        if !gap.departments.iter().all(|d| mine.contains(d)) {
            return Err(access::deny(
                &state,
                &caller,
                "analytics.gap.update",
                Some(&id),
                "this gap also holds questions of other departments: an admin decides its status",
            ));
        }
    }
    state.usage.gaps.set_status(&id, status, update.answered_by.as_deref())?;
    state.audit_caller(
        &caller,
        "analytics.gap.update",
        Some(&id),
        Outcome::Ok,
        serde_json::json!({ "status": update.status, "answered_by": update.answered_by }),
    );
    let mut gap = state.usage.gaps.get(&id)?.ok_or_else(|| ApiError::Internal(format!("gap {id} vanished")))?;
    hide_unreadable_answer(&state, &caller, &mut gap);
    Ok(Json(gap))
}

/// The document that answers a gap is named only to callers who may read it.
fn hide_unreadable_answer(state: &AppState, caller: &lore_core::auth::Caller, gap: &mut lore_usage::gaps::Gap) {
    if let Some(document) = &gap.answered_by
        && !access::may_read_document(state, caller, document)
    {
        gap.answered_by = None;
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RoiParams {
    pub from: Option<String>,
    pub to: Option<String>,
    /// `day`, `week` or `month` (default).
    pub period: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RoiReport {
    pub from: String,
    pub to: String,
    pub currency: String,
    pub minutes_saved_per_answer: f64,
    pub hourly_cost: f64,
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<analytics::RoiRow>,
}

#[utoipa::path(
    get, path = "/v1/analytics/roi", tag = "analytics", params(RoiParams),
    responses(
        (status = 200, description = "Answered questions × minutes saved × hourly cost, against model spend, per department and period", body = RoiReport),
        (status = 400, description = "A parameter is invalid (named in the message)", body = ErrorBody),
        ManagersOnly,
    ),
)]
pub async fn roi(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    headers: HeaderMap,
    Query(params): Query<RoiParams>,
) -> Result<Response, ApiError> {
    let departments = access::analytics_scope(&state, &caller, "analytics.roi")?;
    let (from_ms, to_ms) = window(params.from.as_deref(), params.to.as_deref())?;
    let period = match params.period.as_deref() {
        None => RoiPeriod::Month,
        Some(text) => RoiPeriod::parse(text)
            .ok_or_else(|| ApiError::InvalidRequest(format!("`period` must be day, week or month, not {text:?}")))?,
    };
    let config = state.config.usage.roi.clone();
    let query = RoiQuery { from_ms, to_ms, period, departments };
    let store = state.usage.store.clone();
    let rows = off_runtime(move || analytics::roi(&store, &query, &config)).await?;
    if wants_csv(&headers) {
        return Ok(csv_response("lore-roi.csv", analytics::to_csv(&rows)));
    }
    let roi = &state.config.usage.roi;
    Ok(Json(RoiReport {
        from: rfc3339_ms(from_ms),
        to: rfc3339_ms(to_ms),
        currency: state.config.usage.currency.clone(),
        minutes_saved_per_answer: roi.minutes_saved_per_answer,
        hourly_cost: roi.hourly_cost,
        rows,
    })
    .into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BudgetList {
    pub currency: String,
    #[schema(value_type = Vec<Object>)]
    pub budgets: Vec<lore_usage::budgets::BudgetStatus>,
}

#[utoipa::path(
    get, path = "/v1/budgets", tag = "admin",
    responses(
        (status = 200, description = "Every budget with what it has spent and reserved this period", body = BudgetList),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
)]
pub async fn list_budgets(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<BudgetList>, ApiError> {
    access::require_admin(&state, &caller, "budget.list", None)?;
    let budgets = state.usage.ledger.status(lore_usage::now_ms())?;
    Ok(Json(BudgetList { currency: state.config.usage.currency.clone(), budgets }))
}

#[utoipa::path(
    put, path = "/v1/budgets", tag = "admin",
    request_body(content = Object, description = "`scope` (department, key, user), `value`, `period` (day, month), `unit` (tokens, cost), `soft_limit`, `hard_limit`, `on_hard` (refuse, degrade); replaces the budget of the same scope, value, period and unit"),
    responses(
        (status = 200, description = "The budget as stored", body = Object),
        (status = 400, description = "Invalid budget (the field is named)", body = ErrorBody),
        (status = 403, description = "Admins only", body = ErrorBody),
    ),
)]
pub async fn set_budget(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(spec): ApiJson<BudgetSpec>,
) -> Result<Json<lore_usage::budgets::Budget>, ApiError> {
    access::require_admin(&state, &caller, "budget.set", None)?;
    spec.validate()?;
    let budget = state.usage.budgets.set(&spec)?;
    state.usage.ledger.reload()?;
    state.audit_caller(
        &caller,
        "budget.set",
        Some(&budget.id),
        Outcome::Ok,
        serde_json::to_value(&budget).unwrap_or_default(),
    );
    Ok(Json(budget))
}

#[utoipa::path(
    delete, path = "/v1/budgets/{id}", tag = "admin",
    params(("id" = String, Path, description = "Budget id (`<scope>:<value>:<period>:<unit>`)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Admins only", body = ErrorBody),
        (status = 404, description = "No such budget", body = ErrorBody),
    ),
)]
pub async fn delete_budget(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    access::require_admin(&state, &caller, "budget.delete", Some(&id))?;
    if !state.usage.budgets.delete(&id)? {
        return Err(ApiError::BudgetNotFound);
    }
    state.usage.ledger.reload()?;
    state.audit_caller(&caller, "budget.delete", Some(&id), Outcome::Ok, serde_json::json!({}));
    Ok(StatusCode::NO_CONTENT)
}

/// Runs an analytics query on a blocking thread (it reads many rows).
async fn off_runtime<T: Send + 'static>(
    query: impl FnOnce() -> lore_usage::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(query).await.map_err(|e| ApiError::Internal(format!("analytics task: {e}")))??)
}

/// `[from, to)` of a report (see [`crate::usage::report_window`]).
fn window(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    crate::usage::report_window(from, to, ["`from`", "`to`"]).map_err(ApiError::InvalidRequest)
}

fn time_param(text: &str, name: &str) -> Result<i64, ApiError> {
    crate::usage::time_param(text, name).map_err(ApiError::InvalidRequest)
}

fn parse_status(text: &str) -> Result<GapStatus, ApiError> {
    GapStatus::parse(text)
        .ok_or_else(|| ApiError::InvalidRequest(format!("`status` must be open, answered or dismissed, not {text:?}")))
}

fn rfc3339_ms(ms: i64) -> String {
    lore_core::db::rfc3339(ms.div_euclid(1000))
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("text/csv"))
}

fn csv_response(filename: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}
