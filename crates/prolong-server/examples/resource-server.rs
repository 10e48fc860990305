//! An example API protected by Prolong access tokens, verified with `prolong-verify`.
//!
//! ```text
//! cargo run --release --example resource-server -- --issuer http://127.0.0.1:8080 --listen 127.0.0.1:9090
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:9090/api/whoami
//! ```
//!
//! It discovers the issuer's keys (RFC 8414 metadata, then the JWKS), keeps them fresh, and answers
//! every `/api/*` route only for a valid token: `GET /api/customers` returns a list of customers and
//! `GET /api/whoami` the verified claims. With `--strict --admin-token T` it follows the issuer's
//! revocation feed and rejects revoked tokens within about a second; `GET /metrics` shows the
//! feed's state. Failures answer as Prolong's own endpoints do (401
//! `missing_token` / `token_expired` / `invalid_token`, 503 `temporarily_unavailable` while the
//! issuer's keys have never loaded). Anything else is a JSON 404.
//!
//! The HTTP client is built without a TLS backend (the workspace's `reqwest` has none), which is
//! enough for a loopback issuer; for an `https://` issuer, enable one of reqwest's TLS features.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use prolong_verify::{FailMode, RevocationFeed, Verified, Verifier, VerifyLayer};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Parser)]
#[command(about = "An example API that accepts Prolong access tokens")]
struct Args {
    /// The issuer URL, exactly as in the tokens' `iss` (its metadata must name the same issuer).
    #[arg(long)]
    issuer: String,
    /// The address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: std::net::SocketAddr,
    /// The audience tokens must carry.
    #[arg(long, default_value = "prolong")]
    audience: String,
    /// Strict mode: follow the issuer's revocation feed and reject tokens of revoked sessions and
    /// of users who logged out everywhere within about a second.
    #[arg(long, requires = "admin_token")]
    strict: bool,
    /// The admin or resource-server token that may read the revocation feed.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Strict mode: how long the feed may be silent before requests fail (closed, 503).
    #[arg(long, default_value_t = 10)]
    max_staleness: u64,
    /// Strict mode: accept otherwise valid tokens when the feed is stale, instead of 503.
    #[arg(long)]
    fail_open: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut builder = Verifier::builder(args.issuer.clone(), args.audience);
    let mut feed = None;
    if args.strict {
        let token = args.admin_token.clone().unwrap_or_default();
        let f = RevocationFeed::builder(args.issuer, token)
            .max_staleness(std::time::Duration::from_secs(args.max_staleness))
            .fail_mode(if args.fail_open { FailMode::Open } else { FailMode::Closed })
            .start();
        builder = builder.revocation(f.clone());
        feed = Some(f);
    }
    let verifier = builder.build().await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    if args.strict {
        tracing::info!("strict mode: following the revocation feed");
    }
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(verifier, feed)).with_graceful_shutdown(prolong_server::shutdown_signal()).await?;
    Ok(())
}

fn app(verifier: Verifier, feed: Option<Arc<RevocationFeed>>) -> Router {
    let metrics = get(move || {
        let stats = feed.as_ref().map(|f| f.stats());
        async move { feed_metrics(stats) }
    });
    Router::new()
        .route("/api/customers", get(customers))
        .route("/api/whoami", get(whoami))
        // Only matched routes need a token: an unknown path is a 404 either way.
        .route_layer(VerifyLayer::new(verifier.clone()))
        .route("/metrics", metrics)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(verifier)
}

/// Any valid token may list the customers.
async fn customers(Verified(_claims): Verified) -> Json<Value> {
    Json(json!([
        {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"},
        {"id": 2, "name": "Grace Hopper", "email": "grace@example.com"},
        {"id": 3, "name": "Edsger Dijkstra", "email": "edsger@example.com"},
    ]))
}

/// The claims of the caller's token, as verified.
async fn whoami(Verified(claims): Verified) -> Json<prolong_verify::Claims> {
    Json(claims)
}

/// Prometheus-style text: whether strict mode's feed is connected and how long it has been silent.
fn feed_metrics(stats: Option<prolong_verify::FeedStats>) -> String {
    match stats {
        None => "prolong_feed_enabled 0\n".to_owned(),
        Some(s) => format!(
            "prolong_feed_enabled 1\nprolong_feed_connected {}\nprolong_feed_silent_ms {}\nprolong_feed_failures_total {}\nprolong_feed_entries {}\nprolong_feed_cursor {}\n",
            u8::from(s.connected),
            s.silent_for_ms.unwrap_or(-1),
            s.failures,
            s.entries,
            s.cursor
        ),
    }
}

async fn not_found() -> impl IntoResponse {
    (StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "error_description": "no such resource"})))
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"error": "method_not_allowed", "error_description": "only GET is supported"})),
    )
}
