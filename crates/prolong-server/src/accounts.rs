//! Account operations: renew mode, logout, logout everywhere, password changes, signup, admin
//! actions, introspection and the background purge. Like `service`, each reads the row, asks the
//! pure rules, and applies the answer.

use crate::service::{Authenticated, GrantError, SECURITY, Service, TokenSet, hex, now_ms, parse_session_id};
use prolong_core::claims::AccessClaims;
use prolong_core::keys::{self, VerifyError};
use prolong_core::refresh_token;
use prolong_core::session::liveness;
use prolong_core::username::{self, CredentialError};
use prolong_core::{Millis, Mode, Reason};
use prolong_store::{PurgeBefore, Purged, Session, StoreError, User};
use serde_json::{Value, json};

/// A refused account operation.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The username is taken (409).
    #[error("username is already taken")]
    Taken,
    /// A rule on usernames or passwords (400).
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// The current password is wrong (400 `invalid_grant`, `bad_credentials`).
    #[error("current password is wrong")]
    WrongPassword,
    /// No such user or session (404).
    #[error("not found")]
    NotFound,
    /// The database or hashing failed.
    #[error(transparent)]
    Grant(#[from] GrantError),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        AccountError::Grant(GrantError::Store(e))
    }
}

/// One row of `GET /v1/sessions`.
pub fn session_json(s: &Session, current: &str, policy: &prolong_core::Policy) -> Value {
    let id = hex(&s.id);
    json!({
        "id": id,
        "created_at": s.state.auth_time / 1000,
        "last_active_at": s.state.last_active / 1000,
        "user_agent": s.user_agent,
        "current": id == current,
        "client_id": s.client_id,
        "idle_expires_at": (s.state.last_active + policy.idle_timeout) / 1000,
        "session_expires_at": (s.state.auth_time + policy.absolute_lifetime) / 1000,
    })
}

