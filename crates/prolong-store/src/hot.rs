//! SQLite's refresh path on one dedicated thread: read the session, decide, write, in batches.
//!
//! sqlx runs every SQLite statement on a per-connection worker thread, two thread hops per
//! statement; for the refresh path (a read and a conditional write per request) that dominated
//! the cost. Here one thread owns a `rusqlite` connection and runs each job — read, the caller's
//! pure decision, write — inside a `BEGIN IMMEDIATE` transaction that groups every job waiting at
//! that moment (group commit). Replies go out only after `COMMIT`, so no token is handed out for a
//! state that is not durable. Holding the write lock while deciding also makes the decision and
//! the write one atomic step: no retry loop is needed on this path.
//!
//! Checkpoints (copying the WAL back into the database file, with an `fsync`) would otherwise run
//! inside whichever commit crosses SQLite's automatic threshold, stalling every refresh queued
//! behind it for milliseconds. So every connection has `wal_autocheckpoint = 0`, and a second
//! thread here runs a `PASSIVE` checkpoint, which never blocks the writer, a few times a second.

use crate::model::{Decide, Session, SessionWithUser, SessionWrite};
use crate::{Result, StoreError};
use prolong_core::SessionState;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::mpsc;
use tokio::sync::oneshot;

type Outcome = Result<Option<(SessionWithUser, SessionWrite, bool)>>;

struct Job {
    id: [u8; 16],
    decide: Decide,
    reply: oneshot::Sender<Outcome>,
}

/// The handle the async side sends jobs through.
pub(crate) struct HotPath {
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    stop_checkpoints: std::sync::Mutex<Option<mpsc::Sender<()>>>,
    checkpointer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

const MAX_BATCH: usize = 256;

/// How often the checkpoint thread copies the WAL into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// How often the writer completes a checkpoint itself, so the WAL starts over.
const WRITER_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", "0")?;
    // A WAL that grew under load is cut back to this size when it starts over.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

/// Runs a passive checkpoint every [`CHECKPOINT_EVERY`] until `stop` is dropped, and a last one
/// then.
fn checkpoint(conn: Connection, stop: mpsc::Receiver<()>) {
    loop {
        let stopping = !matches!(stop.recv_timeout(CHECKPOINT_EVERY), Err(mpsc::RecvTimeoutError::Timeout));
        // Busy (another checkpoint running) or a reader holding old frames are not errors: the next
        // round copies what this one could not.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "SQLite checkpoint failed");
        }
        if stopping {
            return;
        }
    }
}

impl HotPath {
    pub(crate) fn start(path: &Path) -> Result<HotPath> {
        let other = |e: &dyn std::fmt::Display| StoreError::Other(e.to_string());
        let conn = open(path).map_err(|e| other(&e))?;
        let checkpoints = open(path).map_err(|e| other(&e))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("prolong-sqlite-refresh".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| other(&e))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let checkpointer = std::thread::Builder::new()
            .name("prolong-sqlite-checkpoint".into())
            .spawn(move || checkpoint(checkpoints, stopped))
            .map_err(|e| other(&e))?;
        Ok(HotPath {
            tx: std::sync::Mutex::new(Some(tx)),
            thread: std::sync::Mutex::new(Some(thread)),
            stop_checkpoints: std::sync::Mutex::new(Some(stop)),
            checkpointer: std::sync::Mutex::new(Some(checkpointer)),
        })
    }

    pub(crate) async fn decide_and_apply(&self, id: &[u8; 16], decide: Decide) -> Outcome {
        let (reply, rx) = oneshot::channel();
        let sent = match self.tx.lock() {
            Ok(guard) => guard.as_ref().is_some_and(|tx| tx.send(Job { id: *id, decide, reply }).is_ok()),
            Err(_) => false,
        };
        if !sent {
            return Err(StoreError::Unavailable("the database is closed".into()));
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the database writer stopped".into())))
    }

    /// Stops the writer thread after the jobs already queued, then the checkpoint thread after a
    /// last checkpoint.
    pub(crate) fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        join(&self.thread);
        if let Ok(mut stop) = self.stop_checkpoints.lock() {
            stop.take();
        }
        join(&self.checkpointer);
    }
}

