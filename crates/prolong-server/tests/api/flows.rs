//! Login, rotation, the concurrent-refresh race, reuse detection and revocation, on both backends.

use crate::support::{Db, PASSWORD, TestApp, claims, s};
use reqwest::StatusCode;
use std::collections::HashSet;
use std::time::Duration;

/// A fixed issuer for tests where several processes must agree on it.
pub const ISSUER: &str = "http://localhost";

async fn login_then_a_chain_of_twenty_rotations(postgres: bool) {
    let db = Db::new(postgres).await;
    let app = TestApp::start(&db, &[]).await;
    let first = app.login("alice", PASSWORD).await;
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let sid = s(&first, "session_id").to_owned();
    let c = claims(s(&first, "access_token"));
    assert_eq!(c["sid"], sid.as_str());
    assert_eq!(c["aud"], "prolong");
    assert_eq!(c["iss"], app.base.as_str());
    assert_eq!(c["client_id"], "prolong");
    assert_eq!(c["ver"], 0);

    let mut seen = HashSet::new();
    let mut rt = s(&first, "refresh_token").to_owned();
    seen.insert(rt.clone());
    let mut at = String::new();
    for i in 0..20 {
        let (status, body) = app.refresh(&rt).await;
        assert_eq!(status, StatusCode::OK, "rotation {i}: {body}");
        assert_eq!(body["session_id"], sid.as_str());
        rt = s(&body, "refresh_token").to_owned();
        assert!(seen.insert(rt.clone()), "rotation {i} returned an earlier refresh token");
        at = s(&body, "access_token").to_owned();
    }
    let (status, me, _) = app.me(&at).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["session_id"], sid.as_str());
    assert_eq!(me["sub"], claims(&at)["sub"]);
    assert!(me["auth_time"].as_i64().is_some());
}

