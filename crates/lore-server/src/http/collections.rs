//! Collections: created and deleted by admins, listed by those who manage them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lore_core::acl::Acl;
use lore_core::audit::Outcome;
use lore_core::types::Collection;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::{AdminsOnly, ManagersOnly};
use super::{ApiJson, Authenticated};
use crate::state::AppState;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(create, list)).routes(routes!(delete))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    /// 1-64 lowercase letters, digits, `-`, `_`, `.`.
    pub id: String,
    pub name: Option<String>,
    /// The owning department: its knowledge managers manage the collection.
    pub department: Option<String>,
    /// ACL of uploads that bring none.
    pub default_acl: Option<Vec<String>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CollectionInfo {
    #[serde(flatten)]
    pub collection: Collection,
    pub documents: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CollectionList {
    pub collections: Vec<CollectionInfo>,
}

#[utoipa::path(
    post, path = "/v1/collections", tag = "collections", request_body = NewCollection,
    responses(
        (status = 201, description = "Created", body = Collection),
        (status = 400, description = "Invalid id, department or ACL", body = ErrorBody),
        AdminsOnly,
        (status = 409, description = "A collection with this id exists", body = ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<NewCollection>,
) -> Result<(StatusCode, Json<Collection>), ApiError> {
    access::require_admin(&state, &caller, "collection.create", Some(&request.id))?;
    let default_acl = request
        .default_acl
        .as_ref()
        .map(|a| Acl::parse(a))
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(format!("`default_acl`: {e}")))?;
    if let Some(dept) = &request.department {
        lore_core::acl::Principal::dept(dept).map_err(|e| ApiError::InvalidRequest(format!("`department`: {e}")))?;
    }
    let collection = Collection {
        name: request.name.clone().unwrap_or_else(|| request.id.clone()),
        id: request.id,
        department: request.department,
        default_acl,
        created_at: String::new(),
    };
    if !state.catalog().create_collection(&collection)? {
        return Err(ApiError::Conflict(format!("collection {:?} already exists", collection.id)));
    }
    state.audit_caller(
        &caller,
        "collection.create",
        Some(&collection.id),
        Outcome::Ok,
        serde_json::json!({
            "department": collection.department, "default_acl": collection.default_acl.as_ref().map(Acl::to_strings)
        }),
    );
    let created = access::collection(&state, &collection.id)?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(
    get, path = "/v1/collections", tag = "collections",
    responses(
        (status = 200, description = "Collections the caller manages (all for admins)", body = CollectionList),
        ManagersOnly,
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Json<CollectionList>, ApiError> {
    access::require_manager_role(&state, &caller, "collection.list")?;
    let catalog = state.catalog();
    let mut collections = Vec::new();
    for collection in catalog.collections()? {
        if caller.manages(collection.department.as_deref()) {
            let documents = catalog.document_count_of_collection(&collection.id)?;
            collections.push(CollectionInfo { collection, documents });
        }
    }
    Ok(Json(CollectionList { collections }))
}

#[utoipa::path(
    delete, path = "/v1/collections/{id}", tag = "collections",
    params(("id" = String, Path, description = "Collection id")),
    responses(
        (status = 204, description = "Deleted"),
        AdminsOnly,
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 409, description = "The collection still holds documents", body = ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    access::require_admin(&state, &caller, "collection.delete", Some(&id))?;
    if !state.catalog().delete_collection(&id)? {
        return Err(ApiError::CollectionNotFound);
    }
    state.audit_caller(&caller, "collection.delete", Some(&id), Outcome::Ok, serde_json::json!({}));
    Ok(StatusCode::NO_CONTENT)
}
