//! Tests of `load` as a whole: layers, messages, and the example file.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const HOME: &str = "/home/alice";
const DATA: &str = "/home/alice/.local/share/headway";
const EXAMPLE: &str = include_str!("../../../config-example.yaml");
const HEADSCALE: &str = include_str!("../testdata/headscale-config.yaml");

fn env(vars: &[(&str, &str)]) -> Env {
    [("HOME", HOME)].iter().chain(vars).copied().collect()
}

/// Writes `yaml` to a temporary config.yaml and loads it.
fn load_yaml(yaml: &str, vars: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    load(Some(&path), &env(vars), &Overrides::new())
}

fn config(yaml: &str) -> Config {
    let loaded = load_yaml(yaml, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings, Vec::<String>::new());
    loaded.config
}

fn error(yaml: &str) -> String {
    match load_yaml(yaml, &[]) {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.config),
        Err(e) => e.to_string(),
    }
}

fn warnings(yaml: &str, vars: &[(&str, &str)]) -> Vec<String> {
    load_yaml(yaml, vars)
        .unwrap_or_else(|e| panic!("{e}"))
        .warnings
}

/// The configuration with nothing set and data in `data`.
fn defaults(data: &Path) -> Config {
    Config {
        server_url: "http://127.0.0.1:8080".parse().unwrap(),
        listen_addr: "127.0.0.1:8080".parse().unwrap(),
        metrics_listen_addr: Some("127.0.0.1:9090".parse().unwrap()),
        grpc_listen_addr: Some("127.0.0.1:50443".parse().unwrap()),
        grpc_allow_insecure: false,
        trusted_proxies: vec![],
        data_dir: data.to_owned(),
        noise: NoiseConfig {
            private_key_path: data.join("noise_private.key"),
        },
        prefixes: PrefixesConfig {
            v4: Some("100.64.0.0/10".parse().unwrap()),
            v6: Some("fd7a:115c:a1e0::/48".parse().unwrap()),
            allocation: IpAllocation::Sequential,
        },
        derp: DerpConfig {
            server: DerpServerConfig {
                enabled: true,
                region_id: 999,
                region_code: "headway".into(),
                region_name: "Headway Embedded DERP".into(),
                verify_clients: true,
                stun_listen_addr: Some("127.0.0.1:3478".parse().unwrap()),
                private_key_path: data.join("derp_server_private.key"),
                automatically_add_embedded_derp_region: true,
                ipv4: DerpNodeIp::FromDns,
                ipv6: DerpNodeIp::FromDns,
                tls_listen_addr: "127.0.0.1:3340".parse().unwrap(),
                tls_cert_path: data.join("derp_tls_cert.pem"),
                tls_key_path: data.join("derp_tls_key.pem"),
                mesh_key: None,
                mesh_with: vec![],
            },
            urls: vec![],
            paths: vec![],
            auto_update_enabled: false,
            update_frequency: Duration::from_secs(3 * 3600),
        },
        disable_check_updates: false,
        node: NodeConfig {
            expiry: None,
            ephemeral: EphemeralConfig {
                inactivity_timeout: Duration::from_secs(30 * 60),
            },
            routes: RoutesConfig {
                ha: HaRoutesConfig {
                    probe_interval: Some(Duration::from_secs(10)),
                    probe_timeout: Duration::from_secs(5),
                },
            },
        },
        preauth_keys: PreAuthKeysConfig {
            revoked_retention: Some(Duration::from_secs(168 * 3600)),
        },
        database: DatabaseConfig {
            debug: false,
            backend: DatabaseBackend::Sqlite(SqliteConfig {
                path: data.join("db.sqlite"),
                write_ahead_log: true,
                wal_autocheckpoint: 1000,
                key: None,
            }),
        },
        tls: None,
        log: LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
        },
        audit: AuditConfig::default(),
        policy: PolicyConfig {
            mode: PolicyMode::File,
            path: None,
        },
        dns: DnsConfig {
            magic_dns: true,
            base_domain: Some("headway.internal".into()),
            override_local_dns: true,
            nameservers: NameserversConfig {
                global: vec![],
                split: BTreeMap::new(),
            },
            search_domains: vec![],
            extra_records: vec![],
            extra_records_path: None,
        },
        unix_socket: data.join("headway.sock"),
        unix_socket_permission: 0o770,
        oidc: None,
        console: ConsoleConfig::default(),
        logtail: LogtailConfig { enabled: false },
        taildrop: TaildropConfig { enabled: true },
        auto_update: AutoUpdateConfig { enabled: false },
        cli: CliConfig {
            address: None,
            api_key: None,
            timeout: Duration::from_secs(5),
            insecure: false,
        },
        randomize_client_port: false,
    }
}

// ---- defaults and data directory ----

