//! The `prolong` token server and CLI.
//!
//! Layout: [`config`] merges and validates settings, [`keyring`] holds keys, [`password`] hashes,
//! [`service`] applies the session rules of `prolong-core` to the store, [`http`] exposes it, and
//! [`cli`] is the command line.

pub mod accounts;
pub mod cli;
pub mod config;
pub mod http;
pub mod keyring;
pub mod password;
pub mod service;
pub mod throttle;

use anyhow::Context;
use config::Settings;
use std::net::SocketAddr;
use std::sync::Arc;

/// Whether an issuer URL names a loopback host (plain http is only allowed there).
pub fn is_loopback_issuer(issuer: &str) -> bool {
    let Some(rest) = issuer.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Runs the server until SIGINT or SIGTERM, then finishes in-flight requests and closes the
/// database.
pub async fn serve(settings: Settings, demo: bool) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let store = prolong_store::connect(&settings.database_url)
        .await
        .with_context(|| format!("opening database {}", config::mask_url(&settings.database_url)))?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let issuer = settings.issuer.clone().unwrap_or_else(|| format!("http://{addr}"));
    if !issuer.starts_with("https://") && !is_loopback_issuer(&issuer) && !demo {
        anyhow::bail!("issuer {issuer} must be https unless it is a loopback address (set `issuer`)");
    }
    let sealer = match &settings.key_encryption_key {
        Some(k) => Some(keyring::Sealer::new(k)?),
        None => {
            tracing::warn!("key_encryption_key is not set: private keys are stored in plain text in the database");
            None
        }
    };
    let keys = keyring::KeyRing::load(
        store.clone(),
        sealer,
        settings.algorithm,
        settings.policy,
        (&issuer, &settings.audience),
        service::now_ms(),
    )
    .await?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let hasher = password::Hasher::new(cores)?;
    if demo {
        cli::ensure_demo_user(store.as_ref()).await?;
    }
    let issuer_for_cors = issuer.clone();
    let metadata = http::wellknown::metadata(
        &issuer,
        settings.algorithm.as_str(),
        settings.admin_token.is_some() || !settings.resource_tokens.is_empty(),
    );
    let (feed, feed_pump) = http::feed::pump(store.clone());
    let (stop_tx, stopping) = tokio::sync::watch::channel(false);
    let app = Arc::new(http::AppState {
        service: service::Service {
            settings: settings.clone(),
            store: store.clone(),
            keys: keys.clone(),
            hasher,
            issuer,
        },
        metadata,
        throttle: throttle::LoginThrottle::new(settings.login_max_failures, settings.login_window),
        issuer_origin: http::guard::origin_of(&issuer_for_cors),
        feed,
        stopping,
    });
    let reload = tokio::spawn({
        let keys = keys.clone();
        async move {
            let mut tick = tokio::time::interval(keyring::RELOAD_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = keys.reload(service::now_ms()).await {
                    tracing::warn!(error = %e, "reloading keys failed; keeping the current ones");
                }
            }
        }
    });
    let purge = tokio::spawn({
        let app = app.clone();
        async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                match app.purge(service::now_ms()).await {
                    Ok(p) if p.sessions + p.revocations > 0 => {
                        tracing::info!(sessions = p.sessions, revocations = p.revocations, "purged expired sessions")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "purge failed"),
                }
            }
        }
    });
    tracing::info!("listening on http://{addr}");
    axum::serve(listener, http::router(app).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        })
        .await?;
    reload.abort();
    purge.abort();
    feed_pump.abort();
    store.close().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (the signals `serve` shuts down gracefully on).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_issuers() {
        for ok in ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80", "http://127.0.0.2"] {
            assert!(super::is_loopback_issuer(ok), "{ok}");
        }
        for bad in ["http://0.0.0.0:80", "http://example.com", "https://127.0.0.1", "http://10.0.0.1:8080"] {
            assert!(!super::is_loopback_issuer(bad), "{bad}");
        }
    }
}
