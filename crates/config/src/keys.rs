//! The catalogue of configuration keys: every key Headway knows, its shape,
//! its default (written exactly as `config-example.yaml` shows it), which keys
//! are secrets, which belong to features not built yet, which are headscale
//! knobs with no Headway meaning, and which are legacy names.
//!
//! This module is data only. Reading values is `decode`'s job; checking that
//! the tables and `config-example.yaml` agree is a test in `lib.rs`.

/// How a key's value is written, which decides how an environment variable
/// for it is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A string; an environment variable is taken verbatim (so secrets and
    /// URLs with `: ` or a leading `!` survive).
    Text,
    /// A YAML scalar (bool, number, duration); an environment variable is
    /// parsed as YAML.
    Scalar,
    /// A YAML sequence; each layer replaces the whole list.
    List,
    /// A mapping with free-form keys (domains, parameters); each layer
    /// replaces the whole mapping.
    Map,
}

/// One known key.
#[derive(Debug)]
pub(crate) struct Key {
    /// Dotted path, as in the YAML file (`database.sqlite.path`).
    pub path: &'static str,
    pub shape: Shape,
    /// The default, as YAML text (for `Text` keys: the string itself).
    pub default: &'static str,
    /// Never shown in messages.
    pub secret: bool,
}

const fn text(path: &'static str, default: &'static str) -> Key {
    Key {
        path,
        shape: Shape::Text,
        default,
        secret: false,
    }
}

const fn scalar(path: &'static str, default: &'static str) -> Key {
    Key {
        path,
        shape: Shape::Scalar,
        default,
        secret: false,
    }
}

const fn list(path: &'static str, default: &'static str) -> Key {
    Key {
        path,
        shape: Shape::List,
        default,
        secret: false,
    }
}

const fn map(path: &'static str) -> Key {
    Key {
        path,
        shape: Shape::Map,
        default: "{}",
        secret: false,
    }
}

const fn secret(path: &'static str) -> Key {
    Key {
        path,
        shape: Shape::Text,
        default: "",
        secret: true,
    }
}

