//! SQLite's refresh path: read the session, decide, write, in batches, on one connection.
//!
//! sqlx runs every SQLite statement on a per-connection worker thread, two thread hops per
//! statement; for the refresh path (a read and a conditional write per request) that dominated
//! the cost. Here one `rusqlite` connection runs each job — read, the caller's pure decision,
//! write — inside a `BEGIN IMMEDIATE` transaction that groups every job waiting at that moment
//! (group commit). Replies go out only after `COMMIT`, so no token is handed out for a state that
//! is not durable. Holding the write lock while deciding also makes the decision and the write one
//! atomic step: no retry loop is needed on this path.
//!
//! The batches run on the async runtime itself, in one "combiner" task at a time: the first
//! request that finds no combiner running spawns one, and every request that arrives before it
//! runs joins its batch. A batch is a few microseconds of CPU per job and never waits: the
//! transaction is begun without a busy timeout, and only when another connection (a CLI command,
//! another process, the sqlx writer) holds SQLite's write lock does the batch move to a blocking
//! thread that may wait for it. Handing every batch to a dedicated thread instead cost two context
//! switches per batch, a tenth of the refresh path on one core.
//!
//! Checkpoints (copying the WAL back into the database file, with an `fsync`) would otherwise run
//! inside whichever commit crosses SQLite's automatic threshold, stalling every refresh queued
//! behind it for milliseconds. So every connection has `wal_autocheckpoint = 0`, and a thread here
//! runs a `PASSIVE` checkpoint, which never blocks the writer, a few times a second. Those never
//! catch up with a writer that keeps appending, and SQLite starts the WAL over only after a
//! checkpoint that did; so once a second the combiner also finishes one itself, between two
//! batches, on a blocking thread: a few pages and two short fsyncs, while refreshes queue. The
//! first commit after the WAL starts over syncs the WAL's new header: one short fsync a second on
//! the runtime.
//!
//! A decision that panics fails its own request only; a transaction SQLite rolls back by itself
//! (a full disk, an I/O error) fails the whole batch, and none of it is answered as done.

use crate::model::{Decide, Session, SessionWithUser, SessionWrite};
use crate::{Result, StoreError};
use prolong_core::SessionState;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

type Outcome = Result<Option<(SessionWithUser, SessionWrite, bool)>>;

struct Job {
    id: [u8; 16],
    decide: Decide,
    reply: oneshot::Sender<Outcome>,
}

/// The handle the async side hands jobs to.
pub(crate) struct HotPath {
    shared: Arc<Shared>,
    stop_checkpoints: Mutex<Option<mpsc::Sender<()>>>,
    checkpointer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Used by the combiner only (or by the blocking thread it waits for).
    conn: Arc<Mutex<Connection>>,
}

struct Queue {
    jobs: Vec<Job>,
    /// A combiner task is running; it takes the jobs.
    combining: bool,
    /// No new jobs are taken.
    closed: bool,
    last_checkpoint: Instant,
}

/// Jobs per transaction; a combiner yields to the runtime between two batches.
const MAX_BATCH: usize = 64;
/// How long a batch waits for SQLite's write lock when another connection holds it.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often the checkpoint thread copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// How often the combiner completes a checkpoint itself, so the WAL starts over.
const WRITER_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "wal_autocheckpoint", "0")?;
    // A WAL that grew under load is cut back to this size when it starts over.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

fn passive_checkpoint(conn: &Connection) {
    // A reader holding old frames is not an error: the next round copies what this one could not.
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "SQLite checkpoint failed");
    }
}

/// Runs a passive checkpoint every [`CHECKPOINT_EVERY`] until `stop` is dropped, and a last one
/// then.
fn checkpoint_thread(conn: Connection, stop: mpsc::Receiver<()>) {
    loop {
        let stopping = !matches!(stop.recv_timeout(CHECKPOINT_EVERY), Err(mpsc::RecvTimeoutError::Timeout));
        passive_checkpoint(&conn);
        if stopping {
            return;
        }
    }
}

impl HotPath {
    pub(crate) fn start(path: &Path) -> Result<HotPath> {
        let other = |e: &dyn std::fmt::Display| StoreError::Other(e.to_string());
        // The combiner's connection never waits for the write lock on the runtime (see above).
        let conn = open(path, Duration::ZERO).map_err(|e| other(&e))?;
        let checkpoints = open(path, LOCK_WAIT).map_err(|e| other(&e))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let checkpointer = std::thread::Builder::new()
            .name("prolong-sqlite-checkpoint".into())
            .spawn(move || checkpoint_thread(checkpoints, stopped))
            .map_err(|e| other(&e))?;
        let queue = Queue { jobs: Vec::new(), combining: false, closed: false, last_checkpoint: Instant::now() };
        Ok(HotPath {
            shared: Arc::new(Shared { queue: Mutex::new(queue), conn: Arc::new(Mutex::new(conn)) }),
            stop_checkpoints: Mutex::new(Some(stop)),
            checkpointer: Mutex::new(Some(checkpointer)),
        })
    }

