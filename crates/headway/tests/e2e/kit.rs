//! The end-to-end test kit: a real `headway` server process, real official
//! Tailscale clients (`tailscaled` in userspace-networking mode, each with its
//! own socket, state directory and SOCKS5 port), and helpers to drive and
//! observe them. Everything listens on 127.0.0.1 only.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

pub const MODERN: &str = "1.96.4";
pub const OLD: &str = "1.78.1";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// The official client binaries of `version`, installed on first use by the
/// project's own fetch script (pinned and checksummed).
pub fn tailscale_dir(version: &str) -> PathBuf {
    let root = workspace_root();
    let base = std::env::var_os("HEADWAY_TAILSCALE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/tailscale"));
    let base = if base.is_absolute() {
        base
    } else {
        root.join(base)
    };
    let dir = base.join(version);
    if !dir.join("tailscaled").exists() {
        let status = std::process::Command::new(root.join("scripts/fetch-tailscale"))
            .arg(version)
            .arg(&base)
            .current_dir(&root)
            .status()
            .expect("running scripts/fetch-tailscale");
        assert!(status.success(), "scripts/fetch-tailscale {version} failed");
    }
    dir
}

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T>(
    timeout: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- PostgreSQL --------------------------------------------------------------

/// The PostgreSQL server the tests use (`HEADWAY_TEST_POSTGRES_URL`).
pub fn postgres_url() -> url::Url {
    url::Url::parse(
        &std::env::var("HEADWAY_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .unwrap()
}

pub fn psql(sql: &str) {
    let url = postgres_url();
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

/// A database of its own for the test, dropped at the end (even on panic).
pub struct Database {
    pub name: String,
}

impl Database {
    pub fn create(name: &str) -> Database {
        psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        psql(&format!("CREATE DATABASE {name}"));
        Database { name: name.into() }
    }

    /// The `database:` section of a replica's config.
    pub fn yaml(&self) -> String {
        let url = postgres_url();
        format!(
            "database:\n  type: postgres\n  postgres:\n    host: {}\n    port: {}\n    name: {}\n    user: {}\n    pass: \"{}\"\n",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432),
            self.name,
            if url.username().is_empty() {
                "postgres"
            } else {
                url.username()
            },
            url.password().unwrap_or(""),
        )
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let url = postgres_url();
        let _ = std::process::Command::new("psql")
            .args([
                url.as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// With `HEADWAY_E2E_DATABASE=postgres`, every test server whose test does
/// not choose its own database gets a fresh PostgreSQL database (created
/// here, dropped with the server): the same tests, on the other backend.
fn e2e_on_postgres() -> bool {
    std::env::var("HEADWAY_E2E_DATABASE").as_deref() == Ok("postgres")
}

/// `headway` (server or CLI) without the test harness's own `HEADWAY_*`
/// variables (clients' directory, database choice), which the server would
/// read as settings and warn about; a test passes settings explicitly.
pub fn headway_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_headway"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HEADWAY_") {
            command.env_remove(name);
        }
    }
    command
}

/// Options for a test server.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// Extra YAML appended to the generated config (top-level keys).
    pub extra_yaml: String,
}

/// How a test server is reached and run, beyond its config: the scheme and
/// host of `server_url` (https for TLS tests) and extra environment.
#[derive(Debug, Clone)]
pub struct Launch {
    pub scheme: &'static str,
    pub host: String,
    pub env: Vec<(String, String)>,
    /// The main listener's port (`None`: a free one).
    pub port: Option<u16>,
    /// The embedded DERP relay's TLS port (`None`: a free one).
    pub derp_port: Option<u16>,
    /// `server_url` when clients reach the server through something else
    /// (a load balancer in front of several replicas); `None`: this
    /// server's own scheme, host and port.
    pub server_url: Option<String>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch {
            scheme: "http",
            host: "127.0.0.1".into(),
            env: Vec::new(),
            port: None,
            derp_port: None,
            server_url: None,
        }
    }
}

/// A `headway serve` process with its own data directory and ports.
pub struct Headway {
    pub dir: PathBuf,
    launch: Launch,
    pub config: PathBuf,
    pub port: u16,
    pub derp_port: u16,
    pub stun_port: u16,
    /// The remote gRPC API's port (`grpc_listen_addr`); it listens only with
    /// TLS or `grpc_allow_insecure`, but never on the shared default port.
    pub grpc_port: u16,
    /// Where `/metrics`, `/health` and `/ready` answer.
    pub metrics_port: u16,
    pub log: PathBuf,
    child: Option<Child>,
    /// The PostgreSQL database of this server, in PostgreSQL mode.
    _database: Option<Database>,
}

impl Headway {
    /// The URL clients use (`server_url`).
    pub fn url(&self) -> String {
        match &self.launch.server_url {
            Some(url) => url.clone(),
            None => format!(
                "{}://{}:{}",
                self.launch.scheme, self.launch.host, self.port
            ),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("headway.sock")
    }

    pub async fn start(dir: &Path, opts: ServerOpts) -> Headway {
        Self::launch(dir, opts, Launch::default()).await
    }

    /// [`Headway::start`] with another scheme, host or environment.
    pub async fn launch(dir: &Path, opts: ServerOpts, launch: Launch) -> Headway {
        let port = launch.port.unwrap_or_else(free_tcp_port);
        let derp_port = launch.derp_port.unwrap_or_else(free_tcp_port);
        let stun_port = free_udp_port();
        let grpc_port = free_tcp_port();
        let metrics_port = free_tcp_port();
        let config = dir.join("config.yaml");
        let database = (e2e_on_postgres() && !opts.extra_yaml.contains("database:"))
            .then(|| Database::create(&format!("headway_e2e_{}_{port}", std::process::id())));
        let server_url = launch
            .server_url
            .clone()
            .unwrap_or_else(|| format!("{}://{}:{port}", launch.scheme, launch.host));
        let yaml = format!(
            "server_url: {server_url}\n\
             listen_addr: 127.0.0.1:{port}\n\
             metrics_listen_addr: 127.0.0.1:{metrics_port}\n\
             grpc_listen_addr: 127.0.0.1:{grpc_port}\n\
             data_dir: {data}\n\
             unix_socket: {sock}\n\
             derp:\n  server:\n    enabled: true\n    stun_listen_addr: 127.0.0.1:{stun_port}\n    tls_listen_addr: 127.0.0.1:{derp_port}\n\
             log:\n  level: debug\n\
             {database}{extra}\n",
            data = dir.join("data").display(),
            sock = dir.join("headway.sock").display(),
            database = database.as_ref().map(Database::yaml).unwrap_or_default(),
            extra = opts.extra_yaml,
        );
        std::fs::write(&config, yaml).unwrap();
        let mut h = Headway {
            dir: dir.to_path_buf(),
            launch,
            config,
            port,
            derp_port,
            stun_port,
            grpc_port,
            metrics_port,
            log: dir.join("headway.log"),
            child: None,
            _database: database,
        };
        h.spawn().await;
        h
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = headway_command()
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("RUST_LOG", "info,headway_server=debug,headway_state=debug")
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting headway serve");
        self.child = Some(child);
        let url = format!("127.0.0.1:{}", self.port);
        let sock = self.socket();
        eventually(Duration::from_secs(30), "headway to listen", async || {
            (TcpStream::connect(&url).await.is_ok() && sock.exists()).then_some(())
        })
        .await;
    }

    /// Stops the server (SIGTERM, then waits).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = child.kill().await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Kills the server without warning (SIGKILL): no goodbye, no flush,
    /// connections just drop, as when its host dies.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("SIGKILL to headway serve");
        }
    }

    /// Runs `headway --config <cfg> <args>`; returns (success, stdout, stderr).
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let out = headway_command()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .await
            .expect("running the headway CLI");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a CLI command with `-o json` and parses its output; panics on failure.
    pub async fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let (ok, out, err) = self.cli(&a).await;
        assert!(ok, "headway {args:?} failed: {err}{out}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("headway {args:?}: not JSON ({e}): {out}"))
    }

    /// Creates a user and a pre-auth key for it; returns the key.
    pub async fn user_with_key(&self, user: &str, flags: &[&str]) -> String {
        let _ = self.cli(&["users", "create", user]).await;
        let mut args = vec![
            "preauthkeys",
            "create",
            "--user",
            user,
            "--expiration",
            "1h",
        ];
        args.extend(flags);
        let v = self.cli_json(&args).await;
        v["key"]
            .as_str()
            .unwrap_or_else(|| panic!("no key in {v}"))
            .to_string()
    }

    pub async fn nodes(&self) -> Vec<Value> {
        let v = self.cli_json(&["nodes", "list"]).await;
        v.as_array()
            .cloned()
            .unwrap_or_else(|| v["nodes"].as_array().cloned().unwrap_or_default())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Headway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== headway log ({}) =====\n{}",
                self.log.display(),
                tail(&self.log_text(), 200)
            );
        }
    }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// One official client: a `tailscaled` and its `tailscale` CLI.
