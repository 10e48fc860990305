//! The axum application: routes, middleware and the shared state.
//!
//! Handlers are thin: they parse, call [`crate::service::Service`], and map errors in exactly one
//! place ([`error`]). Request logs carry the matched route, never the query string or a token.

pub mod account;
pub mod admin;
pub mod error;
pub mod feed;
pub mod guard;
pub mod oauth;
pub mod params;
pub mod web;
pub mod wellknown;

use crate::service::Service;
use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use error::ApiError;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler needs.
pub struct AppState {
    /// Sessions, tokens, keys, store.
    pub service: Service,
    /// RFC 8414 metadata, rendered once.
    pub metadata: bytes::Bytes,
    /// Failed-login counter.
    pub throttle: crate::throttle::LoginThrottle,
    /// The issuer's origin, always allowed by CORS.
    pub issuer_origin: String,
    /// The newest revocation `seq`, kept current by the feed pump.
    pub feed: tokio::sync::watch::Receiver<i64>,
    /// Turns true when the server starts shutting down, so long-lived feed responses end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl std::ops::Deref for AppState {
    type Target = Service;
    fn deref(&self) -> &Service {
        &self.service
    }
}

/// The shared state handlers receive.
pub type App = Arc<AppState>;

/// The `User-Agent` header, if it is text.
pub fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok())
}

/// Refuses a declared body over the limit before reading it.
async fn limit_declared_length(req: Request, next: Next) -> Response {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > params::MAX_BODY as u64) {
        return ApiError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("a handler panicked".into()).into_response()
}

/// Builds the router with every route and layer.
pub fn router(app: App) -> Router {
    let hsts = app.issuer.starts_with("https://");
    let mut router = Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/v1/renew", post(account::renew))
        .route("/v1/me", get(account::me))
        .route("/v1/sessions", get(account::sessions))
        .route("/v1/sessions/{id}", delete(account::end_session))
        .route("/v1/logout", post(account::logout))
        .route("/v1/logout-all", post(account::logout_all))
        .route("/v1/password", post(account::password))
        .route("/v1/signup", post(account::signup))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/v1/admin/users", post(admin::create_user))
        .route("/v1/admin/users/{username}/password", post(admin::reset_password))
        .route("/v1/admin/users/{username}/reauth", post(admin::reauth))
        .route("/v1/admin/users/{username}/revoke-all", post(admin::revoke_all))
        .route("/v1/admin/sessions", post(admin::create_session))
        .route("/v1/revocations", get(feed::revocations))
        .route("/.well-known/jwks.json", get(wellknown::jwks).options(wellknown::public_preflight))
        .route(
            "/.well-known/oauth-authorization-server",
            get(wellknown::discovery).options(wellknown::public_preflight),
        )
        .route("/.well-known/openid-configuration", get(wellknown::discovery).options(wellknown::public_preflight))
        .route("/", get(web::index))
        .route("/assets/app.js", get(web::app_js))
        .route("/assets/style.css", get(web::style_css))
        .route("/assets/prolong.js", get(web::prolong_js))
        .route("/healthz", get(wellknown::healthz))
        .route("/readyz", get(wellknown::readyz))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(app.clone())
        // Outside the routes, so that preflights reach it before method routing answers 405.
        .layer(middleware::from_fn_with_state(app, guard::cors))
        .layer(middleware::from_fn(limit_declared_length))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("no-referrer"),
        ));
    if hsts {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        ));
    }
    router.layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
        let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
        tracing::info_span!("request", method = %req.method(), route, user_id = tracing::field::Empty, session_id = tracing::field::Empty)
    }))
}