/// Every current key. Order follows `config-example.yaml`.
pub(crate) const KEYS: &[Key] = &[
    text("server_url", "http://127.0.0.1:8080"),
    text("listen_addr", "127.0.0.1:8080"),
    text("metrics_listen_addr", "127.0.0.1:9090"),
    text("grpc_listen_addr", "127.0.0.1:50443"),
    scalar("grpc_allow_insecure", "false"),
    list("trusted_proxies", "[]"),
    text("data_dir", ""),
    text("noise.private_key_path", "noise_private.key"),
    text("prefixes.v4", "100.64.0.0/10"),
    text("prefixes.v6", "fd7a:115c:a1e0::/48"),
    text("prefixes.allocation", "sequential"),
    scalar("derp.server.enabled", "true"),
    scalar("derp.server.region_id", "999"),
    text("derp.server.region_code", "headway"),
    text("derp.server.region_name", "Headway Embedded DERP"),
    scalar("derp.server.verify_clients", "true"),
    text("derp.server.stun_listen_addr", "127.0.0.1:3478"),
    text("derp.server.private_key_path", "derp_server_private.key"),
    scalar("derp.server.automatically_add_embedded_derp_region", "true"),
    text("derp.server.ipv4", ""),
    text("derp.server.ipv6", ""),
    text("derp.server.tls_listen_addr", "127.0.0.1:3340"),
    text("derp.server.tls_cert_path", "derp_tls_cert.pem"),
    text("derp.server.tls_key_path", "derp_tls_key.pem"),
    secret("derp.server.mesh_key"),
    text("derp.server.mesh_key_path", ""),
    list("derp.server.mesh_with", "[]"),
    list("derp.urls", "[]"),
    list("derp.paths", "[]"),
    scalar("derp.auto_update_enabled", "false"),
    scalar("derp.update_frequency", "3h"),
    scalar("disable_check_updates", "false"),
    scalar("node.expiry", "0"),
    scalar("node.ephemeral.inactivity_timeout", "30m"),
    scalar("node.routes.ha.probe_interval", "10s"),
    scalar("node.routes.ha.probe_timeout", "5s"),
    scalar("preauth_keys.revoked_retention", "168h"),
    text("database.type", "sqlite"),
    scalar("database.debug", "false"),
    text("database.sqlite.path", "db.sqlite"),
    scalar("database.sqlite.write_ahead_log", "true"),
    scalar("database.sqlite.wal_autocheckpoint", "1000"),
    secret("database.sqlite.key"),
    text("database.sqlite.key_path", ""),
    text("database.postgres.host", "localhost"),
    scalar("database.postgres.port", "5432"),
    text("database.postgres.name", "headway"),
    text("database.postgres.user", "headway"),
    secret("database.postgres.pass"),
    text("database.postgres.pass_path", ""),
    scalar("database.postgres.ssl", "false"),
    text("database.postgres.ssl_root_cert", ""),
    scalar("database.postgres.max_open_conns", "10"),
    scalar("database.postgres.max_idle_conns", "10"),
    scalar("database.postgres.conn_max_idle_time_secs", "3600"),
    text("acme_url", "https://acme-v02.api.letsencrypt.org/directory"),
    text("acme_email", ""),
    text("tls_letsencrypt_hostname", ""),
    text("tls_letsencrypt_cache_dir", "cache"),
    text("tls_letsencrypt_challenge_type", "HTTP-01"),
    text("tls_letsencrypt_listen", ":http"),
    text("tls_cert_path", ""),
    text("tls_key_path", ""),
    text("log.level", "info"),
    text("log.format", "text"),
    text("audit.log_path", ""),
    scalar("audit.retention", "0"),
    text("policy.mode", "file"),
    text("policy.path", ""),
    scalar("dns.magic_dns", "true"),
    text("dns.base_domain", "headway.internal"),
    scalar("dns.override_local_dns", "true"),
    list("dns.nameservers.global", "[]"),
    map("dns.nameservers.split"),
    list("dns.search_domains", "[]"),
    list("dns.extra_records", "[]"),
    text("dns.extra_records_path", ""),
    text("unix_socket", "headway.sock"),
    text("unix_socket_permission", "0770"),
    scalar("oidc.only_start_if_oidc_is_available", "true"),
    text("oidc.issuer", ""),
    text("oidc.client_id", ""),
    secret("oidc.client_secret"),
    text("oidc.client_secret_path", ""),
    list("oidc.scope", "[openid, profile, email]"),
    map("oidc.extra_params"),
    list("oidc.allowed_domains", "[]"),
    list("oidc.allowed_users", "[]"),
    list("oidc.allowed_groups", "[]"),
    scalar("oidc.email_verified_required", "true"),
    scalar("oidc.use_expiry_from_token", "false"),
    scalar("oidc.pkce.enabled", "false"),
    text("oidc.pkce.method", "S256"),
    list("console.admins", "[]"),
    list("console.admin_groups", "[]"),
    scalar("logtail.enabled", "false"),
    scalar("taildrop.enabled", "true"),
    scalar("auto_update.enabled", "false"),
    text("cli.address", ""),
    secret("cli.api_key"),
    text("cli.api_key_path", ""),
    scalar("cli.timeout", "5s"),
    scalar("cli.insecure", "false"),
];

/// headscale features Headway has not built yet: key prefix, feature, and
/// the key that switches the feature on (if there is one). Setting a key to
/// a non-default value (with the switch on) is accepted with a start-up
/// warning naming the keys. Delete an entry when its feature lands.
pub(crate) const NOT_YET_SUPPORTED: &[(&str, &str, Option<&str>)] = &[
    (
        "derp.auto_update_enabled",
        "periodic DERP map refresh",
        None,
    ),
    (
        "derp.update_frequency",
        "periodic DERP map refresh",
        Some("derp.auto_update_enabled"),
    ),
    ("preauth_keys.", "deleting revoked pre-auth keys", None),
    ("trusted_proxies", "trusting forwarded-for headers", None),
];

