//! The JSON messages of the control protocol (Go package `tailcfg`).
//!
//! Field names are Go's field names unless a Go tag renames them; serde's
//! `PascalCase` gets several of them wrong (`SrcIPs`, `HostName`, `IPv4`…), so
//! every such name is spelled out. Every incoming type is `#[serde(default)]`:
//! the client omits zero values. Outgoing optional fields are skipped when empty,
//! because for deltas "absent" means "unchanged" (see the protocol guide §4.5).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::keys::{ChallengePublic, DiscoPublic, MachinePublic, NlPublic, NodePublic};

pub type NodeId = i64;
pub type UserId = i64;
pub type CapabilityVersion = i32;

/// Node capability name → arguments (usually an empty list).
pub type NodeCapMap = BTreeMap<String, Vec<Value>>;
/// Peer capability name → arguments, as granted by the policy.
pub type PeerCapMap = BTreeMap<String, Vec<Value>>;

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

/// RFC 3339 times where Go's zero time (`0001-01-01T00:00:00Z`) means `None`.
pub mod go_time {
    use super::*;
    use chrono::SecondsFormat;
    use serde::Serializer;

    pub const ZERO: &str = "0001-01-01T00:00:00Z";

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    pub fn parse(s: &str) -> Result<Option<DateTime<Utc>>, chrono::ParseError> {
        let t = DateTime::parse_from_rfc3339(s)?.with_timezone(&Utc);
        // Go's zero time and anything before the epoch's first day are "unset".
        Ok(if t.timestamp() <= -62135596800 {
            None
        } else {
            Some(t)
        })
    }

    /// `None` is written as Go's zero time (for fields Go never omits).
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_str(ZERO),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let s: Option<std::borrow::Cow<'de, str>> = Option::deserialize(d)?;
        match s {
            None => Ok(None),
            Some(s) => parse(&s).map_err(serde::de::Error::custom),
        }
    }

    /// For `Option` fields skipped when `None`.
    pub mod opt {
        use super::*;
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            super::serialize(t, s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            super::deserialize(d)
        }
    }
}

/// Endpoints as the client sends them. Entries that are not `ip:port` (a v6
/// address with a zone, say) are dropped rather than failing the whole
/// request: peers must only ever receive endpoints they can parse.
fn lenient_endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    let raw: Option<Vec<String>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect())
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// /key

/// Answer of `GET /key?v=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverTlsPublicKeyResponse {
    #[serde(rename = "legacyPublicKey")]
    pub legacy_public_key: MachinePublic,
    #[serde(rename = "publicKey")]
    pub public_key: MachinePublic,
}

/// The optional payload sent before HTTP/2 on a fresh Noise connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EarlyNoise {
    #[serde(rename = "nodeKeyChallenge")]
    pub node_key_challenge: ChallengePublic,
}

