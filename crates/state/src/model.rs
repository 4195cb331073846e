//! The domain records: what a tailnet is made of.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chrono::{DateTime, Utc};
use headway_proto::keys::{DiscoPublic, MachinePublic, NodePublic};
use headway_proto::tailcfg::Hostinfo;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub type UserId = i64;
pub type NodeId = i64;
pub type PreAuthKeyId = i64;

/// The user id that tagged nodes present to clients (Tailscale's convention
/// for devices owned by tags rather than a person).
pub const TAGGED_DEVICES_USER_ID: UserId = 2147455555;
pub const TAGGED_DEVICES_USER_NAME: &str = "tagged-devices";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// Unique login name (`alice`, or an e-mail-like name for OIDC users).
    pub name: String,
    pub display_name: String,
    pub email: String,
    /// `""` for local users, `"oidc"` for users from the identity provider.
    pub provider: String,
    /// The identity provider's stable subject, when `provider` is set.
    pub provider_id: Option<String>,
    pub profile_pic_url: String,
    pub created_at: DateTime<Utc>,
}

impl User {
    /// The name policies use for this user (`alice@` for local users).
    pub fn login_name(&self) -> String {
        if !self.email.is_empty() {
            self.email.clone()
        } else if self.name.contains('@') {
            self.name.clone()
        } else {
            format!("{}@", self.name)
        }
    }

    pub fn display(&self) -> &str {
        if self.display_name.is_empty() {
            &self.name
        } else {
            &self.display_name
        }
    }
}

/// How a node was (last) authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterMethod {
    AuthKey,
    Cli,
    Oidc,
}

impl RegisterMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            RegisterMethod::AuthKey => "authkey",
            RegisterMethod::Cli => "cli",
            RegisterMethod::Oidc => "oidc",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authkey" => Some(RegisterMethod::AuthKey),
            "cli" => Some(RegisterMethod::Cli),
            "oidc" => Some(RegisterMethod::Oidc),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub machine_key: MachinePublic,
    pub node_key: NodePublic,
    pub disco_key: DiscoPublic,
    /// The host name the client reported.
    pub hostname: String,
    /// The DNS label this node is known by (unique in the tailnet).
    pub given_name: String,
    /// The owner. `None` for nodes owned by their tags alone.
    pub user_id: Option<UserId>,
    /// ACL tags (sorted, `tag:` prefixed). Non-empty means "tagged node".
    pub tags: Vec<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub endpoints: Vec<SocketAddr>,
    pub hostinfo: Hostinfo,
    /// Home DERP region (from NetInfo.PreferredDERP; kept when NetInfo is absent).
    pub home_derp: i32,
    /// Key expiry; `None` never expires.
    pub expiry: Option<DateTime<Utc>>,
    pub register_method: RegisterMethod,
    pub auth_key_id: Option<PreAuthKeyId>,
    pub ephemeral: bool,
    pub approved_routes: Vec<IpNet>,
    pub cap_version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_seen: Option<DateTime<Utc>>,
}

impl Node {
    pub fn is_tagged(&self) -> bool {
        !self.tags.is_empty()
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expiry.is_some_and(|e| e <= now)
    }

    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.ipv6.map(IpAddr::V6))
    }

    /// `100.64.0.1/32`, `fd7a:…/128`.
    pub fn prefixes(&self) -> Vec<IpNet> {
        self.ips().map(IpNet::from).collect()
    }

    /// Routes the client advertises (`--advertise-routes`, exit node).
    pub fn announced_routes(&self) -> &[IpNet] {
        &self.hostinfo.routable_ips
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreAuthKey {
    pub id: PreAuthKeyId,
    /// Public part of the key, shown in listings and used for look-up.
    pub prefix: String,
    /// Hash of the secret part (SHA-256; bcrypt for keys imported from
    /// headscale). The secret itself is never stored.
    pub hash: crate::keys::SecretHash,
    pub user_id: Option<UserId>,
    pub reusable: bool,
    pub ephemeral: bool,
    pub used: bool,
    pub expiration: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub tags: Vec<String>,
}

impl PreAuthKey {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expiration.is_some_and(|e| e <= now)
    }
}

/// The policy as stored (`policy.mode: database`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub text: String,
    pub updated_at: DateTime<Utc>,
}

pub type ApiKeyId = i64;

/// A key for the admin API (`hskey-api-<prefix>-<secret>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    /// Public part of the key, shown in listings and used for look-up.
    pub prefix: String,
    /// Hash of the secret part (SHA-256; bcrypt for keys imported from
    /// headscale). The secret itself is never stored.
    pub hash: crate::keys::SecretHash,
    /// `None`: never expires.
    pub expiration: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// When the key was last used, to within a minute (written lazily).
    pub last_seen: Option<DateTime<Utc>>,
    /// What the key is for (free text, may be empty). A key the web console
    /// mints for an OIDC sign-in carries `console:<e-mail>`, which the
    /// audit log shows as who acted.
    pub description: String,
}

impl ApiKey {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expiration.is_some_and(|e| e <= now)
    }
}

pub type OAuthClientId = i64;

/// An OAuth client of the Tailscale-compatible v2 API: it trades its secret
/// for short-lived access tokens (client-credentials grant) limited to its
/// scopes, and may only hand out the tags it was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthClient {
    pub id: OAuthClientId,
    /// The client id (public; also the look-up part of its secret).
    pub prefix: String,
    /// SHA-256 of the secret part.
    pub hash: [u8; 32],
    pub description: String,
    /// Scopes its tokens may carry (`devices:core`, `auth_keys`, `all:read`…).
    pub scopes: Vec<String>,
    /// Tags its tokens may give to devices and auth keys.
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
}
