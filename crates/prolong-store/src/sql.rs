//! The SQL both backends share, written once.
//!
//! The statements use `$n` placeholders and only types both drivers map the same way (`i64`,
//! `String`, `Vec<u8>`), so one macro body implements [`crate::Store`] for both pools. Writes go to
//! `writer()`, reads to `reader()` (the same pool on PostgreSQL).

use prolong_core::Millis;

pub(crate) fn now_for_migrations() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

pub(crate) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.client_id, s.salt, s.mac_kid, s.generation, s.rotated_at, \
     s.last_active, s.auth_time, s.token_version, s.ended_reason, s.ended_at, s.user_agent";

pub(crate) fn fixed<const N: usize>(v: Vec<u8>, what: &str) -> Result<[u8; N], crate::StoreError> {
    v.try_into().map_err(|_| crate::StoreError::Other(format!("stored {what} has the wrong length")))
}

macro_rules! impl_store {
    ($store:ty, $db:ty, decide_and_apply = $decide_and_apply:ident) => {
        fn session_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::Result<$crate::Session> {
            use sqlx::Row;
            let generation: i64 = row.try_get("generation")?;
            Ok($crate::Session {
                id: $crate::sql::fixed(row.try_get("id")?, "session id")?,
                user_id: row.try_get("user_id")?,
                client_id: row.try_get("client_id")?,
                salt: $crate::sql::fixed(row.try_get("salt")?, "salt")?,
                mac_kid: $crate::sql::fixed(row.try_get("mac_kid")?, "mac key id")?,
                state: prolong_core::SessionState {
                    generation: generation as u64,
                    rotated_at: row.try_get("rotated_at")?,
                    last_active: row.try_get("last_active")?,
                    auth_time: row.try_get("auth_time")?,
                    token_version: row.try_get("token_version")?,
                    ended: $crate::model::reason_from_db(row.try_get("ended_reason")?),
                },
                ended_at: row.try_get("ended_at")?,
                user_agent: row.try_get("user_agent")?,
            })
        }

        fn user_from_row(row: &<$db as sqlx::Database>::Row) -> $crate::Result<$crate::User> {
            use sqlx::Row;
            Ok($crate::User {
                id: row.try_get("id")?,
                username: row.try_get("username")?,
                password_hash: row.try_get("password_hash")?,
                token_version: row.try_get("token_version")?,
                created_at: row.try_get("created_at")?,
            })
        }

        static SESSION_BY_ID: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
            format!(
                "SELECT {}, u.token_version AS user_version FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
                $crate::sql::SESSION_COLUMNS
            )
        });

        /// A session and its user's token version, on `conn`.
        async fn session_on(
            conn: &mut <$db as sqlx::Database>::Connection,
            id: &$crate::SessionId,
        ) -> $crate::Result<Option<$crate::SessionWithUser>> {
            use sqlx::Row;
            let row = sqlx::query(SESSION_BY_ID.as_str()).bind(id.to_vec()).fetch_optional(&mut *conn).await?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some($crate::SessionWithUser {
                    session: session_from_row(&row)?,
                    user_version: row.try_get("user_version")?,
                })),
            }
        }

        /// The conditional rotation, on `conn`: whether it applied.
        async fn rotate_on(
            conn: &mut <$db as sqlx::Database>::Connection,
            id: &$crate::SessionId,
            from: u64,
            now: prolong_core::Millis,
            last_active: prolong_core::Millis,
            mac_kid: &$crate::MacKeyId,
        ) -> $crate::Result<bool> {
            let done = sqlx::query(
                "UPDATE sessions SET generation = generation + 1, rotated_at = $1, last_active = $2, mac_kid = $3 \
                 WHERE id = $4 AND generation = $5 AND ended_reason IS NULL",
            )
            .bind(now)
            .bind(last_active)
            .bind(mac_kid.to_vec())
            .bind(id.to_vec())
            .bind(from as i64)
            .execute(&mut *conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await;
            }

            async fn create_user(&self, u: &$crate::User) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO users (id, username, password_hash, token_version, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&u.id)
                .bind(&u.username)
                .bind(&u.password_hash)
                .bind(u.token_version)
                .bind(u.created_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn user_by_name(&self, username: &str) -> $crate::Result<Option<$crate::User>> {
                let row = sqlx::query("SELECT id, username, password_hash, token_version, created_at FROM users WHERE username = $1")
                    .bind(username)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn user_by_id(&self, id: &str) -> $crate::Result<Option<$crate::User>> {
                let row = sqlx::query("SELECT id, username, password_hash, token_version, created_at FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(user_from_row).transpose()
            }

            async fn set_password(
                &self,
                user_id: &str,
                hash: &str,
                end_sessions: bool,
                now: prolong_core::Millis,
                until: prolong_core::Millis,
            ) -> $crate::Result<Vec<$crate::EndedSession>> {
                let mut tx = self.writer().begin().await?;
                if end_sessions {
                    feed_lock(&mut tx).await?;
                }
                sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                    .bind(hash)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                let ended = if end_sessions {
                    end_live_sessions(&mut tx, user_id, prolong_core::Reason::ReauthRequired, now, until).await?
                } else {
                    Vec::new()
                };
                tx.commit().await?;
                Ok(ended)
            }

            async fn end_user_sessions(
                &self,
                user_id: &str,
                reason: prolong_core::Reason,
                now: prolong_core::Millis,
                until: prolong_core::Millis,
            ) -> $crate::Result<Vec<$crate::EndedSession>> {
                let mut tx = self.writer().begin().await?;
                feed_lock(&mut tx).await?;
                let ended = end_live_sessions(&mut tx, user_id, reason, now, until).await?;
                tx.commit().await?;
                Ok(ended)
            }

            async fn bump_token_version(
                &self,
                user_id: &str,
                now: prolong_core::Millis,
                until: prolong_core::Millis,
            ) -> $crate::Result<Option<i64>> {
                use sqlx::Row;
                let mut tx = self.writer().begin().await?;
                feed_lock(&mut tx).await?;
                let row = sqlx::query("UPDATE users SET token_version = token_version + 1 WHERE id = $1 RETURNING token_version")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let version: Option<i64> = row.map(|r| r.try_get("token_version")).transpose()?;
                if let Some(v) = version {
                    sqlx::query(
                        "INSERT INTO revocations (kind, session_id, user_id, min_ver, until, created_at) VALUES ('user', NULL, $1, $2, $3, $4)",
                    )
                    .bind(user_id)
                    .bind(v)
                    .bind(until)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(version)
            }

            async fn create_session(&self, s: &$crate::Session) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO sessions (id, user_id, client_id, salt, mac_kid, generation, rotated_at, last_active, \
                     auth_time, token_version, ended_reason, ended_at, user_agent) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(s.id.to_vec())
                .bind(&s.user_id)
                .bind(&s.client_id)
                .bind(s.salt.to_vec())
                .bind(s.mac_kid.to_vec())
                .bind(s.state.generation as i64)
                .bind(s.state.rotated_at)
                .bind(s.state.last_active)
                .bind(s.state.auth_time)
                .bind(s.state.token_version)
                .bind(s.state.ended.map(|r| r.as_str()))
                .bind(s.ended_at)
                .bind(&s.user_agent)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn session(&self, id: &$crate::SessionId) -> $crate::Result<Option<$crate::SessionWithUser>> {
                session_on(&mut *self.reader().acquire().await?, id).await
            }

            async fn rotate(
                &self,
                id: &$crate::SessionId,
                from: u64,
                now: prolong_core::Millis,
                last_active: prolong_core::Millis,
                mac_kid: &$crate::MacKeyId,
            ) -> $crate::Result<bool> {
                rotate_on(&mut *self.writer().acquire().await?, id, from, now, last_active, mac_kid).await
            }

            async fn end_session(
                &self,
                id: &$crate::SessionId,
                reason: prolong_core::Reason,
                now: prolong_core::Millis,
                until: prolong_core::Millis,
            ) -> $crate::Result<bool> {
                let mut tx = self.writer().begin().await?;
                if reason.is_revocation() {
                    feed_lock(&mut tx).await?;
                }
                let done = sqlx::query("UPDATE sessions SET ended_reason = $1, ended_at = $2 WHERE id = $3 AND ended_reason IS NULL")
                    .bind(reason.as_str())
                    .bind(now)
                    .bind(id.to_vec())
                    .execute(&mut *tx)
                    .await?;
                let ended = done.rows_affected() == 1;
                if ended && reason.is_revocation() {
                    record_session_revocation(&mut tx, id, now, until).await?;
                }
                tx.commit().await?;
                Ok(ended)
            }

            async fn sessions_of(&self, user_id: &str) -> $crate::Result<Vec<$crate::Session>> {
                let sql = format!(
                    "SELECT {} FROM sessions s WHERE s.user_id = $1 AND s.ended_reason IS NULL ORDER BY s.auth_time DESC",
                    $crate::sql::SESSION_COLUMNS
                );
                let rows = sqlx::query(&sql).bind(user_id).fetch_all(self.reader()).await?;
                rows.iter().map(session_from_row).collect()
            }

            async fn decide_and_apply(
                &self,
                id: &$crate::SessionId,
                decide: $crate::Decide,
            ) -> $crate::Result<Option<($crate::SessionWithUser, $crate::SessionWrite, bool)>> {
                self.$decide_and_apply(id, decide).await
            }

            async fn live_sessions(&self, limit: i64) -> $crate::Result<Vec<$crate::Session>> {
                let sql = format!(
                    "SELECT {} FROM sessions s WHERE s.ended_reason IS NULL ORDER BY s.auth_time DESC LIMIT $1",
                    $crate::sql::SESSION_COLUMNS
                );
                let rows = sqlx::query(&sql).bind(limit).fetch_all(self.reader()).await?;
                rows.iter().map(session_from_row).collect()
            }

            async fn purge(&self, before: $crate::PurgeBefore, limit: i64) -> $crate::Result<$crate::Purged> {
                // One short statement per kind, in batches, so the writer is never held long.
                let sessions = sqlx::query(
                    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE \
                     (ended_at IS NOT NULL AND ended_at < $1) OR last_active < $2 OR auth_time < $3 LIMIT $4)",
                )
                .bind(before.ended_at)
                .bind(before.last_active)
                .bind(before.auth_time)
                .bind(limit)
                .execute(self.writer())
                .await?
                .rows_affected();
                let revocations = sqlx::query("DELETE FROM revocations WHERE seq IN (SELECT seq FROM revocations WHERE until < $1 LIMIT $2)")
                    .bind(before.until)
                    .bind(limit)
                    .execute(self.writer())
                    .await?
                    .rows_affected();
                Ok($crate::Purged { sessions, revocations })
            }

            async fn revocations_after(
                &self,
                cursor: i64,
                now: prolong_core::Millis,
                limit: i64,
            ) -> $crate::Result<Vec<$crate::Revocation>> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT seq, kind, session_id, user_id, min_ver, until FROM revocations \
                     WHERE seq > $1 AND until > $2 ORDER BY seq LIMIT $3",
                )
                .bind(cursor)
                .bind(now)
                .bind(limit)
                .fetch_all(self.reader())
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let kind: String = row.try_get("kind")?;
                    let kind = if kind == "user" {
                        $crate::RevocationKind::User {
                            user_id: row.try_get::<Option<String>, _>("user_id")?.unwrap_or_default(),
                            min_version: row.try_get::<Option<i64>, _>("min_ver")?.unwrap_or_default(),
                        }
                    } else {
                        let sid: Option<Vec<u8>> = row.try_get("session_id")?;
                        $crate::RevocationKind::Session($crate::sql::fixed(sid.unwrap_or_default(), "session id")?)
                    };
                    out.push($crate::Revocation { seq: row.try_get("seq")?, kind, until: row.try_get("until")? });
                }
                Ok(out)
            }

            async fn latest_revocation(&self) -> $crate::Result<i64> {
                use sqlx::Row;
                let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM revocations").fetch_one(self.reader()).await?;
                Ok(row.try_get("seq")?)
            }

            async fn keys(&self) -> $crate::Result<Vec<$crate::StoredKey>> {
                use sqlx::Row;
                let rows = sqlx::query(
                    "SELECT kid, kind, alg, material, encrypted, created_at, retired_at FROM keys ORDER BY created_at, kid",
                )
                .fetch_all(self.reader())
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let kind: String = row.try_get("kind")?;
                    let Some(kind) = $crate::KeyKind::parse(&kind) else { continue };
                    let encrypted: i64 = row.try_get("encrypted")?;
                    out.push($crate::StoredKey {
                        kid: row.try_get("kid")?,
                        kind,
                        alg: row.try_get("alg")?,
                        material: row.try_get("material")?,
                        encrypted: encrypted != 0,
                        created_at: row.try_get("created_at")?,
                        retired_at: row.try_get("retired_at")?,
                    });
                }
                Ok(out)
            }

            async fn add_key(
                &self,
                key: &$crate::StoredKey,
                only_if_none_active: bool,
                retire_others: bool,
                now: prolong_core::Millis,
            ) -> $crate::Result<bool> {
                let mut tx = self.writer().begin().await?;
                if retire_others {
                    sqlx::query("UPDATE keys SET retired_at = $1 WHERE kind = $2 AND retired_at IS NULL")
                        .bind(now)
                        .bind(key.kind.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                let guard = if only_if_none_active {
                    "WHERE NOT EXISTS (SELECT 1 FROM keys WHERE kind = $2 AND alg = $3 AND retired_at IS NULL)"
                } else {
                    ""
                };
                let sql = format!(
                    "INSERT INTO keys (kid, kind, alg, material, encrypted, created_at, retired_at) \
                     SELECT $1, $2, $3, $4, $5, $6, NULL {guard}"
                );
                let done = sqlx::query(&sql)
                    .bind(&key.kid)
                    .bind(key.kind.as_str())
                    .bind(&key.alg)
                    .bind(&key.material)
                    .bind(i64::from(key.encrypted))
                    .bind(key.created_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() == 1)
            }

            async fn replace_key_material(&self, kid: &str, material: &[u8], encrypted: bool) -> $crate::Result<()> {
                sqlx::query("UPDATE keys SET material = $1, encrypted = $2 WHERE kid = $3")
                    .bind(material)
                    .bind(i64::from(encrypted))
                    .bind(kid)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }
        }

        async fn end_live_sessions(
            tx: &mut sqlx::Transaction<'_, $db>,
            user_id: &str,
            reason: prolong_core::Reason,
            now: prolong_core::Millis,
            until: prolong_core::Millis,
        ) -> $crate::Result<Vec<$crate::EndedSession>> {
            use sqlx::Row;
            let rows = sqlx::query(
                "UPDATE sessions SET ended_reason = $1, ended_at = $2 WHERE user_id = $3 AND ended_reason IS NULL \
                 RETURNING id, rotated_at",
            )
            .bind(reason.as_str())
            .bind(now)
            .bind(user_id)
            .fetch_all(&mut **tx)
            .await?;
            let mut ended = Vec::with_capacity(rows.len());
            for r in &rows {
                let e = $crate::EndedSession { id: $crate::sql::fixed(r.try_get("id")?, "session id")?, rotated_at: r.try_get("rotated_at")? };
                if reason.is_revocation() {
                    record_session_revocation(tx, &e.id, now, until).await?;
                }
                ended.push(e);
            }
            Ok(ended)
        }

        async fn record_session_revocation(
            tx: &mut sqlx::Transaction<'_, $db>,
            id: &$crate::SessionId,
            now: prolong_core::Millis,
            until: prolong_core::Millis,
        ) -> $crate::Result<()> {
            sqlx::query(
                "INSERT INTO revocations (kind, session_id, user_id, min_ver, until, created_at) VALUES ('session', $1, NULL, NULL, $2, $3)",
            )
            .bind(id.to_vec())
            .bind(until)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }
    };
}

pub(crate) use impl_store;