/// headscale keys that have no meaning in Headway. They are accepted (a
/// headscale config file must load) with a warning saying they do nothing.
pub(crate) const HEADSCALE_ONLY: &[(&str, &str)] = &[
    ("database.gorm.", "Headway does not use GORM"),
    (
        "tuning.",
        "these tune headscale's internal batching, which Headway does not have",
    ),
    (
        "derp.server.stun.",
        "STUN runs whenever derp.server.stun_listen_addr is set",
    ),
];

/// Keys headscale renamed. Setting only the old name is an error telling the
/// new one (as headscale does); setting both is a warning.
pub(crate) const RENAMED: &[(&str, &str)] = &[
    ("acl_policy_path", "policy.path"),
    ("dns_config.magic_dns", "dns.magic_dns"),
    ("dns_config.base_domain", "dns.base_domain"),
    ("dns_config.override_local_dns", "dns.override_local_dns"),
    ("dns_config.nameservers", "dns.nameservers.global"),
    ("dns_config.restricted_nameservers", "dns.nameservers.split"),
    ("dns_config.domains", "dns.search_domains"),
    ("dns_config.extra_records", "dns.extra_records"),
];

/// Keys headscale removed; setting one is an error with this hint.
pub(crate) const REMOVED: &[(&str, &str)] = &[
    (
        "dns.use_username_in_magic_dns",
        "MagicDNS names no longer contain the user name",
    ),
    (
        "dns_config.use_username_in_magic_dns",
        "MagicDNS names no longer contain the user name",
    ),
    (
        "oidc.strip_email_domain",
        "user names now come from the identity provider unchanged",
    ),
    ("oidc.map_legacy_users", "the migration it served is over"),
    (
        "oidc.expiry",
        "use node.expiry, which applies to every registration method",
    ),
];

/// Old name still honoured, with a warning: the ephemeral-node timeout
/// before it moved under `node.`.
pub(crate) const OLD_EPHEMERAL_TIMEOUT: &str = "ephemeral_node_inactivity_timeout";

/// Removed from headscale's config in 0.29 (it moved into the policy as
/// `randomizeClientPort`); Headway still honours it, with a warning.
pub(crate) const OLD_RANDOMIZE_CLIENT_PORT: &str = "randomize_client_port";

/// Environment variables with the `HEADWAY_` prefix that are not settings.
pub(crate) const RESERVED_ENV: &[&str] = &["HEADWAY_CONFIG"];

/// The key with this exact path.
pub(crate) fn key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// Keys read only to detect legacy settings.
fn legacy_keys() -> impl Iterator<Item = &'static str> {
    RENAMED
        .iter()
        .map(|(old, _)| *old)
        .chain(REMOVED.iter().map(|(old, _)| *old))
        .chain([OLD_EPHEMERAL_TIMEOUT, OLD_RANDOMIZE_CLIENT_PORT])
}

/// Is `path` a legacy key the loader handles on purpose?
pub(crate) fn is_legacy(path: &str) -> bool {
    legacy_keys().any(|k| k == path)
}

/// Is `path` a section, i.e. a proper prefix of a known or legacy key?
pub(crate) fn is_section(path: &str) -> bool {
    KEYS.iter()
        .map(|k| k.path)
        .chain(legacy_keys())
        .any(|k| k.len() > path.len() && k.starts_with(path) && k.as_bytes()[path.len()] == b'.')
}

/// The keys directly inside a section, for messages.
pub(crate) fn section_children(section: &str) -> Vec<&'static str> {
    let mut children: Vec<&'static str> = KEYS
        .iter()
        .filter_map(|k| k.path.strip_prefix(section)?.strip_prefix('.'))
        .map(|rest| rest.split('.').next().unwrap_or(rest))
        .collect();
    children.dedup();
    children
}

