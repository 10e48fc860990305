//! A client for Prolong that keeps its user signed in while they are active.
//!
//! [`Client`] signs in, holds the tokens, refreshes `lead` seconds (plus random jitter) before the
//! access token's `exp`, lets concurrent callers share one refresh (single-flight), reports the
//! user's idle time so the server can sign out abandoned sessions, and wraps HTTP calls: it adds
//! the Bearer header and, on `token_expired`, refreshes once and retries once. When the server
//! ends the session the client reports a typed [`SignedOut`] with the server's `reason` and stops:
//! no retry loop.
//!
//! The one design decision: the refresh token is rotated by the server on every use, so exactly one
//! refresh may be in flight at a time; everything that needs a fresh token waits on that one.

#![deny(missing_docs)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// What went wrong.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
}

/// The kinds of [`Error`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration or a token cannot work (lead ≥ lifetime, no `exp`, clock skew, bad URL).
    Config(String),
    /// The server signed the user out (or refused the password); the reason is the server's.
    SignedOut(String),
    /// No session: call [`Client::login`] first.
    NotSignedIn,
    /// The server could not be reached or answered something unexpected.
    Transport(String),
}

impl Error {
    /// The kind of error.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    fn new(kind: ErrorKind) -> Self {
        Error { kind }
    }

    fn config(msg: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config(msg.into()))
    }

    fn transport(e: impl std::fmt::Display) -> Self {
        Error::new(ErrorKind::Transport(e.to_string()))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ErrorKind::Config(m) => write!(f, "misconfiguration: {m}"),
            ErrorKind::SignedOut(r) => write!(f, "signed out: {r}"),
            ErrorKind::NotSignedIn => f.write_str("not signed in"),
            ErrorKind::Transport(m) => write!(f, "transport: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The session ended; `reason` is the server's (`expired_idle`, `reuse_detected`, `revoked`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOut {
    /// The server's `reason` (or `logout` when the user logged out).
    pub reason: String,
}

/// How the client behaves. Defaults: refresh 60 s before expiry plus up to 30 s of jitter, both
/// clamped for short-lived tokens; clock skew up to 120 s tolerated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The Prolong issuer URL, e.g. `https://auth.example.com`.
    pub base_url: String,
    /// The `client_id` sent with token requests.
    pub client_id: Option<String>,
    /// Refresh this long before `exp`. `None` picks 60 s, clamped to a third of the lifetime; an
    /// explicit value must be shorter than the token lifetime.
    pub lead: Option<Duration>,
    /// Up to this much random extra lead, so many clients do not refresh at once (clamped to a
    /// sixth of the lifetime).
    pub jitter: Duration,
    /// The largest difference between the client's clock and the token's `iat` accepted.
    pub max_clock_skew: Duration,
}

impl Config {
    /// Defaults for a server at `base_url`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Config {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            client_id: None,
            lead: None,
            jitter: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: String,
    exp: i64,
    /// Bumped on every new token set, so waiters can tell a refresh happened while they queued.
    serial: u64,
}

struct Inner {
    cfg: Config,
    http: reqwest::Client,
    tokens: Mutex<Option<Tokens>>,
    refresh_gate: tokio::sync::Mutex<()>,
    last_activity_ms: std::sync::atomic::AtomicI64,
    signed_out: watch::Sender<Option<SignedOut>>,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// A signed-in user's session, shared cheaply by cloning.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<i64>,
    iat: Option<i64>,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(now_ms());
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn claims_of(token: &str) -> Result<Claims, Error> {
    let payload = token.split('.').nth(1).ok_or_else(|| Error::config("the access token is not a JWT"))?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| Error::config("the access token is not a JWT"))?;
    serde_json::from_slice(&bytes).map_err(|_| Error::config("the access token's claims are not JSON"))
}

