//! Strict mode: follow the issuer's revocation feed (CONTRACT §6) and reject tokens of revoked
//! sessions and of users who logged out everywhere, within about a second of the revocation.
//!
//! Design decision: a background task keeps an in-memory map current from the feed's
//! Server-Sent Events stream; the request path only reads that map ([`RevocationCheck`]), so it
//! never waits on the network. Entries are dropped after their `until`, so memory is bounded by
//! the revocations of one access-token lifetime. When nothing (not even a heartbeat) has been
//! heard for `max_staleness`, the check fails closed by default (503 `temporarily_unavailable`,
//! never 401, which would sign every client out) or, if configured, open.

use crate::revocation::{RevocationCheck, RevocationStatus};
use prolong_core::Millis;
use prolong_core::claims::AccessClaims;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// Default `max_staleness`: how long the feed may be silent before strict checks stop trusting it.
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(10);

/// What a strict verifier does when the feed has been silent for longer than `max_staleness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailMode {
    /// Answer 503 `temporarily_unavailable` with `Retry-After` (the default).
    Closed,
    /// Accept tokens that are otherwise valid, as a non-strict verifier would.
    Open,
}

#[derive(Default)]
struct Revoked {
    /// sid → until (ms)
    sessions: HashMap<String, Millis>,
    /// sub → (min_ver, until ms)
    users: HashMap<String, (i64, Millis)>,
}

impl Revoked {
    fn apply(&mut self, e: &FeedEvent) {
        let until = e.until.saturating_mul(1000);
        match e.kind.as_str() {
            "session" => {
                if let Some(sid) = &e.sid {
                    let slot = self.sessions.entry(sid.clone()).or_insert(until);
                    *slot = (*slot).max(until);
                }
            }
            "user" => {
                if let (Some(sub), Some(min_ver)) = (&e.sub, e.min_ver) {
                    let slot = self.users.entry(sub.clone()).or_insert((min_ver, until));
                    *slot = (slot.0.max(min_ver), slot.1.max(until));
                }
            }
            _ => {}
        }
    }

    fn prune(&mut self, now: Millis) {
        self.sessions.retain(|_, until| *until >= now);
        self.users.retain(|_, (_, until)| *until >= now);
    }
}

#[derive(Debug, Deserialize)]
struct FeedEvent {
    kind: String,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    min_ver: Option<i64>,
    until: i64,
}

#[derive(Debug, Deserialize)]
struct Batch {
    cursor: i64,
    #[serde(default)]
    events: Vec<FeedEvent>,
}

/// Counters for monitoring the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedStats {
    /// Whether a stream is currently open.
    pub connected: bool,
    /// Milliseconds since the feed was last heard from (event or heartbeat); `None` if never.
    pub silent_for_ms: Option<i64>,
    /// Connection attempts that failed or streams that broke.
    pub failures: u64,
    /// Revocation entries held now.
    pub entries: usize,
    /// The last cursor seen.
    pub cursor: i64,
}

/// The strict-mode revocation check: install it with
/// [`VerifierBuilder::revocation`](crate::VerifierBuilder::revocation).
pub struct RevocationFeed {
    revoked: RwLock<Revoked>,
    last_heard: AtomicI64,
    connected: AtomicBool,
    failures: AtomicU64,
    cursor: AtomicI64,
    max_staleness: Duration,
    fail_mode: FailMode,
}

fn now_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// Configures and starts a [`RevocationFeed`].
pub struct RevocationFeedBuilder {
    issuer: String,
    token: String,
    max_staleness: Duration,
    fail_mode: FailMode,
    http: Option<reqwest::Client>,
}

impl RevocationFeedBuilder {
    /// How long the feed may be silent before checks fail (default 10 s).
    pub fn max_staleness(mut self, d: Duration) -> Self {
        self.max_staleness = d;
        self
    }

    /// What to do when the feed is stale (default [`FailMode::Closed`]).
    pub fn fail_mode(mut self, mode: FailMode) -> Self {
        self.fail_mode = mode;
        self
    }

