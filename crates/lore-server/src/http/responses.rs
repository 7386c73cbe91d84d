//! Error responses that several routes document alike, written once for their
//! `#[utoipa::path]`s (`responses(..., AdminsOnly)`).
#![expect(dead_code, reason = "never built: each type only describes a response, its field the body")]

use super::error::ErrorBody;

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "Admins only")]
pub struct AdminsOnly(ErrorBody<'static>);

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "Knowledge managers and admins only")]
pub struct ManagersOnly(ErrorBody<'static>);

#[derive(utoipa::IntoResponses)]
#[response(status = 403, description = "The caller does not manage this document's collection")]
pub struct NotDocumentManager(ErrorBody<'static>);

#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "No such document (or not visible to the caller)")]
pub struct DocumentNotFound(ErrorBody<'static>);