async fn concurrent_refreshes_with_one_token_get_one_new_token(postgres: bool) {
    let db = Db::new(postgres).await;
    let app = TestApp::start(&db, &[]).await;
    let login = app.login("alice", PASSWORD).await;
    let rt = s(&login, "refresh_token").to_owned();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let http = app.http.clone();
        let url = app.url("/oauth/token");
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str())])
                .send()
                .await
                .expect("send");
            (r.status(), r.json::<serde_json::Value>().await.expect("json"))
        }));
    }
    let mut new_tokens = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.expect("join");
        assert_eq!(status, StatusCode::OK, "{body}");
        new_tokens.insert(s(&body, "refresh_token").to_owned());
    }
    assert_eq!(new_tokens.len(), 1, "every concurrent refresh must return the same new refresh token");
    let next = new_tokens.into_iter().next().expect("one");
    assert_ne!(next, rt);
    // The winner's token is the live one: it rotates, and the session moved exactly one generation.
    let (status, body) = app.refresh(&next).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn retry_inside_grace_returns_the_same_token_and_late_reuse_revokes(postgres: bool) {
    let db = Db::new(postgres).await;
    let app = TestApp::start(&db, &[("PROLONG_SESSION__REUSE_GRACE", "1s")]).await;
    let login = app.login("alice", PASSWORD).await;
    let rt0 = s(&login, "refresh_token").to_owned();
    let (_, r1) = app.refresh(&rt0).await;
    let rt1 = s(&r1, "refresh_token").to_owned();
    // A lost response retried at once: the very same new refresh token.
    let (status, again) = app.refresh(&rt0).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s(&again, "refresh_token"), rt1);

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (status, body) = app.refresh(&rt0).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["reason"], "reuse_detected");
    // The whole session is dead, its newest token too, and the access token no longer works here.
    let (status, body) = app.refresh(&rt1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["reason"], "reuse_detected");
    let (status, body, _) = app.me(s(&r1, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}

async fn a_token_two_generations_old_is_reuse_even_inside_grace(postgres: bool) {
    let db = Db::new(postgres).await;
    let app = TestApp::start(&db, &[]).await;
    let login = app.login("alice", PASSWORD).await;
    let rt0 = s(&login, "refresh_token").to_owned();
    let (_, r1) = app.refresh(&rt0).await;
    let (_, r2) = app.refresh(s(&r1, "refresh_token")).await;
    let (status, body) = app.refresh(&rt0).await;
    assert_eq!((status, body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("reuse_detected")));
    let (_, body) = app.refresh(s(&r2, "refresh_token")).await;
    assert_eq!(body["reason"], "reuse_detected");
}

async fn revoke_ends_the_session(postgres: bool) {
    let db = Db::new(postgres).await;
    let app = TestApp::start(&db, &[]).await;
    // By refresh token.
    let a = app.login("alice", PASSWORD).await;
    let (status, body) = app.form("/oauth/revoke", &[("token", s(&a, "refresh_token"))]).await;
    assert_eq!((status, body), (StatusCode::OK, serde_json::Value::Null));
    let (_, body) = app.refresh(s(&a, "refresh_token")).await;
    assert_eq!(body["reason"], "revoked");
    let (status, _, _) = app.me(s(&a, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // By access token.
    let b = app.login("alice", PASSWORD).await;
    let (status, _) = app.form("/oauth/revoke", &[("token", s(&b, "access_token"))]).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = app.refresh(s(&b, "refresh_token")).await;
    assert_eq!(body["reason"], "revoked");
    // Garbage is accepted and changes nothing.
    let c = app.login("alice", PASSWORD).await;
    for junk in ["nope", "plr1_AAAA", "a.b.c"] {
        let (status, _) = app.form("/oauth/revoke", &[("token", junk)]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = app.refresh(s(&c, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
    // A missing token is a malformed request.
    let (status, body) = app.form("/oauth/revoke", &[]).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
}

async fn sessions_survive_a_restart(postgres: bool) {
    let db = Db::new(postgres).await;
    // The issuer defaults to the bound address; a restart on another port needs it fixed.
    let env = [("PROLONG_ISSUER", ISSUER)];
    let app = TestApp::start(&db, &env).await;
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(app.terminate().await, Some(0), "graceful shutdown exits 0");
    let app = TestApp::start_bare(&db, &env).await;
    let (status, body) = app.refresh(s(&login, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = app.me(s(&login, "access_token")).await;
    assert_eq!(status, StatusCode::OK, "the signing key survived the restart");
}

async fn json_and_form_bodies_are_equivalent(postgres: bool) {
    let db = Db::new(postgres).await;
    let app = TestApp::start(&db, &[]).await;
    let r = app
        .http
        .post(app.url("/oauth/token"))
        .json(&serde_json::json!({"grant_type":"password","username":"ALICE","password":PASSWORD,"client_id":"web"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(claims(s(&body, "access_token"))["client_id"], "web");
    let r = app
        .http
        .post(app.url("/oauth/token"))
        .json(&serde_json::json!({"grant_type":"refresh_token","refresh_token":s(&body, "refresh_token"),"idle":5,"client_id":"web"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.expect("json");
    // A refresh naming another client is refused.
    let (status, refused) = app
        .form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", s(&body, "refresh_token")), ("client_id", "other")],
        )
        .await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // So is one naming none: its client is the default, "prolong".
    let (status, refused) = app
        .form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", s(&body, "refresh_token"))])
        .await;
    assert_eq!((status, refused["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // Neither refusal changed the session: the right client still rotates.
    let (status, _) = app
        .form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", s(&body, "refresh_token")), ("client_id", "web")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Every refresh token a client received before the server was killed mid-load still works after
/// a restart: a reply goes out only after its rotation is durable.
async fn every_token_handed_out_survives_a_crash(postgres: bool) {
    let db = Db::new(postgres).await;
    let env = [("PROLONG_ISSUER", ISSUER)];
    let app = std::sync::Arc::new(TestApp::start(&db, &env).await);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let login = app.login("alice", PASSWORD).await;
        let app = app.clone();
        let mut token = s(&login, "refresh_token").to_owned();
        clients.push(tokio::spawn(async move {
            let mut rotations = 0;
            loop {
                let form = [("grant_type", "refresh_token"), ("refresh_token", token.as_str())];
                let Ok(r) = app.http.post(app.url("/oauth/token")).form(&form).send().await else { break };
                let Ok(body) = r.json::<serde_json::Value>().await else { break };
                match body["refresh_token"].as_str() {
                    Some(next) => token = next.to_owned(),
                    None => panic!("a refresh failed before the crash: {body}"),
                }
                rotations += 1;
            }
            (token, rotations)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.crash().await;
    let mut last = Vec::new();
    for c in clients {
        last.push(c.await.expect("join"));
    }
    assert!(last.iter().all(|(_, n)| *n > 0), "every client rotated before the crash: {last:?}");
    drop(app);

    let app = TestApp::start_bare(&db, &env).await;
    for (token, rotations) in &last {
        // The last token received is the session's current one, or — when the crash cut off the
        // reply to a rotation that was already durable — the previous one, inside the grace.
        let (status, body) = app.refresh(token).await;
        assert_eq!(status, StatusCode::OK, "after {rotations} rotations: {body}");
    }
}

crate::both_backends!(
    login_then_a_chain_of_twenty_rotations,
    concurrent_refreshes_with_one_token_get_one_new_token,
    retry_inside_grace_returns_the_same_token_and_late_reuse_revokes,
    a_token_two_generations_old_is_reuse_even_inside_grace,
    revoke_ends_the_session,
    sessions_survive_a_restart,
    json_and_form_bodies_are_equivalent,
    every_token_handed_out_survives_a_crash,
);
