//! One test per scenario of the seed discussion, with second-scale durations against the real
//! server: every way a session is prolonged or ended.

use crate::support::{Db, PASSWORD, TestApp, claims, s};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

const FAST: &[(&str, &str)] = &[
    ("PROLONG_TOKENS__ACCESS_TTL", "1s"),
    ("PROLONG_SESSION__REUSE_GRACE", "500ms"),
    ("PROLONG_SESSION__IDLE_TIMEOUT", "3s"),
    ("PROLONG_SESSION__ABSOLUTE_LIFETIME", "60s"),
];

/// Waits until the wall clock is 100 ms into a second. Token times are whole seconds (`iat` is
/// the current second rounded down, `exp = iat + access_ttl`), so a 1-second token issued at
/// x.999 s has 1 ms to live; issued now, it has 900 ms. A client that schedules its refresh from
/// `exp`, as real ones do, keeps to the same grid.
async fn early_in_a_second() {
    let into = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from((1_100 - into) % 1_000))).await;
}

/// Waits until the wall clock reads `unix_ms` (milliseconds since the Unix epoch).
async fn until_unix_ms(unix_ms: i64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    tokio::time::sleep(Duration::from_millis((unix_ms - now).max(0) as u64)).await;
}

async fn refresh_idle(app: &TestApp, rt: &str, idle: u64) -> (StatusCode, Value) {
    app.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", rt), ("idle", &idle.to_string())])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_user_stays_signed_in_for_ten_lifetimes() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, FAST).await;
    let login = app.login("alice", PASSWORD).await;
    let sid = s(&login, "session_id").to_owned();
    // Start on the grid: a login takes an argon2 hash, of no fixed length.
    early_in_a_second().await;
    let (status, first) = refresh_idle(&app, s(&login, "refresh_token"), 0).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (mut rt, mut at) = (s(&first, "refresh_token").to_owned(), s(&first, "access_token").to_owned());
    let start = Instant::now();
    let mut refreshes = 0;
    while start.elapsed() < Duration::from_secs(11) {
        // Use the API, then refresh once per access lifetime.
        let (status, _, _) = app.me(&at).await;
        assert_eq!(status, StatusCode::OK, "signed out after {:?}", start.elapsed());
        early_in_a_second().await;
        let (status, body) = refresh_idle(&app, &rt, 0).await;
        assert_eq!(status, StatusCode::OK, "refresh {refreshes} failed: {body}");
        assert_eq!(body["session_id"], sid.as_str());
        rt = s(&body, "refresh_token").to_owned();
        at = s(&body, "access_token").to_owned();
        refreshes += 1;
    }
    assert!(refreshes >= 10, "{refreshes} access lifetimes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tab_is_signed_out_after_the_idle_timeout() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, FAST).await;
    // A tab that keeps refreshing on a timer but reports growing idle time.
    let login = app.login("alice", PASSWORD).await;
    let mut rt = s(&login, "refresh_token").to_owned();
    let start = Instant::now();
    let reason = loop {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let idle = start.elapsed().as_secs();
        let (status, body) = refresh_idle(&app, &rt, idle).await;
        if status != StatusCode::OK {
            break body["reason"].as_str().unwrap_or_default().to_owned();
        }
        assert!(start.elapsed() < Duration::from_millis(4_500), "still signed in after {:?}", start.elapsed());
        rt = s(&body, "refresh_token").to_owned();
    };
    assert_eq!(reason, "expired_idle");
    assert!(start.elapsed() >= Duration::from_secs(3), "signed out too early: {:?}", start.elapsed());
    // The dead session stays dead and keeps its reason.
    let (_, body) = refresh_idle(&app, &rt, 0).await;
    assert_eq!(body["reason"], "expired_idle");

    // A client that simply stops: its next refresh after the idle timeout fails.
    let login = app.login("alice", PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    let (status, body) = refresh_idle(&app, s(&login, "refresh_token"), 0).await;
    assert_eq!((status, body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("expired_idle")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_absolute_lifetime_forces_a_new_login_even_while_active() {
    let db = Db::sqlite();
    let env = [
        ("PROLONG_TOKENS__ACCESS_TTL", "1s"),
        ("PROLONG_SESSION__REUSE_GRACE", "500ms"),
        ("PROLONG_SESSION__IDLE_TIMEOUT", "2s"),
        ("PROLONG_SESSION__ABSOLUTE_LIFETIME", "3s"),
    ];
    let app = TestApp::start(&db, &env).await;
    let login = app.login("alice", PASSWORD).await;
    let auth_time = claims(s(&login, "access_token"))["auth_time"].as_i64().expect("auth_time");
    assert_eq!(login["session_expires_at"].as_i64(), Some(auth_time + 3));
    let mut rt = s(&login, "refresh_token").to_owned();
    let start = Instant::now();
    let reason = loop {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (status, body) = refresh_idle(&app, &rt, 0).await;
        if status != StatusCode::OK {
            break body["reason"].as_str().unwrap_or_default().to_owned();
        }
        let exp = claims(s(&body, "access_token"))["exp"].as_i64().expect("exp");
        assert!(exp <= auth_time + 3, "exp is never past auth_time + absolute_lifetime");
        assert!(start.elapsed() < Duration::from_millis(4_500));
        rt = s(&body, "refresh_token").to_owned();
    };
    assert_eq!(reason, "expired_absolute");
    // A new login starts a new session.
    let again = app.login("alice", PASSWORD).await;
    assert_eq!(refresh_idle(&app, s(&again, "refresh_token"), 0).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_every_session_and_only_a_new_login_continues() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    let phone = app.login("alice", PASSWORD).await;
    let laptop = app.login("alice", PASSWORD).await;
    let r = app
        .http
        .post(app.url("/v1/password"))
        .bearer_auth(s(&laptop, "access_token"))
        .json(&serde_json::json!({"current_password": PASSWORD, "new_password": "a brand new password"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for (name, t) in [("phone", &phone), ("laptop", &laptop)] {
        let (status, body) = app.refresh(s(t, "refresh_token")).await;
        assert_eq!((status, body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("reauth_required")), "{name}");
        assert_eq!(app.me(s(t, "access_token")).await.0, StatusCode::UNAUTHORIZED, "{name}");
    }
    let (status, _) =
        app.form("/oauth/token", &[("grant_type", "password"), ("username", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the old password no longer works");
    let fresh = app.login("alice", "a brand new password").await;
    assert_eq!(app.refresh(s(&fresh, "refresh_token")).await.0, StatusCode::OK, "a new login continues");
    // Nothing revives the old sessions.
    assert_eq!(app.refresh(s(&phone, "refresh_token")).await.1["reason"], "reauth_required");

    // The CLI reset and the re-auth command do the same.
    let (code, _, err) = app.cli(&["user", "reauth", "alice"], None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(app.refresh(s(&fresh, "refresh_token")).await.1["reason"], "reauth_required");
    let next = app.login("alice", "a brand new password").await;
    let (code, _, err) = app.cli(&["user", "passwd", "alice", "--password-stdin"], Some("third password here\n")).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(app.refresh(s(&next, "refresh_token")).await.1["reason"], "reauth_required");
    app.login("alice", "third password here").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_ends_every_session() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    let a = app.login("alice", PASSWORD).await;
    let b = app.login("alice", PASSWORD).await;
    let r = app.http.post(app.url("/v1/logout-all")).bearer_auth(s(&a, "access_token")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for t in [&a, &b] {
        let (status, body) = app.refresh(s(t, "refresh_token")).await;
        assert_eq!((status, body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("version_mismatch")));
        assert_eq!(app.me(s(t, "access_token")).await.1["error"], "invalid_token");
    }
    let c = app.login("alice", PASSWORD).await;
    assert_eq!(claims(s(&c, "access_token"))["ver"], 1);
    assert_eq!(app.refresh(s(&c, "refresh_token")).await.0, StatusCode::OK);
    let (code, _, err) = app.cli(&["user", "revoke-all", "alice"], None).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(app.refresh(s(&c, "refresh_token")).await.1["reason"], "version_mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_mode_renews_soft_expired_tokens_and_detects_reuse() {
    let db = Db::sqlite();
    let env = [
        ("PROLONG_SESSION__MODE", "renew"),
        ("PROLONG_TOKENS__ACCESS_TTL", "1s"),
        ("PROLONG_SESSION__REUSE_GRACE", "500ms"),
        ("PROLONG_SESSION__IDLE_TIMEOUT", "3s"),
    ];
    let app = TestApp::start(&db, &env).await;
    let renew = |token: String, idle: Option<u32>| {
        let mut r = app.http.post(app.url("/v1/renew")).bearer_auth(token);
        if let Some(i) = idle {
            r = r.json(&serde_json::json!({ "idle": i }));
        }
        async move {
            let r = r.send().await.expect("send");
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let login = app.login("alice", PASSWORD).await;
    assert!(login.get("refresh_token").is_none(), "no refresh token in renew mode");
    let t0 = s(&login, "access_token").to_owned();
    let c = claims(&t0);
    assert_eq!(c["softexp"], c["exp"]);
    assert_eq!(c["gen"], 0);
    assert_eq!(c["renew_until"].as_i64(), Some(c["iat"].as_i64().expect("iat") + 3));

    // Soft-expired: APIs say token_expired, /v1/renew still renews it. Renew early in the second
    // after its exp (well inside renew_until), so that the new token has most of its second left.
    let iat = c["iat"].as_i64().expect("iat");
    until_unix_ms((iat + 2) * 1000 + 100).await;
    assert_eq!(app.me(&t0).await.1["error"], "token_expired");
    let (status, r1) = renew(t0.clone(), Some(0)).await;
    assert_eq!(status, StatusCode::OK, "{r1}");
    let t1 = s(&r1, "access_token").to_owned();
    assert_eq!(claims(&t1)["gen"], 1);
    assert_eq!(app.me(&t1).await.0, StatusCode::OK);
    // Past the grace, the renewed-away token is reuse: the session is revoked, t1 dies too.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, body) = renew(t0.clone(), None).await;
    assert_eq!((status, body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("reuse_detected")), "{body}");
    assert_eq!(renew(t1.clone(), None).await.1["reason"], "reuse_detected");
    assert_ne!(app.me(&t1).await.0, StatusCode::OK);

    // Hard-expired: past renew_until nothing renews it.
    let login = app.login("alice", PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    let (status, body) = renew(s(&login, "access_token").to_owned(), None).await;
    assert_eq!((status, body["reason"].as_str()), (StatusCode::BAD_REQUEST, Some("expired_idle")));
    // The refresh grant does not exist for renew-mode tokens, and a garbage idle is refused.
    let login = app.login("alice", PASSWORD).await;
    let r = app
        .http
        .post(app.url("/v1/renew"))
        .bearer_auth(s(&login, "access_token"))
        .form(&[("idle", "soon")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(renew("not.a.token".into(), None).await.0, StatusCode::BAD_REQUEST);
    // An empty JSON body means no idle.
    let r = app
        .http
        .post(app.url("/v1/renew"))
        .bearer_auth(s(&login, "access_token"))
        .header("content-type", "application/json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}
