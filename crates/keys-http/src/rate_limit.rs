//! The optional per-client rate limit (`--rate-limit N`, off by default;
//! docs/API.md, Shared HTTP behaviour): a token bucket of N per minute for each client
//! address, spent by every verification call and by every failed
//! authentication. A client whose bucket is empty gets a 429 for the
//! verification routes and for every route that needs a service token,
//! before any lookup, so forged tokens stop costing a store query each.
//!
//! Clients are told apart by the peer address of their connection; IPv6
//! addresses by their /64, which one host usually holds whole. Behind a
//! reverse proxy every client is the proxy, unless the proxy is trusted
//! ([`TrustedProxies`], `--trusted-proxy CIDR`): then the client is the
//! address the proxy appended to `X-Forwarded-For`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most clients remembered; beyond, the full buckets are forgotten
/// (they are the same as new ones), and if none is full, all of them.
const MAX_CLIENTS: usize = 100_000;

/// The client address, as the accept loop saw it. [`crate::serve`] puts it
/// in every request's extensions; embedders that call [`crate::App::handle`]
/// may too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The networks whose connections are reverse proxies keysd believes
/// (`--trusted-proxy CIDR`, repeatable): for a request from one of them,
/// the client is the right-most address of `X-Forwarded-For` that is not
/// itself a trusted proxy. Anything else in that header was written by the
/// client and is ignored; from any other peer the header is ignored whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

/// An address block, `ADDRESS/PREFIX` (a bare address is its own block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = text.split_once('/').map_or((text, None), |(address, prefix)| (address, Some(prefix)));
        let network: IpAddr =
            address.trim().parse().map_err(|_| format!("{text:?} is not an IP address or ADDRESS/PREFIX block"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| format!("the prefix of {text:?} is not 0-{bits}"))?,
        };
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `address` is in the block (an IPv4-mapped IPv6 address as its
    /// IPv4 one).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl TrustedProxies {
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Self(blocks)
    }

    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|block| block.contains(address))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        // Each proxy appends the address it saw: read from the right, past
        // the trusted ones. Every header line counts, in order.
        let mut client = peer;
        let lines: Vec<&str> =
            headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok()).collect();
        for entry in lines.iter().rev().flat_map(|line| line.rsplit(',')) {
            let Ok(address) = entry.trim().parse::<IpAddr>() else {
                // Unreadable: what lies left of it cannot be trusted.
                return client;
            };
            client = address;
            if !self.trusts(address) {
                return address;
            }
        }
        client
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by client.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self { per_minute: f64::from(per_minute.get()), buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `client` may be served now; `Err` holds how long until it
    /// may. Spends nothing.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        self.with_bucket(client, now, false)
    }

    /// Spends one token of `client` if it has one; `Err` as for
    /// [`check`](Self::check).
    pub fn spend(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        self.with_bucket(client, now, true)
    }

    fn with_bucket(&self, client: IpAddr, now: Instant, spend: bool) -> Result<(), Duration> {
        let client = key(client);
        let per_second = self.per_minute / 60.0;
        // A panic while holding the lock leaves at worst one bucket stale.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let capacity = self.per_minute;
            buckets.retain(|_, bucket| refilled(bucket, now, per_second, capacity) < capacity);
            if buckets.len() >= MAX_CLIENTS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(client).or_insert(Bucket { tokens: self.per_minute, updated: now });
        bucket.tokens = refilled(bucket, now, per_second, self.per_minute);
        bucket.updated = now;
        if bucket.tokens < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second));
        }
        if spend {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }
}

fn refilled(bucket: &Bucket, now: Instant, per_second: f64, capacity: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(capacity)
}

/// IPv4 addresses as they are, IPv6 by their /64 (an IPv4-mapped IPv6
/// address as its IPv4).
fn key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(Ipv6Addr::new(segments[0], segments[1], segments[2], segments[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_proxy_names_the_client_and_nobody_else_does() {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().expect("cidr"), "::1".parse().expect("cidr")]);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3".parse().expect("value"));
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(proxies.client(proxy, &headers), "203.0.113.9".parse::<IpAddr>().expect("ip"));
        assert_eq!(proxies.client(stranger, &headers), stranger, "an untrusted peer's header is ignored");
        assert_eq!(TrustedProxies::default().client(proxy, &headers), proxy, "no proxy is trusted by default");
        headers.insert("x-forwarded-for", "garbage, 10.1.2.3".parse().expect("value"));
        assert_eq!(proxies.client(proxy, &headers), "10.1.2.3".parse::<IpAddr>().expect("ip"));
        headers.remove("x-forwarded-for");
        assert_eq!(proxies.client(proxy, &headers), proxy);
        let mapped: IpAddr = "::ffff:10.9.9.9".parse().expect("ip");
        assert!("10.0.0.0/8".parse::<Cidr>().expect("cidr").contains(mapped));
        assert!("0.0.0.0/0".parse::<Cidr>().expect("cidr").contains(stranger));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("ten/8".parse::<Cidr>().is_err());
    }

    fn limiter(per_minute: u32) -> RateLimiter {
        RateLimiter::new(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
    }

    #[test]
    fn a_bucket_empties_and_refills_at_its_rate() {
        let limiter = limiter(60);
        let start = Instant::now();
        let client: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..60 {
            assert_eq!(limiter.spend(client, start), Ok(()));
        }
        let wait = limiter.spend(client, start).expect_err("empty");
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO, "{wait:?}");
        assert!(limiter.check(client, start).is_err(), "checking an empty bucket refuses too");
        // One token a second comes back.
        assert_eq!(limiter.spend(client, start + Duration::from_secs(1)), Ok(()));
        assert!(limiter.spend(client, start + Duration::from_secs(1)).is_err());
        // Another client has its own bucket; checking spends nothing.
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..100 {
            assert_eq!(limiter.check(other, start), Ok(()));
        }
    }

    #[test]
    fn ipv6_clients_are_their_64() {
        let limiter = limiter(1);
        let now = Instant::now();
        assert_eq!(limiter.spend("2001:db8:1:2::1".parse().expect("ip"), now), Ok(()));
        assert!(limiter.spend("2001:db8:1:2:ffff::9".parse().expect("ip"), now).is_err(), "same /64");
        assert_eq!(limiter.spend("2001:db8:1:3::1".parse().expect("ip"), now), Ok(()), "another /64");
        assert_eq!(limiter.spend("::ffff:192.0.2.7".parse().expect("ip"), now), Ok(()));
        assert!(limiter.spend("192.0.2.7".parse().expect("ip"), now).is_err(), "mapped is the IPv4");
    }
}
