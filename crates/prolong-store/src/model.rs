//! The rows the store reads and writes.

use prolong_core::{Millis, Reason, SessionState};

pub use prolong_core::refresh_token::{MacKeyId, SessionId};

/// An account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Opaque id (32 hex characters), the `sub` of its tokens.
    pub id: String,
    /// Normalized username.
    pub username: String,
    /// PHC string of the password hash; empty for users that never log in with a password.
    pub password_hash: String,
    /// Bumped by "logout everywhere".
    pub token_version: i64,
    /// Creation time.
    pub created_at: Millis,
}

/// A session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random, never reused.
    pub id: SessionId,
    /// The owner.
    pub user_id: String,
    /// The `client_id` of the login.
    pub client_id: String,
    /// Secret per-session salt bound into refresh tokens; never leaves the server.
    pub salt: [u8; 32],
    /// The refresh MAC key of the current generation's token.
    pub mac_kid: MacKeyId,
    /// Generation, times, version and end: what the rules look at.
    pub state: SessionState,
    /// When it ended, if it did.
    pub ended_at: Option<Millis>,
    /// The `User-Agent` of the login, for the session list.
    pub user_agent: Option<String>,
}

/// A session together with its user's current token version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWithUser {
    /// The session.
    pub session: Session,
    /// The user's token version now.
    pub user_version: i64,
}

/// A session that a bulk operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedSession {
    /// Its id.
    pub id: SessionId,
    /// When its latest access token can expire at the latest (its last rotation plus a token
    /// lifetime is computed by the caller; this is the last rotation).
    pub rotated_at: Millis,
}

/// What a stored key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Signs access tokens.
    Signing,
    /// MACs refresh tokens.
    RefreshMac,
}

impl KeyKind {
    /// Its name in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Signing => "signing",
            KeyKind::RefreshMac => "refresh_mac",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "signing" => Some(KeyKind::Signing),
            "refresh_mac" => Some(KeyKind::RefreshMac),
            _ => None,
        }
    }
}

/// A key as stored: private material, possibly encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id (the JWS `kid`, or the refresh token's key id in base64url).
    pub kid: String,
    /// Signing or refresh MAC.
    pub kind: KeyKind,
    /// JOSE algorithm name for signing keys, `HS256` for MAC keys.
    pub alg: String,
    /// PKCS#8 DER or secret; AES-256-GCM sealed when `encrypted`.
    pub material: Vec<u8>,
    /// Whether `material` is sealed with the key-encryption key.
    pub encrypted: bool,
    /// Creation time.
    pub created_at: Millis,
    /// When a newer key replaced it; it keeps verifying for a while after.
    pub retired_at: Option<Millis>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .field("encrypted", &self.encrypted)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

pub(crate) fn reason_from_db(s: Option<String>) -> Option<Reason> {
    // An unknown stored reason still means the session ended.
    s.map(|s| Reason::parse(&s).unwrap_or(Reason::Revoked))
}

/// What a revocation event ends (CONTRACT §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationKind {
    /// One session: logout, revoke, reuse detection, re-authentication requirement, admin action.
    Session(SessionId),
    /// Every session of a user whose token version is below `min_version` ("logout everywhere").
    User {
        /// The user id (`sub`).
        user_id: String,
        /// Tokens with `ver` below this are revoked.
        min_version: i64,
    },
}

/// One event of the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Position in commit order; the feed's cursor.
    pub seq: i64,
    /// What it revokes.
    pub kind: RevocationKind,
    /// The latest `exp` an affected access token can have (ms); the event is dropped after it.
    pub until: Millis,
}

/// What the background purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Session rows deleted.
    pub sessions: u64,
    /// Revocation events deleted.
    pub revocations: u64,
}

/// The cut-off times of a purge: rows older than these can no longer matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeBefore {
    /// Ended sessions whose `ended_at` is before this.
    pub ended_at: Millis,
    /// Sessions whose `last_active` is before this (idle-expired).
    pub last_active: Millis,
    /// Sessions whose `auth_time` is before this (past the absolute lifetime).
    pub auth_time: Millis,
    /// Revocation events whose `until` is before this.
    pub until: Millis,
}

/// What a refresh or renew decided to write to its session (see [`crate::Store::decide_and_apply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionWrite {
    /// Nothing changes (a replay or a refusal).
    Nothing,
    /// Move from generation `from` to `from + 1`.
    Rotate {
        /// The generation the session must still be at.
        from: u64,
        /// The rotation time.
        now: Millis,
        /// The new `last_active`.
        last_active: Millis,
        /// The MAC key of the new generation's token.
        mac_kid: MacKeyId,
    },
    /// End the session.
    End {
        /// Why.
        reason: Reason,
        /// When.
        now: Millis,
        /// Until when a revocation stays in the feed.
        until: Millis,
    },
}

/// The decision function handed to [`crate::Store::decide_and_apply`].
pub type Decide = Box<dyn FnOnce(&SessionWithUser) -> SessionWrite + Send>;
