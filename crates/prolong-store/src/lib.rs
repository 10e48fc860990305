//! Storage for Prolong: one [`Store`] trait, two real backends (SQLite, the embedded default, and
//! PostgreSQL for several replicas), and their migrations.
//!
//! The design decision: a session is one row. A refresh is one conditional `UPDATE … WHERE
//! generation = $from`, so the database, not a lock in one process, decides which of several
//! concurrent refreshes wins — which holds across replicas too. Both backends share their SQL
//! (written once in [`sql`]) and convert driver errors into [`StoreError`], so `sqlx` never leaks.

mod hot;
mod migrations;
mod model;
mod postgres;
mod sql;
mod sqlite;

pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use prolong_core::{Millis, Reason};
use std::sync::Arc;

/// A storage failure, as the rest of the server sees it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint (a taken username, an existing key id).
    #[error("already exists")]
    Conflict,
    /// The database could not be reached or timed out.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The database URL is not one this build understands.
    #[error("unsupported database url (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    /// Anything else the driver reported; the detail is for the log, not for clients.
    #[error("database error: {0}")]
    Other(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// Shorthand for store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything Prolong keeps. Each method is one short statement or transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;
    /// Closes the pools, waiting for in-flight statements.
    async fn close(&self);

    /// Adds a user; [`StoreError::Conflict`] when the username is taken.
    async fn create_user(&self, user: &User) -> Result<()>;
    /// Finds a user by normalized username.
    async fn user_by_name(&self, username: &str) -> Result<Option<User>>;
    /// Finds a user by id.
    async fn user_by_id(&self, id: &str) -> Result<Option<User>>;
    /// Sets a user's password hash. With `end_sessions`, every live session of the user ends with
    /// `reauth_required` in the same transaction, each recorded in the revocation feed until
    /// `until`. Returns the ended sessions.
    async fn set_password(
        &self,
        user_id: &str,
        hash: &str,
        end_sessions: bool,
        now: Millis,
        until: Millis,
    ) -> Result<Vec<EndedSession>>;
    /// Ends every live session of a user with `reason` (re-authentication), recording each in the
    /// revocation feed until `until`, and returns them.
    async fn end_user_sessions(
        &self,
        user_id: &str,
        reason: Reason,
        now: Millis,
        until: Millis,
    ) -> Result<Vec<EndedSession>>;
    /// Bumps the user's token version ("logout everywhere"), records a user event in the feed
    /// until `until`, and returns the new version (`None` for an unknown user).
    async fn bump_token_version(&self, user_id: &str, now: Millis, until: Millis) -> Result<Option<i64>>;

    /// Stores a new session.
    async fn create_session(&self, session: &Session) -> Result<()>;
    /// Loads a session with its user's current token version.
    async fn session(&self, id: &SessionId) -> Result<Option<SessionWithUser>>;
    /// Moves a session from generation `from` to `from + 1` if it is still at `from` and has not
    /// ended. Returns whether this call won.
    async fn rotate(
        &self,
        id: &SessionId,
        from: u64,
        now: Millis,
        last_active: Millis,
        mac_kid: &MacKeyId,
    ) -> Result<bool>;
    /// Ends a session with `reason` unless it has ended already, and — for a revocation (see
    /// [`prolong_core::Reason::is_revocation`]) — records it in the feed until `until`, in the same
    /// transaction. Returns whether this call ended it.
    async fn end_session(&self, id: &SessionId, reason: Reason, now: Millis, until: Millis) -> Result<bool>;
    /// The sessions of a user that have not ended, newest first.
    async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>>;
    /// Reads a session, lets `decide` choose what to write, and writes it: the refresh path.
    /// SQLite does all three in one write transaction (`applied == true` always); PostgreSQL reads,
    /// then applies the write as a conditional update on the same connection, which may lose a
    /// race (`applied == false`: decide again on a fresh read). `None` when there is no such
    /// session.
    async fn decide_and_apply(
        &self,
        id: &SessionId,
        decide: Decide,
    ) -> Result<Option<(SessionWithUser, SessionWrite, bool)>>;
    /// Sessions that have not ended, of every user, newest first, at most `limit`.
    async fn live_sessions(&self, limit: i64) -> Result<Vec<Session>>;
    /// Deletes at most `limit` session rows and revocation events that can no longer matter.
    async fn purge(&self, before: PurgeBefore, limit: i64) -> Result<Purged>;

    /// Revocation events after `cursor` whose `until` is later than `now`, in commit order.
    async fn revocations_after(&self, cursor: i64, now: Millis, limit: i64) -> Result<Vec<Revocation>>;
    /// The newest event's position (0 when there is none).
    async fn latest_revocation(&self) -> Result<i64>;

    /// Every stored key, oldest first.
    async fn keys(&self) -> Result<Vec<StoredKey>>;
    /// Adds a key. With `only_if_none_active`, it is added only when no unretired key of its kind
    /// and algorithm exists (so replicas starting together create one key, not one each); with
    /// `retire_others`, every other unretired key of its kind is retired at `now`.
    /// Returns whether the key was added.
    async fn add_key(
        &self,
        key: &StoredKey,
        only_if_none_active: bool,
        retire_others: bool,
        now: Millis,
    ) -> Result<bool>;
    /// Replaces the stored material of a key (to encrypt keys stored in plain text).
    async fn replace_key_material(&self, kid: &str, material: &[u8], encrypted: bool) -> Result<()>;
}

/// Opens the store a URL names, creating a SQLite file (and its schema) if needed, and applies
/// pending migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
