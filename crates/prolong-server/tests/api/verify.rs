//! The resource-server side end to end: a real `prolong serve`, the example API
//! (`examples/resource-server.rs`, built on `prolong-verify`) as a real process, real HTTP between
//! them. Set `TEST_LOG=1` to see the example's log.

use crate::support::{Db, PASSWORD, TestApp, claims, header, s};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::process::{Child, Command};

/// The example's binary, next to this test's: `target/<profile>/examples/resource-server`.
///
/// Plain `cargo test` builds examples; `cargo test --test api` does not, so when the binary is
/// missing or older than its sources it is built here, once per test run.
fn example_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
        let bin = profile_dir.join("examples").join(format!("resource-server{}", std::env::consts::EXE_SUFFIX));
        if !is_fresh(&bin) {
            build_example(profile_dir);
        }
        assert!(
            bin.exists(),
            "the example API is missing at {}: build it with \
             `cargo build -p prolong-server --example resource-server` (plain `cargo test` builds it too)",
            bin.display()
        );
        bin
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn newest_source(dir: &Path) -> Option<SystemTime> {
    let mut newest = modified(dir);
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() { newest_source(&path) } else { modified(&path) };
        newest = newest.max(t);
    }
    newest
}

/// Whether the binary exists and is newer than the example and the crates it is made of.
fn is_fresh(bin: &Path) -> bool {
    let Some(built) = modified(bin) else {
        return false;
    };
    let server = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sources = [server.join("examples"), server.join("../prolong-verify/src"), server.join("../prolong-core/src")];
    sources.iter().filter_map(|d| newest_source(d)).all(|t| t <= built)
}

fn build_example(profile_dir: &Path) {
    let Ok(cargo) = std::env::var("CARGO") else {
        return;
    };
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "prolong-server", "--example", "resource-server"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build for the example API");
    assert!(status.success(), "building the example API failed");
}

/// The example API, running.
struct ResourceServer {
    base: String,
    http: reqwest::Client,
    log: Arc<Mutex<String>>,
    _child: Child,
}

/// What the example answered.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Value,
    challenge: Option<String>,
    retry_after: Option<String>,
}

impl ResourceServer {
    async fn start(issuer: &str, audience: Option<&str>) -> ResourceServer {
        match audience {
            Some(a) => ResourceServer::start_with(issuer, &["--audience", a]).await,
            None => ResourceServer::start_with(issuer, &[]).await,
        }
    }

