//! Unit tests of the verifier: the checks and their error kinds with a fixed clock, the token
//! cache as the verifier uses it, and the JWKS refetch against a small local HTTP server.

use super::*;
use crate::revocation::RevocationStatus;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prolong_core::keys::{Algorithm, SigningKey, generate};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const ISS: &str = "https://issuer.example";
const AUD: &str = "prolong";
/// A fixed "now" (Unix ms) for the clock-driven tests.
const NOW: Millis = 1_700_000_000_000;

fn key(alg: Algorithm, kid: &str) -> SigningKey {
    SigningKey::from_private(kid, alg, &generate(alg).expect("generate")).expect("key")
}

fn claims_at(now: Millis) -> AccessClaims {
    let iat = now / 1000;
    AccessClaims {
        iss: ISS.into(),
        sub: "user-1".into(),
        aud: AUD.into(),
        iat,
        exp: iat + 900,
        jti: format!("jti-{now}"),
        sid: "session-1".into(),
        client_id: "prolong".into(),
        ver: 0,
        auth_time: iat,
        softexp: None,
        r#gen: None,
        renew_until: None,
    }
}

fn fixed(keys: &[&SigningKey]) -> Verifier {
    Verifier::builder(ISS, AUD).build_with_keys(keys.iter().map(|k| k.verifying_key().clone())).expect("verifier")
}

fn check(v: &Verifier, token: &str, now: Millis) -> Result<Claims, Error> {
    v.inner.check(token, now).into_result()
}

fn kind(r: Result<Claims, Error>) -> Option<ErrorKind> {
    r.err().map(|e| e.kind())
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

#[test]
fn a_good_token_verifies_with_every_algorithm() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let k = key(alg, "k1");
        let v = fixed(&[&k]);
        let token = k.sign(&claims_at(NOW)).expect("sign");
        let claims = check(&v, &token, NOW).expect("valid");
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("user-1", "session-1"));
        // Again, from the cache.
        assert_eq!(check(&v, &token, NOW).expect("cached"), claims);
    }
}

#[test]
fn expiry_starts_at_the_exp_second_and_is_checked_on_cache_hits() {
    let k = key(Algorithm::ES256, "k1");
    let c = claims_at(NOW);
    let exp_ms = c.exp * 1000;
    let token = k.sign(&c).expect("sign");
    for cached in [false, true] {
        let v = fixed(&[&k]);
        if cached {
            check(&v, &token, NOW).expect("populate the cache");
            assert_eq!(v.inner.cache.len(), 1);
        }
        assert!(check(&v, &token, exp_ms - 1).is_ok(), "cached={cached}");
        assert_eq!(kind(check(&v, &token, exp_ms)), Some(ErrorKind::Expired), "cached={cached}");
        assert_eq!(kind(check(&v, &token, exp_ms + 60_000)), Some(ErrorKind::Expired));
        assert_eq!(v.inner.cache.len(), 0, "an expired hit is dropped");
    }
}

#[test]
fn leeway_extends_acceptance_past_exp() {
    let k = key(Algorithm::ES256, "k1");
    let v = Verifier::builder(ISS, AUD)
        .leeway(Duration::from_secs(30))
        .build_with_keys([k.verifying_key().clone()])
        .expect("verifier");
    let c = claims_at(NOW);
    let exp_ms = c.exp * 1000;
    let token = k.sign(&c).expect("sign");
    assert!(check(&v, &token, exp_ms + 29_999).is_ok());
    assert_eq!(kind(check(&v, &token, exp_ms + 30_000)), Some(ErrorKind::Expired));
}

#[test]
fn softexp_counts_like_exp() {
    let k = key(Algorithm::ES256, "k1");
    let mut c = claims_at(NOW);
    c.softexp = Some(c.iat + 60);
    let token = k.sign(&c).expect("sign");
    let soft_ms = (c.iat + 60) * 1000;
    for cached in [false, true] {
        let v = fixed(&[&k]);
        if cached {
            check(&v, &token, NOW).expect("populate");
        }
        assert!(check(&v, &token, soft_ms - 1).is_ok());
        assert_eq!(kind(check(&v, &token, soft_ms)), Some(ErrorKind::Expired));
    }
}

