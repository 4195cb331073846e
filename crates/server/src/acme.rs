//! Automatic certificates over ACME (RFC 8555): `tls_letsencrypt_hostname`,
//! `tls_letsencrypt_cache_dir`, `tls_letsencrypt_challenge_type`
//! (`HTTP-01` or `TLS-ALPN-01`), `tls_letsencrypt_listen`, `acme_url`,
//! `acme_email`.
//!
//! The protocol is `instant-acme`'s; this module owns what Headway does with
//! it: the account and the certificate live in the cache directory (the key
//! files owner-only), a cached certificate is served at once, and a
//! certificate is ordered when there is none or a third of its lifetime is
//! left (30 days of Let's Encrypt's 90). Failed orders are retried with a
//! growing delay while the running certificate, if any, stays.
//!
//! Challenges are answered by the server itself: HTTP-01 on
//! `tls_letsencrypt_listen` (which otherwise redirects to HTTPS), TLS-ALPN-01
//! on the main listener, which presents the challenge certificate to a
//! client asking for the `acme-tls/1` protocol.
//!
//! The ACME directory is reached over HTTPS with the system's trusted
//! certificates (`SSL_CERT_FILE` names another bundle, for a private CA).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use headway_config::{AcmeChallenge, LetsEncryptConfig};
use headway_state::Tailnet;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The longest wait between two looks at the certificate's age.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(12 * 3600);
/// First retry delay after a failed order; doubled up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(10);
const MAX_RETRY: Duration = Duration::from_secs(3600);

/// Certificates from an ACME CA, and the answers to its challenges.
pub struct Acme {
    config: LetsEncryptConfig,
    tailnet: Arc<Tailnet>,
    current: RwLock<Option<Issued>>,
    /// TLS-ALPN-01 challenge certificates by host name.
    alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01 key authorizations by token.
    tokens: RwLock<HashMap<String, String>>,
}

#[derive(Clone)]
struct Issued {
    key: Arc<CertifiedKey>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("hostname", &self.config.hostname)
            .finish_non_exhaustive()
    }
}

impl Acme {
    /// Prepares the cache directory and loads a cached certificate.
    pub fn new(config: &LetsEncryptConfig, tailnet: Arc<Tailnet>) -> anyhow::Result<Arc<Self>> {
        create_private_dir(&config.cache_dir)?;
        let acme = Arc::new(Acme {
            config: config.clone(),
            tailnet,
            current: RwLock::new(None),
            alpn: RwLock::new(HashMap::new()),
            tokens: RwLock::new(HashMap::new()),
        });
        match acme.load_cached() {
            Ok(Some(issued)) => {
                tracing::info!(hostname = %config.hostname, not_after = %issued.not_after, "ACME: using the cached certificate");
                *acme.current.write() = Some(issued);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                "ACME: the cached certificate is not usable ({e:#}); ordering a new one"
            ),
        }
        Ok(acme)
    }

    fn cert_path(&self) -> PathBuf {
        self.config
            .cache_dir
            .join(format!("{}.crt", self.config.hostname))
    }

    fn key_path(&self) -> PathBuf {
        self.config
            .cache_dir
            .join(format!("{}.key", self.config.hostname))
    }

    fn account_path(&self) -> PathBuf {
        self.config.cache_dir.join("acme_account.json")
    }

    fn load_cached(&self) -> anyhow::Result<Option<Issued>> {
        let (cert, key) = (self.cert_path(), self.key_path());
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        check_private_file(&key)?;
        let cert_pem =
            std::fs::read(&cert).with_context(|| format!("reading {}", cert.display()))?;
        let key_pem = std::fs::read(&key).with_context(|| format!("reading {}", key.display()))?;
        Ok(Some(issued_from_pem(&cert_pem, &key_pem, &cert, &key)?))
    }

    /// When the served certificate should be replaced (`None`: now).
    fn renew_at(&self) -> Option<DateTime<Utc>> {
        let issued = self.current.read().clone()?;
        let lifetime = issued.not_after - issued.not_before;
        Some(issued.not_after - lifetime / 3)
    }

