//! Access tokens verify with an independent JWT library (Python PyJWT) through the JWKS.
//!
//! `scripts/test` installs PyJWT into a virtualenv and sets `INTEROP_PYTHON`; without it the test
//! uses `python3` and fails with a hint when PyJWT is missing.

use crate::support::{Db, PASSWORD, TestApp, s};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyjwt_verifies_access_tokens_through_the_jwks() {
    let python = std::env::var("INTEROP_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop/verify_pyjwt.py");
    for alg in ["ES256", "EdDSA", "RS256"] {
        let db = Db::sqlite();
        let app = TestApp::start(&db, &[("PROLONG_TOKENS__ALGORITHM", alg)]).await;
        let login = app.login("alice", PASSWORD).await;
        let out = tokio::process::Command::new(&python)
            .args([script, &app.base, "prolong", s(&login, "access_token")])
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{alg}: PyJWT rejected the token (run scripts/test, or pip install 'pyjwt[crypto]'):\n{stdout}\n{stderr}"
        );
        let claims: serde_json::Value = serde_json::from_str(stdout.trim()).expect("claims json");
        assert_eq!(claims["sid"], s(&login, "session_id"), "{alg}");
        assert_eq!(claims["alg"], alg);
    }
}
