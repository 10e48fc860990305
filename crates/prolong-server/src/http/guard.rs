//! Request guards shared by several routes: the client address, the admin and resource-server
//! secrets (compared in constant time), and the browser-origin policy of CONTRACT §4 (CORS).

use super::App;
use super::error::ApiError;
use crate::service::AuthError;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use subtle::ConstantTimeEq;

/// The client's address, as far as the server can believe it (see `throttle::client_ip`).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<App> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let xff = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        Ok(ClientIp(crate::throttle::client_ip(peer, xff, &app.settings.trusted_proxies)))
    }
}

fn secret_matches(presented: &str, secret: &str) -> bool {
    // Constant time for equal lengths; the length of a 32+ byte random secret is not a secret.
    presented.len() == secret.len() && bool::from(presented.as_bytes().ct_eq(secret.as_bytes()))
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    super::account::bearer_token(parts).map_err(ApiError::Unauthorized)
}

/// A request carrying the admin token. When no admin token is configured, the admin API does not
/// exist (404).
pub struct Admin;

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let Some(secret) = &app.settings.admin_token else { return Err(ApiError::NotFound) };
        let token = bearer(parts)?;
        if secret_matches(token, secret.expose_secret()) {
            Ok(Admin)
        } else {
            tracing::warn!(target: crate::service::SECURITY, "admin request with a wrong token");
            Err(ApiError::Unauthorized(AuthError::Invalid))
        }
    }
}

/// A request carrying the admin token or one of the resource-server tokens (introspection and the
/// revocation feed).
pub struct ResourceServer;

impl FromRequestParts<App> for ResourceServer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let settings = &app.settings;
        if settings.admin_token.is_none() && settings.resource_tokens.is_empty() {
            return Err(ApiError::NotFound);
        }
        let token = bearer(parts)?;
        // Compare against every secret, without stopping early.
        let mut ok = false;
        for s in settings.admin_token.iter().chain(settings.resource_tokens.iter()) {
            ok |= secret_matches(token, s.expose_secret());
        }
        if ok { Ok(ResourceServer) } else { Err(ApiError::Unauthorized(AuthError::Invalid)) }
    }
}

/// The origin (scheme://host[:port]) of a URL.
pub fn origin_of(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let host = rest.split('/').next().unwrap_or(rest);
            format!("{}{}", &url[..i + 3], host)
        }
        None => url.to_owned(),
    }
}

/// CORS for the user-facing endpoints: preflights are answered and the `Origin` echoed only when
/// it is the issuer's own or listed in `cors_allowed_origins`; a POST or DELETE from any other
/// origin gets 403 before any credential is looked at.
pub async fn cors(State(app): State<App>, req: Request, next: Next) -> Response {
    if !is_user_facing(req.uri().path()) {
        return next.run(req).await;
    }
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        // The answer depends on the Origin, so a cache must not reuse this one for a request with one.
        let mut r = next.run(req).await;
        r.headers_mut().append(header::VARY, HeaderValue::from_static("Origin"));
        return r;
    };
    let allowed = origin
        .to_str()
        .is_ok_and(|o| o == app.issuer_origin || app.settings.cors_allowed_origins.iter().any(|a| a == o));
    let method = req.method().clone();
    if method == Method::OPTIONS {
        if !allowed {
            return forbidden_origin();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return r;
    }
    if !allowed && (method == Method::POST || method == Method::DELETE) {
        return forbidden_origin();
    }
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if allowed {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("WWW-Authenticate, Retry-After"));
    }
    r
}

/// The endpoints a browser app calls (CONTRACT §4); admin, introspection and the feed are not.
fn is_user_facing(path: &str) -> bool {
    matches!(path, "/oauth/token" | "/oauth/revoke" | "/v1/renew" | "/v1/me" | "/v1/password" | "/v1/signup")
        || path == "/v1/sessions"
        || path.starts_with("/v1/sessions/")
        || path == "/v1/logout"
        || path == "/v1/logout-all"
}

fn forbidden_origin() -> Response {
    let mut r = (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({"error":"forbidden_origin","error_description":"this origin may not call this endpoint"})),
    )
        .into_response();
    r.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    r
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins() {
        assert_eq!(super::origin_of("https://auth.example.com/tenant"), "https://auth.example.com");
        assert_eq!(super::origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert!(super::secret_matches("abc", "abc"));
        assert!(!super::secret_matches("abd", "abc"));
        assert!(!super::secret_matches("ab", "abc"));
    }
}
