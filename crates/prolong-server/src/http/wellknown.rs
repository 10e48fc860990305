//! Discovery (RFC 8414), JWKS and health endpoints.

use super::App;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// RFC 8414 metadata, built once from configuration (never from `Host`).
pub fn metadata(issuer: &str, algorithm: &str, introspection: bool) -> bytes::Bytes {
    let mut m = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "id_token_signing_alg_values_supported": [algorithm],
        "token_endpoint_auth_signing_alg_values_supported": [algorithm],
        "userinfo_endpoint": format!("{issuer}/v1/me"),
    });
    if let (true, Some(obj)) = (introspection, m.as_object_mut()) {
        obj.insert("introspection_endpoint".into(), format!("{issuer}/oauth/introspect").into());
    }
    serde_json::to_vec(&m).unwrap_or_default().into()
}

fn json_bytes(body: bytes::Bytes, cache: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

/// `GET /.well-known/oauth-authorization-server` and `/.well-known/openid-configuration`
pub async fn discovery(State(app): State<App>) -> Response {
    json_bytes(app.metadata.clone(), "public, max-age=300")
}

/// `GET /.well-known/jwks.json`
pub async fn jwks(State(app): State<App>) -> Response {
    // A key rotated in by another process is published here within a second, even before this
    // server's periodic reload; verifiers refetch the JWKS when they meet an unknown `kid`.
    app.keys.reload_if_stale(crate::service::now_ms(), 1_000).await;
    json_bytes(app.keys.get().jwks.clone(), "public, max-age=15")
}

/// CORS preflight for the public documents: any origin may read them.
pub async fn public_preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    r
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Response {
    (StatusCode::OK, axum::Json(json!({"status":"ok"}))).into_response()
}

/// `GET /readyz`: 503 while the database is unreachable.
pub async fn readyz(State(app): State<App>) -> Response {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status":"ready"}))).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status":"unavailable"}))).into_response()
        }
    }
}