    async fn start_with(issuer: &str, extra: &[&str]) -> ResourceServer {
        let mut cmd = Command::new(example_bin());
        cmd.args(["--issuer", issuer, "--listen", "127.0.0.1:0"]).args(extra);
        cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
        let (child, base, log) = crate::support::spawn_until_listening(cmd, "resource-server").await;
        assert!(!base.ends_with(":0"), "the real port is logged: {base}");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        ResourceServer { base, http, log, _child: child }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether the example logs `needle` within a few seconds.
    async fn logged(&self, needle: &str) -> bool {
        crate::support::logged(&self.log, needle).await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let r = request.send().await.expect("request");
        let text_header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (challenge, retry_after) = (text_header("www-authenticate"), text_header("retry-after"));
        let status = r.status();
        let text = r.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: body is not JSON: {text:?}"));
        Reply { status, body, challenge, retry_after }
    }

    async fn assert_invalid(&self, token: &str, what: &str) {
        let r = self.get("/api/whoami", Some(token)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {r:?}");
        assert_eq!(r.body["error"], "invalid_token", "{what}");
        assert!(r.body["error_description"].is_string(), "{what}");
        assert_eq!(r.challenge.as_deref(), Some("Bearer error=\"invalid_token\""), "{what}");
    }
}

fn forge(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = sign(signing_input.as_bytes());
    format!("{signing_input}.{}", B64.encode(sig))
}

/// The token with its header replaced, payload and signature kept.
fn with_header(token: &str, header: &Value) -> String {
    let rest = token.split_once('.').expect("three parts").1;
    format!("{}.{rest}", B64.encode(header.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_passes_and_whoami_shows_its_claims() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    let api = ResourceServer::start(&app.base, None).await;
    let login = app.login("alice", PASSWORD).await;
    let at = s(&login, "access_token");

    let r = api.get("/api/customers", Some(at)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.body.as_array().is_some_and(|a| !a.is_empty()), "{r:?}");

    for _ in 0..2 {
        // The second time from the verified-token cache.
        let r = api.get("/api/whoami", Some(at)).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.body["sub"], claims(at)["sub"]);
        assert_eq!(r.body["sid"], login["session_id"]);
        assert_eq!(r.body["iss"], app.base.as_str());
        assert_eq!(r.body["aud"], "prolong");
    }

    let r = api.get("/api/customers", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "missing_token");
    assert_eq!(r.challenge.as_deref(), Some("Bearer"), "no error attribute without a token");

    let r = api.get("/nowhere", Some(at)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"], "not_found");
    assert!(!api.log().contains(at), "no log line holds a whole access token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_token_expired() {
    let db = Db::sqlite();
    let app =
        TestApp::start(&db, &[("PROLONG_TOKENS__ACCESS_TTL", "2s"), ("PROLONG_SESSION__REUSE_GRACE", "1s")]).await;
    let api = ResourceServer::start(&app.base, None).await;
    let login = app.login("alice", PASSWORD).await;
    let at = s(&login, "access_token");
    // Accepted (and cached) while fresh ...
    assert_eq!(api.get("/api/whoami", Some(at)).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // ... and rejected as expired from its exp second on, cache or not.
    let r = api.get("/api/whoami", Some(at)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.body["error"], "token_expired");
    assert!(r.challenge.as_deref().is_some_and(|c| c.starts_with("Bearer error=\"invalid_token\"")), "{r:?}");
    // The client refreshes and is let in again.
    let (status, fresh) = app.refresh(s(&login, "refresh_token")).await;
    assert_eq!(status, StatusCode::OK, "{fresh}");
    assert_eq!(api.get("/api/whoami", Some(s(&fresh, "access_token"))).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_and_malformed_tokens_are_invalid_never_500() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[]).await;
    let api = ResourceServer::start(&app.base, None).await;
    let login = app.login("alice", PASSWORD).await;
    let at = s(&login, "access_token");
    assert_eq!(api.get("/api/whoami", Some(at)).await.status, StatusCode::OK);
    let (h, c) = (header(at), claims(at));

    // A bad signature: one character in the middle of it changed.
    let mut bytes = at.as_bytes().to_vec();
    let i = at.rfind('.').expect("signature") + 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    api.assert_invalid(&String::from_utf8(bytes).expect("ascii"), "bad signature").await;

    // alg none, signed and unsigned.
    let mut none = h.clone();
    none["alg"] = json!("none");
    api.assert_invalid(&forge(&none, &c, |_| Vec::new()), "alg none").await;
    api.assert_invalid(&with_header(at, &none), "alg none, signature kept").await;

    // HS256 "signed" with the public key (algorithm confusion).
    let jwks: Value =
        app.http.get(app.url("/.well-known/jwks.json")).send().await.expect("jwks").json().await.expect("json");
    let jwk = jwks["keys"][0].clone();
    let mut publics = vec![jwk.to_string().into_bytes()];
    for field in ["x", "y"] {
        if let Some(v) = jwk[field].as_str() {
            publics.push(B64.decode(v).expect("b64"));
        }
    }
    let mut hs = h.clone();
    hs["alg"] = json!("HS256");
    for public in publics {
        let t = forge(&hs, &c, |m| hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &public), m).as_ref().to_vec());
        api.assert_invalid(&t, "HS256 with the public key").await;
    }

    // A key id the issuer never published.
    let mut unknown = h.clone();
    unknown["kid"] = json!("no-such-key");
    api.assert_invalid(&with_header(at, &unknown), "unknown kid").await;

    // Truncated and oversized.
    api.assert_invalid(&at[..at.len() - 20], "truncated").await;
    api.assert_invalid(&at[..at.rfind('.').expect("dot")], "no signature").await;
    api.assert_invalid(at.split('.').next().expect("header"), "header only").await;
    let oversized = format!("{at}{}", "A".repeat(9 * 1024));
    assert!(oversized.len() > 8 * 1024);
    api.assert_invalid(&oversized, "longer than 8 KiB").await;
    api.assert_invalid("garbage", "garbage").await;

    // The wrong audience: the same token at an API that expects another.
    let other_api = ResourceServer::start(&app.base, Some("another-api")).await;
    other_api.assert_invalid(at, "wrong audience").await;

    // The wrong issuer: the same signing key (same database) but another `iss`.
    let foreign = TestApp::start_bare(&db, &[("PROLONG_ISSUER", "http://localhost")]).await;
    let foreign_at = foreign.login("alice", PASSWORD).await;
    let foreign_at = s(&foreign_at, "access_token");
    assert_eq!(header(foreign_at)["kid"], h["kid"], "signed with the same key");
    assert_eq!(claims(foreign_at)["iss"], "http://localhost");
    api.assert_invalid(foreign_at, "wrong issuer").await;

    // Still serving genuine tokens afterwards.
    assert_eq!(api.get("/api/customers", Some(at)).await.status, StatusCode::OK);
    assert!(!api.log().contains(at), "no log line holds a whole access token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_picked_up_without_a_restart() {
    let db = Db::sqlite();
    let a = TestApp::start(&db, &[]).await;
    let api = ResourceServer::start(&a.base, None).await;
    let before = a.login("alice", PASSWORD).await;
    let old_at = s(&before, "access_token");
    assert_eq!(api.get("/api/whoami", Some(old_at)).await.status, StatusCode::OK);

    let (code, _, err) = a.cli(&["keys", "rotate"], None).await;
    assert_eq!(code, 0, "{err}");
    // A replica started after the rotation, serving the same issuer, signs with the new key.
    let b = TestApp::start_bare(&db, &[("PROLONG_ISSUER", a.base.as_str())]).await;
    let after = b.login("alice", PASSWORD).await;
    let new_at = s(&after, "access_token");
    assert_ne!(header(new_at)["kid"], header(old_at)["kid"]);
    assert_eq!(claims(new_at)["iss"], a.base.as_str());

    // The example fetches its JWKS from `a`, which reloads keys every 30 s or when it meets an
    // unknown kid itself; show it one so the test need not wait.
    assert_eq!(a.me(new_at).await.0, StatusCode::OK);
    let r = api.get("/api/whoami", Some(new_at)).await;
    assert_eq!(r.status, StatusCode::OK, "the new kid is fetched on first sight: {r:?}");
    assert_eq!(r.body["sid"], after["session_id"]);
    // Tokens of the retired key keep verifying until they expire.
    assert_eq!(api.get("/api/whoami", Some(old_at)).await.status, StatusCode::OK);
    let fresh_old = a.refresh(s(&before, "refresh_token")).await.1;
    assert_eq!(api.get("/api/customers", Some(s(&fresh_old, "access_token"))).await.status, StatusCode::OK);
    assert!(api.logged("loaded new signing keys").await, "{}", api.log());
}

/// An HTTP front for the issuer that counts JWKS requests and can play dead. Prolong is started
/// with this front's URL as its issuer, so its metadata points the example's JWKS fetches here.
struct CountingFront {
    base: String,
    jwks_requests: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    upstream: Arc<OnceLock<String>>,
}

impl CountingFront {
    async fn start() -> CountingFront {
        use axum::extract::{Request, State};
        use axum::response::{IntoResponse, Response};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let front = CountingFront {
            base: format!("http://{}", listener.local_addr().expect("addr")),
            jwks_requests: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            upstream: Arc::new(OnceLock::new()),
        };
        type Shared = (Arc<AtomicUsize>, Arc<AtomicBool>, Arc<OnceLock<String>>, reqwest::Client);
        async fn forward(State((count, down, upstream, http)): State<Shared>, request: Request) -> Response {
            let path = request.uri().path().to_owned();
            if path == "/.well-known/jwks.json" {
                count.fetch_add(1, Ordering::SeqCst);
            }
            let (true, Some(upstream)) = (!down.load(Ordering::SeqCst), upstream.get()) else {
                return axum::http::StatusCode::BAD_GATEWAY.into_response();
            };
            match http.get(format!("{upstream}{path}")).send().await {
                Ok(r) => {
                    let status = axum::http::StatusCode::from_u16(r.status().as_u16()).expect("status");
                    (status, [("content-type", "application/json")], r.bytes().await.unwrap_or_default())
                        .into_response()
                }
                Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        let state: Shared =
            (front.jwks_requests.clone(), front.down.clone(), front.upstream.clone(), reqwest::Client::new());
        let router = axum::Router::new().fallback(forward).with_state(state);
        tokio::spawn(async move { axum::serve(listener, router).await });
        front
    }

    fn jwks_requests(&self) -> usize {
        self.jwks_requests.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_kids_cause_at_most_about_one_jwks_fetch_per_second() {
    let front = CountingFront::start().await;
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_ISSUER", front.base.as_str())]).await;
    front.upstream.set(app.base.clone()).expect("set once");
    let api = ResourceServer::start(&front.base, None).await;
    assert_eq!(front.jwks_requests(), 1, "one fetch at start");
    let login = app.login("alice", PASSWORD).await;
    let at = s(&login, "access_token").to_owned();
    assert_eq!(api.get("/api/whoami", Some(&at)).await.status, StatusCode::OK);

    // At least 300 requests, each with a different made-up kid, 60 at a time, for a few seconds.
    let api = Arc::new(api);
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_millis(2500) || rounds < 5 {
        let mut batch = Vec::new();
        for i in 0..60 {
            let mut h = header(&at);
            h["kid"] = json!(format!("garbage-{rounds}-{i}"));
            let (api, token) = (api.clone(), with_header(&at, &h));
            batch.push(tokio::spawn(async move { api.get("/api/whoami", Some(&token)).await }));
        }
        for t in batch {
            let r = t.await.expect("join");
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
            assert_eq!(r.body["error"], "invalid_token");
        }
        rounds += 1;
    }
    let elapsed = started.elapsed();
    let refetches = front.jwks_requests() - 1;
    let allowed = elapsed.as_secs_f64().ceil() as usize + 1;
    assert!(refetches >= 1, "unknown kids do make the example look for new keys");
    assert!(refetches <= allowed, "{refetches} JWKS fetches for {} requests in {elapsed:?}", rounds * 60);

    // The issuer goes away: the cached keys keep verifying, even a token never seen before.
    front.down.store(true, Ordering::SeqCst);
    let fresh = app.login("alice", PASSWORD).await;
    let r = api.get("/api/whoami", Some(s(&fresh, "access_token"))).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // An unknown kid now makes a refetch fail, which is logged, and is still only invalid.
    let mut h = header(&at);
    h["kid"] = json!("garbage-while-down");
    api.assert_invalid(&with_header(&at, &h), "unknown kid while the issuer is down").await;
    assert!(api.logged("still verifying with the cached ones").await, "{}", api.log());
    assert_eq!(api.get("/api/customers", Some(&at)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_the_example_answers_503_not_401() {
    // An issuer nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let api = ResourceServer::start(&issuer, None).await;
    let token = forge(&json!({"alg":"ES256","kid":"k1","typ":"at+jwt"}), &json!({"sub":"x"}), |_| vec![1; 64]);
    let r = api.get("/api/whoami", Some(&token)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert_eq!(r.body["error"], "temporarily_unavailable");
    assert!(r.retry_after.is_some(), "{r:?}");
    // A request without a token is still told to bring one.
    assert_eq!(api.get("/api/whoami", None).await.body["error"], "missing_token");
}

const FEED_TOKEN: &str = "resource-token-0123456789abcdef01234567";

/// Polls `check` every 50 ms until it holds, and returns how long that took.
async fn within(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() <= limit {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_enforces_revocations_within_a_second_and_non_strict_waits_for_exp() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_RESOURCE_TOKENS", &format!("[\"{FEED_TOKEN}\"]"))]).await;
    let strict = ResourceServer::start_with(&app.base, &["--strict", "--admin-token", FEED_TOKEN]).await;
    let lax = ResourceServer::start(&app.base, None).await;
    let a = app.login("alice", PASSWORD).await;
    let b = app.login("alice", PASSWORD).await;
    for rs in [&strict, &lax] {
        assert_eq!(rs.get("/api/customers", Some(s(&a, "access_token"))).await.status, StatusCode::OK);
        assert_eq!(rs.get("/api/customers", Some(s(&b, "access_token"))).await.status, StatusCode::OK);
    }
    // Revoke one session: the strict API refuses its token within a second, the other one still passes.
    app.form("/oauth/revoke", &[("token", s(&a, "refresh_token"))]).await;
    let took = within(Duration::from_secs(1), async || {
        strict.get("/api/customers", Some(s(&a, "access_token"))).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took.is_some(), "strict mode did not enforce the revocation within 1 s");
    let r = strict.get("/api/whoami", Some(s(&a, "access_token"))).await;
    assert_eq!(r.body["error"], "invalid_token");
    assert_eq!(strict.get("/api/customers", Some(s(&b, "access_token"))).await.status, StatusCode::OK);
    assert_eq!(
        lax.get("/api/customers", Some(s(&a, "access_token"))).await.status,
        StatusCode::OK,
        "non-strict accepts until exp"
    );
    // Logout everywhere: every token of the user, within a second.
    let r = app.http.post(app.url("/v1/logout-all")).bearer_auth(s(&b, "access_token")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let took = within(Duration::from_secs(1), async || {
        strict.get("/api/customers", Some(s(&b, "access_token"))).await.status == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(took.is_some(), "strict mode did not enforce logout-all within 1 s");
    assert_eq!(lax.get("/api/customers", Some(s(&b, "access_token"))).await.status, StatusCode::OK);
    // A new login after logout-all carries the new version and passes.
    let c = app.login("alice", PASSWORD).await;
    assert_eq!(strict.get("/api/customers", Some(s(&c, "access_token"))).await.status, StatusCode::OK);
    let metrics =
        strict.http.get(format!("{}/metrics", strict.base)).send().await.expect("send").text().await.expect("text");
    assert!(metrics.contains("prolong_feed_connected 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_api_fails_closed_with_503_when_the_feed_goes_silent() {
    let db = Db::sqlite();
    let app = TestApp::start(&db, &[("PROLONG_RESOURCE_TOKENS", &format!("[\"{FEED_TOKEN}\"]"))]).await;
    let strict =
        ResourceServer::start_with(&app.base, &["--strict", "--admin-token", FEED_TOKEN, "--max-staleness", "2"]).await;
    let open = ResourceServer::start_with(
        &app.base,
        &["--strict", "--admin-token", FEED_TOKEN, "--max-staleness", "2", "--fail-open"],
    )
    .await;
    let a = app.login("alice", PASSWORD).await;
    let token = s(&a, "access_token").to_owned();
    let ok = within(Duration::from_secs(3), async || {
        strict.get("/api/customers", Some(&token)).await.status == StatusCode::OK
    })
    .await;
    assert!(ok.is_some(), "the strict API accepts once the feed is heard");
    assert_eq!(app.terminate().await, Some(0));
    let failed = within(Duration::from_secs(6), async || {
        strict.get("/api/customers", Some(&token)).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(failed.is_some(), "fails closed after max_staleness");
    let r = strict.get("/api/customers", Some(&token)).await;
    assert_eq!(r.body["error"], "temporarily_unavailable", "never 401, which would sign clients out");
    assert!(r.retry_after.is_some());
    assert_eq!(open.get("/api/customers", Some(&token)).await.status, StatusCode::OK, "--fail-open keeps accepting");
    assert!(strict.logged("revocation feed").await, "the outage is logged: {}", strict.log());
    let metrics =
        strict.http.get(format!("{}/metrics", strict.base)).send().await.expect("send").text().await.expect("text");
    assert!(metrics.contains("prolong_feed_connected 0"), "{metrics}");
}
