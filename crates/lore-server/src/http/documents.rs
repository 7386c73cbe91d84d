//! Document management: upload (multipart) into a collection as a queued job, list, read,
//! replace, change ACL/metadata, delete; and job status.

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lore_core::acl::Acl;
use lore_core::audit::Outcome;
use lore_core::auth::Caller;
use lore_core::jobs::{Job, JobState};
use lore_core::types::{Collection, DocumentRecord, sha256_hex};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::access;
use super::error::{ApiError, ErrorBody};
use super::responses::{DocumentNotFound, NotDocumentManager};
use super::{ApiJson, Authenticated};
use crate::state::AppState;
use crate::upload::{check_content, sanitize_filename, sanitize_path};

/// `upload_limit` replaces the global body limit for the methods that take a file (upload and
/// replace); the others on the same paths keep the global one.
pub(super) fn router(upload_limit: DefaultBodyLimit) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(upload).layer(upload_limit))
        .routes(routes!(list))
        .routes(routes!(get, replace).layer(upload_limit))
        .routes(routes!(patch, delete))
        .routes(routes!(content))
        .routes(routes!(job))
        .routes(routes!(cancel_job))
}

/// A document as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentInfo {
    pub id: String,
    pub collection: String,
    pub path: String,
    pub title: String,
    pub acl: Vec<String>,
    pub lang: String,
    pub format: String,
    pub size_bytes: u64,
    pub chunk_count: usize,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `indexed`, or the state of a newer version's job (`queued`, `processing`, `failed`).
    pub status: String,
}

impl DocumentInfo {
    fn new(doc: DocumentRecord, status: String) -> Self {
        DocumentInfo {
            id: doc.id,
            collection: doc.source,
            path: doc.path,
            title: doc.title,
            acl: doc.acl.to_strings(),
            lang: doc.lang.code().to_owned(),
            format: doc.format,
            size_bytes: doc.size_bytes,
            chunk_count: doc.chunk_count,
            metadata: doc.metadata,
            status,
        }
    }
}

fn status_of(state: &AppState, doc: DocumentRecord) -> Result<DocumentInfo, ApiError> {
    let status = document_status(state, &doc.id)?;
    Ok(DocumentInfo::new(doc, status))
}

/// `indexed`, or the state of a newer version's job.
fn document_status(state: &AppState, id: &str) -> Result<String, ApiError> {
    Ok(match state.jobs.latest_for_document(id)? {
        // A cancelled replacement leaves the indexed version as it was.
        Some(job) if !matches!(job.state, JobState::Indexed | JobState::Cancelled) => job.state.as_str().to_owned(),
        _ => "indexed".to_owned(),
    })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadAccepted {
    pub job: Job,
    pub document_id: String,
    /// The document already is this upload (same bytes, ACL, title, metadata and path, and
    /// not changed since), or a job for it is under way: no new job.
    pub duplicate: bool,
}

/// The parts of a multipart upload.
struct UploadForm {
    /// The document's path in its collection: the `path` field, else the file's name.
    filename: String,
    content_type: Option<String>,
    bytes: Vec<u8>,
    acl: Option<Acl>,
    title: Option<String>,
    metadata: serde_json::Value,
}

async fn read_form(mut multipart: Multipart) -> Result<UploadForm, ApiError> {
    let mut file = None;
    let (mut acl, mut title, mut metadata, mut path) = (None, None, serde_json::json!({}), None);
    while let Some(field) = multipart.next_field().await.map_err(|e| multipart_error(e.status(), e.body_text()))? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if file.is_some() {
                    return Err(ApiError::InvalidRequest("send one `file` per upload".into()));
                }
                let raw_name = field.file_name().unwrap_or_default().to_owned();
                let content_type = field.content_type().map(str::to_owned);
                let bytes = field.bytes().await.map_err(|e| multipart_error(e.status(), e.body_text()))?;
                file = Some((raw_name, content_type, bytes.to_vec()));
            }
            "acl" => {
                let text = field.text().await.map_err(|e| multipart_error(e.status(), e.body_text()))?;
                acl = Some(parse_acl(&text)?);
            }
            "title" => {
                let text = field.text().await.map_err(|e| multipart_error(e.status(), e.body_text()))?;
                let text = text.trim().to_owned();
                if text.is_empty() || text.chars().count() > 300 {
                    return Err(ApiError::InvalidRequest("`title` must be 1-300 characters".into()));
                }
                title = Some(text);
            }
            "metadata" => {
                let text = field.text().await.map_err(|e| multipart_error(e.status(), e.body_text()))?;
                metadata = parse_metadata(&text)?;
            }
            "path" => {
                let text = field.text().await.map_err(|e| multipart_error(e.status(), e.body_text()))?;
                path = Some(sanitize_path(&text).map_err(ApiError::UnsupportedMediaType)?);
            }
            other => {
                return Err(ApiError::InvalidRequest(format!(
                    "unknown form field {other:?}; expected file, acl, title, metadata, path"
                )));
            }
        }
    }
    let (raw_name, content_type, bytes) =
        file.ok_or_else(|| ApiError::InvalidRequest("the upload has no `file` field".into()))?;
    let filename = match path {
        Some(path) => path,
        None => sanitize_filename(&raw_name).map_err(ApiError::UnsupportedMediaType)?,
    };
    Ok(UploadForm { filename, content_type, bytes, acl, title, metadata })
}