#[test]
fn an_expired_token_with_a_bad_signature_is_invalid_not_expired() {
    let k = key(Algorithm::ES256, "k1");
    let other = key(Algorithm::ES256, "k1");
    let v = fixed(&[&k]);
    let mut c = claims_at(NOW);
    c.exp = c.iat - 10;
    assert_eq!(kind(check(&v, &k.sign(&c).expect("sign"), NOW)), Some(ErrorKind::Expired));
    assert_eq!(kind(check(&v, &other.sign(&c).expect("sign"), NOW)), Some(ErrorKind::Invalid));
}

#[test]
fn every_forgery_and_mismatch_is_invalid() {
    let k = key(Algorithm::ES256, "k1");
    // jsonwebtoken signs the tokens `SigningKey` would never make (another `typ`).
    let ed_pkcs8 = generate(Algorithm::EdDSA).expect("generate");
    let ed = SigningKey::from_private("ed", Algorithm::EdDSA, &ed_pkcs8).expect("key");
    let v = fixed(&[&k, &ed]);
    let good = k.sign(&claims_at(NOW)).expect("sign");
    let parts: Vec<&str> = good.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");

    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut c = claims_at(NOW);
    c.iss = "https://evil.example".into();
    cases.push(("wrong issuer", k.sign(&c).expect("sign")));
    let mut c = claims_at(NOW);
    c.aud = "another-api".into();
    cases.push(("wrong audience", k.sign(&c).expect("sign")));
    // A flipped signature character.
    let mut bad = good.clone().into_bytes();
    let i = bad.len() - 5;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    cases.push(("bad signature", String::from_utf8(bad).expect("ascii")));
    // alg none, with and without a signature.
    let none = b64(&serde_json::json!({"alg":"none","kid":"k1","typ":"at+jwt"}));
    cases.push(("alg none", format!("{none}.{}.", parts[1])));
    cases.push(("alg none signed", format!("{none}.{}.{}", parts[1], parts[2])));
    // HS256 "signed" with the public key (the algorithm-confusion attack).
    let jwk = k.public_jwk().expect("jwk").to_string();
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("k1".into()),
            typ: Some("at+jwt".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims_at(NOW),
        &jsonwebtoken::EncodingKey::from_secret(jwk.as_bytes()),
    )
    .expect("hs256");
    cases.push(("HS256 with the public key", hs));
    // The ES256 token relabelled as the EdDSA key's.
    let mut relabelled = header.clone();
    relabelled["kid"] = "ed".into();
    cases.push(("another key's kid", format!("{}.{}.{}", b64(&relabelled), parts[1], parts[2])));
    // typ other than at+jwt (an ID token, say), correctly signed.
    let id_token = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some("ed".into()),
            typ: Some("JWT".into()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA)
        },
        &claims_at(NOW),
        &jsonwebtoken::EncodingKey::from_ed_der(&ed_pkcs8),
    )
    .expect("sign with typ JWT");
    cases.push(("typ JWT", id_token));
    let mut unknown = header.clone();
    unknown["kid"] = "nope".into();
    cases.push(("unknown kid", format!("{}.{}.{}", b64(&unknown), parts[1], parts[2])));
    let mut no_kid = header;
    if let Some(o) = no_kid.as_object_mut() {
        o.remove("kid");
    }
    cases.push(("no kid", format!("{}.{}.{}", b64(&no_kid), parts[1], parts[2])));
    cases.push(("truncated", good[..good.len() - 10].to_owned()));
    cases.push(("header only", parts[0].to_owned()));
    cases.push(("two parts", format!("{}.{}", parts[0], parts[1])));
    cases.push(("oversized", format!("{good}{}", "A".repeat(9 * 1024))));
    cases.push(("empty", String::new()));
    cases.push(("garbage", "not a token".into()));
    cases.push(("dots", "...".into()));
    cases.push(("bad base64", "%%%.%%%.%%%".into()));

    for (what, token) in &cases {
        assert_eq!(kind(check(&v, token, NOW)), Some(ErrorKind::Invalid), "{what}");
    }
    assert!(check(&v, &good, NOW).is_ok());
}