impl Service {
    /// Renew mode: exchanges a token still inside its renewal window for the next generation's.
    pub async fn renew(&self, token: &str, idle: u32) -> Result<TokenSet, GrantError> {
        let now = now_ms();
        let bad = || GrantError::Invalid(Reason::UnknownToken, "the token is not valid");
        if self.settings.policy.mode != Mode::Renew {
            return Err(GrantError::Invalid(Reason::UnknownToken, "renew mode is not enabled on this server"));
        }
        // Signature, typ, iss and aud are checked; exp is not (that is the point of renewing).
        let claims = match self.verify_access(token, now).await {
            Ok(c) | Err((VerifyError::Expired, Some(c))) => c,
            Err(_) => return Err(bad()),
        };
        let (Some(generation), Some(renew_until)) = (claims.r#gen, claims.renew_until) else { return Err(bad()) };
        let sid = parse_session_id(&claims.sid).ok_or_else(bad)?;
        let sub = claims.sub.clone();
        let precheck: crate::service::Precheck = std::sync::Arc::new(move |s: &Session| {
            if s.user_id == sub { Ok(()) } else { Err((Reason::UnknownToken, "the token is not valid")) }
        });
        self.advance(&sid, generation, idle, now, Some(renew_until.saturating_mul(1000)), precheck).await
    }

    /// Ends the caller's current session.
    pub async fn logout(&self, auth: &Authenticated) -> Result<(), StoreError> {
        let now = now_ms();
        if self.store.end_session(&auth.session.id, Reason::Revoked, now, self.feed_until(now)).await? {
            tracing::info!(target: SECURITY, session_id = %hex(&auth.session.id), "logout");
        }
        Ok(())
    }

    /// Ends one of the caller's sessions; `NotFound` when it is not theirs (or not live).
    pub async fn end_own_session(&self, auth: &Authenticated, id: &str) -> Result<(), AccountError> {
        let sid = parse_session_id(id).ok_or(AccountError::NotFound)?;
        let found = self.store.session(&sid).await?.ok_or(AccountError::NotFound)?;
        if found.session.user_id != auth.session.user_id || found.session.state.ended.is_some() {
            return Err(AccountError::NotFound);
        }
        let now = now_ms();
        self.store.end_session(&sid, Reason::Revoked, now, self.feed_until(now)).await?;
        tracing::info!(target: SECURITY, session_id = %id, "session revoked by its user");
        Ok(())
    }

    /// Bumps the user's token version: every session ends ("logout everywhere").
    pub async fn logout_all(&self, user_id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let bumped = self.store.bump_token_version(user_id, now, self.feed_until(now)).await?;
        if bumped.is_some() {
            tracing::info!(target: SECURITY, %user_id, "logout everywhere");
        }
        Ok(bumped.is_some())
    }

    /// Requires re-authentication: every session the user has now ends with `reauth_required`.
    pub async fn require_reauth(&self, user_id: &str) -> Result<usize, StoreError> {
        let now = now_ms();
        let ended = self.store.end_user_sessions(user_id, Reason::ReauthRequired, now, self.feed_until(now)).await?;
        tracing::info!(target: SECURITY, %user_id, sessions = ended.len(), "re-authentication required");
        Ok(ended.len())
    }

    /// Sets a new password (already checked against the rules) and requires re-authentication.
    pub async fn reset_password(&self, user_id: &str, new_password: &str) -> Result<(), AccountError> {
        username::check_new_password(new_password)?;
        let hash = self.hasher.hash(new_password.to_owned()).await.map_err(|e| GrantError::Internal(e.to_string()))?;
        let now = now_ms();
        let ended = self.store.set_password(user_id, &hash, true, now, self.feed_until(now)).await?;
        tracing::info!(target: SECURITY, %user_id, sessions = ended.len(), "password changed; re-authentication required");
        Ok(())
    }

    /// `POST /v1/password`: checks the current password, then resets.
    pub async fn change_password(&self, auth: &Authenticated, current: &str, new: &str) -> Result<(), AccountError> {
        let user = self.store.user_by_id(&auth.session.user_id).await?.ok_or(AccountError::NotFound)?;
        username::check_new_password(new)?;
        let ok = self
            .hasher
            .verify(current.to_owned(), Some(user.password_hash.clone()))
            .await
            .map_err(|e| GrantError::Internal(e.to_string()))?;
        if !ok {
            tracing::info!(target: SECURITY, user_id = %user.id, "password change with a wrong current password");
            return Err(AccountError::WrongPassword);
        }
        self.reset_password(&user.id, new).await
    }

    /// Creates a user; a taken username is refused before the password rules are checked.
    pub async fn create_user(&self, raw_username: &str, password: &str) -> Result<User, AccountError> {
        let name = username::normalize(raw_username);
        username::check_username(&name)?;
        if self.store.user_by_name(&name).await?.is_some() {
            return Err(AccountError::Taken);
        }
        username::check_new_password(password)?;
        let hash = self.hasher.hash(password.to_owned()).await.map_err(|e| GrantError::Internal(e.to_string()))?;
        let id = hex(&keys::random_bytes::<16>().map_err(|e| GrantError::Internal(e.to_string()))?);
        let user = User { id, username: name, password_hash: hash, token_version: 0, created_at: now_ms() };
        match self.store.create_user(&user).await {
            Ok(()) => Ok(user),
            Err(StoreError::Conflict) => Err(AccountError::Taken),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /v1/admin/sessions`: a session for a subject the calling app authenticated itself;
    /// the user is created (without a password) if absent.
    pub async fn admin_session(&self, raw_username: &str, user_agent: Option<&str>) -> Result<TokenSet, AccountError> {
        let name = username::normalize(raw_username);
        username::check_username(&name)?;
        let user = match self.store.user_by_name(&name).await? {
            Some(u) => u,
            None => {
                let id = hex(&keys::random_bytes::<16>().map_err(|e| GrantError::Internal(e.to_string()))?);
                let user = User {
                    id,
                    username: name.clone(),
                    password_hash: String::new(),
                    token_version: 0,
                    created_at: now_ms(),
                };
                match self.store.create_user(&user).await {
                    Ok(()) => user,
                    Err(StoreError::Conflict) => self.store.user_by_name(&name).await?.ok_or(AccountError::NotFound)?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(self.start_session(&user, crate::http::oauth::DEFAULT_CLIENT_ID, user_agent).await?)
    }

    /// RFC 7662: whether a refresh or access token is active under every rule of §5 right now.
    pub async fn introspect(&self, token: &str) -> Result<Value, StoreError> {
        let now = now_ms();
        let inactive = json!({"active": false});
        let policy = self.settings.policy;
        if let Some(parsed) = refresh_token::parse(token) {
            let Some(key) = self.keys.mac(&parsed.key_id, now).await else { return Ok(inactive) };
            let Some(found) = self.store.session(&parsed.session_id).await? else { return Ok(inactive) };
            let s = &found.session;
            if !parsed.verify(&key, &s.salt, &s.user_id, &s.client_id)
                || parsed.generation != s.state.generation
                || liveness(&s.state, found.user_version, &policy, now).is_err()
            {
                return Ok(inactive);
            }
            let user = self.store.user_by_id(&s.user_id).await?;
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "sub": s.user_id,
                "username": user.map(|u| u.username),
                "client_id": s.client_id,
                "sid": hex(&s.id),
                "iss": self.issuer,
                "exp": (s.state.last_active + policy.idle_timeout).min(s.state.auth_time + policy.absolute_lifetime) / 1000,
                "auth_time": s.state.auth_time / 1000,
            }));
        }
        let Ok(claims) = self.verify_access(token, now).await else { return Ok(inactive) };
        if !self.access_session_alive(&claims, now).await? {
            return Ok(inactive);
        }
        let user = self.store.user_by_id(&claims.sub).await?;
        Ok(json!({
            "active": true,
            "token_type": "access_token",
            "sub": claims.sub,
            "username": user.map(|u| u.username),
            "client_id": claims.client_id,
            "sid": claims.sid,
            "iss": claims.iss,
            "aud": claims.aud,
            "iat": claims.iat,
            "exp": claims.exp,
            "jti": claims.jti,
            "ver": claims.ver,
            "auth_time": claims.auth_time,
        }))
    }

    async fn access_session_alive(&self, claims: &AccessClaims, now: Millis) -> Result<bool, StoreError> {
        let Some(sid) = parse_session_id(&claims.sid) else { return Ok(false) };
        let Some(found) = self.store.session(&sid).await? else { return Ok(false) };
        let s = &found.session;
        Ok(s.user_id == claims.sub && liveness(&s.state, found.user_version, &self.settings.policy, now).is_ok())
    }

    /// Deletes sessions and feed events that can no longer matter, in batches.
    pub async fn purge(&self, now: Millis) -> Result<Purged, StoreError> {
        const SLACK: Millis = 60_000;
        let p = self.settings.policy;
        // A dead session keeps answering with the reason it died for as long as any of its tokens
        // could matter, so rows go only once the absolute lifetime has passed; feed events go
        // after their `until`.
        let before = PurgeBefore {
            ended_at: Millis::MIN,
            last_active: Millis::MIN,
            auth_time: now - p.absolute_lifetime - SLACK,
            until: now - SLACK,
        };
        let mut total = Purged::default();
        loop {
            let batch = self.store.purge(before, 1_000).await?;
            total.sessions += batch.sessions;
            total.revocations += batch.revocations;
            if batch.sessions < 1_000 && batch.revocations < 1_000 {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}
