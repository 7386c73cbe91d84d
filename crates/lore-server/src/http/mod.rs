//! The HTTP API (axum). `app` builds the router; `serve` runs it on a listener until the
//! shutdown future resolves, so tests can bind `127.0.0.1:0`.

pub mod access;
mod admin;
mod assistants;
pub mod auth;
mod chat;
mod collections;
mod connectors;
mod documents;
pub mod error;
mod feedback;
mod json_errors;
pub mod metrics;
mod openai;
mod operations;
mod privacy;
mod responses;
mod review;
mod search;
mod suggest;
mod usage;
pub mod web;
mod webhooks;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{ApiKeys, Authenticated, Caller, new_api_key};
pub use error::ApiError;

pub use crate::state::AppState;

pub fn app(state: Arc<AppState>) -> Router {
    let limit = state.config.server.max_body_bytes;
    // Uploads get their own limit: the largest accepted file plus room for the form.
    let upload_limit = DefaultBodyLimit::max(state.config.ingest.max_file_bytes as usize + 64 * 1024);
    let (api, openapi) = api(upload_limit).split_for_parts();
    api.route("/", get(web::app))
        .route("/app-config.json", get(web::app_config))
        .route("/demo", get(web::demo))
        .route("/widget.js", get(web::widget))
        .route("/assets/{name}", get(web::asset))
        .route("/openapi.json", get(move || std::future::ready(axum::Json(openapi.clone()))))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), web::cors))
        .layer(middleware::from_fn(json_errors::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(web::nosniff))
        .with_state(state)
}

/// Every route of the API, each declared once by its handler's `#[utoipa::path]`, which also
/// puts it in the OpenAPI document.
fn api(upload_limit: DefaultBodyLimit) -> OpenApiRouter<Arc<AppState>> {
    let v1 = OpenApiRouter::new()
        .merge(search::router())
        .merge(chat::router())
        .merge(admin::router())
        .merge(collections::router())
        .merge(documents::router(upload_limit))
        .merge(feedback::router())
        .merge(usage::router())
        .merge(privacy::router())
        .merge(review::router())
        .merge(assistants::router())
        .merge(openai::router())
        .merge(suggest::router())
        .merge(webhooks::router())
        .merge(connectors::router());
    OpenApiRouter::with_openapi(<ApiDoc as utoipa::OpenApi>::openapi())
        .merge(requiring_api_key(v1))
        .merge(operations::router())
}

/// Every `/v1` handler takes `Authenticated`, so the document says once, here, that each of
/// these routes needs credentials (`api_key`).
fn requiring_api_key(mut routes: OpenApiRouter<Arc<AppState>>) -> OpenApiRouter<Arc<AppState>> {
    let api_key = utoipa::openapi::security::SecurityRequirement::new("api_key", Vec::<String>::new());
    for item in routes.get_openapi_mut().paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            operation.security = Some(vec![api_key.clone()]);
        }
    }
    routes
}

/// What a `lore serve` process does (`--role`): everything (the default), the HTTP API
/// without the job worker, or the job worker with only the operations endpoints (`/healthz`,
/// `/readyz`, `/metrics`) for its health checks. Split roles need a shared database and a
/// Qdrant server, so that API replicas and workers see the same jobs and indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    #[default]
    All,
    Api,
    Worker,
}

