//! The in-memory key ring: signing keys and refresh MAC keys, parsed once and swapped atomically.
//!
//! Keys live in the database so that replicas share them. Each server reloads them every
//! [`RELOAD_EVERY`] (so `prolong keys rotate` takes effect within a minute without a restart) and
//! also, rate-limited, when it meets a key id it does not know (a token signed by a replica that
//! reloaded first). Private material is sealed with AES-256-GCM when a key-encryption key is set.

use arc_swap::ArcSwap;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prolong_core::Millis;
use prolong_core::keys::{self, Algorithm, SigningKey, VerifyingKey};
use prolong_core::refresh_token::MacKeyId;
use prolong_store::{KeyKind, Store, StoreError, StoredKey};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

/// How often a running server reloads keys from the database.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// Slack added to retention: a replica may keep signing with a retired key until its next reload.
const RELOAD_SLACK_MS: Millis = 60_000;
/// Unknown key ids trigger at most one reload per this many milliseconds.
const MISS_RELOAD_MS: Millis = 1_000;

/// A failure to load or create keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be generated or parsed.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// Keys are encrypted but no (or a different) key-encryption key is configured.
    #[error("key {0} is encrypted and cannot be opened with the configured key_encryption_key")]
    Sealed(String),
    /// The in-process verifier could not be built.
    #[error("verifier: {0}")]
    Verifier(String),
    /// The database holds no unretired key of a kind.
    #[error("no active {0} key in the database")]
    NoActiveKey(&'static str),
}

/// Seals private key material with the key-encryption key.
pub struct Sealer(LessSafeKey);

impl Sealer {
    /// Wraps a 32-byte key-encryption key.
    pub fn new(kek: &[u8; 32]) -> Result<Self, KeyRingError> {
        let key = UnboundKey::new(&AES_256_GCM, kek).map_err(|_| keys::KeyError::Crypto)?;
        Ok(Sealer(LessSafeKey::new(key)))
    }

    /// nonce ‖ ciphertext ‖ tag, bound to the key id.
    pub fn seal(&self, kid: &str, plain: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        let nonce_bytes = keys::random_bytes::<NONCE_LEN>()?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| keys::KeyError::Crypto)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens what [`Sealer::seal`] made.
    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, KeyRingError> {
        if sealed.len() < NONCE_LEN {
            return Err(KeyRingError::Sealed(kid.into()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyRingError::Sealed(kid.into()))?;
        let mut buf = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| KeyRingError::Sealed(kid.into()))?;
        Ok(plain.to_vec())
    }
}

/// One loaded generation of keys.
pub struct Keys {
    /// Signs new access tokens.
    pub signer: Arc<SigningKey>,
    /// Every signing key whose tokens may still be valid, by `kid`.
    pub verifiers: HashMap<String, VerifyingKey>,
    /// The JWKS document (public keys only).
    pub jwks: bytes::Bytes,
    /// The MAC key new refresh tokens are made with.
    pub mac_current: (MacKeyId, hmac::Key),
    /// Every refresh MAC key still accepted, by id.
    pub macs: HashMap<MacKeyId, hmac::Key>,
    /// The same verifier resource servers use (`prolong-verify`), over `verifiers`, with its
    /// cache of already verified tokens; the server's bearer endpoints go through it.
    pub verifier: prolong_verify::Verifier,
}

/// The shared, reloadable key ring.
pub struct KeyRing {
    current: ArcSwap<Keys>,
    store: Arc<dyn Store>,
    sealer: Option<Sealer>,
    algorithm: Algorithm,
    policy: prolong_core::Policy,
    issuer: String,
    audience: String,
    last_reload: AtomicI64,
    reload_lock: Mutex<()>,
}

/// A summary of a stored key, for `prolong keys list`.
#[derive(Debug)]
pub struct KeyInfo {
    /// The key id.
    pub kid: String,
    /// `signing` or `refresh_mac`.
    pub kind: &'static str,
    /// Algorithm.
    pub alg: String,
    /// Created (ms).
    pub created_at: Millis,
    /// Retired (ms).
    pub retired_at: Option<Millis>,
    /// Sealed at rest.
    pub encrypted: bool,
}

fn mac_kid_from_str(kid: &str) -> Option<MacKeyId> {
    URL_SAFE_NO_PAD.decode(kid).ok()?.try_into().ok()
}

impl KeyRing {
    /// Loads keys, creating the first signing key (for the configured algorithm) and MAC key if
    /// there are none, and sealing plain-text keys when a key-encryption key is configured.
    pub async fn load(
        store: Arc<dyn Store>,
        sealer: Option<Sealer>,
        algorithm: Algorithm,
        policy: prolong_core::Policy,
        (issuer, audience): (&str, &str),
        now: Millis,
    ) -> Result<Arc<KeyRing>, KeyRingError> {
        let stored = store.keys().await?;
        let has =
            |kind: KeyKind, alg: &str| stored.iter().any(|k| k.kind == kind && k.alg == alg && k.retired_at.is_none());
        if !has(KeyKind::Signing, algorithm.as_str()) {
            // A new algorithm replaces the old one's key, which stays published until its tokens
            // expire, as after `keys rotate`.
            let others = stored.iter().any(|k| k.kind == KeyKind::Signing && k.retired_at.is_none());
            let key = new_stored_key(KeyKind::Signing, algorithm, sealer.as_ref(), now)?;
            store.add_key(&key, !others, others, now).await?;
        }
        if !has(KeyKind::RefreshMac, "HS256") {
            let key = new_stored_key(KeyKind::RefreshMac, Algorithm::HS256, sealer.as_ref(), now)?;
            store.add_key(&key, true, false, now).await?;
        }
        if let Some(sealer) = &sealer {
            for k in store.keys().await?.into_iter().filter(|k| !k.encrypted) {
                store.replace_key_material(&k.kid, &sealer.seal(&k.kid, &k.material)?, true).await?;
            }
        }
        let keys = build(&store.keys().await?, sealer.as_ref(), algorithm, &policy, (issuer, audience), now)?;
        Ok(Arc::new(KeyRing {
            current: ArcSwap::from_pointee(keys),
            store,
            sealer,
            algorithm,
            policy,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            last_reload: AtomicI64::new(now),
            reload_lock: Mutex::new(()),
        }))
    }