#[test]
fn no_file_gives_local_defaults() {
    let loaded = load(None, &env(&[]), &Overrides::new()).unwrap();
    assert_eq!(loaded.config, defaults(Path::new(DATA)));
    assert_eq!(loaded.warnings, Vec::<String>::new());
    assert_eq!(loaded.source_description, "defaults");
}

#[test]
fn data_dir_comes_from_headway_data_dir_then_xdg_then_home() {
    let data_dir = |vars: &[(&str, &str)]| {
        load(None, &vars.iter().copied().collect(), &Overrides::new()).map(|l| l.config.data_dir)
    };
    assert_eq!(
        data_dir(&[
            ("HOME", HOME),
            ("XDG_DATA_HOME", "/xdg"),
            ("HEADWAY_DATA_DIR", "/srv/hw")
        ])
        .unwrap(),
        PathBuf::from("/srv/hw")
    );
    assert_eq!(
        data_dir(&[("HOME", HOME), ("XDG_DATA_HOME", "/xdg")]).unwrap(),
        PathBuf::from("/xdg/headway")
    );
    // XDG requires an absolute path; a relative one is ignored.
    assert_eq!(
        data_dir(&[("HOME", HOME), ("XDG_DATA_HOME", "rel")]).unwrap(),
        PathBuf::from(DATA)
    );
    let err = data_dir(&[]).unwrap_err().to_string();
    assert!(
        err.starts_with("data_dir (default): is not set and there is no HOME"),
        "{err}"
    );
}

#[test]
fn every_key_is_read_by_the_decoder() {
    let env = env(&[]);
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    let layers = source::Layers::new(None, &env, &Overrides::new(), &mut problems, &mut warnings);
    let mut reader = decode::Reader::new(&layers, &env);
    assert!(decode::decode(&mut reader).is_some());
    for key in keys::KEYS {
        assert!(
            reader.read.contains(&key.path),
            "{} is never read",
            key.path
        );
    }
}

// ---- the example file and a headscale file ----