#[test]
fn a_token_of_exactly_8_kib_is_parsed_and_one_byte_more_is_not() {
    let k = key(Algorithm::ES256, "k1");
    let v = fixed(&[&k]);
    let good = k.sign(&claims_at(NOW)).expect("sign");
    let padded = format!("{good}{}", "A".repeat(keys::MAX_TOKEN_LEN - good.len()));
    assert_eq!(padded.len(), keys::MAX_TOKEN_LEN);
    let err = check(&v, &padded, NOW).expect_err("bad signature");
    assert_ne!(err.message(), "token empty or longer than 8 KiB");
    let err = check(&v, &format!("{padded}A"), NOW).expect_err("too long");
    assert_eq!(err.message(), "token empty or longer than 8 KiB");
}

struct RevokeSid {
    sid: &'static str,
    stale: AtomicBool,
    calls: AtomicUsize,
}

impl RevocationCheck for RevokeSid {
    fn check(&self, claims: &AccessClaims, _now: Millis) -> RevocationStatus {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.stale.load(Ordering::SeqCst) {
            RevocationStatus::Unavailable
        } else if claims.sid == self.sid {
            RevocationStatus::Revoked
        } else {
            RevocationStatus::Valid
        }
    }
}

#[test]
fn the_revocation_check_is_consulted_on_hits_and_misses() {
    let k = key(Algorithm::ES256, "k1");
    let check_impl =
        Arc::new(RevokeSid { sid: "revoked-session", stale: AtomicBool::new(false), calls: AtomicUsize::new(0) });
    let v = Verifier::builder(ISS, AUD)
        .revocation(check_impl.clone())
        .build_with_keys([k.verifying_key().clone()])
        .expect("verifier");
    let live = k.sign(&claims_at(NOW)).expect("sign");
    let mut c = claims_at(NOW);
    c.sid = "revoked-session".into();
    let revoked = k.sign(&c).expect("sign");
    for _ in 0..2 {
        assert!(check(&v, &live, NOW).is_ok());
        assert_eq!(kind(check(&v, &revoked, NOW)), Some(ErrorKind::Revoked));
    }
    assert_eq!(check_impl.calls.load(Ordering::SeqCst), 4);
    assert_eq!(v.inner.cache.len(), 2, "revocation does not poison the cache");
    check_impl.stale.store(true, Ordering::SeqCst);
    assert_eq!(kind(check(&v, &live, NOW)), Some(ErrorKind::Unavailable));
    // Expiry is decided before revocation.
    let exp_ms = claims_at(NOW).exp * 1000;
    assert_eq!(kind(check(&v, &live, exp_ms)), Some(ErrorKind::Expired));
}

#[test]
fn the_verifier_cache_is_bounded_and_can_be_disabled() {
    let k = key(Algorithm::EdDSA, "k1");
    let v =
        Verifier::builder(ISS, AUD).cache_capacity(10).build_with_keys([k.verifying_key().clone()]).expect("verifier");
    for i in 0..50 {
        let token = k.sign(&claims_at(NOW + i)).expect("sign");
        check(&v, &token, NOW).expect("valid");
        assert!(v.inner.cache.len() <= 10);
    }
    let off =
        Verifier::builder(ISS, AUD).cache_capacity(0).build_with_keys([k.verifying_key().clone()]).expect("verifier");
    let token = k.sign(&claims_at(NOW)).expect("sign");
    check(&off, &token, NOW).expect("valid");
    check(&off, &token, NOW).expect("valid again");
    assert_eq!(off.inner.cache.len(), 0);
}

#[test]
fn builder_rejects_unusable_configuration() {
    let k = key(Algorithm::ES256, "k1");
    let bad = [
        Verifier::builder("", AUD),
        Verifier::builder(ISS, ""),
        Verifier::builder(ISS, AUD).refresh_interval(Duration::ZERO),
        Verifier::builder(ISS, AUD).min_refetch_interval(Duration::MAX),
    ];
    for b in bad {
        let err = b.build_with_keys([k.verifying_key().clone()]).expect_err("config error");
        assert_eq!(err.kind(), ErrorKind::Config);
    }
}

#[tokio::test]
async fn a_non_http_issuer_is_a_configuration_error() {
    let err = Verifier::builder("issuer.example", AUD).build().await.expect_err("config");
    assert_eq!(err.kind(), ErrorKind::Config);
}