    /// The keys in force.
    pub fn get(&self) -> arc_swap::Guard<Arc<Keys>> {
        self.current.load()
    }

    /// Reloads from the database.
    pub async fn reload(&self, now: Millis) -> Result<(), KeyRingError> {
        let _guard = self.reload_lock.lock().await;
        self.reload_locked(now).await
    }

    async fn reload_locked(&self, now: Millis) -> Result<(), KeyRingError> {
        self.last_reload.store(now, Ordering::Relaxed);
        let keys = build(
            &self.store.keys().await?,
            self.sealer.as_ref(),
            self.algorithm,
            &self.policy,
            (&self.issuer, &self.audience),
            now,
        )?;
        self.current.store(Arc::new(keys));
        Ok(())
    }

    /// Reloads when the keys in memory are older than `max_age_ms`, so the JWKS a resource server
    /// fetches always lists a key another replica has started signing with.
    pub async fn reload_if_stale(&self, now: Millis, max_age_ms: Millis) {
        if now - self.last_reload.load(Ordering::Relaxed) < max_age_ms {
            return;
        }
        let _guard = self.reload_lock.lock().await;
        if now - self.last_reload.load(Ordering::Relaxed) < max_age_ms {
            return;
        }
        if let Err(e) = self.reload_locked(now).await {
            tracing::warn!(error = %e, "reloading keys failed; serving the current ones");
        }
    }

    /// Reloads after a key id was not found at `missed_at`, unless a reload started since then.
    /// Reloads are coalesced and at most one per second starts, so garbage key ids cannot make
    /// the server hammer the database; a real new key is always found, at worst a second later.
    pub async fn reload_on_miss(&self, missed_at: Millis) -> bool {
        let _guard = self.reload_lock.lock().await;
        let last = self.last_reload.load(Ordering::Relaxed);
        if last > missed_at {
            return true;
        }
        let wait = last + MISS_RELOAD_MS - crate::service::now_ms();
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
        }
        match self.reload_locked(crate::service::now_ms()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "reloading keys failed");
                false
            }
        }
    }

    /// The verification key for a `kid`, reloading once if it is unknown.
    pub async fn verifier(&self, kid: &str, now: Millis) -> Option<VerifyingKey> {
        if let Some(k) = self.get().verifiers.get(kid) {
            return Some(k.clone());
        }
        if self.reload_on_miss(now).await {
            return self.get().verifiers.get(kid).cloned();
        }
        None
    }

    /// The refresh MAC key for an id, reloading once if it is unknown.
    pub async fn mac(&self, id: &MacKeyId, now: Millis) -> Option<hmac::Key> {
        if let Some(k) = self.get().macs.get(id) {
            return Some(k.clone());
        }
        if self.reload_on_miss(now).await {
            return self.get().macs.get(id).cloned();
        }
        None
    }
}

/// Adds a new signing key (configured algorithm) and a new refresh MAC key, retiring the others.
pub async fn rotate(
    store: &dyn Store,
    sealer: Option<&Sealer>,
    algorithm: Algorithm,
    now: Millis,
) -> Result<(String, String), KeyRingError> {
    let signing = new_stored_key(KeyKind::Signing, algorithm, sealer, now)?;
    let mac = new_stored_key(KeyKind::RefreshMac, Algorithm::HS256, sealer, now)?;
    store.add_key(&signing, false, true, now).await?;
    store.add_key(&mac, false, true, now).await?;
    Ok((signing.kid, mac.kid))
}

