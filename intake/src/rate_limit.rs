//! A token bucket per client address, in memory: how fast one address may post cards.
//!
//! Card testing (trying stolen numbers until one is approved) needs many cards; the
//! gateway limits attempts per checkout and per merchant, and this limits them per
//! address at the public entry, before any card reaches the vault. An IPv6 client is
//! counted by its /64, the block one subscriber is usually given, so walking through
//! addresses inside it buys nothing.
//!
//! Per process: N replicas allow N times the rate. Hand-written (as the vault's removal
//! limit) rather than a crate, to keep the PCI-scoped binary small.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Most addresses tracked at once. Full buckets are dropped first (a full bucket is the
/// same as none); if that is not enough, addresses not yet tracked are refused until it
/// is, so a flood of addresses cannot grow the map without bound.
const MAX_TRACKED: usize = 100_000;

/// Rate and burst per address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AddressLimit {
    /// Tokens added per second (the sustained rate).
    pub per_second: f64,
    /// Bucket size: how many cards one address may post at once after a quiet spell.
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// One token bucket per client address (IPv6: per /64).
#[derive(Debug)]
pub struct AddressRateLimiter {
    limit: AddressLimit,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The key an address is counted under: IPv4 as it is (an IPv4-mapped IPv6 address as
/// its IPv4), IPv6 by its /64 prefix.
fn bucket_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl AddressRateLimiter {
    pub fn new(limit: AddressLimit) -> AddressRateLimiter {
        AddressRateLimiter { limit, buckets: Mutex::new(HashMap::new()) }
    }

    /// Take one token from `address`'s bucket at `now`; `false` when it is empty.
    pub fn try_take(&self, address: IpAddr, now: Instant) -> bool {
        let key = bucket_key(address);
        let burst = f64::from(self.limit.burst);
        let per_second = self.limit.per_second;
        // A poisoned lock only means another request panicked mid-update; the map of
        // numbers is still usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| refilled(b, now, per_second, burst) < burst);
            if buckets.len() >= MAX_TRACKED {
                return false;
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket { tokens: burst, at: now });
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_burst_then_the_sustained_rate_per_address() {
        let limiter = AddressRateLimiter::new(AddressLimit { per_second: 1.0, burst: 2 });
        let t0 = Instant::now();
        assert!(limiter.try_take(ip("192.0.2.1"), t0) && limiter.try_take(ip("192.0.2.1"), t0));
        assert!(!limiter.try_take(ip("192.0.2.1"), t0), "the burst is spent");
        assert!(limiter.try_take(ip("192.0.2.2"), t0), "another address has its own bucket");
        assert!(limiter.try_take(ip("192.0.2.1"), t0 + Duration::from_secs(1)), "refilled");
        assert!(!limiter.try_take(ip("192.0.2.1"), t0 + Duration::from_secs(1)));
    }

    #[test]
    fn ipv6_addresses_count_by_their_slash_64() {
        let limiter = AddressRateLimiter::new(AddressLimit { per_second: 0.0, burst: 1 });
        let t0 = Instant::now();
        assert!(limiter.try_take(ip("2001:db8:1:2::1"), t0));
        assert!(!limiter.try_take(ip("2001:db8:1:2:ffff::9"), t0), "same /64");
        assert!(limiter.try_take(ip("2001:db8:1:3::1"), t0), "another /64");
        assert!(limiter.try_take(ip("::ffff:198.51.100.7"), t0));
        assert!(!limiter.try_take(ip("198.51.100.7"), t0), "an IPv4-mapped address is its IPv4");
    }
}
