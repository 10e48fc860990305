//! The [`Verifier`]: configuration, the key set it verifies with, and the order of the checks.
//!
//! Design decision: the key set is swapped atomically (`arc-swap`) and read without locks; every
//! fetch — the periodic refresh, the first load, and the refetch when a token names an unknown key
//! id — goes through one async mutex that remembers when the last fetch started. A caller that
//! missed waits its turn; if a fetch started after its miss it just looks again, otherwise it
//! starts one, no sooner than the minimum interval after the previous one. So any number of tokens
//! with garbage key ids cause at most one fetch per interval, while a token signed with a genuinely
//! new key is accepted, at worst, one interval later.

use crate::cache::TokenCache;
use crate::claims::Claims;
use crate::error::{Error, ErrorKind};
use crate::jwks::{self, KeySet, Remote};
use crate::revocation::{RevocationCheck, RevocationStatus};
use arc_swap::ArcSwapOption;
use prolong_core::Millis;
use prolong_core::claims::AccessClaims;
use prolong_core::keys::{self, VerifyError, VerifyingKey};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default clock-skew allowance past `exp`: none, so an API rejects a token exactly when the issuer
/// says it ends.
pub const DEFAULT_LEEWAY: Duration = Duration::ZERO;
/// Default period of the background JWKS refresh.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// Default minimum time between two fetches of the JWKS (the bound on refetches caused by unknown
/// key ids).
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of verified tokens kept in the cache (each costs roughly the token's length plus
/// half a kilobyte, so about 12 MB at this default).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;
/// Default timeout of each request to the issuer.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest refresh interval the builder accepts.
const MAX_INTERVAL: Duration = Duration::from_secs(30 * 24 * 3600);
/// The longest a failing key fetch waits before it is retried in the background.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Configures a [`Verifier`]. Made by [`Verifier::builder`].
#[must_use]
pub struct VerifierBuilder {
    issuer: String,
    audience: String,
    leeway: Duration,
    refresh_interval: Duration,
    min_refetch_interval: Duration,
    cache_capacity: usize,
    http_timeout: Duration,
    http: Option<reqwest::Client>,
    revocation: Option<Arc<dyn RevocationCheck>>,
}

impl std::fmt::Debug for VerifierBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifierBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("refresh_interval", &self.refresh_interval)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("cache_capacity", &self.cache_capacity)
            .field("http_timeout", &self.http_timeout)
            .field("revocation", &self.revocation.is_some())
            .finish_non_exhaustive()
    }
}

impl VerifierBuilder {
    /// Tolerated clock skew: a token is accepted until `exp + leeway`. Default
    /// [`DEFAULT_LEEWAY`] (none).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// How often the JWKS is fetched again in the background. Default
    /// [`DEFAULT_REFRESH_INTERVAL`] (5 minutes).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// The least time between two fetches of the JWKS, whatever triggers them (an unknown key id,
    /// the first load while the issuer is unreachable). Default [`DEFAULT_MIN_REFETCH_INTERVAL`]
    /// (1 second).
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How many verified tokens to remember; `0` turns the cache off. Default
    /// [`DEFAULT_CACHE_CAPACITY`].
    pub fn cache_capacity(mut self, capacity: usize) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Timeout of each request to the issuer, when the verifier builds its own HTTP client.
    /// Default [`DEFAULT_HTTP_TIMEOUT`] (5 seconds).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// The HTTP client for discovery and the JWKS (for TLS settings, proxies, timeouts). By
    /// default the verifier builds one with [`http_timeout`](Self::http_timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// A revocation check consulted after every other check, on cache hits too: the hook for
    /// strict mode. None by default.
    pub fn revocation(mut self, check: Arc<dyn RevocationCheck>) -> Self {
        self.revocation = Some(check);
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.issuer.is_empty() {
            return Err(Error::config("the issuer must not be empty".into()));
        }
        if self.audience.is_empty() {
            return Err(Error::config("the audience must not be empty".into()));
        }
        if self.refresh_interval.is_zero() {
            return Err(Error::config("the JWKS refresh interval must be positive".into()));
        }
        // Bounded so that adding them to an `Instant` can never overflow.
        if self.refresh_interval > MAX_INTERVAL || self.min_refetch_interval > MAX_INTERVAL {
            return Err(Error::config("JWKS refresh intervals must be at most 30 days".into()));
        }
        Ok(())
    }

