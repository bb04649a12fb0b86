//! `ApiError`: every way a request can fail, and how each dialect spells it.
//! (Successful answers are built by [`crate::respond`].)
//!
//! Dialect 1 (SuprSend) answers `{"code", "error_code", "type", "message",
//! "detail"}`; dialect 2 (Versori) answers `{"code", "message", "cause"}`.
//! Internal failures are logged where they happen (see [`ApiError::internal`])
//! and reach the client only as a bare 500: no database text, no paths, no
//! secrets.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use keys_core::{CoreError, Permission, Role};
use keys_service::ServiceError;
use keys_store::{Conflict, StoreError};
use serde::Serialize;
use utoipa::openapi::{ArrayBuilder, ObjectBuilder, OneOfBuilder, RefOr, Schema, Type};

use crate::schema::string_enum;

/// Which of the two API dialects a path belongs to; it decides the error
/// body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/v1/...`, `/health`, `/metrics` and the rest: SuprSend-shaped errors.
    SuprSend,
    /// `/api/organisations/v1/...`: Versori-shaped errors.
    Versori,
}

impl Dialect {
    /// The dialect of a request path.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/api/organisations/") {
            Self::Versori
        } else {
            Self::SuprSend
        }
    }
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is not acceptable; one message per problem.
    Validation(Vec<String>),
    /// 401: no, a malformed or an unknown service token.
    Unauthenticated,
    /// 401: a signed request (GitHub's secret-scanning alert) whose
    /// signature is missing or does not verify; why, in a few words.
    BadSignature(&'static str),
    /// 403: a valid token whose role or workspaces do not allow the request.
    PermissionDenied(String),
    /// 404 with a client-facing message such as `workspace 'demo' not found`.
    NotFound(String),
    /// 405: the path exists, the method does not.
    MethodNotAllowed { allow: Vec<Method> },
    /// 409: what the request would store is stored already (an imported
    /// API key).
    Conflict(String),
    /// 408: the client was too slow sending its body.
    RequestTimeout,
    /// 413: the body is over the limit.
    PayloadTooLarge { limit: usize },
    /// 415: a body that is not `application/json`.
    UnsupportedMediaType,
    /// 429: the client's `--rate-limit` is spent; it may retry after this
    /// many seconds.
    TooManyRequests { retry_after_seconds: u64 },
    /// 500: already logged; nothing of it reaches the client.
    Internal,
    /// 503: a dependency (the database) is not reachable, or the request ran
    /// out of time.
    Unavailable(String),
}

