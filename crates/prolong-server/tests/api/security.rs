//! Hostile and malformed input: forged tokens, algorithm confusion, bad requests, log hygiene.

use crate::support::{Db, PASSWORD, TestApp, claims, header, s};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig))
}

async fn assert_invalid(app: &TestApp, token: &str, what: &str) {
    let (status, body, challenge) = app.me(token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(body["error"], "invalid_token", "{what}");
    assert_eq!(challenge.as_deref(), Some("Bearer error=\"invalid_token\""), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_confused_tokens_are_invalid_for_every_algorithm() {
    for alg in ["ES256", "EdDSA", "RS256"] {
        let db = Db::sqlite();
        let app = TestApp::start(&db, &[("PROLONG_TOKENS__ALGORITHM", alg)]).await;
        let login = app.login("alice", PASSWORD).await;
        let at = s(&login, "access_token");
        assert_eq!(header(at)["alg"], alg);
        assert_eq!(header(at)["typ"], "at+jwt");
        let (status, _, _) = app.me(at).await;
        assert_eq!(status, StatusCode::OK, "{alg}: a genuine token works");

        let h = header(at);
        let c = claims(at);
        let jwks: Value =
            app.http.get(app.url("/.well-known/jwks.json")).send().await.expect("jwks").json().await.expect("json");
        let jwk = jwks["keys"][0].clone();
        assert_eq!(jwk["alg"], alg);
        // HS256 "signed" with every public encoding an attacker could feed an HMAC.
        let mut publics: Vec<Vec<u8>> = vec![jwk.to_string().into_bytes()];
        for field in ["x", "y", "n"] {
            if let Some(v) = jwk[field].as_str() {
                publics.push(v.as_bytes().to_vec());
                publics.push(B64.decode(v).expect("b64"));
            }
        }
        for public in publics {
            let mut hh = h.clone();
            hh["alg"] = json!("HS256");
            let t = forge(&hh, &c, |m| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &public), m).as_ref().to_vec());
            assert_invalid(&app, &t, &format!("{alg}: HS256 with the public key")).await;
        }
        // alg: none, with and without a signature.
        let mut none = h.clone();
        none["alg"] = json!("none");
        let unsigned = forge(&none, &c, |_| Vec::new());
        assert_invalid(&app, &unsigned, "alg none").await;
        assert_invalid(&app, unsigned.trim_end_matches('.'), "alg none, two parts").await;
        // The genuine signature over altered claims.
        let mut other = c.clone();
        other["sub"] = json!("someone-else");
        let sig = at.rsplit('.').next().expect("sig");
        let tampered = format!("{}.{}.{sig}", at.split('.').next().expect("h"), B64.encode(other.to_string()));
        assert_invalid(&app, &tampered, "tampered claims").await;
        // Unknown kid, truncation, oversize, garbage.
        let mut unknown = h.clone();
        unknown["kid"] = json!("no-such-kid");
        let sig_only = at.rsplit('.').next().expect("sig");
        let with_unknown =
            format!("{}.{}.{sig_only}", B64.encode(unknown.to_string()), at.split('.').nth(1).expect("p"));
        assert_invalid(&app, &with_unknown, "unknown kid").await;
        assert_invalid(&app, &at[..at.len() - 10], "truncated").await;
        assert_invalid(&app, &format!("{at}{}", "A".repeat(9000)), "oversized").await;
        for junk in ["x", "a.b.c", "....", "eyJ.eyJ.sig"] {
            assert_invalid(&app, junk, junk).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_missing_tokens_answer_per_rfc_6750() {
    let db = Db::sqlite();
    let app =
        TestApp::start(&db, &[("PROLONG_TOKENS__ACCESS_TTL", "2s"), ("PROLONG_SESSION__REUSE_GRACE", "1s")]).await;
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(login["expires_in"], 2);
    let r = app.http.get(app.url("/v1/me")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "missing_token");
    // Another scheme brings no bearer token (RFC 6750 §3.1); an empty bearer token is invalid.
    let r = app.http.get(app.url("/v1/me")).header("authorization", "Basic abc").send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "missing_token");
    let r = app.http.get(app.url("/v1/me")).header("authorization", "Bearer ").send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
    assert_eq!(r.json::<Value>().await.expect("json")["error"], "invalid_token");

    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let (status, body, challenge) = app.me(s(&login, "access_token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "token_expired");
    assert!(challenge.expect("challenge").starts_with("Bearer error=\"invalid_token\""));
    // The refresh token still renews the session.
    let (status, _) = app.refresh(s(&login, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_clear_4xx_and_never_500() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    let token_url = app.url("/oauth/token");
    let post = |ct: Option<&'static str>, body: Vec<u8>, url: String| {
        let mut r = app.http.post(url).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let form = Some("application/x-www-form-urlencoded");
    type Case = (Option<&'static str>, Vec<u8>, String, u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            form,
            b"grant_type=password&username=alice&password=x".to_vec(),
            format!("{token_url}?x=1"),
            400,
            "invalid_request",
        ),
        (Some("text/plain"), b"grant_type=password".to_vec(), token_url.clone(), 400, "invalid_request"),
        (None, b"grant_type=password".to_vec(), token_url.clone(), 400, "invalid_request"),
        (
            form,
            b"grant_type=password&grant_type=password&username=a&password=b".to_vec(),
            token_url.clone(),
            400,
            "invalid_request",
        ),
        (form, b"grant_type=client_credentials".to_vec(), token_url.clone(), 400, "unsupported_grant_type"),
        (form, b"username=alice".to_vec(), token_url.clone(), 400, "invalid_request"),
        (form, b"grant_type=password&password=x".to_vec(), token_url.clone(), 400, "invalid_request"),
        (form, b"grant_type=refresh_token".to_vec(), token_url.clone(), 400, "invalid_request"),
        (form, b"grant_type=refresh_token&refresh_token=abc".to_vec(), token_url.clone(), 400, "invalid_grant"),
        (
            form,
            b"grant_type=refresh_token&refresh_token=abc&idle=-1".to_vec(),
            token_url.clone(),
            400,
            "invalid_request",
        ),
        (
            form,
            b"grant_type=refresh_token&refresh_token=abc&idle=2147483648".to_vec(),
            token_url.clone(),
            400,
            "invalid_request",
        ),
        (
            form,
            b"%ff%fe=\xff\xfe&grant_type=password&username=a&password=b".to_vec(),
            token_url.clone(),
            400,
            "invalid_grant",
        ),
        (Some("application/json"), b"{\"grant_type\":".to_vec(), token_url.clone(), 400, "invalid_request"),
        (Some("application/json"), b"[]".to_vec(), token_url.clone(), 400, "invalid_request"),
        (
            Some("application/json"),
            b"{\"grant_type\":\"password\",\"grant_type\":\"password\"}".to_vec(),
            token_url.clone(),
            400,
            "invalid_request",
        ),
        (
            Some("application/json"),
            b"{\"grant_type\":[\"password\"]}".to_vec(),
            token_url.clone(),
            400,
            "invalid_request",
        ),
        (form, vec![b'a'; 17 * 1024], token_url.clone(), 413, "invalid_request"),
        (form, b"token".to_vec(), app.url("/oauth/revoke?token=x"), 400, "invalid_request"),
        (form, b"".to_vec(), app.url("/nowhere"), 404, "not_found"),
    ];
    for (ct, body, url, want, error) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).to_string();
        let r = post(ct, body, url.clone()).await.expect("a response, not a dropped connection");
        let status = r.status().as_u16();
        let json: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{url} {shown}: {json}");
        assert_eq!(json["error"], error, "{url} {shown}");
    }
    // A chunked body over the limit (no Content-Length) is 413 too, answered, not dropped.
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let chunk = "a".repeat(9 * 1024);
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let r = app.http.get(app.url("/oauth/token")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_look_the_same_and_logs_hold_no_secrets() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    let fail = |user: &'static str, pw: &'static str| {
        app.http
            .post(app.url("/oauth/token"))
            .form(&[("grant_type", "password"), ("username", user), ("password", pw)])
            .send()
    };
    let a = fail("alice", "wrong password 1").await.expect("send");
    let (sa, ba) = (a.status(), a.bytes().await.expect("body"));
    let b = fail("nobody-at-all", "wrong password 2").await.expect("send");
    let (sb, bb) = (b.status(), b.bytes().await.expect("body"));
    assert_eq!(sa, StatusCode::BAD_REQUEST);
    assert_eq!((sa, ba.clone()), (sb, bb), "byte-for-byte identical");
    let body: Value = serde_json::from_slice(&ba).expect("json");
    assert_eq!(body["reason"], "bad_credentials");

    let login = app.login("alice", PASSWORD).await;
    let (_, refreshed) = app.refresh(s(&login, "refresh_token")).await;
    let _ = app.refresh(s(&login, "refresh_token")).await;
    let _ = app.form("/oauth/revoke", &[("token", s(&refreshed, "refresh_token"))]).await;
    let _ = app.me(s(&login, "access_token")).await;
    assert!(app.logged("login failed").await, "security events are logged:\n{}", app.log());
    // Let the lines of the last requests arrive too before looking for secrets in them.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = app.log();
    for secret in [
        PASSWORD,
        "wrong password 1",
        s(&login, "refresh_token"),
        s(&refreshed, "refresh_token"),
        s(&login, "access_token"),
        s(&login, "access_token").rsplit('.').next().expect("sig"),
    ] {
        assert!(!log.contains(secret), "the log contains a secret: {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_jwks_and_health() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    for path in ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"] {
        let r = app.http.get(app.url(path)).header("host", "evil.example").send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let m: Value = r.json().await.expect("json");
        assert_eq!(m["issuer"], app.base.as_str(), "built from config, never from Host");
        assert_eq!(m["token_endpoint"], format!("{}/oauth/token", app.base));
        assert_eq!(m["jwks_uri"], format!("{}/.well-known/jwks.json", app.base));
    }
    let jwks: Value =
        app.http.get(app.url("/.well-known/jwks.json")).send().await.expect("send").json().await.expect("json");
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "EC");
    assert!(keys[0].get("d").is_none(), "no private part");
    let pre = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/.well-known/jwks.json"))
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-custom")
        .send()
        .await
        .expect("send");
    assert!(pre.status().is_success(), "JWKS preflight: {}", pre.status());
    assert_eq!(pre.headers()["access-control-allow-origin"], "*");
    for path in ["/healthz", "/readyz"] {
        assert_eq!(app.http.get(app.url(path)).send().await.expect("send").status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_servers_publish_no_keys_and_verify_their_own_tokens() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_TOKENS__ALGORITHM", "HS256")]).await;
    let jwks: Value =
        app.http.get(app.url("/.well-known/jwks.json")).send().await.expect("send").json().await.expect("json");
    assert_eq!(jwks, json!({"keys": []}));
    let login = app.login("alice", PASSWORD).await;
    assert_eq!(header(s(&login, "access_token"))["alg"], "HS256");
    assert_eq!(app.me(s(&login, "access_token")).await.0, StatusCode::OK);
}