    fn inner(self, keys: Option<KeySet>, remote: Option<Remote>) -> Inner {
        Inner {
            leeway_ms: i64::try_from(self.leeway.as_millis()).unwrap_or(i64::MAX),
            issuer: self.issuer,
            audience: self.audience,
            keys: ArcSwapOption::new(keys.map(Arc::new)),
            cache: TokenCache::new(self.cache_capacity),
            revocation: self.revocation,
            remote: remote.map(|remote| Fetcher {
                remote,
                refresh_interval: self.refresh_interval,
                min_interval: self.min_refetch_interval,
                state: tokio::sync::Mutex::new(FetchState::default()),
            }),
            refresher: OnceLock::new(),
        }
    }

    /// Builds a verifier that finds its keys at the issuer: it fetches
    /// `{issuer}/.well-known/oauth-authorization-server`, checks that its `issuer` is exactly the
    /// configured one, fetches its `jwks_uri`, and keeps the key set fresh in a background task.
    ///
    /// Must be called inside a Tokio runtime. The first fetch is made before this returns; if the
    /// issuer cannot be reached, that is logged and the verifier is returned anyway, answering
    /// [`ErrorKind::Unavailable`] until the keys load (retried in the background and, rate-limited,
    /// on requests). Only an unusable configuration is an error.
    pub async fn build(self) -> Result<Verifier, Error> {
        self.validate()?;
        if !(self.issuer.starts_with("https://") || self.issuer.starts_with("http://")) {
            return Err(Error::config(format!("the issuer must be an http(s) URL, not {:?}", self.issuer)));
        }
        let http = match self.http.clone() {
            Some(http) => http,
            None => jwks::default_client(self.http_timeout).map_err(Error::config)?,
        };
        let remote = Remote::new(http, &self.issuer);
        let inner = Arc::new(self.inner(None, Some(remote)));
        if let Some(fetcher) = &inner.remote {
            let mut state = fetcher.state.lock().await;
            inner.fetch_locked(fetcher, &mut state).await;
        }
        let task = tokio::spawn(refresh_in_background(Arc::downgrade(&inner)));
        let _ = inner.refresher.set(task.abort_handle());
        Ok(Verifier { inner })
    }

    /// Builds a verifier with a fixed set of keys and no network access, for a service that
    /// verifies tokens in-process. A token naming a key id outside the set is invalid. Needs no
    /// runtime.
    pub fn build_with_keys(self, keys: impl IntoIterator<Item = VerifyingKey>) -> Result<Verifier, Error> {
        self.validate()?;
        let keys = KeySet::from_keys(keys);
        Ok(Verifier { inner: Arc::new(self.inner(Some(keys), None)) })
    }
}

/// Verifies Prolong access tokens. Cheap to clone (clones share keys, cache and background task);
/// the background refresh stops when the last clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("keys_loaded", &self.keys_loaded())
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuer: String,
    audience: String,
    leeway_ms: Millis,
    keys: ArcSwapOption<KeySet>,
    cache: TokenCache,
    revocation: Option<Arc<dyn RevocationCheck>>,
    remote: Option<Fetcher>,
    refresher: OnceLock<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.refresher.get() {
            task.abort();
        }
    }
}

struct Fetcher {
    remote: Remote,
    refresh_interval: Duration,
    min_interval: Duration,
    state: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    last_started: Option<Instant>,
    jwks_uri: Option<String>,
    failures: u32,
    #[cfg(test)]
    fetches: usize,
}

/// What a check without fetching concluded.
enum Checked {
    Done(Result<Claims, Error>),
    /// No key set has ever been loaded.
    NoKeys,
    /// The token names a key id the current set does not have.
    UnknownKid,
}

/// The current time as Unix milliseconds: the one clock read of a verification.
fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

impl Verifier {
    /// Starts configuring a verifier for tokens whose `iss` is exactly `issuer` and whose `aud` is
    /// exactly `audience` (Prolong's default audience is `prolong`).
    pub fn builder(issuer: impl Into<String>, audience: impl Into<String>) -> VerifierBuilder {
        VerifierBuilder {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway: DEFAULT_LEEWAY,
            refresh_interval: DEFAULT_REFRESH_INTERVAL,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            http: None,
            revocation: None,
        }
    }