fn multipart_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::InvalidRequest(format!("invalid multipart body: {text}"))
    }
}

/// `["group:hr","everyone"]` or `group:hr, everyone`.
fn parse_acl(text: &str) -> Result<Acl, ApiError> {
    let items: Vec<String> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| ApiError::InvalidRequest(format!("`acl`: {e}")))?
    } else {
        text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
    };
    Acl::parse(&items).map_err(|e| ApiError::InvalidRequest(format!("`acl`: {e}")))
}

fn parse_metadata(text: &str) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ApiError::InvalidRequest(format!("`metadata`: {e}")))?;
    check_metadata(&value)?;
    Ok(value)
}

fn check_metadata(value: &serde_json::Value) -> Result<(), ApiError> {
    if !value.is_object() {
        return Err(ApiError::InvalidRequest("`metadata` must be a JSON object".into()));
    }
    if value.to_string().len() > 16 * 1024 {
        return Err(ApiError::InvalidRequest("`metadata` is larger than 16 KiB".into()));
    }
    Ok(())
}

/// Stages the uploaded file and queues its job.
#[allow(clippy::too_many_arguments)]
async fn stage_and_enqueue(
    state: &AppState,
    caller: &Caller,
    collection: &Collection,
    document_id: &str,
    path_in_collection: &str,
    form: &UploadForm,
    acl: Option<&Acl>,
    fingerprint: &str,
) -> Result<Job, ApiError> {
    let file = crate::upload::ToStage {
        collection: &collection.id,
        document_id,
        path: path_in_collection,
        bytes: &form.bytes,
        acl,
        metadata: &form.metadata,
        title: form.title.as_deref(),
        fingerprint,
        created_by: &caller.user,
    };
    Ok(crate::upload::stage_and_enqueue(state, file).await?)
}

/// The job an upload duplicates, if any: the document's newest job is for the same bytes,
/// ACL, title, metadata and path, and either is still under way or produced the document as
/// it is now (a document changed since through the API is marked edited, and a newer
/// version has a newer job). Anything else is an update.
fn duplicate_of(state: &AppState, document_id: &str, fingerprint: &str) -> Result<Option<Job>, ApiError> {
    let Some(latest) = state.jobs.latest_for_document(document_id)? else { return Ok(None) };
    if latest.content_sha256 != fingerprint {
        return Ok(None);
    }
    let current = match latest.state {
        JobState::Queued | JobState::Processing => true,
        JobState::Indexed => {
            state.catalog().document(document_id)?.is_some_and(|doc| !lore_core::catalog::is_edited(&doc.fingerprint))
        }
        JobState::Failed | JobState::Cancelled => false,
    };
    Ok(current.then_some(latest))
}

fn upload_fingerprint(form: &UploadForm, acl: Option<&Acl>, path: &str) -> String {
    let mut material = form.bytes.clone();
    for part in [
        acl.map(|a| a.to_strings().join(",")).unwrap_or_default(),
        form.title.clone().unwrap_or_default(),
        form.metadata.to_string(),
        path.to_owned(),
    ] {
        material.push(0x1f);
        material.extend_from_slice(part.as_bytes());
    }
    sha256_hex(&material)
}

