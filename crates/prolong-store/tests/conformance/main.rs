//! One conformance suite, run against every backend: each test is written once as an async fn
//! taking a `Store`, and the `backends!` macro instantiates it for SQLite and PostgreSQL.
//!
//! PostgreSQL tests create a fresh database each (so they run in parallel) on the server named by
//! `PROLONG_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`); they fail, never
//! skip, when it is unreachable.

// Test and benchmark code may panic on a broken fixture; the libraries may not.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use prolong_core::{Reason, SessionState};
use prolong_store::{KeyKind, Session, Store, StoredKey, User};
use std::sync::Arc;

mod support;

fn user(id: &str, name: &str) -> User {
    User { id: id.into(), username: name.into(), password_hash: "h".into(), token_version: 0, created_at: 1 }
}

fn session(id: u8, user_id: &str, now: i64) -> Session {
    Session {
        id: [id; 16],
        user_id: user_id.into(),
        client_id: "prolong".into(),
        salt: [id; 32],
        mac_kid: [1; 8],
        state: SessionState {
            generation: 0,
            rotated_at: now,
            last_active: now,
            auth_time: now,
            token_version: 0,
            ended: None,
        },
        ended_at: None,
        user_agent: Some("test".into()),
    }
}

async fn users_are_unique_and_found(store: Arc<dyn Store>) {
    store.create_user(&user("u1", "alice")).await.expect("create");
    assert!(matches!(store.create_user(&user("u2", "alice")).await, Err(prolong_store::StoreError::Conflict)));
    assert_eq!(store.user_by_name("alice").await.expect("q").map(|u| u.id), Some("u1".into()));
    assert_eq!(store.user_by_id("u1").await.expect("q").map(|u| u.username), Some("alice".into()));
    assert_eq!(store.user_by_name("bob").await.expect("q"), None);
    assert_eq!(store.bump_token_version("u1", 1, 100).await.expect("bump"), Some(1));
    assert_eq!(store.bump_token_version("nobody", 1, 100).await.expect("bump"), None);
}

async fn sessions_round_trip(store: Arc<dyn Store>) {
    store.create_user(&user("u1", "alice")).await.expect("create");
    let s = session(3, "u1", 1_000);
    store.create_session(&s).await.expect("create session");
    let got = store.session(&s.id).await.expect("load").expect("found");
    assert_eq!(got.session, s);
    assert_eq!(got.user_version, 0);
    assert_eq!(store.session(&[9; 16]).await.expect("load"), None);
    assert_eq!(store.sessions_of("u1").await.expect("list").len(), 1);
}

async fn rotation_is_a_compare_and_set(store: Arc<dyn Store>) {
    store.create_user(&user("u1", "alice")).await.expect("create");
    let s = session(4, "u1", 1_000);
    store.create_session(&s).await.expect("create session");
    assert!(store.rotate(&s.id, 0, 2_000, 1_500, &[2; 8]).await.expect("rotate"));
    assert!(!store.rotate(&s.id, 0, 2_001, 1_500, &[2; 8]).await.expect("rotate"), "stale generation must lose");
    let got = store.session(&s.id).await.expect("load").expect("found").session;
    assert_eq!(
        (got.state.generation, got.state.rotated_at, got.state.last_active, got.mac_kid),
        (1, 2_000, 1_500, [2; 8])
    );

    // Many concurrent rotations from one generation: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.rotate(&[4; 16], 1, 3_000 + i, 3_000, &[2; 8]).await }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.expect("join").expect("rotate") {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.session(&s.id).await.expect("load").expect("found").session.state.generation, 2);
}

async fn an_ended_session_stays_ended(store: Arc<dyn Store>) {
    store.create_user(&user("u1", "alice")).await.expect("create");
    let s = session(5, "u1", 1_000);
    store.create_session(&s).await.expect("create session");
    assert!(store.end_session(&s.id, Reason::ReuseDetected, 2_000, 9_000).await.expect("end"));
    assert!(!store.end_session(&s.id, Reason::Revoked, 3_000, 9_000).await.expect("end"), "the first end wins");
    assert!(!store.rotate(&s.id, 0, 4_000, 4_000, &[1; 8]).await.expect("rotate"), "ended sessions never rotate");
    let got = store.session(&s.id).await.expect("load").expect("found").session;
    assert_eq!(got.state.ended, Some(Reason::ReuseDetected));
    assert_eq!(got.ended_at, Some(2_000));
    assert!(store.sessions_of("u1").await.expect("list").is_empty());
}

