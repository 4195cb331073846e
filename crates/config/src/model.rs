//! The typed configuration: what the rest of Headway reads. Structs mirror
//! the sections of `config.yaml`; where headscale's flat keys describe
//! mutually exclusive choices (database backend, TLS source, OIDC on/off)
//! the type is an enum or an `Option`, so impossible combinations cannot be
//! represented. Every path is absolute or relative to the working directory
//! by the time it gets here (see `decode`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::Url;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The URL clients use to reach this server (`server_url`).
    pub server_url: Url,
    /// Where the control protocol, the API and (with an `https` server URL)
    /// DERP are served.
    pub listen_addr: SocketAddr,
    /// `/metrics` and `/debug`; `None` when set to an empty value.
    pub metrics_listen_addr: Option<SocketAddr>,
    /// Not built yet; `None` when set to an empty value.
    pub grpc_listen_addr: Option<SocketAddr>,
    pub grpc_allow_insecure: bool,
    /// Reverse proxies whose forwarded-for headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Where state files live when their paths are left at the default or
    /// written relative (Headway extension).
    pub data_dir: PathBuf,
    pub noise: NoiseConfig,
    pub prefixes: PrefixesConfig,
    pub derp: DerpConfig,
    /// Accepted for headscale compatibility; Headway never checks for updates.
    pub disable_check_updates: bool,
    pub node: NodeConfig,
    pub preauth_keys: PreAuthKeysConfig,
    pub database: DatabaseConfig,
    /// `None`: plain HTTP on `listen_addr` (e.g. behind a TLS proxy).
    pub tls: Option<TlsConfig>,
    pub log: LogConfig,
    pub audit: AuditConfig,
    pub policy: PolicyConfig,
    pub dns: DnsConfig,
    /// The admin socket the local CLI uses without authentication.
    pub unix_socket: PathBuf,
    /// Permission bits for `unix_socket` (e.g. `0o770`).
    pub unix_socket_permission: u32,
    /// `None` unless `oidc.issuer` is set.
    pub oidc: Option<OidcConfig>,
    pub console: ConsoleConfig,
    pub logtail: LogtailConfig,
    pub taildrop: TaildropConfig,
    pub auto_update: AutoUpdateConfig,
    pub cli: CliConfig,
    /// headscale's removed `randomize_client_port` key, still honoured
    /// (the policy's `randomizeClientPort` is the current way).
    pub randomize_client_port: bool,
}

/// `noise.*`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoiseConfig {
    /// The server's ts2021 Noise key; generated when missing.
    pub private_key_path: PathBuf,
}

/// `prefixes.*`; at least one of `v4` / `v6` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixesConfig {
    pub v4: Option<Ipv4Net>,
    pub v6: Option<Ipv6Net>,
    pub allocation: IpAllocation,
}

/// `prefixes.allocation`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpAllocation {
    Sequential,
    Random,
}

/// `derp.*`
#[derive(Debug, Clone, PartialEq)]
pub struct DerpConfig {
    pub server: DerpServerConfig,
    /// DERP maps (JSON) fetched at start.
    pub urls: Vec<Url>,
    /// DERP maps (YAML) read from files.
    pub paths: Vec<PathBuf>,
    /// Not built yet.
    pub auto_update_enabled: bool,
    /// Not built yet.
    pub update_frequency: Duration,
}

/// `derp.server.*`: the embedded DERP relay and STUN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerpServerConfig {
    pub enabled: bool,
    pub region_id: u32,
    pub region_code: String,
    pub region_name: String,
    /// Only relay for nodes of this tailnet.
    pub verify_clients: bool,
    /// STUN (UDP); `None` when set to an empty value (only allowed with the
    /// embedded DERP disabled).
    pub stun_listen_addr: Option<SocketAddr>,
    pub private_key_path: PathBuf,
    pub automatically_add_embedded_derp_region: bool,
    /// Address clients dial for the embedded DERP node over IPv4.
    pub ipv4: DerpNodeIp<Ipv4Addr>,
    pub ipv6: DerpNodeIp<Ipv6Addr>,
    /// Headway extension: with a plain `http://` server URL the embedded
    /// DERP is served here over TLS with a self-signed certificate whose
    /// hash is pinned in the DERP map.
    pub tls_listen_addr: SocketAddr,
    /// Headway extension: that certificate, generated when missing.
    pub tls_cert_path: PathBuf,
    pub tls_key_path: PathBuf,
    /// Headway extension for several replicas: the key (64 hex digits, like
    /// derper's `--mesh-psk-file`) that makes the replicas' relays trust
    /// each other as one region.
    pub mesh_key: Option<Secret>,
    /// The DERP URLs of every replica's relay (`https://host:port`); this
    /// server's own entry is recognised and skipped.
    pub mesh_with: Vec<url::Url>,
}

