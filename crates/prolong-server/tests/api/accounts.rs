//! Account endpoints, the admin API, introspection, login throttling and CORS.

use crate::support::{Db, PASSWORD, TestApp, s};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789";
const RESOURCE: &str = "resource-token-0123456789abcdef01234567";

async fn send(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = r.send().await.expect("send");
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_list_end_one_and_logout() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    let a = app.login("alice", PASSWORD).await;
    let b = app.login("alice", PASSWORD).await;
    let at = s(&a, "access_token");
    let (status, list) = send(app.http.get(app.url("/v1/sessions")).bearer_auth(at)).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 2);
    let current: Vec<&Value> = list.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], s(&a, "session_id"));
    for row in &list {
        for key in
            ["id", "created_at", "last_active_at", "user_agent", "current", "idle_expires_at", "session_expires_at"]
        {
            assert!(row.get(key).is_some(), "{key} in {row}");
        }
    }
    // End the other session; someone else's or an unknown id is 404.
    let other = s(&b, "session_id");
    let (status, _) = send(app.http.delete(app.url(&format!("/v1/sessions/{other}"))).bearer_auth(at)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(s(&b, "refresh_token")).await.1["reason"], "revoked");
    let (status, body) = send(app.http.delete(app.url(&format!("/v1/sessions/{other}"))).bearer_auth(at)).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    app.add_user("mallory", "mallory's password").await;
    let m = app.login("mallory", "mallory's password").await;
    let mine = s(&a, "session_id");
    let (status, _) =
        send(app.http.delete(app.url(&format!("/v1/sessions/{mine}"))).bearer_auth(s(&m, "access_token"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not the caller's session");
    assert_eq!(app.refresh(s(&a, "refresh_token")).await.0, StatusCode::OK);
    // Logout ends the current session.
    let c = app.login("alice", PASSWORD).await;
    let (status, _) = send(app.http.post(app.url("/v1/logout")).bearer_auth(s(&c, "access_token"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(s(&c, "refresh_token")).await.1["reason"], "revoked");
    let (code, out, _) = app.cli(&["sessions", "list", "alice"], None).await;
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "a header and alice's one live session:\n{out}");
    let (code, out, _) = app.cli(&["sessions", "list"], None).await;
    assert_eq!(code, 0, "the username is optional");
    assert_eq!(out.lines().count(), 3, "a header, alice's and mallory's live sessions:\n{out}");
    // A malformed path segment is a JSON 404, not a plain-text 400.
    let r = app.http.delete(app.url("/v1/sessions/%FF%FE")).bearer_auth(at).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signup_only_when_allowed_and_taken_before_password_rules() {
    let db = Db::sqlite();
    let closed = TestApp::start(&db, &[]).await;
    let (status, _) =
        send(closed.http.post(closed.url("/v1/signup")).json(&json!({"username":"zed","password":"long enough"})))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(closed);
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_ALLOW_SIGNUP", "true")]).await;
    let (status, body) =
        send(app.http.post(app.url("/v1/signup")).json(&json!({"username":"Zed","password":"long enough"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["id"].as_str().map(str::len), Some(32));
    let (status, body) =
        send(app.http.post(app.url("/v1/signup")).json(&json!({"username":"ZED","password":"short"}))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::CONFLICT, Some("username_taken")));
    let (status, body) =
        send(app.http.post(app.url("/v1/signup")).json(&json!({"username":"amy","password":"short"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error_description"].as_str().unwrap_or_default().contains("8 to 128"), "{body}");
    let login = app.login("zed", "long enough").await;
    let (_, me, _) = app.me(s(&login, "access_token")).await;
    assert_eq!(me["username"], "zed", "stored normalized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_its_token() {
    let db = Db::sqlite();
    let off = TestApp::start(&db, &[]).await;
    let (status, _) =
        send(off.http.post(off.url("/v1/admin/users")).json(&json!({"username":"x","password":"long enough"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "off without admin_token");
    drop(off);
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_ADMIN_TOKEN", ADMIN)]).await;
    let post = |path: &str, body: Value, token: &str| app.http.post(app.url(path)).bearer_auth(token).json(&body);
    let (status, body) =
        send(post("/v1/admin/users", json!({"username":"bob","password":"bob's password"}), "wrong")).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_token")));
    let (status, _) = send(post("/v1/admin/users", json!({"username":"bob","password":"bob's password"}), ADMIN)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = send(post("/v1/admin/users", json!({"username":"bob","password":"bob's password"}), ADMIN)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let bob = app.login("bob", "bob's password").await;
    let (status, _) = send(post("/v1/admin/users/bob/password", json!({"password":"reset by admin"}), ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(s(&bob, "refresh_token")).await.1["reason"], "reauth_required");
    let bob = app.login("bob", "reset by admin").await;
    let (status, _) = send(post("/v1/admin/users/bob/reauth", json!({}), ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(s(&bob, "refresh_token")).await.1["reason"], "reauth_required");
    let bob = app.login("bob", "reset by admin").await;
    let (status, _) = send(post("/v1/admin/users/bob/revoke-all", json!({}), ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(s(&bob, "refresh_token")).await.1["reason"], "version_mismatch");
    let (status, _) = send(post("/v1/admin/users/nobody/reauth", json!({}), ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Sessions for subjects the app authenticated itself: the user is created if absent.
    let (status, tokens) = send(post("/v1/admin/sessions", json!({"username":"sso-user@example.com"}), ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(app.me(s(&tokens, "access_token")).await.1["username"], "sso-user@example.com");
    assert_eq!(app.refresh(s(&tokens, "refresh_token")).await.0, StatusCode::OK);
    // Such a user has no password to log in with.
    let (status, _) = app
        .form("/oauth/token", &[("grant_type", "password"), ("username", "sso-user@example.com"), ("password", "")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_reflects_every_rule() {
    let db = Db::sqlite();
    let app = TestApp::start(
        &db,
        &[("PROLONG_ADMIN_TOKEN", ADMIN), ("PROLONG_RESOURCE_TOKENS", &format!("[\"{RESOURCE}\"]"))],
    )
    .await;
    let introspect = |token: &str, bearer: &str| {
        let req = app.http.post(app.url("/oauth/introspect")).bearer_auth(bearer).form(&[("token", token)]);
        async move {
            let r = req.send().await.expect("send");
            (r.status(), r.text().await.expect("text"))
        }
    };
    let login = app.login("alice", PASSWORD).await;
    for bearer in [ADMIN, RESOURCE] {
        let (status, body) = introspect(s(&login, "access_token"), bearer).await;
        assert_eq!(status, StatusCode::OK);
        let body: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body["active"], true);
        assert_eq!(body["token_type"], "access_token");
        assert_eq!(body["username"], "alice");
        assert_eq!(body["sid"], s(&login, "session_id"));
    }
    let (_, body) = introspect(s(&login, "refresh_token"), RESOURCE).await;
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!((body["active"].as_bool(), body["token_type"].as_str()), (Some(true), Some("refresh_token")));
    let (status, _) = introspect(s(&login, "access_token"), "not-a-secret").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Inactive is exactly {"active":false}: garbage, a rotated-away refresh token, a revoked session.
    let (_, body) = introspect("garbage", RESOURCE).await;
    assert_eq!(body, r#"{"active":false}"#);
    let (_, next) = app.refresh(s(&login, "refresh_token")).await;
    assert_eq!(introspect(s(&login, "refresh_token"), RESOURCE).await.1, r#"{"active":false}"#);
    let (_, _) = app.form("/oauth/revoke", &[("token", s(&next, "refresh_token"))]).await;
    assert_eq!(introspect(s(&next, "access_token"), RESOURCE).await.1, r#"{"active":false}"#);
    assert_eq!(introspect(s(&login, "access_token"), RESOURCE).await.1, r#"{"active":false}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_logins_are_throttled_for_that_user_and_address_only() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_LOGIN__MAX_FAILURES", "3"), ("PROLONG_LOGIN__WINDOW", "2s")]).await;
    app.add_user("bob", "bob's password").await;
    let attempt = |user: &'static str, pw: &'static str| {
        let req = app.http.post(app.url("/oauth/token")).form(&[
            ("grant_type", "password"),
            ("username", user),
            ("password", pw),
        ]);
        async move {
            let r = req.send().await.expect("send");
            let retry = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (r.status(), retry, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for _ in 0..3 {
        assert_eq!(attempt("alice", "wrong").await.0, StatusCode::BAD_REQUEST);
    }
    for pw in ["wrong", PASSWORD] {
        let (status, retry, body) = attempt("alice", pw).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "right or wrong password alike");
        assert_eq!(body, json!({"error":"too_many_attempts","error_description":body["error_description"]}));
        let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
        assert!((1..=2).contains(&secs), "{secs}");
    }
    assert_eq!(attempt("bob", "bob's password").await.0, StatusCode::OK, "other users are never blocked");
    // Attempts sent in parallel cannot slip past the limit together.
    let mut parallel = Vec::new();
    for _ in 0..12 {
        let req = app.http.post(app.url("/oauth/token")).form(&[
            ("grant_type", "password"),
            ("username", "carol"),
            ("password", "wrong"),
        ]);
        parallel.push(tokio::spawn(async move { req.send().await.expect("send").status() }));
    }
    let mut statuses = Vec::new();
    for p in parallel {
        statuses.push(p.await.expect("join"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 9, "{statuses:?}");
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    assert_eq!(attempt("alice", PASSWORD).await.0, StatusCode::OK, "the window passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_listed_origins_and_refuses_others_before_credentials() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_CORS_ALLOWED_ORIGINS", "[\"https://app.example.com\"]")]).await;
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/oauth/token"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("send");
    assert!(preflight.status().is_success());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert!(h["access-control-allow-headers"].to_str().expect("str").contains("Authorization"));
    assert!(h.get("access-control-allow-credentials").is_none());
    let ok = app
        .http
        .post(app.url("/oauth/token"))
        .header("origin", "https://app.example.com")
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(ok.headers()["access-control-expose-headers"].to_str().expect("str").contains("WWW-Authenticate"));
    // Every answer of a user-facing endpoint depends on the Origin, whether one came or not.
    let varies = |h: &reqwest::header::HeaderMap| {
        h.get_all("vary").iter().any(|v| v.to_str().is_ok_and(|v| v.contains("Origin")))
    };
    assert!(varies(preflight.headers()) && varies(ok.headers()));
    let plain = app.http.get(app.url("/v1/me")).send().await.expect("send");
    assert!(varies(plain.headers()), "{:?}", plain.headers());
    // The issuer's own origin is always allowed.
    let own = app.http.get(app.url("/v1/me")).header("origin", app.base.as_str()).send().await.expect("send");
    assert_eq!(own.headers()["access-control-allow-origin"], app.base.as_str());
    // Any other origin: 403 on POST, before the password is even looked at.
    let evil = app
        .http
        .post(app.url("/oauth/token"))
        .header("origin", "https://evil.example.com")
        .form(&[("grant_type", "password"), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .expect("send");
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    // Admin and introspection send no CORS headers.
    let r = app
        .http
        .post(app.url("/oauth/introspect"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("send");
    assert!(r.headers().get("access-control-allow-origin").is_none());
}
