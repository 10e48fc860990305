//! Bearer-protected account endpoints.

use super::App;
use super::error::ApiError;
use crate::service::{AuthError, Authenticated};
use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use serde_json::{Value, json};

/// A request with a valid access token of a live session.
pub struct Bearer(pub Authenticated);

/// The token of an `Authorization: Bearer` header.
pub fn bearer_token(parts: &Parts) -> Result<&str, AuthError> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::Invalid);
    }
    let value = value.to_str().map_err(|_| AuthError::Invalid)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Invalid)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Invalid);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Invalid);
    }
    Ok(token)
}

impl FromRequestParts<App> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).map_err(ApiError::Unauthorized)?;
        let authed = app
            .authenticate(token)
            .await
            .map_err(ApiError::Unauthorized)?;
        tracing::Span::current().record("user_id", authed.claims.sub.as_str());
        tracing::Span::current().record("session_id", authed.claims.sid.as_str());
        Ok(Bearer(authed))
    }
}

/// `GET /v1/me`
pub async fn me(State(app): State<App>, Bearer(auth): Bearer) -> Result<Json<Value>, ApiError> {
    let user = app
        .store
        .user_by_id(&auth.claims.sub)
        .await?
        .ok_or(ApiError::Unauthorized(AuthError::Invalid))?;
    Ok(Json(json!({
        "sub": user.id,
        "username": user.username,
        "session_id": auth.claims.sid,
        "auth_time": auth.session.state.auth_time / 1000,
    })))
}
