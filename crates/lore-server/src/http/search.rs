//! `POST /v1/search`: retrieval only, with the caller's ACL filter.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::{ApiJson, AppState, Authenticated};

use lore_chat::retrieval::{HybridResults, Passage};
use lore_usage::Endpoint;

pub(super) fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new().routes(routes!(search))
}

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
)]
pub async fn search(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let started = std::time::Instant::now();
    let mut event = state.usage.event(&caller, Endpoint::Search, "results");
    event.collections = request.collections.clone().unwrap_or_default();
    let result = search_as(&state, caller, &request).await;
    match &result {
        Ok((response, query_vector)) => {
            event.lang = Some(response.query_lang.code().to_owned());
            event.stages = retrieval_stages(&response.timings);
            event.category = state.usage.category(query_vector);
        }
        Err(error) => (event.kind, event.status) = ("error".into(), error.status().as_u16()),
    }
    event.latency_ms = started.elapsed().as_secs_f64() * 1e3;
    state.meter(event);
    result.map(|(response, _)| Json(response))
}

/// The search itself; its response and the query vector (for the question's category).
async fn search_as(
    state: &AppState,
    caller: super::Caller,
    request: &SearchRequest,
) -> Result<(SearchResponse, Vec<f32>), ApiError> {
    let caller = super::narrow(state, caller, request.on_behalf_of.as_ref())?;
    let caller = super::within_collections(state, caller, request.collections.as_ref())?;
    let query = super::chat::question_text(&request.query, "`query`")?;
    let limit = super::page_limit(request.limit, MAX_LIMIT)?;
    let HybridResults { query_lang, passages, timings, query_vector, .. } =
        state.retriever.hybrid(query, &caller.scope, limit).await?;
    state.metrics.observe_retrieval(&timings);
    Ok((SearchResponse { query_lang, results: passages, timings }, query_vector))
}

/// Retrieval stage latencies for a usage event, in milliseconds.
pub(super) fn retrieval_stages(t: &lore_chat::retrieval::RetrievalTimings) -> std::collections::BTreeMap<String, f64> {
    [("embed", t.embed_ms), ("bm25", t.bm25_ms), ("dense", t.dense_ms), ("fusion", t.fusion_ms)]
        .into_iter()
        .map(|(stage, ms)| (stage.to_owned(), ms))
        .collect()
}
