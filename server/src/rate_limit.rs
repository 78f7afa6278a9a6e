//! A token bucket per key, in memory: the services' rate limits (the vault's removals
//! per merchant, the intake's cards per client address).
//!
//! Per process: N replicas allow N times the rate. Hand-written rather than a crate
//! (`governor` would bring `quanta`, `dashmap` and more into the PCI-scoped binaries for
//! these few lines).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Instant;

/// Most keys tracked at once. Full buckets are dropped first (a full bucket is the same
/// as none); if that is not enough, keys not yet tracked are refused until it is, so a
/// caller inventing keys cannot grow the map without bound.
pub const MAX_TRACKED: usize = 100_000;

/// Rate and burst of a [`KeyedRateLimiter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second (the sustained rate).
    pub per_second: f64,
    /// Bucket size: how many requests may come at once after a quiet spell.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per key.
#[derive(Debug)]
pub struct KeyedRateLimiter<K> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq> KeyedRateLimiter<K> {
    pub fn new(limit: RateLimit) -> KeyedRateLimiter<K> {
        KeyedRateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Take one token from `key`'s bucket at `now`; `false` when it is empty.
    pub fn try_take<Q>(&self, key: &Q, now: Instant) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let burst = f64::from(self.limit.burst);
        let per_second = self.limit.per_second;
        // A poisoned lock only means another request panicked mid-update; the map of
        // numbers is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(key) && buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| refilled(b, now, per_second, burst) < burst);
            if buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = refilled(bucket, now, per_second, burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The bucket's tokens at `now`: what it had plus the refill since, at most `burst`.
fn refilled(bucket: &Bucket, now: Instant, per_second: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(burst)
}
