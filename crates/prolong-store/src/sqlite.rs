//! The SQLite backend: the embedded default.
//!
//! SQLite has one writer, so writes go through a pool of exactly one connection (they queue in
//! process instead of spinning on `SQLITE_BUSY`), while reads use a separate pool that WAL mode lets
//! run beside the writer. `synchronous = NORMAL` in WAL mode: a commit survives a crash or restart
//! of the process; only an OS crash or power loss can lose the last commits.

use crate::migrations::{CREATE_TABLE, MIGRATIONS};
use crate::{Result, StoreError};
use sqlx::Executor;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

/// A SQLite database file.
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    hot: crate::hot::HotPath,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`) and migrates it.
    pub async fn open(url: &str) -> Result<Self> {
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(e.to_string()))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory")
            // Checkpoints run on their own thread (see `hot`), never inside a commit.
            .pragma("wal_autocheckpoint", "0");
        let file = base.get_filename().to_string_lossy();
        if file.is_empty() || file == ":memory:" || url.contains(":memory:") || url.contains("mode=memory") {
            // Every connection would see its own empty database.
            return Err(StoreError::Other(
                "in-memory SQLite is not supported: use a file, e.g. sqlite://prolong.db".into(),
            ));
        }
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.clone().create_if_missing(true))
            .await?;
        migrate(&write).await?;
        let hot = crate::hot::HotPath::start(base.get_filename())?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(base.read_only(true))
            .await?;
        Ok(SqliteStore { write, read, hot })
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.write
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.read
    }

    pub(crate) async fn close_pools(&self) {
        self.hot.close().await;
        self.read.close().await;
        self.write.close().await;
    }

    pub(crate) async fn decide_and_apply_fast(
        &self,
        id: &crate::SessionId,
        decide: crate::Decide,
    ) -> Result<Option<(crate::SessionWithUser, crate::SessionWrite, bool)>> {
        self.hot.decide_and_apply(id, decide).await
    }
}

async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    conn.execute(CREATE_TABLE).await?;
    for (version, sql, _) in MIGRATIONS {
        // BEGIN IMMEDIATE takes the write lock before the version check, so two processes
        // starting together cannot both apply a version.
        conn.execute("BEGIN IMMEDIATE").await?;
        let applied = sqlx::query("SELECT 1 FROM prolong_migrations WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *conn)
            .await;
        let step = async {
            if applied?.is_none() {
                sqlx::raw_sql(sql).execute(&mut *conn).await?;
                sqlx::query("INSERT INTO prolong_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(crate::sql::now_for_migrations())
                    .execute(&mut *conn)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        };
        match step.await {
            Ok(()) => {
                conn.execute("COMMIT").await?;
            }
            Err(e) => {
                let _ = conn.execute("ROLLBACK").await;
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// SQLite has one writer, so feed events are committed in `seq` order without a lock.
async fn feed_lock(_tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<()> {
    Ok(())
}

crate::sql::impl_store!(SqliteStore, sqlx::Sqlite, decide_and_apply = decide_and_apply_fast);
