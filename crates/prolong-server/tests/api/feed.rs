//! The revocation feed: long-poll and Server-Sent Events, snapshot and cursor, fast wake-up.

use crate::support::{Db, PASSWORD, TestApp, s};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

const RESOURCE: &str = "resource-token-0123456789abcdef01234567";

fn env() -> Vec<(&'static str, String)> {
    vec![("PROLONG_RESOURCE_TOKENS", format!("[\"{RESOURCE}\"]"))]
}

async fn start(db: &Db) -> TestApp {
    let env = env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::start(db, &env).await
}

async fn poll(app: &TestApp, query: &str) -> Value {
    let r = app.http.get(app.url(&format!("/v1/revocations{query}"))).bearer_auth(RESOURCE).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_gives_a_snapshot_then_events_after_the_cursor() {
    let db = Db::sqlite();
    let app = start(&db).await;
    let r = app.http.get(app.url("/v1/revocations")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.http.get(app.url("/v1/revocations")).bearer_auth("wrong").send().await.expect("send");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let first = poll(&app, "").await;
    assert_eq!((first["snapshot"].as_bool(), first["events"].as_array().map(Vec::len)), (Some(true), Some(0)));
    let a = app.login("alice", PASSWORD).await;
    let b = app.login("alice", PASSWORD).await;
    let (status, _) = app.form("/oauth/revoke", &[("token", s(&a, "refresh_token"))]).await;
    assert_eq!(status, StatusCode::OK);
    let next = poll(&app, &format!("?after={}", first["cursor"])).await;
    assert_eq!(next["snapshot"], false);
    let events = next["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["kind"], "session");
    assert_eq!(events[0]["sid"], s(&a, "session_id"));
    assert!(
        events[0]["until"].as_i64().expect("until")
            >= crate::support::claims(s(&a, "access_token"))["exp"].as_i64().expect("exp")
    );
    // Logout everywhere is a user event.
    let r = app.http.post(app.url("/v1/logout-all")).bearer_auth(s(&b, "access_token")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let after = poll(&app, &format!("?after={}", next["cursor"])).await;
    let ev = &after["events"][0];
    assert_eq!((ev["kind"].as_str(), ev["min_ver"].as_i64()), (Some("user"), Some(1)));
    assert_eq!(ev["sub"], crate::support::claims(s(&b, "access_token"))["sub"]);
    // A missing or foreign cursor gets a snapshot of everything still in force.
    let snap = poll(&app, "?after=999999").await;
    assert_eq!((snap["snapshot"].as_bool(), snap["events"].as_array().map(Vec::len)), (Some(true), Some(2)));
    // A long poll wakes up as soon as a revocation happens.
    let cursor = after["cursor"].as_i64().expect("cursor");
    let waiting = {
        let req =
            app.http.get(app.url(&format!("/v1/revocations?after={cursor}&wait=10"))).bearer_auth(RESOURCE).send();
        tokio::spawn(async move { (Instant::now(), req.await.expect("send").json::<Value>().await.expect("json")) })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = app.login("alice", PASSWORD).await;
    let revoked_at = Instant::now();
    app.form("/oauth/revoke", &[("token", s(&c, "access_token"))]).await;
    let (_, body) = waiting.await.expect("join");
    assert!(revoked_at.elapsed() < Duration::from_secs(1), "woke within a second: {:?}", revoked_at.elapsed());
    assert_eq!(body["events"][0]["sid"], s(&c, "session_id"));
}

/// Reads SSE events from a streaming response until `want` matches or the time is up.
/// Opens the feed as a Server-Sent Events stream.
async fn subscribe(app: &TestApp) -> reqwest::Response {
    app.http
        .get(app.url("/v1/revocations"))
        .bearer_auth(RESOURCE)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("send")
}

async fn read_until(
    r: &mut reqwest::Response,
    buf: &mut String,
    deadline: Instant,
    want: impl Fn(&str, &Value) -> bool,
) -> Option<Value> {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = if e.trim() == "heartbeat" {
                        "heartbeat"
                    } else if e.trim() == "revocation" {
                        "revocation"
                    } else {
                        "other"
                    };
                    if e.trim() == "snapshot" {
                        event = "snapshot";
                    }
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
            if want(event, &value) {
                return Some(value);
            }
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, r.chunk()).await {
            Ok(Ok(Some(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_sent_events_stream_revocations_and_heartbeats_and_end_on_shutdown() {
    let db = Db::sqlite();
    let app = start(&db).await;
    let a = app.login("alice", PASSWORD).await;
    app.form("/oauth/revoke", &[("token", s(&a, "refresh_token"))]).await;
    let mut r = subscribe(&app).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().expect("ct").starts_with("text/event-stream"));
    let mut buf = String::new();
    let snapshot = read_until(&mut r, &mut buf, Instant::now() + Duration::from_secs(3), |e, _| e == "snapshot")
        .await
        .expect("snapshot");
    assert_eq!(snapshot["events"][0]["sid"], s(&a, "session_id"));
    let hb = read_until(&mut r, &mut buf, Instant::now() + Duration::from_millis(1_500), |e, _| e == "heartbeat").await;
    assert!(hb.is_some(), "a heartbeat at least every second");
    let b = app.login("alice", PASSWORD).await;
    let t = Instant::now();
    app.form("/oauth/revoke", &[("token", s(&b, "refresh_token"))]).await;
    let ev = read_until(&mut r, &mut buf, Instant::now() + Duration::from_secs(2), |e, _| e == "revocation")
        .await
        .expect("event");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(ev["sid"], s(&b, "session_id"));
    // An open stream does not hold up a graceful shutdown.
    let started = Instant::now();
    assert_eq!(app.terminate().await, Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A snapshot of more revocations than one read takes (10,000) arrives whole — the first event,
/// then the rest as revocation events — before the first heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_one_read_arrives_whole_before_the_first_heartbeat() {
    use sqlx::Connection;
    const LIVE: usize = 10_500;
    let db = Db::sqlite();
    let app = start(&db).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let mut conn = sqlx::SqliteConnection::connect(&db.url).await.expect("connect");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO revocations (kind, session_id, until, created_at) SELECT 'session', randomblob(16), ?2, ?3 FROM n",
    )
    .bind(LIVE as i64)
    .bind(now + 3_600_000)
    .bind(now)
    .execute(&mut conn)
    .await
    .expect("insert revocations");
    conn.close().await.expect("close");
    // Let the server's feed pump (it polls every 200 ms) take in the newest cursor first, so no
    // "new event" wake-up can make the stream read on by chance.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let mut r = subscribe(&app).await;
    let mut buf = String::new();
    let sids = std::cell::RefCell::new(std::collections::HashSet::new());
    let heartbeat = read_until(&mut r, &mut buf, Instant::now() + Duration::from_secs(20), |event, data| {
        match event {
            "snapshot" => {
                let events = data["events"].as_array().expect("events");
                sids.borrow_mut().extend(events.iter().map(|e| e["sid"].to_string()));
            }
            "revocation" => {
                sids.borrow_mut().insert(data["sid"].to_string());
            }
            _ => {}
        }
        event == "heartbeat"
    })
    .await;
    assert!(heartbeat.is_some(), "a heartbeat follows the snapshot");
    assert_eq!(sids.borrow().len(), LIVE, "every live revocation arrived before the first heartbeat");
}
