//! API errors: a stable machine-readable code and a human message. The HTTP status is
//! chosen here and only here; internal details are logged, never returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lore_chat::conversations::ConversationError;
use lore_chat::feedback::FeedbackError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or malformed `Authorization: Bearer <key>` header")]
    MissingCredentials,
    #[error("invalid, expired or revoked credentials")]
    InvalidCredentials,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    ScopeWidening(String),
    #[error("collection not found")]
    CollectionNotFound,
    #[error("document not found")]
    DocumentNotFound,
    #[error("job not found")]
    JobNotFound,
    #[error("api key not found")]
    KeyNotFound,
    #[error("message not found")]
    MessageNotFound,
    #[error("knowledge gap not found")]
    GapNotFound,
    #[error("budget not found")]
    BudgetNotFound,
    #[error("review not found")]
    ReviewNotFound,
    #[error("verified answer not found")]
    VerifiedNotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the identity provider cannot be reached; try again later")]
    IdentityProviderUnavailable(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "request body is larger than the server's limit (server.max_body_bytes; for uploads ingest.max_file_bytes)"
    )]
    PayloadTooLarge,
    #[error("no route for this path")]
    NotFound,
    #[error("this path does not accept this method (see the `Allow` header)")]
    MethodNotAllowed,
    #[error("conversation not found")]
    ConversationNotFound,
    #[error("the service is not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(String),
    #[error("too many requests for this {limit}; retry after {retry_after_secs} s")]
    RateLimited { limit: &'static str, retry_after_secs: u64 },
    #[error("budget {budget} is used up until {resets_at}")]
    BudgetExceeded { budget: String, resets_at: String, retry_after_secs: u64 },
    /// Another error status, answered outside the handlers (see [`ApiError::from_plain`]).
    #[error("{1}")]
    Status(StatusCode, String),
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
            ApiError::Forbidden(_) => "forbidden",
            ApiError::ScopeWidening(_) => "scope_widening",
            ApiError::CollectionNotFound => "collection_not_found",
            ApiError::DocumentNotFound => "document_not_found",
            ApiError::JobNotFound => "job_not_found",
            ApiError::KeyNotFound => "key_not_found",
            ApiError::MessageNotFound => "message_not_found",
            ApiError::GapNotFound => "gap_not_found",
            ApiError::BudgetNotFound => "budget_not_found",
            ApiError::ReviewNotFound => "review_not_found",
            ApiError::VerifiedNotFound => "verified_not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::IdentityProviderUnavailable(_) => "identity_provider_unavailable",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::ConversationNotFound => "conversation_not_found",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) => "internal",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::BudgetExceeded { .. } => "budget_exceeded",
            ApiError::Status(status, _) => match status.as_u16() {
                401 => "unauthorized",
                408 => "request_timeout",
                429 => "too_many_requests",
                502..=504 => "unavailable",
                500..=599 => "internal",
                _ => "invalid_request",
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingCredentials | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::ScopeWidening(_) => StatusCode::FORBIDDEN,
            ApiError::CollectionNotFound
            | ApiError::DocumentNotFound
            | ApiError::JobNotFound
            | ApiError::KeyNotFound
            | ApiError::MessageNotFound
            | ApiError::GapNotFound
            | ApiError::BudgetNotFound
            | ApiError::ReviewNotFound
            | ApiError::VerifiedNotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::IdentityProviderUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound | ApiError::ConversationNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::RateLimited { .. } | ApiError::BudgetExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Status(status, _) => *status,
        }
    }

    /// The error for a plain-text error response made outside the handlers (axum's routing
    /// and extractor rejections, other middleware): the same status, and the text as the
    /// message where it helps the caller (client errors; at most 300 characters). The text of
    /// a server error is logged, not returned.
    pub fn from_plain(status: StatusCode, text: &str) -> ApiError {
        const MAX_CHARS: usize = 300;
        let text = text.trim();
        let message = match text.char_indices().nth(MAX_CHARS) {
            _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_owned(),
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.to_owned(),
        };
        match status {
            StatusCode::BAD_REQUEST => ApiError::InvalidRequest(message),
            StatusCode::FORBIDDEN => ApiError::Forbidden(message),
            StatusCode::NOT_FOUND => ApiError::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::CONFLICT => ApiError::Conflict(message),
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(message),
            StatusCode::INTERNAL_SERVER_ERROR => ApiError::Internal(message),
            _ if status.is_server_error() => {
                tracing::warn!(%status, detail = %message, "error response");
                ApiError::Status(status, status.canonical_reason().unwrap_or("server error").to_owned())
            }
            _ => ApiError::Status(status, message),
        }
    }
}