impl ApiError {
    /// A 400 with one message.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::Validation(vec![message.into()])
    }

    /// The 403 of a token whose role lacks the operation's permission.
    pub fn forbidden_role(role: Role, permission: Permission) -> Self {
        Self::PermissionDenied(format!(
            "You do not have permission to perform this action: it needs a service token with role '{}' (this one \
             is '{role}').",
            permission.least_role()
        ))
    }

    /// Logs an internal failure with its context and returns the bare 500.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(context, error = %error, "internal error");
        Self::Internal
    }

    /// Maps a store failure. `target` names what the request addressed
    /// (`api key 'ws_apik_…'`) for the 404 message.
    pub fn from_store(error: StoreError, target: &str) -> Self {
        match error {
            StoreError::NotFound { .. }
            | StoreError::Refused(CoreError::NotFound { .. } | CoreError::AlreadyDeleted { .. }) => {
                Self::NotFound(format!("{target} not found"))
            }
            StoreError::Refused(refusal) => Self::Validation(vec![refusal.to_string()]),
            StoreError::Conflict(conflict @ Conflict::DigestStored { .. }) => Self::Conflict(conflict.to_string()),
            StoreError::Conflict(conflict) => Self::Validation(vec![conflict.to_string()]),
            StoreError::Database { .. }
            | StoreError::Migration { .. }
            | StoreError::Schema(_)
            | StoreError::Inconsistent(_)
            | StoreError::UnsupportedUrl => Self::internal("store", &error),
        }
    }

    /// Maps a failed use case. `named` is the path segment that named the
    /// workspace or organisation (echoed, shortened, in the 404), `target`
    /// as for [`ApiError::from_store`].
    pub fn from_service(error: ServiceError, named: &str, target: &str) -> Self {
        let named: String = named.chars().take(100).collect();
        match error {
            ServiceError::WorkspaceNotFound => Self::NotFound(format!("workspace '{named}' not found")),
            ServiceError::OrganisationNotFound => Self::NotFound(format!("organisation '{named}' not found")),
            ServiceError::PermissionDenied(message) => Self::PermissionDenied(message),
            ServiceError::Invalid(message) => Self::validation(message),
            ServiceError::Store(error) => Self::from_store(error, target),
            ServiceError::Background(error) => Self::internal("background task", &error),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated | Self::BadSignature(_) => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// (dialect-1 `error_code`, dialect-1 `type`, dialect-2 `code`).
    pub(crate) fn codes(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Validation(_) => ("error", "ValidationError", "invalid_request"),
            Self::Unauthenticated | Self::BadSignature(_) => {
                ("authentication_failed", "AuthenticationFailed", "unauthenticated")
            }
            Self::PermissionDenied(_) => ("permission_denied", "PermissionDenied", "forbidden"),
            Self::NotFound(_) => ("not_found", "NotFound", "not_found"),
            Self::MethodNotAllowed { .. } => ("method_not_allowed", "MethodNotAllowed", "method_not_allowed"),
            Self::Conflict(_) => ("conflict", "Conflict", "conflict"),
            Self::RequestTimeout => ("request_timeout", "RequestTimeout", "request_timeout"),
            Self::PayloadTooLarge { .. } => ("payload_too_large", "PayloadTooLarge", "payload_too_large"),
            Self::UnsupportedMediaType => ("unsupported_media_type", "UnsupportedMediaType", "unsupported_media_type"),
            Self::TooManyRequests { .. } => ("throttled", "Throttled", "too_many_requests"),
            Self::Internal => ("internal_server_error", "InternalServerError", "internal"),
            Self::Unavailable(_) => ("service_unavailable", "ServiceUnavailable", "unavailable"),
        }
    }

    /// The human-readable message (for validation errors: every problem).
    pub(crate) fn messages(&self) -> Vec<String> {
        match self {
            Self::Validation(problems) => problems.clone(),
            Self::Unauthenticated => vec!["Invalid service token.".to_owned()],
            Self::BadSignature(reason) => vec![format!("Invalid signature: {reason}.")],
            Self::PermissionDenied(message) | Self::NotFound(message) | Self::Conflict(message) => {
                vec![message.clone()]
            }
            Self::MethodNotAllowed { .. } => vec!["Method not allowed.".to_owned()],
            Self::RequestTimeout => vec!["Request timed out.".to_owned()],
            Self::PayloadTooLarge { limit } => vec![format!("Request body is larger than {limit} bytes.")],
            Self::UnsupportedMediaType => vec!["Content-Type must be application/json.".to_owned()],
            Self::TooManyRequests { retry_after_seconds } => {
                vec![format!("Request was throttled. Expected available in {retry_after_seconds} seconds.")]
            }
            Self::Internal => vec!["Internal server error.".to_owned()],
            Self::Unavailable(message) => vec![message.clone()],
        }
    }

    /// The response in the dialect of the request.
    pub fn into_response(self, dialect: Dialect) -> Response<Full<Bytes>> {
        let status = self.status();
        let (error_code, error_type, versori_code) = self.codes();
        let messages = self.messages();
        let body = match dialect {
            Dialect::SuprSend => {
                let (message, detail) = match &self {
                    // The seed: message is the JSON text of the detail array.
                    Self::Validation(problems) => {
                        (serde_json::to_string(problems).unwrap_or_default(), serde_json::Value::from(problems.clone()))
                    }
                    _ => {
                        let message = messages.join("; ");
                        (message.clone(), serde_json::Value::from(message))
                    }
                };
                serde_json::to_vec(&SuprSendError { code: status.as_u16(), error_code, error_type, message, detail })
            }
            Dialect::Versori => {
                let message = match &self {
                    Self::Validation(_) => "The request is invalid.".to_owned(),
                    _ => messages.join("; "),
                };
                let cause = match &self {
                    Self::Validation(problems) => problems.join("; "),
                    _ => String::new(),
                };
                serde_json::to_vec(&VersoriError { code: versori_code, message, cause })
            }
        };
        let mut response = Response::new(Full::new(Bytes::from(body.unwrap_or_default())));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Self::TooManyRequests { retry_after_seconds } = &self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
        }
        if let Self::MethodNotAllowed { allow } = &self {
            let allow = allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
        }
        response
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        match error {
            CoreError::NotFound { .. } | CoreError::AlreadyDeleted { .. } => Self::NotFound(error.to_string()),
            other => Self::Validation(vec![other.to_string()]),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ErrorResponse)]
