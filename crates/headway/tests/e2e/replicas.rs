//! Several replicas in front of one PostgreSQL database (docs/ha.md): two
//! `headway serve` processes share a database the test creates and drops,
//! one Noise key and one DERP certificate, and mesh their relays; nginx (from
//! Debian's packages) balances the clients over them as an HTTP proxy that
//! passes the `/ts2021` upgrade through. Official clients homed on different
//! replicas see each other's changes, relay to each other through the two
//! meshed relays, and survive one replica being killed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::kit::*;

/// The whole-test bound for things the issue asks to happen "within 30 s".
const FAILOVER: Duration = Duration::from_secs(30);

/// nginx, installed from Debian's packages when missing (as root, as in
/// CI); panics with what to do otherwise.
fn nginx_binary() -> PathBuf {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let bin = PathBuf::from("/usr/sbin/nginx");
    INSTALL.call_once(|| {
        if bin.exists() {
            return;
        }
        let install = || {
            std::process::Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends", "nginx"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .expect("running apt-get install nginx (the test's load balancer)")
        };
        if !install().success() {
            let _ = std::process::Command::new("apt-get")
                .args(["update", "-q"])
                .status();
            assert!(install().success(), "apt-get install nginx failed");
        }
    });
    assert!(
        bin.exists(),
        "nginx is not installed: apt-get install nginx"
    );
    bin
}

/// nginx on loopback as an HTTP reverse proxy in front of the replicas,
/// configured as docs/ha.md tells operators to.
struct LoadBalancer {
    dir: PathBuf,
    port: u16,
    _child: Child,
}

impl LoadBalancer {
    async fn start(dir: &Path, port: u16, upstreams: &[u16]) -> LoadBalancer {
        let bin = nginx_binary();
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = upstreams
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n"))
            .collect();
        let d = dir.display();
        // One process (no master and workers): killing it when the test
        // ends leaves nothing behind, and it runs as this user, who owns
        // the private temporary directory.
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log {d}/access.log;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               upstream headway {{\n{servers}  }}\n\
               map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_pass http://headway;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Upgrade $http_upgrade;\n\
                   proxy_set_header Connection $connection_upgrade;\n\
                   proxy_set_header Host $http_host;\n\
                   proxy_connect_timeout 2s;\n\
                   proxy_read_timeout 1h;\n\
                   proxy_send_timeout 1h;\n\
                   proxy_buffering off;\n\
                   proxy_request_buffering off;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting nginx");
        let lb = LoadBalancer {
            dir,
            port,
            _child: child,
        };
        eventually(Duration::from_secs(20), "nginx to listen", async || {
            TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                .then_some(())
        })
        .await;
        lb
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        ["stderr.log", "error.log", "access.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "===== nginx log =====\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
    }
}

/// 32 random bytes in hex, as `openssl rand -hex 32` writes a mesh key.
fn random_hex_key() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The DERP port of the first node of the embedded region in the map the
/// client holds: the relay of the replica that sent it the map, i.e. the
/// replica the client is connected to.
async fn home_relay(node: &Node) -> Option<u16> {
    let nm = node.netmap().await;
    let port = nm["DERPMap"]["Regions"]["999"]["Nodes"][0]["DERPPort"].as_u64()?;
    u16::try_from(port).ok()
}

/// A counter from a replica's `/metrics`.
async fn metric(server: &Headway, name: &str) -> u64 {
    let addr: SocketAddr = ([127, 0, 0, 1], server.metrics_port).into();
    let raw = poke_tcp(addr, b"GET /metrics HTTP/1.0\r\nHost: metrics\r\n\r\n").await;
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {name} in the metrics of {}:\n{text}", server.url()))
}

fn policy(port: u16) -> String {
    format!(r#"{{"acls": [{{"action": "accept", "src": ["*"], "dst": ["*:{port}"]}}]}}"#)
}

async fn set_policy(server: &Headway, dir: &Path, text: &str) {
    let path = dir.join("policy.hujson");
    std::fs::write(&path, text).unwrap();
    let file = path.display().to_string();
    let (ok, out, err) = server.cli(&["policy", "set", "--file", &file]).await;
    assert!(ok, "policy set failed: {err}{out}");
}

/// Which clients are connected to which replica, by relay port.
async fn homes(nodes: &[Node]) -> BTreeMap<String, u16> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let port = eventually(
            Duration::from_secs(30),
            &format!("{} to hold a DERP map", n.name),
            async || home_relay(n).await,
        )
        .await;
        out.insert(n.name.clone(), port);
    }
    out
}

/// Makes sure both replicas hold at least one client, reconnecting a client
/// of the crowded one until the load balancer's round robin sends it to the
/// other. Returns the indexes of the clients on each replica.
///
/// A client asks for the server's key and then opens the control
/// connection: two requests, so with two replicas round robin sends every
/// control connection to the same one. A request of our own through the
/// balancer before a reconnection shifts that by one.
async fn spread(
    nodes: &mut [Node],
    lb_port: u16,
    relay_a: u16,
    relay_b: u16,
) -> (Vec<usize>, Vec<usize>) {
    for attempt in 0.. {
        let by_relay = homes(nodes).await;
        let on = |relay: u16| -> Vec<usize> {
            nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| by_relay[&n.name] == relay)
                .map(|(i, _)| i)
                .collect()
        };
        let (on_a, on_b) = (on(relay_a), on(relay_b));
        assert_eq!(
            on_a.len() + on_b.len(),
            nodes.len(),
            "clients on unknown relays: {by_relay:?}"
        );
        if !on_a.is_empty() && !on_b.is_empty() {
            eprintln!("clients by relay port (A={relay_a}, B={relay_b}): {by_relay:?}");
            return (on_a, on_b);
        }
        assert!(
            attempt < 12,
            "the clients never spread over both replicas: {by_relay:?}"
        );
        let crowded = if on_a.is_empty() { &on_b } else { &on_a };
        let node = &mut nodes[crowded[attempt % crowded.len()]];
        let lb: SocketAddr = ([127, 0, 0, 1], lb_port).into();
        poke_tcp(lb, b"GET /health HTTP/1.0\r\nHost: lb\r\n\r\n").await;
        node.restart().await;
        let node = &*node;
        eventually(
            Duration::from_secs(30),
            &format!("{} to be running again", node.name),
            async || (node.status().await["BackendState"] == "Running").then_some(()),
        )
        .await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_a_load_balancer_share_one_tailnet_and_survive_a_kill() {
    if std::env::var("HEADWAY_TEST_POSTGRES").as_deref() == Ok("off") {
        eprintln!("HEADWAY_TEST_POSTGRES=off: not run");
        return;
    }
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let db = Database::create(&format!("headway_replicas_{}", std::process::id()));

    // What the replicas share: the database, the Noise key, the DERP
    // certificate (pinned once for the region) and the mesh key. Each keeps
    // its own DERP private key (relays sharing one cannot mesh).
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let (lb_port, port_a, port_b) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let (derp_a, derp_b) = (free_tcp_port(), free_tcp_port());
    let lb_url = format!("http://127.0.0.1:{lb_port}");
    let (ignored, _svc_ignored) = greeter("a port nobody asked for").await;
    let (service, _svc) = greeter("hello from the service").await;
    let mesh_key = random_hex_key();
    let replica = |name: &'static str, port: u16, derp_port: u16| {
        let replica_dir = dir.path().join(name);
        std::fs::create_dir_all(&replica_dir).unwrap();
        let extra_yaml = format!(
            "{}noise:\n  private_key_path: {}\npolicy:\n  mode: database\n",
            db.yaml(),
            shared.join("noise_private.key").display(),
        );
        let env = vec![
            ("HEADWAY_DERP__SERVER__MESH_KEY".into(), mesh_key.clone()),
            (
                "HEADWAY_DERP__SERVER__MESH_WITH".into(),
                format!("[https://127.0.0.1:{derp_a}, https://127.0.0.1:{derp_b}]"),
            ),
            (
                "HEADWAY_DERP__SERVER__TLS_CERT_PATH".into(),
                shared.join("derp_tls_cert.pem").display().to_string(),
            ),
            (
                "HEADWAY_DERP__SERVER__TLS_KEY_PATH".into(),
                shared.join("derp_tls_key.pem").display().to_string(),
            ),
        ];
        let launch = Launch {
            port: Some(port),
            derp_port: Some(derp_port),
            server_url: Some(lb_url.clone()),
            env,
            ..Launch::default()
        };
        async move { Headway::launch(&replica_dir, ServerOpts { extra_yaml }, launch).await }
    };
    // A first: it creates the shared keys and certificate B then reads.
    let mut a = replica("replica-a", port_a, derp_a).await;
    let b = replica("replica-b", port_b, derp_b).await;
    let lb = LoadBalancer::start(dir.path(), lb_port, &[port_a, port_b]).await;
    assert_eq!(a.url(), lb.url());

    // Only the port nobody uses is open at first.
    set_policy(&a, dir.path(), &policy(ignored)).await;
    let key = a.user_with_key("alice", &["--reusable"]).await;

    // Four clients through the load balancer, every packet between them
    // through DERP. All of the modern version: 1.78 cannot pin the relays'
    // self-signed certificate (CertName pins came with 1.82), so it cannot
    // use the embedded relay at all.
    let derp_only = [("TS_DEBUG_ALWAYS_USE_DERP", "true")];
    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3", "n4"] {
        let n = Node::start(dir.path(), name, MODERN, &derp_only).await;
        n.up_ok(&a, &key).await;
        nodes.push(n);
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let others = |me: &str| -> Vec<&str> {
        names
            .iter()
            .map(String::as_str)
            .filter(|o| *o != me)
            .collect()
    };
    for n in &nodes {
        n.wait_sees_online(&others(&n.name)).await;
    }

    // A client going offline on B is seen offline by a client on A, and
    // online again when it comes back.
    let (on_a, on_b) = spread(&mut nodes, lb_port, derp_a, derp_b).await;
    nodes[on_b[0]].stop().await;
    let (x, y_name) = (&nodes[on_a[0]], nodes[on_b[0]].name.clone());
    eventually(
        Duration::from_secs(30),
        &format!("{} (on A) to see {y_name} (on B) offline", x.name),
        async || {
            x.peer(&y_name)
                .await
                .is_some_and(|p| p["Online"] == false)
                .then_some(())
        },
    )
    .await;
    nodes[on_b[0]].restart().await;
    nodes[on_a[0]].wait_sees_online(&[&y_name]).await;

    // A policy change through replica A reaches clients on both replicas:
    // the receiving client enforces the filter, so each direction needs the
    // change on the receiver's replica.
    let (on_a, on_b) = spread(&mut nodes, lb_port, derp_a, derp_b).await;
    let (x, y) = (&nodes[on_a[0]], &nodes[on_b[0]]);
    let (x_ip, y_ip) = (x.ipv4().await, y.ipv4().await);
    x.assert_tcp_blocked(y_ip, service).await;
    let changed = Instant::now();
    set_policy(&a, dir.path(), &policy(service)).await;
    // The new packet filter in the netmap of the client on B (measured, not
    // asserted: the issue's "within a second" is printed for the record).
    let allowed = format!("\"First\":{service}");
    eventually(
        Duration::from_secs(30),
        "the new packet filter to reach a client on B",
        async || {
            let nm = y.netmap().await;
            nm["PacketFilter"]
                .to_string()
                .contains(&allowed)
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "policy set through A, in the netmap of a client on B after {:?}",
        changed.elapsed()
    );
    assert_eq!(
        x.eventually_tcp(y_ip, service).await,
        "hello from the service"
    );
    assert_eq!(
        y.eventually_tcp(x_ip, service).await,
        "hello from the service"
    );

    // Relay through DERP between clients connected to different replicas:
    // their home relays differ, so the packets cross the mesh.
    let forwarded = async || {
        metric(&a, "headway_derp_mesh_forwarded_out_packets_total").await
            + metric(&b, "headway_derp_mesh_forwarded_out_packets_total").await
    };
    let before = forwarded().await;
    let pong = x.ping(&y_ip.to_string()).await;
    assert!(pong.contains("via DERP"), "expected a relayed pong: {pong}");
    let pong = y.ping(&x_ip.to_string()).await;
    assert!(pong.contains("via DERP"), "expected a relayed pong: {pong}");
    let after = forwarded().await;
    assert!(
        after > before,
        "no packet crossed the DERP mesh ({before} then {after})"
    );

    // Replica A dies without a word. Its clients come back through the load
    // balancer to B, and everyone still reaches everyone.
    let moved: Vec<String> = homes(&nodes)
        .await
        .into_iter()
        .filter(|(_, p)| *p == derp_a)
        .map(|(n, _)| n)
        .collect();
    assert!(!moved.is_empty());
    let killed = Instant::now();
    a.kill().await;
    for name in &moved {
        let n = nodes.iter().find(|n| &n.name == name).unwrap();
        eventually(
            FAILOVER,
            &format!("{name} to come back through replica B"),
            async || (home_relay(n).await == Some(derp_b)).then_some(()),
        )
        .await;
    }
    eprintln!(
        "clients of the killed replica back on B after {:?}",
        killed.elapsed()
    );
    for n in &nodes {
        n.wait_sees_online(&others(&n.name)).await;
    }
    let ips: Vec<(String, std::net::Ipv4Addr)> = {
        let mut v = Vec::new();
        for n in &nodes {
            v.push((n.name.clone(), n.ipv4().await));
        }
        v
    };
    for n in &nodes {
        for (name, ip) in &ips {
            if *name != n.name {
                n.ping(&ip.to_string()).await;
                assert_eq!(
                    n.eventually_tcp(*ip, service).await,
                    "hello from the service"
                );
            }
        }
    }
    // B holds every session now and says so.
    let listed = b.nodes().await;
    assert_eq!(listed.len(), nodes.len(), "{listed:?}");
    assert!(
        listed.iter().all(|n| n["online"] == true),
        "every node online on B: {listed:?}"
    );
    drop(lb);
}
