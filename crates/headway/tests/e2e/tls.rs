//! TLS on the main listener: official clients join over `https://` with a
//! certificate from files (their CA trusted through `SSL_CERT_FILE`), a
//! replaced certificate is served without a restart, and ACME obtains a
//! certificate from a real RFC 8555 server on loopback (pebble, Let's
//! Encrypt's test CA, installed from Debian's packages on first use) over
//! TLS-ALPN-01 (the HTTP-01 end-to-end run is not in yet).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::kit::*;

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for `names` and its key, as PEM.
    fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write_key(path: &Path, pem: &str) {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    std::fs::write(path, pem).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// `curl` over HTTPS trusting only `ca`; whether it got a 2xx.
async fn https_ok(url: &str, ca: &Path) -> bool {
    Command::new("curl")
        .args(["-sf", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_client_joins_over_https_and_a_replaced_certificate_is_served() {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let (first_ca, second_ca) = (Ca::new("first test CA"), Ca::new("second test CA"));
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let (c, k) = first_ca.leaf(&["127.0.0.1", "localhost"]);
    std::fs::write(&cert, c).unwrap();
    write_key(&key, &k);
    let bundle = dir.path().join("trusted.pem");
    std::fs::write(&bundle, first_ca.pem()).unwrap();

    let server = Headway::launch(
        dir.path(),
        ServerOpts {
            extra_yaml: format!(
                "tls_cert_path: {}\ntls_key_path: {}\n",
                cert.display(),
                key.display()
            ),
        },
        Launch {
            scheme: "https",
            ..Launch::default()
        },
    )
    .await;
    assert!(server.url().starts_with("https://"));
    let authkey = server.user_with_key("alice", &["--reusable"]).await;
    let ssl = bundle.display().to_string();
    let mut node = Node::start(dir.path(), "tls-one", MODERN, &[("SSL_CERT_FILE", &ssl)]).await;
    node.up_ok(&server, &authkey).await;
    eventually(
        Duration::from_secs(30),
        "the node to be Running",
        async || (node.status().await["BackendState"] == "Running").then_some(()),
    )
    .await;
    assert_eq!(server.nodes().await.len(), 1);

    // Plain HTTP is not spoken on a TLS listener.
    let plain = format!("http://127.0.0.1:{}/health", server.port);
    let plain_ok = Command::new("curl")
        .args(["-sf", "--max-time", "5", &plain])
        .status()
        .await
        .unwrap()
        .success();
    assert!(!plain_ok, "the TLS listener answered plain HTTP");

    // Replace the certificate with one from another CA: new connections get it.
    let second_pem = dir.path().join("second-ca.pem");
    std::fs::write(&second_pem, second_ca.pem()).unwrap();
    let (c, k) = second_ca.leaf(&["127.0.0.1", "localhost"]);
    write_key(&key, &k);
    std::fs::write(&cert, c).unwrap();
    let health = format!("{}/health", server.url());
    eventually(
        Duration::from_secs(20),
        "the replaced certificate to be served",
        async || https_ok(&health, &second_pem).await.then_some(()),
    )
    .await;
    assert!(server.log_text().contains("TLS certificate reloaded"));

    // The client, now trusting only the second CA, reconnects and works.
    std::fs::write(&bundle, second_ca.pem()).unwrap();
    node.restart().await;
    eventually(
        Duration::from_secs(45),
        "the node to be Running again with the new certificate",
        async || (node.status().await["BackendState"] == "Running").then_some(()),
    )
    .await;

    // A broken replacement is refused and the running certificate stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    eventually(
        Duration::from_secs(20),
        "the broken certificate to be refused",
        async || {
            server
                .log_text()
                .contains("the running certificate stays")
                .then_some(())
        },
    )
    .await;
    assert!(https_ok(&health, &second_pem).await);
    node.stop().await;
}

/// Whether pebble is installed; installs Debian's package when it is not
/// (as root, as in CI); panics with what to do otherwise.
fn pebble_binary() -> PathBuf {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    let bin = PathBuf::from("/usr/bin/pebble");
    INSTALL.call_once(|| {
        if bin.exists() {
            return;
        }
        let status = std::process::Command::new("apt-get")
            .args(["install", "-y", "-q", "pebble"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .expect("running apt-get install pebble (the ACME test CA)");
        if !status.success() {
            let _ = std::process::Command::new("apt-get")
                .args(["update", "-q"])
                .status();
            let status = std::process::Command::new("apt-get")
                .args(["install", "-y", "-q", "pebble"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .expect("running apt-get install pebble");
            assert!(status.success(), "apt-get install pebble failed");
        }
    });
    assert!(
        bin.exists(),
        "pebble is not installed: apt-get install pebble"
    );
    bin
}

/// A running pebble ACME server on loopback.
struct Pebble {
    dir: PathBuf,
    port: u16,
    mgmt_port: u16,
    /// The CA of pebble's own HTTPS listener.
    tls_ca: PathBuf,
    child: Child,
}

impl Pebble {
    /// Starts pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
    async fn start(dir: &Path, http_port: u16, tls_port: u16) -> Pebble {
        let bin = pebble_binary();
        let dir = dir.join("pebble");
        std::fs::create_dir_all(&dir).unwrap();
        let ca = Ca::new("pebble listener CA");
        let (cert, key) = ca.leaf(&["127.0.0.1", "localhost"]);
        let tls_ca = dir.join("listener-ca.pem");
        std::fs::write(&tls_ca, ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        write_key(&dir.join("key.pem"), &key);
        let (port, mgmt_port) = (free_tcp_port(), free_tcp_port());
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{port}"),
                "managementListenAddress": format!("127.0.0.1:{mgmt_port}"),
                "certificate": dir.join("cert.pem"),
                "privateKey": dir.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
        let child = Command::new(bin)
            .arg("-config")
            .arg(dir.join("config.json"))
            // No random delays before validating, no random nonce refusals.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("starting pebble");
        let p = Pebble {
            dir,
            port,
            mgmt_port,
            tls_ca,
            child,
        };
        let url = p.directory_url();
        let ca = p.tls_ca.clone();
        eventually(Duration::from_secs(20), "pebble to listen", async || {
            https_ok(&url, &ca).await.then_some(())
        })
        .await;
        p
    }

    fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// The root that pebble issues certificates under, as a PEM file.
    async fn issuing_root(&self) -> PathBuf {
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", "--cacert"])
            .arg(&self.tls_ca)
            .arg(format!("https://127.0.0.1:{}/roots/0", self.mgmt_port))
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "fetching pebble's root failed");
        let path = self.dir.join("issuing-root.pem");
        std::fs::write(&path, &out.stdout).unwrap();
        path
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            eprintln!("===== pebble log =====\n{}", self.log_text());
        }
    }
}

/// ACME with `challenge` ("HTTP-01" or "TLS-ALPN-01"): the certificate is
/// obtained from pebble, an official client joins over it, and a restart
/// serves the cached certificate without a new order.
async fn acme_flow(challenge: &str) {
    let _slot = slot().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, http01_port) = (free_tcp_port(), free_tcp_port());
    let pebble = Pebble::start(dir.path(), http01_port, port).await;
    let cache = dir.path().join("acme-cache");
    let mut server = Headway::launch(
        dir.path(),
        ServerOpts {
            extra_yaml: format!(
                "tls_letsencrypt_hostname: localhost\n\
                 tls_letsencrypt_cache_dir: {}\n\
                 tls_letsencrypt_challenge_type: {challenge}\n\
                 tls_letsencrypt_listen: 127.0.0.1:{http01_port}\n\
                 acme_url: {}\n\
                 acme_email: admin@example.com\n",
                cache.display(),
                pebble.directory_url()
            ),
        },
        Launch {
            scheme: "https",
            host: "localhost".into(),
            env: vec![("SSL_CERT_FILE".into(), pebble.tls_ca.display().to_string())],
            port: Some(port),
            ..Launch::default()
        },
    )
    .await;
    eventually(
        Duration::from_secs(90),
        "headway to obtain a certificate from pebble",
        async || {
            let log = server.log_text();
            log.contains("ACME: certificate obtained").then_some(())
        },
    )
    .await;
    let root = pebble.issuing_root().await;
    assert!(https_ok(&format!("{}/health", server.url()), &root).await);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cache.join("localhost.key")), 0o600);
        assert_eq!(mode(cache.join("acme_account.json")), 0o600);
        assert_eq!(mode(cache.clone()), 0o700);
    }

    let authkey = server.user_with_key("alice", &[]).await;
    let root_text = root.display().to_string();
    let mut node = Node::start(
        dir.path(),
        "acme-one",
        MODERN,
        &[("SSL_CERT_FILE", &root_text)],
    )
    .await;
    node.up_ok(&server, &authkey).await;
    assert_eq!(server.nodes().await.len(), 1);
    node.stop().await;

    // A restart serves the cached certificate: no second order.
    server.restart().await;
    eventually(
        Duration::from_secs(20),
        "the restarted server to serve the cached certificate",
        async || {
            https_ok(&format!("{}/health", server.url()), &root)
                .await
                .then_some(())
        },
    )
    .await;
    let log = server.log_text();
    assert!(log.contains("ACME: using the cached certificate"), "{log}");
    assert_eq!(log.matches("ACME: certificate obtained").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tls_alpn01_certificate_from_a_real_acme_server() {
    acme_flow("TLS-ALPN-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_http01_certificate_from_a_real_acme_server() {
    acme_flow("HTTP-01").await;
}
