//! `/oauth/token` (password and refresh_token grants) and `/oauth/revoke` (RFC 7009).

use super::error::ApiError;
use super::guard::{ClientIp, ResourceServer};
use super::params::Params;
use super::{App, user_agent};
use crate::service::TokenSet;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Default `client_id` when a request names none.
pub const DEFAULT_CLIENT_ID: &str = "prolong";

fn check_client_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        return Err(ApiError::InvalidRequest("client_id must be 1 to 128 printable characters".into()));
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct TokenBody<'a> {
    token_type: &'static str,
    access_token: &'a str,
    expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    session_id: &'a str,
    idle_expires_at: i64,
    session_expires_at: i64,
}

/// A token response with the no-store headers of RFC 6749 §5.1.
pub fn token_response(t: TokenSet) -> Response {
    let body = TokenBody {
        token_type: "Bearer",
        access_token: &t.access_token,
        expires_in: t.expires_in,
        refresh_token: t.refresh_token.as_deref(),
        session_id: &t.session_id,
        idle_expires_at: t.idle_expires_at,
        session_expires_at: t.session_expires_at,
    };
    let mut r = (StatusCode::OK, Json(body)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// `POST /oauth/token`
pub async fn token(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let client_id = params.get("client_id")?.filter(|c| !c.is_empty());
    if let Some(c) = client_id {
        check_client_id(c)?;
    }
    match params.get("grant_type")? {
        Some("password") => {
            let username = params.require("username")?;
            let password = params.get("password")?.unwrap_or("");
            // Throttled per (username, address) before the password is looked at, so the answer
            // is the same whether the next password is right or wrong.
            let name = prolong_core::username::normalize(username);
            let started = std::time::Instant::now();
            if let Err(retry) = app.throttle.attempt(&name, ip, started) {
                return Err(ApiError::TooManyAttempts(retry.as_secs_f64().ceil() as u64));
            }
            if username.len() > 256 || password.len() > 1024 {
                // Simply wrong: no account has such a name or password.
                return Err(crate::service::GrantError::Invalid(
                    prolong_core::Reason::BadCredentials,
                    "invalid username or password",
                )
                .into());
            }
            match app.login(username, password, client_id.unwrap_or(DEFAULT_CLIENT_ID), user_agent(&headers)).await {
                Ok(tokens) => {
                    app.throttle.succeeded(&name, ip, started);
                    Ok(token_response(tokens))
                }
                Err(e) => {
                    if !matches!(e, crate::service::GrantError::Invalid(prolong_core::Reason::BadCredentials, _)) {
                        // Not a wrong password (e.g. the database failed): it does not count.
                        app.throttle.succeeded(&name, ip, started);
                    }
                    Err(e.into())
                }
            }
        }
        Some("refresh_token") => {
            let refresh_token = params.require("refresh_token")?;
            let idle = params.idle()?;
            Ok(token_response(app.refresh(refresh_token, idle, client_id.unwrap_or(DEFAULT_CLIENT_ID)).await?))
        }
        Some("") | None => Err(ApiError::InvalidRequest("missing parameter grant_type".into())),
        Some(_) => Err(ApiError::UnsupportedGrantType),
    }
}

/// `POST /oauth/revoke`: always 200 for a well-formed request (RFC 7009 §2.2).
pub async fn revoke(State(app): State<App>, params: Params) -> Result<Response, ApiError> {
    let token = params.require("token")?;
    app.revoke(token).await?;
    let mut r = StatusCode::OK.into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

/// `POST /oauth/introspect` (RFC 7662), for the admin and resource-server tokens.
pub async fn introspect(State(app): State<App>, _: ResourceServer, params: Params) -> Result<Response, ApiError> {
    let token = params.require("token")?;
    let body = app.introspect(token).await?;
    let mut r = (StatusCode::OK, Json(body)).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
