//! The main listener's certificate when it comes from files
//! (`tls_cert_path`, `tls_key_path`): read at start (a bad pair stops
//! start-up), then re-read whenever either file changes, so a renewed
//! certificate (certbot, cert-manager, a cron job) is served to new
//! connections without a restart. A bad new pair is logged and the running
//! certificate stays. ACME certificates come from [`crate::acme`] instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How often the files' metadata is checked for changes.
const POLL: Duration = Duration::from_secs(1);

/// A certificate problem, naming the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tls_cert_path: {path} holds no PEM certificate (a \"CERTIFICATE\" block is expected)")]
    NoCertificate { path: PathBuf },
    #[error("tls_key_path: {path} holds no PEM private key ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error(
        "tls_key_path: {path} is readable by every user (mode {mode:o}); run `chmod 600 {path}` (or 640 with a group only the server is in)"
    )]
    WorldReadable { path: PathBuf, mode: u32 },
    #[error("tls_key_path: the key in {key_path} is not usable for TLS: {detail}")]
    BadKey { key_path: PathBuf, detail: String },
    #[error(
        "tls_cert_path/tls_key_path: the key in {key_path} does not belong to the certificate in {cert_path}"
    )]
    Mismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
}

/// Refuses a private key file that every user on the machine can read.
pub(crate) fn check_key_file(path: &Path) -> Result<(), CertError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|source| CertError::Read {
            key: "tls_key_path",
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            return Err(CertError::WorldReadable {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

/// A certificate chain and its key as rustls serves them, from PEM.
pub(crate) fn certified_key_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, CertError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert_path.to_path_buf(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::NoKey {
        path: key_path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| CertError::BadKey {
            key_path: key_path.to_path_buf(),
            detail: e.to_string(),
        })?;
    let certified = CertifiedKey::new(certs, signer);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(_) => Err(CertError::Mismatch {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        }),
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and checks a certificate/key pair.
pub(crate) fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, CertError> {
    check_key_file(key_path)?;
    let cert_pem = read("tls_cert_path", cert_path)?;
    let key_pem = read("tls_key_path", key_path)?;
    certified_key_from_pem(&cert_pem, &key_pem, cert_path, key_path)
}

/// The certificate from `tls_cert_path`/`tls_key_path`, swapped in place
/// when the files change.
#[derive(Debug)]
pub struct FileCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl FileCert {
    /// Reads the pair; an error here stops start-up.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, CertError> {
        let pair = load_pair(cert_path, key_path)?;
        Ok(Arc::new(FileCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: RwLock::new(Arc::new(pair)),
        }))
    }

    /// Re-reads the pair; on error the running certificate stays.
    pub fn reload(&self) -> Result<(), CertError> {
        let pair = load_pair(&self.cert_path, &self.key_path)?;
        *self.current.write() = Arc::new(pair);
        Ok(())
    }

    /// Follows both files until shutdown.
    pub(crate) fn follow(
        self: &Arc<Self>,
        tasks: &mut JoinSet<anyhow::Result<()>>,
        shutdown: CancellationToken,
    ) {
        let this = self.clone();
        tasks.spawn(async move {
            let stamp = |p: &Path| -> Option<(SystemTime, u64)> {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            };
            let stamps = || (stamp(&this.cert_path), stamp(&this.key_path));
            let mut last = stamps();
            let mut tick = tokio::time::interval(POLL);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tick.tick() => {}
                }
                let now = stamps();
                if now == last {
                    continue;
                }
                last = now;
                match this.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %this.cert_path.display(), "TLS certificate reloaded")
                    }
                    Err(e) => tracing::error!("{e}; the running certificate stays"),
                }
            }
        });
    }
}

impl ResolvesServerCert for FileCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// The main listener's TLS configuration over a certificate source: HTTP/2
/// and HTTP/1.1 (the control protocol's upgrade needs 1.1), plus whatever
/// `extra_alpn` the source answers itself (ACME's `acme-tls/1`).
pub(crate) fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    extra_alpn: &[&[u8]],
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config
        .alpn_protocols
        .extend(extra_alpn.iter().map(|p| p.to_vec()));
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = headway_derp::tls::SelfSignedCert::generate(&[name]).unwrap();
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        cert.save(&c, &k).unwrap();
        (c, k)
    }

    fn served_leaf(fc: &FileCert) -> Vec<u8> {
        fc.current.read().cert[0].as_ref().to_vec()
    }

    #[test]
    fn reload_swaps_a_good_pair_and_keeps_the_old_one_on_a_bad_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a.example.com");
        let fc = FileCert::load(&c, &k).unwrap();
        let first = served_leaf(&fc);
        write_pair(dir.path(), "b.example.com");
        fc.reload().unwrap();
        let second = served_leaf(&fc);
        assert_ne!(first, second);
        std::fs::write(&c, "garbage").unwrap();
        let err = fc.reload().unwrap_err();
        assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");
        assert_eq!(served_leaf(&fc), second);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a.example.com");
        let other = tempfile::tempdir().unwrap();
        let (_, k2) = write_pair(other.path(), "a.example.com");
        std::fs::copy(&k2, &k).unwrap();
        let err = FileCert::load(&c, &k).unwrap_err();
        assert!(matches!(err, CertError::Mismatch { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_world_readable_key_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a.example.com");
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = FileCert::load(&c, &k).unwrap_err().to_string();
        assert!(
            err.contains("chmod 600") && err.contains("tls.key"),
            "{err}"
        );
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(FileCert::load(&c, &k).is_ok());
    }
}
