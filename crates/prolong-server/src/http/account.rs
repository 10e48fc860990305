//! Bearer-protected account endpoints.

use super::App;
use super::error::ApiError;
use super::params::Params;
use crate::service::{AuthError, Authenticated};
use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::{Value, json};

/// A request with a valid access token of a live session.
pub struct Bearer(pub Authenticated);

/// The token of an `Authorization: Bearer` header, read as resource servers read it
/// ([`prolong_verify::bearer_token`]): no header, or one of another scheme, is `Missing`; two
/// headers or an empty bearer token are `Invalid`.
pub fn bearer_token(parts: &Parts) -> Result<&str, AuthError> {
    prolong_verify::bearer_token(&parts.headers).map_err(|e| match e.kind() {
        prolong_verify::ErrorKind::MissingToken => AuthError::Missing,
        _ => AuthError::Invalid,
    })
}

impl FromRequestParts<App> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).map_err(ApiError::Unauthorized)?;
        let authed = app.authenticate(token).await.map_err(ApiError::Unauthorized)?;
        tracing::Span::current().record("user_id", authed.claims.sub.as_str());
        tracing::Span::current().record("session_id", authed.claims.sid.as_str());
        Ok(Bearer(authed))
    }
}

/// `GET /v1/me`
pub async fn me(State(app): State<App>, Bearer(auth): Bearer) -> Result<Json<Value>, ApiError> {
    let user = app.store.user_by_id(&auth.claims.sub).await?.ok_or(ApiError::Unauthorized(AuthError::Invalid))?;
    Ok(Json(json!({
        "sub": user.id,
        "username": user.username,
        "session_id": auth.claims.sid,
        "auth_time": auth.session.state.auth_time / 1000,
    })))
}

/// `GET /v1/sessions`: the caller's live sessions.
pub async fn sessions(State(app): State<App>, Bearer(auth): Bearer) -> Result<Json<Value>, ApiError> {
    let list = app.store.sessions_of(&auth.session.user_id).await?;
    let policy = app.settings.policy;
    let now = crate::service::now_ms();
    let live: Vec<Value> = list
        .iter()
        .filter(|s| prolong_core::session::liveness(&s.state, auth.session.state.token_version, &policy, now).is_ok())
        .map(|s| crate::accounts::session_json(s, &auth.claims.sid, &policy))
        .collect();
    Ok(Json(Value::Array(live)))
}

/// `DELETE /v1/sessions/{id}`: ends one of the caller's sessions.
pub async fn end_session(
    State(app): State<App>,
    Bearer(auth): Bearer,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(id) = id?;
    app.end_own_session(&auth, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/logout`: ends the current session.
pub async fn logout(State(app): State<App>, Bearer(auth): Bearer) -> Result<StatusCode, ApiError> {
    app.logout(&auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/logout-all`: every session of the caller ends.
pub async fn logout_all(State(app): State<App>, Bearer(auth): Bearer) -> Result<StatusCode, ApiError> {
    app.logout_all(&auth.session.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/password`: change the password; every session ends (re-authentication required).
pub async fn password(
    State(app): State<App>,
    super::guard::ClientIp(ip): super::guard::ClientIp,
    Bearer(auth): Bearer,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let current = params.get("current_password")?.unwrap_or("");
    let new =
        params.get("new_password")?.ok_or_else(|| ApiError::InvalidRequest("missing parameter new_password".into()))?;
    // Guessing the current password with a stolen access token is throttled like logins.
    let key = format!("password-change:{}", auth.session.user_id);
    let started = std::time::Instant::now();
    if let Err(retry) = app.throttle.attempt(&key, ip, started) {
        return Err(ApiError::TooManyAttempts(retry.as_secs_f64().ceil() as u64));
    }
    let result = app.change_password(&auth, current, new).await;
    if !matches!(result, Err(crate::accounts::AccountError::WrongPassword)) {
        app.throttle.succeeded(&key, ip, started);
    }
    result?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/signup`: only with `allow_signup`.
pub async fn signup(State(app): State<App>, params: Params) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !app.settings.allow_signup {
        return Err(ApiError::NotFound);
    }
    let username = params.require("username")?;
    let password = params.get("password")?.unwrap_or("");
    let user = app.create_user(username, password).await?;
    tracing::info!(target: crate::service::SECURITY, user_id = %user.id, "signup");
    Ok((StatusCode::CREATED, Json(json!({"id": user.id}))))
}

/// `POST /v1/renew` (renew mode): Bearer token plus optional `idle` in a form or JSON body.
pub async fn renew(State(app): State<App>, req: axum::extract::Request) -> Result<axum::response::Response, ApiError> {
    let (parts, body) = req.into_parts();
    let token = bearer_token(&parts).map_err(ApiError::Unauthorized)?.to_owned();
    let headers = &parts.headers;
    let has_body = headers.get(axum::http::header::CONTENT_TYPE).is_some()
        || headers.get(axum::http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    let idle = if has_body {
        // An empty body (with or without a Content-Type) means no `idle`: 0.
        let bytes = super::params::read_body(body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            0
        } else {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            let params = <Params as axum::extract::FromRequest<App>>::from_request(req, &app).await?;
            params.idle()?
        }
    } else {
        0
    };
    Ok(super::oauth::token_response(app.renew(&token, idle).await?))
}