/// Every known key written in `yaml`.
fn keys_in(yaml: &str) -> Vec<String> {
    fn walk(value: &serde_yaml_ng::Value, prefix: &str, out: &mut Vec<String>) {
        let serde_yaml_ng::Value::Mapping(map) = value else {
            return;
        };
        for (name, child) in map {
            let name = name.as_str().unwrap();
            let path = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            };
            if keys::key(&path).is_some() {
                out.push(path);
            } else {
                walk(child, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&serde_yaml_ng::from_str(yaml).unwrap(), "", &mut out);
    out
}

#[test]
fn example_config_lists_every_key_exactly_once() {
    let written = keys_in(EXAMPLE);
    for key in keys::KEYS {
        assert_eq!(
            written.iter().filter(|k| *k == key.path).count(),
            1,
            "{} missing from config-example.yaml",
            key.path
        );
    }
    assert_eq!(written.len(), keys::KEYS.len());
}

#[test]
fn example_config_loads_without_warnings_and_shows_the_defaults() {
    // The example's relative state paths resolve in data_dir, like defaults.
    let loaded = load_yaml(EXAMPLE, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings, Vec::<String>::new());
    assert_eq!(loaded.config, defaults(Path::new(DATA)));
    let example: serde_yaml_ng::Value = serde_yaml_ng::from_str(EXAMPLE).unwrap();
    for key in keys::KEYS {
        let value = key
            .path
            .split('.')
            .try_fold(&example, |node, segment| node.get(segment))
            .unwrap();
        assert!(
            notices::same_as_default(key.path, value),
            "{}: example shows {value:?}, default is {:?}",
            key.path,
            key.default
        );
    }
}

#[test]
fn a_headscale_config_loads_unchanged() {
    let loaded = load_yaml(HEADSCALE, &[]).unwrap_or_else(|e| panic!("{e}"));
    let c = loaded.config;
    assert_eq!(c.server_url.as_str(), "https://headscale.example.net/");
    assert_eq!(c.listen_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(
        c.trusted_proxies,
        vec!["127.0.0.1/32".parse::<ipnet::IpNet>().unwrap()]
    );
    assert_eq!(
        c.noise.private_key_path,
        PathBuf::from("/var/lib/headscale/noise_private.key")
    );
    assert_eq!(c.prefixes.allocation, IpAllocation::Random);
    let derp = &c.derp;
    assert!(derp.server.enabled);
    assert_eq!(
        (derp.server.region_id, derp.server.region_code.as_str()),
        (900, "hs")
    );
    assert_eq!(
        derp.server.stun_listen_addr,
        Some("0.0.0.0:3478".parse().unwrap())
    );
    assert_eq!(
        derp.server.ipv4,
        DerpNodeIp::Fixed(Ipv4Addr::new(198, 51, 100, 1))
    );
    assert_eq!(
        derp.server.ipv6,
        DerpNodeIp::Fixed("2001:db8::1".parse::<Ipv6Addr>().unwrap())
    );
    assert_eq!(
        derp.urls[0].as_str(),
        "https://controlplane.tailscale.com/derpmap/default"
    );
    assert!(derp.auto_update_enabled);
    assert_eq!(c.node.expiry, Some(Duration::from_secs(180 * 86_400)));
    assert_eq!(
        c.database.backend,
        DatabaseBackend::Sqlite(SqliteConfig {
            path: "/var/lib/headscale/db.sqlite".into(),
            write_ahead_log: true,
            wal_autocheckpoint: 1000,
            key: None,
        })
    );
    assert_eq!(c.tls, None);
    assert_eq!(
        c.log,
        LogConfig {
            level: LogLevel::Debug,
            format: LogFormat::Json
        }
    );
    assert_eq!(
        c.policy.path,
        Some(PathBuf::from("/etc/headscale/acl.hujson"))
    );
    assert_eq!(c.dns.base_domain.as_deref(), Some("tailnet.example.com"));
    let global: Vec<String> = c
        .dns
        .nameservers
        .global
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        global,
        [
            "1.1.1.1",
            "2606:4700:4700::1111",
            "https://dns.nextdns.io/abc123"
        ]
    );
    assert_eq!(
        c.dns.nameservers.split["corp.example.com"],
        vec![Nameserver::Ip(IpAddr::from([10, 0, 0, 53]))]
    );
    assert_eq!(c.dns.search_domains, ["corp.example.com"]);
    assert_eq!(c.dns.extra_records.len(), 2);
    assert_eq!(c.dns.extra_records[1].record_type, DnsRecordType::Aaaa);
    assert_eq!(
        c.unix_socket,
        PathBuf::from("/var/run/headscale/headscale.sock")
    );
    // The headscale-only GORM knobs and the DERP auto-update are flagged;
    // ACME keys are not, because ACME is not switched on.
    assert_eq!(
        loaded.warnings,
        [
            "database.gorm.prepare_stmt, database.gorm.parameterized_queries, database.gorm.skip_err_record_not_found, \
             database.gorm.slow_threshold: no effect in Headway (Headway does not use GORM); remove to silence this",
            "derp.auto_update_enabled: periodic DERP map refresh is not built into Headway yet; ignored",
            "trusted_proxies: trusting forwarded-for headers is not built into Headway yet; ignored",
        ]
    );
}

// ---- environment and overrides ----

#[test]
fn environment_overrides_the_file_and_flags_override_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "listen_addr: 0.0.0.0:8080\nserver_url: https://hw.example.com\nlog: {level: warn}\n",
    )
    .unwrap();
    let env = env(&[
        ("HEADWAY_LISTEN_ADDR", "0.0.0.0:9000"),
        ("HEADWAY_DATABASE__SQLITE__PATH", "/tmp/env.db"),
        (
            "HEADWAY_DERP__URLS",
            "[https://a.example/derp.json, https://b.example/derp.json]",
        ),
        ("HEADWAY_DERP__SERVER__ENABLED", "false"),
        ("HEADWAY_NODE__EPHEMERAL__INACTIVITY_TIMEOUT", "1h"),
        (
            "HEADWAY_DNS__NAMESERVERS__SPLIT",
            "{corp.example: [10.0.0.53]}",
        ),
        ("HEADWAY_METRICS_LISTEN_ADDR", ""),
    ]);
    let overrides = Overrides::new().with("listen_addr", "127.0.0.1:7000");
    let loaded = load(Some(&path), &env, &overrides).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.listen_addr.to_string(), "127.0.0.1:7000");
    assert_eq!(c.server_url.as_str(), "https://hw.example.com/");
    assert_eq!(c.log.level, LogLevel::Warn);
    assert_eq!(
        c.database.backend,
        DatabaseBackend::Sqlite(SqliteConfig {
            path: "/tmp/env.db".into(),
            write_ahead_log: true,
            wal_autocheckpoint: 1000,
            key: None,
        })
    );
    assert_eq!(c.derp.urls.len(), 2);
    assert!(!c.derp.server.enabled);
    assert_eq!(
        c.node.ephemeral.inactivity_timeout,
        Duration::from_secs(3600)
    );
    assert_eq!(c.dns.nameservers.split.len(), 1);
    assert_eq!(c.metrics_listen_addr, None);
    assert_eq!(
        loaded.source_description,
        format!(
            "defaults + {} + 7 HEADWAY_ environment variables + command-line overrides",
            path.display()
        )
    );
}

#[test]
fn empty_list_from_the_environment_replaces_the_file_list() {
    let yaml = "derp:\n  urls: [https://controlplane.tailscale.com/derpmap/default]\n";
    let loaded = load_yaml(yaml, &[("HEADWAY_DERP__URLS", "[]")]).unwrap();
    assert!(loaded.config.derp.urls.is_empty());
}