pub struct Node {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    pub socks_port: u16,
    bin: PathBuf,
    env: Vec<(String, String)>,
    daemon: Option<Child>,
}

impl Node {
    /// Starts `tailscaled` for a node called `name`.
    pub async fn start(base: &Path, name: &str, version: &str, env: &[(&str, &str)]) -> Node {
        let bin = tailscale_dir(version);
        let dir = base.join(format!("node-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = Node {
            name: name.to_string(),
            version: version.to_string(),
            dir,
            socks_port: free_tcp_port(),
            bin,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            daemon: None,
        };
        n.spawn().await;
        n
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.join("tailscaled.sock")
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tailscaled.log"))
            .unwrap();
        let mut cmd = Command::new(self.bin.join("tailscaled"));
        cmd.arg("--tun=userspace-networking")
            .arg("--no-logs-no-support")
            .arg(format!("--socket={}", self.sock().display()))
            .arg(format!("--statedir={}", self.dir.join("state").display()))
            .arg("--port=0")
            .arg(format!("--socks5-server=127.0.0.1:{}", self.socks_port))
            .env("TS_NO_LOGS_NO_SUPPORT", "true")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.daemon = Some(cmd.spawn().expect("starting tailscaled"));
        let sock = self.sock();
        eventually(Duration::from_secs(20), "tailscaled socket", async || {
            sock.exists().then_some(())
        })
        .await;
    }

    /// Stops tailscaled (keeps its state directory).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status();
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            let _ = child.kill().await;
        }
        let _ = std::fs::remove_file(self.sock());
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to tailscaled. A stopped
    /// tailscaled keeps its connections open but answers nothing.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .daemon
            .as_ref()
            .and_then(|c| c.id())
            .expect("tailscaled is running");
        let ok = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Runs the `tailscale` CLI against this node.
    pub async fn ts(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(self.bin.join("tailscale"))
            .arg(format!("--socket={}", self.sock().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("running tailscale");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// `tailscale up` with an auth key against `server`.
    pub async fn up(&self, server: &Headway, authkey: &str, extra: &[&str]) -> (bool, String) {
        let login = format!("--login-server={}", server.url());
        let key = format!("--authkey={authkey}");
        let host = format!("--hostname={}", self.name);
        let mut args = vec!["up", login.as_str(), key.as_str(), host.as_str()];
        if !extra.iter().any(|a| a.starts_with("--timeout")) {
            args.push("--timeout=60s");
        }
        args.extend(extra);
        self.ts(&args).await
    }

    pub async fn up_ok(&self, server: &Headway, authkey: &str) {
        let (ok, out) = self.up(server, authkey, &[]).await;
        assert!(ok, "tailscale up on {} failed: {out}", self.name);
    }

    pub async fn status(&self) -> Value {
        let (ok, out) = self.ts(&["status", "--json"]).await;
        assert!(ok, "tailscale status on {}: {out}", self.name);
        serde_json::from_str(&out).unwrap_or(Value::Null)
    }

    pub async fn ipv4(&self) -> Ipv4Addr {
        let s = self.status().await;
        s["Self"]["TailscaleIPs"]
            .as_array()
            .and_then(|ips| ips.iter().filter_map(|ip| ip.as_str()?.parse().ok()).next())
            .unwrap_or_else(|| panic!("{} has no IPv4 yet: {s}", self.name))
    }

    /// The peers in this node's status, by host name.
    pub async fn peers(&self) -> Vec<Value> {
        let s = self.status().await;
        s["Peer"]
            .as_object()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub async fn peer(&self, host: &str) -> Option<Value> {
        self.peers()
            .await
            .into_iter()
            .find(|p| p["HostName"] == host)
    }

    /// Waits until this node is Running and sees each of `others` online.
    pub async fn wait_sees_online(&self, others: &[&str]) {
        eventually(
            Duration::from_secs(30),
            &format!("{} to see {others:?} online", self.name),
            async || {
                let s = self.status().await;
                if s["BackendState"] != "Running" {
                    return None;
                }
                let peers: Vec<Value> = s["Peer"]
                    .as_object()
                    .map(|m| m.values().cloned().collect())
                    .unwrap_or_default();
                others
                    .iter()
                    .all(|o| {
                        peers
                            .iter()
                            .any(|p| p["HostName"] == *o && p["Online"] == true)
                    })
                    .then_some(())
            },
        )
        .await;
    }

    /// `tailscale ping -c 1` until a pong (disco path set-up can take a moment).
    pub async fn ping(&self, target: &str) -> String {
        eventually(
            Duration::from_secs(30),
            &format!("{} to ping {target}", self.name),
            async || {
                // Relayed pongs count: `tailscale ping` exits non-zero when
                // no direct path came up, even though DERP answered.
                let (_, out) = self.ts(&["ping", "-c", "2", "--timeout=3s", target]).await;
                out.contains("pong from").then_some(out)
            },
        )
        .await
    }

    /// Opens TCP to `ip:port` through this node's SOCKS5 server and reads
    /// what the far end says first.
    pub async fn tcp_via_socks(&self, ip: Ipv4Addr, port: u16) -> std::io::Result<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.socks_port)).await?;
        s.write_all(&[5, 1, 0]).await?;
        let mut hello = [0u8; 2];
        s.read_exact(&mut hello).await?;
        if hello != [5, 0] {
            return Err(std::io::Error::other(format!(
                "SOCKS5 greeting refused: {hello:?}"
            )));
        }
        let mut req = vec![5, 1, 0, 1];
        req.extend(ip.octets());
        req.extend(port.to_be_bytes());
        s.write_all(&req).await?;
        let mut reply = [0u8; 10];
        s.read_exact(&mut reply).await?;
        if reply[1] != 0 {
            return Err(std::io::Error::other(format!(
                "SOCKS5 CONNECT to {ip}:{port} failed with code {}",
                reply[1]
            )));
        }
        let mut buf = vec![0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no greeting from the far end within 10 s"))??;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("tailscaled.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== tailscaled {} ({}) =====\n{}",
                self.name,
                self.version,
                tail(&self.log_text(), 60)
            );
        }
    }
}

