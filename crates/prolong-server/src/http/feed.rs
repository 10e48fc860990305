//! The revocation feed (CONTRACT §6) for strict resource servers: `GET /v1/revocations`.
//!
//! Events live in the database (written in the same transaction as the revocation), so every
//! replica serves the same feed. One pump task per server polls the newest `seq` every
//! [`POLL`] and wakes the waiting connections; each connection then reads what is new after its
//! own cursor. Two transports share one format:
//!
//! - Server-Sent Events (`Accept: text/event-stream`): a `snapshot` (or `catchup`) event first,
//!   then one `revocation` event per revocation (`id:` is its cursor), and a `heartbeat` event at
//!   least every second;
//! - long-poll (any other `Accept`), with `wait=SECONDS` (at most 30): one JSON object
//!   `{"cursor", "snapshot", "events"}`, answered as soon as there is something after the cursor.
//!
//! An event is `{"kind":"session","sid","until","cursor"}` or
//! `{"kind":"user","sub","min_ver","until","cursor"}`; `until` is the latest `exp` (Unix seconds) an
//! affected access token can have. A missing cursor, or one ahead of the feed (another
//! database), gets a snapshot of every revocation still inside its `until`.

use super::App;
use super::error::ApiError;
use super::guard::ResourceServer;
use crate::service::{hex, now_ms};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use prolong_store::{Revocation, RevocationKind, Store};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the pump looks for new events.
pub const POLL: Duration = Duration::from_millis(200);
/// Heartbeat interval of the SSE transport: heartbeats go out twice a second, so the gap between
/// two messages stays under the contract's second even when a wake-up finds nothing new.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// Events read per query; a stream that reads a full batch reads on before waiting for news.
const BATCH_LEN: usize = 10_000;
const BATCH: i64 = BATCH_LEN as i64;

/// Starts the pump; the receiver tells of the newest `seq`.
pub fn pump(store: Arc<dyn Store>) -> (watch::Receiver<i64>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(0);
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match store.latest_revocation().await {
                Ok(seq) => {
                    tx.send_if_modified(|v| {
                        let changed = *v != seq;
                        *v = seq;
                        changed
                    });
                }
                Err(e) => tracing::warn!(error = %e, "revocation feed: reading the newest event failed"),
            }
        }
    });
    (rx, task)
}

/// One event as JSON.
pub fn event_json(r: &Revocation) -> Value {
    let until = (r.until + 999) / 1000;
    match &r.kind {
        RevocationKind::Session(id) => json!({"kind":"session","sid":hex(id),"until":until,"cursor":r.seq}),
        RevocationKind::User { user_id, min_version } => {
            json!({"kind":"user","sub":user_id,"min_ver":min_version,"until":until,"cursor":r.seq})
        }
    }
}

struct Query {
    after: Option<i64>,
    wait: Duration,
}

fn parse_query(uri: &Uri) -> Result<Query, ApiError> {
    let mut q = Query { after: None, wait: Duration::ZERO };
    for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "after" if v.is_empty() => {}
            "after" => {
                q.after = Some(
                    v.parse().map_err(|_| ApiError::InvalidRequest("after must be a cursor from this feed".into()))?,
                )
            }
            "wait" => {
                let secs: u64 = v.parse().map_err(|_| ApiError::InvalidRequest("wait must be whole seconds".into()))?;
                q.wait = Duration::from_secs(secs.min(30));
            }
            _ => {}
        }
    }
    Ok(q)
}

/// A receiver of the pump's newest cursor that wakes only for what comes after this call (a clone
/// would also wake at once for every change since the server started).
fn news(app: &App) -> watch::Receiver<i64> {
    let mut rx = app.feed.clone();
    rx.mark_unchanged();
    rx
}

/// Where to start: (cursor, snapshot?).
async fn start(app: &App, after: Option<i64>) -> Result<(i64, bool), ApiError> {
    let latest = app.store.latest_revocation().await?;
    Ok(match after {
        Some(a) if a >= 0 && a <= latest => (a, false),
        _ => (0, true),
    })
}

