//! The Rust client (`prolong-client`) against the real server: continuous use across many access
//! lifetimes without a 401 reaching the caller, idle sign-out, single-flight, misconfiguration.

use crate::support::{Db, PASSWORD, TestApp};
use prolong_client::{Client, Config, ErrorKind};
use std::time::{Duration, Instant};

const SHORT: &[(&str, &str)] = &[
    ("PROLONG_TOKENS__ACCESS_TTL", "2s"),
    ("PROLONG_SESSION__REUSE_GRACE", "1s"),
    ("PROLONG_SESSION__IDLE_TIMEOUT", "4s"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_client_never_sees_a_401_across_ten_lifetimes() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, SHORT).await;
    let client = Client::new(Config::new(&app.base)).expect("client");
    client.login("alice", PASSWORD).await.expect("login");
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed() < Duration::from_secs(21) {
        client.touch();
        let r = client.get("/v1/me").await.expect("request");
        assert_eq!(r.status(), reqwest::StatusCode::OK, "after {:?}", start.elapsed());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(calls > 50);
    assert!(client.signed_out().borrow().is_none());
    assert!(!app.log().contains("reuse detected"), "single-flight: no refresh token was used twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_client_is_signed_out_with_the_servers_reason() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, SHORT).await;
    let client = Client::new(Config::new(&app.base)).expect("client");
    client.login("alice", PASSWORD).await.expect("login");
    let mut signed_out = client.signed_out();
    // Nobody touches it: the background refreshes report growing idle time.
    let out = tokio::time::timeout(Duration::from_secs(10), signed_out.wait_for(Option::is_some)).await;
    let reason = out.expect("signed out in time").expect("watch").clone().expect("some").reason;
    assert_eq!(reason, "expired_idle");
    // Afterwards every call fails at once, without a retry loop.
    let e = client.get("/v1/me").await.expect_err("signed out");
    assert_eq!(e.kind(), &ErrorKind::SignedOut("expired_idle".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_refresh() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, SHORT).await;
    let client = Client::new(Config::new(&app.base)).expect("client");
    client.login("alice", PASSWORD).await.expect("login");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move { c.refresh().await }));
    }
    for t in tasks {
        t.await.expect("join").expect("refresh");
    }
    let r = client.get("/v1/me").await.expect("request");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert!(!app.log().contains("reuse detected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfiguration_is_reported_descriptively() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, SHORT).await;
    let cfg = Config { lead: Some(Duration::from_secs(5)), ..Config::new(&app.base) };
    let client = Client::new(cfg).expect("client");
    let e = client.login("alice", PASSWORD).await.expect_err("lead ≥ lifetime");
    assert!(
        matches!(e.kind(), ErrorKind::Config(m) if m.contains("lead 5s is not shorter than the access token lifetime 2s")),
        "{e}"
    );
    let client = Client::new(Config::new(&app.base)).expect("client");
    let e = client.login("alice", "wrong password").await.expect_err("bad password");
    assert_eq!(e.kind(), &ErrorKind::SignedOut("bad_credentials".into()));
    assert!(Client::new(Config::new("localhost:1")).is_err());
    let e = Client::new(Config::new(&app.base)).expect("client").get("/v1/me").await.expect_err("no login");
    assert_eq!(e.kind(), &ErrorKind::NotSignedIn);
}