pub(crate) struct SuprSendError {
    code: u16,
    #[schema(schema_with = error_code_schema)]
    error_code: &'static str,
    #[serde(rename = "type")]
    #[schema(schema_with = error_type_schema)]
    error_type: &'static str,
    message: String,
    #[schema(schema_with = error_detail_schema)]
    detail: serde_json::Value,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct VersoriError {
    #[schema(schema_with = versori_code_schema)]
    code: &'static str,
    message: String,
    cause: String,
}

// ------------------------------------------- schemas of the error bodies

/// `detail` of a dialect-1 error: the list of problems of a 400, the
/// message otherwise.
pub(crate) fn error_detail_schema() -> impl Into<RefOr<Schema>> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("The list of problems for a ValidationError, the message otherwise."))
}

/// One error of each kind; the exhaustive match below fails to compile
/// when a kind is added to `ApiError`, so its codes cannot be forgotten.
fn every_error() -> [ApiError; 12] {
    [
        ApiError::Validation(Vec::new()),
        ApiError::Unauthenticated,
        ApiError::PermissionDenied(String::new()),
        ApiError::NotFound(String::new()),
        ApiError::MethodNotAllowed { allow: Vec::new() },
        ApiError::Conflict(String::new()),
        ApiError::RequestTimeout,
        ApiError::PayloadTooLarge { limit: 0 },
        ApiError::UnsupportedMediaType,
        ApiError::TooManyRequests { retry_after_seconds: 0 },
        ApiError::Internal,
        ApiError::Unavailable(String::new()),
    ]
}

#[allow(dead_code)] // Compiled only for its exhaustiveness.
fn every_error_is_listed(error: ApiError) {
    match error {
        ApiError::Validation(_)
        | ApiError::Unauthenticated
        | ApiError::BadSignature(_)
        | ApiError::PermissionDenied(_)
        | ApiError::NotFound(_)
        | ApiError::MethodNotAllowed { .. }
        | ApiError::Conflict(_)
        | ApiError::RequestTimeout
        | ApiError::PayloadTooLarge { .. }
        | ApiError::UnsupportedMediaType
        | ApiError::TooManyRequests { .. }
        | ApiError::Internal
        | ApiError::Unavailable(_) => {}
    }
}

fn error_codes(pick: fn((&'static str, &'static str, &'static str)) -> &'static str) -> Vec<&'static str> {
    every_error().iter().map(|error| pick(error.codes())).collect()
}

/// `error_code` of a dialect-1 error.
pub(crate) fn error_code_schema() -> impl Into<RefOr<Schema>> {
    string_enum(error_codes(|codes| codes.0), "A machine-readable code of the error.")
}

/// `type` of a dialect-1 error.
pub(crate) fn error_type_schema() -> impl Into<RefOr<Schema>> {
    string_enum(error_codes(|codes| codes.1), "The kind of error, as SuprSend names it.")
}

/// `code` of a dialect-2 error.
pub(crate) fn versori_code_schema() -> impl Into<RefOr<Schema>> {
    string_enum(error_codes(|codes| codes.2), "A machine-readable code of the error.")
}
