//! The crypto floor of the token paths: access-token sign and verify per algorithm, refresh token
//! derivation and check, and the session decision.
//!
//! `cargo bench -p prolong-core --bench tokens`

// Test and benchmark code may panic on a broken fixture; the libraries may not.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use aws_lc_rs::hmac;
use criterion::{Criterion, criterion_group, criterion_main};
use prolong_core::claims::AccessClaims;
use prolong_core::keys::{Algorithm, SigningKey, generate};
use prolong_core::refresh_token::{self, Binding};
use prolong_core::session::decide_refresh;
use prolong_core::{Mode, Policy, SessionState};
use std::hint::black_box;

fn claims() -> AccessClaims {
    AccessClaims {
        iss: "https://auth.example.com".into(),
        sub: "4b1e64fcd46634b24e115ee76e926e88".into(),
        aud: "prolong".into(),
        iat: 1_795_950_486,
        exp: 1_795_951_386,
        jti: "60b6b113647870510c8c8dd3719b2395".into(),
        sid: "57950d3802ebf470ae66beb427dc3531".into(),
        client_id: "prolong".into(),
        ver: 0,
        auth_time: 1_795_950_486,
        softexp: None,
        r#gen: None,
        renew_until: None,
    }
}

fn sign_and_verify(c: &mut Criterion) {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256, Algorithm::HS256] {
        let key = SigningKey::from_private("kid", alg, &generate(alg).expect("generate")).expect("parse");
        let claims = claims();
        let token = key.sign(&claims).expect("sign");
        c.bench_function(&format!("sign/{}", alg.as_str()), |b| b.iter(|| key.sign(black_box(&claims))));
        c.bench_function(&format!("verify/{}", alg.as_str()), |b| {
            b.iter(|| key.verifying_key().verify::<AccessClaims>(black_box(&token)))
        });
    }
}

fn refresh_tokens(c: &mut Criterion) {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
    let sid = [1u8; 16];
    let salt = [2u8; 32];
    let binding = Binding {
        session_id: &sid,
        salt: &salt,
        user_id: "4b1e64fcd46634b24e115ee76e926e88",
        client_id: "prolong",
        generation: 42,
    };
    let token = refresh_token::issue(&[3; 8], &key, &binding);
    c.bench_function("refresh_token/issue", |b| b.iter(|| refresh_token::issue(&[3; 8], &key, black_box(&binding))));
    c.bench_function("refresh_token/parse+verify", |b| {
        b.iter(|| {
            let p = refresh_token::parse(black_box(&token)).expect("parse");
            p.verify(&key, &salt, binding.user_id, binding.client_id)
        })
    });
    let policy = Policy {
        mode: Mode::Refresh,
        access_ttl: 900_000,
        idle_timeout: 1_800_000,
        absolute_lifetime: 259_200_000,
        reuse_grace: 10_000,
    };
    let state = SessionState {
        generation: 42,
        rotated_at: 1_000,
        last_active: 1_000,
        auth_time: 0,
        token_version: 0,
        ended: None,
    };
    c.bench_function("session/decide_refresh", |b| {
        b.iter(|| decide_refresh(black_box(&state), 0, &policy, 42, 0, 5_000))
    });
}

criterion_group!(benches, sign_and_verify, refresh_tokens);
criterion_main!(benches);
