//! Several `prolong serve` processes on one database are one service; key rotation reaches
//! running servers without a restart.

use crate::support::{Db, PASSWORD, TestApp, header, s};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;

use crate::flows::ISSUER;
const ENV: &[(&str, &str)] = &[("PROLONG_ISSUER", ISSUER)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_postgres_share_sessions_keys_and_the_rotation_race() {
    let db = Db::postgres().await;
    let a = TestApp::start(&db, ENV).await;
    let b = TestApp::start_bare(&db, ENV).await;
    let login = a.login("alice", PASSWORD).await;
    // A session started on one replica refreshes on the other, and tokens verify on both.
    let (status, r1) = b.refresh(s(&login, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{r1}");
    assert_eq!(a.me(s(&r1, "access_token")).await.0, StatusCode::OK);
    assert_eq!(b.me(s(&login, "access_token")).await.0, StatusCode::OK);
    let jwks = |app: &TestApp| {
        let req = app.http.get(app.url("/.well-known/jwks.json")).send();
        async move { req.await.expect("send").json::<Value>().await.expect("json") }
    };
    assert_eq!(jwks(&a).await, jwks(&b).await, "one signing key for the service");

    // The concurrent-refresh race across replicas: one new token, whoever answers.
    let rt = s(&r1, "refresh_token").to_owned();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = if i % 2 == 0 { &a } else { &b };
        let (http, url, rt) = (app.http.clone(), app.url("/oauth/token"), rt.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str())])
                .send()
                .await
                .expect("send");
            (r.status(), r.json::<Value>().await.expect("json"))
        }));
    }
    let mut tokens = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.expect("join");
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens.insert(s(&body, "refresh_token").to_owned());
    }
    assert_eq!(tokens.len(), 1, "never two live branches of one session");
    // Reuse detected on one replica is seen by the other.
    let (_, r2) = a.refresh(tokens.iter().next().expect("one")).await;
    let (_, _) = b.refresh(s(&login, "refresh_token")).await;
    let (status, body) = a.refresh(s(&r2, "refresh_token")).await;
    assert_eq!((status, body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("reuse_detected")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_reaches_running_servers_and_old_tokens_keep_verifying() {
    let db = Db::sqlite();
    let a = TestApp::start(&db, ENV).await;
    let before = a.login("alice", PASSWORD).await;
    let old_kid = header(s(&before, "access_token"))["kid"].as_str().expect("kid").to_owned();

    let (code, out, err) = a.cli(&["keys", "rotate"], None).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new signing key"), "{out}");

    // A server started after the rotation signs with the new key at once.
    let b = TestApp::start_bare(&db, ENV).await;
    let after = b.login("alice", PASSWORD).await;
    let new_kid = header(s(&after, "access_token"))["kid"].as_str().expect("kid").to_owned();
    assert_ne!(new_kid, old_kid);

    // The running server publishes the new key in its JWKS at once (at most a second of lag), so
    // resource servers that fetch it there can verify the new tokens.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let jwks_a: Value =
        a.http.get(a.url("/.well-known/jwks.json")).send().await.expect("send").json().await.expect("json");
    assert!(jwks_a["keys"].as_array().expect("keys").iter().any(|k| k["kid"] == new_kid.as_str()), "{jwks_a}");
    // The running server verifies the new key's tokens without a restart, and old tokens keep
    // verifying everywhere until they expire.
    assert_eq!(a.me(s(&after, "access_token")).await.0, StatusCode::OK);
    assert_eq!(a.me(s(&before, "access_token")).await.0, StatusCode::OK);
    assert_eq!(b.me(s(&before, "access_token")).await.0, StatusCode::OK);
    let jwks: Value =
        b.http.get(b.url("/.well-known/jwks.json")).send().await.expect("send").json().await.expect("json");
    let kids: HashSet<&str> = jwks["keys"].as_array().expect("keys").iter().filter_map(|k| k["kid"].as_str()).collect();
    assert!(kids.contains(old_kid.as_str()) && kids.contains(new_kid.as_str()), "{jwks}");
    // A refresh token MACed with the retired MAC key still rotates, and moves to the new key.
    let (status, body) = b.refresh(s(&before, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = a.refresh(s(&body, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);

    let (code, out, _) = a.cli(&["keys", "list"], None).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.contains("signing")).count(), 2, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("refresh_mac")).count(), 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_sealed_at_rest_with_a_key_encryption_key() {
    let db = Db::sqlite();
    let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, base64
    let app = TestApp::start(&db, &[("PROLONG_KEY_ENCRYPTION_KEY", kek), ("PROLONG_ISSUER", ISSUER)]).await;
    let login = app.login("alice", PASSWORD).await;
    assert!(!app.log().contains("plain text"), "no plain-text warning with a key-encryption key");
    let (_, out, _) = app.cli(&["keys", "list"], None).await;
    assert!(out.lines().skip(1).all(|l| l.trim_end().ends_with("yes")), "{out}");
    drop(app);
    // Without the key-encryption key the server refuses to start rather than mint new keys.
    let (code, _, err) = crate::support::cli(&db.url, &[("PROLONG_LISTEN", "127.0.0.1:0")], &["serve"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("key_encryption_key"), "{err}");
    let app = TestApp::start_bare(&db, &[("PROLONG_KEY_ENCRYPTION_KEY", kek), ("PROLONG_ISSUER", ISSUER)]).await;
    assert_eq!(app.me(s(&login, "access_token")).await.0, StatusCode::OK);
}
