//! `TestApp`: the real `prolong` binary on an ephemeral port against a fresh database, driven over
//! HTTP. Set `TEST_LOG=1` to see the server's log.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const PASSWORD: &str = "correct horse battery staple";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_prolong")
}

/// A fresh database: a temporary SQLite file or a new PostgreSQL database.
pub struct Db {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn pg_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl Db {
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("prolong.db").display());
        Db { url, pg_name: None, _dir: Some(dir) }
    }

    pub async fn postgres() -> Db {
        let admin = pg_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is required for these tests: {e}"));
        let suffix: String =
            prolong_core::keys::random_bytes::<6>().expect("rng").iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("prolong_api_{suffix}");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("create database");
        let base = &admin[..admin.rfind('/').expect("database in url")];
        Db { url: format!("{base}/{name}"), pg_name: Some(name), _dir: None }
    }

    pub async fn new(postgres: bool) -> Db {
        if postgres { Db::postgres().await } else { Db::sqlite() }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Best effort; runs outside the test's runtime.
            let admin = pg_admin_url();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    }
                });
            })
            .join();
        }
    }
}

/// Runs the CLI against a database and returns (status, stdout, stderr).
pub async fn cli(db_url: &str, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--database-url").arg(db_url);
    clean_env(&mut cmd, env);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn prolong");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
    }
    let out = child.wait_with_output().await.expect("cli output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn clean_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for (k, _) in std::env::vars() {
        if k.starts_with("PROLONG_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info").env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// Spawns `cmd`, collects its stderr into a shared log (echoed with `TEST_LOG=1`), and waits for
/// its `listening on http://…` line; returns the child, that base URL and the log.
pub async fn spawn_until_listening(mut cmd: Command, tag: &'static str) -> (Child, String, Arc<Mutex<String>>) {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {tag}: {e}"));
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let sink = log.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            if std::env::var_os("TEST_LOG").is_some() {
                eprintln!("[{tag}] {line}");
            }
            if let Some(i) = line.find("listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
            }
            if let Ok(mut l) = sink.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
    let base = match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(base)) => base,
        _ => panic!("{tag} did not start:\n{}", log.lock().map(|l| l.clone()).unwrap_or_default()),
    };
    (child, base, log)
}

/// Waits up to ten seconds for `needle` to show up in a child's captured log. A line the child
/// writes before it answers a request can reach the test after the answer: the pipe is read by
/// another task.
pub async fn logged(log: &Mutex<String>, needle: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if log.lock().is_ok_and(|l| l.contains(needle)) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub db_url: String,
    pub env: Vec<(String, String)>,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl TestApp {
    /// Starts a server on `db` with `PROLONG_*` settings from `env`, and adds the user `alice`.
    pub async fn start(db: &Db, env: &[(&str, &str)]) -> TestApp {
        let app = TestApp::start_bare(db, env).await;
        app.add_user("alice", PASSWORD).await;
        app
    }

    /// Starts a server without adding users.
    pub async fn start_bare(db: &Db, env: &[(&str, &str)]) -> TestApp {
        let mut cmd = Command::new(bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url]);
        clean_env(&mut cmd, env);
        let (child, base, log) = spawn_until_listening(cmd, "server").await;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
        TestApp {
            base,
            http,
            db_url: db.url.clone(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child,
            log,
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether the server logs `needle` within a few seconds; see [`logged`].
    pub async fn logged(&self, needle: &str) -> bool {
        logged(&self.log, needle).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cli(&self.db_url, &env, args, stdin).await
    }

    pub async fn add_user(&self, name: &str, password: &str) {
        let (code, _, err) = self.cli(&["user", "add", name, "--password-stdin"], Some(&format!("{password}\n"))).await;
        assert_eq!(code, 0, "user add failed: {err}");
    }

    /// POSTs a form to a path and returns status and JSON body (Null when the body is empty).
    pub async fn form(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self.http.post(self.url(path)).form(fields).send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn login(&self, user: &str, password: &str) -> Value {
        let (status, body) =
            self.form("/oauth/token", &[("grant_type", "password"), ("username", user), ("password", password)]).await;
        assert_eq!(status, StatusCode::OK, "login failed: {body}");
        body
    }

    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        self.form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await
    }

    pub async fn me(&self, access_token: &str) -> (StatusCode, Value, Option<String>) {
        let r = self.http.get(self.url("/v1/me")).bearer_auth(access_token).send().await.expect("request");
        let status = r.status();
        let challenge = r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);
        (status, r.json().await.unwrap_or(Value::Null), challenge)
    }

    /// Kills the server with SIGKILL: no shutdown, no last checkpoint, as in a crash.
    pub async fn crash(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    }

    /// Sends SIGTERM and returns the exit code.
    pub async fn terminate(mut self) -> Option<i32> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.ok()?.ok()?;
        status.code()
    }
}

pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Decodes a JWT's payload without verifying it (for inspecting claims in tests).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

/// Decodes a JWT's header.
pub fn header(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}
