//! TLS for the relay: a self-signed certificate that clients pin by hash, its
//! persistence, rustls configurations, and an HTTPS listener for the DERP router.
//!
//! Clients reach DERP only over TLS. When Headway itself serves plain HTTP, the
//! relay gets its own TLS listener with a self-signed certificate, and the DERP
//! map names it as `CertName: "sha256-raw:<hex of SHA-256 of the leaf DER>"`.
//! Tailscale clients since 1.82 (capability version 115) then accept exactly one
//! presented certificate whose hash matches, that is valid for the node's
//! `HostName` (DNS name or IP address SAN) and within its validity period.
//! Older clients read `CertName` as a DNS name and cannot use such a node.

use std::future::Future;
use std::io::{self, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use base64::Engine;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Prefix of a DERP node's `CertName` that pins a certificate by hash.
pub const CERT_NAME_SHA256_PREFIX: &str = "sha256-raw:";

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A TLS setup problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("a self-signed DERP certificate needs at least one host name or IP address")]
    NoNames,
    #[error("cannot generate a self-signed certificate for {names:?}: {source}")]
    Generate {
        names: Vec<String>,
        source: rcgen::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (a PKCS#8 \"PRIVATE KEY\" block is expected)")]
    NoPrivateKey { path: PathBuf },
    #[error("TLS configuration rejected the certificate or key: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate pin {0:?} is not 64 hex digits (the SHA-256 of the certificate's DER)")]
    BadPin(String),
}

/// A self-signed leaf certificate and its key, pinned by clients through its hash.
pub struct SelfSignedCert {
    cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
    sha256: [u8; 32],
}

impl Clone for SelfSignedCert {
    fn clone(&self) -> Self {
        Self {
            cert_der: self.cert_der.clone(),
            key_der: self.key_der.clone_key(),
            sha256: self.sha256,
        }
    }
}

impl std::fmt::Debug for SelfSignedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSignedCert")
            .field("sha256", &self.sha256_hex())
            .finish_non_exhaustive()
    }
}

impl SelfSignedCert {
    /// A new ECDSA P-256 certificate valid for `names` (host names and IP
    /// addresses; IPv6 may be bracketed) from 2000 until 9999, so that the pin
    /// never has to change for expiry or a skewed clock.
    pub fn generate<S: AsRef<str>>(names: &[S]) -> Result<Self, TlsError> {
        let mut cleaned: Vec<String> = Vec::new();
        for n in names {
            let n = n
                .as_ref()
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if !n.is_empty() && !cleaned.iter().any(|c| c == n) {
                cleaned.push(n.to_string());
            }
        }
        let Some(first) = cleaned.first().cloned() else {
            return Err(TlsError::NoNames);
        };
        let generate = || -> Result<Self, rcgen::Error> {
            let mut params = rcgen::CertificateParams::new(cleaned.clone())?;
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(rcgen::DnType::CommonName, first.clone());
            params.distinguished_name = dn;
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(9999, 12, 31);
            params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            let key = rcgen::KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            Ok(Self::from_der(
                cert.der().clone(),
                PrivatePkcs8KeyDer::from(key.serialize_der()),
            ))
        };
        generate().map_err(|source| TlsError::Generate {
            names: cleaned.clone(),
            source,
        })
    }