#[test]
fn environment_values_are_named_in_errors() {
    let err = load(
        None,
        &env(&[("HEADWAY_PREFIXES__V4", "100.64.0.0/33")]),
        &Overrides::new(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "prefixes.v4 (from HEADWAY_PREFIXES__V4): \"100.64.0.0/33\" is not a valid IPv4 prefix; expected e.g. 100.64.0.0/10"
    );
}

#[test]
fn unknown_override_is_an_error() {
    let err = load(
        None,
        &env(&[]),
        &Overrides::new().with("lisen_addr", "0.0.0.0:1"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "lisen_addr (from the command line): is not a setting; did you mean listen_addr?"
    );
}

// ---- invalid values ----

#[test]
fn invalid_prefix() {
    assert_eq!(
        error("prefixes:\n  v4: 100.64.0.0/33\n"),
        "prefixes.v4: \"100.64.0.0/33\" is not a valid IPv4 prefix; expected e.g. 100.64.0.0/10"
    );
    assert_eq!(
        error("prefixes: {v4: '', v6: ''}\n"),
        "prefixes: neither prefixes.v4 nor prefixes.v6 is set; at least one is required, e.g. 100.64.0.0/10"
    );
}

#[test]
fn bad_url() {
    assert_eq!(
        error("server_url: ftp://hw.example.com\n"),
        "server_url: \"ftp://hw.example.com\" must start with http:// or https://"
    );
    assert!(
        error("server_url: hw.example.com\n")
            .starts_with("server_url: \"hw.example.com\" is not a valid URL")
    );
}

#[test]
fn bad_duration() {
    assert_eq!(
        error("node:\n  expiry: 10 days\n"),
        "node.expiry: \"10 days\" is not a valid duration (unknown unit \" days\"); expected e.g. 30m, 1h30m, 90s, 7d or 0"
    );
    assert_eq!(
        error("node:\n  ephemeral:\n    inactivity_timeout: 1m\n"),
        "node.ephemeral.inactivity_timeout: 1m is too short; it must be more than 1m5s (clients send a keep-alive every 60s)"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        error("log:\n  level: [info]\n"),
        "log.level: expected a string, found a list"
    );
    assert_eq!(
        error("dns:\n  magic_dns: maybe\n"),
        "dns.magic_dns: \"maybe\" is not a boolean; expected true or false"
    );
    assert_eq!(
        error("database: sqlite\n"),
        "database: is a section with the keys type, debug, sqlite, postgres, but is set to a string"
    );
    assert_eq!(
        error("dns:\n  nameservers:\n    global: [1.1.1.1, dns.example]\n"),
        "dns.nameservers.global[1]: \"dns.example\" is not a nameserver; expected an IP address (1.1.1.1) or a \
         DNS-over-HTTPS URL (https://dns.example/dns-query)"
    );
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "server_url: http://x\nprefixes:\n  v4: 100.64.0.0/10\n v6: fd7a::/48\n",
    )
    .unwrap();
    let err = load(Some(&path), &env(&[]), &Overrides::new()).unwrap_err();
    let ConfigError::Syntax { line, column, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*line, *column), (4, 2));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:4:2: invalid YAML: ", path.display())),
        "{text}"
    );
    assert!(
        !text.contains("at line 4 column 2"),
        "position repeated: {text}"
    );
}