    /// Verifies an access token: length (at most 8 KiB), signature with the algorithm pinned by
    /// the key its `kid` names, `typ: at+jwt`, `iss`, `aud`, then `exp` and `softexp` (a token is
    /// expired from its `exp` second on, plus the leeway), then the revocation check if any.
    ///
    /// A token already verified is answered from the cache, its expiry and revocation checked
    /// again. A key id the verifier does not know makes it fetch the JWKS again (rate-limited and
    /// shared with concurrent callers, so this may wait up to the minimum refetch interval).
    pub async fn verify(&self, token: &str) -> Result<Claims, Error> {
        let first = self.inner.check(token, now_ms());
        match (first, &self.inner.remote) {
            (Checked::NoKeys | Checked::UnknownKid, Some(fetcher)) => {
                self.inner.refetch_after_miss(fetcher, Instant::now()).await;
                self.inner.check(token, now_ms()).into_result()
            }
            (first, _) => first.into_result(),
        }
    }

    /// Verifies like [`verify`](Self::verify) but only with the keys already loaded: it never
    /// waits for a fetch, so an unknown key id is simply invalid. For synchronous code and for
    /// verifiers built with fixed keys, where it is exactly `verify`.
    pub fn try_verify(&self, token: &str) -> Result<Claims, Error> {
        self.inner.check(token, now_ms()).into_result()
    }

    /// Whether a key set has been loaded (possibly an empty one, as from an HS256 issuer, which
    /// publishes no keys). Useful for a readiness probe.
    pub fn keys_loaded(&self) -> bool {
        self.inner.keys.load().is_some()
    }

    /// The issuer tokens must name.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience tokens must name.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    #[cfg(test)]
    async fn fetches(&self) -> usize {
        match &self.inner.remote {
            Some(f) => f.state.lock().await.fetches,
            None => 0,
        }
    }
}

impl Checked {
    fn into_result(self) -> Result<Claims, Error> {
        match self {
            Checked::Done(result) => result,
            Checked::NoKeys => Err(Error::new(ErrorKind::Unavailable, "the issuer's signing keys could not be loaded")),
            Checked::UnknownKid => Err(Error::invalid("unknown key id")),
        }
    }
}

impl Inner {
    fn check(&self, token: &str, now: Millis) -> Checked {
        if token.is_empty() || token.len() > keys::MAX_TOKEN_LEN {
            return Checked::Done(Err(Error::invalid("token empty or longer than 8 KiB")));
        }
        let hash = self.cache.enabled().then(|| self.cache.hash(token));
        if let Some(hash) = hash
            && let Some((claims, deadline)) = self.cache.get(token, hash)
        {
            if now >= deadline {
                self.cache.remove_expired(token, hash, now);
                return Checked::Done(Err(Error::expired()));
            }
            return Checked::Done(self.revocation(claims, now));
        }
        let Some(kid) = keys::peek_kid(token) else {
            return Checked::Done(Err(Error::invalid("malformed token or no key id")));
        };
        let key_set = self.keys.load();
        let Some(key_set) = key_set.as_deref() else {
            return Checked::NoKeys;
        };
        let Some(key) = key_set.get(&kid) else {
            return Checked::UnknownKid;
        };
        let claims = match self.verify_with(key, token, now) {
            Ok(claims) => claims,
            Err(e) => return Checked::Done(Err(e)),
        };
        let claims = Claims::new(claims);
        if let Some(hash) = hash {
            let deadline = expiry_deadline(&claims, self.leeway_ms);
            self.cache.insert(token, hash, claims.clone(), deadline, now);
        }
        Checked::Done(self.revocation(claims, now))
    }

    /// The signature, `typ`, issuer, audience and expiry checks of a token not in the cache.
    fn verify_with(&self, key: &VerifyingKey, token: &str, now: Millis) -> Result<AccessClaims, Error> {
        let claims: AccessClaims =
            key.verify(token).map_err(|_| Error::invalid("bad signature, algorithm, typ or claims"))?;
        if claims.iss != self.issuer {
            return Err(Error::invalid("issuer mismatch"));
        }
        if claims.aud != self.audience {
            return Err(Error::invalid("audience mismatch"));
        }
        let now = now.saturating_sub(self.leeway_ms);
        match claims.check(&self.issuer, &self.audience, now) {
            Ok(()) => {}
            Err(VerifyError::Expired) => return Err(Error::expired()),
            Err(VerifyError::Invalid) => return Err(Error::invalid("issuer or audience mismatch")),
        }
        if claims.softexp.is_some_and(|softexp| now >= softexp.saturating_mul(1000)) {
            return Err(Error::expired());
        }
        Ok(claims)
    }

    fn revocation(&self, claims: Claims, now: Millis) -> Result<Claims, Error> {
        let Some(check) = &self.revocation else {
            return Ok(claims);
        };
        match check.check(&claims, now) {
            RevocationStatus::Valid => Ok(claims),
            RevocationStatus::Revoked => Err(Error::new(ErrorKind::Revoked, "token revoked")),
            RevocationStatus::Unavailable => {
                Err(Error::new(ErrorKind::Unavailable, "the revocation state is not current"))
            }
        }
    }

