//! The tailnet settings from the configuration.

use headway_config::{Config, IpAllocation, PolicyMode};
use headway_proto::tailcfg::{DerpMap, DnsRecord};
use headway_state::ipalloc::Strategy;
use headway_state::settings::{DnsSettings, PolicySource, Settings};

pub(crate) fn from_config(config: &Config, derp_map: DerpMap) -> Settings {
    let dns = &config.dns;
    Settings {
        server_url: config.server_url.as_str().trim_end_matches('/').to_string(),
        prefix_v4: config.prefixes.v4,
        prefix_v6: config.prefixes.v6,
        allocation: match config.prefixes.allocation {
            IpAllocation::Sequential => Strategy::Sequential,
            IpAllocation::Random => Strategy::Random,
        },
        node_expiry: config.node.expiry,
        ephemeral_inactivity_timeout: config.node.ephemeral.inactivity_timeout,
        dns: DnsSettings {
            magic_dns: dns.magic_dns,
            base_domain: dns.base_domain.clone().unwrap_or_default(),
            override_local_dns: dns.override_local_dns,
            nameservers: dns
                .nameservers
                .global
                .iter()
                .map(|n| n.to_string())
                .collect(),
            split: dns
                .nameservers
                .split
                .iter()
                .map(|(d, ns)| (d.clone(), ns.iter().map(|n| n.to_string()).collect()))
                .collect(),
            search_domains: dns.search_domains.clone(),
            extra_records: dns
                .extra_records
                .iter()
                .map(|r| DnsRecord {
                    name: r.name.clone(),
                    r#type: r.record_type.as_str().into(),
                    value: r.value.to_string(),
                })
                .collect(),
        },
        derp_map,
        randomize_client_port: config.randomize_client_port,
        logtail: config.logtail.enabled,
        taildrop: config.taildrop.enabled,
        default_auto_update: config.auto_update.enabled,
        policy_source: match config.policy.mode {
            PolicyMode::File => PolicySource::File(config.policy.path.clone()),
            PolicyMode::Database => PolicySource::Database,
        },
    }
}
