//! API errors: a stable machine-readable code and a human message. The HTTP status is
//! chosen here and only here; internal details are logged, never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or malformed `Authorization: Bearer <key>` header")]
    MissingCredentials,
    #[error("unknown or revoked API key")]
    InvalidCredentials,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body is larger than the server's limit (server.max_body_bytes)")]
    PayloadTooLarge,
    #[error("no route for this path")]
    NotFound,
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("the service is not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(String),
}

/// Every error response: a stable machine-readable code and a human message.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    pub code: &'a str,
    pub message: String,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingCredentials => "missing_credentials",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::NotFound => "not_found",
            ApiError::ConversationNotFound => "conversation_not_found",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingCredentials | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound | ApiError::ConversationNotFound => StatusCode::NOT_FOUND,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<lore_core::Error> for ApiError {
    fn from(error: lore_core::Error) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let body = ErrorBody { code: self.code(), message: self.to_string() };
        (self.status(), Json(body)).into_response()
    }
}