    /// Wraps an existing certificate and PKCS#8 key.
    pub fn from_der(
        cert_der: CertificateDer<'static>,
        key_der: PrivatePkcs8KeyDer<'static>,
    ) -> Self {
        let sha256 = Sha256::digest(cert_der.as_ref()).into();
        Self {
            cert_der,
            key_der,
            sha256,
        }
    }

    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub fn key_der(&self) -> &PrivatePkcs8KeyDer<'static> {
        &self.key_der
    }

    /// Lowercase hex of the SHA-256 of the certificate's DER.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The DERP node `CertName` that pins this certificate.
    pub fn cert_name(&self) -> String {
        format!("{CERT_NAME_SHA256_PREFIX}{}", self.sha256_hex())
    }

    /// Whether a client dialing `name` (a DNS name or IP address) accepts the certificate.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.trim().trim_start_matches('[').trim_end_matches(']');
        let (Ok(parsed), Ok(server_name)) = (
            ParsedCertificate::try_from(&self.cert_der),
            ServerName::try_from(name),
        ) else {
            return false;
        };
        rustls::client::verify_server_name(&parsed, &server_name).is_ok()
    }

    /// Writes the certificate and key as PEM; the key file is readable by its owner only.
    pub fn save(&self, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
        write_atomically(
            cert_path,
            pem("CERTIFICATE", self.cert_der.as_ref()).as_bytes(),
            0o644,
        )?;
        write_atomically(
            key_path,
            pem("PRIVATE KEY", self.key_der.secret_pkcs8_der()).as_bytes(),
            0o600,
        )
    }

    /// Reads a certificate and PKCS#8 key written by [`SelfSignedCert::save`].
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert_path)?;
        let cert = rustls_pemfile::certs(&mut BufReader::new(&cert_pem[..]))
            .next()
            .transpose()
            .map_err(|source| TlsError::Read {
                path: cert_path.to_path_buf(),
                source,
            })?
            .ok_or_else(|| TlsError::NoCertificate {
                path: cert_path.to_path_buf(),
            })?;
        let key_pem = read(key_path)?;
        let key = rustls_pemfile::pkcs8_private_keys(&mut BufReader::new(&key_pem[..]))
            .next()
            .transpose()
            .map_err(|source| TlsError::Read {
                path: key_path.to_path_buf(),
                source,
            })?
            .ok_or_else(|| TlsError::NoPrivateKey {
                path: key_path.to_path_buf(),
            })?;
        Ok(Self::from_der(cert, key))
    }

    /// Loads the stored certificate, or generates and stores one when there is
    /// none or it does not cover every name (a new certificate changes the pin).
    pub fn load_or_generate<S: AsRef<str>>(
        cert_path: &Path,
        key_path: &Path,
        names: &[S],
    ) -> Result<Self, TlsError> {
        if cert_path.exists() && key_path.exists() {
            let stored = Self::load(cert_path, key_path)?;
            let uncovered: Vec<&str> = names
                .iter()
                .map(AsRef::as_ref)
                .filter(|n| !stored.covers(n))
                .collect();
            if uncovered.is_empty() {
                return Ok(stored);
            }
            tracing::warn!(
                cert = %cert_path.display(),
                ?uncovered,
                "stored DERP certificate does not cover these names; generating a new one (its pin changes)"
            );
        }
        let fresh = Self::generate(names)?;
        fresh.save(cert_path, key_path)?;
        tracing::info!(cert = %cert_path.display(), pin = %fresh.cert_name(), "generated a self-signed DERP certificate");
        Ok(fresh)
    }

    /// A rustls server configuration presenting this certificate alone.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(
            vec![self.cert_der.clone()],
            PrivateKeyDer::Pkcs8(self.key_der.clone_key()),
        )
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes through a temporary file and a rename, so a crash never leaves half a key.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options.open(&tmp).map_err(err)?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for the DERP listener: TLS 1.2/1.3 with the ring
/// provider and no ALPN (DERP clients offer none; HTTP/1.1 is spoken).
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the certificate with SHA-256
/// `sha256_hex` (with or without the `sha256-raw:` prefix), checked the way
/// Tailscale clients check a pinned DERP node: a single certificate, matching
/// hash, valid for the dialed name.
pub fn pinned_client_config(sha256_hex: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let hex_part = sha256_hex
        .strip_prefix(CERT_NAME_SHA256_PREFIX)
        .unwrap_or(sha256_hex);
    let mut pin = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut pin)
        .map_err(|_| TlsError::BadPin(sha256_hex.to_string()))?;
    let provider = provider();
    let verifier = PinnedCertVerifier {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCertVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "pinned DERP server presented more than one certificate".into(),
            ));
        }
        if Sha256::digest(end_entity.as_ref()).as_slice() != self.pin {
            return Err(rustls::Error::General(
                "DERP server certificate does not match the pinned SHA-256".into(),
            ));
        }
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Serves `router` over HTTPS (HTTP/1.1 with upgrades) until `shutdown` resolves.
///
/// Each connection runs in its own task: failed or stalled TLS handshakes and
/// garbage never stop the listener. At shutdown, connections still speaking
/// HTTP get a few seconds to finish; upgraded DERP connections are left to
/// their server (see [`crate::DerpServer::close`]). Requests carry
/// `ConnectInfo<SocketAddr>` with the client's address.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let stop = CancellationToken::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, remote)) => {
                    connections.spawn(serve_tls_connection(acceptor.clone(), tcp, remote, router.clone(), stop.clone()));
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "DERP TLS listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    stop.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
    Ok(())
}

