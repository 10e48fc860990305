//! The one place errors become HTTP responses: RFC 6749 §5.2 bodies for `/oauth/*`, RFC 6750
//! `WWW-Authenticate` challenges for bearer endpoints, JSON everywhere.
//!
//! Internal and database failures reach the client as a generic message; the detail is logged.

use crate::service::{AuthError, GrantError};
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prolong_core::Reason;
use serde_json::json;

/// Every error an endpoint can answer with.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `invalid_request` with a description.
    InvalidRequest(String),
    /// 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// 400 `invalid_grant` with a `reason`.
    InvalidGrant(Reason, String),
    /// 401 from a bearer endpoint.
    Unauthorized(AuthError),
    /// 404 with a JSON body.
    NotFound,
    /// 409: the username is taken.
    Conflict,
    /// 429 with `Retry-After` (seconds).
    TooManyAttempts(u64),
    /// 405.
    MethodNotAllowed,
    /// 413.
    PayloadTooLarge,
    /// 503: the database is unreachable.
    Unavailable,
    /// 500, detail logged only.
    Internal(String),
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> Self {
        match e {
            GrantError::Invalid(reason, description) => ApiError::InvalidGrant(reason, description.into()),
            GrantError::Store(prolong_store::StoreError::Unavailable(detail)) => {
                tracing::error!(%detail, "database unavailable");
                ApiError::Unavailable
            }
            GrantError::Store(e) => ApiError::Internal(e.to_string()),
            GrantError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<crate::accounts::AccountError> for ApiError {
    fn from(e: crate::accounts::AccountError) -> Self {
        use crate::accounts::AccountError;
        match e {
            AccountError::Taken => ApiError::Conflict,
            AccountError::Credential(c) => ApiError::InvalidRequest(c.to_string()),
            AccountError::WrongPassword => {
                ApiError::InvalidGrant(Reason::BadCredentials, "the current password is wrong".into())
            }
            AccountError::NotFound => ApiError::NotFound,
            AccountError::Grant(g) => g.into(),
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        ApiError::NotFound
    }
}

impl From<prolong_store::StoreError> for ApiError {
    fn from(e: prolong_store::StoreError) -> Self {
        GrantError::Store(e).into()
    }
}

fn body(status: StatusCode, value: serde_json::Value) -> Response {
    let mut r = (status, Json(value)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::InvalidRequest(d) => {
                body(StatusCode::BAD_REQUEST, json!({"error":"invalid_request","error_description":d}))
            }
            ApiError::UnsupportedGrantType => body(
                StatusCode::BAD_REQUEST,
                json!({"error":"unsupported_grant_type","error_description":"grant_type must be password or refresh_token"}),
            ),
            ApiError::InvalidGrant(reason, d) => body(
                StatusCode::BAD_REQUEST,
                json!({"error":"invalid_grant","error_description":d,"reason":reason.as_str()}),
            ),
            ApiError::Unauthorized(AuthError::Unavailable) => ApiError::Unavailable.into_response(),
            ApiError::Unauthorized(kind) => {
                let (challenge, error, description) = match kind {
                    AuthError::Missing => ("Bearer", "missing_token", "an access token is required"),
                    AuthError::Expired => (
                        "Bearer error=\"invalid_token\", error_description=\"the access token expired\"",
                        "token_expired",
                        "the access token expired",
                    ),
                    _ => ("Bearer error=\"invalid_token\"", "invalid_token", "the access token is not valid"),
                };
                let mut r = body(StatusCode::UNAUTHORIZED, json!({"error":error,"error_description":description}));
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                r
            }
            ApiError::Conflict => body(
                StatusCode::CONFLICT,
                json!({"error":"username_taken","error_description":"this username is already taken"}),
            ),
            ApiError::TooManyAttempts(secs) => {
                let mut r = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error":"too_many_attempts","error_description":"too many failed sign-in attempts; try again later"}),
                );
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            ApiError::NotFound => {
                body(StatusCode::NOT_FOUND, json!({"error":"not_found","error_description":"no such resource"}))
            }
            ApiError::MethodNotAllowed => body(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"error":"method_not_allowed","error_description":"method not allowed for this resource"}),
            ),
            ApiError::PayloadTooLarge => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"error":"invalid_request","error_description":"request body larger than 16 KiB"}),
            ),
            ApiError::Unavailable => {
                let mut r = body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"error":"temporarily_unavailable","error_description":"the database is unavailable; retry shortly"}),
                );
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error":"server_error","error_description":"internal error"}),
                )
            }
        }
    }
}