#[utoipa::path(
    post, path = "/v1/collections/{id}/documents", tag = "documents",
    params(("id" = String, Path, description = "Collection id")),
    request_body(content_type = "multipart/form-data", description = "`file` (required; .md .txt .html .pdf .docx), `acl` (JSON array or comma list of principals; default: the file's own front matter, else the collection's), `title`, `metadata` (JSON object), `path` (the document's path in the collection; default: the file name)"),
    responses(
        (status = 202, description = "Queued as a job", body = UploadAccepted),
        (status = 200, description = "The same file was already uploaded (`duplicate: true`)", body = UploadAccepted),
        (status = 400, description = "Invalid form, ACL or metadata", body = ErrorBody),
        (status = 403, description = "The caller does not manage this collection", body = ErrorBody),
        (status = 404, description = "No such collection", body = ErrorBody),
        (status = 413, description = "File too large", body = ErrorBody),
        (status = 415, description = "Unsupported or mismatched file type", body = ErrorBody),
    ),
)]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(collection_id): Path<String>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let result = upload_to(&state, &caller, &collection_id, multipart).await;
    meter_upload(&state, &caller, Some(collection_id), started, &result);
    result
}

/// One usage event per upload or replacement: `queued`, `duplicate` or `error`.
fn meter_upload(
    state: &AppState,
    caller: &Caller,
    collection: Option<String>,
    started: std::time::Instant,
    result: &Result<Response, ApiError>,
) {
    let mut event = state.usage.event(caller, lore_usage::Endpoint::Upload, "queued");
    event.collections = collection.into_iter().collect();
    match result {
        Ok(response) if response.status() == StatusCode::OK => event.kind = "duplicate".into(),
        Ok(response) => event.status = response.status().as_u16(),
        Err(error) => (event.kind, event.status) = ("error".into(), error.status().as_u16()),
    }
    event.latency_ms = started.elapsed().as_secs_f64() * 1e3;
    state.meter(event);
}

async fn upload_to(
    state: &Arc<AppState>,
    caller: &Caller,
    collection_id: &str,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let collection = access::managed_collection(state, caller, collection_id, "document.upload")?;
    let form = read_form(multipart).await?;
    check_content(&form.filename, form.content_type.as_deref(), &form.bytes).map_err(ApiError::UnsupportedMediaType)?;
    if form.acl.is_none() && collection.default_acl.is_none() {
        return Err(ApiError::InvalidRequest(format!(
            "no ACL: give `acl` with the upload (collection {:?} has no default ACL)",
            collection.id
        )));
    }
    let document_id = lore_ingest::document_id(&collection.id, &form.filename);
    let fingerprint = upload_fingerprint(&form, form.acl.as_ref(), &form.filename);
    if let Some(existing) = duplicate_of(state, &document_id, &fingerprint)? {
        let document_id = existing.document_id.clone();
        return Ok(
            (StatusCode::OK, Json(UploadAccepted { job: existing, document_id, duplicate: true })).into_response()
        );
    }
    let job = stage_and_enqueue(
        state,
        caller,
        &collection,
        &document_id,
        &form.filename,
        &form,
        form.acl.as_ref(),
        &fingerprint,
    )
    .await?;
    state.audit_caller(
        caller,
        "document.upload",
        Some(&document_id),
        Outcome::Ok,
        serde_json::json!({ "collection": collection.id, "file": form.filename, "bytes": form.bytes.len(), "job": job.id, "acl": form.acl.as_ref().map(Acl::to_strings) }),
    );
    let location = format!("/v1/jobs/{}", job.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(UploadAccepted { job, document_id, duplicate: false }),
    )
        .into_response())
}

#[utoipa::path(
    put, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id")),
    request_body(content_type = "multipart/form-data", description = "`file` of the same type as the document; optional `acl` (default: keep), `title`, `metadata`"),
    responses(
        (status = 202, description = "The replacement is queued as a job", body = UploadAccepted),
        NotDocumentManager,
        DocumentNotFound,
    ),
)]
pub async fn replace(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    multipart: Multipart,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    // The collection is metered only once the caller proved they manage it.
    let result = replace_with(&state, &caller, id, multipart).await;
    let (collection, result) = match result {
        Ok((collection, response)) => (Some(collection), Ok(response)),
        Err(error) => (None, Err(error)),
    };
    meter_upload(&state, &caller, collection, started, &result);
    result
}