/// A TCP service on the host's loopback that greets with `banner`: what a
/// node forwards tailnet connections to.
pub async fn greeter(banner: &str) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let banner = banner.to_string();
    let h = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let b = banner.clone();
            tokio::spawn(async move {
                let _ = s.write_all(b.as_bytes()).await;
            });
        }
    });
    (port, h)
}

/// Sends `bytes` to a TCP address and returns what came back (if anything).
pub async fn poke_tcp(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Vec::new();
    };
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    out
}

/// End-to-end tests each run a server and several clients; two at a time
/// keep a 2-core machine responsive (each test takes a slot).
pub async fn slot() -> tokio::sync::SemaphorePermit<'static> {
    static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    SLOTS.acquire().await.expect("test slots never close")
}

impl Node {
    /// Asserts that TCP from this node to `ip:port` does not get through
    /// (refused by the far node's packet filter, or no peer to route to).
    pub async fn assert_tcp_blocked(&self, ip: Ipv4Addr, port: u16) {
        match tokio::time::timeout(Duration::from_secs(6), self.tcp_via_socks(ip, port)).await {
            Err(_) | Ok(Err(_)) => {}
            Ok(Ok(greeting)) => panic!(
                "{} reached {ip}:{port} (got {greeting:?}) but the policy forbids it",
                self.name
            ),
        }
    }