/// Does `path` (a key or a section) fall under a prefix entry of `table`?
/// Prefixes ending in `.` also match the section itself.
pub(crate) fn prefix_entry<'t>(
    table: &'t [(&'t str, &'t str)],
    path: &str,
) -> Option<&'t (&'t str, &'t str)> {
    table.iter().find(|(prefix, _)| {
        path.starts_with(prefix)
            || prefix
                .strip_suffix('.')
                .is_some_and(|section| section == path)
    })
}

/// The known key a mistyped `path` most likely meant: the same last
/// component in another section, or the nearest spelling.
pub(crate) fn suggest(path: &str) -> Option<&'static str> {
    let lowered = path.to_ascii_lowercase();
    let leaf = lowered.rsplit('.').next().unwrap_or(&lowered);
    // A key moved to the wrong section (`base_domain` at the top level).
    let moved: Vec<&'static str> = KEYS
        .iter()
        .map(|k| k.path)
        .filter(|k| k.rsplit('.').next() == Some(leaf) && *k != path)
        .collect();
    if let [only] = moved.as_slice() {
        return Some(only);
    }
    let (best, distance) = KEYS
        .iter()
        .map(|k| (k.path, edit_distance(&lowered, k.path)))
        .min_by_key(|(_, d)| *d)?;
    // "Obvious" typos only: a couple of edits, or a small share of the name.
    let limit = (lowered.len() / 4).max(2);
    (distance <= limit && best != path).then_some(best)
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The `HEADWAY_` environment variable for a key.
pub(crate) fn env_name(path: &str) -> String {
    let nested: Vec<String> = path.split('.').map(str::to_ascii_uppercase).collect();
    format!("HEADWAY_{}", nested.join("__"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_are_unique_and_lowercase() {
        for (i, k) in KEYS.iter().enumerate() {
            assert_eq!(k.path, k.path.to_ascii_lowercase(), "{}", k.path);
            assert!(
                KEYS[i + 1..].iter().all(|other| other.path != k.path),
                "duplicate {}",
                k.path
            );
            assert!(
                !is_section(k.path),
                "{} is both a key and a section",
                k.path
            );
        }
    }

    #[test]
    fn every_table_entry_matches_a_key() {
        for (prefix, _, switch) in NOT_YET_SUPPORTED {
            assert!(
                KEYS.iter().any(|k| k.path.starts_with(prefix)),
                "{prefix} matches no key"
            );
            assert!(
                switch.is_none_or(|s| key(s).is_some()),
                "switch {switch:?} is not a key"
            );
        }
        for (_, new) in RENAMED {
            assert!(key(new).is_some(), "rename target {new} is not a key");
        }
        for (prefix, _) in HEADSCALE_ONLY {
            assert!(key(prefix).is_none() && !KEYS.iter().any(|k| k.path.starts_with(prefix)));
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("listen_adr"), Some("listen_addr"));
        assert_eq!(suggest("database.sqlite.pth"), Some("database.sqlite.path"));
        assert_eq!(suggest("base_domain"), Some("dns.base_domain"));
        assert_eq!(suggest("Server_URL"), Some("server_url"));
        assert_eq!(
            suggest("database.sqlite_path"),
            Some("database.sqlite.path")
        );
        assert_eq!(suggest("completely_unrelated_thing"), None);
    }

    #[test]
    fn sections() {
        assert!(is_section("database"));
        assert!(is_section("database.sqlite"));
        assert!(is_section("dns_config"));
        assert!(!is_section("database.sqlite.path"));
        assert!(!is_section("data"));
        assert_eq!(section_children("prefixes"), ["v4", "v6", "allocation"]);
        assert_eq!(section_children("node"), ["expiry", "ephemeral", "routes"]);
    }

    #[test]
    fn env_names() {
        assert_eq!(
            env_name("database.sqlite.path"),
            "HEADWAY_DATABASE__SQLITE__PATH"
        );
        assert_eq!(env_name("server_url"), "HEADWAY_SERVER_URL");
    }
}