fn join(thread: &std::sync::Mutex<Option<std::thread::JoinHandle<()>>>) {
    if let Ok(mut t) = thread.lock()
        && let Some(t) = t.take()
    {
        let _ = t.join();
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut last_checkpoint = std::time::Instant::now();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            for job in batch {
                let _ = job.reply.send(Err(StoreError::Unavailable(e.to_string())));
            }
            continue;
        }
        let mut done = Vec::with_capacity(batch.len());
        for job in batch {
            let outcome = step(&conn, &job.id, job.decide).map_err(|e| StoreError::Other(e.to_string()));
            done.push((job.reply, outcome));
        }
        match conn.execute_batch("COMMIT") {
            Ok(()) => {
                for (reply, outcome) in done {
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                for (reply, _) in done {
                    let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                }
            }
        }
        // The checkpoint thread copies the WAL while this one keeps appending, so its checkpoints
        // never catch up with the last frame, and SQLite starts the WAL over only after one
        // that did. Once a second, between two transactions and after the replies went out, this
        // thread finishes one itself: a few pages that changed since and two short fsyncs.
        if last_checkpoint.elapsed() >= WRITER_CHECKPOINT_EVERY {
            last_checkpoint = std::time::Instant::now();
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "SQLite checkpoint failed");
            }
        }
    }
}

fn step(
    conn: &Connection,
    id: &[u8; 16],
    decide: Decide,
) -> rusqlite::Result<Option<(SessionWithUser, SessionWrite, bool)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.user_id, s.client_id, s.salt, s.mac_kid, s.generation, s.rotated_at, s.last_active, s.auth_time, \
         s.token_version, s.ended_reason, s.ended_at, s.user_agent, u.token_version \
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?1",
    )?;
    let found = stmt
        .query_row(params![&id[..]], |r| {
            let salt: Vec<u8> = r.get(2)?;
            let mac_kid: Vec<u8> = r.get(3)?;
            let generation: i64 = r.get(4)?;
            let ended: Option<String> = r.get(9)?;
            Ok((
                Session {
                    id: *id,
                    user_id: r.get(0)?,
                    client_id: r.get(1)?,
                    salt: salt.try_into().unwrap_or([0; 32]),
                    mac_kid: mac_kid.try_into().unwrap_or([0; 8]),
                    state: SessionState {
                        generation: generation as u64,
                        rotated_at: r.get(5)?,
                        last_active: r.get(6)?,
                        auth_time: r.get(7)?,
                        token_version: r.get(8)?,
                        ended: crate::model::reason_from_db(ended),
                    },
                    ended_at: r.get(10)?,
                    user_agent: r.get(11)?,
                },
                r.get::<_, i64>(12)?,
            ))
        })
        .optional()?;
    let Some((session, user_version)) = found else { return Ok(None) };
    let found = SessionWithUser { session, user_version };
    let write = decide(&found);
    let applied = match write {
        SessionWrite::Nothing => true,
        SessionWrite::Rotate { from, now, last_active, mac_kid } => {
            conn.prepare_cached(
                "UPDATE sessions SET generation = generation + 1, rotated_at = ?1, last_active = ?2, mac_kid = ?3 \
                 WHERE id = ?4 AND generation = ?5 AND ended_reason IS NULL",
            )?
            .execute(params![now, last_active, &mac_kid[..], &id[..], from as i64])?
                == 1
        }
        SessionWrite::End { reason, now, until } => {
            let ended = conn
                .prepare_cached(
                    "UPDATE sessions SET ended_reason = ?1, ended_at = ?2 WHERE id = ?3 AND ended_reason IS NULL",
                )?
                .execute(params![reason.as_str(), now, &id[..]])?
                == 1;
            if ended && reason.is_revocation() {
                conn.prepare_cached(
                    "INSERT INTO revocations (kind, session_id, user_id, min_ver, until, created_at) \
                     VALUES ('session', ?1, NULL, NULL, ?2, ?3)",
                )?
                .execute(params![&id[..], until, now])?;
            }
            ended
        }
    };
    Ok(Some((found, write, applied)))
}