    /// Waits until TCP to `ip:port` works and returns the greeting (policy
    /// changes reach clients asynchronously).
    pub async fn eventually_tcp(&self, ip: Ipv4Addr, port: u16) -> String {
        eventually(
            Duration::from_secs(20),
            &format!("{} to reach {ip}:{port}", self.name),
            async || {
                tokio::time::timeout(Duration::from_secs(5), self.tcp_via_socks(ip, port))
                    .await
                    .ok()?
                    .ok()
            },
        )
        .await
    }

    /// The client's network map (`tailscale debug netmap`).
    pub async fn netmap(&self) -> Value {
        let (ok, out) = self.ts(&["debug", "netmap"]).await;
        assert!(ok, "{out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("netmap is not JSON ({e}): {out}"))
    }
}

// --- `tailscale up` without a key (interactive and OIDC logins) ------------

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// `tailscale up` without a key, running until the login completes.
pub struct Up {
    child: Child,
    output: Arc<Mutex<String>>,
}

pub fn collect(stream: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut out = into.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
}

impl Up {
    pub async fn start(node: &Node, server: &Headway) -> Up {
        let mut child = Command::new(tailscale_dir(&node.version).join("tailscale"))
            .arg(format!("--socket={}", node.sock().display()))
            .args([
                "up",
                &format!("--login-server={}", server.url()),
                &format!("--hostname={}", node.name),
                "--timeout=180s",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("running tailscale up");
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), output.clone());
        collect(child.stderr.take().unwrap(), output.clone());
        Up { child, output }
    }

    /// The AuthURL the client prints.
    pub async fn auth_url(&self, server: &Headway) -> String {
        let prefix = format!("{}/register/", server.url());
        eventually(
            Duration::from_secs(30),
            "tailscale up to print an AuthURL",
            async || {
                self.output
                    .lock()
                    .unwrap()
                    .split_whitespace()
                    .find(|w| w.starts_with(&prefix))
                    .map(str::to_string)
            },
        )
        .await
    }

    /// Waits for `tailscale up` to finish; returns (success, output).
    pub async fn finish(mut self) -> (bool, String) {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("tailscale up did not finish within 60 s of the login")
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let out = self.output.lock().unwrap().clone();
        (status.success(), out)
    }

    pub fn still_waiting(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