#[test]
fn missing_file_is_an_error() {
    let err = load(
        Some(Path::new("/nonexistent/config.yaml")),
        &env(&[]),
        &Overrides::new(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read config file /nonexistent/config.yaml: "),
        "{err}"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let err = load_yaml("listen_addr: nowhere\nlog: {format: xml}\n", &[]).unwrap_err();
    assert_eq!(err.problems().len(), 2);
    assert_eq!(
        err.to_string(),
        "2 invalid settings:\n  - listen_addr: \"nowhere\" is not a valid listen address; expected IP:port, e.g. \
         0.0.0.0:8080 or [::]:8080\n  - log.format: \"xml\" is not a valid choice; expected one of: text, json"
    );
}

#[test]
fn cross_key_rules() {
    assert_eq!(
        error("server_url: https://hw.example.com\ndns: {base_domain: example.com}\n"),
        "dns.base_domain: \"example.com\" contains the host of server_url (hw.example.com); clients would resolve the \
         server through MagicDNS and lose it. Use a domain of its own, e.g. tailnet.example.com"
    );
    assert!(
        error("server_url: https://headway.internal\n")
            .starts_with("dns.base_domain (default): \"headway.internal\" is the host")
    );
    assert_eq!(
        error("dns: {base_domain: ''}\n"),
        "dns.base_domain: must be set when dns.magic_dns is true"
    );
    assert!(
        config("dns: {base_domain: '', magic_dns: false}\n")
            .dns
            .base_domain
            .is_none()
    );
    assert_eq!(
        error("derp: {server: {stun_listen_addr: ''}}\n"),
        "derp.server.stun_listen_addr: must be set when derp.server.enabled is true"
    );
    assert_eq!(
        error("metrics_listen_addr: 0.0.0.0:8080\n"),
        "metrics_listen_addr: 0.0.0.0:8080 clashes with listen_addr (127.0.0.1:8080); use another port"
    );
    assert_eq!(
        error("tls_cert_path: /etc/hw/cert.pem\n"),
        "tls_key_path (default): is empty, but tls_cert_path is set; give both or neither"
    );
    assert!(error("dns: {extra_records: [{name: a.b, type: A, value: 1.2.3.4}], extra_records_path: /x.json}\n")
        .starts_with("dns.extra_records_path: and dns.extra_records are mutually exclusive"));
    let long = format!("unix_socket: /{}/headway.sock\n", "d".repeat(120));
    assert!(error(&long).contains("Unix socket paths must be at most 107 bytes"));
    assert!(
        error("database: {type: postgres, postgres: {host: ''}}\n")
            .starts_with("database.postgres.host: must be set")
    );
    assert!(error("node: {routes: {ha: {probe_interval: 5s, probe_timeout: 5s}}}\n")
        .starts_with("node.routes.ha.probe_timeout: 5s must be shorter than node.routes.ha.probe_interval (5s)"));
}

#[test]
fn typed_choices() {
    let c = config(
        "tls_cert_path: cert.pem\ntls_key_path: /abs/key.pem\nserver_url: https://hw.example.com\n\
         database: {type: postgres, postgres: {host: db, port: 6432, ssl: verify-full, ssl_root_cert: db-ca.pem, pass: hunter2}}\n\
         derp: {server: {ipv4: none}}\nunix_socket_permission: 660\n",
    );
    assert!(
        matches!(c.tls, Some(TlsConfig::Files { ref key_path, .. }) if key_path == Path::new("/abs/key.pem"))
    );
    let DatabaseBackend::Postgres(pg) = &c.database.backend else {
        panic!("{:?}", c.database)
    };
    assert_eq!(
        (pg.host.as_str(), pg.port, pg.ssl),
        ("db", 6432, PostgresSslMode::VerifyFull)
    );
    assert_eq!(pg.pass.as_ref().map(Secret::expose), Some("hunter2"));
    assert!(
        pg.ssl_root_cert
            .as_deref()
            .is_some_and(|p| p.ends_with("db-ca.pem")),
        "{:?}",
        pg.ssl_root_cert
    );
    assert_eq!(pg.conn_max_idle_time, Duration::from_secs(3600));
    assert_eq!(c.derp.server.ipv4, DerpNodeIp::Disabled);
    assert_eq!(c.unix_socket_permission, 0o660);
    let c = config("database: {type: postgres, postgres: {ssl: true}}\n");
    assert!(matches!(
        c.database.backend,
        DatabaseBackend::Postgres(PostgresConfig {
            ssl: PostgresSslMode::Require,
            ..
        })
    ));
}

// ---- warnings ----

#[test]
fn unknown_keys_warn_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "listen_adr: 0.0.0.0:8080\ndatabase:\n  sqlite:\n    pth: x.db\nbase_domain: x.example\nfrobnicate: 1\n").unwrap();
    let env = env(&[
        ("HEADWAY_SERVER_URI", "http://x"),
        ("HEADWAY_CONFIG", "/etc/headway/config.yaml"),
    ]);
    let loaded = load(Some(&path), &env, &Overrides::new()).unwrap();
    let file = path.display();
    assert_eq!(
        loaded.warnings,
        [
            format!("listen_adr: unknown key in {file}, ignored; did you mean listen_addr?"),
            format!(
                "database.sqlite.pth: unknown key in {file}, ignored; did you mean database.sqlite.path?"
            ),
            format!("base_domain: unknown key in {file}, ignored; did you mean dns.base_domain?"),
            format!("frobnicate: unknown key in {file}, ignored"),
            "HEADWAY_SERVER_URI: not a Headway setting, ignored; did you mean HEADWAY_SERVER_URL?"
                .to_owned(),
        ]
    );
}

