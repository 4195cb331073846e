//! Address sets: what a selector stands for on the IP level.
//!
//! An [`AddrSet`] is a normalised set of IPv4 and IPv6 ranges with the
//! operations policy evaluation needs (union, difference, containment,
//! overlap). Addresses are kept as integers; text forms follow Tailscale's
//! filter syntax: a single address, a CIDR prefix, or an inclusive `a-b` range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// A set of IP addresses, stored as sorted, disjoint, non-adjacent inclusive ranges per family.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct AddrSet {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

/// Which family an address range belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn bits(self) -> u32 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
    fn max(self) -> u128 {
        match self {
            Family::V4 => u32::MAX as u128,
            Family::V6 => u128::MAX,
        }
    }
}

/// One inclusive range of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrRange {
    pub family: Family,
    pub first: u128,
    pub last: u128,
}

pub fn ip_to_u128(ip: IpAddr) -> (Family, u128) {
    match ip {
        IpAddr::V4(a) => (Family::V4, u32::from(a) as u128),
        IpAddr::V6(a) => (Family::V6, u128::from(a)),
    }
}

fn u128_to_ip(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

impl AddrRange {
    pub fn from_prefix(net: IpNet) -> Self {
        let (family, a) = ip_to_u128(net.network());
        let host_bits = family.bits() - u32::from(net.prefix_len());
        let span = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        AddrRange {
            family,
            first: a,
            last: a | span,
        }
    }

    pub fn single(ip: IpAddr) -> Self {
        let (family, a) = ip_to_u128(ip);
        AddrRange {
            family,
            first: a,
            last: a,
        }
    }

    /// The range as one prefix, if it is exactly one.
    pub fn as_prefix(&self) -> Option<IpNet> {
        let size = self.last.wrapping_sub(self.first).wrapping_add(1);
        let bits = self.family.bits();
        let host_bits = if size == 0 {
            // The whole 128-bit space.
            128
        } else if size.is_power_of_two() {
            size.trailing_zeros()
        } else {
            return None;
        };
        if host_bits > bits || (host_bits < 128 && self.first & ((1u128 << host_bits) - 1) != 0) {
            return None;
        }
        IpNet::new(
            u128_to_ip(self.family, self.first),
            (bits - host_bits) as u8,
        )
        .ok()
    }

    pub fn is_single(&self) -> bool {
        self.first == self.last
    }
}

/// Tailscale's text form: `1.2.3.4`, `10.0.0.0/8`, or `100.64.0.0-100.115.91.255`.
impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            return write!(f, "{}", u128_to_ip(self.family, self.first));
        }
        if let Some(p) = self.as_prefix() {
            return write!(f, "{p}");
        }
        write!(
            f,
            "{}-{}",
            u128_to_ip(self.family, self.first),
            u128_to_ip(self.family, self.last)
        )
    }
}

impl AddrRange {
    /// Always the `a-b` form (Tailscale writes `autogroup:internet` this way even where a prefix would do).
    pub fn range_string(&self) -> String {
        format!(
            "{}-{}",
            u128_to_ip(self.family, self.first),
            u128_to_ip(self.family, self.last)
        )
    }
}

fn insert(list: &mut Vec<(u128, u128)>, first: u128, last: u128) {
    // Find the first range that could merge (ends at or after first-1).
    let lo = first.saturating_sub(1);
    let start = list.partition_point(|&(_, l)| l < lo);
    let mut new_first = first;
    let mut new_last = last;
    let mut end = start;
    while end < list.len() && list[end].0 <= new_last.saturating_add(1) {
        new_first = new_first.min(list[end].0);
        new_last = new_last.max(list[end].1);
        end += 1;
    }
    list.splice(start..end, std::iter::once((new_first, new_last)));
}

fn remove(list: &mut Vec<(u128, u128)>, first: u128, last: u128) {
    let mut out = Vec::with_capacity(list.len() + 1);
    for &(a, b) in list.iter() {
        if b < first || a > last {
            out.push((a, b));
            continue;
        }
        if a < first {
            out.push((a, first - 1));
        }
        if b > last {
            out.push((last + 1, b));
        }
    }
    *list = out;
}

fn overlaps(list: &[(u128, u128)], first: u128, last: u128) -> bool {
    let i = list.partition_point(|&(_, l)| l < first);
    i < list.len() && list[i].0 <= last
}