/// A tiny issuer: RFC 8414 metadata and a JWKS, counting JWKS requests.
struct MockIssuer {
    base: String,
    keys: Arc<Mutex<Vec<serde_json::Value>>>,
    jwks_hits: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    metadata_issuer: Arc<Mutex<Option<String>>>,
}

impl MockIssuer {
    async fn start(keys: &[&SigningKey]) -> MockIssuer {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let mock = MockIssuer {
            base: base.clone(),
            keys: Arc::new(Mutex::new(keys.iter().filter_map(|k| k.public_jwk().cloned()).collect())),
            jwks_hits: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            metadata_issuer: Arc::new(Mutex::new(None)),
        };
        let (down, issuer) = (mock.down.clone(), mock.metadata_issuer.clone());
        let metadata_base = base.clone();
        let (down2, hits, jwks) = (mock.down.clone(), mock.jwks_hits.clone(), mock.keys.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                get(move || {
                    let (down, issuer, base) = (down.clone(), issuer.clone(), metadata_base.clone());
                    async move {
                        if down.load(Ordering::SeqCst) {
                            return Err(axum::http::StatusCode::BAD_GATEWAY);
                        }
                        let iss = issuer.lock().expect("lock").clone().unwrap_or(base.clone());
                        Ok(axum::Json(serde_json::json!({
                            "issuer": iss, "jwks_uri": format!("{base}/keys")
                        })))
                    }
                }),
            )
            .route(
                "/keys",
                get(move || {
                    let (down, hits, jwks) = (down2.clone(), hits.clone(), jwks.clone());
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        if down.load(Ordering::SeqCst) {
                            return Err(axum::http::StatusCode::BAD_GATEWAY);
                        }
                        let keys = jwks.lock().expect("lock").clone();
                        Ok(axum::Json(serde_json::json!({ "keys": keys })))
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        mock
    }

    fn hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }

    fn claims(&self) -> AccessClaims {
        let mut c = claims_at(now_ms());
        c.iss = self.base.clone();
        c
    }

    async fn verifier(&self, min_refetch: Duration) -> Verifier {
        Verifier::builder(self.base.clone(), AUD).min_refetch_interval(min_refetch).build().await.expect("verifier")
    }
}

fn garbage_kid_token(good: &str, i: usize) -> String {
    let parts: Vec<&str> = good.split('.').collect();
    let header = b64(&serde_json::json!({"alg":"ES256","kid":format!("garbage-{i}"),"typ":"at+jwt"}));
    format!("{header}.{}.{}", parts[1], parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_loads_keys_and_verifies() {
    let k = key(Algorithm::ES256, "k1");
    let issuer = MockIssuer::start(&[&k]).await;
    let v = issuer.verifier(Duration::from_secs(1)).await;
    assert!(v.keys_loaded());
    assert_eq!(issuer.hits(), 1);
    let token = k.sign(&issuer.claims()).expect("sign");
    let claims = v.verify(&token).await.expect("valid");
    assert_eq!(claims.sub, "user-1");
    assert_eq!(issuer.hits(), 1, "a known kid needs no fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_kids_cause_at_most_one_fetch_per_interval() {
    let k = key(Algorithm::ES256, "k1");
    let issuer = MockIssuer::start(&[&k]).await;
    let interval = Duration::from_millis(250);
    let v = issuer.verifier(interval).await;
    let good = k.sign(&issuer.claims()).expect("sign");
    let started = Instant::now();
    let mut tasks = Vec::new();
    // 400 requests with distinct garbage kids, arriving over about a second.
    for i in 0..400 {
        let (v, token) = (v.clone(), garbage_kid_token(&good, i));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis((i as u64 % 40) * 25)).await;
            v.verify(&token).await.map(|_| ()).map_err(|e| e.kind())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("join"), Err(ErrorKind::Invalid));
    }
    let elapsed = started.elapsed();
    let fetches = issuer.hits() - 1;
    let allowed = (elapsed.as_millis() / interval.as_millis()) as usize + 1;
    assert!(fetches >= 1, "an unknown kid triggers a refetch");
    assert!(fetches <= allowed, "{fetches} fetches in {elapsed:?} (at most {allowed} allowed)");
    assert_eq!(v.fetches().await, issuer.hits());
    // Known kids were never held up by it.
    assert!(v.verify(&good).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_is_found_by_refetching_on_its_unknown_kid() {
    let old = key(Algorithm::ES256, "old");
    let new = key(Algorithm::ES256, "new");
    let issuer = MockIssuer::start(&[&old]).await;
    let v = issuer.verifier(Duration::from_millis(200)).await;
    let token = new.sign(&issuer.claims()).expect("sign");
    assert_eq!(kind(v.verify(&token).await), Some(ErrorKind::Invalid));
    issuer.keys.lock().expect("lock").push(new.public_jwk().cloned().expect("jwk"));
    // Even right after a fetch, the next miss waits for the interval and then finds the key.
    let claims = v.verify(&token).await.expect("found after a refetch");
    assert_eq!(claims.sid, "session-1");
    // And a token of the old key still verifies.
    assert!(v.verify(&old.sign(&issuer.claims()).expect("sign")).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    let k = key(Algorithm::ES256, "k1");
    let issuer = MockIssuer::start(&[&k]).await;
    let v = Verifier::builder(issuer.base.clone(), AUD)
        .min_refetch_interval(Duration::from_millis(50))
        .refresh_interval(Duration::from_millis(100))
        .build()
        .await
        .expect("verifier");
    issuer.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(v.fetches().await >= 2, "the background refresh ran");
    // A token never seen before (so not in the token cache) verifies with the cached keys.
    let token = k.sign(&issuer.claims()).expect("sign");
    assert!(v.verify(&token).await.is_ok());
    // And an unknown kid is still just invalid, not unavailable.
    assert_eq!(kind(v.verify(&garbage_kid_token(&token, 1)).await), Some(ErrorKind::Invalid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_keys_ever_loaded_is_unavailable_until_they_load() {
    let k = key(Algorithm::ES256, "k1");
    let issuer = MockIssuer::start(&[&k]).await;
    issuer.down.store(true, Ordering::SeqCst);
    let v = issuer.verifier(Duration::from_millis(100)).await;
    assert!(!v.keys_loaded());
    let token = k.sign(&issuer.claims()).expect("sign");
    assert_eq!(kind(v.verify(&token).await), Some(ErrorKind::Unavailable));
    issuer.down.store(false, Ordering::SeqCst);
    assert!(v.verify(&token).await.is_ok(), "loaded on demand");
    assert!(v.keys_loaded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_naming_another_issuer_is_not_trusted() {
    let k = key(Algorithm::ES256, "k1");
    let issuer = MockIssuer::start(&[&k]).await;
    *issuer.metadata_issuer.lock().expect("lock") = Some("https://evil.example".into());
    let v = issuer.verifier(Duration::from_millis(50)).await;
    assert!(!v.keys_loaded());
    assert_eq!(issuer.hits(), 0, "the JWKS of an unverified issuer is not fetched");
    let token = k.sign(&issuer.claims()).expect("sign");
    assert_eq!(kind(v.verify(&token).await), Some(ErrorKind::Unavailable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_key_stops_verifying_even_cached_tokens() {
    let k1 = key(Algorithm::ES256, "k1");
    let k2 = key(Algorithm::ES256, "k2");
    let issuer = MockIssuer::start(&[&k1, &k2]).await;
    let v = issuer.verifier(Duration::from_millis(50)).await;
    let token = k1.sign(&issuer.claims()).expect("sign");
    assert!(v.verify(&token).await.is_ok());
    assert_eq!(v.inner.cache.len(), 1);
    // The issuer withdraws k1; a refetch (here caused by an unknown kid) learns it.
    issuer.keys.lock().expect("lock").retain(|j| j["kid"] != "k1");
    let _ = v.verify(&garbage_kid_token(&token, 7)).await;
    assert_eq!(kind(v.verify(&token).await), Some(ErrorKind::Invalid));
}

#[tokio::test]
async fn dropping_the_verifier_stops_its_background_task() {
    let k = key(Algorithm::ES256, "k1");
    let issuer = MockIssuer::start(&[&k]).await;
    let v = Verifier::builder(issuer.base.clone(), AUD)
        .refresh_interval(Duration::from_millis(50))
        .build()
        .await
        .expect("verifier");
    let weak = Arc::downgrade(&v.inner);
    drop(v);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(weak.upgrade().is_none());
    let hits = issuer.hits();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(issuer.hits(), hits, "no fetches after the verifier is gone");
}
