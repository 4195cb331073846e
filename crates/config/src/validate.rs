//! Rules that involve more than one setting (headscale's start-up checks
//! plus a few of Headway's own), run on the typed configuration. Broken
//! rules are problems; suspicious but workable setups are warnings.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::decode::Reader;
use crate::model::*;

/// Tailscale clients assume their addresses come from these ranges.
const CGNAT: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 10);
const TAILSCALE_ULA: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0xfd7a, 0x115c, 0xa1e0, 0, 0, 0, 0, 0), 48);

/// Clients send a keep-alive every 60 s; an ephemeral node must be allowed
/// to miss one before it is deleted (headscale's bound).
const MIN_EPHEMERAL_INACTIVITY: Duration = Duration::from_secs(65);

/// Longest Unix socket path Linux accepts (`sun_path` is 108 bytes with
/// the terminating NUL).
const MAX_UNIX_SOCKET_PATH: usize = 107;

pub(crate) fn validate(c: &Config, r: &mut Reader) {
    prefixes(c, r);
    node(c, r);
    dns(c, r);
    derp(c, r);
    listeners(c, r);
    database(c, r);
    misc(c, r);
}

fn prefixes(c: &Config, r: &mut Reader) {
    let PrefixesConfig { v4, v6, .. } = &c.prefixes;
    if v4.is_none() && v6.is_none() {
        r.fail("prefixes", "neither prefixes.v4 nor prefixes.v6 is set; at least one is required, e.g. 100.64.0.0/10");
    }
    let outside = |inside: bool,
                   key: &str,
                   net: &dyn std::fmt::Display,
                   range: &dyn std::fmt::Display| {
        (!inside).then(|| {
            format!(
                "{key}: {net} is outside Tailscale's range {range}; Tailscale clients assume addresses from it and \
                 misbehave otherwise (a subset of it is fine)"
            )
        })
    };
    if let Some(w) = v4.and_then(|net| outside(CGNAT.contains(&net), "prefixes.v4", &net, &CGNAT)) {
        r.warn(w);
    }
    if let Some(w) = v6.and_then(|net| {
        outside(
            TAILSCALE_ULA.contains(&net),
            "prefixes.v6",
            &net,
            &TAILSCALE_ULA,
        )
    }) {
        r.warn(w);
    }
}

fn node(c: &Config, r: &mut Reader) {
    let timeout = c.node.ephemeral.inactivity_timeout;
    if timeout <= MIN_EPHEMERAL_INACTIVITY {
        r.fail(
            "node.ephemeral.inactivity_timeout",
            format!(
                "{} is too short; it must be more than {} (clients send a keep-alive every 60s)",
                format_duration(timeout),
                format_duration(MIN_EPHEMERAL_INACTIVITY)
            ),
        );
    }
    let ha = &c.node.routes.ha;
    if let Some(interval) = ha.probe_interval {
        if interval < Duration::from_secs(2) {
            r.fail(
                "node.routes.ha.probe_interval",
                format!(
                    "{} is too short; it must be at least 2s, or 0 to turn probing off",
                    format_duration(interval)
                ),
            );
        }
        if ha.probe_timeout < Duration::from_secs(1) {
            r.fail(
                "node.routes.ha.probe_timeout",
                format!(
                    "{} is too short; it must be at least 1s",
                    format_duration(ha.probe_timeout)
                ),
            );
        } else if ha.probe_timeout >= interval {
            r.fail(
                "node.routes.ha.probe_timeout",
                format!(
                    "{} must be shorter than node.routes.ha.probe_interval ({})",
                    format_duration(ha.probe_timeout),
                    format_duration(interval)
                ),
            );
        }
    }
}

fn dns(c: &Config, r: &mut Reader) {
    let dns = &c.dns;
    match &dns.base_domain {
        None if dns.magic_dns => {
            r.fail("dns.base_domain", "must be set when dns.magic_dns is true")
        }
        None => {}
        Some(base) => {
            // MagicDNS answers every name under the base domain inside the
            // tailnet, which would hide the server itself from its clients.
            let host = c
                .server_url
                .host_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let clash = if host == *base {
                Some("is the host of server_url")
            } else if host.ends_with(&format!(".{base}")) {
                Some("contains the host of server_url")
            } else {
                None
            };
            if let Some(clash) = clash {
                r.fail(
                    "dns.base_domain",
                    format!(
                        "{base:?} {clash} ({host}); clients would resolve the server through MagicDNS and lose it. \
                         Use a domain of its own, e.g. tailnet.example.com"
                    ),
                );
            }
        }
    }
    // headscale refuses override_local_dns without global resolvers; with
    // nothing to override with, clients simply keep their own, so Headway
    // accepts it (it is the default, and the example file shows it).
    if !dns.extra_records.is_empty() && dns.extra_records_path.is_some() {
        r.fail(
            "dns.extra_records_path",
            "and dns.extra_records are mutually exclusive; keep only one",
        );
    }
}

