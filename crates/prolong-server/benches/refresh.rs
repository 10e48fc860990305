//! One refresh end to end against SQLite, without HTTP: read the session, check the MAC, decide,
//! one conditional UPDATE, sign the new access token, derive the new refresh token.
//!
//! `cargo bench -p prolong-server --bench refresh`

// Test and benchmark code may panic on a broken fixture; the libraries may not.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use prolong_server::config::{Overrides, Settings};
use prolong_server::{keyring, password, service};
use std::sync::Arc;

fn refresh(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let svc = rt.block_on(async {
        let settings = Arc::new(
            Settings::load(None, &Overrides { listen: None, database_url: Some(url.clone()) }).expect("settings"),
        );
        let store = prolong_store::connect(&url).await.expect("store");
        let keys = keyring::KeyRing::load(
            store.clone(),
            None,
            settings.algorithm,
            settings.policy,
            ("http://127.0.0.1", "prolong"),
            service::now_ms(),
        )
        .await
        .expect("keys");
        prolong_server::cli::create_user(store.as_ref(), "bench", "bench password").await.expect("user");
        service::Service {
            settings,
            store,
            keys,
            hasher: password::Hasher::new(1).expect("hasher"),
            issuer: "http://127.0.0.1".into(),
        }
    });
    let user = rt.block_on(svc.store.user_by_name("bench")).expect("q").expect("user");
    let mut token = rt.block_on(svc.start_session(&user, "prolong", None)).expect("session").refresh_token.expect("rt");
    c.bench_function("refresh/sqlite/ES256", |b| {
        b.iter(|| {
            let t = rt.block_on(svc.refresh(&token, 0, "prolong")).expect("refresh");
            token = t.refresh_token.expect("rt");
        })
    });
}

criterion_group!(benches, refresh);
criterion_main!(benches);
