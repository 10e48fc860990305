//! A load generator for the refresh path: C connections, each with its own session, rotating its
//! refresh token as fast as the server answers, optionally while N clients flood logins.
//!
//! ```text
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080 --user alice --password '…' \
//!     [--connections 16] [--seconds 10] [--login-flood 0] [--seed-db sqlite://prolong.db --seed 1000000]
//! ```
//! It prints refreshes/s and latency percentiles. Use `taskset` to give server and generator one
//! core each (see docs/benchmarks.md).

// Test and benchmark code may panic on a broken fixture; the libraries may not.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    user: String,
    password: String,
    connections: usize,
    seconds: u64,
    login_flood: usize,
    seed_db: Option<String>,
    seed: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        user: "alice".into(),
        password: String::new(),
        connections: 16,
        seconds: 10,
        login_flood: 0,
        seed_db: None,
        seed: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = value()?,
            "--user" => a.user = value()?,
            "--password" => a.password = value()?,
            "--connections" => a.connections = value()?.parse().map_err(|e| format!("--connections: {e}"))?,
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--login-flood" => a.login_flood = value()?.parse().map_err(|e| format!("--login-flood: {e}"))?,
            "--seed-db" => a.seed_db = Some(value()?),
            "--seed" => a.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(addr: &str) -> Result<Sender, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post_form(sender: &mut Sender, host: &str, body: String) -> Result<(u16, serde_json::Value), String> {
    let req = Request::post("/oauth/token")
        .header("host", host)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)))
}

fn login_body(a: &Args) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "password")
        .append_pair("username", &a.user)
        .append_pair("password", &a.password)
        .finish()
}

async fn seed(url: &str, n: u64) -> Result<(), String> {
    use prolong_core::SessionState;
    let store = prolong_store::connect(url).await.map_err(|e| e.to_string())?;
    let user = prolong_store::User {
        id: "seed".repeat(8),
        username: "loadgen-seed".into(),
        password_hash: String::new(),
        token_version: 0,
        created_at: 0,
    };
    let _ = store.create_user(&user).await;
    let now = prolong_server::service::now_ms();
    let started = Instant::now();
    for i in 0..n {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&i.to_be_bytes());
        id[8..].copy_from_slice(&prolong_core::keys::random_bytes::<8>().map_err(|e| e.to_string())?);
        let s = prolong_store::Session {
            id,
            user_id: user.id.clone(),
            client_id: "prolong".into(),
            salt: [0; 32],
            mac_kid: [0; 8],
            state: SessionState {
                generation: 0,
                rotated_at: now,
                last_active: now,
                auth_time: now,
                token_version: 0,
                ended: None,
            },
            ended_at: None,
            user_agent: None,
        };
        store.create_session(&s).await.map_err(|e| e.to_string())?;
    }
    store.close().await;
    eprintln!("seeded {n} sessions in {:?}", started.elapsed());
    Ok(())
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let a = Arc::new(args()?);
    if let (Some(db), true) = (&a.seed_db, a.seed > 0) {
        seed(db, a.seed).await?;
    }
    let host = a.url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicU64::new(0));

    // One session per connection, logged in before the clock starts.
    let mut workers = Vec::new();
    for _ in 0..a.connections {
        let mut sender = connect(&host).await?;
        let (status, body) = post_form(&mut sender, &host, login_body(&a)).await?;
        if status != 200 {
            return Err(format!("login failed: {status} {body}"));
        }
        let rt = body["refresh_token"].as_str().ok_or("no refresh_token")?.to_owned();
        workers.push((sender, rt));
    }
    let mut flood = Vec::new();
    for _ in 0..a.login_flood {
        let (a, host, stop, logins) = (a.clone(), host.clone(), stop.clone(), logins.clone());
        flood.push(tokio::spawn(async move {
            let Ok(mut sender) = connect(&host).await else { return };
            while !stop.load(Ordering::Relaxed) {
                if let Ok((200, _)) = post_form(&mut sender, &host, login_body(&a)).await {
                    logins.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for (mut sender, mut rt) in workers {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(200_000);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let body = format!("grant_type=refresh_token&refresh_token={rt}");
                let t = Instant::now();
                match post_form(&mut sender, &host, body).await {
                    Ok((200, v)) => {
                        lat.push(t.elapsed().as_micros() as u64);
                        if let Some(next) = v["refresh_token"].as_str() {
                            rt = next.to_owned();
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.map_err(|e| e.to_string())?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for f in flood {
        let _ = f.await;
    }
    all.sort_unstable();
    println!(
        "connections={} login_flood={} refreshes={} errors={} rate={:.0}/s p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms logins={:.0}/s",
        a.connections,
        a.login_flood,
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
        logins.load(Ordering::Relaxed) as f64 / elapsed,
    );
    Ok(())
}
