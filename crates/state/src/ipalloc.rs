//! Tailnet address allocation (pure): one IPv4 and/or one IPv6 address per
//! node from the configured prefixes, never one address twice.
//!
//! Sequential allocation continues after the last address handed out and
//! wraps around, so a freed address is not reused at once (peers may still
//! hold it for a moment) but the prefix is never exhausted by churn.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Sequential,
    Random,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error(
        "no free address left in {0}; widen prefixes.{1} in the configuration or delete unused nodes"
    )]
    Exhausted(String, &'static str),
}

/// 100.100.100.100 (MagicDNS), the ChromeOS VM range and fd7a:115c:a1e0::53
/// are Tailscale's and never given to a node.
fn reserved(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4 == Ipv4Addr::new(100, 100, 100, 100)
                || Ipv4Net::new(Ipv4Addr::new(100, 115, 92, 0), 23).is_ok_and(|n| n.contains(&v4))
        }
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 0x53),
    }
}

/// One family's range as integers: first and last usable host numbers.
#[derive(Debug, Clone, Copy)]
struct Range {
    first: u128,
    last: u128,
}

impl Range {
    fn size(&self) -> u128 {
        self.last - self.first + 1
    }
}

#[derive(Debug, Clone)]
pub struct IpAllocator {
    v4: Option<(Ipv4Net, Range)>,
    v6: Option<(Ipv6Net, Range)>,
    strategy: Strategy,
    used: HashSet<IpAddr>,
    last4: Option<u128>,
    last6: Option<u128>,
}

fn range_of(network: u128, broadcast: u128) -> Range {
    // Network and broadcast addresses are never handed out (for IPv6 too, as
    // headscale does: the all-zeros host is the subnet-router anycast).
    if broadcast - network >= 2 {
        Range {
            first: network + 1,
            last: broadcast - 1,
        }
    } else {
        Range {
            first: network,
            last: broadcast,
        }
    }
}

impl IpAllocator {
    pub fn new(v4: Option<Ipv4Net>, v6: Option<Ipv6Net>, strategy: Strategy) -> Self {
        Self {
            v4: v4.map(|n| {
                (
                    n,
                    range_of(
                        u32::from(n.network()) as u128,
                        u32::from(n.broadcast()) as u128,
                    ),
                )
            }),
            v6: v6.map(|n| {
                (
                    n,
                    range_of(u128::from(n.network()), u128::from(n.broadcast())),
                )
            }),
            strategy,
            used: HashSet::new(),
            last4: None,
            last6: None,
        }
    }

    /// Records an address already held by a node (at start-up, from storage).
    pub fn mark_used(&mut self, ip: IpAddr) {
        self.used.insert(ip);
        match ip {
            IpAddr::V4(a) => {
                let n = u32::from(a) as u128;
                if self.last4.is_none_or(|l| n > l) {
                    self.last4 = Some(n);
                }
            }
            IpAddr::V6(a) => {
                let n = u128::from(a);
                if self.last6.is_none_or(|l| n > l) {
                    self.last6 = Some(n);
                }
            }
        }
    }

    pub fn release(&mut self, ip: IpAddr) {
        self.used.remove(&ip);
    }

    pub fn is_used(&self, ip: IpAddr) -> bool {
        self.used.contains(&ip)
    }

    /// Allocates one address per configured family.
    pub fn allocate(
        &mut self,
        rng: &mut dyn RngCore,
    ) -> Result<(Option<Ipv4Addr>, Option<Ipv6Addr>), AllocError> {
        let v4 = match self.v4 {
            Some((net, range)) => {
                let n = self
                    .pick(range, self.last4, rng, |n| {
                        IpAddr::V4(Ipv4Addr::from(n as u32))
                    })
                    .ok_or_else(|| AllocError::Exhausted(net.to_string(), "v4"))?;
                Some(Ipv4Addr::from(n as u32))
            }
            None => None,
        };
        let v6 = match self.v6 {
            Some((net, range)) => {
                match self.pick(range, self.last6, rng, |n| IpAddr::V6(Ipv6Addr::from(n))) {
                    Some(n) => Some(Ipv6Addr::from(n)),
                    None => return Err(AllocError::Exhausted(net.to_string(), "v6")),
                }
            }
            None => None,
        };
        // Commit both only when both succeeded.
        if let Some(a) = v4 {
            self.mark_used(IpAddr::V4(a));
        }
        if let Some(a) = v6 {
            self.mark_used(IpAddr::V6(a));
        }
        Ok((v4, v6))
    }