async fn password_reset_ends_every_live_session(store: Arc<dyn Store>) {
    store.create_user(&user("u1", "alice")).await.expect("create");
    store.create_user(&user("u2", "bob")).await.expect("create");
    for (i, u) in [(10, "u1"), (11, "u1"), (12, "u2")] {
        store.create_session(&session(i, u, 1_000)).await.expect("create session");
    }
    store.end_session(&[11; 16], Reason::Revoked, 1_500, 9_000).await.expect("end");
    let ended = store.set_password("u1", "new", true, 2_000, 9_000).await.expect("reset");
    assert_eq!(ended.iter().map(|e| e.id).collect::<Vec<_>>(), vec![[10; 16]]);
    assert_eq!(store.user_by_id("u1").await.expect("q").expect("found").password_hash, "new");
    let s10 = store.session(&[10; 16]).await.expect("load").expect("found").session;
    assert_eq!(s10.state.ended, Some(Reason::ReauthRequired));
    let s11 = store.session(&[11; 16]).await.expect("load").expect("found").session;
    assert_eq!(s11.state.ended, Some(Reason::Revoked), "an earlier end keeps its reason");
    assert_eq!(store.session(&[12; 16]).await.expect("load").expect("found").session.state.ended, None);
    // A later session of the same user is unaffected by the earlier requirement.
    store.create_session(&session(13, "u1", 3_000)).await.expect("create session");
    assert!(store.set_password("u1", "newer", false, 4_000, 9_000).await.expect("change").is_empty());
    assert_eq!(store.session(&[13; 16]).await.expect("load").expect("found").session.state.ended, None);
    let ended = store.end_user_sessions("u1", Reason::ReauthRequired, 5_000, 9_000).await.expect("reauth");
    assert_eq!(ended.len(), 1);
}

fn key(kid: &str, kind: KeyKind, alg: &str, at: i64) -> StoredKey {
    StoredKey {
        kid: kid.into(),
        kind,
        alg: alg.into(),
        material: vec![1, 2, 3],
        encrypted: false,
        created_at: at,
        retired_at: None,
    }
}

async fn keys_are_added_once_and_retired(store: Arc<dyn Store>) {
    assert!(store.add_key(&key("a", KeyKind::Signing, "ES256", 1), true, false, 1).await.expect("add"));
    assert!(
        !store.add_key(&key("b", KeyKind::Signing, "ES256", 2), true, false, 2).await.expect("add"),
        "one active key per kind and alg"
    );
    assert!(store.add_key(&key("m", KeyKind::RefreshMac, "HS256", 2), true, false, 2).await.expect("add"));
    assert!(store.add_key(&key("c", KeyKind::Signing, "ES256", 3), false, true, 3).await.expect("rotate"));
    let keys = store.keys().await.expect("keys");
    let find = |kid: &str| keys.iter().find(|k| k.kid == kid).cloned().expect("present");
    assert_eq!(find("a").retired_at, Some(3));
    assert_eq!(find("c").retired_at, None);
    assert_eq!(find("m").retired_at, None, "rotating signing keys leaves MAC keys alone");
    store.replace_key_material("a", &[9, 9], true).await.expect("replace");
    let a = store.keys().await.expect("keys").into_iter().find(|k| k.kid == "a").expect("a");
    assert_eq!((a.material, a.encrypted), (vec![9, 9], true));
}

async fn revocations_form_an_ordered_feed(store: Arc<dyn Store>) {
    use prolong_store::RevocationKind;
    store.create_user(&user("u1", "alice")).await.expect("create");
    for i in 20..24 {
        store.create_session(&session(i, "u1", 1_000)).await.expect("session");
    }
    assert_eq!(store.latest_revocation().await.expect("latest"), 0);
    // Idle and absolute expiry are not revocations; logout, reuse and re-auth are.
    assert!(store.end_session(&[20; 16], Reason::ExpiredIdle, 2_000, 50_000).await.expect("end"));
    assert!(store.end_session(&[21; 16], Reason::Revoked, 2_000, 50_000).await.expect("end"));
    assert!(store.end_session(&[22; 16], Reason::ReuseDetected, 2_000, 40_000).await.expect("end"));
    store.bump_token_version("u1", 3_000, 60_000).await.expect("bump");
    store.end_user_sessions("u1", Reason::ReauthRequired, 4_000, 70_000).await.expect("reauth");
    let all = store.revocations_after(0, 0, 100).await.expect("feed");
    let kinds: Vec<RevocationKind> = all.iter().map(|r| r.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            RevocationKind::Session([21; 16]),
            RevocationKind::Session([22; 16]),
            RevocationKind::User { user_id: "u1".into(), min_version: 1 },
            RevocationKind::Session([23; 16]),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "commit order");
    assert_eq!(store.latest_revocation().await.expect("latest"), all[3].seq);
    // A cursor skips what was seen; `now` drops what is past its `until`.
    assert_eq!(store.revocations_after(all[1].seq, 0, 100).await.expect("feed").len(), 2);
    assert_eq!(store.revocations_after(0, 45_000, 100).await.expect("feed").len(), 3);
    assert_eq!(store.revocations_after(0, 0, 1).await.expect("feed").len(), 1);
}