    pub(crate) async fn decide_and_apply(&self, id: &[u8; 16], decide: Decide) -> Outcome {
        let (reply, rx) = oneshot::channel();
        let start = match self.shared.queue.lock() {
            Ok(mut q) if !q.closed => {
                q.jobs.push(Job { id: *id, decide, reply });
                !std::mem::replace(&mut q.combining, true)
            }
            _ => return Err(StoreError::Unavailable("the database is closed".into())),
        };
        if start {
            // A task of its own, so that a request going away cannot take the combiner with it.
            // The guard goes in before the task first runs: a task dropped unpolled (the runtime
            // shutting down) still clears `combining`.
            tokio::spawn(combine(CombinerGuard { shared: self.shared.clone(), armed: true }));
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the database writer stopped".into())))
    }

    /// Takes no new jobs, waits for the queued ones, then stops the checkpoint thread after a
    /// last checkpoint.
    pub(crate) async fn close(&self) {
        let deadline = Instant::now() + LOCK_WAIT * 2;
        while Instant::now() < deadline {
            match self.shared.queue.lock() {
                Ok(mut q) => {
                    q.closed = true;
                    if !q.combining {
                        break;
                    }
                }
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Ok(mut stop) = self.stop_checkpoints.lock() {
            stop.take();
        }
        let thread = self.checkpointer.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Clears `combining` if the combiner task ends without doing so (the runtime shutting down, or a
/// panic outside a decision), failing the jobs left so that no request waits forever.
struct CombinerGuard {
    shared: Arc<Shared>,
    armed: bool,
}

impl Drop for CombinerGuard {
    fn drop(&mut self) {
        if self.armed
            && let Ok(mut q) = self.shared.queue.lock()
        {
            q.combining = false;
            q.jobs.clear();
        }
    }
}

/// The combiner: runs batches until the queue is empty.
async fn combine(mut guard: CombinerGuard) {
    let shared = guard.shared.clone();
    loop {
        let (batch, checkpoint_due) = {
            let Ok(mut q) = shared.queue.lock() else { return };
            if q.jobs.is_empty() {
                q.combining = false;
                guard.armed = false;
                return;
            }
            let n = q.jobs.len().min(MAX_BATCH);
            let due = q.last_checkpoint.elapsed() >= WRITER_CHECKPOINT_EVERY;
            if due {
                q.last_checkpoint = Instant::now();
            }
            (q.jobs.drain(..n).collect::<Vec<_>>(), due)
        };
        let left = run_batch(&lock(&shared.conn), batch, false);
        if let Some(batch) = left {
            // Another connection holds the write lock: wait for it off the runtime.
            let conn = shared.conn.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let conn = lock(&conn);
                let _ = conn.busy_timeout(LOCK_WAIT);
                let _ = run_batch(&conn, batch, true);
                let _ = conn.busy_timeout(Duration::ZERO);
            })
            .await;
        }
        if checkpoint_due {
            let conn = shared.conn.clone();
            let _ = tokio::task::spawn_blocking(move || passive_checkpoint(&lock(&conn))).await;
        }
        // Let the requests that are ready run (and queue their jobs) before the next batch.
        tokio::task::yield_now().await;
    }
}

/// The connection, even if a thread panicked while holding it: `run_batch` checks its state first.
fn lock(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `batch` in one transaction and answers every job. When the write lock is taken and
/// `wait` is false, gives the batch back untouched.
fn run_batch(conn: &Connection, batch: Vec<Job>, wait: bool) -> Option<Vec<Job>> {
    if !conn.is_autocommit() {
        // A transaction left open (a failed ROLLBACK, a panic): nothing of it was answered as done.
        let _ = conn.execute_batch("ROLLBACK");
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        if !wait && e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            return Some(batch);
        }
        for job in batch {
            let _ = job.reply.send(Err(StoreError::Unavailable(e.to_string())));
        }
        return None;
    }
    let mut done = Vec::with_capacity(batch.len());
    for Job { id, decide, reply } in batch {
        // A decision that panics fails its own request, not the connection or the batch.
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| step(conn, &id, decide))) {
            Ok(r) => r.map_err(|e| StoreError::Other(e.to_string())),
            Err(_) => Err(StoreError::Other("a refresh decision panicked".into())),
        };
        done.push((reply, outcome));
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an I/O error): nothing of
            // this batch was written, and running the rest would commit each job on its own.
            let failed = || Err(StoreError::Unavailable("the transaction was rolled back".into()));
            for (reply, _) in done {
                let _ = reply.send(failed());
            }
            return None;
        }
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
    None
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