    /// Orders certificates when due until shutdown.
    pub(crate) fn spawn_renewal(
        self: &Arc<Self>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        shutdown: CancellationToken,
    ) {
        let this = self.clone();
        tasks.spawn(async move {
            let mut retry = FIRST_RETRY;
            loop {
                let now = this.tailnet.now();
                let wait = match this.renew_at() {
                    None => Duration::ZERO,
                    Some(at) if at <= now => Duration::ZERO,
                    Some(at) => (at - now)
                        .to_std()
                        .unwrap_or(MAX_CHECK_INTERVAL)
                        .min(MAX_CHECK_INTERVAL),
                };
                if !wait.is_zero() {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
                let result = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    r = this.order() => r,
                };
                match result {
                    Ok(()) => retry = FIRST_RETRY,
                    Err(e) => {
                        tracing::error!(
                            hostname = %this.config.hostname,
                            acme_url = %this.config.acme_url,
                            "ACME: could not obtain a certificate: {e:#}; retrying in {retry:?}"
                        );
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(retry) => {}
                        }
                        retry = (retry * 2).min(MAX_RETRY);
                    }
                }
            }
        });
    }

    async fn account(&self) -> anyhow::Result<Account> {
        let path = self.account_path();
        if path.exists() {
            check_private_file(&path)?;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the ACME account {}", path.display()))?;
            let credentials: AccountCredentials = serde_json::from_str(&text)
                .with_context(|| format!("{} is not an ACME account file", path.display()))?;
            return Account::builder()
                .context("ACME HTTP client")?
                .from_credentials(credentials)
                .await
                .context("restoring the ACME account");
        }
        let contact = format!("mailto:{}", self.config.acme_email);
        let contacts: Vec<&str> = if self.config.acme_email.is_empty() {
            Vec::new()
        } else {
            vec![contact.as_str()]
        };
        let (account, credentials) = Account::builder()
            .context("ACME HTTP client")?
            .create(
                &NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                },
                self.config.acme_url.to_string(),
                None,
            )
            .await
            .with_context(|| format!("creating an account at {}", self.config.acme_url))?;
        write_private(&path, serde_json::to_string(&credentials)?.as_bytes())?;
        tracing::info!(acme_url = %self.config.acme_url, "ACME: account created");
        Ok(account)
    }

    /// One order: challenges, finalization, the new certificate cached and served.
    async fn order(&self) -> anyhow::Result<()> {
        let host = self.config.hostname.clone();
        tracing::info!(hostname = %host, challenge = ?self.config.challenge_type, "ACME: ordering a certificate");
        let account = self.account().await?;
        let identifiers = [Identifier::Dns(host.clone())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .context("creating the order")?;
        let wanted = match self.config.challenge_type {
            AcmeChallenge::Http01 => ChallengeType::Http01,
            AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut tokens = Vec::new();
        {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.context("reading an authorization")?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => bail!("authorization for {host} is {other:?}"),
                }
                let mut challenge = authz.challenge(wanted.clone()).with_context(|| {
                    format!("the CA offers no {wanted:?} challenge for {host}; try the other tls_letsencrypt_challenge_type")
                })?;
                let key_auth = challenge.key_authorization();
                match wanted {
                    ChallengeType::TlsAlpn01 => {
                        let cert = alpn_challenge_cert(&host, key_auth.digest().as_ref())?;
                        self.alpn.write().insert(host.clone(), Arc::new(cert));
                    }
                    _ => {
                        tokens.push(challenge.token.clone());
                        self.tokens
                            .write()
                            .insert(challenge.token.clone(), key_auth.as_str().to_string());
                    }
                }
                challenge
                    .set_ready()
                    .await
                    .context("answering the challenge")?;
            }
        }
        let patience = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(120));
        let status = order.poll_ready(&patience).await;
        // The challenge is over either way.
        self.alpn.write().remove(&host);
        {
            let mut t = self.tokens.write();
            for token in &tokens {
                t.remove(token);
            }
        }
        let status = status.context("waiting for the CA to validate the challenge")?;
        if status != OrderStatus::Ready {
            bail!(
                "the CA did not validate {host} (order {status:?}); check that it can reach this server"
            );
        }
        let key_pem = order.finalize().await.context("finalizing the order")?;
        let chain_pem = order
            .poll_certificate(&patience)
            .await
            .context("downloading the certificate")?;
        let (cert_path, key_path) = (self.cert_path(), self.key_path());
        let issued = issued_from_pem(
            chain_pem.as_bytes(),
            key_pem.as_bytes(),
            &cert_path,
            &key_path,
        )?;
        write_private(&key_path, key_pem.as_bytes())?;
        write_file(&cert_path, chain_pem.as_bytes(), 0o644)?;
        tracing::info!(hostname = %host, not_after = %issued.not_after, "ACME: certificate obtained");
        *self.current.write() = Some(issued);
        Ok(())
    }

    /// The HTTP-01 listener's routes: challenge answers, else a redirect to HTTPS.
    pub(crate) fn http01_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/.well-known/acme-challenge/{token}",
                axum::routing::get(http01_answer),
            )
            .fallback(redirect_to_https)
            .with_state(self.clone())
    }
}