fn contains_range(list: &[(u128, u128)], first: u128, last: u128) -> bool {
    let i = list.partition_point(|&(_, l)| l < first);
    i < list.len() && list[i].0 <= first && list[i].1 >= last
}

impl AddrSet {
    pub fn new() -> Self {
        AddrSet::default()
    }

    pub fn everything() -> Self {
        let mut s = AddrSet::new();
        s.v4.push((0, Family::V4.max()));
        s.v6.push((0, Family::V6.max()));
        s
    }

    pub fn from_prefix(net: IpNet) -> Self {
        let mut s = AddrSet::new();
        s.add_range(AddrRange::from_prefix(net));
        s
    }

    pub fn from_ips(ips: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut s = AddrSet::new();
        for ip in ips {
            s.add_range(AddrRange::single(ip));
        }
        s
    }

    fn list(&self, family: Family) -> &Vec<(u128, u128)> {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    fn list_mut(&mut self, family: Family) -> &mut Vec<(u128, u128)> {
        match family {
            Family::V4 => &mut self.v4,
            Family::V6 => &mut self.v6,
        }
    }

    pub fn add_range(&mut self, r: AddrRange) {
        insert(self.list_mut(r.family), r.first, r.last);
    }

    pub fn add_prefix(&mut self, net: IpNet) {
        self.add_range(AddrRange::from_prefix(net));
    }

    pub fn add_ip(&mut self, ip: IpAddr) {
        self.add_range(AddrRange::single(ip));
    }

    pub fn add_set(&mut self, other: &AddrSet) {
        for r in other.ranges() {
            self.add_range(r);
        }
    }

    pub fn remove_range(&mut self, r: AddrRange) {
        remove(self.list_mut(r.family), r.first, r.last);
    }

    pub fn remove_prefix(&mut self, net: IpNet) {
        self.remove_range(AddrRange::from_prefix(net));
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        let (f, v) = ip_to_u128(ip);
        contains_range(self.list(f), v, v)
    }

    pub fn contains_range(&self, r: &AddrRange) -> bool {
        contains_range(self.list(r.family), r.first, r.last)
    }

    pub fn contains_prefix(&self, net: IpNet) -> bool {
        self.contains_range(&AddrRange::from_prefix(net))
    }

    pub fn overlaps_range(&self, r: &AddrRange) -> bool {
        overlaps(self.list(r.family), r.first, r.last)
    }

    pub fn overlaps_prefix(&self, net: IpNet) -> bool {
        self.overlaps_range(&AddrRange::from_prefix(net))
    }

    pub fn overlaps(&self, other: &AddrSet) -> bool {
        other.ranges().any(|r| self.overlaps_range(&r))
    }

    /// Whether every address of `self` is in `other`.
    pub fn is_subset_of(&self, other: &AddrSet) -> bool {
        self.ranges().all(|r| other.contains_range(&r))
    }

    pub fn ranges(&self) -> impl Iterator<Item = AddrRange> + '_ {
        self.v4
            .iter()
            .map(|&(first, last)| AddrRange {
                family: Family::V4,
                first,
                last,
            })
            .chain(self.v6.iter().map(|&(first, last)| AddrRange {
                family: Family::V6,
                first,
                last,
            }))
    }
}

impl fmt::Debug for AddrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.ranges().map(|r| r.to_string()))
            .finish()
    }
}

#[cfg(test)]
/// Parses one entry of Tailscale's filter syntax: `*`, an address, a CIDR or an `a-b` range.
pub fn parse_filter_addr(s: &str) -> Option<AddrSet> {
    if s == "*" {
        return Some(AddrSet::everything());
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(AddrSet::from_prefix(net));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(AddrSet::from_ips([ip]));
    }
    let (a, b) = s.split_once('-')?;
    let (fa, a) = ip_to_u128(a.parse().ok()?);
    let (fb, b) = ip_to_u128(b.parse().ok()?);
    if fa != fb || a > b {
        return None;
    }
    let mut set = AddrSet::new();
    set.add_range(AddrRange {
        family: fa,
        first: a,
        last: b,
    });
    Some(set)
}

/// Well-known address ranges of a tailnet.
pub mod well_known {
    use super::*;

    pub fn net(s: &str) -> IpNet {
        // Only called with literals below; an invalid literal is a programming error caught by tests.
        s.parse()
            .unwrap_or_else(|_| IpNet::V4(ipnet::Ipv4Net::default()))
    }

