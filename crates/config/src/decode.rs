//! Building the typed [`Config`] from the layers: each key is looked up
//! (override > environment > file > default), parsed, and on failure
//! recorded as a [`Problem`] so that one run reports every bad setting.
//!
//! Paths are resolved here:
//! - state files (database, keys, socket, certificates, ACME cache) that are
//!   relative live in `data_dir`, whether left at their default or written;
//! - input files the operator writes (policy, extra records, TLS
//!   certificate, DERP maps, secret files) that are relative are taken from
//!   the config file's directory when set in the file (as headscale does),
//!   and from the working directory when set by environment or flag;
//! - a relative `data_dir` in the file is taken from the file's directory.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use crate::error::Problem;
use crate::keys::{self, Shape};
use crate::model::*;
use crate::source::{Env, Layers, Origin};
use crate::values::{self, Bad, Parsed};

/// Reads keys from the layers, remembering problems and which keys it read.
pub(crate) struct Reader<'a> {
    layers: &'a Layers,
    env: &'a Env,
    data_dir: PathBuf,
    pub(crate) problems: Vec<Problem>,
    pub(crate) warnings: Vec<String>,
    /// Every key looked up, so a test can prove no key is forgotten.
    pub(crate) read: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(layers: &'a Layers, env: &'a Env) -> Self {
        Self {
            layers,
            env,
            data_dir: PathBuf::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            read: Vec::new(),
        }
    }

    /// The value of `key` and its origin; the default when no layer sets it.
    fn raw(&mut self, key: &'static str) -> (Cow<'a, Value>, Origin) {
        self.read.push(key);
        match self.layers.lookup(key) {
            Some((value, origin)) => (Cow::Borrowed(value), origin),
            None => (Cow::Owned(default_value(key)), Origin::Default),
        }
    }

    /// Where `key`'s value comes from.
    pub(crate) fn origin(&self, key: &str) -> Origin {
        self.layers
            .lookup(key)
            .map_or(Origin::Default, |(_, origin)| origin)
    }

    /// Parses `key`; records a problem and returns `None` when it is bad.
    fn get<T>(&mut self, key: &'static str, parse: impl FnOnce(&Value) -> Parsed<T>) -> Option<T> {
        let (value, origin) = self.raw(key);
        match parse(&value) {
            Ok(parsed) => Some(parsed),
            Err(bad) => {
                self.bad(key, &origin, bad);
                None
            }
        }
    }

    fn bad(&mut self, key: &str, origin: &Origin, bad: Bad) {
        self.problems.push(Problem {
            key: format!("{key}{}", bad.at),
            origin: origin.describe(),
            message: bad.message,
        });
    }

    /// Records a problem about `key` that is not about parsing its value.
    pub(crate) fn fail(&mut self, key: &str, message: impl Into<String>) {
        let origin = self.origin(key);
        self.bad(key, &origin, Bad::new(message));
    }

    pub(crate) fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// A state file: required; relative paths live in `data_dir`.
    fn state_path(&mut self, key: &'static str) -> Option<PathBuf> {
        let written = self.get(key, values::required_text)?;
        Some(self.data_dir.join(written.trim()))
    }

    /// An input file: optional; relative paths are resolved as the module
    /// documentation says.
    fn input_path(&mut self, key: &'static str) -> Option<Option<PathBuf>> {
        let origin = self.origin(key);
        let written = self.get(key, values::optional_text)?;
        Some(written.map(|p| self.resolve_input(p.trim(), &origin)))
    }

    fn resolve_input(&self, written: &str, origin: &Origin) -> PathBuf {
        match (origin, &self.layers.file) {
            (Origin::File, Some(file)) => config_dir(&file.path).join(written),
            _ => PathBuf::from(written),
        }
    }

    /// A secret given inline (`key`) or as a file (`path_key`). When both are
    /// set the higher layer wins; in the same layer that is an error. The
    /// file is read only when the secret is `needed` (its feature is on).
    fn secret(
        &mut self,
        key: &'static str,
        path_key: &'static str,
        needed: bool,
    ) -> Option<Option<Secret>> {
        self.secret_file(key, path_key, needed, Readers::Any)
    }

    /// [`Reader::secret`] whose file, when given, must be closed to other
    /// users as `readers` says.
    fn secret_file(
        &mut self,
        key: &'static str,
        path_key: &'static str,
        needed: bool,
        readers: Readers,
    ) -> Option<Option<Secret>> {
        let inline = self.get(key, values::secret_text);
        let file = self.get(path_key, values::optional_text);
        let (inline, file) = (inline?, file?);
        let (inline_origin, file_origin) = (self.origin(key), self.origin(path_key));
        if inline.is_some() && file.is_some() && rank(&inline_origin) == rank(&file_origin) {
            self.fail(
                path_key,
                format!("{key} and {path_key} are mutually exclusive; set only one"),
            );
            return None;
        }
        if !needed {
            return Some(None);
        }
        match (inline, file) {
            (Some(inline), Some(_)) if rank(&inline_origin) > rank(&file_origin) => {
                Some(Some(Secret::new(inline)))
            }
            (Some(inline), None) => Some(Some(Secret::new(inline))),
            (_, Some(file)) => {
                let expanded = self.env.expand(file.trim());
                let path = self.resolve_input(&expanded, &file_origin);
                if let Err(message) = readers.check(&path) {
                    self.fail(path_key, message);
                    return None;
                }
                match std::fs::read_to_string(&path) {
                    Ok(contents) if !contents.trim().is_empty() => {
                        Some(Some(Secret::new(contents.trim())))
                    }
                    Ok(_) => {
                        self.fail(path_key, format!("{} is empty", path.display()));
                        None
                    }
                    Err(e) => {
                        self.fail(path_key, format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, None) => Some(None),
        }
    }
}

/// Who besides its owner may read a secret file.
#[derive(Clone, Copy)]
enum Readers {
    Any,
    /// Not every user of the machine: refused when world-readable (a group
    /// such as systemd's credentials may read it).
    NotOthers,
}

impl Readers {
    fn check(self, path: &Path) -> Result<(), String> {
        match self {
            Readers::Any => Ok(()),
            Readers::NotOthers => not_world_readable(path),
        }
    }
}

#[cfg(unix)]
fn not_world_readable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        // Reading it reports the problem.
        Err(_) => return Ok(()),
    };
    if mode & 0o004 != 0 {
        return Err(format!(
            "{} can be read by every user of this machine (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn not_world_readable(_: &Path) -> Result<(), String> {
    Ok(())
}

/// Precedence of a layer, for settings that can come from two keys.
fn rank(origin: &Origin) -> u8 {
    match origin {
        Origin::Default => 0,
        Origin::File => 1,
        Origin::Env(_) => 2,
        Origin::Override => 3,
    }
}

fn config_dir(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new(""))
}

/// The default of a known key as a YAML value (nothing for legacy keys).
pub(crate) fn default_value(key: &str) -> Value {
    match keys::key(key) {
        Some(k) if k.shape == Shape::Text => Value::String(k.default.to_owned()),
        Some(k) => serde_yaml_ng::from_str(k.default).unwrap_or(Value::Null),
        None => Value::Null,
    }
}

/// Builds the configuration. `None` means problems were recorded.
pub(crate) fn decode(r: &mut Reader) -> Option<Config> {
    let data_dir = data_dir(r);
    r.data_dir = data_dir.clone().unwrap_or_default();

    let server_url = r.get("server_url", values::http_url);
    let listen_addr = r.get("listen_addr", values::socket_addr);
    let metrics_listen_addr = r.get("metrics_listen_addr", values::optional_socket_addr);
    let grpc_listen_addr = r.get("grpc_listen_addr", values::optional_socket_addr);
    let grpc_allow_insecure = r.get("grpc_allow_insecure", values::boolean);
    let trusted_proxies = r.get("trusted_proxies", |v| {
        values::list(v, values::trusted_proxy)
    });
    let noise_key = r.state_path("noise.private_key_path");
    let prefixes = prefixes(r);
    let derp = derp(r);
    let disable_check_updates = r.get("disable_check_updates", values::boolean);
    let node = node(r);
    let revoked_retention = r.get("preauth_keys.revoked_retention", values::optional_duration);
    let database = database(r);
    let tls = tls(r);
    let log = log(r);
    let audit = audit(r);
    let policy = policy(r);
    let dns = dns(r);
    let unix_socket = r.state_path("unix_socket");
    let unix_socket_permission = r.get("unix_socket_permission", values::file_mode);
    let oidc = oidc(r);
    let console = console(r);
    let logtail = r.get("logtail.enabled", values::boolean);
    let taildrop = r.get("taildrop.enabled", values::boolean);
    let auto_update = r.get("auto_update.enabled", values::boolean);
    let cli = cli(r);
    let randomize_client_port = randomize_client_port(r);

    Some(Config {
        server_url: server_url?,
        listen_addr: listen_addr?,
        metrics_listen_addr: metrics_listen_addr?,
        grpc_listen_addr: grpc_listen_addr?,
        grpc_allow_insecure: grpc_allow_insecure?,
        trusted_proxies: trusted_proxies?,
        data_dir: data_dir?,
        noise: NoiseConfig {
            private_key_path: noise_key?,
        },
        prefixes: prefixes?,
        derp: derp?,
        disable_check_updates: disable_check_updates?,
        node: node?,
        preauth_keys: PreAuthKeysConfig {
            revoked_retention: revoked_retention?,
        },
        database: database?,
        tls: tls?,
        log: log?,
        audit: audit?,
        policy: policy?,
        dns: dns?,
        unix_socket: unix_socket?,
        unix_socket_permission: unix_socket_permission?,
        oidc: oidc?,
        console: console?,
        logtail: LogtailConfig { enabled: logtail? },
        taildrop: TaildropConfig { enabled: taildrop? },
        auto_update: AutoUpdateConfig {
            enabled: auto_update?,
        },
        cli: cli?,
        randomize_client_port: randomize_client_port?,
    })
}

/// `data_dir`, else `$XDG_DATA_HOME/headway`, else
/// `$HOME/.local/share/headway`.
fn data_dir(r: &mut Reader) -> Option<PathBuf> {
    let origin = r.origin("data_dir");
    if let Some(written) = r.get("data_dir", values::optional_text)? {
        return Some(match (&origin, &r.layers.file) {
            (Origin::File, Some(file)) => config_dir(&file.path).join(written.trim()),
            _ => PathBuf::from(written.trim()),
        });
    }
    let absolute = |name: &str| {
        r.env
            .get(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(xdg) = absolute("XDG_DATA_HOME") {
        return Some(xdg.join("headway"));
    }
    if let Some(home) = absolute("HOME") {
        return Some(home.join(".local/share/headway"));
    }
    r.fail(
        "data_dir",
        "is not set and there is no HOME or XDG_DATA_HOME to derive it from; set data_dir or HEADWAY_DATA_DIR",
    );
    None
}

fn prefixes(r: &mut Reader) -> Option<PrefixesConfig> {
    let v4 = r.get("prefixes.v4", values::ipv4_prefix);
    let v6 = r.get("prefixes.v6", values::ipv6_prefix);
    let allocation = r.get("prefixes.allocation", |v| {
        values::one_of(
            v,
            &[
                ("sequential", IpAllocation::Sequential),
                ("random", IpAllocation::Random),
            ],
        )
    });
    let (v4, v6) = (v4?, v6?);
    // headscale accepts host bits (100.64.0.1/10); keep accepting, but say so.
    let v4 = v4.map(|net| {
        if net != net.trunc() {
            r.warn(format!(
                "prefixes.v4: {net} has host bits set; using {}",
                net.trunc()
            ));
        }
        net.trunc()
    });
    let v6 = v6.map(|net| {
        if net != net.trunc() {
            r.warn(format!(
                "prefixes.v6: {net} has host bits set; using {}",
                net.trunc()
            ));
        }
        net.trunc()
    });
    Some(PrefixesConfig {
        v4,
        v6,
        allocation: allocation?,
    })
}

fn derp(r: &mut Reader) -> Option<DerpConfig> {
    let enabled = r.get("derp.server.enabled", values::boolean);
    let region_id = r.get("derp.server.region_id", |v| {
        values::unsigned(v, 1u32, u32::MAX)
    });
    let region_code = r.get("derp.server.region_code", values::required_text);
    let region_name = r.get("derp.server.region_name", values::required_text);
    let verify_clients = r.get("derp.server.verify_clients", values::boolean);
    let stun_listen_addr = r.get("derp.server.stun_listen_addr", values::optional_socket_addr);
    let private_key_path = r.state_path("derp.server.private_key_path");
    let auto_add = r.get(
        "derp.server.automatically_add_embedded_derp_region",
        values::boolean,
    );
    let ipv4 = r.get("derp.server.ipv4", |v| {
        derp_node_ip(v, "IPv4", "198.51.100.1")
    });
    let ipv6 = r.get("derp.server.ipv6", |v| {
        derp_node_ip(v, "IPv6", "2001:db8::1")
    });
    let tls_listen_addr = r.get("derp.server.tls_listen_addr", values::socket_addr);
    let tls_cert_path = r.state_path("derp.server.tls_cert_path");
    let tls_key_path = r.state_path("derp.server.tls_key_path");
    let mesh_with = r.get("derp.server.mesh_with", |v| values::list(v, mesh_url));
    let mesh_key = r.secret(
        "derp.server.mesh_key",
        "derp.server.mesh_key_path",
        enabled.unwrap_or(false),
    );
    let mesh_key = match (mesh_key, mesh_with.as_ref()) {
        (Some(Some(k)), _) if !is_mesh_key(k.expose()) => {
            // The length only: the value is a secret.
            r.fail(
                "derp.server.mesh_key",
                format!(
                    "must be 64 hex digits (32 bytes), got {} characters; generate one with `openssl rand -hex 32`",
                    k.expose().trim().len()
                ),
            );
            None
        }
        (Some(None), Some(peers)) if !peers.is_empty() && enabled == Some(true) => {
            r.fail(
                "derp.server.mesh_with",
                "needs derp.server.mesh_key (or mesh_key_path): the replicas' relays only trust peers with the shared key",
            );
            None
        }
        (k, _) => k,
    };
    let urls = r.get("derp.urls", |v| values::list(v, values::http_url));
    let origin = r.origin("derp.paths");
    let paths = r.get("derp.paths", |v| values::list(v, values::required_text));
    let auto_update_enabled = r.get("derp.auto_update_enabled", values::boolean);
    let update_frequency = r.get("derp.update_frequency", values::duration);

    let paths = paths?
        .iter()
        .map(|p| r.resolve_input(p.trim(), &origin))
        .collect();
    Some(DerpConfig {
        server: DerpServerConfig {
            enabled: enabled?,
            region_id: region_id?,
            region_code: region_code?,
            region_name: region_name?,
            verify_clients: verify_clients?,
            stun_listen_addr: stun_listen_addr?,
            private_key_path: private_key_path?,
            automatically_add_embedded_derp_region: auto_add?,
            ipv4: ipv4?,
            ipv6: ipv6?,
            tls_listen_addr: tls_listen_addr?,
            tls_cert_path: tls_cert_path?,
            tls_key_path: tls_key_path?,
            mesh_key: mesh_key?,
            mesh_with: mesh_with?,
        },
        urls: urls?,
        paths,
        auto_update_enabled: auto_update_enabled?,
        update_frequency: update_frequency?,
    })
}

fn derp_node_ip<A: std::str::FromStr>(
    value: &Value,
    family: &str,
    example: &str,
) -> Parsed<DerpNodeIp<A>> {
    match values::optional_text(value)? {
        None => Ok(DerpNodeIp::FromDns),
        Some(s) if s.trim().eq_ignore_ascii_case("none") => Ok(DerpNodeIp::Disabled),
        Some(s) => s.trim().parse().map(DerpNodeIp::Fixed).map_err(|_| {
            Bad::new(format!(
                "{s:?} is not an {family} address; expected e.g. {example}, none, or empty"
            ))
        }),
    }
}

fn node(r: &mut Reader) -> Option<NodeConfig> {
    let expiry = r.get("node.expiry", values::optional_duration);
    let inactivity_timeout = ephemeral_inactivity_timeout(r);
    let probe_interval = r.get("node.routes.ha.probe_interval", values::optional_duration);
    let probe_timeout = r.get("node.routes.ha.probe_timeout", values::duration);
    Some(NodeConfig {
        expiry: expiry?,
        ephemeral: EphemeralConfig {
            inactivity_timeout: inactivity_timeout?,
        },
        routes: RoutesConfig {
            ha: HaRoutesConfig {
                probe_interval: probe_interval?,
                probe_timeout: probe_timeout?,
            },
        },
    })
}

/// The new key wins; the old top-level key is honoured with a warning.
fn ephemeral_inactivity_timeout(r: &mut Reader) -> Option<std::time::Duration> {
    const NEW: &str = "node.ephemeral.inactivity_timeout";
    let old = keys::OLD_EPHEMERAL_TIMEOUT;
    if !r.layers.is_set(old) {
        return r.get(NEW, values::duration);
    }
    if r.layers.is_set(NEW) {
        r.warn(format!(
            "{old} is deprecated and overridden by {NEW}; remove it"
        ));
        return r.get(NEW, values::duration);
    }
    r.warn(format!("{old} is deprecated; rename it to {NEW}"));
    r.read.push(NEW);
    r.get(old, values::duration)
}

/// headscale 0.29 removed `randomize_client_port` (it moved into the
/// policy); Headway still honours it so older config files keep working.
fn randomize_client_port(r: &mut Reader) -> Option<bool> {
    let key = keys::OLD_RANDOMIZE_CLIENT_PORT;
    if !r.layers.is_set(key) {
        return Some(false);
    }
    r.warn(format!(
        "{key} is deprecated (headscale moved it into the policy as \"randomizeClientPort\"); Headway still honours it"
    ));
    r.get(key, values::boolean)
}

fn database(r: &mut Reader) -> Option<DatabaseConfig> {
    #[derive(Clone, Copy)]
    enum Kind {
        Sqlite,
        Postgres,
    }
    let kind = r.get("database.type", |v| {
        values::one_of(
            v,
            &[
                ("sqlite", Kind::Sqlite),
                ("sqlite3", Kind::Sqlite),
                ("postgres", Kind::Postgres),
            ],
        )
    });
    let debug = r.get("database.debug", values::boolean);
    // Both backends are read so that a bad value is reported either way.
    let sqlite = sqlite(r, matches!(kind, Some(Kind::Sqlite)));
    let postgres = postgres(r, matches!(kind, Some(Kind::Postgres)));
    let backend = match kind? {
        Kind::Sqlite => DatabaseBackend::Sqlite(sqlite?),
        Kind::Postgres => DatabaseBackend::Postgres(postgres?),
    };
    Some(DatabaseConfig {
        debug: debug?,
        backend,
    })
}

fn sqlite(r: &mut Reader, selected: bool) -> Option<SqliteConfig> {
    let path = r.state_path("database.sqlite.path");
    let write_ahead_log = r.get("database.sqlite.write_ahead_log", values::boolean);
    let wal_autocheckpoint = r.get("database.sqlite.wal_autocheckpoint", |v| {
        values::unsigned(v, 0u32, u32::MAX)
    });
    let key = r.secret_file(
        "database.sqlite.key",
        "database.sqlite.key_path",
        selected,
        Readers::NotOthers,
    );
    Some(SqliteConfig {
        path: path?,
        write_ahead_log: write_ahead_log?,
        wal_autocheckpoint: wal_autocheckpoint?,
        key: key?,
    })
}

/// A replica's relay: DERP is only spoken over TLS.
fn mesh_url(value: &Value) -> Parsed<url::Url> {
    let url = values::http_url(value)?;
    if url.scheme() != "https" {
        return Err(Bad::new(format!(
            "{url} must start with https:// (relays speak DERP over TLS only), e.g. https://hw1.example.com:3340"
        )));
    }
    Ok(url)
}

/// A DERP mesh key is 32 bytes in hex, as derper reads it.
fn is_mesh_key(s: &str) -> bool {
    let s = s.trim();
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn postgres(r: &mut Reader, selected: bool) -> Option<PostgresConfig> {
    let host = r.get("database.postgres.host", values::text);
    let port = r.get("database.postgres.port", |v| {
        values::unsigned(v, 1u16, u16::MAX)
    });
    let name = r.get("database.postgres.name", values::text);
    let user = r.get("database.postgres.user", values::text);
    let pass = r.secret(
        "database.postgres.pass",
        "database.postgres.pass_path",
        selected,
    );
    let ssl = r.get("database.postgres.ssl", postgres_ssl);
    let ssl_root_cert = r.input_path("database.postgres.ssl_root_cert");
    let max_open_conns = r.get("database.postgres.max_open_conns", |v| {
        values::unsigned(v, 1u32, u32::MAX)
    });
    let max_idle_conns = r.get("database.postgres.max_idle_conns", |v| {
        values::unsigned(v, 0u32, u32::MAX)
    });
    let idle_secs = r.get("database.postgres.conn_max_idle_time_secs", |v| {
        values::unsigned(v, 0u64, u64::MAX)
    });
    Some(PostgresConfig {
        host: host?,
        port: port?,
        name: name?,
        user: user?,
        pass: pass?,
        ssl: ssl?,
        ssl_root_cert: ssl_root_cert?,
        max_open_conns: max_open_conns?,
        max_idle_conns: max_idle_conns?,
        conn_max_idle_time: std::time::Duration::from_secs(idle_secs?),
    })
}

/// headscale's `ssl: true/false`, or a libpq `sslmode` name.
fn postgres_ssl(value: &Value) -> Parsed<PostgresSslMode> {
    if let Ok(on) = values::boolean(value) {
        return Ok(if on {
            PostgresSslMode::Require
        } else {
            PostgresSslMode::Disable
        });
    }
    values::one_of(
        value,
        &[
            ("disable", PostgresSslMode::Disable),
            ("allow", PostgresSslMode::Allow),
            ("prefer", PostgresSslMode::Prefer),
            ("require", PostgresSslMode::Require),
            ("verify-ca", PostgresSslMode::VerifyCa),
            ("verify-full", PostgresSslMode::VerifyFull),
            ("true", PostgresSslMode::Require),
            ("false", PostgresSslMode::Disable),
        ],
    )
}

fn tls(r: &mut Reader) -> Option<Option<TlsConfig>> {
    let cert_path = r.input_path("tls_cert_path");
    let key_path = r.input_path("tls_key_path");
    let hostname = r.get("tls_letsencrypt_hostname", values::optional_text);
    let cache_dir = r.state_path("tls_letsencrypt_cache_dir");
    let challenge_type = r.get("tls_letsencrypt_challenge_type", |v| {
        values::one_of(
            v,
            &[
                ("HTTP-01", AcmeChallenge::Http01),
                ("TLS-ALPN-01", AcmeChallenge::TlsAlpn01),
            ],
        )
    });
    let listen = r.get("tls_letsencrypt_listen", values::text);
    let acme_url = r.get("acme_url", values::http_url);
    let acme_email = r.get("acme_email", values::text);

    let (cert_path, key_path, hostname) = (cert_path?, key_path?, hostname?);
    let letsencrypt = match hostname {
        Some(hostname) => Some(LetsEncryptConfig {
            hostname: hostname.trim().to_owned(),
            cache_dir: cache_dir?,
            challenge_type: challenge_type?,
            listen: listen?,
            acme_url: acme_url?,
            acme_email: acme_email?,
        }),
        None => None,
    };
    match (cert_path, key_path, letsencrypt) {
        (None, None, None) => Some(None),
        (None, None, Some(letsencrypt)) => Some(Some(TlsConfig::LetsEncrypt(letsencrypt))),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            r.fail(
                "tls_letsencrypt_hostname",
                "set either tls_letsencrypt_hostname or tls_cert_path/tls_key_path, not both",
            );
            None
        }
        (Some(cert_path), Some(key_path), None) => Some(Some(TlsConfig::Files {
            cert_path,
            key_path,
        })),
        (Some(_), None, None) => {
            r.fail(
                "tls_key_path",
                "is empty, but tls_cert_path is set; give both or neither",
            );
            None
        }
        (None, Some(_), None) => {
            r.fail(
                "tls_cert_path",
                "is empty, but tls_key_path is set; give both or neither",
            );
            None
        }
    }
}

fn audit(r: &mut Reader) -> Option<AuditConfig> {
    let origin = r.origin("audit.log_path");
    let path = r.get("audit.log_path", values::optional_text);
    let retention = r.get("audit.retention", values::optional_duration);
    let log_path = path?.map(|p| match p.trim() {
        "-" | "stdout" => AuditSinkPath::Stdout,
        p => AuditSinkPath::File(r.resolve_input(p, &origin)),
    });
    Some(AuditConfig {
        log_path,
        retention: retention?,
    })
}

fn log(r: &mut Reader) -> Option<LogConfig> {
    let level = r.get("log.level", |v| {
        values::one_of(
            v,
            &[
                ("trace", LogLevel::Trace),
                ("debug", LogLevel::Debug),
                ("info", LogLevel::Info),
                ("warn", LogLevel::Warn),
                ("error", LogLevel::Error),
                ("fatal", LogLevel::Error),
                ("panic", LogLevel::Error),
                ("disabled", LogLevel::Off),
            ],
        )
    });
    let format = r.get("log.format", |v| {
        values::one_of(v, &[("text", LogFormat::Text), ("json", LogFormat::Json)])
    });
    Some(LogConfig {
        level: level?,
        format: format?,
    })
}

fn policy(r: &mut Reader) -> Option<PolicyConfig> {
    let mode = r.get("policy.mode", |v| {
        values::one_of(
            v,
            &[
                ("file", PolicyMode::File),
                ("database", PolicyMode::Database),
            ],
        )
    });
    let path = r.input_path("policy.path");
    Some(PolicyConfig {
        mode: mode?,
        path: path?,
    })
}

fn dns(r: &mut Reader) -> Option<DnsConfig> {
    let magic_dns = r.get("dns.magic_dns", values::boolean);
    let base_domain = r.get("dns.base_domain", values::domain);
    let override_local_dns = r.get("dns.override_local_dns", values::boolean);
    let global = r.get("dns.nameservers.global", |v| {
        values::list(v, values::nameserver)
    });
    let split = r.get("dns.nameservers.split", |v| {
        values::map(v, |domain, servers| {
            values::loose_domain(domain)?;
            values::list(servers, values::nameserver)
        })
    });
    let search_domains = r.get("dns.search_domains", |v| {
        values::list(v, |item| values::loose_domain(&values::text(item)?))
    });
    let extra_records = r.get("dns.extra_records", |v| values::list(v, values::dns_record));
    let extra_records_path = r.input_path("dns.extra_records_path");
    Some(DnsConfig {
        magic_dns: magic_dns?,
        base_domain: base_domain?,
        override_local_dns: override_local_dns?,
        nameservers: NameserversConfig {
            global: global?,
            split: split?,
        },
        search_domains: search_domains?,
        extra_records: extra_records?,
        extra_records_path: extra_records_path?,
    })
}

fn oidc(r: &mut Reader) -> Option<Option<OidcConfig>> {
    let only_start_if_available = r.get("oidc.only_start_if_oidc_is_available", values::boolean);
    let issuer = r.get("oidc.issuer", |v| match values::optional_text(v)? {
        None => Ok(None),
        Some(_) => values::http_url(v).map(Some),
    });
    let client_id = r.get("oidc.client_id", values::optional_text);
    let enabled = matches!(issuer, Some(Some(_)));
    let client_secret = r.secret("oidc.client_secret", "oidc.client_secret_path", enabled);
    let scope = r.get("oidc.scope", |v| values::list(v, values::required_text));
    let extra_params = r.get("oidc.extra_params", |v| {
        values::map(v, |_, value| values::text(value))
    });
    let allowed_domains = r.get("oidc.allowed_domains", |v| {
        values::list(v, values::required_text)
    });
    let allowed_users = r.get("oidc.allowed_users", |v| {
        values::list(v, values::required_text)
    });
    let allowed_groups = r.get("oidc.allowed_groups", |v| {
        values::list(v, values::required_text)
    });
    let email_verified_required = r.get("oidc.email_verified_required", values::boolean);
    let use_expiry_from_token = r.get("oidc.use_expiry_from_token", values::boolean);
    let pkce_enabled = r.get("oidc.pkce.enabled", values::boolean);
    let pkce_method = r.get("oidc.pkce.method", |v| {
        values::one_of(
            v,
            &[("plain", PkceMethod::Plain), ("S256", PkceMethod::S256)],
        )
    });

    // OIDC is on when an issuer is set, as in headscale.
    let Some(issuer) = issuer? else {
        return Some(None);
    };
    let (client_id, client_secret) = (client_id?, client_secret?);
    if client_id.is_none() {
        r.fail("oidc.client_id", "is required when oidc.issuer is set");
    }
    if client_secret.is_none() {
        r.fail(
            "oidc.client_secret",
            "(or oidc.client_secret_path) is required when oidc.issuer is set",
        );
    }
    let (Some(client_id), Some(client_secret)) = (client_id, client_secret) else {
        return None;
    };
    Some(Some(OidcConfig {
        only_start_if_oidc_is_available: only_start_if_available?,
        issuer,
        client_id,
        client_secret,
        scope: scope?,
        extra_params: extra_params?,
        allowed_domains: allowed_domains?,
        allowed_users: allowed_users?,
        allowed_groups: allowed_groups?,
        email_verified_required: email_verified_required?,
        use_expiry_from_token: use_expiry_from_token?,
        pkce: if pkce_enabled? {
            Some(pkce_method?)
        } else {
            None
        },
    }))
}

fn console(r: &mut Reader) -> Option<ConsoleConfig> {
    let admins = r.get("console.admins", |v| values::list(v, values::email_address));
    let admin_groups = r.get("console.admin_groups", |v| {
        values::list(v, values::required_text)
    });
    Some(ConsoleConfig {
        admins: admins?,
        admin_groups: admin_groups?,
    })
}

fn cli(r: &mut Reader) -> Option<CliConfig> {
    let address = r.get("cli.address", values::optional_text);
    let api_key = r.secret("cli.api_key", "cli.api_key_path", true);
    let timeout = r.get("cli.timeout", values::duration);
    let insecure = r.get("cli.insecure", values::boolean);
    Some(CliConfig {
        address: address?.map(|a| a.trim().to_owned()),
        api_key: api_key?,
        timeout: timeout?,
        insecure: insecure?,
    })
}