fn derp(c: &Config, r: &mut Reader) {
    let derp = &c.derp;
    let server = &derp.server;
    if server.enabled && server.stun_listen_addr.is_none() {
        r.fail(
            "derp.server.stun_listen_addr",
            "must be set when derp.server.enabled is true",
        );
    }
    if server.enabled && !server.automatically_add_embedded_derp_region && derp.paths.is_empty() {
        r.fail(
            "derp.server.automatically_add_embedded_derp_region",
            "is false, so the embedded DERP region must be described in a file listed in derp.paths, but derp.paths is empty",
        );
    }
    if !server.enabled && derp.urls.is_empty() && derp.paths.is_empty() {
        r.warn(
            "derp: the embedded DERP server is disabled and derp.urls and derp.paths are empty, so clients have no \
             relay; nodes that cannot reach each other directly will not connect",
        );
    }
    if derp.auto_update_enabled && derp.update_frequency.is_zero() {
        r.fail(
            "derp.update_frequency",
            "must be more than 0 when derp.auto_update_enabled is true",
        );
    }
}

/// Two TCP listeners on the same port clash when their IPs are equal or
/// either is a wildcard.
fn listeners(c: &Config, r: &mut Reader) {
    let mut tcp: Vec<(&str, SocketAddr)> = vec![("listen_addr", c.listen_addr)];
    if let Some(metrics) = c.metrics_listen_addr {
        tcp.push(("metrics_listen_addr", metrics));
    }
    if c.derp.server.enabled && c.server_url.scheme() == "http" {
        tcp.push(("derp.server.tls_listen_addr", c.derp.server.tls_listen_addr));
    }
    for (i, (key, addr)) in tcp.iter().enumerate() {
        let clash = tcp[..i].iter().find(|(_, earlier)| {
            earlier.port() == addr.port()
                && (earlier.ip() == addr.ip()
                    || earlier.ip().is_unspecified()
                    || addr.ip().is_unspecified())
        });
        if let Some((earlier_key, earlier)) = clash {
            r.fail(
                key,
                format!("{addr} clashes with {earlier_key} ({earlier}); use another port"),
            );
        }
    }
    let host_is_loopback = match c.server_url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if host_is_loopback && !c.listen_addr.ip().is_loopback() {
        r.warn(format!(
            "server_url: {} only works on this machine, but listen_addr {} accepts other machines; set server_url to \
             the URL clients use",
            c.server_url, c.listen_addr
        ));
    }
    if matches!(c.tls, Some(TlsConfig::Files { .. })) && c.server_url.scheme() == "http" {
        r.warn(format!(
            "server_url: {} is http://, but TLS is configured on listen_addr; clients will need https://",
            c.server_url
        ));
    }
    if let Some(TlsConfig::LetsEncrypt(le)) = &c.tls
        && le.challenge_type == AcmeChallenge::TlsAlpn01
        && c.listen_addr.port() != 443
    {
        r.warn(format!(
            "tls_letsencrypt_challenge_type: TLS-ALPN-01 needs the server reachable on port 443, but listen_addr is {}",
            c.listen_addr
        ));
    }
}

fn database(c: &Config, r: &mut Reader) {
    if c.database.debug && !matches!(c.log.level, LogLevel::Debug | LogLevel::Trace) {
        r.warn("database.debug: SQL statements are logged at debug level, which log.level hides; set log.level to debug");
    }
    if let DatabaseBackend::Postgres(pg) = &c.database.backend {
        if pg.host.trim().is_empty() {
            r.fail(
                "database.postgres.host",
                "must be set when database.type is postgres",
            );
        }
        if pg.name.trim().is_empty() {
            r.fail(
                "database.postgres.name",
                "must be set when database.type is postgres",
            );
        }
    }
}

fn misc(c: &Config, r: &mut Reader) {
    let socket_len = c.unix_socket.as_os_str().len();
    if socket_len > MAX_UNIX_SOCKET_PATH {
        r.fail(
            "unix_socket",
            format!(
                "{} is {socket_len} bytes long; Unix socket paths must be at most {MAX_UNIX_SOCKET_PATH} bytes",
                c.unix_socket.display()
            ),
        );
    }
    if c.policy.mode == PolicyMode::Database && c.policy.path.is_some() {
        r.warn("policy.path is ignored because policy.mode is database");
    }
    if c.oidc.is_none() && c.console.names_admins() {
        r.warn("console.admins and console.admin_groups do nothing without oidc.issuer: the console signs in with API keys only");
    }
}

/// `1h30m`, `65s`, `250ms`, like Go prints durations (without trailing
/// zero units).
pub(crate) fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    if d.subsec_nanos() != 0 && d.as_secs() == 0 {
        return format!("{}ms", d.as_millis());
    }
    let secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        let n = secs / size % if unit == "h" { u64::MAX } else { 60 };
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(65)), "1m5s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(180 * 86_400)), "4320h");
    }

    #[test]
    fn tailscale_ranges() {
        assert_eq!(CGNAT.to_string(), "100.64.0.0/10");
        assert_eq!(TAILSCALE_ULA.to_string(), "fd7a:115c:a1e0::/48");
    }
}
