//! Operations: the metrics listener (`/metrics` as strict OpenMetrics text
//! whose counters move when an official client joins, `/health`, `/ready`
//! against a PostgreSQL database taken away and given back), the audit log
//! of admin actions and node authentication (CLI, REST, JSON-lines copy),
//! and no secret in the server's debug log.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::kit::*;

/// One HTTP/1.1 exchange: (status, body).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Bearer {a}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The metrics port the kit wrote into the server's config.
fn metrics_port(server: &Headway) -> u16 {
    let yaml = std::fs::read_to_string(&server.config).unwrap();
    let line = yaml
        .lines()
        .find_map(|l| l.strip_prefix("metrics_listen_addr: "))
        .expect("the kit sets metrics_listen_addr");
    line.trim().rsplit(':').next().unwrap().parse().unwrap()
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// Parses `{a="x",b="y"}` strictly; returns the rest of the line.
fn labels(s: &str) -> Result<&str, String> {
    let mut rest = s.strip_prefix('{').ok_or("labels must start with {")?;
    if let Some(r) = rest.strip_prefix('}') {
        return Ok(r);
    }
    loop {
        let (name, r) = rest
            .split_once("=\"")
            .ok_or(format!("label without =\" in {s}"))?;
        if !is_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = r.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    other => return Err(format!("bad escape {other:?} in {s}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => return Err(format!("unterminated label value in {s}")),
                Some(_) => {}
            }
        };
        rest = &r[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('}') {
            return Ok(r);
        } else {
            return Err(format!("expected , or }} after a label in {s}"));
        }
    }
}

/// A strict reading of OpenMetrics text (the format `prometheus-client`
/// writes and Prometheus reads): every sample belongs to the family
/// declared by the `# TYPE` line before it, with the suffixes its type
/// allows, families are declared once, values are numbers, and `# EOF`
/// ends the text. Returns samples as `name{labels}` → value.
fn parse_openmetrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut declared = std::collections::HashSet::new();
    let mut family: Option<(String, String)> = None;
    assert!(
        text.ends_with("# EOF\n"),
        "the text must end with # EOF:\n{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    for (n, line) in lines.iter().enumerate() {
        let at = format!("line {}: {line:?}", n + 1);
        if *line == "# EOF" {
            assert_eq!(n, lines.len() - 1, "# EOF before the end ({at})");
            continue;
        }
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (kind, name, rest) = (
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
                parts.next(),
            );
            assert!(is_name(name), "bad metric family name ({at})");
            match kind {
                "TYPE" => {
                    let t = rest.unwrap_or("");
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "info",
                            "summary",
                            "unknown",
                            "stateset",
                            "gaugehistogram"
                        ]
                        .contains(&t),
                        "unknown type ({at})"
                    );
                    assert!(
                        declared.insert(name.to_string()),
                        "family declared twice ({at})"
                    );
                    // HELP may come first (OpenMetrics orders it so): a
                    // TYPE for the family just described keeps it open.
                    family = Some((name.to_string(), t.to_string()));
                }
                "HELP" | "UNIT" => {
                    // Metadata opens a family; its TYPE follows or precedes.
                    if family.as_ref().map(|f| f.0.as_str()) != Some(name) {
                        assert!(
                            !declared.contains(name),
                            "metadata for a family already closed ({at})"
                        );
                        family = Some((name.to_string(), "unknown".to_string()));
                    }
                }
                _ => panic!("unknown metadata ({at})"),
            }
            continue;
        }
        let (fam, ty) = family
            .clone()
            .unwrap_or_else(|| panic!("sample before any # TYPE ({at})"));
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| panic!("no value ({at})"));
        let name = &line[..name_end];
        let rest = &line[name_end..];
        let rest = if rest.starts_with('{') {
            labels(rest).unwrap_or_else(|e| panic!("{e} ({at})"))
        } else {
            rest
        };
        let value = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| panic!("no space before the value ({at})"));
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value is not a number ({at})")),
        };
        let suffix = name
            .strip_prefix(fam.as_str())
            .unwrap_or_else(|| panic!("sample of another family than {fam} ({at})"));
        let allowed: &[&str] = match ty.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" | "unknown" | "stateset" => &[""],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            "info" => &["_info"],
            _ => &["", "_count", "_sum", "_created"],
        };
        assert!(
            allowed.contains(&suffix),
            "suffix {suffix:?} not allowed for a {ty} ({at})"
        );
        samples.insert(line[..line.len() - value.len() - 1].to_string(), v);
    }
    samples
}

