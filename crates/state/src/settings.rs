//! The tailnet-wide settings the service layer and the mapper need, taken
//! from the configuration at start-up (this crate does not read config files).

use std::collections::BTreeMap;
use std::time::Duration;

use headway_proto::tailcfg::{DerpMap, DnsRecord};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::ipalloc::Strategy;

#[derive(Debug, Clone, Default)]
pub struct DnsSettings {
    pub magic_dns: bool,
    /// Suffix of MagicDNS names: `<node>.<base_domain>`.
    pub base_domain: String,
    pub override_local_dns: bool,
    /// Global upstream resolvers (IPs or DoH/DoT URLs).
    pub nameservers: Vec<String>,
    /// Split DNS: domain → resolvers.
    pub split: BTreeMap<String, Vec<String>>,
    pub search_domains: Vec<String>,
    pub extra_records: Vec<DnsRecord>,
}

/// Where the policy comes from (`policy.mode`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PolicySource {
    /// A HuJSON file the server reads and reloads (`None`: no policy file).
    File(Option<std::path::PathBuf>),
    /// Stored in the database, set through the API/CLI.
    #[default]
    Database,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Public URL of the server (AuthURLs are built from it).
    pub server_url: String,
    pub prefix_v4: Option<Ipv4Net>,
    pub prefix_v6: Option<Ipv6Net>,
    pub allocation: Strategy,
    /// Default key expiry of user-owned nodes (`None`: never expire).
    pub node_expiry: Option<Duration>,
    /// Ephemeral nodes are deleted after being offline this long.
    pub ephemeral_inactivity_timeout: Duration,
    pub dns: DnsSettings,
    pub derp_map: DerpMap,
    pub randomize_client_port: bool,
    pub policy_source: PolicySource,
    /// Let clients upload logs to Tailscale's log service (`logtail.enabled`).
    pub logtail: bool,
    /// Taildrop file sharing between nodes (`taildrop.enabled`).
    pub taildrop: bool,
    /// What clients without a local choice do about auto-updates (`auto_update.enabled`).
    pub default_auto_update: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server_url: "http://127.0.0.1:8080".into(),
            prefix_v4: "100.64.0.0/10".parse().ok(),
            prefix_v6: "fd7a:115c:a1e0::/48".parse().ok(),
            allocation: Strategy::Sequential,
            node_expiry: None,
            ephemeral_inactivity_timeout: Duration::from_secs(30 * 60),
            dns: DnsSettings {
                magic_dns: true,
                base_domain: "headway.internal".into(),
                ..Default::default()
            },
            derp_map: DerpMap::default(),
            randomize_client_port: false,
            policy_source: PolicySource::Database,
            logtail: false,
            taildrop: true,
            default_auto_update: false,
        }
    }
}