async fn purge_removes_what_can_no_longer_matter(store: Arc<dyn Store>) {
    use prolong_store::PurgeBefore;
    store.create_user(&user("u1", "alice")).await.expect("create");
    // 30: ended long ago; 31: idle for long; 32: too old; 33: alive.
    for (i, at) in [(30, 10_000), (31, 1_000), (32, 500), (33, 90_000)] {
        let mut s = session(i, "u1", at);
        s.state.last_active = if i == 32 { 95_000 } else { at };
        store.create_session(&s).await.expect("session");
    }
    store.end_session(&[30; 16], Reason::Revoked, 20_000, 30_000).await.expect("end");
    let before = PurgeBefore { ended_at: 50_000, last_active: 5_000, auth_time: 800, until: 40_000 };
    let purged = store.purge(before, 1_000).await.expect("purge");
    assert_eq!((purged.sessions, purged.revocations), (3, 1));
    assert!(store.session(&[33; 16]).await.expect("load").is_some());
    for gone in [30u8, 31, 32] {
        assert!(store.session(&[gone; 16]).await.expect("load").is_none(), "{gone}");
    }
    assert_eq!(store.live_sessions(10).await.expect("live").len(), 1);
}

async fn decide_and_apply_reads_decides_and_writes(store: Arc<dyn Store>) {
    use prolong_store::SessionWrite;
    store.create_user(&user("u1", "alice")).await.expect("create");
    let s = session(40, "u1", 1_000);
    store.create_session(&s).await.expect("session");
    assert!(store.decide_and_apply(&[99; 16], Box::new(|_| SessionWrite::Nothing)).await.expect("apply").is_none());
    // Many concurrent rotations decided on what each read: the row moves exactly one generation
    // per applied write, and every applied write saw the generation it moved from.
    let mut tasks = Vec::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .decide_and_apply(
                    &[40; 16],
                    Box::new(move |found| {
                        let g = found.session.state.generation;
                        if g == 0 {
                            SessionWrite::Rotate { from: g, now: 2_000 + i, last_active: 2_000, mac_kid: [3; 8] }
                        } else {
                            SessionWrite::Nothing
                        }
                    }),
                )
                .await
        }));
    }
    let mut rotations = 0;
    for t in tasks {
        let (_, write, applied) = t.await.expect("join").expect("apply").expect("found");
        if matches!(write, SessionWrite::Rotate { .. }) && applied {
            rotations += 1;
        }
    }
    assert_eq!(rotations, 1, "exactly one rotation from generation 0 is applied");
    let now = store.session(&[40; 16]).await.expect("load").expect("found").session;
    assert_eq!((now.state.generation, now.mac_kid), (1, [3; 8]));
    // An end is applied once and recorded in the feed when it is a revocation.
    let before = store.latest_revocation().await.expect("latest");
    let end = SessionWrite::End { reason: Reason::ReuseDetected, now: 3_000, until: 9_000 };
    let (_, _, applied) =
        store.decide_and_apply(&[40; 16], Box::new(move |_| end)).await.expect("apply").expect("found");
    assert!(applied);
    let (_, _, again) = store.decide_and_apply(&[40; 16], Box::new(move |_| end)).await.expect("apply").expect("found");
    assert!(!again, "an ended session is not ended twice");
    assert_eq!(
        store.session(&[40; 16]).await.expect("load").expect("found").session.state.ended,
        Some(Reason::ReuseDetected)
    );
    assert!(store.latest_revocation().await.expect("latest") > before);
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::support::SqliteDb::new().await;
                    super::$name(db.store.clone()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = crate::support::PgDb::new().await;
                    super::$name(db.store.clone()).await;
                    db.drop().await;
                }
            )*
        }
    };
}

