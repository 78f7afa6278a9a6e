//! A token bucket per merchant, in memory: how fast `tokens.remove_for_merchant` may
//! delete one merchant's tokens.
//!
//! The limit is there for a stolen gateway certificate, which may name any merchant: it
//! bounds how fast such a caller can shred a merchant's cards (and so how much is lost
//! before anyone notices), while a merchant removing saved cards one by one never meets
//! it. The gateway retries a refused removal later, so a legitimate burst is delayed,
//! not lost.
//!
//! Per process: N replicas allow N times the rate. Hand-written rather than a crate
//! (`governor` would bring `quanta`, `dashmap` and more into the PCI-scoped binary for
//! these few lines).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most merchants tracked at once. Full buckets are dropped first (a full bucket is the
/// same as none); if that is not enough, unknown merchants are refused until it is, so
/// a caller inventing merchant ids cannot grow the map without bound.
const MAX_TRACKED: usize = 100_000;

/// Rate and burst of a [`MerchantRateLimiter`].
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

/// One token bucket per merchant id.
#[derive(Debug)]
pub struct MerchantRateLimiter {
    limit: RateLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl MerchantRateLimiter {
    pub fn new(limit: RateLimit) -> MerchantRateLimiter {
        MerchantRateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Take one token from `merchant_id`'s bucket at `now`; `false` when it is empty.
    pub fn try_take(&self, merchant_id: &str, now: Instant) -> bool {
        let burst = f64::from(self.limit.burst);
        // A poisoned lock only means another request panicked mid-update; the map of
        // numbers is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(merchant_id) && buckets.len() >= MAX_TRACKED {
            let per_second = self.limit.per_second;
            buckets.retain(|_, b| refilled(b, now, per_second, burst) < burst);
            if buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let bucket = buckets.entry(merchant_id.to_owned()).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = refilled(bucket, now, self.limit.per_second, burst);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_sustained_rate_per_merchant() {
        let limiter = MerchantRateLimiter::new(RateLimit { per_second: 2.0, burst: 3 });
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.try_take("m_1", t0)), "the burst is available at once");
        assert!(!limiter.try_take("m_1", t0), "then the bucket is empty");
        assert!(limiter.try_take("m_2", t0), "another merchant has its own bucket");
        assert!(!limiter.try_take("m_1", t0 + Duration::from_millis(400)), "0.8 of a token is not one");
        assert!(limiter.try_take("m_1", t0 + Duration::from_millis(500)), "refilled at 2 per second");
        assert!(!limiter.try_take("m_1", t0 + Duration::from_millis(500)));
        // A long quiet spell refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| limiter.try_take("m_1", later)));
        assert!(!limiter.try_take("m_1", later));
    }

    #[test]
    fn a_zero_rate_allows_the_burst_only() {
        let limiter = MerchantRateLimiter::new(RateLimit { per_second: 0.0, burst: 1 });
        let t0 = Instant::now();
        assert!(limiter.try_take("m_1", t0));
        assert!(!limiter.try_take("m_1", t0 + Duration::from_secs(3600)));
    }
}
