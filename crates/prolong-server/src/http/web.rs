//! The demo page at `/`: plain files from `web/` and the JavaScript client, embedded at compile
//! time (no build step, nothing read from disk at run time), served with a strict
//! Content-Security-Policy.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn file(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `GET /`
pub async fn index() -> Response {
    file(include_str!("../../../../web/index.html"), "text/html; charset=utf-8")
}

/// `GET /assets/app.js`
pub async fn app_js() -> Response {
    file(include_str!("../../../../web/app.js"), "text/javascript; charset=utf-8")
}

/// `GET /assets/style.css`
pub async fn style_css() -> Response {
    file(include_str!("../../../../web/style.css"), "text/css; charset=utf-8")
}

/// `GET /assets/prolong.js`: the JavaScript client the page imports.
pub async fn prolong_js() -> Response {
    file(include_str!("../../../../clients/js/prolong.js"), "text/javascript; charset=utf-8")
}
