//! Connectors (issue 19): `GET /v1/connectors` (each configured source with its last sync) and
//! `POST /v1/connectors/{name}/sync` (sync now). Admins see and sync all; knowledge managers
//! those of their departments.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::ManagersOnly;
use super::{AppState, Authenticated};
use crate::sync::SyncReport;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(sync_now))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectorStatus {
    pub name: String,
    pub kind: String,
    pub department: Option<String>,
    /// 0: on demand only.
    pub every_minutes: u32,
    pub last_sync: Option<SyncReport>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectorList {
    pub connectors: Vec<ConnectorStatus>,
}

#[utoipa::path(
    get, path = "/v1/connectors", tag = "connectors",
    responses((status = 200, description = "The connectors the caller manages, with their last sync", body = ConnectorList), ManagersOnly),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<ConnectorList>, ApiError> {
    access::require_manager_role(&state, &caller, "connector.list")?;
    let connectors = state
        .config
        .connectors
        .iter()
        .filter(|c| caller.manages(c.department.as_deref()))
        .map(|c| ConnectorStatus {
            name: c.name.clone(),
            kind: c.kind().to_owned(),
            department: c.department.clone(),
            every_minutes: c.every_minutes,
            last_sync: state.syncs.last(&c.name),
        })
        .collect();
    Ok(Json(ConnectorList { connectors }))
}

#[utoipa::path(
    post, path = "/v1/connectors/{name}/sync", tag = "connectors",
    params(("name" = String, Path, description = "Connector name (its collection)")),
    responses(
        (status = 200, description = "The sync's report; its changes are queued as jobs", body = SyncReport),
        (status = 403, description = "Not a manager of the connector's department", body = ErrorBody),
        (status = 409, description = "A sync of this connector is running", body = ErrorBody),
    ),
)]
pub async fn sync_now(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(name): Path<String>,
) -> Result<Json<SyncReport>, ApiError> {
    let department = state.config.connectors.iter().find(|c| c.name == name).map(|c| c.department.clone());
    let Some(department) = department else {
        return Err(ApiError::InvalidRequest(format!("no connector {name:?} in [[connectors]]")));
    };
    if !caller.manages(department.as_deref()) {
        return Err(access::deny(&state, &caller, "connector.sync", Some(&name), "you do not manage this connector"));
    }
    Ok(Json(crate::sync::run(&state, &name, Some(&caller)).await?))
}