// ---------------------------------------------------------------------------
// Hostinfo

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetInfo {
    #[serde(rename = "PreferredDERP", skip_serializing_if = "is_zero_i32")]
    pub preferred_derp: i32,
    #[serde(
        rename = "DERPLatency",
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub derp_latency: BTreeMap<String, f64>,
    /// Everything else the client reports (NAT flags, link type…), kept verbatim.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Service {
    #[serde(rename = "Proto")]
    pub proto: String,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Description", skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// What a client tells about itself. Fields the server acts on are typed; the
/// rest is kept verbatim so that it can be echoed back unchanged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Hostinfo {
    #[serde(rename = "IPNVersion", skip_serializing_if = "String::is_empty")]
    pub ipn_version: String,
    #[serde(rename = "OS", skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(rename = "OSVersion", skip_serializing_if = "String::is_empty")]
    pub os_version: String,
    #[serde(rename = "Hostname", skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(
        rename = "RoutableIPs",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub routable_ips: Vec<IpNet>,
    #[serde(
        rename = "RequestTags",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub request_tags: Vec<String>,
    #[serde(
        rename = "Services",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub services: Vec<Service>,
    #[serde(
        rename = "sshHostKeys",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub ssh_host_keys: Vec<String>,
    #[serde(rename = "ShieldsUp", skip_serializing_if = "is_false")]
    pub shields_up: bool,
    #[serde(rename = "NetInfo", skip_serializing_if = "Option::is_none")]
    pub net_info: Option<NetInfo>,
    /// Everything else, kept verbatim.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

// ---------------------------------------------------------------------------
// /machine/register

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterResponseAuth {
    #[serde(rename = "AuthKey", skip_serializing_if = "String::is_empty")]
    pub auth_key: String,
    /// Pre-1.66 Android only; accepted and ignored.
    #[serde(rename = "Oauth2Token", skip_serializing_if = "Option::is_none")]
    pub oauth2_token: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterRequest {
    #[serde(rename = "Version")]
    pub version: CapabilityVersion,
    #[serde(rename = "NodeKey")]
    pub node_key: NodePublic,
    #[serde(rename = "OldNodeKey")]
    pub old_node_key: NodePublic,
    #[serde(rename = "NLKey")]
    pub nl_key: NlPublic,
    #[serde(rename = "Auth", skip_serializing_if = "Option::is_none")]
    pub auth: Option<RegisterResponseAuth>,
    #[serde(rename = "Expiry", with = "go_time")]
    pub expiry: Option<DateTime<Utc>>,
    #[serde(rename = "Followup")]
    pub followup: String,
    #[serde(rename = "Hostinfo", skip_serializing_if = "Option::is_none")]
    pub hostinfo: Option<Hostinfo>,
    #[serde(rename = "Ephemeral", skip_serializing_if = "is_false")]
    pub ephemeral: bool,
    #[serde(rename = "Tailnet", skip_serializing_if = "String::is_empty")]
    pub tailnet: String,
}

/// A user, as the client stores it in its login profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    #[serde(rename = "ID")]
    pub id: UserId,
    #[serde(rename = "DisplayName")]
    pub display_name: String,
    #[serde(rename = "ProfilePicURL", skip_serializing_if = "String::is_empty")]
    pub profile_pic_url: String,
    #[serde(
        rename = "Created",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Login {
    #[serde(rename = "ID")]
    pub id: i64,
    #[serde(rename = "Provider")]
    pub provider: String,
    #[serde(rename = "LoginName")]
    pub login_name: String,
    #[serde(rename = "DisplayName")]
    pub display_name: String,
    #[serde(rename = "ProfilePicURL", skip_serializing_if = "String::is_empty")]
    pub profile_pic_url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisterResponse {
    #[serde(rename = "User")]
    pub user: User,
    #[serde(rename = "Login")]
    pub login: Login,
    #[serde(rename = "NodeKeyExpired")]
    pub node_key_expired: bool,
    #[serde(rename = "MachineAuthorized")]
    pub machine_authorized: bool,
    #[serde(rename = "AuthURL")]
    pub auth_url: String,
    #[serde(rename = "Error")]
    pub error: String,
}

// ---------------------------------------------------------------------------
// /machine/map

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MapRequest {
    #[serde(rename = "Version")]
    pub version: CapabilityVersion,
    #[serde(rename = "Compress", skip_serializing_if = "String::is_empty")]
    pub compress: String,
    #[serde(rename = "KeepAlive", skip_serializing_if = "is_false")]
    pub keep_alive: bool,
    #[serde(rename = "NodeKey")]
    pub node_key: NodePublic,
    #[serde(rename = "DiscoKey")]
    pub disco_key: DiscoPublic,
    #[serde(rename = "Stream", skip_serializing_if = "is_false")]
    pub stream: bool,
    #[serde(rename = "Hostinfo", skip_serializing_if = "Option::is_none")]
    pub hostinfo: Option<Hostinfo>,
    #[serde(
        rename = "Endpoints",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_endpoints"
    )]
    pub endpoints: Vec<SocketAddr>,
    #[serde(
        rename = "EndpointTypes",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub endpoint_types: Vec<i32>,
    #[serde(rename = "TKAHead", skip_serializing_if = "String::is_empty")]
    pub tka_head: String,
    #[serde(rename = "ReadOnly", skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(rename = "OmitPeers", skip_serializing_if = "is_false")]
    pub omit_peers: bool,
    #[serde(
        rename = "DebugFlags",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub debug_flags: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct PortRange {
    #[serde(rename = "First")]
    pub first: u16,
    #[serde(rename = "Last")]
    pub last: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        first: 0,
        last: 65535,
    };
    pub fn single(p: u16) -> Self {
        PortRange { first: p, last: p }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetPortRange {
    /// An IP, a CIDR, an `a-b` range, or `*`.
    #[serde(rename = "IP")]
    pub ip: String,
    #[serde(rename = "Ports")]
    pub ports: PortRange,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CapGrant {
    #[serde(rename = "Dsts")]
    pub dsts: Vec<IpNet>,
    #[serde(rename = "CapMap", skip_serializing_if = "BTreeMap::is_empty")]
    pub cap_map: PeerCapMap,
}

/// One rule of a node's packet filter. Never carries the deprecated
/// `SrcBits`/`Bits`: a client rejects the whole filter when it sees them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterRule {
    #[serde(rename = "SrcIPs")]
    pub src_ips: Vec<String>,
    #[serde(rename = "DstPorts", skip_serializing_if = "Vec::is_empty")]
    pub dst_ports: Vec<NetPortRange>,
    #[serde(rename = "IPProto", skip_serializing_if = "Vec::is_empty")]
    pub ip_proto: Vec<i32>,
    #[serde(rename = "CapGrant", skip_serializing_if = "Vec::is_empty")]
    pub cap_grant: Vec<CapGrant>,
}

impl FilterRule {
    /// The rule that lets everyone reach everything (no policy).
    pub fn allow_all() -> Vec<FilterRule> {
        vec![FilterRule {
            src_ips: vec!["*".into()],
            dst_ports: vec![NetPortRange {
                ip: "*".into(),
                ports: PortRange::ANY,
            }],
            ..Default::default()
        }]
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resolver {
    #[serde(rename = "Addr", skip_serializing_if = "String::is_empty")]
    pub addr: String,
    #[serde(rename = "BootstrapResolution", skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_resolution: Vec<std::net::IpAddr>,
    #[serde(rename = "UseWithExitNode", skip_serializing_if = "is_false")]
    pub use_with_exit_node: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsRecord {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    pub r#type: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsConfig {
    #[serde(rename = "Resolvers", skip_serializing_if = "Vec::is_empty")]
    pub resolvers: Vec<Resolver>,
    /// Split DNS: suffix → resolvers (an empty list: answered by 100.100.100.100).
    #[serde(rename = "Routes", skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, Vec<Resolver>>,
    #[serde(rename = "FallbackResolvers", skip_serializing_if = "Vec::is_empty")]
    pub fallback_resolvers: Vec<Resolver>,
    #[serde(rename = "Domains", skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    #[serde(rename = "Proxied", skip_serializing_if = "is_false")]
    pub proxied: bool,
    #[serde(rename = "Nameservers", skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<std::net::IpAddr>,
    #[serde(rename = "CertDomains", skip_serializing_if = "Vec::is_empty")]
    pub cert_domains: Vec<String>,
    #[serde(rename = "ExtraRecords", skip_serializing_if = "Vec::is_empty")]
    pub extra_records: Vec<DnsRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DerpNode {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "RegionID")]
    pub region_id: i32,
    #[serde(rename = "HostName")]
    pub host_name: String,
    #[serde(rename = "CertName", skip_serializing_if = "String::is_empty")]
    pub cert_name: String,
    #[serde(rename = "IPv4", skip_serializing_if = "String::is_empty")]
    pub ipv4: String,
    #[serde(rename = "IPv6", skip_serializing_if = "String::is_empty")]
    pub ipv6: String,
    #[serde(rename = "STUNPort", skip_serializing_if = "is_zero_i32")]
    pub stun_port: i32,
    #[serde(rename = "STUNOnly", skip_serializing_if = "is_false")]
    pub stun_only: bool,
    #[serde(rename = "DERPPort", skip_serializing_if = "is_zero_i32")]
    pub derp_port: i32,
    #[serde(rename = "InsecureForTests", skip_serializing_if = "is_false")]
    pub insecure_for_tests: bool,
    #[serde(rename = "STUNTestIP", skip_serializing_if = "String::is_empty")]
    pub stun_test_ip: String,
    #[serde(rename = "CanPort80", skip_serializing_if = "is_false")]
    pub can_port80: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DerpRegion {
    #[serde(rename = "RegionID")]
    pub region_id: i32,
    #[serde(rename = "RegionCode")]
    pub region_code: String,
    #[serde(rename = "RegionName")]
    pub region_name: String,
    #[serde(rename = "Latitude", skip_serializing_if = "is_zero_f64")]
    pub latitude: f64,
    #[serde(rename = "Longitude", skip_serializing_if = "is_zero_f64")]
    pub longitude: f64,
    #[serde(rename = "Avoid", skip_serializing_if = "is_false")]
    pub avoid: bool,
    #[serde(rename = "NoMeasureNoHome", skip_serializing_if = "is_false")]
    pub no_measure_no_home: bool,
    #[serde(rename = "Nodes", deserialize_with = "null_as_default")]
    pub nodes: Vec<DerpNode>,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DerpHomeParams {
    #[serde(rename = "RegionScore", skip_serializing_if = "BTreeMap::is_empty")]
    pub region_score: BTreeMap<i32, f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DerpMap {
    #[serde(rename = "HomeParams", skip_serializing_if = "Option::is_none")]
    pub home_params: Option<DerpHomeParams>,
    #[serde(rename = "Regions", deserialize_with = "null_as_default")]
    pub regions: BTreeMap<i32, DerpRegion>,
    #[serde(rename = "omitDefaultRegions", skip_serializing_if = "is_false")]
    pub omit_default_regions: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserProfile {
    #[serde(rename = "ID")]
    pub id: UserId,
    #[serde(rename = "LoginName")]
    pub login_name: String,
    #[serde(rename = "DisplayName")]
    pub display_name: String,
    #[serde(rename = "ProfilePicURL", skip_serializing_if = "String::is_empty")]
    pub profile_pic_url: String,
}

/// A node as sent in a map response: the receiver itself or one of its peers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: NodeId,
    #[serde(rename = "StableID")]
    pub stable_id: String,
    /// FQDN with a trailing dot.
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "User")]
    pub user: UserId,
    #[serde(rename = "Key")]
    pub key: NodePublic,
    #[serde(
        rename = "KeyExpiry",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_expiry: Option<DateTime<Utc>>,
    #[serde(rename = "Machine", skip_serializing_if = "MachinePublic::is_zero")]
    pub machine: MachinePublic,
    #[serde(rename = "DiscoKey", skip_serializing_if = "DiscoPublic::is_zero")]
    pub disco_key: DiscoPublic,
    #[serde(rename = "Addresses")]
    pub addresses: Vec<IpNet>,
    #[serde(rename = "AllowedIPs", skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<IpNet>,
    #[serde(
        rename = "Endpoints",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "lenient_endpoints"
    )]
    pub endpoints: Vec<SocketAddr>,
    #[serde(rename = "HomeDERP", skip_serializing_if = "is_zero_i32")]
    pub home_derp: i32,
    /// Pre-capver-111 form of `HomeDERP` (`127.3.3.40:<region>`).
    #[serde(rename = "DERP", skip_serializing_if = "String::is_empty")]
    pub legacy_derp: String,
    #[serde(rename = "Hostinfo", skip_serializing_if = "Option::is_none")]
    pub hostinfo: Option<Hostinfo>,
    #[serde(
        rename = "Created",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub created: Option<DateTime<Utc>>,
    #[serde(rename = "Cap", skip_serializing_if = "is_zero_i32")]
    pub cap: CapabilityVersion,
    #[serde(rename = "Tags", skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(rename = "PrimaryRoutes", skip_serializing_if = "Vec::is_empty")]
    pub primary_routes: Vec<IpNet>,
    #[serde(
        rename = "LastSeen",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(rename = "Online", skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(rename = "MachineAuthorized", skip_serializing_if = "is_false")]
    pub machine_authorized: bool,
    #[serde(rename = "CapMap", skip_serializing_if = "BTreeMap::is_empty")]
    pub cap_map: NodeCapMap,
    #[serde(rename = "Expired", skip_serializing_if = "is_false")]
    pub expired: bool,
    #[serde(rename = "IsJailed", skip_serializing_if = "is_false")]
    pub is_jailed: bool,
}

/// A partial update of one peer: only the fields present changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerChange {
    #[serde(rename = "NodeID")]
    pub node_id: NodeId,
    #[serde(rename = "DERPRegion", skip_serializing_if = "is_zero_i32")]
    pub derp_region: i32,
    #[serde(rename = "Cap", skip_serializing_if = "is_zero_i32")]
    pub cap: CapabilityVersion,
    #[serde(rename = "CapMap", skip_serializing_if = "Option::is_none")]
    pub cap_map: Option<NodeCapMap>,
    #[serde(rename = "Endpoints", skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<SocketAddr>>,
    #[serde(rename = "Key", skip_serializing_if = "Option::is_none")]
    pub key: Option<NodePublic>,
    #[serde(rename = "DiscoKey", skip_serializing_if = "Option::is_none")]
    pub disco_key: Option<DiscoPublic>,
    #[serde(rename = "Online", skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    #[serde(
        rename = "LastSeen",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(
        rename = "KeyExpiry",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_expiry: Option<DateTime<Utc>>,
}

impl PeerChange {
    /// Folds a later patch of the same node into this one (later wins).
    pub fn merge(&mut self, later: PeerChange) {
        debug_assert_eq!(self.node_id, later.node_id);
        if later.derp_region != 0 {
            self.derp_region = later.derp_region;
        }
        if later.cap != 0 {
            self.cap = later.cap;
        }
        if later.cap_map.is_some() {
            self.cap_map = later.cap_map;
        }
        if later.endpoints.is_some() {
            self.endpoints = later.endpoints;
        }
        if later.key.is_some() {
            self.key = later.key;
        }
        if later.disco_key.is_some() {
            self.disco_key = later.disco_key;
        }
        if later.online.is_some() {
            self.online = later.online;
        }
        if later.last_seen.is_some() {
            self.last_seen = later.last_seen;
        }
        if later.key_expiry.is_some() {
            self.key_expiry = later.key_expiry;
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Debug {
    #[serde(rename = "DisableLogTail", skip_serializing_if = "is_false")]
    pub disable_log_tail: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PingRequest {
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "URLIsNoise", skip_serializing_if = "is_false")]
    pub url_is_noise: bool,
    #[serde(rename = "Log", skip_serializing_if = "is_false")]
    pub log: bool,
    #[serde(rename = "Types", skip_serializing_if = "String::is_empty")]
    pub types: String,
}

// SSH policy (lower-case Go JSON names).

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshPrincipal {
    #[serde(rename = "node", skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(rename = "nodeIP", skip_serializing_if = "String::is_empty")]
    pub node_ip: String,
    #[serde(rename = "userLogin", skip_serializing_if = "String::is_empty")]
    pub user_login: String,
    #[serde(rename = "any", skip_serializing_if = "is_false")]
    pub any: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshAction {
    #[serde(rename = "message", skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(rename = "reject", skip_serializing_if = "is_false")]
    pub reject: bool,
    #[serde(rename = "accept", skip_serializing_if = "is_false")]
    pub accept: bool,
    /// Nanoseconds.
    #[serde(rename = "sessionDuration", skip_serializing_if = "is_zero_i64")]
    pub session_duration: i64,
    #[serde(rename = "allowAgentForwarding", skip_serializing_if = "is_false")]
    pub allow_agent_forwarding: bool,
    #[serde(rename = "holdAndDelegate", skip_serializing_if = "String::is_empty")]
    pub hold_and_delegate: String,
    #[serde(rename = "allowLocalPortForwarding", skip_serializing_if = "is_false")]
    pub allow_local_port_forwarding: bool,
    #[serde(rename = "allowRemotePortForwarding", skip_serializing_if = "is_false")]
    pub allow_remote_port_forwarding: bool,
    #[serde(rename = "recorders", skip_serializing_if = "Vec::is_empty")]
    pub recorders: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshRule {
    #[serde(
        rename = "ruleExpires",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub rule_expires: Option<DateTime<Utc>>,
    #[serde(rename = "principals")]
    pub principals: Vec<SshPrincipal>,
    #[serde(rename = "sshUsers")]
    pub ssh_users: BTreeMap<String, String>,
    #[serde(rename = "action")]
    pub action: Option<SshAction>,
    #[serde(rename = "acceptEnv", skip_serializing_if = "Vec::is_empty")]
    pub accept_env: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SshPolicy {
    #[serde(rename = "rules")]
    pub rules: Vec<SshRule>,
}

/// One message of the map stream. Every field is optional: absent means
/// "unchanged" (see the protocol guide §4.2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapResponse {
    #[serde(rename = "KeepAlive", skip_serializing_if = "is_false")]
    pub keep_alive: bool,
    #[serde(rename = "PingRequest", skip_serializing_if = "Option::is_none")]
    pub ping_request: Option<PingRequest>,
    #[serde(rename = "PopBrowserURL", skip_serializing_if = "String::is_empty")]
    pub pop_browser_url: String,
    #[serde(rename = "Node", skip_serializing_if = "Option::is_none")]
    pub node: Option<Node>,
    #[serde(rename = "DERPMap", skip_serializing_if = "Option::is_none")]
    pub derp_map: Option<DerpMap>,
    #[serde(rename = "Peers", skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Node>,
    #[serde(rename = "PeersChanged", skip_serializing_if = "Vec::is_empty")]
    pub peers_changed: Vec<Node>,
    #[serde(rename = "PeersRemoved", skip_serializing_if = "Vec::is_empty")]
    pub peers_removed: Vec<NodeId>,
    #[serde(rename = "PeersChangedPatch", skip_serializing_if = "Vec::is_empty")]
    pub peers_changed_patch: Vec<PeerChange>,
    #[serde(rename = "OnlineChange", skip_serializing_if = "BTreeMap::is_empty")]
    pub online_change: BTreeMap<NodeId, bool>,
    #[serde(rename = "DNSConfig", skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<DnsConfig>,
    #[serde(rename = "Domain", skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(rename = "CollectServices", skip_serializing_if = "Option::is_none")]
    pub collect_services: Option<bool>,
    #[serde(rename = "PacketFilter", skip_serializing_if = "Option::is_none")]
    pub packet_filter: Option<Vec<FilterRule>>,
    #[serde(rename = "UserProfiles", skip_serializing_if = "Vec::is_empty")]
    pub user_profiles: Vec<UserProfile>,
    #[serde(rename = "SSHPolicy", skip_serializing_if = "Option::is_none")]
    pub ssh_policy: Option<SshPolicy>,
    #[serde(
        rename = "ControlTime",
        with = "go_time::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub control_time: Option<DateTime<Utc>>,
    #[serde(rename = "Health", skip_serializing_if = "Option::is_none")]
    pub health: Option<Vec<String>>,
    #[serde(rename = "Debug", skip_serializing_if = "Option::is_none")]
    pub debug: Option<Debug>,
}

// ---------------------------------------------------------------------------
// Small Noise endpoints

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SetDnsRequest {
    #[serde(rename = "Version")]
    pub version: CapabilityVersion,
    #[serde(rename = "NodeKey")]
    pub node_key: NodePublic,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Type")]
    pub r#type: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_zero_time_is_none_and_round_trips() {
        let r: RegisterRequest = serde_json::from_str(
            r#"{"Version":133,"NodeKey":"nodekey:0000000000000000000000000000000000000000000000000000000000000001",
                "OldNodeKey":"nodekey:0000000000000000000000000000000000000000000000000000000000000000",
                "NLKey":"nlpub:0000000000000000000000000000000000000000000000000000000000000000",
                "Expiry":"0001-01-01T00:00:00Z","Followup":"","Hostinfo":null,"NodeKeySignature":null}"#,
        )
        .unwrap();
        assert!(r.expiry.is_none());
        assert!(r.old_node_key.is_zero());
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["Expiry"], "0001-01-01T00:00:00Z");
    }

    #[test]
    fn logout_expiry_parses_as_past_time() {
        let t = go_time::parse("1970-01-01T00:02:03Z").unwrap().unwrap();
        assert_eq!(t.timestamp(), 123);
    }

    #[test]
    fn field_names_follow_go_not_pascal_case() {
        let rule = FilterRule::allow_all();
        let v = serde_json::to_value(&rule).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"SrcIPs":["*"],"DstPorts":[{"IP":"*","Ports":{"First":0,"Last":65535}}]}])
        );
        let n = DerpNode {
            host_name: "h".into(),
            ipv4: "127.0.0.1".into(),
            derp_port: 1,
            stun_port: 2,
            ..Default::default()
        };
        let v = serde_json::to_value(&n).unwrap();
        for k in ["HostName", "IPv4", "DERPPort", "STUNPort", "RegionID"] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
    }

    #[test]
    fn integer_keyed_maps_are_string_keyed_objects() {
        let mut m = MapResponse::default();
        m.online_change.insert(7, true);
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v, serde_json::json!({"OnlineChange":{"7":true}}));
    }

    #[test]
    fn hostinfo_keeps_unknown_fields_and_drops_bad_endpoints() {
        let req: MapRequest = serde_json::from_str(
            r#"{"Version":133,"NodeKey":"nodekey:0000000000000000000000000000000000000000000000000000000000000001",
               "DiscoKey":"discokey:0000000000000000000000000000000000000000000000000000000000000002",
               "Endpoints":["1.2.3.4:41641","[fe80::1%eth0]:41641","[2001:db8::1]:5"],
               "Hostinfo":{"Hostname":"box","GoArch":"amd64","NetInfo":{"PreferredDERP":900,"LinkType":"wired"}}}"#,
        )
        .unwrap();
        assert_eq!(req.endpoints.len(), 2);
        let hi = req.hostinfo.unwrap();
        assert_eq!(hi.hostname, "box");
        assert_eq!(hi.other["GoArch"], "amd64");
        assert_eq!(hi.net_info.as_ref().unwrap().preferred_derp, 900);
        let back = serde_json::to_value(&hi).unwrap();
        assert_eq!(back["NetInfo"]["LinkType"], "wired");
    }

    #[test]
    fn patch_merge_later_wins() {
        let mut a = PeerChange {
            node_id: 1,
            derp_region: 900,
            online: Some(true),
            ..Default::default()
        };
        a.merge(PeerChange {
            node_id: 1,
            online: Some(false),
            endpoints: Some(vec![]),
            ..Default::default()
        });
        assert_eq!(a.derp_region, 900);
        assert_eq!(a.online, Some(false));
        assert_eq!(a.endpoints, Some(vec![]));
    }
}