    fn pick(
        &self,
        range: Range,
        last: Option<u128>,
        rng: &mut dyn RngCore,
        to_ip: impl Fn(u128) -> IpAddr,
    ) -> Option<u128> {
        let start = match self.strategy {
            Strategy::Sequential => match last {
                Some(l) if l >= range.first && l < range.last => l + 1,
                _ => range.first,
            },
            Strategy::Random => {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                range.first + u128::from_le_bytes(b) % range.size()
            }
        };
        // Walk forward from `start`, wrapping once around the range. Bounded by
        // the number of used addresses plus the reserved ones, not the range.
        let size = range.size();
        let limit = size.min(self.used.len() as u128 + 1024);
        let mut n = start;
        for _ in 0..limit {
            let ip = to_ip(n);
            if !self.used.contains(&ip) && !reserved(ip) {
                return Some(n);
            }
            n = if n == range.last { range.first } else { n + 1 };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn alloc(v4: &str, v6: &str, s: Strategy) -> IpAllocator {
        IpAllocator::new(v4.parse().ok(), v6.parse().ok(), s)
    }

    #[test]
    fn sequential_starts_after_network_address_in_both_families() {
        let mut a = alloc("100.64.0.0/10", "fd7a:115c:a1e0::/48", Strategy::Sequential);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (v4, v6) = a.allocate(&mut rng).unwrap();
        assert_eq!(v4.unwrap().to_string(), "100.64.0.1");
        assert_eq!(v6.unwrap().to_string(), "fd7a:115c:a1e0::1");
        let (v4, v6) = a.allocate(&mut rng).unwrap();
        assert_eq!(v4.unwrap().to_string(), "100.64.0.2");
        assert_eq!(v6.unwrap().to_string(), "fd7a:115c:a1e0::2");
    }

    #[test]
    fn sequential_resumes_after_highest_used_and_does_not_reuse_at_once() {
        let mut a = alloc("100.64.0.0/24", "", Strategy::Sequential);
        a.mark_used("100.64.0.7".parse().unwrap());
        a.mark_used("100.64.0.3".parse().unwrap());
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert_eq!(
            a.allocate(&mut rng).unwrap().0.unwrap().to_string(),
            "100.64.0.8"
        );
        a.release("100.64.0.8".parse().unwrap());
        assert_eq!(
            a.allocate(&mut rng).unwrap().0.unwrap().to_string(),
            "100.64.0.9"
        );
    }

    #[test]
    fn skips_reserved_and_wraps_and_reports_exhaustion() {
        let mut a = alloc("100.100.100.96/29", "", Strategy::Sequential);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut got = Vec::new();
        while let Ok((Some(ip), _)) = a.allocate(&mut rng) {
            got.push(ip.to_string());
        }
        // .96 network, .103 broadcast, .100 MagicDNS: five usable.
        assert_eq!(
            got,
            [
                "100.100.100.97",
                "100.100.100.98",
                "100.100.100.99",
                "100.100.100.101",
                "100.100.100.102"
            ]
        );
        let err = a.allocate(&mut rng).unwrap_err();
        assert!(err.to_string().contains("prefixes.v4"), "{err}");
        // Freed addresses come back after wrapping.
        a.release("100.100.100.98".parse().unwrap());
        assert_eq!(
            a.allocate(&mut rng).unwrap().0.unwrap().to_string(),
            "100.100.100.98"
        );
    }

    #[test]
    fn random_never_duplicates() {
        let mut a = alloc("100.64.0.0/26", "fd7a:115c:a1e0::/120", Strategy::Random);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = HashSet::new();
        for _ in 0..62 {
            let (v4, v6) = a.allocate(&mut rng).unwrap();
            assert!(seen.insert(IpAddr::V4(v4.unwrap())));
            assert!(seen.insert(IpAddr::V6(v6.unwrap())));
        }
        assert!(a.allocate(&mut rng).is_err());
    }

    #[test]
    fn failure_in_one_family_allocates_nothing() {
        let mut a = alloc(
            "100.64.0.0/24",
            "fd7a:115c:a1e0::/127",
            Strategy::Sequential,
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        // /127 has two addresses; both usable (no network/broadcast carve-out).
        a.allocate(&mut rng).unwrap();
        a.allocate(&mut rng).unwrap();
        let before = a.used.len();
        assert!(a.allocate(&mut rng).is_err());
        assert_eq!(a.used.len(), before);
    }
}
