//! The admin API (`/v1/admin/*`), behind `admin_token`; off (404) when it is empty.

use super::error::ApiError;
use super::guard::Admin;
use super::params::Params;
use super::{App, user_agent};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

async fn user_id(app: &App, username: &str) -> Result<String, ApiError> {
    let name = prolong_core::username::normalize(username);
    Ok(app.store.user_by_name(&name).await?.ok_or(ApiError::NotFound)?.id)
}

/// `POST /v1/admin/users`
pub async fn create_user(
    State(app): State<App>,
    _: Admin,
    params: Params,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let username = params.require("username")?;
    let password = params.get("password")?.unwrap_or("");
    let user = app.create_user(username, password).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": user.id}))))
}

/// `POST /v1/admin/users/{username}/password`: a reset; requires re-authentication.
pub async fn reset_password(
    State(app): State<App>,
    _: Admin,
    username: Result<Path<String>, axum::extract::rejection::PathRejection>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let Path(username) = username?;
    let id = user_id(&app, &username).await?;
    let password =
        params.get("password")?.ok_or_else(|| ApiError::InvalidRequest("missing parameter password".into()))?;
    app.reset_password(&id, password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/users/{username}/reauth`
pub async fn reauth(
    State(app): State<App>,
    _: Admin,
    username: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(username) = username?;
    let id = user_id(&app, &username).await?;
    app.require_reauth(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/users/{username}/revoke-all`
pub async fn revoke_all(
    State(app): State<App>,
    _: Admin,
    username: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(username) = username?;
    let id = user_id(&app, &username).await?;
    app.logout_all(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/admin/sessions`: a session for a subject the calling app authenticated itself.
pub async fn create_session(
    State(app): State<App>,
    _: Admin,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let username = params.require("username")?;
    let tokens = app.admin_session(username, user_agent(&headers)).await?;
    Ok(super::oauth::token_response(tokens))
}
