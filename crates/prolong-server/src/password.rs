//! Password hashing with argon2id (OWASP parameters), off the async runtime.
//!
//! Hashing runs on a few threads of its own (one per core), at a lower scheduling priority (nice
//! 10 on Linux): when the machine is busy serving refreshes, a flood of logins gets the CPU the
//! runtime leaves, instead of half of it; when it is not, logins get all of it. Jobs queue in front
//! of those threads, and a job whose request has gone away is skipped. An unknown user is checked
//! against a dummy hash, so it costs the same time as a wrong password.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// The nice value of the hashing threads.
const HASHING_NICE: i32 = 10;

/// OWASP's argon2id recommendation: 19 MiB, 2 iterations, 1 lane.
fn argon2() -> Argon2<'static> {
    // The constants are valid, so `Params::new` cannot fail; fall back to the crate's defaults
    // (also argon2id, 19 MiB, 2 iterations) rather than panic.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashing failed (it only can on resource exhaustion).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed")]
pub struct HashError;

type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies passwords on a bounded set of low-priority threads.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    dummy: Arc<str>,
}

impl Hasher {
    /// A hasher with `threads` hashing threads; they stop when the last clone is dropped.
    pub fn new(threads: usize) -> Result<Self, HashError> {
        let dummy = hash_blocking("prolong-dummy-password-for-unknown-users")?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("prolong-argon2-{i}"))
                .spawn(move || hashing_thread(&queue))
                .map_err(|_| HashError)?;
        }
        Ok(Hasher { jobs, dummy: dummy.into() })
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, HashError> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The request went away while this waited: nobody needs the answer.
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        });
        self.jobs.send(job).map_err(|_| HashError)?;
        rx.await.map_err(|_| HashError)
    }

    /// A PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move || hash_blocking(&password)).await?
    }

    /// Checks `password` against `stored` (or against the dummy when there is no user), in the
    /// same time either way.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, HashError> {
        let known = stored.as_deref().is_some_and(|s| !s.is_empty());
        let target = if known { stored.unwrap_or_default() } else { self.dummy.to_string() };
        let ok = self
            .run(move || match PasswordHash::new(&target) {
                Ok(h) => argon2().verify_password(password.as_bytes(), &h).is_ok(),
                Err(_) => false,
            })
            .await?;
        Ok(ok && known)
    }
}

fn hashing_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        // The lock is held only while waiting for the next job, not while running it.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        match job {
            // A job that panics fails its own request (its answer is dropped); the thread lives
            // on, so the pool never shrinks to nothing and leaves logins waiting forever.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return, // every Hasher is gone
        }
    }
}

/// Lowers this thread's scheduling priority; Linux keeps a nice value per thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHING_NICE) {
        tracing::debug!(error = %e, "could not lower the hashing thread's priority");
    }
}

/// Hashes synchronously (for the CLI and the dummy).
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    let salt_bytes = prolong_core::keys::random_bytes::<16>().map_err(|_| HashError)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|_| HashError)?;
    Ok(argon2().hash_password(password.as_bytes(), &salt).map_err(|_| HashError)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_right_and_wrong_and_unknown() {
        let h = Hasher::new(2).expect("hasher");
        let stored = h.hash("correct horse".into()).await.expect("hash");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h.verify("correct horse".into(), Some(stored.clone())).await.expect("verify"));
        assert!(!h.verify("wrong".into(), Some(stored)).await.expect("verify"));
        assert!(!h.verify("prolong-dummy-password-for-unknown-users".into(), None).await.expect("verify"));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_thread_lives_on() {
        let h = Hasher::new(1).expect("hasher");
        assert!(h.run(|| -> bool { panic!("a broken hash") }).await.is_err());
        // The only hashing thread still takes jobs.
        let stored = h.hash("correct horse".into()).await.expect("hash");
        assert!(h.verify("correct horse".into(), Some(stored)).await.expect("verify"));
    }
}