    /// Uses this HTTP client (for TLS settings); it must not time out whole requests, since the
    /// stream is long-lived.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Starts following the feed in the background (needs a Tokio runtime). The task stops when
    /// the returned feed is dropped.
    pub fn start(self) -> Arc<RevocationFeed> {
        let feed = Arc::new(RevocationFeed {
            revoked: RwLock::new(Revoked::default()),
            last_heard: AtomicI64::new(0),
            connected: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            cursor: AtomicI64::new(-1),
            max_staleness: self.max_staleness,
            fail_mode: self.fail_mode,
        });
        let http = self.http.unwrap_or_else(|| {
            reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().unwrap_or_default()
        });
        let url = format!("{}/v1/revocations", self.issuer.trim_end_matches('/'));
        tokio::spawn(follow(Arc::downgrade(&feed), http, url, self.token));
        feed
    }
}

impl RevocationFeed {
    /// Follows `{issuer}/v1/revocations` with `token` (an admin or resource-server secret).
    pub fn builder(issuer: impl Into<String>, token: impl Into<String>) -> RevocationFeedBuilder {
        RevocationFeedBuilder {
            issuer: issuer.into(),
            token: token.into(),
            max_staleness: DEFAULT_MAX_STALENESS,
            fail_mode: FailMode::Closed,
            http: None,
        }
    }

    /// Counters for logs and metrics.
    pub fn stats(&self) -> FeedStats {
        let last = self.last_heard.load(Ordering::Relaxed);
        let entries = self.revoked.read().map(|r| r.sessions.len() + r.users.len()).unwrap_or(0);
        FeedStats {
            connected: self.connected.load(Ordering::Relaxed),
            silent_for_ms: (last > 0).then(|| now_ms() - last),
            failures: self.failures.load(Ordering::Relaxed),
            entries,
            cursor: self.cursor.load(Ordering::Relaxed),
        }
    }

    fn heard(&self) {
        self.last_heard.store(now_ms(), Ordering::Relaxed);
    }

    fn handle(&self, event: &str, data: &str) {
        match event {
            "snapshot" | "catchup" => {
                let Ok(batch) = serde_json::from_str::<Batch>(data) else { return };
                if let Ok(mut r) = self.revoked.write() {
                    if event == "snapshot" {
                        *r = Revoked::default();
                    }
                    for e in &batch.events {
                        r.apply(e);
                    }
                    r.prune(now_ms());
                }
                self.cursor.store(batch.cursor, Ordering::Relaxed);
            }
            "revocation" => {
                let Ok(e) = serde_json::from_str::<FeedEvent>(data) else { return };
                if let Ok(mut r) = self.revoked.write() {
                    r.apply(&e);
                }
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                    && let Some(c) = v["cursor"].as_i64()
                {
                    self.cursor.store(c, Ordering::Relaxed);
                }
            }
            "heartbeat" => {
                if let Ok(mut r) = self.revoked.write() {
                    r.prune(now_ms());
                }
            }
            _ => return,
        }
        self.heard();
    }
}

impl RevocationCheck for RevocationFeed {
    fn check(&self, claims: &AccessClaims, now: Millis) -> RevocationStatus {
        let last = self.last_heard.load(Ordering::Relaxed);
        if last == 0 || now - last > self.max_staleness.as_millis() as Millis {
            return match self.fail_mode {
                FailMode::Closed => RevocationStatus::Unavailable,
                FailMode::Open => RevocationStatus::Valid,
            };
        }
        let Ok(r) = self.revoked.read() else { return RevocationStatus::Unavailable };
        if r.sessions.get(&claims.sid).is_some_and(|until| *until >= now) {
            return RevocationStatus::Revoked;
        }
        if r.users.get(&claims.sub).is_some_and(|(min_ver, until)| claims.ver < *min_ver && *until >= now) {
            return RevocationStatus::Revoked;
        }
        RevocationStatus::Valid
    }
}