#[test]
fn not_yet_supported_keys_warn_only_when_changed() {
    assert_eq!(
        warnings(
            "logtail: {enabled: false}\ntaildrop: {enabled: true}\n",
            &[]
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        warnings(
            "preauth_keys: {revoked_retention: 1h}\nlogtail: {enabled: true}\n",
            &[]
        ),
        [
            "preauth_keys.revoked_retention: deleting revoked pre-auth keys is not built into Headway yet; ignored"
        ]
    );
    // Router health probes are built: not flagged.
    assert_eq!(
        warnings("node: {routes: {ha: {probe_interval: 37s}}}\n", &[]),
        Vec::<String>::new()
    );
    // OIDC is built: its settings are not flagged, switched on or not.
    assert_eq!(
        warnings("oidc: {client_id: abc}\n", &[]),
        Vec::<String>::new()
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("oidc_secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let secret_path = secret.display().to_string();
    let loaded = load_yaml(
        "oidc:\n  issuer: https://idp.example.com\n  client_id: abc\n",
        &[("HEADWAY_OIDC__CLIENT_SECRET_FILE", &secret_path)],
    )
    .unwrap();
    assert_eq!(loaded.warnings, Vec::<String>::new());
    let oidc = loaded.config.oidc.unwrap();
    assert_eq!(oidc.client_secret.expose(), "s3cret");
    assert_eq!(oidc.scope, ["openid", "profile", "email"]);
}

#[test]
fn suspicious_setups_warn() {
    assert_eq!(
        warnings("listen_addr: 0.0.0.0:8080\n", &[]),
        [
            "server_url: http://127.0.0.1:8080/ only works on this machine, but listen_addr 0.0.0.0:8080 accepts other \
          machines; set server_url to the URL clients use"
        ]
    );
    assert_eq!(
        warnings("prefixes: {v4: 10.0.0.0/8}\n", &[]),
        [
            "prefixes.v4: 10.0.0.0/8 is outside Tailscale's range 100.64.0.0/10; Tailscale clients assume addresses from \
          it and misbehave otherwise (a subset of it is fine)"
        ]
    );
    assert_eq!(
        warnings("prefixes: {v4: 100.64.0.1/24}\n", &[]),
        ["prefixes.v4: 100.64.0.1/24 has host bits set; using 100.64.0.0/24"]
    );
    assert!(
        warnings("derp: {server: {enabled: false}}\n", &[])[0].contains("clients have no relay")
    );
}

#[test]
fn headscale_environment_variables_are_pointed_out() {
    assert_eq!(
        warnings("", &[("HEADSCALE_SERVER_URL", "https://x")]),
        [
            "HEADSCALE_SERVER_URL is a headscale variable and is ignored; Headway reads HEADWAY_SERVER_URL"
        ]
    );
}

// ---- legacy keys ----

#[test]
fn renamed_and_removed_headscale_keys() {
    assert_eq!(
        error("dns_config:\n  magic_dns: true\n"),
        "dns_config.magic_dns: was renamed to dns.magic_dns; rename it"
    );
    assert_eq!(
        warnings(
            "acl_policy_path: /a.hujson\npolicy: {path: /b.hujson}\n",
            &[]
        ),
        [
            "acl_policy_path is the old name of policy.path, which is also set; acl_policy_path is ignored, remove it",
        ]
    );
    assert_eq!(
        error("oidc:\n  expiry: 180d\n"),
        "oidc.expiry: is no longer supported (use node.expiry, which applies to every registration method); remove it"
    );
}

#[test]
fn deprecated_keys_are_still_honoured() {
    let loaded = load_yaml(
        "ephemeral_node_inactivity_timeout: 2h\nrandomize_client_port: true\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.config.node.ephemeral.inactivity_timeout,
        Duration::from_secs(7200)
    );
    assert!(loaded.config.randomize_client_port);
    assert_eq!(loaded.warnings.len(), 2);
    assert!(
        loaded.warnings[0]
            .starts_with("ephemeral_node_inactivity_timeout is deprecated; rename it")
    );
    let both = load_yaml(
        "ephemeral_node_inactivity_timeout: 2h\nnode: {ephemeral: {inactivity_timeout: 3h}}\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        both.config.node.ephemeral.inactivity_timeout,
        Duration::from_secs(3 * 3600)
    );
}

// ---- secrets and paths ----

#[test]
fn secrets_come_from_files_and_never_show() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db_pass"), "  correct horse\n").unwrap();
    let yaml = "database:\n  type: postgres\n  postgres:\n    pass_path: db_pass\n";
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let loaded = load(Some(&path), &env(&[]), &Overrides::new()).unwrap();
    let DatabaseBackend::Postgres(pg) = &loaded.config.database.backend else {
        panic!()
    };
    let pass = pg.pass.as_ref().unwrap();
    assert_eq!(pass.expose(), "correct horse");
    let debug = format!("{:?}", loaded.config);
    assert!(!debug.contains("correct horse"), "{debug}");
    assert!(debug.contains("Secret(<redacted>)"));

    // The environment's _FILE variable wins over the file's inline value.
    std::fs::write(dir.path().join("env_pass"), "from env").unwrap();
    let env_file = dir.path().join("env_pass").display().to_string();
    std::fs::write(
        &path,
        "database:\n  type: postgres\n  postgres:\n    pass: inline-secret\n",
    )
    .unwrap();
    let loaded = load(
        Some(&path),
        &env(&[("HEADWAY_DATABASE__POSTGRES__PASS_FILE", &env_file)]),
        &Overrides::new(),
    )
    .unwrap();
    let DatabaseBackend::Postgres(pg) = &loaded.config.database.backend else {
        panic!()
    };
    assert_eq!(pg.pass.as_ref().unwrap().expose(), "from env");

    // Both in the same layer is an error; a bad secret never shows its value.
    assert_eq!(
        error("database: {postgres: {pass: x, pass_path: /y}}\n"),
        "database.postgres.pass_path: database.postgres.pass and database.postgres.pass_path are mutually exclusive; \
         set only one"
    );
    let err = error("oidc: {client_secret: [hunter2]}\n");
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(err, "oidc.client_secret: expected a string, found a list");
    let err = error("database: {type: postgres, postgres: {pass_path: /nonexistent/pass}}\n");
    assert!(
        err.starts_with("database.postgres.pass_path: cannot read /nonexistent/pass: "),
        "{err}"
    );
    // An unused secret file is not read.
    assert!(
        load_yaml(
            "database: {postgres: {pass_path: /nonexistent/pass}}\n",
            &[]
        )
        .is_ok()
    );
}

#[test]
fn sqlite_key_comes_from_a_file_others_cannot_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("db.key");
    std::fs::write(&key, "a long passphrase\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "database:\n  sqlite:\n    key_path: db.key\n").unwrap();
    let loaded = load(Some(&path), &env(&[]), &Overrides::new()).unwrap();
    let DatabaseBackend::Sqlite(sqlite) = &loaded.config.database.backend else {
        panic!()
    };
    assert_eq!(sqlite.key.as_ref().unwrap().expose(), "a long passphrase");
    assert!(!format!("{:?}", loaded.config).contains("passphrase"));

    // Every user of the machine could read it: refused, and why.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = load(Some(&path), &env(&[]), &Overrides::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("database.sqlite.key_path:")
            && err.contains("can be read by every user of this machine (mode 644)")
            && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("passphrase"), "{err}");
    // With PostgreSQL selected the SQLite key is not read.
    std::fs::write(
        &path,
        "database:\n  type: postgres\n  sqlite:\n    key_path: db.key\n",
    )
    .unwrap();
    assert!(load(Some(&path), &env(&[]), &Overrides::new()).is_ok());
}

#[test]
fn secret_path_expands_variables() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("oidc"), "abc").unwrap();
    let creds = dir.path().display().to_string();
    let yaml = "oidc:\n  issuer: https://idp.example.com\n  client_id: x\n  client_secret_path: ${CREDENTIALS_DIRECTORY}/oidc\n";
    let loaded = load_yaml(yaml, &[("CREDENTIALS_DIRECTORY", &creds)]).unwrap();
    assert_eq!(loaded.config.oidc.unwrap().client_secret.expose(), "abc");
}