fn sample(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

async fn scrape(port: u16) -> BTreeMap<String, f64> {
    let (status, body) = http(port, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200, "{body}");
    parse_openmetrics(&body)
}

#[test]
fn the_strict_reader_refuses_what_prometheus_would() {
    let ok = "# TYPE a counter\n# HELP a A.\na_total{x=\"1\"} 2\n# EOF\n";
    assert_eq!(sample(&parse_openmetrics(ok), "a_total{x=\"1\"}"), 2.0);
    for bad in [
        "# TYPE a counter\na 2\n# EOF\n",
        "# TYPE a gauge\na{x=1} 2\n# EOF\n",
        "# TYPE a gauge\na two\n# EOF\n",
        "# TYPE a gauge\na 2\n",
        "b 1\n# EOF\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_openmetrics(bad)).is_err(),
            "accepted: {bad:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_audit_records_admin_actions_and_no_secret_is_logged() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: format!(
                "audit:\n  log_path: {}\npolicy:\n  mode: database\n",
                audit_file.display()
            ),
        },
    )
    .await;
    let mport = metrics_port(&server);

    // Health and readiness, and headscale's /health on the main listener.
    let (status, body) = http(mport, "GET", "/health", None, "").await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"pass\"}"));
    let (status, body) = http(mport, "GET", "/ready", None, "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(server.port, "GET", "/health", None, "").await;
    assert_eq!((status, body.as_str()), (200, "{\"status\":\"pass\"}"));
    // /debug answers on the metrics listener only.
    let (status, body) = http(mport, "GET", "/debug/tailnet", None, "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(server.port, "GET", "/debug/tailnet", None, "").await;
    assert!(
        status != 200 && !body.contains("mapSessions"),
        "{status} {body}"
    );

    let before = scrape(mport).await;
    assert!(
        before.keys().any(|k| k.starts_with("headway_build_info{")),
        "{before:?}"
    );
    let created = "headway_registrations_total{method=\"authkey\",outcome=\"created\"}";
    assert_eq!(sample(&before, created), 0.0);

    // Admin actions: over the unix socket (actor "local") and over REST
    // with an API key (actor "api_key:<prefix>").
    let mut secrets = Vec::new();
    let auth_key = server.user_with_key("alice", &[]).await;
    secrets.push(auth_key.clone());
    let api_key = server.cli_json(&["apikeys", "create"]).await["apiKey"]
        .as_str()
        .unwrap()
        .to_string();
    secrets.push(api_key.clone());
    let api_prefix = server.cli_json(&["apikeys", "list"]).await[0]["prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/user",
        Some(&api_key),
        "{\"name\":\"bob\"}",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bob: Value = serde_json::from_str(&body).unwrap();
    let bob_id = bob["user"]["id"].as_str().unwrap().to_string();

    // An official client joins.
    let node = Node::start(dir.path(), "ops1", "1.96.4", &[]).await;
    node.up_ok(&server, &auth_key).await;
    let node_id = server.nodes().await[0]["id"].as_str().unwrap().to_string();
    let after = eventually(
        Duration::from_secs(30),
        "metrics to show the new node online",
        async || {
            let m = scrape(mport).await;
            (sample(&m, "headway_nodes{state=\"online\"}") == 1.0
                && sample(&m, "headway_map_sessions") == 1.0)
                .then_some(m)
        },
    )
    .await;
    assert_eq!(sample(&after, created), 1.0, "{after:?}");
    assert!(sample(&after, "headway_map_updates_sent_total{kind=\"initial\"}") >= 1.0);
    assert!(
        sample(&after, "headway_db_latency_seconds_count{op=\"begin\"}")
            > sample(&before, "headway_db_latency_seconds_count{op=\"begin\"}")
    );
    assert!(
        sample(&after, "headway_policy_compile_seconds_count")
            > sample(&before, "headway_policy_compile_seconds_count")
    );
    assert!(sample(&after, "headway_audit_entries_total") >= 4.0);
    // The client's DERP connection to the embedded relay is counted.
    let derp = eventually(
        Duration::from_secs(30),
        "a DERP connection to be counted",
        async || {
            let m = scrape(mport).await;
            (sample(&m, "headway_derp_connections_total") >= 1.0).then_some(m)
        },
    )
    .await;
    assert!(
        derp.contains_key("headway_derp_sent_bytes_total"),
        "{derp:?}"
    );

    // More admin actions: rename (local), delete the node and user (API key).
    let (ok, out, err) = server
        .cli(&["nodes", "rename", "-i", &node_id, "renamed"])
        .await;
    assert!(ok, "{out}{err}");
    let (status, body) = http(
        server.port,
        "DELETE",
        &format!("/api/v1/node/{node_id}"),
        Some(&api_key),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        server.port,
        "DELETE",
        &format!("/api/v1/user/{bob_id}"),
        Some(&api_key),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // A policy set over REST: recorded with the text before and after.
    let policy = r#"{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}"#;
    let (status, body) = http(
        server.port,
        "PUT",
        "/api/v1/policy",
        Some(&api_key),
        &serde_json::json!({ "policy": policy }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The audit log, through the CLI.
    let entries = server.cli_json(&["audit", "list"]).await;
    let entries = entries.as_array().unwrap().clone();
    let find = |action: &str, actor: &str| {
        entries
            .iter()
            .find(|e| e["action"] == action && e["actor"].as_str().unwrap().starts_with(actor))
            .unwrap_or_else(|| panic!("no {action} by {actor} in {entries:#?}"))
            .clone()
    };
    let api_actor = format!("api_key:{api_prefix}");
    assert!(find("user.create", "local")["after"]["name"] == "alice");
    find("preauth_key.create", "local");
    find("api_key.create", "local");
    assert_eq!(
        find("user.create", &api_actor)["target"],
        format!("user:{bob_id}")
    );
    let register = find("node.register", "preauth_key:");
    assert_eq!(register["target"], format!("node:{node_id}"));
    let rename = find("node.rename", "local");
    assert_eq!(rename["after"]["name"], "renamed");
    assert!(rename["before"]["name"].is_string());
    assert_eq!(
        find("node.delete", &api_actor)["target"],
        format!("node:{node_id}")
    );
    assert_eq!(find("user.delete", &api_actor)["before"]["name"], "bob");
    let set = find("policy.set", &api_actor);
    assert_eq!(set["target"], "policy");
    assert_eq!(set["before"]["policy"], "");
    assert_eq!(set["after"]["policy"], policy);
    // Reads are not recorded.
    assert!(
        entries
            .iter()
            .all(|e| !e["action"].as_str().unwrap().starts_with("GET"))
    );

    // Filters, over REST with the same semantics.
    let (status, body) = http(
        server.port,
        "GET",
        &format!("/api/v1/audit?actor={api_actor}&action=node."),
        Some(&api_key),
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let filtered: Value = serde_json::from_str(&body).unwrap();
    let actions: Vec<&str> = filtered["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["node.delete"], "{body}");
    let (status, _) = http(
        server.port,
        "GET",
        "/api/v1/audit?since=yesterday",
        Some(&api_key),
        "",
    )
    .await;
    assert_eq!(status, 400);
    let since_cli = server
        .cli_json(&["audit", "list", "--since", "1h", "--action", "user."])
        .await;
    assert_eq!(since_cli.as_array().unwrap().len(), 3, "{since_cli:#}");

    // The JSON-lines copy holds the same entries.
    let lines = std::fs::read_to_string(&audit_file).unwrap();
    let copied: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        copied.len() >= entries.len(),
        "{} < {}",
        copied.len(),
        entries.len()
    );
    assert!(copied.iter().any(|e| e["action"] == "node.register"));

    // No secret in the debug log, the audit log or its copy: the keys this
    // test created, and the server's own private keys.
    for f in ["noise_private.key", "derp_server_private.key"] {
        let text = std::fs::read_to_string(server.data_dir().join(f)).unwrap();
        let key = text.trim().to_string();
        assert!(key.len() > 20, "{f}: {key}");
        secrets.push(key.clone());
        if let Some(hex) = key.split(':').nth(1) {
            secrets.push(hex.to_string());
        }
    }
    let log = server.log_text();
    assert!(
        log.contains("DEBUG"),
        "the server log is not at debug level"
    );
    let listed = serde_json::to_string(&entries).unwrap();
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret is in the server log: {}…",
            &s[..12]
        );
        assert!(
            !lines.contains(s.as_str()),
            "a secret is in the audit log copy: {}…",
            &s[..12]
        );
        assert!(
            !listed.contains(s.as_str()),
            "a secret is in the audit log: {}…",
            &s[..12]
        );
        // Nor the secret half alone.
        if let Some((_, secret)) = s.rsplit_once('-') {
            assert!(
                !log.contains(secret),
                "a key's secret part is in the server log"
            );
        }
    }
    // Every request got an id in its log span (colour codes aside: the
    // log's formatter may colour field names).
    let plain = strip_ansi(&log);
    assert!(plain.contains("request_id="), "no request ids in the log");
}

/// The text without its ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn psql(sql: &str) {
    let url = std::env::var("HEADWAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let out = std::process::Command::new("psql")
        .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("running psql (PostgreSQL's client)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/ready` follows the database: 200, then 503 while PostgreSQL refuses
/// the server (its connections killed, new ones not allowed), 200 again
/// once it lets it back in; `/health` (liveness) stays 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_fails_while_the_database_is_unreachable() {
    if std::env::var("HEADWAY_TEST_POSTGRES").as_deref() == Ok("off") {
        eprintln!("HEADWAY_TEST_POSTGRES=off: not run");
        return;
    }
    let _slot = slot().await;
    let db = format!("headway_ready_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    psql(&format!("CREATE DATABASE {db}"));
    let url = url::Url::parse(
        &std::env::var("HEADWAY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Headway::start(
        dir.path(),
        ServerOpts {
            extra_yaml: format!(
                "database:\n  type: postgres\n  postgres:\n    host: {}\n    port: {}\n    name: {db}\n    user: {}\n    pass: \"{}\"\n",
                url.host_str().unwrap_or("127.0.0.1"),
                url.port().unwrap_or(5432),
                if url.username().is_empty() { "postgres" } else { url.username() },
                url.password().unwrap_or(""),
            ),
        },
    )
    .await;
    let mport = metrics_port(&server);
    let (status, body) = http(mport, "GET", "/ready", None, "").await;
    assert_eq!(status, 200, "{body}");

    psql(&format!(
        "ALTER DATABASE {db} ALLOW_CONNECTIONS false; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ));
    let body = eventually(Duration::from_secs(30), "/ready to fail", async || {
        let (status, body) = http(mport, "GET", "/ready", None, "").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("\"status\":\"fail\""), "{body}");
    assert!(body.contains("database"), "{body}");
    let (status, _) = http(mport, "GET", "/health", None, "").await;
    assert_eq!(status, 200, "liveness must not follow the database");
    // headscale's /health on the main listener pings the database too.
    let (status, _) = http(server.port, "GET", "/health", None, "").await;
    assert_eq!(status, 500);

    psql(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    eventually(
        Duration::from_secs(30),
        "/ready to pass again",
        async || {
            let (status, _) = http(mport, "GET", "/ready", None, "").await;
            (status == 200).then_some(())
        },
    )
    .await;
    drop(server);
    psql(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ));
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
}
