//! What verifying one access token costs, per algorithm: a cache hit, a full verification (cache
//! off), and the bare signature check of `prolong-core` it is built on.
//!
//! `cargo bench -p prolong-verify --bench verify -- --warm-up-time 1 --measurement-time 3`

// A benchmark fixture that cannot be built is a bug in the benchmark: fail loudly.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use prolong_core::claims::AccessClaims;
use prolong_core::keys::{Algorithm, SigningKey, generate};
use prolong_verify::{Claims, Error, Verifier};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

const ISS: &str = "https://auth.example.com";

fn token(key: &SigningKey) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
    key.sign(&AccessClaims {
        iss: ISS.into(),
        sub: "0b7c4e0a-9f7e-4c55-a1b0-5d7f1e2c3a4b".into(),
        aud: "prolong".into(),
        iat: now,
        exp: now + 3600,
        jti: "Yk1x3mB2Qe6hX0tV9cR4pA".into(),
        sid: "s6Q1b0kWcZr8vN3yH5uJtA".into(),
        client_id: "prolong".into(),
        ver: 1,
        auth_time: now,
        softexp: None,
        r#gen: None,
        renew_until: None,
    })
    .expect("sign")
}

/// Runs `Verifier::verify` to completion. With fixed keys it never waits, so one poll finishes it;
/// this measures the public async API without an executor's overhead.
fn verify_now(verifier: &Verifier, token: &str) -> Result<Claims, Error> {
    let mut future = pin!(verifier.verify(token));
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("a verifier with fixed keys never waits"),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let key = SigningKey::from_private("k1", alg, &generate(alg).expect("generate")).expect("key");
        let token = token(&key);
        let name = alg.as_str();

        let cached =
            Verifier::builder(ISS, "prolong").build_with_keys([key.verifying_key().clone()]).expect("verifier");
        verify_now(&cached, &token).expect("valid");
        group.bench_function(BenchmarkId::new("cache_hit", name), |b| {
            b.iter(|| verify_now(&cached, black_box(&token)).expect("valid"))
        });

        let uncached = Verifier::builder(ISS, "prolong")
            .cache_capacity(0)
            .build_with_keys([key.verifying_key().clone()])
            .expect("verifier");
        group.bench_function(BenchmarkId::new("cache_miss", name), |b| {
            b.iter(|| verify_now(&uncached, black_box(&token)).expect("valid"))
        });

        let raw = key.verifying_key();
        group.bench_function(BenchmarkId::new("signature_only", name), |b| {
            b.iter(|| raw.verify::<AccessClaims>(black_box(&token)).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
