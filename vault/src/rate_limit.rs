//! A token bucket per merchant, in memory: how fast `tokens.remove_for_merchant` may
//! delete one merchant's tokens.
//!
//! The limit is there for a stolen gateway certificate, which may name any merchant: it
//! bounds how fast such a caller can shred a merchant's cards (and so how much is lost
//! before anyone notices), while a merchant removing saved cards one by one never meets
//! it. The gateway retries a refused removal later, so a legitimate burst is delayed,
//! not lost.
//!
//! Per process: N replicas allow N times the rate. The bucket map is
//! [`paysys_server::rate_limit`]'s, shared with the intake's per-address limit.

pub use paysys_server::rate_limit::RateLimit;

/// One token bucket per merchant id.
pub type MerchantRateLimiter = paysys_server::rate_limit::KeyedRateLimiter<String>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
