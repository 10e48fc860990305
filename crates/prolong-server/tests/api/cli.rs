//! The command line: exit codes, one-line errors, masked secrets.

use crate::support::{Db, cli};

#[tokio::test]
async fn user_add_refuses_duplicates_and_bad_passwords_with_one_line() {
    let db = Db::sqlite();
    let (code, out, err) =
        cli(&db.url, &[], &["user", "add", "Bob", "--password-stdin"], Some("a fine password\n")).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim().len(), 32, "prints the new id");
    let (code, _, err) =
        cli(&db.url, &[], &["user", "add", "BOB", "--password-stdin"], Some("another password\n")).await;
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = cli(&db.url, &[], &["user", "add", "carol", "--password-stdin"], Some("short\n")).await;
    assert_ne!(code, 0);
    assert!(err.contains("8 to 128"), "{err}");
    let (code, _, err) = cli(&db.url, &[], &["user", "add", "carol"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("--password-stdin"), "{err}");
    let (code, _, err) = cli(&db.url, &[], &["user", "reauth", "nobody"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("unknown user"), "{err}");
}

#[tokio::test]
async fn config_check_masks_secrets_and_names_bad_keys() {
    let db = Db::sqlite();
    let secret = "an-admin-token-that-is-long-enough-1234";
    let (code, out, err) = cli(
        &db.url,
        &[("PROLONG_ADMIN_TOKEN", secret), ("PROLONG_SESSION__IDLE_TIMEOUT", "45m")],
        &["config", "check"],
        None,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(secret));
    assert!(out.contains("admin_token = \"********\""), "{out}");
    assert!(out.contains("idle_timeout = \"45m\""), "{out}");

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("prolong.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\n[session]\nidel_timeout = \"5m\"\n").expect("write");
    let (code, _, err) = cli(&db.url, &[], &["config", "check", "--config", file.to_str().expect("utf8")], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("idel_timeout"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    let (code, _, err) = cli(&db.url, &[("PROLONG_TOKENS__ACCESS_TTL", "2h")], &["config", "check"], None).await;
    assert_ne!(code, 0);
    assert!(err.contains("access_ttl"), "{err}");
    let (code, _, err) =
        cli(&db.url, &[("PROLONG_ISSUER", "http://auth.example.com")], &["serve", "--listen", "127.0.0.1:0"], None)
            .await;
    assert_ne!(code, 0);
    assert!(err.contains("https"), "{err}");
}