/// `GET /v1/revocations`
pub async fn revocations(
    State(app): State<App>,
    _: ResourceServer,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let q = parse_query(&uri)?;
    let sse =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/event-stream"));
    let (cursor, snapshot) = start(&app, q.after).await?;
    if sse { Ok(stream(app, cursor, snapshot).await?) } else { long_poll(app, cursor, snapshot, q.wait).await }
}

async fn long_poll(app: App, cursor: i64, snapshot: bool, wait: Duration) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut rx = news(&app);
    loop {
        let events = app.store.revocations_after(cursor, now_ms(), BATCH).await?;
        if !events.is_empty() || snapshot || tokio::time::Instant::now() >= deadline {
            let latest = app.store.latest_revocation().await?;
            let next = events.last().map_or(if snapshot { latest } else { cursor }, |e| e.seq);
            let body = json!({
                "cursor": next,
                "snapshot": snapshot,
                "events": events.iter().map(event_json).collect::<Vec<_>>(),
            });
            let mut r = (StatusCode::OK, axum::Json(body)).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(r);
        }
        // Wake on a new event, at the deadline, or when the server stops.
        let mut stopping = app.stopping.clone();
        tokio::select! {
            _ = tokio::time::timeout_at(deadline, rx.changed()) => {}
            _ = stopping.wait_for(|s| *s) => return Err(ApiError::Unavailable),
        }
    }
}

struct StreamState {
    app: App,
    cursor: i64,
    rx: watch::Receiver<i64>,
    stopping: watch::Receiver<bool>,
    pending: VecDeque<Event>,
    /// The last query filled a whole batch: read on before waiting for news.
    more: bool,
}

async fn stream(app: App, cursor: i64, snapshot: bool) -> Result<Response, ApiError> {
    // The first event carries everything the client must know before live events.
    let events = app.store.revocations_after(cursor, now_ms(), BATCH).await?;
    let latest = app.store.latest_revocation().await?;
    let next = events.last().map_or(if snapshot { latest } else { cursor }, |e| e.seq);
    let first = Event::default()
        .event(if snapshot { "snapshot" } else { "catchup" })
        .id(next.to_string())
        .data(json!({"cursor": next, "events": events.iter().map(event_json).collect::<Vec<_>>()}).to_string());
    let rx = news(&app);
    let stopping = app.stopping.clone();
    let more = events.len() >= BATCH_LEN;
    let state = StreamState { app, cursor: next, rx, stopping, pending: VecDeque::from([first]), more };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(ev), st));
            }
            if *st.stopping.borrow() {
                return None;
            }
            let changed = if st.more {
                Ok(Ok(()))
            } else {
                tokio::select! {
                    c = tokio::time::timeout(HEARTBEAT, st.rx.changed()) => c,
                    _ = st.stopping.wait_for(|s| *s) => return None,
                }
            };
            match changed {
                Ok(Err(_)) => return None,
                Err(_) => {
                    let hb = Event::default().event("heartbeat").data(json!({"cursor": st.cursor}).to_string());
                    return Some((Ok(hb), st));
                }
                Ok(Ok(())) => match st.app.store.revocations_after(st.cursor, now_ms(), BATCH).await {
                    Ok(events) => {
                        st.more = events.len() >= BATCH_LEN;
                        for e in &events {
                            st.cursor = e.seq;
                            st.pending.push_back(
                                Event::default()
                                    .event("revocation")
                                    .id(e.seq.to_string())
                                    .data(event_json(e).to_string()),
                            );
                        }
                    }
                    Err(e) => {
                        // Say nothing rather than something wrong; the verifier's staleness
                        // check fails closed if this lasts.
                        tracing::warn!(error = %e, "revocation feed: reading events failed");
                        return None;
                    }
                },
            }
        }
    });
    let mut r = Sse::new(stream).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