backends!(
    users_are_unique_and_found,
    sessions_round_trip,
    rotation_is_a_compare_and_set,
    an_ended_session_stays_ended,
    password_reset_ends_every_live_session,
    keys_are_added_once_and_retired,
    revocations_form_an_ordered_feed,
    purge_removes_what_can_no_longer_matter,
    decide_and_apply_reads_decides_and_writes,
    ping_answers,
);

#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    {
        let store = prolong_store::connect(&url).await.expect("open");
        store.create_user(&user("u1", "alice")).await.expect("create");
        store.create_session(&session(1, "u1", 5)).await.expect("session");
        store.close().await;
    }
    let store = prolong_store::connect(&url).await.expect("reopen");
    assert!(store.session(&[1; 16]).await.expect("load").is_some());
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    assert!(matches!(prolong_store::connect("mysql://x").await, Err(prolong_store::StoreError::UnsupportedUrl)));
    let memory = prolong_store::connect("sqlite::memory:").await.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(memory.contains("in-memory SQLite is not supported"), "{memory}");
}

/// A SQLite store in a temporary directory with user `u1` and the session `[id; 16]`, and its URL.
async fn sqlite_with_session(id: u8) -> (tempfile::TempDir, String, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = prolong_store::connect(&url).await.expect("open");
    store.create_user(&user("u1", "alice")).await.expect("create");
    store.create_session(&session(id, "u1", 1_000)).await.expect("session");
    (dir, url, store)
}

/// A decision that rotates whatever generation it finds.
fn rotate(found: &prolong_store::SessionWithUser) -> prolong_store::SessionWrite {
    prolong_store::SessionWrite::Rotate {
        from: found.session.state.generation,
        now: 2_000,
        last_active: 2_000,
        mac_kid: [1; 8],
    }
}

/// A refresh that finds SQLite's write lock held by another connection (a CLI command, another
/// process) waits for it without stalling the runtime, then applies.
#[tokio::test]
async fn sqlite_refresh_waits_for_another_writer_without_blocking_the_runtime() {
    use sqlx::{Connection, Executor};
    let (_dir, url, store) = sqlite_with_session(7).await;

    let mut other = sqlx::SqliteConnection::connect(&url).await.expect("second connection");
    other.execute("BEGIN IMMEDIATE").await.expect("take the write lock");
    let refresh = {
        let store = store.clone();
        tokio::spawn(async move { store.decide_and_apply(&[7; 16], Box::new(rotate)).await })
    };
    // While it waits, the runtime (this test's only thread) keeps serving reads.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!refresh.is_finished(), "the refresh waits for the lock");
    let read = tokio::time::timeout(std::time::Duration::from_secs(2), store.session(&[7; 16])).await;
    let found = read.expect("a read is not blocked by the waiting refresh").expect("load").expect("found");
    assert_eq!(found.session.state.generation, 0);
    other.execute("COMMIT").await.expect("release the lock");

    let (_, _, applied) = refresh.await.expect("join").expect("apply").expect("found");
    assert!(applied);
    assert_eq!(store.session(&[7; 16]).await.expect("load").expect("found").session.state.generation, 1);
    store.close().await;
}

/// A decision that panics fails its own refresh only: the connection, its write lock and the
/// next refreshes are fine.
#[tokio::test]
async fn sqlite_a_panicking_decision_fails_only_its_own_refresh() {
    let (_dir, _, store) = sqlite_with_session(8).await;
    let (panicked, fine) = tokio::join!(
        store.decide_and_apply(&[8; 16], Box::new(|_| panic!("a broken decision"))),
        store.decide_and_apply(&[8; 16], Box::new(rotate)),
    );
    assert!(panicked.is_err(), "the panicking decision's refresh fails");
    assert!(fine.expect("the other refresh of the batch is applied").expect("found").2);
    // The write lock was released: other connections can write, and the next refresh applies.
    store.create_user(&user("u2", "bob")).await.expect("another write");
    let (_, _, applied) = store.decide_and_apply(&[8; 16], Box::new(rotate)).await.expect("apply").expect("found");
    assert!(applied);
    assert_eq!(store.session(&[8; 16]).await.expect("load").expect("found").session.state.generation, 2);
    store.close().await;
}
