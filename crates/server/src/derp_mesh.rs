//! Several replicas' embedded relays as one DERP region.
//!
//! Every replica lists the relays of all replicas (`derp.server.mesh_with`)
//! in its region, its own first: a client uses the first node of a region
//! it can reach, so clients relay through the replica they are connected to
//! and fail over to the next one when it goes. Two clients on different
//! replicas' relays still reach each other because the relays mesh: each
//! logs in to every other one with the shared mesh key, learns who is
//! connected there, and forwards packets for them (`headway_derp::mesh`).
//!
//! Self-signed relay certificates (plain-`http` server URL) must be the same
//! files on every replica: clients pin one hash for the whole region, and
//! the mesh links pin it too.

use std::sync::Arc;

use anyhow::Context;
use headway_config::Config;
use headway_derp::{DerpServer, MeshKey, MeshPeer};
use headway_proto::tailcfg::DerpRegion;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The shared mesh key (`derp.server.mesh_key` / `mesh_key_path`).
pub(crate) fn mesh_key(config: &Config) -> anyhow::Result<Option<MeshKey>> {
    config
        .derp
        .server
        .mesh_key
        .as_ref()
        .map(|k| {
            k.expose()
                .parse::<MeshKey>()
                .context("derp.server.mesh_key")
        })
        .transpose()
}

/// Adds a node per other replica to `region` (whose first node is this
/// replica's relay) and returns the mesh links to run.
pub(crate) fn add_peers(config: &Config, region: &mut DerpRegion) -> anyhow::Result<Vec<MeshPeer>> {
    let Some(own) = region.nodes.first().cloned() else {
        return Ok(Vec::new());
    };
    let tls = match own.cert_name.as_str() {
        "" => None,
        pin => Some(
            headway_derp::tls::pinned_client_config(pin)
                .context("pinning the DERP certificate for the mesh links")?,
        ),
    };
    let mut peers = Vec::new();
    for url in &config.derp.server.mesh_with {
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_string();
        let port = url.port_or_known_default().unwrap_or(443);
        // This replica's own entry: its host name, or the address clients
        // are told to dial (derp.server.ipv4/ipv6), and its port.
        let own_names = [own.host_name.trim_matches(['[', ']']), &own.ipv4, &own.ipv6];
        if own_names.contains(&host.as_str()) && i32::from(port) == own.derp_port {
            continue;
        }
        let mut node = own.clone();
        node.name = format!("{}-{}", region.region_id, region.nodes.len() + 1);
        node.host_name = host.clone();
        node.derp_port = i32::from(port);
        // The peer's STUN port is not known here; this replica's STUN
        // serves the region.
        node.stun_port = -1;
        let ip: Option<std::net::IpAddr> = host.parse().ok();
        node.ipv4 = match ip {
            Some(std::net::IpAddr::V4(a)) => a.to_string(),
            Some(std::net::IpAddr::V6(_)) => "none".into(),
            None => String::new(),
        };
        node.ipv6 = match ip {
            Some(std::net::IpAddr::V6(a)) => a.to_string(),
            Some(std::net::IpAddr::V4(_)) => "none".into(),
            None => String::new(),
        };
        region.nodes.push(node);
        let authority = match ip {
            Some(std::net::IpAddr::V6(a)) => format!("[{a}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let tls = match &tls {
            Some(t) => t.clone(),
            None => public_roots()?,
        };
        peers.push(MeshPeer {
            url: format!("https://{authority}/derp"),
            tls: Some(tls),
        });
    }
    if !peers.is_empty() && config.derp.server.mesh_key.is_none() {
        anyhow::bail!("derp.server.mesh_with needs derp.server.mesh_key (or mesh_key_path)");
    }
    Ok(peers)
}

/// Peers whose relays have publicly trusted certificates (https server URL).
fn public_roots() -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use hyper_rustls::ConfigBuilderExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS for the DERP mesh links")?
            .with_webpki_roots()
            .with_no_client_auth(),
    ))
}

/// Runs one mesh link per peer until shutdown.
pub(crate) fn spawn_links(
    server: &Arc<DerpServer>,
    peers: Vec<MeshPeer>,
    key: Option<MeshKey>,
    tasks: &mut JoinSet<anyhow::Result<()>>,
    shutdown: &CancellationToken,
) {
    let Some(key) = key else {
        return;
    };
    for peer in peers {
        tracing::info!(peer = %peer.url, "meshing the embedded DERP relay with another replica's");
        let server = server.clone();
        let key = key.clone();
        let sd = shutdown.clone();
        tasks.spawn(async move {
            headway_derp::run_mesh_link(server, peer, key, sd.cancelled_owned()).await;
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use headway_config::{Env, Overrides};
    use headway_derp::EmbeddedRegion;

    use super::*;

    fn config(mesh_with: &str) -> Config {
        let env: Env = [("HEADWAY_DATA_DIR", "/nonexistent/headway")]
            .into_iter()
            .collect();
        let overrides = Overrides::new()
            .with("derp.server.mesh_key", "ab".repeat(32))
            .with("derp.server.mesh_with", mesh_with);
        headway_config::load(None, &env, &overrides).unwrap().config
    }

    fn own_region(host: &str, ipv4: Option<std::net::Ipv4Addr>) -> DerpRegion {
        EmbeddedRegion {
            region_id: 999,
            region_code: "headway".into(),
            region_name: "Headway".into(),
            host_name: host.into(),
            ipv4,
            ipv6: None,
            derp_port: 3340,
            stun_port: Some(3478),
            cert_name: None,
            insecure_for_tests: false,
        }
        .to_region()
    }

    fn hosts(region: &DerpRegion) -> Vec<(String, i32)> {
        region
            .nodes
            .iter()
            .map(|n| (n.host_name.clone(), n.derp_port))
            .collect()
    }

    #[test]
    fn every_other_replica_becomes_a_node_and_a_link_and_this_one_is_skipped() {
        let c =
            config("[https://127.0.0.1:3340, https://127.0.0.2:3340, https://hw3.example.com:443]");
        let mut region = own_region("127.0.0.1", None);
        let peers = add_peers(&c, &mut region).unwrap();
        assert_eq!(
            hosts(&region),
            [
                ("127.0.0.1".to_string(), 3340),
                ("127.0.0.2".to_string(), 3340),
                ("hw3.example.com".to_string(), 443),
            ]
        );
        // The others' STUN ports are unknown: this replica's serves.
        assert_eq!(region.nodes[1].stun_port, -1);
        assert_eq!(region.nodes[1].ipv4, "127.0.0.2");
        assert_eq!(region.nodes[1].ipv6, "none");
        let urls: Vec<&str> = peers.iter().map(|p| p.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://127.0.0.2:3340/derp",
                "https://hw3.example.com:443/derp"
            ]
        );
        // Node names stay unique within the region.
        let mut names: Vec<&str> = region.nodes.iter().map(|n| n.name.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), 3);
    }

    /// Behind a load balancer `server_url` names the balancer; the replica
    /// is told apart by the address clients dial for its relay.
    #[test]
    fn a_replica_recognises_itself_by_its_derp_address() {
        let c = config("[https://10.0.0.1:3340, https://10.0.0.2:3340]");
        let mut region = own_region("headway.example.com", Some([10, 0, 0, 1].into()));
        let peers = add_peers(&c, &mut region).unwrap();
        assert_eq!(region.nodes.len(), 2);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].url, "https://10.0.0.2:3340/derp");
    }
}