async fn replace_with(
    state: &Arc<AppState>,
    caller: &Caller,
    id: String,
    multipart: Multipart,
) -> Result<(String, Response), ApiError> {
    let (document, collection) = access::managed_document(state, caller, &id, "document.replace")?;
    let form = read_form(multipart).await?;
    let extension = |name: &str| name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    if extension(&form.filename) != extension(&document.path) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a replacement must have the document's file type (.{}); upload a new document instead",
            extension(&document.path)
        )));
    }
    check_content(&form.filename, form.content_type.as_deref(), &form.bytes).map_err(ApiError::UnsupportedMediaType)?;
    let acl = form.acl.clone().unwrap_or_else(|| document.acl.clone());
    let fingerprint = upload_fingerprint(&form, Some(&acl), &document.path);
    let job =
        stage_and_enqueue(state, caller, &collection, &id, &document.path, &form, Some(&acl), &fingerprint).await?;
    state.audit_caller(
        caller,
        "document.replace",
        Some(&id),
        Outcome::Ok,
        serde_json::json!({ "collection": collection.id, "file": form.filename, "bytes": form.bytes.len(), "job": job.id }),
    );
    let response =
        (StatusCode::ACCEPTED, Json(UploadAccepted { job, document_id: id, duplicate: false })).into_response();
    Ok((collection.id, response))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Documents per page (1-500, default 50).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only documents whose path or title contains this text (ignoring case).
    pub q: Option<String>,
    /// Only documents of this format (`markdown`, `text`, `html`, `pdf`, `docx`).
    pub format: Option<String>,
    /// Only documents whose ACL names this principal (e.g. `group:hr`).
    pub principal: Option<String>,
    /// Only documents in this state: `indexed`, or that of a newer version's job (`queued`,
    /// `processing`, `failed`).
    pub status: Option<String>,
}

/// The filters of a document listing, checked before any collection is looked up.
struct DocumentFilter {
    q: Option<String>,
    format: Option<String>,
    principal: Option<lore_core::acl::Principal>,
    status: Option<String>,
}

impl DocumentFilter {
    fn parse(params: &ListParams) -> Result<Self, ApiError> {
        const STATES: [&str; 4] = ["indexed", "queued", "processing", "failed"];
        let nonempty = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let format = nonempty(&params.format);
        if let Some(format) = &format
            && lore_ingest::loaders::Format::from_name(format).is_none()
        {
            let formats = lore_ingest::loaders::Format::ALL.map(lore_ingest::loaders::Format::name);
            return Err(ApiError::InvalidRequest(format!(
                "`format` must be one of {}, not {format:?}",
                formats.join(", ")
            )));
        }
        let status = nonempty(&params.status);
        if let Some(status) = &status
            && !STATES.contains(&status.as_str())
        {
            return Err(ApiError::InvalidRequest(format!(
                "`status` must be one of {}, not {status:?}",
                STATES.join(", ")
            )));
        }
        let principal = nonempty(&params.principal)
            .map(|p| p.parse::<lore_core::acl::Principal>())
            .transpose()
            .map_err(|e| ApiError::InvalidRequest(format!("`principal`: {e}")))?;
        Ok(DocumentFilter { q: nonempty(&params.q).map(|q| q.to_lowercase()), format, principal, status })
    }

    fn narrows(&self) -> bool {
        self.q.is_some() || self.format.is_some() || self.principal.is_some() || self.status.is_some()
    }

