//! The PostgreSQL backend, for several `prolong serve` replicas sharing one database.
//!
//! Refresh races are settled by the conditional `UPDATE` (row lock + re-check under READ
//! COMMITTED), so replicas need no coordination of their own.

use crate::migrations::{CREATE_TABLE, MIGRATIONS};
use crate::{Result, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, Executor};
use std::str::FromStr;
use std::time::Duration;

/// A PostgreSQL database.
pub struct PgStore {
    pool: PgPool,
}

/// A constant for the advisory lock that serializes migrations across replicas.
const MIGRATION_LOCK: i64 = 0x0050_524f_4c4f_4e47; // "PROLONG"

impl PgStore {
    /// Connects to `url` and migrates the database.
    pub async fn open(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url).map_err(|e| StoreError::Other(e.to_string()))?;
        let pool =
            PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(5)).connect_with(opts).await?;
        let mut conn = pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await?;
        tx.execute(CREATE_TABLE).await?;
        for (version, _, sql) in MIGRATIONS {
            let applied = sqlx::query("SELECT 1 FROM prolong_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if applied.is_none() {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO prolong_migrations (version, applied_at) VALUES ($1, $2)")
                    .bind(version)
                    .bind(crate::sql::now_for_migrations())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        drop(conn);
        Ok(PgStore { pool })
    }

    pub(crate) fn writer(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) async fn close_pools(&self) {
        self.pool.close().await;
    }

    /// The refresh path: the read and the conditional rotation on one pooled connection (one
    /// acquire instead of two). Ends go through `end_session`, with its feed event.
    pub(crate) async fn decide_and_apply_fast(
        &self,
        id: &crate::SessionId,
        decide: crate::Decide,
    ) -> Result<Option<(crate::SessionWithUser, crate::SessionWrite, bool)>> {
        use crate::{SessionWrite, Store as _};
        let mut conn = self.pool.acquire().await?;
        let Some(found) = session_on(&mut conn, id).await? else { return Ok(None) };
        let write = decide(&found);
        let applied = match write {
            SessionWrite::Nothing => true,
            SessionWrite::Rotate { from, now, last_active, mac_kid } => {
                rotate_on(&mut conn, id, from, now, last_active, &mac_kid).await?
            }
            SessionWrite::End { reason, now, until } => {
                drop(conn);
                self.end_session(id, reason, now, until).await?
            }
        };
        Ok(Some((found, write, applied)))
    }
}

/// The lock every transaction that writes feed events takes first, so that they commit in the
/// order of their `seq` and a reader's cursor never skips one still in flight.
const FEED_LOCK: i64 = 0x0050_524f_4c4f_4e48;

async fn feed_lock(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(FEED_LOCK).execute(&mut **tx).await?;
    Ok(())
}

crate::sql::impl_store!(PgStore, sqlx::Postgres, decide_and_apply = decide_and_apply_fast);
