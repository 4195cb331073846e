//! Headway's wiring: binds the listeners, loads the tailnet from storage,
//! and connects the control protocol, the embedded DERP relay and STUN
//! server, the admin API on the local socket, and the background jobs.
//!
//! Nothing here decides anything about the tailnet: that is `headway-state`.

mod acme;
mod audit_log;
mod console;
pub mod control;
mod derp_mesh;
mod derpmap;
mod embedded_derp;
mod jobs;
mod keys;
pub mod listener;
mod observability;
mod oidc;
mod register_page;
mod replicas;
mod settings;
pub mod tls;
mod watched_files;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::Router;
use headway_config::{Config, DatabaseBackend, Loaded, TlsConfig};
use headway_state::Tailnet;
use headway_state::clock::SystemClock;
use headway_state::store::Store;
use headway_store::{PostgresOptions, SqlStore, SqliteKey, SqliteOptions};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use control::{Control, Timing};
use embedded_derp::EmbeddedDerp;

/// Runs the server until SIGINT/SIGTERM: what `headway serve` does.
pub async fn serve(loaded: Loaded) -> anyhow::Result<()> {
    for w in &loaded.warnings {
        tracing::warn!("config: {w}");
    }
    tracing::info!("configuration: {}", loaded.source_description);
    let shutdown = CancellationToken::new();
    let server = Server::start(loaded.config, shutdown.clone()).await?;
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    server.wait().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// A running server. Listeners are bound when `start` returns.
pub struct Server {
    pub tailnet: Arc<Tailnet>,
    pub listen_addr: SocketAddr,
    pub derp_tls_addr: Option<SocketAddr>,
    pub stun_addr: Option<SocketAddr>,
    pub unix_socket: PathBuf,
    /// Where the remote gRPC API listens (`grpc_listen_addr`), when it does.
    pub grpc_addr: Option<SocketAddr>,
    /// Where `/metrics`, `/ready` and `/debug` answer (`metrics_listen_addr`).
    pub metrics_addr: Option<SocketAddr>,
    tasks: JoinSet<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

/// Opens (and migrates) the database the configuration names; also used
/// by the CLI's offline commands (import, backup).
pub async fn open_sql_store(config: &Config) -> anyhow::Result<SqlStore> {
    Ok(match &config.database.backend {
        DatabaseBackend::Sqlite(s) => SqlStore::open_sqlite_with(&sqlite_options(s)).await?,
        DatabaseBackend::Postgres(p) => {
            SqlStore::open_postgres(&PostgresOptions {
                host: p.host.clone(),
                port: p.port,
                database: p.name.clone(),
                user: p.user.clone(),
                password: p.pass.as_ref().map(|s| s.expose().to_string()),
                ssl_mode: p.ssl.as_str().to_string(),
                ssl_root_cert: p.ssl_root_cert.clone(),
                max_connections: p.max_open_conns.max(2),
            })
            .await?
        }
    })
}

/// The store's view of `database.sqlite.*`.
pub fn sqlite_options(s: &headway_config::SqliteConfig) -> SqliteOptions {
    SqliteOptions {
        path: s.path.clone(),
        write_ahead_log: s.write_ahead_log,
        wal_autocheckpoint: s.wal_autocheckpoint,
        key: s.key.as_ref().map(|k| SqliteKey::new(k.expose())),
    }
}

async fn bind_tcp(addr: SocketAddr, what: &str, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for the {what} ({key}); is another server using it?")
    })
}