/// When to refresh a token issued at `iat` expiring at `exp` (seconds), given the config: the
/// delay from `now_ms`, or a misconfiguration.
fn schedule(cfg: &Config, iat: i64, exp: i64, now_ms: i64, jitter_fraction: f64) -> Result<Duration, Error> {
    let lifetime = Duration::from_secs((exp - iat).max(0) as u64);
    if lifetime.is_zero() {
        return Err(Error::config("the access token has no lifetime (exp ≤ iat)"));
    }
    let lead = match cfg.lead {
        Some(l) if l >= lifetime => {
            return Err(Error::config(format!(
                "lead {}s is not shorter than the access token lifetime {}s",
                l.as_secs_f64(),
                lifetime.as_secs_f64()
            )));
        }
        Some(l) => l,
        None => Duration::from_secs(60).min(lifetime / 3),
    };
    let jitter = cfg.jitter.min(lifetime / 6).mul_f64(jitter_fraction.clamp(0.0, 1.0));
    let at_ms = exp * 1000 - (lead + jitter).as_millis() as i64;
    Ok(Duration::from_millis((at_ms - now_ms).max(0) as u64))
}

impl Client {
    /// A client for the server in `cfg`; nothing is sent yet.
    pub fn new(cfg: Config) -> Result<Client, Error> {
        if !(cfg.base_url.starts_with("http://") || cfg.base_url.starts_with("https://")) {
            return Err(Error::config(format!("base_url {:?} must be an http(s) URL", cfg.base_url)));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(Error::transport)?;
        let (signed_out, _) = watch::channel(None);
        Ok(Client {
            inner: Arc::new(Inner {
                cfg,
                http,
                tokens: Mutex::new(None),
                refresh_gate: tokio::sync::Mutex::new(()),
                last_activity_ms: std::sync::atomic::AtomicI64::new(now_ms()),
                signed_out,
                timer: Mutex::new(None),
            }),
        })
    }

    /// Signs in with a password and starts refreshing automatically.
    pub async fn login(&self, username: &str, password: &str) -> Result<(), Error> {
        let mut form = vec![("grant_type", "password"), ("username", username), ("password", password)];
        if let Some(c) = &self.inner.cfg.client_id {
            form.push(("client_id", c));
        }
        let tokens = self.token_request(&form).await?;
        self.inner.signed_out.send_replace(None);
        self.touch();
        self.install(tokens)
    }

    /// Records user activity now (reported to the server as `idle` at the next refresh).
    pub fn touch(&self) {
        self.inner.last_activity_ms.store(now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// A receiver that turns `Some` when the session ends.
    pub fn signed_out(&self) -> watch::Receiver<Option<SignedOut>> {
        self.inner.signed_out.subscribe()
    }

    /// The current access token, refreshed first if it has expired.
    pub async fn access_token(&self) -> Result<String, Error> {
        self.ensure_signed_in()?;
        let (access, exp, serial) = self.current()?;
        if now_ms() >= exp * 1000 {
            self.refresh_after(serial).await?;
            return Ok(self.current()?.0);
        }
        Ok(access)
    }

    /// Refreshes now (single-flight: concurrent callers share one request).
    pub async fn refresh(&self) -> Result<(), Error> {
        let serial = self.current()?.2;
        self.refresh_after(serial).await
    }

    /// Sends a request built by `build` with the Bearer token; on `token_expired` refreshes once
    /// and retries once. Other responses, 401s included, are returned as they are.
    pub async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let token = self.access_token().await?;
        let serial = self.current()?.2;
        let res = build(&self.inner.http).bearer_auth(&token).send().await.map_err(Error::transport)?;
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        let expired = res
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("invalid_token"));
        let body: Option<ErrorBody> = res.json().await.ok();
        if !(expired && body.as_ref().and_then(|b| b.error.as_deref()) == Some("token_expired")) {
            // The server no longer accepts this session's tokens: signed out, no retry.
            let reason = body.and_then(|b| b.error).unwrap_or_else(|| "invalid_token".into());
            self.stop(SignedOut { reason: reason.clone() });
            return Err(Error::new(ErrorKind::SignedOut(reason)));
        }
        self.refresh_after(serial).await?;
        let token = self.current()?.0;
        build(&self.inner.http).bearer_auth(&token).send().await.map_err(Error::transport)
    }

    /// `GET base_url + path` through [`Client::send`].
    pub async fn get(&self, path: &str) -> Result<reqwest::Response, Error> {
        let url = format!("{}{}", self.inner.cfg.base_url, path);
        self.send(|http| http.get(&url)).await
    }

    /// Ends the session on the server and stops refreshing.
    pub async fn logout(&self) -> Result<(), Error> {
        let refresh = self.inner.tokens.lock().ok().and_then(|t| t.as_ref().map(|t| t.refresh.clone()));
        self.stop(SignedOut { reason: "logout".into() });
        if let Some(rt) = refresh {
            let url = format!("{}/oauth/revoke", self.inner.cfg.base_url);
            self.inner.http.post(url).form(&[("token", rt)]).send().await.map_err(Error::transport)?;
        }
        Ok(())
    }

    fn ensure_signed_in(&self) -> Result<(), Error> {
        if let Some(s) = self.inner.signed_out.borrow().as_ref() {
            return Err(Error::new(ErrorKind::SignedOut(s.reason.clone())));
        }
        Ok(())
    }

    fn current(&self) -> Result<(String, i64, u64), Error> {
        let guard = self.inner.tokens.lock().map_err(|_| Error::new(ErrorKind::NotSignedIn))?;
        let t = guard.as_ref().ok_or(Error::new(ErrorKind::NotSignedIn))?;
        Ok((t.access.clone(), t.exp, t.serial))
    }

    async fn refresh_after(&self, seen_serial: u64) -> Result<(), Error> {
        let _gate = self.inner.refresh_gate.lock().await;
        self.ensure_signed_in()?;
        let (refresh, serial) = {
            let guard = self.inner.tokens.lock().map_err(|_| Error::new(ErrorKind::NotSignedIn))?;
            let t = guard.as_ref().ok_or(Error::new(ErrorKind::NotSignedIn))?;
            (t.refresh.clone(), t.serial)
        };
        if serial != seen_serial {
            return Ok(()); // Someone refreshed while we waited.
        }
        let idle = ((now_ms() - self.inner.last_activity_ms.load(std::sync::atomic::Ordering::Relaxed)) / 1000).max(0);
        let idle = idle.to_string();
        let mut form =
            vec![("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("idle", idle.as_str())];
        if let Some(c) = &self.inner.cfg.client_id {
            form.push(("client_id", c));
        }
        match self.token_request(&form).await {
            Ok(tokens) => self.install(tokens),
            Err(e) => {
                if let ErrorKind::SignedOut(reason) = e.kind() {
                    self.stop(SignedOut { reason: reason.clone() });
                }
                Err(e)
            }
        }
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenResponse, Error> {
        let url = format!("{}/oauth/token", self.inner.cfg.base_url);
        let res = self.inner.http.post(url).form(form).send().await.map_err(Error::transport)?;
        let status = res.status();
        if status.is_success() {
            return res.json().await.map_err(Error::transport);
        }
        let body: Option<ErrorBody> = res.json().await.ok();
        match body {
            Some(ErrorBody { error: Some(e), reason }) if e == "invalid_grant" => {
                Err(Error::new(ErrorKind::SignedOut(reason.unwrap_or(e))))
            }
            Some(ErrorBody { error: Some(e), .. }) => Err(Error::transport(format!("{status}: {e}"))),
            _ => Err(Error::transport(format!("unexpected status {status}"))),
        }
    }

    fn install(&self, t: TokenResponse) -> Result<(), Error> {
        let refresh = t.refresh_token.ok_or_else(|| {
            Error::config("the server sent no refresh token (renew mode is not supported by this client)")
        })?;
        let claims = claims_of(&t.access_token)?;
        let exp = claims.exp.ok_or_else(|| Error::config("the access token has no exp"))?;
        let iat = claims.iat.unwrap_or(exp);
        let now = now_ms();
        let skew = (now / 1000 - iat).unsigned_abs();
        if skew > self.inner.cfg.max_clock_skew.as_secs() {
            return Err(Error::config(format!(
                "the client clock differs from the server's by about {skew}s (more than {}s): fix the clock",
                self.inner.cfg.max_clock_skew.as_secs()
            )));
        }
        let delay = schedule(&self.inner.cfg, iat, exp, now, random_fraction())?;
        {
            let mut guard = self.inner.tokens.lock().map_err(|_| Error::new(ErrorKind::NotSignedIn))?;
            let serial = guard.as_ref().map_or(0, |t| t.serial + 1);
            *guard = Some(Tokens { access: t.access_token, refresh, exp, serial });
        }
        let me = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(inner) = me.upgrade() else { return };
            let client = Client { inner };
            if let Ok((_, _, serial)) = client.current()
                && let Err(e) = client.refresh_after(serial).await
            {
                tracing::debug!(error = %e, "scheduled refresh failed");
            }
        });
        if let Ok(mut timer) = self.inner.timer.lock()
            && let Some(old) = timer.replace(task)
        {
            old.abort();
        }
        Ok(())
    }

    fn stop(&self, why: SignedOut) {
        if let Ok(mut timer) = self.inner.timer.lock()
            && let Some(t) = timer.take()
        {
            t.abort();
        }
        if self.inner.signed_out.borrow().is_none() {
            self.inner.signed_out.send_replace(Some(why));
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut timer) = self.timer.lock()
            && let Some(t) = timer.take()
        {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(lead: Option<u64>) -> Config {
        Config { lead: lead.map(Duration::from_secs), ..Config::new("http://x") }
    }

    #[test]
    fn default_lead_is_clamped_for_short_tokens() {
        // 15-minute token: 60 s lead, jitter up to 30 s.
        assert_eq!(schedule(&cfg(None), 0, 900, 0, 0.0).expect("ok"), Duration::from_secs(840));
        assert_eq!(schedule(&cfg(None), 0, 900, 0, 1.0).expect("ok"), Duration::from_secs(810));
        // 3-second token: a third of the lifetime, jitter at most half a second.
        assert_eq!(schedule(&cfg(None), 0, 3, 0, 0.0).expect("ok"), Duration::from_secs(2));
        assert_eq!(schedule(&cfg(None), 0, 3, 0, 1.0).expect("ok"), Duration::from_millis(1_500));
        // Already late: refresh at once.
        assert_eq!(schedule(&cfg(None), 0, 3, 10_000, 0.0).expect("ok"), Duration::ZERO);
    }

    fn jwt(claims: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims))
    }

    #[tokio::test]
    async fn tokens_without_exp_or_with_a_skewed_clock_are_refused() {
        let client = Client::new(Config::new("http://127.0.0.1:1")).expect("client");
        let now = now_ms() / 1000;
        let install =
            |access: String| client.install(TokenResponse { access_token: access, refresh_token: Some("r".into()) });
        let e = install(jwt(&format!(r#"{{"iat":{now}}}"#))).expect_err("no exp");
        assert!(e.to_string().contains("has no exp"), "{e}");
        let skewed = now - 3_600;
        let e = install(jwt(&format!(r#"{{"iat":{skewed},"exp":{}}}"#, skewed + 900))).expect_err("skew");
        assert!(e.to_string().contains("clock differs from the server's by about 3600s"), "{e}");
        install(jwt(&format!(r#"{{"iat":{now},"exp":{}}}"#, now + 900))).expect("a good token");
        let e = client.install(TokenResponse { access_token: jwt("{}"), refresh_token: None }).expect_err("renew mode");
        assert!(e.to_string().contains("no refresh token"), "{e}");
    }

    #[test]
    fn misconfiguration_is_descriptive() {
        let e = schedule(&cfg(Some(60)), 0, 30, 0, 0.0).expect_err("lead too long");
        assert!(e.to_string().contains("lead 60s is not shorter than the access token lifetime 30s"), "{e}");
        assert!(schedule(&cfg(None), 5, 5, 0, 0.0).is_err());
        assert!(claims_of("not-a-jwt").is_err());
        assert!(Client::new(Config::new("ftp://x")).is_err());
    }
}
