//! The cache of tokens that already passed verification.
//!
//! Design decision: entries are keyed by the whole token and found by a fast keyed hash
//! (foldhash, seeded per cache, over the token's signature end), but a hit always compares the stored token with the presented
//! one byte for byte, so a hash collision can only cost a miss, never authorize a different token.
//! The table is split into shards behind read-write locks; a hit takes one read lock, compares, and
//! clones an `Arc` — no allocation. Memory is bounded by a capacity: a full shard first drops its
//! expired entries, then arbitrary ones, freeing an eighth of its room at once so the sweep's cost
//! is spread over many inserts.

use crate::claims::Claims;
use hashbrown::HashTable;
use prolong_core::Millis;
use std::hash::BuildHasher;
use std::sync::{PoisonError, RwLock};

struct Entry {
    hash: u64,
    token: Box<str>,
    claims: Claims,
    /// The first millisecond at which the token is expired (leeway included).
    deadline: Millis,
}

/// A bounded map from whole tokens to their verified claims.
pub(crate) struct TokenCache {
    shards: Box<[RwLock<HashTable<Entry>>]>,
    shard_capacity: usize,
    hasher: foldhash::fast::RandomState,
}

/// Below this capacity one shard is enough (and keeps the bound exact for small caches).
const SHARDING_THRESHOLD: usize = 1024;
const SHARDS: usize = 16;
/// How many trailing bytes of a token its hash covers.
const HASHED_SUFFIX: usize = 48;

impl TokenCache {
    /// A cache of at most `capacity` tokens; `0` disables caching.
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = if capacity >= SHARDING_THRESHOLD {
            SHARDS
        } else if capacity > 0 {
            1
        } else {
            0
        };
        let shard_capacity = capacity.checked_div(shards).unwrap_or(0);
        TokenCache {
            shards: (0..shards).map(|_| RwLock::new(HashTable::with_capacity(shard_capacity))).collect(),
            shard_capacity,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.shard_capacity > 0
    }

    /// Hashes the token's last [`HASHED_SUFFIX`] bytes: the end of its signature, which differs
    /// between any two tokens the issuer signed (the header and most of the claims are shared by
    /// many). Hashing all of a 700-byte token costs more than the rest of a hit; equality, which
    /// decides, is still checked on the whole token.
    pub(crate) fn hash(&self, token: &str) -> u64 {
        let bytes = token.as_bytes();
        self.hasher.hash_one(&bytes[bytes.len().saturating_sub(HASHED_SUFFIX)..])
    }

    fn shard(&self, hash: u64) -> Option<&RwLock<HashTable<Entry>>> {
        // Bits well away from those hashbrown uses for the bucket index (low) and tag (top 7).
        let i = (hash >> 40) as usize % self.shards.len().max(1);
        self.shards.get(i)
    }

    /// The claims and deadline of `token`, if it is cached.
    pub(crate) fn get(&self, token: &str, hash: u64) -> Option<(Claims, Millis)> {
        let shard = self.shard(hash)?.read().unwrap_or_else(PoisonError::into_inner);
        shard.find(hash, |e| *e.token == *token).map(|e| (e.claims.clone(), e.deadline))
    }

    /// Caches a verified token until `deadline`, making room if the shard is full.
    pub(crate) fn insert(&self, token: &str, hash: u64, claims: Claims, deadline: Millis, now: Millis) {
        if deadline <= now {
            return;
        }
        let Some(shard) = self.shard(hash) else {
            return;
        };
        let mut table = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Ok(mut found) = table.find_entry(hash, |e| *e.token == *token) {
            let e = found.get_mut();
            e.claims = claims;
            e.deadline = deadline;
            return;
        }
        if table.len() >= self.shard_capacity {
            make_room(&mut table, self.shard_capacity, now);
        }
        table.insert_unique(hash, Entry { hash, token: token.into(), claims, deadline }, |e| e.hash);
    }

    /// Drops `token` if it is cached and expired at `now`.
    pub(crate) fn remove_expired(&self, token: &str, hash: u64, now: Millis) {
        let Some(shard) = self.shard(hash) else {
            return;
        };
        let mut table = shard.write().unwrap_or_else(PoisonError::into_inner);
        if let Ok(found) = table.find_entry(hash, |e| *e.token == *token && e.deadline <= now) {
            found.remove();
        }
    }