/// How clients find the embedded DERP node's address (tailcfg `DERPNode`
/// `IPv4` / `IPv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerpNodeIp<A> {
    /// Unset: clients resolve the server URL's host name.
    FromDns,
    /// `none`: clients must not use this address family.
    Disabled,
    Fixed(A),
}

/// `node.*`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Default key expiry of nodes that are not tagged; `None`: no expiry.
    pub expiry: Option<Duration>,
    pub ephemeral: EphemeralConfig,
    pub routes: RoutesConfig,
}

/// `node.ephemeral.*`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralConfig {
    /// An ephemeral node offline this long is deleted.
    pub inactivity_timeout: Duration,
}

/// `node.routes.*`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesConfig {
    pub ha: HaRoutesConfig,
}

/// `node.routes.ha.*`: health probes of HA subnet routers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaRoutesConfig {
    /// `None`: probing disabled.
    pub probe_interval: Option<Duration>,
    pub probe_timeout: Duration,
}

/// `preauth_keys.*` (not built yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreAuthKeysConfig {
    /// How long a revoked key stays visible; `None`: kept forever.
    pub revoked_retention: Option<Duration>,
}

/// `database.*`
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// Log SQL statements (needs `log.level` debug or trace to show).
    pub debug: bool,
    /// `database.type` and the settings of that backend.
    pub backend: DatabaseBackend,
}

/// The chosen database with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum DatabaseBackend {
    Sqlite(SqliteConfig),
    Postgres(PostgresConfig),
}

/// `database.sqlite.*`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    pub path: PathBuf,
    pub write_ahead_log: bool,
    /// WAL frames before an automatic checkpoint; 0 disables.
    pub wal_autocheckpoint: u32,
    /// The SQLCipher key the file is encrypted with (`key`, `key_path`):
    /// a passphrase, or 64 hex digits used as the raw 256-bit key.
    pub key: Option<Secret>,
}

/// `database.postgres.*`
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    /// Host name, IP address, or the directory of a Unix socket.
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    /// From `pass`, `pass_path` or `HEADWAY_DATABASE__POSTGRES__PASS_FILE`.
    pub pass: Option<Secret>,
    pub ssl: PostgresSslMode,
    /// `ssl_root_cert`: the CA (PEM) that `verify-ca` / `verify-full`
    /// check the server against, besides the public CAs.
    pub ssl_root_cert: Option<PathBuf>,
    pub max_open_conns: u32,
    pub max_idle_conns: u32,
    /// `conn_max_idle_time_secs`
    pub conn_max_idle_time: Duration,
}

/// libpq's `sslmode`; headscale's `ssl: false` / `true` are `Disable` /
/// `Require`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresSslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PostgresSslMode {
    /// The libpq spelling (`verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Where the main listener's certificate comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TlsConfig {
    /// `tls_cert_path` and `tls_key_path`.
    Files {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
    /// `tls_letsencrypt_*` and `acme_*`: certificates over ACME.
    LetsEncrypt(LetsEncryptConfig),
}

/// `tls_letsencrypt_*` and `acme_*`
#[derive(Debug, Clone, PartialEq)]
pub struct LetsEncryptConfig {
    pub hostname: String,
    pub cache_dir: PathBuf,
    pub challenge_type: AcmeChallenge,
    /// Listener for the HTTP-01 challenge, in Go's form (`:http`).
    pub listen: String,
    pub acme_url: Url,
    pub acme_email: String,
}

/// `tls_letsencrypt_challenge_type`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}

/// `log.*`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

/// `audit.*`: the audit log is always kept in the database; these add a
/// copy as JSON lines and a retention limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditConfig {
    /// `audit.log_path`: also write each entry as one JSON line to this
    /// file (`-` for standard output); `None`: database only.
    pub log_path: Option<AuditSinkPath>,
    /// `audit.retention`: entries older than this are deleted; `None`
    /// (`0`): kept forever.
    pub retention: Option<Duration>,
}