    /// Whether `doc` passes every filter but the status, which needs its jobs.
    fn matches(&self, doc: &DocumentRecord) -> bool {
        self.q.as_ref().is_none_or(|q| doc.path.to_lowercase().contains(q) || doc.title.to_lowercase().contains(q))
            && self.format.as_ref().is_none_or(|f| doc.format == *f)
            && self.principal.as_ref().is_none_or(|p| doc.acl.iter().any(|a| a == p))
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentList {
    pub documents: Vec<DocumentInfo>,
    /// Give as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Uploads not indexed yet (queued, processing or failed); shown to the collection's managers.
    pub pending: Vec<Job>,
}

#[utoipa::path(
    get, path = "/v1/collections/{id}/documents", tag = "documents",
    params(("id" = String, Path, description = "Collection id"), ListParams),
    responses(
        (status = 200, description = "The documents the caller may read, by path", body = DocumentList),
        (status = 404, description = "No such collection (or the caller neither manages it nor may read any of its documents)", body = ErrorBody),
    ),
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(collection_id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<DocumentList>, ApiError> {
    // The request is checked before the collection is looked up, so a bad request answers the
    // same whether or not the collection exists.
    let limit = super::page_limit(params.limit.unwrap_or(50), lore_core::catalog::MAX_PAGE)?;
    let filter = DocumentFilter::parse(&params)?;
    let collection = access::collection(&state, &collection_id)?;
    let readable = |doc: &DocumentRecord| access::can_read(&caller, doc, Some(&collection));
    // The status filter reads each candidate's newest job; the first error ends the listing.
    let failed = std::cell::RefCell::new(None);
    let wanted = |doc: &DocumentRecord| {
        readable(doc)
            && filter.matches(doc)
            && filter.status.as_ref().is_none_or(|wanted| match document_status(&state, &doc.id) {
                Ok(status) => status == *wanted,
                Err(error) => {
                    failed.borrow_mut().get_or_insert(error);
                    false
                }
            })
    };
    let page = state.catalog().documents_page(&collection.id, params.cursor.as_deref(), limit, wanted)?;
    if let Some(error) = failed.into_inner() {
        return Err(error);
    }
    // Only managers can list a collection; to anyone else, one they can read nothing of is
    // "not found" like an unknown id, so ids cannot be probed (with or without a cursor or
    // filters).
    if page.is_empty()
        && !caller.manages(collection.department.as_deref())
        && (!(params.cursor.is_some() || filter.narrows()) || !access::reads_some(&state, &caller, &collection)?)
    {
        return Err(access::hidden(&state, &caller, "document.list", &collection.id, ApiError::CollectionNotFound));
    }
    let next_cursor = (page.len() == limit).then(|| page.last().map(|d| d.path.clone())).flatten();
    let documents = page.into_iter().map(|doc| status_of(&state, doc)).collect::<Result<Vec<_>, _>>()?;
    let pending = if caller.manages(collection.department.as_deref()) && params.cursor.is_none() {
        state.jobs.unindexed_of_collection(&collection.id)?
    } else {
        Vec::new()
    };
    Ok(Json(DocumentList { documents, next_cursor, pending }))
}

#[utoipa::path(
    get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "The document", body = DocumentInfo),
        DocumentNotFound,
    ),
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DocumentInfo>, ApiError> {
    let (document, _) = access::readable_document(&state, &caller, &id)?;
    Ok(Json(status_of(&state, document)?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentPatch {
    /// New ACL (principals); both indexes are updated without re-embedding.
    pub acl: Option<Vec<String>>,
    /// Replaces the document's metadata object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[utoipa::path(
    patch, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id")),
    request_body = DocumentPatch,
    responses(
        (status = 200, description = "The updated document", body = DocumentInfo),
        (status = 400, description = "Invalid ACL or metadata", body = ErrorBody),
        NotDocumentManager,
        DocumentNotFound,
    ),
)]
pub async fn patch(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<DocumentPatch>,
) -> Result<Json<DocumentInfo>, ApiError> {
    let (document, _) = access::managed_document(&state, &caller, &id, "document.update")?;
    if patch.acl.is_none() && patch.metadata.is_none() {
        return Err(ApiError::InvalidRequest("give `acl` and/or `metadata`".into()));
    }
    let acl = patch
        .acl
        .as_ref()
        .map(|a| Acl::parse(a))
        .transpose()
        .map_err(|e| ApiError::InvalidRequest(format!("`acl`: {e}")))?;
    if let Some(metadata) = &patch.metadata {
        check_metadata(metadata)?;
    }
    {
        let mut writer = state.writer.lock().await;
        match &acl {
            Some(acl) => {
                // A version still waiting to be written takes this ACL too, so the change
                // cannot be undone when it lands.
                state.jobs.set_pending_acl(&id, acl)?;
                writer.set_acl(&id, acl, patch.metadata.as_ref()).await?;
            }
            None => {
                writer.catalog().set_metadata(&id, patch.metadata.as_ref().expect("checked above"))?;
                writer.catalog().mark_edited(&id)?;
            }
        }
    }
    state.audit_caller(
        &caller,
        if acl.is_some() { "document.acl_change" } else { "document.metadata_change" },
        Some(&id),
        Outcome::Ok,
        serde_json::json!({ "before": document.acl.to_strings(), "after": acl.as_ref().map(Acl::to_strings) }),
    );
    let updated = state.catalog().document(&id)?.ok_or(ApiError::DocumentNotFound)?;
    Ok(Json(status_of(&state, updated)?))
}

#[utoipa::path(
    delete, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 204, description = "Removed from both indexes and the database"),
        NotDocumentManager,
        DocumentNotFound,
    ),
)]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (document, _) = access::managed_document(&state, &caller, &id, "document.delete")?;
    let cancelled = state.jobs.cancel_for_document(&id, "cancelled: the document was deleted")?;
    for job in &cancelled {
        crate::upload::cancel_job_work(&state, job);
    }
    state.writer.lock().await.delete_documents(std::slice::from_ref(&id)).await?;
    state.audit_caller(
        &caller,
        "document.delete",
        Some(&id),
        Outcome::Ok,
        serde_json::json!({ "collection": document.source, "path": document.path, "cancelled_jobs": cancelled.len() }),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "documents",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job: queued, processing, indexed or failed (with `error`)", body = Job),
        (status = 404, description = "No such job (or not the caller's)", body = ErrorBody),
    ),
)]
pub async fn job(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = state.jobs.get(&id)?.ok_or(ApiError::JobNotFound)?;
    let manages = access::manages_collection(&state, &caller, &job.collection)?;
    if job.created_by == caller.user || manages {
        Ok(Json(job))
    } else {
        Err(access::hidden(&state, &caller, "job.read", &id, ApiError::JobNotFound))
    }
}

