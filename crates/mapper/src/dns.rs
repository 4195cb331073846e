//! The DNS configuration in a node's map (MagicDNS, resolvers, split DNS).

use std::collections::BTreeMap;

use headway_proto::tailcfg::{DnsConfig, DnsRecord, Resolver};
use headway_state::model::Node;
use headway_state::settings::Settings;

fn resolvers(addrs: &[String]) -> Vec<Resolver> {
    addrs
        .iter()
        .map(|a| Resolver {
            addr: a.clone(),
            ..Default::default()
        })
        .collect()
}

/// MagicDNS answers `<node>.<base_domain>` itself (the 100.100.100.100
/// resolver); upstreams go in `Resolvers` when the tailnet overrides local
/// DNS, and in `FallbackResolvers` otherwise.
pub fn dns_config(settings: &Settings, extra_records: &[DnsRecord], _node: &Node) -> DnsConfig {
    let dns = &settings.dns;
    let mut cfg = DnsConfig {
        proxied: dns.magic_dns,
        ..Default::default()
    };
    if dns.override_local_dns {
        cfg.resolvers = resolvers(&dns.nameservers);
    } else {
        cfg.fallback_resolvers = resolvers(&dns.nameservers);
    }
    cfg.routes = dns
        .split
        .iter()
        .map(|(domain, addrs)| (domain.clone(), resolvers(addrs)))
        .collect::<BTreeMap<_, _>>();
    if !dns.base_domain.is_empty() {
        cfg.domains.push(dns.base_domain.clone());
    }
    cfg.domains.extend(dns.search_domains.iter().cloned());
    cfg.extra_records = dns
        .extra_records
        .iter()
        .chain(extra_records)
        .cloned()
        .collect();
    cfg
}