#[test]
fn relative_paths_are_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "data_dir: state\nnoise: {private_key_path: keys/noise.key}\ndatabase: {sqlite: {path: /abs/db.sqlite}}\n\
         policy: {path: acl.hujson}\nderp: {paths: [derp.yaml]}\n",
    )
    .unwrap();
    let env = env(&[("HEADWAY_DNS__EXTRA_RECORDS_PATH", "records.json")]);
    let c = load(Some(&path), &env, &Overrides::new()).unwrap().config;
    let data = dir.path().join("state");
    assert_eq!(c.data_dir, data);
    assert_eq!(c.noise.private_key_path, data.join("keys/noise.key"));
    assert_eq!(
        c.derp.server.private_key_path,
        data.join("derp_server_private.key")
    );
    assert_eq!(c.unix_socket, data.join("headway.sock"));
    assert!(
        matches!(c.database.backend, DatabaseBackend::Sqlite(ref s) if s.path == Path::new("/abs/db.sqlite"))
    );
    // Files the operator provides are next to the config file...
    assert_eq!(c.policy.path, Some(dir.path().join("acl.hujson")));
    assert_eq!(c.derp.paths, [dir.path().join("derp.yaml")]);
    // ...unless given through the environment: then relative to the working directory.
    assert_eq!(
        c.dns.extra_records_path,
        Some(PathBuf::from("records.json"))
    );
}

// ---- check and discovery ----

#[test]
fn check_reports_ok_with_warnings_or_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, "lisen_addr: 1\n").unwrap();
    let report = check(Some(&path), &env(&[]), &Overrides::new());
    assert!(report.ok());
    assert_eq!(
        report.to_string(),
        format!(
            "OK: configuration is valid (defaults + {0})\nwarning: lisen_addr: unknown key in {0}, ignored; did you \
             mean listen_addr?\n",
            path.display()
        )
    );
    std::fs::write(&path, "listen_addr: 1\n").unwrap();
    let report = check(Some(&path), &env(&[]), &Overrides::new());
    assert!(!report.ok());
    assert!(
        report
            .to_string()
            .starts_with("error: listen_addr: \"1\" is not a valid listen address"),
        "{report}"
    );
}

