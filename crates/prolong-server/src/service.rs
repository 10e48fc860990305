//! What the endpoints do, without HTTP: login, refresh, revoke and bearer authentication.
//!
//! Each operation reads the session, asks the pure rules in `prolong_core::session` what may
//! happen, and applies the answer with one conditional store update. This is the only place that
//! reads the clock for them and the only place that turns decisions into tokens.

use crate::config::Settings;
use crate::keyring::KeyRing;
use crate::password::Hasher;
use prolong_core::claims::AccessClaims;
use prolong_core::keys::{self, VerifyError};
use prolong_core::refresh_token::{self, Binding, SessionId};
use prolong_core::session::{Decision, decide_refresh, decide_renew};
use prolong_core::{Millis, Mode, Reason, SessionState};
use prolong_store::{Session, SessionWithUser, SessionWrite, Store, StoreError, User};
use std::sync::Arc;

/// Log target for security events (failed logins, reuse, revocations), so operators can alert.
pub const SECURITY: &str = "prolong::security";

/// The current time in Unix milliseconds: the one clock read the rules get their `now` from.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Parses a 32-character hex session id.
pub fn parse_session_id(s: &str) -> Option<SessionId> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// A refused grant, or a failure behind it.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// RFC 6749 `invalid_grant` with the contract's `reason`.
    #[error("invalid_grant: {0}")]
    Invalid(Reason, &'static str),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Keys or hashing failed.
    #[error("internal: {0}")]
    Internal(String),
}

pub(crate) fn invalid(reason: Reason) -> GrantError {
    let description = match reason {
        Reason::BadCredentials => "invalid username or password",
        Reason::UnknownToken => "the token is not valid",
        Reason::ReuseDetected => "the token was already used; the session has been revoked",
        Reason::Revoked => "the session has been revoked",
        Reason::ExpiredIdle => "the session expired after inactivity",
        Reason::ExpiredAbsolute => "the session reached its maximum lifetime",
        Reason::ReauthRequired => "the session ended: sign in again",
        Reason::VersionMismatch => "the session was signed out everywhere",
    };
    GrantError::Invalid(reason, description)
}

/// Why a bearer token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Good signature, past `exp`.
    Expired,
    /// Anything else, revoked sessions included.
    Invalid,
    /// The database could not be asked whether the session is alive.
    Unavailable,
}

/// The tokens of one generation of a session.
#[derive(Debug)]
pub struct TokenSet {
    /// The signed access token.
    pub access_token: String,
    /// Seconds until APIs stop accepting it.
    pub expires_in: i64,
    /// The refresh token (refresh mode only).
    pub refresh_token: Option<String>,
    /// The session id (hex).
    pub session_id: String,
    /// When the session dies of inactivity if nothing happens (Unix seconds).
    pub idle_expires_at: i64,
    /// When the session dies at the latest (Unix seconds).
    pub session_expires_at: i64,
}

/// A verified bearer request.
#[derive(Debug)]
pub struct Authenticated {
    /// The token's claims.
    pub claims: AccessClaims,
    /// The live session it belongs to.
    pub session: Session,
}

/// The server's shared state.
pub struct Service {
    /// Validated configuration.
    pub settings: Arc<Settings>,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Signing and MAC keys.
    pub keys: Arc<KeyRing>,
    /// Password hashing.
    pub hasher: Hasher,
    /// The `iss` of tokens.
    pub issuer: String,
}

const MAX_ROTATE_ATTEMPTS: usize = 4;