    /// 100.64.0.0/10, the CGNAT range Tailscale takes IPv4 addresses from.
    pub fn cgnat() -> IpNet {
        net("100.64.0.0/10")
    }

    /// fd7a:115c:a1e0::/48, Tailscale's IPv6 range.
    pub fn tailscale_ula() -> IpNet {
        net("fd7a:115c:a1e0::/48")
    }

    /// 100.115.92.0/23, reserved (ChromeOS VMs); not part of `*`.
    pub fn chromeos_vm() -> IpNet {
        net("100.115.92.0/23")
    }

    /// What `*` stands for as a source: every tailnet address.
    pub fn tailnet() -> AddrSet {
        let mut s = AddrSet::new();
        s.add_prefix(cgnat());
        s.add_prefix(tailscale_ula());
        s.remove_prefix(chromeos_vm());
        s
    }

    /// `autogroup:internet`: public IPv4 and global unicast IPv6, minus private,
    /// link-local and tailnet ranges.
    pub fn internet() -> AddrSet {
        let mut s = AddrSet::new();
        s.add_prefix(net("0.0.0.0/0"));
        s.add_prefix(net("2000::/3"));
        for p in [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "fc00::/7",
            "fe80::/10",
        ] {
            s.remove_prefix(net(p));
        }
        s.remove_prefix(cgnat());
        s.remove_prefix(tailscale_ula());
        s
    }

    pub fn is_exit_route(net: &IpNet) -> bool {
        net.prefix_len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> AddrSet {
        let mut s = AddrSet::new();
        for i in items {
            s.add_set(&parse_filter_addr(i).unwrap());
        }
        s
    }

    #[test]
    fn union_merges_adjacent_and_overlapping() {
        let s = set(&["10.0.0.0/25", "10.0.0.128/25", "10.0.1.5", "10.0.1.0/24"]);
        assert_eq!(format!("{s:?}"), r#"["10.0.0.0/23"]"#);
    }

    #[test]
    fn difference_and_rendering() {
        let t = well_known::tailnet();
        let strings: Vec<String> = t.ranges().map(|r| r.to_string()).collect();
        assert_eq!(
            strings,
            [
                "100.64.0.0-100.115.91.255",
                "100.115.94.0-100.127.255.255",
                "fd7a:115c:a1e0::/48"
            ]
        );
    }

    #[test]
    fn internet_matches_tailscale() {
        let strings: Vec<String> = well_known::internet()
            .ranges()
            .map(|r| r.range_string())
            .collect();
        assert_eq!(
            strings,
            [
                "0.0.0.0-9.255.255.255",
                "11.0.0.0-100.63.255.255",
                "100.128.0.0-169.253.255.255",
                "169.255.0.0-172.15.255.255",
                "172.32.0.0-192.167.255.255",
                "192.169.0.0-255.255.255.255",
                "2000::-3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ]
        );
    }

    #[test]
    fn containment_and_overlap() {
        let s = set(&["10.0.0.0/8", "fd00::/64"]);
        assert!(s.contains_ip("10.1.2.3".parse().unwrap()));
        assert!(!s.contains_ip("11.0.0.0".parse().unwrap()));
        assert!(s.overlaps_prefix("0.0.0.0/0".parse().unwrap()));
        assert!(!s.contains_prefix("0.0.0.0/0".parse().unwrap()));
        assert!(s.contains_prefix("fd00::/96".parse().unwrap()));
        assert!(set(&["10.1.0.0/16"]).is_subset_of(&s));
        assert!(!set(&["10.1.0.0/16", "11.0.0.1"]).is_subset_of(&s));
        assert!(AddrSet::everything().contains_prefix("::/0".parse().unwrap()));
    }

    #[test]
    fn prefixes_and_ranges_render() {
        assert_eq!(
            AddrRange::from_prefix("0.0.0.0/0".parse().unwrap()).to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            AddrRange::from_prefix("::/0".parse().unwrap()).to_string(),
            "::/0"
        );
        assert_eq!(
            parse_filter_addr("1.2.3.4-1.2.3.9")
                .unwrap()
                .ranges()
                .next()
                .unwrap()
                .to_string(),
            "1.2.3.4-1.2.3.9"
        );
        assert!(parse_filter_addr("1.2.3.9-1.2.3.4").is_none());
        assert!(parse_filter_addr("1.2.3.4-::1").is_none());
    }
}
