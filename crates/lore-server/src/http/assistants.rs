//! Department assistants (issue 16): `GET /v1/assistant` (the caller's: name, greeting and the
//! approved-use notice, for the widget and the full page), `GET /v1/assistants`,
//! `PUT /v1/assistants/{department}` and `GET /v1/assistants/{department}/history`. Knowledge
//! managers edit their departments' assistants; admins every one and the company default
//! (`company` in the path).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use lore_core::audit::Outcome;
use lore_policy::assistants::{Assistant, AssistantSpec, COMPANY};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::ManagersOnly;
use super::{ApiJson, Authenticated};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(mine)).routes(routes!(list)).routes(routes!(set)).routes(routes!(history))
}

/// What the chat shows before the first question.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AssistantView {
    /// The assistant's name (`Lore` without one).
    pub name: String,
    pub greeting: Option<String>,
    pub greeting_es: Option<String>,
    /// The approved-use notice: `{text, link}`.
    #[schema(value_type = Option<Object>)]
    pub notice: Option<serde_json::Value>,
}

#[utoipa::path(
    get, path = "/v1/assistant", tag = "assistants",
    responses((status = 200, description = "The caller's assistant and the approved-use notice", body = AssistantView)),
)]
pub async fn mine(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<AssistantView>, ApiError> {
    let assistant = state.policy.assistants.for_departments(&caller.departments)?;
    let notice = state.config.policy.notice.as_ref().map(|n| serde_json::json!({ "text": n.text, "link": n.link }));
    Ok(Json(match assistant {
        Some(a) => AssistantView { name: a.name, greeting: a.greeting, greeting_es: a.greeting_es, notice },
        None => AssistantView { name: "Lore".into(), greeting: None, greeting_es: None, notice },
    }))
}

/// `company` in a path is the company default.
fn department_of(path: &str) -> &str {
    if path == "company" { COMPANY } else { path }
}

fn may_edit(caller: &lore_core::auth::Caller, department: &str) -> bool {
    if department == COMPANY { caller.is_admin() } else { caller.manages(Some(department)) }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AssistantList {
    #[schema(value_type = Vec<Object>)]
    pub assistants: Vec<Assistant>,
}

#[utoipa::path(
    get, path = "/v1/assistants", tag = "assistants",
    responses((status = 200, description = "The current assistant of each department the caller manages (admins: all; `department` \"\" is the company default)", body = AssistantList), ManagersOnly),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<AssistantList>, ApiError> {
    access::require_manager_role(&state, &caller, "assistant.list")?;
    let mut assistants = state.policy.assistants.list()?;
    assistants.retain(|a| a.department == COMPANY || caller.manages(Some(&a.department)));
    Ok(Json(AssistantList { assistants }))
}

#[utoipa::path(
    put, path = "/v1/assistants/{department}", tag = "assistants", request_body = Object,
    params(("department" = String, Path, description = "A department, or `company` for the default")),
    responses(
        (status = 200, description = "The new version (every edit is one)", body = Object),
        (status = 400, description = "Invalid (named in the message)", body = ErrorBody),
        (status = 403, description = "Not a manager of this department (the default: admins only)", body = ErrorBody),
    ),
)]
pub async fn set(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(department): Path<String>,
    ApiJson(spec): ApiJson<AssistantSpec>,
) -> Result<Json<Assistant>, ApiError> {
    let department = department_of(&department);
    if !may_edit(&caller, department) {
        return Err(access::deny(
            &state,
            &caller,
            "assistant.set",
            Some(department),
            "you do not manage this assistant",
        ));
    }
    let assistant = state.policy.assistants.set(department, &spec, &caller.user, lore_usage::now_ms())?;
    state.audit_caller(
        &caller,
        "assistant.set",
        Some(&assistant.prompt_id()),
        Outcome::Ok,
        serde_json::json!({ "department": department, "version": assistant.version }),
    );
    Ok(Json(assistant))
}

#[utoipa::path(
    get, path = "/v1/assistants/{department}/history", tag = "assistants",
    params(("department" = String, Path, description = "A department, or `company` for the default")),
    responses((status = 200, description = "Every version, newest first", body = AssistantList), ManagersOnly),
)]
pub async fn history(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(department): Path<String>,
) -> Result<Json<AssistantList>, ApiError> {
    access::require_manager_role(&state, &caller, "assistant.history")?;
    let department = department_of(&department);
    if department != COMPANY && !caller.manages(Some(department)) {
        return Err(access::deny(
            &state,
            &caller,
            "assistant.history",
            Some(department),
            "you do not manage this assistant",
        ));
    }
    Ok(Json(AssistantList { assistants: state.policy.assistants.history(department)? }))
}