/// Where `audit.log_path` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSinkPath {
    Stdout,
    File(PathBuf),
}

/// `log.level`; headscale's `fatal` and `panic` read as `Error`,
/// `disabled` as `Off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

/// `log.format`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `policy.*`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub mode: PolicyMode,
    /// The HuJSON policy file in `file` mode; `None` allows all traffic.
    pub path: Option<PathBuf>,
}

/// `policy.mode`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    File,
    Database,
}

/// `dns.*`
#[derive(Debug, Clone, PartialEq)]
pub struct DnsConfig {
    pub magic_dns: bool,
    /// `None` when empty (only allowed without MagicDNS).
    pub base_domain: Option<String>,
    /// Clients use `nameservers.global` instead of their own resolvers.
    pub override_local_dns: bool,
    pub nameservers: NameserversConfig,
    pub search_domains: Vec<String>,
    pub extra_records: Vec<DnsRecord>,
    /// A JSON file of extra records, watched for changes.
    pub extra_records_path: Option<PathBuf>,
}

/// `dns.nameservers.*`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameserversConfig {
    pub global: Vec<Nameserver>,
    /// Domain → resolvers for it (an empty list: answered by MagicDNS only).
    pub split: BTreeMap<String, Vec<Nameserver>>,
}

/// A resolver as Tailscale clients accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nameserver {
    /// Plain DNS on port 53.
    Ip(IpAddr),
    /// Plain DNS on another port.
    IpPort(SocketAddr),
    /// DNS over HTTPS (or over HTTP through the tailnet).
    Url(Url),
}

impl fmt::Display for Nameserver {
    /// The tailcfg `Resolver.Addr` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => ip.fmt(f),
            Self::IpPort(addr) => addr.fmt(f),
            Self::Url(url) => url.fmt(f),
        }
    }
}

/// One `dns.extra_records` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub name: String,
    pub record_type: DnsRecordType,
    /// An IPv4 address for `A`, IPv6 for `AAAA`.
    pub value: IpAddr,
}

/// The record types Tailscale clients serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRecordType {
    A,
    Aaaa,
}

impl DnsRecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::Aaaa => "AAAA",
        }
    }
}

/// `oidc.*` when `oidc.issuer` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct OidcConfig {
    pub only_start_if_oidc_is_available: bool,
    pub issuer: Url,
    pub client_id: String,
    /// From `client_secret`, `client_secret_path` or
    /// `HEADWAY_OIDC__CLIENT_SECRET_FILE`.
    pub client_secret: Secret,
    pub scope: Vec<String>,
    pub extra_params: BTreeMap<String, String>,
    pub allowed_domains: Vec<String>,
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub email_verified_required: bool,
    pub use_expiry_from_token: bool,
    /// `None` when `oidc.pkce.enabled` is false.
    pub pkce: Option<PkceMethod>,
}

/// `console.*` (Headway extension): who may sign in to the web console
/// with the OIDC provider. Both lists empty: nobody does (API keys still
/// work).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// E-mail addresses, compared without regard to case; only an address
    /// the provider marks verified counts.
    pub admins: Vec<String>,
    /// Groups, as the provider's `groups` claim names them.
    pub admin_groups: Vec<String>,
}

impl ConsoleConfig {
    /// Whether anyone may sign in with OIDC at all.
    pub fn names_admins(&self) -> bool {
        !self.admins.is_empty() || !self.admin_groups.is_empty()
    }
}

/// `oidc.pkce.method`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PkceMethod {
    Plain,
    S256,
}

/// `logtail.*` (not built yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogtailConfig {
    pub enabled: bool,
}

/// `taildrop.*` (not built yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaildropConfig {
    pub enabled: bool,
}

/// `auto_update.*` (not built yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoUpdateConfig {
    pub enabled: bool,
}

/// `cli.*`: how the `headway` CLI reaches a remote server.
#[derive(Debug, Clone, PartialEq)]
pub struct CliConfig {
    /// `host:port` of a remote server; `None`: use `unix_socket`.
    pub address: Option<String>,
    /// From `api_key`, `api_key_path` or `HEADWAY_CLI__API_KEY_FILE`.
    pub api_key: Option<Secret>,
    pub timeout: Duration,
    pub insecure: bool,
}

/// A secret string (password, client secret, API key). Its `Debug` output
/// is redacted and it has no `Display`, so it cannot leak into logs or
/// error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