#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "documents",
    params(("id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job, now `cancelled` (a job that had already ended is returned as it ended); a job being parsed has its parser stopped", body = Job),
        (status = 403, description = "The caller does not manage the job's collection", body = ErrorBody),
        (status = 404, description = "No such job (or not visible to the caller)", body = ErrorBody),
    ),
)]
pub async fn cancel_job(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = state.jobs.get(&id)?.ok_or(ApiError::JobNotFound)?;
    if !access::manages_collection(&state, &caller, &job.collection)? {
        if job.created_by == caller.user {
            return Err(access::deny(
                &state,
                &caller,
                "job.cancel",
                Some(&id),
                "only admins and knowledge managers of the collection's department may cancel its jobs",
            ));
        }
        return Err(access::hidden(&state, &caller, "job.cancel", &id, ApiError::JobNotFound));
    }
    let reason = format!("cancelled by {}", caller.actor());
    let job = state.jobs.cancel(&id, &reason)?.ok_or(ApiError::JobNotFound)?;
    if job.state == JobState::Cancelled {
        crate::upload::cancel_job_work(&state, &job);
        state.audit_caller(
            &caller,
            "job.cancel",
            Some(&id),
            Outcome::Ok,
            serde_json::json!({ "collection": job.collection, "document": job.document_id, "file": job.filename }),
        );
    }
    Ok(Json(job))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContentChunk {
    pub ordinal: usize,
    pub page: Option<u32>,
    pub heading_path: Vec<String>,
    pub text: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentContent {
    pub id: String,
    pub title: String,
    pub collection: String,
    pub path: String,
    pub chunks: Vec<ContentChunk>,
}

#[utoipa::path(
    get, path = "/v1/documents/{id}/content", tag = "documents",
    params(("id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "The document's text as indexed, chunk by chunk (the viewer behind citation links)", body = DocumentContent),
        DocumentNotFound,
    ),
)]
pub async fn content(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DocumentContent>, ApiError> {
    let (document, _) = access::readable_document(&state, &caller, &id)?;
    let chunks = state
        .catalog()
        .chunks_of_document(&id)?
        .into_iter()
        .map(|c| ContentChunk { ordinal: c.ordinal, page: c.page, heading_path: c.heading_path, text: c.text })
        .collect();
    Ok(Json(DocumentContent { id, title: document.title, collection: document.source, path: document.path, chunks }))
}
