//! `POST /v1/search`: retrieval only, with the caller's ACL filter.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::{ApiJson, AppState, Authenticated};

use lore_chat::retrieval::{HybridResults, Passage};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Agents: search as an end customer with a narrower principal set.
    pub on_behalf_of: Option<super::OnBehalfOf>,
    /// Only search the documents of these collections.
    pub collections: Option<Vec<String>>,
}

fn default_limit() -> usize {
    8
}

pub const MAX_LIMIT: usize = 50;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    pub query_lang: lore_core::lang::Lang,
    pub results: Vec<Passage>,
    pub timings: lore_chat::retrieval::RetrievalTimings,
}

#[utoipa::path(
    post, path = "/v1/search", tag = "retrieval",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Passages the caller may read, best first", body = SearchResponse),
        (status = 400, description = "Invalid request", body = super::error::ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = super::error::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn search(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let caller = super::narrow(&state, caller, request.on_behalf_of.as_ref())?;
    let caller = super::within_collections(&state, caller, request.collections.as_ref())?;
    let query = request.query.trim();
    if query.is_empty() {
        return Err(ApiError::InvalidRequest("`query` must not be empty".into()));
    }
    if query.chars().count() > super::chat::MAX_QUESTION_CHARS {
        return Err(ApiError::InvalidRequest(format!(
            "`query` is longer than {} characters",
            super::chat::MAX_QUESTION_CHARS
        )));
    }
    if request.limit == 0 || request.limit > MAX_LIMIT {
        return Err(ApiError::InvalidRequest(format!("`limit` must be between 1 and {MAX_LIMIT}")));
    }
    let HybridResults { query_lang, passages, timings, .. } =
        state.retriever.hybrid(query, &caller.scope, request.limit).await?;
    state.metrics.observe_retrieval(&timings);
    Ok(Json(SearchResponse { query_lang, results: passages, timings }))
}