impl Server {
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        Self::start_with(config, Timing::default(), shutdown).await
    }

    /// [`Server::start`] with other map-stream timers (tests shorten them).
    pub async fn start_with(
        config: Config,
        timing: Timing,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let mut sql = open_sql_store(&config).await?;
        // On PostgreSQL every server is a replica (one or several).
        let cluster = sql.join_cluster(replicas::new_replica_id());
        let store: Arc<dyn Store> = Arc::new(sql);
        tracing::info!(database = %store.describe(), "database ready");
        let noise_key = keys::load_or_create(&config.noise.private_key_path, "Noise private key")?;

        let listener = bind_tcp(config.listen_addr, "control server", "listen_addr").await?;
        let listen_addr = listener.local_addr()?;
        let mut tasks = JoinSet::new();

        // The embedded DERP region names the ports, so bind them first.
        let derp = if config.derp.server.enabled {
            Some(EmbeddedDerp::bind(&config).await?)
        } else {
            None
        };
        let mut derp_map = headway_proto::tailcfg::DerpMap::default();
        if let Some(d) = derp
            .as_ref()
            .filter(|_| config.derp.server.automatically_add_embedded_derp_region)
        {
            derp_map
                .regions
                .insert(d.region.region_id, d.region.clone());
        }
        for p in &config.derp.paths {
            derpmap::merge(&mut derp_map, derpmap::load_file(p)?);
        }
        for url in &config.derp.urls {
            match derpmap::fetch(url).await {
                Ok(m) => derpmap::merge(&mut derp_map, m),
                Err(e) => tracing::warn!(
                    "derp.urls: could not fetch {url}: {e:#}; continuing without its regions"
                ),
            }
        }
        if derp_map.regions.is_empty() {
            tracing::warn!(
                "the DERP map is empty: clients behind NAT cannot reach each other and may not reach Running; enable derp.server or set derp.urls/derp.paths"
            );
        }

        let settings = settings::from_config(&config, derp_map);
        let tailnet = Tailnet::load(store, Arc::new(SystemClock), settings).await?;
        tracing::info!(
            nodes = tailnet.nodes().len(),
            users = tailnet.users().len(),
            "tailnet loaded"
        );
        if let (headway_config::PolicyMode::File, Some(path)) =
            (config.policy.mode, &config.policy.path)
        {
            watched_files::follow_policy(
                &mut tasks,
                tailnet.clone(),
                path.clone(),
                shutdown.clone(),
            )
            .await?;
        }
        if let Some(path) = &config.dns.extra_records_path {
            watched_files::follow_extra_records(
                &mut tasks,
                tailnet.clone(),
                path.clone(),
                shutdown.clone(),
            )
            .await?;
        }

        let mut control = Control::new(tailnet.clone(), noise_key, shutdown.clone());
        control.timing = timing;
        // With OIDC the AuthURL sends people to the identity provider;
        // without it, it shows how an administrator approves the machine.
        let oidc = match &config.oidc {
            Some(c) => Some(oidc::Oidc::start(c, &config.server_url, tailnet.clone()).await?),
            None => None,
        };
        let pages = match &oidc {
            Some(o) => o.clone().router(),
            None => Router::new()
                .route(
                    "/register/{auth_id}",
                    axum::routing::get(register_page::register_page),
                )
                .with_state(tailnet.clone()),
        };
        let mut app: Router = control
            .router()
            .route("/health", {
                let t = tailnet.clone();
                axum::routing::get(move || observability::headscale_health(t.clone()))
            })
            .merge(pages);
        // The admin API on the network: REST v1 and the v2 subset, each
        // call with a key (the OpenAPI document and docs page are public).
        let guard = headway_api::Guard::new(tailnet.clone());
        app = app.merge(headway_api::network_router(tailnet.clone(), guard.clone()));
        // The web console at /admin, over that same API door.
        app = app.merge(console::router(
            &config,
            &tailnet,
            guard.clone(),
            oidc.as_ref(),
        ));
        let (derp_tls_addr, stun_addr) = match derp {
            Some(d) => {
                let addrs = (d.tls_addr, d.stun_addr);
                if let Some(router) = d.spawn(&config, &tailnet, &mut tasks, &shutdown)? {
                    app = app.merge(router);
                }
                addrs
            }
            None => (None, None),
        };
        let app = app.layer(axum::middleware::from_fn(observability::request_id));
        // The main listener's certificate source (none: plain HTTP).
        let main_tls = match &config.tls {
            None => None,
            Some(TlsConfig::Files {
                cert_path,
                key_path,
            }) => {
                let files = tls::FileCert::load(cert_path, key_path)?;
                files.follow(&mut tasks, shutdown.clone());
                Some(tls::server_config(files, &[])?)
            }
            Some(TlsConfig::LetsEncrypt(le)) => {
                let acme = acme::Acme::new(le, tailnet.clone())?;
                if le.challenge_type == headway_config::AcmeChallenge::Http01 {
                    let addr = acme::parse_listen(&le.listen)?;
                    let l =
                        bind_tcp(addr, "ACME HTTP-01 challenges", "tls_letsencrypt_listen").await?;
                    let router = acme.http01_router();
                    let sd = shutdown.clone();
                    tasks.spawn(async move {
                        listener::serve(l, None, router, listener::Limits::default(), sd)
                            .await
                            .context("tls_letsencrypt_listen failed")
                    });
                }
                acme.spawn_renewal(&mut tasks, shutdown.clone());
                Some(tls::server_config(acme, &[acme::ACME_TLS_ALPN])?)
            }
        };
        {
            let tls = main_tls.clone();
            let sd = shutdown.clone();
            tasks.spawn(async move {
                listener::serve(listener, tls, app, listener::Limits::default(), sd)
                    .await
                    .context("control listener failed")
            });
        }

        let unix_socket = config.unix_socket.clone();
        let api = bind_unix(&unix_socket, config.unix_socket_permission)?;
        {
            let router = headway_api::router(tailnet.clone())
                .layer(axum::middleware::from_fn(observability::request_id));
            let sd = shutdown.clone();
            tasks.spawn(async move {
                axum::serve(api, router)
                    .with_graceful_shutdown(sd.cancelled_owned())
                    .await
                    .context("admin socket failed")
            });
        }

        let grpc_addr = match config.grpc_listen_addr {
            Some(addr) => {
                let tls = main_tls.as_ref().map(|t| headway_api::listen::grpc_tls(t));
                if tls.is_some() || config.grpc_allow_insecure {
                    let listener = bind_tcp(addr, "gRPC API", "grpc_listen_addr").await?;
                    if tls.is_none() {
                        tracing::warn!(%addr, "the gRPC API listens without TLS (grpc_allow_insecure): API keys cross the network in the clear");
                    }
                    let router = headway_api::grpc_network_router(tailnet.clone(), guard);
                    let sd = shutdown.clone();
                    let bound = listener.local_addr()?;
                    tasks.spawn(async move {
                        headway_api::listen::serve(listener, tls, router, sd)
                            .await
                            .context("gRPC listener failed")
                    });
                    Some(bound)
                } else {
                    tracing::info!(
                        "grpc_listen_addr: the remote gRPC API is off: it needs TLS (tls_cert_path) or grpc_allow_insecure: true; gRPC is served on the unix socket"
                    );
                    None
                }
            }
            None => None,
        };

        let metrics_addr = match config.metrics_listen_addr {
            Some(addr) => Some(
                observability::spawn_metrics_listener(
                    addr,
                    tailnet.clone(),
                    &mut tasks,
                    shutdown.clone(),
                )
                .await?,
            ),
            None => None,
        };
        let singleton = match cluster {
            Some(c) => replicas::spawn(&mut tasks, tailnet.clone(), c, shutdown.clone()),
            None => replicas::Singleton::default(),
        };
        audit_log::start(
            &config.audit,
            &tailnet,
            singleton.clone(),
            &mut tasks,
            shutdown.clone(),
        )?;
        jobs::spawn(&mut tasks, tailnet.clone(), singleton, shutdown.clone());
        if let Some(interval) = config.node.routes.ha.probe_interval {
            // Each replica probes the routers connected to it.
            jobs::spawn_route_probes(
                &mut tasks,
                tailnet.clone(),
                interval,
                config.node.routes.ha.probe_timeout,
                shutdown.clone(),
            );
        }
        tracing::info!(%listen_addr, server_url = %config.server_url, derp_tls = ?derp_tls_addr, stun = ?stun_addr, socket = %unix_socket.display(), grpc = ?grpc_addr, "Headway is serving");
        Ok(Server {
            tailnet,
            listen_addr,
            derp_tls_addr,
            stun_addr,
            unix_socket,
            grpc_addr,
            metrics_addr,
            tasks,
            shutdown,
        })
    }

    /// Waits until shutdown (or until a listener fails, which stops the rest).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(res) = self.tasks.join_next().await {
            let res = res.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = res {
                if first_error.is_none() {
                    tracing::error!("{e:#}");
                    first_error = Some(e);
                }
                self.shutdown.cancel();
            }
        }
        if let Err(e) = self.tailnet.flush_soft_state().await {
            tracing::warn!("could not save the last node state at shutdown: {e}");
        }
        let _ = std::fs::remove_file(&self.unix_socket);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

fn bind_unix(path: &std::path::Path, mode: u32) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for unix_socket", dir.display()))?;
    }
    if path.exists() {
        // A live server answers on it; a stale file from a crash does not.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "unix_socket {} is in use: is another headway server running?",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let l = UnixListener::bind(path)
        .with_context(|| format!("cannot create unix_socket {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting permissions of {}", path.display()))?;
    }
    Ok(l)
}
