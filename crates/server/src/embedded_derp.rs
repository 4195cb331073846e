//! The embedded DERP relay and STUN server. With an `https` server URL the
//! relay rides the main listener; with plain `http` (local and test set-ups)
//! it gets its own TLS listener with a self-signed certificate whose SHA-256
//! is pinned in the DERP map, because clients only speak DERP over TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use headway_config::{Config, DerpNodeIp};
use headway_derp::{DerpServer, EmbeddedRegion, SelfSignedCert};
use headway_proto::keys::{NodePublic, PrivateKey};
use headway_proto::tailcfg::DerpRegion;
use headway_state::Tailnet;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{bind_tcp, keys};

pub(crate) struct EmbeddedDerp {
    key: PrivateKey,
    pub region: DerpRegion,
    pub tls_addr: Option<SocketAddr>,
    pub stun_addr: Option<SocketAddr>,
    tls: Option<(TcpListener, SelfSignedCert)>,
    stun: Option<UdpSocket>,
    /// The other replicas' relays (`derp.server.mesh_with`).
    mesh: Vec<headway_derp::MeshPeer>,
}

impl EmbeddedDerp {
    /// Binds STUN and (for plain-http servers) the DERP TLS listener, and
    /// describes the region clients will be told about.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let ds = &config.derp.server;
        let key = keys::load_or_create(&ds.private_key_path, "DERP private key")?;
        let (stun, stun_addr) = match ds.stun_listen_addr {
            Some(addr) => {
                let sock = UdpSocket::bind(addr).await.with_context(|| {
                    format!("cannot listen on {addr} for STUN (derp.server.stun_listen_addr)")
                })?;
                let a = sock.local_addr()?;
                (Some(sock), Some(a))
            }
            None => (None, None),
        };
        let host = config
            .server_url
            .host_str()
            .unwrap_or("127.0.0.1")
            .to_string();
        let (derp_port, tls, tls_addr) = if config.server_url.scheme() == "https" {
            (
                config.server_url.port_or_known_default().unwrap_or(443),
                None,
                None,
            )
        } else {
            let l = bind_tcp(
                ds.tls_listen_addr,
                "embedded DERP over TLS",
                "derp.server.tls_listen_addr",
            )
            .await?;
            let addr = l.local_addr()?;
            #[cfg(unix)]
            if ds.tls_key_path.exists() {
                keys::check_private(&ds.tls_key_path, "DERP TLS key (derp.server.tls_key_path)")?;
            }
            let cert = SelfSignedCert::load_or_generate(
                &ds.tls_cert_path,
                &ds.tls_key_path,
                &[host.as_str()],
            )
            .context("preparing the DERP TLS certificate (derp.server.tls_cert_path)")?;
            (addr.port(), Some((l, cert)), Some(addr))
        };
        let host_ip: Option<std::net::IpAddr> = host.trim_matches(['[', ']']).parse().ok();
        let ipv4 = match ds.ipv4 {
            DerpNodeIp::Fixed(a) => Some(a),
            DerpNodeIp::Disabled => None,
            DerpNodeIp::FromDns => match host_ip {
                Some(std::net::IpAddr::V4(a)) => Some(a),
                _ => None,
            },
        };
        let ipv6 = match ds.ipv6 {
            DerpNodeIp::Fixed(a) => Some(a),
            DerpNodeIp::Disabled => None,
            DerpNodeIp::FromDns => match host_ip {
                Some(std::net::IpAddr::V6(a)) => Some(a),
                _ => None,
            },
        };
        let mut region = EmbeddedRegion {
            region_id: ds.region_id as i32,
            region_code: ds.region_code.clone(),
            region_name: ds.region_name.clone(),
            host_name: host,
            ipv4,
            ipv6,
            derp_port,
            stun_port: stun_addr.map(|a| a.port()),
            cert_name: tls.as_ref().map(|(_, c)| c.cert_name()),
            insecure_for_tests: false,
        }
        .to_region();
        // An explicitly disabled family is spelt "none" for the client; an
        // IP literal host with the other family unset must not be resolved.
        for n in &mut region.nodes {
            if matches!(ds.ipv4, DerpNodeIp::Disabled)
                || (host_ip.is_some_and(|h| h.is_ipv6()) && n.ipv4.is_empty())
            {
                n.ipv4 = "none".into();
            }
            if matches!(ds.ipv6, DerpNodeIp::Disabled)
                || (host_ip.is_some_and(|h| h.is_ipv4()) && n.ipv6.is_empty())
            {
                n.ipv6 = "none".into();
            }
        }
        let mesh = crate::derp_mesh::add_peers(config, &mut region)?;
        Ok(Self {
            key,
            mesh,
            region,
            tls_addr,
            stun_addr,
            tls,
            stun,
        })
    }

    /// Starts serving. Returns the DERP routes to mount on the main listener
    /// when the relay rides it (https server URL).
    pub fn spawn(
        self,
        config: &Config,
        tailnet: &Arc<Tailnet>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<Router>> {
        let mesh_key = crate::derp_mesh::mesh_key(config)?;
        let mut server = DerpServer::new(
            self.key,
            headway_derp::server::DerpConfig {
                mesh_key: mesh_key.clone(),
                ..Default::default()
            },
        );
        if config.derp.server.verify_clients {
            // Relay only for nodes of this tailnet.
            let weak = Arc::downgrade(tailnet);
            server = server.with_verifier(move |key: &NodePublic| {
                weak.upgrade().is_some_and(|t| t.node_by_key(key).is_some())
            });
        }
        let server = Arc::new(server);
        crate::derp_mesh::spawn_links(&server, self.mesh, mesh_key, tasks, shutdown);
        crate::observability::register_derp(tailnet, &server);
        let router = headway_derp::router(server);
        if let Some(sock) = self.stun {
            let sd = shutdown.clone();
            tasks.spawn(async move {
                headway_derp::serve_stun(sock, sd.cancelled_owned())
                    .await
                    .context("STUN server failed")
            });
        }
        match self.tls {
            Some((listener, cert)) => {
                let tls = cert.server_config()?;
                let sd = shutdown.clone();
                tasks.spawn(async move {
                    headway_derp::serve_tls(listener, tls, router, sd.cancelled_owned())
                        .await
                        .context("DERP TLS listener failed")
                });
                Ok(None)
            }
            None => Ok(Some(router)),
        }
    }
}
