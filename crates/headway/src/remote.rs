//! A remote server: where it is, how to reach it (TLS unless the address
//! says `http://`) and the API key that opens it.
//!
//! `--address` / `HEADWAY_CLI_ADDRESS` / `cli.address` takes
//! `https://host[:port]`, `http://host[:port]` (no TLS: for a server behind
//! a local proxy or in tests) or headscale's `host:port` (TLS). Certificates
//! are checked against the system's roots; `SSL_CERT_FILE`/`SSL_CERT_DIR`
//! name others. `cli.insecure: true` turns the check off, and nothing else
//! does.

use std::fmt;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use http::HeaderValue;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A remote server and the key for it.
#[derive(Clone)]
pub struct Remote {
    pub host: String,
    pub port: u16,
    /// `None`: plain HTTP (`http://` addresses only).
    tls: Option<Arc<ClientConfig>>,
    api_key: String,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        write!(f, "Remote({self})")
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Remote {
    /// The server at `address`, opened with `api_key`.
    pub fn new(address: &str, api_key: Option<&str>, insecure: bool) -> anyhow::Result<Self> {
        let address = address.trim();
        let with_scheme = if address.contains("://") {
            address.to_string()
        } else {
            // headscale's form: host:port, always TLS.
            format!("https://{address}")
        };
        let url = url::Url::parse(&with_scheme).with_context(|| {
            format!("the server address {address:?} is not https://host[:port] or host:port")
        })?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            other => bail!(
                "the server address {address:?} has scheme {other:?}; use https:// (or http:// without TLS)"
            ),
        };
        let host = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| anyhow!("the server address {address:?} names no host"))?;
        let port = url.port_or_known_default().unwrap_or(443);
        let Some(api_key) = api_key.map(str::trim).filter(|k| !k.is_empty()) else {
            bail!(
                "a remote server needs an API key: --api-key, HEADWAY_CLI_API_KEY or cli.api_key \
                 (create one on the server with `headway apikeys create`)"
            );
        };
        let tls = if tls {
            Some(Arc::new(client_config(insecure)?))
        } else {
            None
        };
        Ok(Remote {
            host,
            port,
            tls,
            api_key: api_key.to_string(),
        })
    }

    pub fn host_header(&self) -> String {
        let default = if self.tls.is_some() { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `Bearer <key>`, marked sensitive so that HTTP layers do not show it.
    pub fn authorization(&self) -> anyhow::Result<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.api_key))
            .map_err(|_| anyhow!("the API key holds characters that cannot be sent in a header"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// TLS over `tcp` when the address asks for it.
    pub async fn connect(&self, tcp: TcpStream) -> anyhow::Result<Connected> {
        let Some(config) = &self.tls else {
            return Ok(Connected::Plain(tcp));
        };
        let name = ServerName::try_from(self.host.clone())
            .with_context(|| format!("{:?} is not a host name TLS can check", self.host))?;
        let tls = TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .with_context(|| {
                format!(
                    "TLS with {self} failed (for a private CA, point SSL_CERT_FILE at its certificate; \
                     cli.insecure: true skips the check)"
                )
            })?;
        Ok(Connected::Tls(Box::new(tls)))
    }
}

/// A connection to a remote server.
pub enum Connected {
    Tls(Box<TlsStream<TcpStream>>),
    Plain(TcpStream),
}

fn client_config(insecure: bool) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS set-up")?;
    if insecure {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    // The system's roots; SSL_CERT_FILE / SSL_CERT_DIR replace them.
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        bail!(
            "no trusted CA certificates found (system store, SSL_CERT_FILE, SSL_CERT_DIR){}",
            found
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// `cli.insecure: true`: any certificate is accepted (signatures are still
/// checked, so the connection is at least with the holder of its key).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_tls_unless_http() {
        let r = Remote::new("https://hw.example.com", Some("k"), false).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.tls.is_some()),
            ("hw.example.com", 443, true)
        );
        assert_eq!(r.host_header(), "hw.example.com");
        let r = Remote::new("hw.example.com:50443", Some("k"), false).unwrap();
        assert_eq!((r.port, r.tls.is_some()), (50443, true));
        assert_eq!(r.host_header(), "hw.example.com:50443");
        let r = Remote::new("http://127.0.0.1:8080", Some("k"), false).unwrap();
        assert_eq!((r.port, r.tls.is_some()), (8080, false));
        let r = Remote::new("https://[::1]:8443", Some("k"), true).unwrap();
        assert_eq!(
            (r.host.as_str(), r.host_header()),
            ("::1", "[::1]:8443".to_string())
        );
        assert!(Remote::new("ftp://x", Some("k"), false).is_err());
    }

    #[test]
    fn a_remote_needs_a_key_and_never_shows_it() {
        let e = Remote::new("https://hw.example.com", None, false).unwrap_err();
        assert!(e.to_string().contains("API key"), "{e}");
        let r = Remote::new("https://hw.example.com", Some("hskey-api-secret"), false).unwrap();
        assert!(!format!("{r:?} {r}").contains("secret"));
        assert!(r.authorization().unwrap().is_sensitive());
    }
}
