//! A token bucket per client address, in memory: how fast one address may post cards.
//!
//! Card testing (trying stolen numbers until one is approved) needs many cards; the
//! gateway limits attempts per checkout and per merchant, and this limits them per
//! address at the public entry, before any card reaches the vault. An IPv6 client is
//! counted by its /64, the block one subscriber is usually given, so walking through
//! addresses inside it buys nothing.
//!
//! Per process: N replicas allow N times the rate. The bucket map is
//! [`paysys_server::rate_limit`]'s, shared with the vault's removal limit.

use paysys_server::rate_limit::KeyedRateLimiter;
use std::net::IpAddr;
use std::time::Instant;

/// Rate and burst per address: how many cards one address may post at once after a
/// quiet spell, and how fast it may go on.
pub type AddressLimit = paysys_server::rate_limit::RateLimit;

/// One token bucket per client address (IPv6: per /64).
#[derive(Debug)]
pub struct AddressRateLimiter(KeyedRateLimiter<IpAddr>);

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
        AddressRateLimiter(KeyedRateLimiter::new(limit))
    }

    /// Take one token from `address`'s bucket at `now`; `false` when it is empty.
    pub fn try_take(&self, address: IpAddr, now: Instant) -> bool {
        self.0.try_take(&bucket_key(address), now)
    }
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