    /// Fetches the JWKS after a key lookup at `missed_at` failed, unless a fetch started since.
    async fn refetch_after_miss(&self, fetcher: &Fetcher, missed_at: Instant) {
        let mut state = fetcher.state.lock().await;
        if state.last_started.is_some_and(|t| t >= missed_at) {
            return;
        }
        if let Some(last) = state.last_started {
            tokio::time::sleep_until((last + fetcher.min_interval).into()).await;
        }
        self.fetch_locked(fetcher, &mut state).await;
    }

    /// Fetches and installs a key set; the caller holds the fetch lock.
    async fn fetch_locked(&self, fetcher: &Fetcher, state: &mut FetchState) {
        state.last_started = Some(Instant::now());
        #[cfg(test)]
        {
            state.fetches += 1;
        }
        match fetcher.remote.fetch(&mut state.jwks_uri).await {
            Ok(set) => {
                if state.failures > 0 {
                    tracing::info!(issuer = %fetcher.remote.issuer, "the issuer's keys are reachable again");
                }
                state.failures = 0;
                self.install(set, &fetcher.remote.issuer);
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                if self.keys.load().is_some() {
                    tracing::warn!(
                        issuer = %fetcher.remote.issuer, %error,
                        "could not refresh the issuer's signing keys; still verifying with the cached ones"
                    );
                } else {
                    tracing::warn!(
                        issuer = %fetcher.remote.issuer, %error,
                        "could not load the issuer's signing keys; answering 503 until they load"
                    );
                }
            }
        }
    }

    fn install(&self, set: KeySet, issuer: &str) {
        if set.by_kid.is_empty() {
            tracing::warn!(
                %issuer,
                "the issuer publishes no keys this verifier can use (an HS256 issuer publishes none); every token will be invalid"
            );
        }
        let old = self.keys.swap(Some(Arc::new(set)));
        let current = self.keys.load();
        if let (Some(old), Some(current)) = (old, current.as_deref()) {
            // Tokens verified with a key the issuer withdrew must not outlive it in the cache.
            if old.by_kid.keys().any(|kid| current.get(kid).is_none()) {
                self.cache.clear();
            }
            let added: Vec<&str> =
                current.by_kid.keys().filter(|kid| old.get(kid).is_none()).map(String::as_str).collect();
            if !added.is_empty() {
                tracing::info!(%issuer, kids = ?added, "loaded new signing keys");
            }
        } else if let Some(current) = current.as_deref() {
            let kids: Vec<&str> = current.by_kid.keys().map(String::as_str).collect();
            tracing::info!(%issuer, ?kids, "loaded the issuer's signing keys");
        }
    }
}

impl Fetcher {
    /// When the next background fetch is due: a refresh interval after the last one, or sooner,
    /// backing off, while fetches fail.
    fn next_due(&self, state: &FetchState) -> Instant {
        let last = state.last_started.unwrap_or_else(Instant::now);
        let wait = if state.failures == 0 {
            self.refresh_interval
        } else {
            let base = self.min_interval.max(Duration::from_millis(100));
            let doubled = base.saturating_mul(1 << state.failures.saturating_sub(1).min(10));
            doubled.min(MAX_RETRY).min(self.refresh_interval)
        };
        last + wait
    }
}

/// The first millisecond at which a cached token counts as expired.
fn expiry_deadline(claims: &AccessClaims, leeway_ms: Millis) -> Millis {
    let exp = match claims.softexp {
        Some(softexp) => claims.exp.min(softexp),
        None => claims.exp,
    };
    exp.saturating_mul(1000).saturating_add(leeway_ms)
}

/// Refreshes the key set on a timer until the verifier is dropped. Holds only a weak reference
/// while it sleeps, so it never keeps a verifier alive.
async fn refresh_in_background(weak: Weak<Inner>) {
    loop {
        let due = {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let Some(fetcher) = &inner.remote else {
                return;
            };
            let mut state = fetcher.state.lock().await;
            // Recomputed after every wake-up: a refetch on an unknown key id may have refreshed
            // the set meanwhile.
            let due = fetcher.next_due(&state);
            if due <= Instant::now() {
                inner.fetch_locked(fetcher, &mut state).await;
                continue;
            }
            due
        };
        tokio::time::sleep_until(due.into()).await;
    }
}

#[cfg(test)]
mod tests;