/// Reads the SSE stream, reconnecting with the last cursor after any failure.
async fn follow(feed: Weak<RevocationFeed>, http: reqwest::Client, url: String, token: String) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let Some(f) = feed.upgrade() else { return };
        let cursor = f.cursor.load(Ordering::Relaxed);
        drop(f);
        let mut req = http.get(&url).bearer_auth(&token).header("accept", "text/event-stream");
        if cursor >= 0 {
            req = req.query(&[("after", cursor)]);
        }
        match req.send().await {
            Ok(mut res) if res.status().is_success() => {
                backoff = Duration::from_millis(250);
                if let Some(f) = feed.upgrade() {
                    f.connected.store(true, Ordering::Relaxed);
                }
                let mut buf = String::new();
                loop {
                    // A heartbeat comes every second; three missing ones mean the stream is dead.
                    let chunk = tokio::time::timeout(Duration::from_secs(3), res.chunk()).await;
                    let Ok(Ok(Some(bytes))) = chunk else { break };
                    buf.push_str(&String::from_utf8_lossy(&bytes));
                    let Some(f) = feed.upgrade() else { return };
                    while let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        let (mut event, mut data) = ("message".to_owned(), String::new());
                        for line in block.lines() {
                            if let Some(e) = line.strip_prefix("event:") {
                                event = e.trim().to_owned();
                            } else if let Some(d) = line.strip_prefix("data:") {
                                data.push_str(d.trim_start());
                            }
                        }
                        f.handle(&event, &data);
                    }
                }
                if let Some(f) = feed.upgrade() {
                    f.connected.store(false, Ordering::Relaxed);
                    f.failures.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(%url, "revocation feed stream ended; reconnecting");
            }
            Ok(res) => {
                if let Some(f) = feed.upgrade() {
                    f.failures.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(%url, status = %res.status(), "revocation feed refused the connection");
            }
            Err(e) => {
                if let Some(f) = feed.upgrade() {
                    f.failures.fetch_add(1, Ordering::Relaxed);
                }
                tracing::warn!(%url, error = %e, "revocation feed unreachable");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sid: &str, sub: &str, ver: i64) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: sub.into(),
            aud: "a".into(),
            iat: 0,
            exp: 0,
            jti: "j".into(),
            sid: sid.into(),
            client_id: "c".into(),
            ver,
            auth_time: 0,
            softexp: None,
            r#gen: None,
            renew_until: None,
        }
    }

    fn feed(mode: FailMode) -> RevocationFeed {
        RevocationFeed {
            revoked: RwLock::new(Revoked::default()),
            last_heard: AtomicI64::new(0),
            connected: AtomicBool::new(false),
            failures: AtomicU64::new(0),
            cursor: AtomicI64::new(-1),
            max_staleness: Duration::from_secs(10),
            fail_mode: mode,
        }
    }

    #[test]
    fn events_revoke_until_their_until_and_snapshots_replace() {
        let f = feed(FailMode::Closed);
        let now = now_ms();
        assert_eq!(f.check(&claims("s1", "u1", 0), now), RevocationStatus::Unavailable, "never heard: fail closed");
        let until = now / 1000 + 60;
        f.handle(
            "snapshot",
            &format!(r#"{{"cursor":3,"events":[{{"kind":"session","sid":"s1","until":{until},"cursor":2}}]}}"#),
        );
        assert_eq!(f.check(&claims("s1", "u1", 0), now), RevocationStatus::Revoked);
        assert_eq!(f.check(&claims("s2", "u1", 0), now), RevocationStatus::Valid);
        f.handle("revocation", &format!(r#"{{"kind":"user","sub":"u1","min_ver":2,"until":{until},"cursor":4}}"#));
        assert_eq!(f.check(&claims("s2", "u1", 1), now), RevocationStatus::Revoked);
        assert_eq!(f.check(&claims("s2", "u1", 2), now), RevocationStatus::Valid, "a newer version is fine");
        assert_eq!(f.stats().cursor, 4);
        // After `until` an entry no longer matters (every token it covers has expired).
        let past = now / 1000 - 1;
        f.handle("revocation", &format!(r#"{{"kind":"session","sid":"s3","until":{past},"cursor":5}}"#));
        assert_eq!(f.check(&claims("s3", "u9", 0), now), RevocationStatus::Valid);
        f.handle("snapshot", r#"{"cursor":9,"events":[]}"#);
        assert_eq!(f.stats().entries, 0);
        assert_eq!(f.check(&claims("s1", "u1", 0), now), RevocationStatus::Valid);
    }

    #[test]
    fn staleness_fails_closed_or_open() {
        let now = now_ms();
        for (mode, want) in
            [(FailMode::Closed, RevocationStatus::Unavailable), (FailMode::Open, RevocationStatus::Valid)]
        {
            let f = feed(mode);
            f.handle("heartbeat", r#"{"cursor":0}"#);
            assert_eq!(f.check(&claims("s", "u", 0), now), RevocationStatus::Valid);
            assert_eq!(f.check(&claims("s", "u", 0), now + 10_001), want);
        }
    }
}