async fn serve_tls_connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    router: Router,
    stop: CancellationToken,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "DERP TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "DERP TLS handshake timed out");
            return;
        }
    };
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(req.map(Body::new))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "DERP HTTPS connection failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cert_covers_its_names_and_hash_is_of_the_der() {
        let c = SelfSignedCert::generate(&["derp.example.com", "127.0.0.1", "[::1]"]).unwrap();
        assert!(c.covers("derp.example.com"));
        assert!(c.covers("127.0.0.1"));
        assert!(c.covers("::1"));
        assert!(!c.covers("other.example.com"));
        assert!(!c.covers("127.0.0.2"));
        let expected = hex::encode(Sha256::digest(c.cert_der().as_ref()));
        assert_eq!(c.sha256_hex(), expected);
        assert_eq!(c.cert_name(), format!("sha256-raw:{expected}"));
        assert!(
            c.sha256_hex()
                .chars()
                .all(|ch| ch.is_ascii_digit() || ch.is_ascii_lowercase())
        );
        assert!(matches!(
            SelfSignedCert::generate::<&str>(&[]),
            Err(TlsError::NoNames)
        ));
        assert!(c.server_config().is_ok());
    }

    #[test]
    fn saved_cert_loads_with_the_same_pin_and_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("derp.crt"), dir.path().join("sub/derp.key"));
        let a = SelfSignedCert::load_or_generate(&cert, &key, &["127.0.0.1"]).unwrap();
        let b = SelfSignedCert::load_or_generate(&cert, &key, &["127.0.0.1"]).unwrap();
        assert_eq!(a.sha256_hex(), b.sha256_hex());
        assert_eq!(
            a.key_der().secret_pkcs8_der(),
            b.key_der().secret_pkcs8_der()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key file mode {mode:o}");
        }
        // A name the stored certificate lacks forces a new certificate (and pin).
        let c = SelfSignedCert::load_or_generate(&cert, &key, &["127.0.0.1", "derp.example.com"])
            .unwrap();
        assert_ne!(c.sha256_hex(), a.sha256_hex());
        assert!(c.covers("derp.example.com"));
        assert_eq!(
            SelfSignedCert::load(&cert, &key).unwrap().sha256_hex(),
            c.sha256_hex()
        );
    }

    #[test]
    fn loading_garbage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let err = SelfSignedCert::load(&cert, &key).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("c.pem"));
    }

    #[test]
    fn pin_must_be_hex_of_32_bytes() {
        assert!(pinned_client_config(&"ab".repeat(32)).is_ok());
        assert!(pinned_client_config(&format!("sha256-raw:{}", "ab".repeat(32))).is_ok());
        assert!(matches!(
            pinned_client_config("abcd"),
            Err(TlsError::BadPin(_))
        ));
    }

    #[test]
    fn pinned_verifier_checks_hash_count_and_name() {
        let c = SelfSignedCert::generate(&["127.0.0.1"]).unwrap();
        let other = SelfSignedCert::generate(&["127.0.0.1"]).unwrap();
        let v = PinnedCertVerifier {
            pin: Sha256::digest(c.cert_der().as_ref()).into(),
            algorithms: provider().signature_verification_algorithms,
        };
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        let now = UnixTime::now();
        assert!(
            v.verify_server_cert(c.cert_der(), &[], &ip, &[], now)
                .is_ok()
        );
        assert!(
            v.verify_server_cert(other.cert_der(), &[], &ip, &[], now)
                .is_err()
        );
        assert!(
            v.verify_server_cert(c.cert_der(), &[other.cert_der().clone()], &ip, &[], now)
                .is_err()
        );
        let wrong_name = ServerName::try_from("derp.example.com").unwrap();
        assert!(
            v.verify_server_cert(c.cert_der(), &[], &wrong_name, &[], now)
                .is_err()
        );
    }
}