impl Role {
    fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    fn runs_jobs(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// The routes of a worker process: operations only.
pub fn worker_app(state: Arc<AppState>) -> Router {
    let (routes, _) = operations::router().split_for_parts();
    routes
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn(json_errors::json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves `app` on `listener`, and runs the job worker, until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_role(listener, state, Role::All, shutdown).await
}

/// Serves `role`'s routes on `listener` and, for `all` and `worker`, runs the job worker,
/// until `shutdown` resolves.
pub async fn serve_role(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    role: Role,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = role.runs_jobs().then(|| {
        let mut stopped = stopped.clone();
        tokio::spawn(crate::worker::run(state.clone(), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let router = if role.serves_api() { app(state) } else { worker_app(state) };
    let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let result = axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    result
}

async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    // `AppState::meter` records the usage event's ids on it; its children are
    // the stages (auth, embed, bm25, dense, fusion, generation).
    let span = tracing::info_span!(
        "request",
        http.method = %request.method(),
        http.route = %route,
        http.status = tracing::field::Empty,
        usage.event_id = tracing::field::Empty,
        conversation.id = tracing::field::Empty,
        message.id = tracing::field::Empty,
    );
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    span.record("http.status", response.status().as_u16());
    state.metrics.observe_request(&route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// What the OpenAPI document says besides its paths, which the resources' routers add.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Lore API", description = "Permission-filtered retrieval and cited answers over company documents."),
    components(schemas(
        error::ErrorBody, lore_chat::chat::StreamMetadata, lore_chat::answer::Citation, lore_chat::retrieval::Passage
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`lore keys new`)"))
                    .build(),
            ),
        );
    }
}

/// An end customer an agent asks for: the customer's principals must be a subset of the
/// agent's own.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnBehalfOf {
    pub user: String,
    pub principals: Vec<String>,
}

/// The caller to act as: itself, or the narrowed customer (refused and audited when the
/// customer's principals would widen the caller's access).
fn narrow(state: &AppState, caller: Caller, on_behalf: Option<&OnBehalfOf>) -> Result<Caller, ApiError> {
    use lore_core::auth::OnBehalfError;
    let Some(on_behalf) = on_behalf else { return Ok(caller) };
    match caller.on_behalf_of(&on_behalf.user, &on_behalf.principals) {
        Ok(narrowed) => Ok(narrowed),
        Err(error) => {
            let message = error.to_string();
            match error {
                OnBehalfError::Widens(_) | OnBehalfError::NotAnAgent => {
                    state.audit_caller(
                        &caller,
                        "access.denied",
                        Some(&on_behalf.user),
                        lore_core::audit::Outcome::Denied,
                        serde_json::json!({ "attempted": "on_behalf_of", "reason": message }),
                    );
                    Err(ApiError::ScopeWidening(message))
                }
                OnBehalfError::InvalidCustomer | OnBehalfError::InvalidPrincipal(_) => {
                    Err(ApiError::InvalidRequest(message))
                }
            }
        }
    }
}

/// Limits a caller's scope to the documents of some collections (the widget's
/// `data-collections`, or `collections` in a request). Only narrows. An unknown collection is
/// an error for admins, who can list every collection, so a typo does not silently search
/// nothing; for everyone else it narrows to nothing, exactly like a collection they can read
/// nothing of, so collection ids cannot be probed.
fn within_collections(
    state: &AppState,
    mut caller: Caller,
    collections: Option<&Vec<String>>,
) -> Result<Caller, ApiError> {
    let Some(collections) = collections else { return Ok(caller) };
    if collections.is_empty() || collections.len() > 50 {
        return Err(ApiError::InvalidRequest("`collections` must list 1-50 collection ids".into()));
    }
    let catalog = state.catalog();
    if caller.is_admin() {
        for id in collections {
            if catalog.collection(id)?.is_none() {
                return Err(ApiError::InvalidRequest(format!("unknown collection {id:?} in `collections`")));
            }
        }
    }
    caller.scope = caller.scope.within_documents(catalog.document_ids_of_collections(collections)?);
    Ok(caller)
}

/// A page size the caller asked for, which must be 1 to `max`.
fn page_limit(limit: usize, max: usize) -> Result<usize, ApiError> {
    if limit == 0 || limit > max {
        return Err(ApiError::InvalidRequest(format!("`limit` must be between 1 and {max}")));
    }
    Ok(limit)
}

/// JSON body extractor whose rejections are [`ApiError`]s with a clear message.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge)
            }
            Err(rejection) => Err(ApiError::InvalidRequest(rejection.body_text())),
        }
    }
}