/// A check of the presented token against the session row (MAC, client, subject), run before
/// any decision; the error is the grant error to answer with.
pub(crate) type Precheck = Arc<dyn Fn(&Session) -> Result<(), (Reason, &'static str)> + Send + Sync>;

/// The pure rules: [`decide_renew`] with the presented token's window in renew mode.
fn decide_session(
    found: &SessionWithUser,
    policy: &prolong_core::Policy,
    presented: u64,
    idle: u32,
    now: Millis,
    renew_until: Option<Millis>,
) -> Decision {
    let (s, v) = (&found.session.state, found.user_version);
    match renew_until {
        Some(until) => decide_renew(s, v, policy, presented, idle, now, until),
        None => decide_refresh(s, v, policy, presented, idle, now),
    }
}

impl Service {
    /// How long a revocation made now must stay in the feed: until every access token issued
    /// before it has expired.
    pub fn feed_until(&self, now: Millis) -> Millis {
        now + self.settings.policy.access_ttl
    }

    /// Password login: a new session and its tokens, or `bad_credentials` — the same answer, in
    /// the same time, for an unknown user and a wrong password.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client_id: &str,
        user_agent: Option<&str>,
    ) -> Result<TokenSet, GrantError> {
        let name = prolong_core::username::normalize(username);
        let user = self.store.user_by_name(&name).await?;
        let ok = self
            .hasher
            .verify(password.to_owned(), user.as_ref().map(|u| u.password_hash.clone()))
            .await
            .map_err(|e| GrantError::Internal(e.to_string()))?;
        match user {
            Some(user) if ok => {
                let tokens = self.start_session(&user, client_id, user_agent).await?;
                tracing::info!(target: SECURITY, user_id = %user.id, session_id = %tokens.session_id, "login");
                Ok(tokens)
            }
            _ => {
                tracing::info!(target: SECURITY, "login failed");
                Err(invalid(Reason::BadCredentials))
            }
        }
    }

    /// Starts a session for an authenticated user.
    pub async fn start_session(
        &self,
        user: &User,
        client_id: &str,
        user_agent: Option<&str>,
    ) -> Result<TokenSet, GrantError> {
        let now = now_ms();
        let rnd = |e: keys::KeyError| GrantError::Internal(e.to_string());
        let (mac_kid, _) = self.keys.get().mac_current.clone();
        let session = Session {
            id: keys::random_bytes::<16>().map_err(rnd)?,
            user_id: user.id.clone(),
            client_id: client_id.to_owned(),
            salt: keys::random_bytes::<32>().map_err(rnd)?,
            mac_kid,
            state: SessionState {
                generation: 0,
                rotated_at: now,
                last_active: now,
                auth_time: now,
                token_version: user.token_version,
                ended: None,
            },
            ended_at: None,
            user_agent: user_agent.map(|ua| ua.chars().take(256).collect()),
        };
        self.store.create_session(&session).await?;
        self.issue_for(&session, now).await
    }

    /// Rotates a refresh token (CONTRACT §5). `client_id` is the request's (the default when it
    /// names none) and must be the session's.
    pub async fn refresh(&self, token: &str, idle: u32, client_id: &str) -> Result<TokenSet, GrantError> {
        let now = now_ms();
        let parsed = refresh_token::parse(token).ok_or_else(|| invalid(Reason::UnknownToken))?;
        let key = self.keys.mac(&parsed.key_id, now).await.ok_or_else(|| invalid(Reason::UnknownToken))?;
        let client_id = client_id.to_owned();
        // The MAC is checked, in constant time, before anything can change.
        let precheck: Precheck = Arc::new(move |s: &Session| {
            if !parsed.verify(&key, &s.salt, &s.user_id, &s.client_id) {
                return Err((Reason::UnknownToken, "the token is not valid"));
            }
            if client_id != s.client_id {
                return Err((Reason::UnknownToken, "client_id does not match the session"));
            }
            Ok(())
        });
        self.advance(&parsed.session_id, parsed.generation, idle, now, None, precheck).await
    }

    /// Moves a session on for a refresh or renew presenting generation `presented`: reads the
    /// row, asks the pure rules, writes the outcome — in one transaction where the store can
    /// (SQLite), otherwise as a conditional update retried on a lost race (PostgreSQL) — and
    /// mints the tokens. `renew_until` (renew mode) refuses the current token past its window.
    pub(crate) async fn advance(
        &self,
        sid: &SessionId,
        presented: u64,
        idle: u32,
        now: Millis,
        renew_until: Option<Millis>,
        precheck: Precheck,
    ) -> Result<TokenSet, GrantError> {
        let policy = self.settings.policy;
        let until = self.feed_until(now);
        for _ in 0..MAX_ROTATE_ATTEMPTS {
            let (mac_kid, _) = self.keys.get().mac_current.clone();
            let check = precheck.clone();
            let decide: prolong_store::Decide = Box::new(move |found| {
                if check(&found.session).is_err() {
                    return SessionWrite::Nothing;
                }
                match decide_session(found, &policy, presented, idle, now, renew_until) {
                    Decision::Rotate { from, last_active } => SessionWrite::Rotate { from, now, last_active, mac_kid },
                    Decision::End(reason) => SessionWrite::End { reason, now, until },
                    Decision::Replay | Decision::Deny(_) => SessionWrite::Nothing,
                }
            });
            let Some((found, write, applied)) = self.store.decide_and_apply(sid, decide).await? else {
                return Err(invalid(Reason::UnknownToken));
            };
            if let Err((reason, description)) = precheck(&found.session) {
                return Err(GrantError::Invalid(reason, description));
            }
            let s = found.session;
            match (
                decide_session(
                    &SessionWithUser { session: s.clone(), user_version: found.user_version },
                    &policy,
                    presented,
                    idle,
                    now,
                    renew_until,
                ),
                write,
            ) {
                (Decision::Rotate { from, last_active }, SessionWrite::Rotate { mac_kid, .. }) if applied => {
                    let mut next = s;
                    next.state.generation = from + 1;
                    next.state.rotated_at = now;
                    next.state.last_active = last_active;
                    next.mac_kid = mac_kid;
                    return self.issue_for(&next, now).await;
                }
                (Decision::Replay, _) => return self.issue_for(&s, now).await,
                (Decision::End(reason), _) if applied => {
                    if reason == Reason::ReuseDetected {
                        tracing::warn!(target: SECURITY, session_id = %hex(&s.id), user_id = %s.user_id, "refresh token reuse detected; session revoked");
                    } else {
                        tracing::info!(target: SECURITY, session_id = %hex(&s.id), reason = %reason, "session ended");
                    }
                    return Err(invalid(reason));
                }
                (Decision::Deny(reason), _) => return Err(invalid(reason)),
                // Another request (or replica) changed the row first: decide again on what it wrote.
                _ => {}
            }
        }
        Err(GrantError::Internal("refresh did not settle after repeated concurrent updates".into()))
    }

    /// Signs the access token (and derives the refresh token) of the session's current generation.
    pub(crate) async fn issue_for(&self, s: &Session, now: Millis) -> Result<TokenSet, GrantError> {
        let policy = self.settings.policy;
        let keys = self.keys.get();
        let iat = now / 1000;
        let exp = policy.access_exp(now, s.state.auth_time) / 1000;
        let renew = policy.mode == Mode::Renew;
        let jti = keys::random_bytes::<16>().map_err(|e| GrantError::Internal(e.to_string()))?;
        let session_id = hex(&s.id);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: s.user_id.clone(),
            aud: self.settings.audience.clone(),
            iat,
            exp,
            jti: hex(&jti),
            sid: session_id.clone(),
            client_id: s.client_id.clone(),
            ver: s.state.token_version,
            auth_time: s.state.auth_time / 1000,
            softexp: renew.then_some(exp),
            r#gen: renew.then_some(s.state.generation),
            renew_until: renew.then(|| policy.renew_until(now, s.state.auth_time) / 1000),
        };
        let access_token = keys.signer.sign(&claims).map_err(|e| GrantError::Internal(e.to_string()))?;
        let refresh_token = if renew {
            None
        } else {
            let mac = match keys.macs.get(&s.mac_kid) {
                Some(k) => k.clone(),
                None => self.keys.mac(&s.mac_kid, now).await.ok_or_else(|| invalid(Reason::UnknownToken))?,
            };
            let binding = Binding {
                session_id: &s.id,
                salt: &s.salt,
                user_id: &s.user_id,
                client_id: &s.client_id,
                generation: s.state.generation,
            };
            Some(refresh_token::issue(&s.mac_kid, &mac, &binding))
        };
        Ok(TokenSet {
            access_token,
            expires_in: (exp - iat).max(0),
            refresh_token,
            session_id,
            idle_expires_at: (s.state.last_active + policy.idle_timeout) / 1000,
            session_expires_at: (s.state.auth_time + policy.absolute_lifetime) / 1000,
        })
    }

    /// RFC 7009: ends the session of a refresh or access token. Unknown tokens are ignored.
    pub async fn revoke(&self, token: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let sid = if let Some(parsed) = refresh_token::parse(token) {
            let Some(key) = self.keys.mac(&parsed.key_id, now).await else {
                return Ok(());
            };
            let Some(found) = self.store.session(&parsed.session_id).await? else {
                return Ok(());
            };
            let s = &found.session;
            if !parsed.verify(&key, &s.salt, &s.user_id, &s.client_id) || parsed.generation > s.state.generation {
                return Ok(());
            }
            s.id
        } else {
            // An access token revokes its session even after its `exp`: possession is proof enough.
            match self.verify_access(token, now).await {
                Ok(claims) | Err((VerifyError::Expired, Some(claims))) => match parse_session_id(&claims.sid) {
                    Some(sid) => sid,
                    None => return Ok(()),
                },
                Err(_) => return Ok(()),
            }
        };
        if self.store.end_session(&sid, Reason::Revoked, now, self.feed_until(now)).await? {
            tracing::info!(target: SECURITY, session_id = %hex(&sid), "session revoked");
        }
        Ok(())
    }

    /// Checks signature (algorithm pinned by `kid`), `typ`, `iss`, `aud` and `exp`. On
    /// expiry the claims come back too.
    pub async fn verify_access(
        &self,
        token: &str,
        now: Millis,
    ) -> Result<AccessClaims, (VerifyError, Option<AccessClaims>)> {
        let kid = keys::peek_kid(token).ok_or((VerifyError::Invalid, None))?;
        let key = self.keys.verifier(&kid, now).await.ok_or((VerifyError::Invalid, None))?;
        let claims: AccessClaims = key.verify(token).map_err(|e| (e, None))?;
        match claims.check(&self.issuer, &self.settings.audience, now) {
            Ok(()) => Ok(claims),
            Err(VerifyError::Expired) => Err((VerifyError::Expired, Some(claims))),
            Err(e) => Err((e, None)),
        }
    }

    /// Authenticates a bearer request: a valid token (checked by the same `prolong-verify`
    /// verifier resource servers use, with its cache) of a session that has not been ended.
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, AuthError> {
        let mut verified = self.keys.get().verifier.try_verify(token);
        if verified.as_ref().is_err_and(|e| e.kind() == prolong_verify::ErrorKind::Invalid) {
            // Perhaps signed with a key another process just added: reload once and retry.
            let unknown = keys::peek_kid(token).is_some_and(|kid| !self.keys.get().verifiers.contains_key(&kid));
            if unknown && self.keys.reload_on_miss(now_ms()).await {
                verified = self.keys.get().verifier.try_verify(token);
            }
        }
        let claims: AccessClaims = match verified {
            Ok(c) => (*c).clone(),
            Err(e) if e.kind() == prolong_verify::ErrorKind::Expired => return Err(AuthError::Expired),
            Err(_) => return Err(AuthError::Invalid),
        };
        let sid = parse_session_id(&claims.sid).ok_or(AuthError::Invalid)?;
        let found = self.store.session(&sid).await.map_err(|_| AuthError::Unavailable)?.ok_or(AuthError::Invalid)?;
        let s = found.session;
        if s.user_id != claims.sub || s.state.ended.is_some() || s.state.token_version != found.user_version {
            return Err(AuthError::Invalid);
        }
        Ok(Authenticated { claims, session: s })
    }
}
