//! The server under test, in a process of its own so that its CPU time and
//! memory can be read from `/proc/<pid>` apart from the generator's.
//!
//! By default the generator runs itself as `headway-bench serve` (which calls
//! `headway_server::serve`, as `headway serve` does); `--server-bin` runs any
//! binary with a `serve` subcommand instead, e.g. `target/release/headway`.
//! Either way the configuration comes from `HEADWAY_` environment variables.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

use crate::procstat::Process;

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerCommand {
    pub program: PathBuf,
    /// Arguments before the configuration (e.g. `serve`).
    pub args: Vec<String>,
}

impl ServerCommand {
    /// `<this executable> serve`.
    pub fn this_executable() -> anyhow::Result<Self> {
        let program =
            std::env::current_exe().context("cannot find this executable to run `serve`")?;
        Ok(Self {
            program,
            args: vec!["serve".into()],
        })
    }

    pub fn describe(&self) -> String {
        let name = self
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{name} {}", self.args.join(" "))
    }
}

/// A running server process.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub url: String,
    /// The metrics listener (`metrics_listen_addr`), on a port of its own.
    pub metrics_addr: std::net::SocketAddr,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl ServerProcess {
    /// Starts the server with its state in `data_dir` and waits until it answers.
    pub async fn spawn(command: &ServerCommand, data_dir: &Path) -> anyhow::Result<Self> {
        // Absolute: the server resolves relative paths against its data directory.
        let data_dir = &std::path::absolute(data_dir)?;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let socket = data_dir.join("headway.sock");
        let log = data_dir.join("server.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&command.program)
            .args(&command.args)
            .env("HEADWAY_DATA_DIR", data_dir)
            .env("HEADWAY_SERVER_URL", &url)
            .env("HEADWAY_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("HEADWAY_UNIX_SOCKET", &socket)
            .env("HEADWAY_METRICS_LISTEN_ADDR", metrics_addr.to_string())
            .env("HEADWAY_DERP__SERVER__STUN_LISTEN_ADDR", "127.0.0.1:0")
            .env("HEADWAY_DERP__SERVER__TLS_LISTEN_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the server {}", command.program.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = Self {
            child,
            pid,
            url,
            metrics_addr,
            socket,
            log,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited with {status} at start; see {}",
                    self.log.display()
                );
            }
            if self.socket.exists()
                && admin(&self.socket, Method::GET, "/api/v1/user", None)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the server did not answer on {} within 30 s; see {}",
                    self.socket.display(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn process(&self) -> Process {
        Process::Pid(self.pid)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Creates a user and a reusable pre-auth key through the admin API.
    pub async fn create_auth_key(&self, user: &str) -> anyhow::Result<String> {
        let created = admin(
            &self.socket,
            Method::POST,
            "/api/v1/user",
            Some(json!({ "name": user })),
        )
        .await?;
        let user_id = created["user"]["id"].clone();
        let body = json!({ "user": user_id, "reusable": true, "ephemeral": false, "aclTags": [] });
        let key = admin(&self.socket, Method::POST, "/api/v1/preauthkey", Some(body)).await?;
        key["preAuthKey"]["key"]
            .as_str()
            .map(str::to_string)
            .context("the pre-auth key answer has no preAuthKey.key")
    }

    /// Stops the server with SIGTERM (graceful), then SIGKILL after 15 s.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        // `kill` the command: sending a signal ourselves would need `unsafe`.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// A sample's value in the server's `/metrics` text, e.g.
/// `headway_map_updates_sent_total{kind="delta"}`; 0 when absent (a labelled
/// family shows no sample until it counts something).
pub async fn metric(addr: std::net::SocketAddr, sample: &str) -> anyhow::Result<f64> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to the metrics listener {addr}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::builder()
        .uri("/metrics")
        .header(header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let text = response.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&text);
    Ok(sample_value(&text, sample).unwrap_or(0.0))
}

fn sample_value(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One request to the admin REST API on the server's unix socket.
pub async fn admin(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let stream = UnixStream::connect(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!(
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{method} {path}: the answer is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_their_full_name() {
        let text = "# TYPE headway_map_updates_sent counter\n\
                    headway_map_updates_sent_total{kind=\"delta\"} 12\n\
                    headway_map_updates_sent_total{kind=\"full\"} 3\n\
                    headway_map_sessions 60\n";
        assert_eq!(
            sample_value(text, "headway_map_updates_sent_total{kind=\"delta\"}"),
            Some(12.0)
        );
        assert_eq!(sample_value(text, "headway_map_sessions"), Some(60.0));
        assert_eq!(sample_value(text, "headway_map_session"), None);
        assert_eq!(sample_value(text, "headway_nodes"), None);
    }
}