/// Lists stored keys without opening them.
pub async fn list(store: &dyn Store) -> Result<Vec<KeyInfo>, KeyRingError> {
    Ok(store
        .keys()
        .await?
        .into_iter()
        .map(|k| KeyInfo {
            kind: k.kind.as_str(),
            kid: k.kid,
            alg: k.alg,
            created_at: k.created_at,
            retired_at: k.retired_at,
            encrypted: k.encrypted,
        })
        .collect())
}

fn new_stored_key(
    kind: KeyKind,
    alg: Algorithm,
    sealer: Option<&Sealer>,
    now: Millis,
) -> Result<StoredKey, KeyRingError> {
    let kid = keys::new_kid()?;
    let plain = keys::generate(alg)?;
    let (material, encrypted) = match sealer {
        Some(s) => (s.seal(&kid, &plain)?, true),
        None => (plain, false),
    };
    Ok(StoredKey { kid, kind, alg: alg.as_str().into(), material, encrypted, created_at: now, retired_at: None })
}

fn build(
    stored: &[StoredKey],
    sealer: Option<&Sealer>,
    algorithm: Algorithm,
    policy: &prolong_core::Policy,
    (issuer, audience): (&str, &str),
    now: Millis,
) -> Result<Keys, KeyRingError> {
    let open = |k: &StoredKey| -> Result<Vec<u8>, KeyRingError> {
        match (k.encrypted, sealer) {
            (false, _) => Ok(k.material.clone()),
            (true, Some(s)) => s.open(&k.kid, &k.material),
            (true, None) => Err(KeyRingError::Sealed(k.kid.clone())),
        }
    };
    let signing_keep = RELOAD_SLACK_MS + policy.max_token_life();
    let mac_keep = RELOAD_SLACK_MS + policy.idle_timeout + policy.reuse_grace;
    let mut signer: Option<Arc<SigningKey>> = None;
    let mut any_live_signer: Option<Arc<SigningKey>> = None;
    let mut verifiers = HashMap::new();
    let mut jwks = Vec::new();
    let mut mac_current = None;
    let mut macs = HashMap::new();
    // Oldest first: the newest active key of each kind ends up current.
    for k in stored {
        let live = k.retired_at.is_none();
        match k.kind {
            KeyKind::Signing => {
                if !live && k.retired_at.is_some_and(|r| now - r > signing_keep) {
                    continue;
                }
                let Some(alg) = Algorithm::parse(&k.alg) else {
                    continue;
                };
                let key = Arc::new(SigningKey::from_private(&k.kid, alg, &open(k)?)?);
                if let Some(jwk) = key.public_jwk() {
                    jwks.push(jwk.clone());
                }
                verifiers.insert(k.kid.clone(), key.verifying_key().clone());
                if live && alg == algorithm {
                    signer = Some(key.clone());
                }
                if live {
                    any_live_signer = Some(key);
                }
            }
            KeyKind::RefreshMac => {
                if !live && k.retired_at.is_some_and(|r| now - r > mac_keep) {
                    continue;
                }
                let Some(id) = mac_kid_from_str(&k.kid) else {
                    continue;
                };
                let key = hmac::Key::new(hmac::HMAC_SHA256, &open(k)?);
                if live {
                    mac_current = Some((id, key.clone()));
                }
                macs.insert(id, key);
            }
        }
    }
    // A key rotated by a process configured with another algorithm still signs, rather than
    // leaving this server signing with a retired key.
    let signer = signer.or(any_live_signer).ok_or(KeyRingError::NoActiveKey("signing"))?;
    let mac_current = mac_current.ok_or(KeyRingError::NoActiveKey("refresh MAC"))?;
    let jwks = serde_json::to_vec(&serde_json::json!({ "keys": jwks })).unwrap_or_default();
    let verifier = prolong_verify::Verifier::builder(issuer, audience)
        .build_with_keys(verifiers.values().cloned())
        .map_err(|e| KeyRingError::Verifier(e.to_string()))?;
    Ok(Keys { signer, verifiers, jwks: jwks.into(), mac_current, macs, verifier })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_the_kid() {
        let s = Sealer::new(&[7; 32]).expect("sealer");
        let sealed = s.seal("k1", b"secret material").expect("seal");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(s.open("k1", &sealed).expect("open"), b"secret material");
        assert!(s.open("k2", &sealed).is_err());
        assert!(Sealer::new(&[8; 32]).expect("sealer").open("k1", &sealed).is_err());
    }
}