impl From<lore_core::Error> for ApiError {
    fn from(error: lore_core::Error) -> Self {
        use lore_core::Error;
        match error {
            Error::InvalidInput(message) => ApiError::InvalidRequest(message),
            Error::InvalidPrincipal(_) | Error::EmptyAcl => ApiError::InvalidRequest(error.to_string()),
            Error::Conflict(message) => ApiError::Conflict(message),
            Error::Config(_)
            | Error::ModelSetup(_)
            | Error::Embedding(_)
            | Error::ModelMismatch { .. }
            | Error::Database(_)
            | Error::Keyword(_)
            | Error::KeywordQuery(_)
            | Error::Vector(_)
            | Error::Io { .. } => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<lore_ingest::IngestError> for ApiError {
    fn from(error: lore_ingest::IngestError) -> Self {
        use lore_ingest::IngestError;
        match error {
            IngestError::Core(e) => e.into(),
            IngestError::SourceConfig { .. } | IngestError::Other(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<ConversationError> for ApiError {
    fn from(error: ConversationError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<FeedbackError> for ApiError {
    fn from(error: FeedbackError) -> Self {
        ApiError::Internal(error.to_string())
    }
}

impl From<lore_usage::Error> for ApiError {
    fn from(error: lore_usage::Error) -> Self {
        match error {
            lore_usage::Error::Invalid(message) => ApiError::InvalidRequest(message),
            lore_usage::Error::Database(_) | lore_usage::Error::Other(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<lore_policy::Error> for ApiError {
    fn from(error: lore_policy::Error) -> Self {
        match error {
            lore_policy::Error::Invalid(message) => ApiError::InvalidRequest(message),
            lore_policy::Error::AlreadyDecided(_) => ApiError::Conflict(error.to_string()),
            lore_policy::Error::Database(_) | lore_policy::Error::Other(_) => ApiError::Internal(error.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::IdentityProviderUnavailable(detail) => tracing::error!(%detail, "identity provider unavailable"),
            _ => {}
        }
        let body = ErrorBody { code: self.code(), message: self.to_string() };
        let mut response = (self.status(), Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_secs, .. } | ApiError::BudgetExceeded { retry_after_secs, .. } = self
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, retry_after_secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_errors_keep_their_status_and_a_bounded_message() {
        for code in 400..600 {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(ApiError::from_plain(status, "some text").status(), status, "{status}");
        }
        let long = "é".repeat(1000);
        let ApiError::InvalidRequest(message) = ApiError::from_plain(StatusCode::BAD_REQUEST, &long) else {
            panic!("a 400 is an invalid request")
        };
        assert_eq!(message.chars().count(), 301);
        assert_eq!(ApiError::from_plain(StatusCode::BAD_REQUEST, " \n").to_string(), "Bad Request");
        assert_eq!(ApiError::from_plain(StatusCode::METHOD_NOT_ALLOWED, "").code(), "method_not_allowed");
        assert_eq!(ApiError::from_plain(StatusCode::TOO_MANY_REQUESTS, "slow down").code(), "too_many_requests");
        let upstream = ApiError::from_plain(StatusCode::BAD_GATEWAY, "upstream 10.0.0.7 refused");
        assert_eq!((upstream.code(), upstream.to_string().as_str()), ("unavailable", "Bad Gateway"));
        assert_eq!(ApiError::from_plain(StatusCode::INTERNAL_SERVER_ERROR, "detail").to_string(), "internal error");
    }
}