#[test]
fn config_file_search_order() {
    let candidates = config_file_candidates(&env(&[]));
    let shown: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        shown,
        [
            "/etc/headway/config.yaml",
            "/etc/headway/config.json",
            "/home/alice/.headway/config.yaml",
            "/home/alice/.headway/config.json",
            "config.yaml",
            "config.json",
        ]
    );
}

#[test]
fn audit_keys_read_a_file_stdout_and_a_retention() {
    let c = load_yaml(
        "audit:\n  log_path: /var/log/headway/audit.jsonl\n  retention: 90d\n",
        &[],
    )
    .unwrap()
    .config;
    assert_eq!(
        c.audit.log_path,
        Some(AuditSinkPath::File("/var/log/headway/audit.jsonl".into()))
    );
    assert_eq!(
        c.audit.retention,
        Some(std::time::Duration::from_secs(90 * 86400))
    );
    let c = load_yaml("audit: {log_path: \"-\"}\n", &[]).unwrap().config;
    assert_eq!(c.audit.log_path, Some(AuditSinkPath::Stdout));
    assert_eq!(c.audit.retention, None);
    let err = load_yaml("audit: {retention: soon}\n", &[]).unwrap_err();
    assert!(err.to_string().contains("audit.retention"), "{err}");
}

#[test]
fn console_admins_are_addresses_and_groups_and_need_oidc() {
    let oidc = "oidc:\n  issuer: https://idp.example.com\n  client_id: abc\n  client_secret: s\n";
    let c = config(&format!(
        "{oidc}console:\n  admins: [root@example.com]\n  admin_groups: [tailnet-admins]\n"
    ));
    assert_eq!(c.console.admins, ["root@example.com"]);
    assert_eq!(c.console.admin_groups, ["tailnet-admins"]);
    assert!(c.console.names_admins());
    assert!(!defaults(Path::new(DATA)).console.names_admins());

    assert_eq!(
        error(&format!(
            "{oidc}console:\n  admins: [root@example.com, root]\n"
        )),
        "console.admins[1]: \"root\" is not an e-mail address; expected e.g. alice@example.com"
    );
    assert_eq!(
        error(&format!("{oidc}console:\n  admin_groups: [\"\"]\n")),
        "console.admin_groups[0]: must not be empty"
    );
    assert_eq!(
        warnings("console:\n  admin_groups: [ops]\n", &[]),
        [
            "console.admins and console.admin_groups do nothing without oidc.issuer: the console signs in with API keys only"
        ]
    );
}

#[test]
fn derp_mesh_key_and_peers_are_validated() {
    let key = "0123456789abcdef".repeat(4);
    let c = config(&format!(
        "derp:\n  server:\n    mesh_key: \"{key}\"\n    mesh_with:\n      - https://10.0.0.1:3340\n      - https://hw2.example.com:3340\n"
    ));
    assert_eq!(c.derp.server.mesh_key.as_ref().unwrap().expose(), key);
    assert_eq!(
        c.derp
            .server
            .mesh_with
            .iter()
            .map(url::Url::as_str)
            .collect::<Vec<_>>(),
        ["https://10.0.0.1:3340/", "https://hw2.example.com:3340/"]
    );

    // From a file (derper's --mesh-psk-file layout: hex and a newline).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mesh.key");
    std::fs::write(&file, format!("{key}\n")).unwrap();
    let c = config(&format!(
        "derp:\n  server:\n    mesh_key_path: {}\n",
        file.display()
    ));
    assert_eq!(c.derp.server.mesh_key.unwrap().expose(), key);

    // Too short: named, with the length but not the value.
    let err = error("derp:\n  server:\n    mesh_key: \"c0ffee\"\n");
    assert!(err.contains("derp.server.mesh_key"), "{err}");
    assert!(err.contains("64 hex digits"), "{err}");
    assert!(!err.contains("c0ffee"), "the key leaked into: {err}");
    // Not hex.
    let err = error(&format!(
        "derp:\n  server:\n    mesh_key: \"{}\"\n",
        "zz".repeat(32)
    ));
    assert!(err.contains("derp.server.mesh_key"), "{err}");
    // Peers without a key.
    let err = error("derp:\n  server:\n    mesh_with: [\"https://10.0.0.2:3340\"]\n");
    assert!(err.contains("derp.server.mesh_with"), "{err}");
    assert!(err.contains("mesh_key"), "{err}");
    // DERP is TLS only.
    let err = error(&format!(
        "derp:\n  server:\n    mesh_key: \"{key}\"\n    mesh_with: [\"http://10.0.0.2:3340\"]\n"
    ));
    assert!(err.contains("derp.server.mesh_with"), "{err}");
    assert!(err.contains("https://"), "{err}");
    // Inline and file in the same layer.
    let err = error(&format!(
        "derp:\n  server:\n    mesh_key: \"{key}\"\n    mesh_key_path: {}\n",
        file.display()
    ));
    assert!(err.contains("mutually exclusive"), "{err}");
}