    /// Forgets every token (used when a signing key disappears from the issuer's key set).
    pub(crate) fn clear(&self) {
        for shard in self.shards.iter() {
            shard.write().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }

    /// How many tokens are cached.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}

/// Drops expired entries, then arbitrary ones, until an eighth of `capacity` (at least one slot)
/// is free.
fn make_room(table: &mut HashTable<Entry>, capacity: usize, now: Millis) {
    table.retain(|e| e.deadline > now);
    let target = capacity.saturating_sub((capacity / 8).max(1));
    let mut excess = table.len().saturating_sub(target);
    if excess > 0 {
        table.retain(|_| {
            if excess > 0 {
                excess -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prolong_core::claims::AccessClaims;

    fn claims(jti: &str) -> Claims {
        Claims::new(AccessClaims {
            iss: "https://issuer".into(),
            sub: "u".into(),
            aud: "prolong".into(),
            iat: 0,
            exp: 100,
            jti: jti.into(),
            sid: "s".into(),
            client_id: "prolong".into(),
            ver: 0,
            auth_time: 0,
            softexp: None,
            r#gen: None,
            renew_until: None,
        })
    }

    fn put(c: &TokenCache, token: &str, deadline: Millis, now: Millis) {
        c.insert(token, c.hash(token), claims(token), deadline, now);
    }

    fn has(c: &TokenCache, token: &str) -> bool {
        c.get(token, c.hash(token)).is_some()
    }

    #[test]
    fn a_hit_returns_the_claims_of_exactly_that_token() {
        let c = TokenCache::new(8);
        put(&c, "token-a", 1_000, 0);
        let (got, deadline) = c.get("token-a", c.hash("token-a")).expect("hit");
        assert_eq!((got.jti.as_str(), deadline), ("token-a", 1_000));
        assert!(!has(&c, "token-b"));
        assert!(!has(&c, "token-"), "a prefix is another token");
    }

    #[test]
    fn a_colliding_hash_never_returns_another_tokens_claims() {
        let c = TokenCache::new(8);
        let hash = c.hash("token-a");
        put(&c, "token-a", 1_000, 0);
        // Looking up a different token under the same hash (as a collision would) misses.
        assert!(c.get("token-b", hash).is_none());
        // And inserting it under that hash keeps both apart.
        c.insert("token-b", hash, claims("token-b"), 1_000, 0);
        assert_eq!(c.get("token-a", hash).expect("a").0.jti, "token-a");
        assert_eq!(c.get("token-b", hash).expect("b").0.jti, "token-b");
    }

    #[test]
    fn tokens_sharing_their_hashed_suffix_stay_apart() {
        let c = TokenCache::new(8);
        let tail = "x".repeat(HASHED_SUFFIX);
        let (a, b) = (format!("a.{tail}"), format!("b.{tail}"));
        assert_eq!(c.hash(&a), c.hash(&b), "a real collision");
        put(&c, &a, 1_000, 0);
        assert!(!has(&c, &b));
        put(&c, &b, 1_000, 0);
        assert_eq!(c.get(&a, c.hash(&a)).expect("a").0.jti, a);
        assert_eq!(c.get(&b, c.hash(&b)).expect("b").0.jti, b);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn never_holds_more_than_its_capacity() {
        for capacity in [1, 2, 7, 100, SHARDING_THRESHOLD, 5_000] {
            let c = TokenCache::new(capacity);
            for i in 0..capacity * 3 {
                put(&c, &format!("token-{i}"), 10_000, 0);
                assert!(c.len() <= capacity, "capacity {capacity}: {}", c.len());
            }
            assert!(c.len() > 0);
            // The newest token is always kept.
            assert!(has(&c, &format!("token-{}", capacity * 3 - 1)));
        }
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let c = TokenCache::new(16);
        for i in 0..8 {
            put(&c, &format!("old-{i}"), 500, 0);
        }
        for i in 0..8 {
            put(&c, &format!("live-{i}"), 10_000, 0);
        }
        assert_eq!(c.len(), 16);
        // At 600 the old ones are expired: a new insert evicts them, not the live ones.
        put(&c, "new", 10_000, 600);
        assert_eq!(c.len(), 9);
        assert!((0..8).all(|i| has(&c, &format!("live-{i}"))));
        assert!((0..8).all(|i| !has(&c, &format!("old-{i}"))));
    }

    #[test]
    fn expired_entries_are_not_stored_and_can_be_dropped() {
        let c = TokenCache::new(4);
        put(&c, "late", 100, 100);
        assert!(!has(&c, "late"), "a token expired at insert is not cached");
        put(&c, "t", 200, 100);
        c.remove_expired("t", c.hash("t"), 199);
        assert!(has(&c, "t"), "not yet expired at 199");
        c.remove_expired("t", c.hash("t"), 200);
        assert!(!has(&c, "t"), "dropped at its deadline");
    }

    #[test]
    fn capacity_zero_disables_the_cache() {
        let c = TokenCache::new(0);
        assert!(!c.enabled());
        put(&c, "t", 1_000, 0);
        assert!(!has(&c, "t"));
        c.clear();
    }

    #[test]
    fn reinserting_a_token_updates_it_in_place() {
        let c = TokenCache::new(2);
        put(&c, "t", 1_000, 0);
        put(&c, "t", 2_000, 0);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("t", c.hash("t")).expect("hit").1, 2_000);
        c.clear();
        assert_eq!(c.len(), 0);
    }
}