async fn http01_answer(State(acme): State<Arc<Acme>>, UrlPath(token): UrlPath<String>) -> Response {
    match acme.tokens.read().get(&token) {
        Some(answer) => answer.clone().into_response(),
        None => (StatusCode::NOT_FOUND, "no such ACME challenge").into_response(),
    }
}

async fn redirect_to_https(State(acme): State<Arc<Acme>>, uri: Uri) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = format!("https://{}{}", acme.config.hostname, path);
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, target)]).into_response()
}

impl ResolvesServerCert for Acme {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let wants_challenge = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if wants_challenge {
            let name = hello.server_name().unwrap_or(&self.config.hostname);
            return self.alpn.read().get(name).cloned();
        }
        self.current.read().as_ref().map(|i| i.key.clone())
    }
}

/// The self-signed certificate of TLS-ALPN-01: the host name and the
/// `acmeIdentifier` extension holding the SHA-256 of the key authorization.
fn alpn_challenge_cert(host: &str, digest: &[u8]) -> anyhow::Result<CertifiedKey> {
    let mut params = rcgen::CertificateParams::new(vec![host.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signer = rustls::crypto::ring::sign::any_supported_type(&der)?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

fn issued_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<Issued> {
    let key = crate::tls::certified_key_from_pem(cert_pem, key_pem, cert_path, key_path)?;
    let leaf = key
        .cert
        .first()
        .with_context(|| format!("{} holds no certificate", cert_path.display()))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert_path.display()))?;
    let validity = parsed.validity();
    let at = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
            .with_context(|| format!("{}: a validity date is out of range", cert_path.display()))
    };
    Ok(Issued {
        not_before: at(validity.not_before)?,
        not_after: at(validity.not_after)?,
        key: Arc::new(key),
    })
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| {
                    format!("tls_letsencrypt_cache_dir: creating {}", dir.display())
                })?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
        .with_context(|| format!("tls_letsencrypt_cache_dir: creating {}", dir.display()))?;
    Ok(())
}

fn check_private_file(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} is accessible to other users (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    Ok(())
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    write_file(path, contents, 0o600)
}

/// Through a temporary file and a rename, so a crash never leaves half a file.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// `tls_letsencrypt_listen` in Go's form: `:http`, `:80`, `host:port`.
pub(crate) fn parse_listen(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    let (host, port) = text.rsplit_once(':').with_context(|| {
        format!(
            "tls_letsencrypt_listen: {text:?} is not host:port (e.g. \":http\" or \"0.0.0.0:80\")"
        )
    })?;
    let port: u16 = match port {
        "http" => 80,
        "https" => 443,
        p => p.parse().with_context(|| {
            format!("tls_letsencrypt_listen: {port:?} in {text:?} is not a port")
        })?,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.is_empty() {
        std::net::IpAddr::from([0, 0, 0, 0])
    } else {
        host.parse().with_context(|| {
            format!("tls_letsencrypt_listen: {host:?} in {text:?} is not an IP address")
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen(":http").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen(":8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("127.0.0.1:81").unwrap(),
            "127.0.0.1:81".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:https").unwrap(),
            "[::1]:443".parse().unwrap()
        );
        let err = parse_listen("example.com:80").unwrap_err().to_string();
        assert!(err.contains("tls_letsencrypt_listen"), "{err}");
        assert!(parse_listen("80").is_err());
    }

    #[test]
    fn alpn_challenge_cert_carries_the_acme_identifier() {
        let digest = [7u8; 32];
        let cert = alpn_challenge_cert("headway.example.com", &digest).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.cert[0].as_ref()).unwrap();
        // id-pe-acmeIdentifier, RFC 8737.
        let ext = parsed
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("acmeIdentifier extension");
        assert!(ext.critical);
        assert!(ext.value.ends_with(&digest));
    }
}
