//! The server's long-lived private keys (Noise, DERP) on disk, in the text
//! form Tailscale and headscale use (`privkey:<hex>`), so a headscale key file
//! works unchanged. Created owner-only (0600, in a 0700 directory when the
//! directory is new); refused when the group or other users can read them.

use std::path::Path;

use anyhow::{Context, bail};
use headway_proto::keys::PrivateKey;

/// Reads the key at `path`, or creates one there if the file is missing.
pub fn load_or_create(path: &Path, what: &str) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        check_private(path, what)?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} at {}", path.display()))?;
        return text.trim().parse().with_context(|| {
            format!(
                "the {what} at {} is not a `privkey:<64 hex>` key",
                path.display()
            )
        });
    }
    let key = PrivateKey::generate();
    write_private(path, &key.to_text())
        .with_context(|| format!("creating the {what} at {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new {what}");
    Ok(key)
}

/// Refuses a key file that anyone but its owner can use.
#[cfg(unix)]
pub(crate) fn check_private(path: &Path, what: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading the {what} at {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the {what} at {} is accessible to users other than its owner (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reloads_the_same_key_and_refuses_world_readable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/noise.key");
        let a = load_or_create(&path, "Noise key").unwrap();
        let b = load_or_create(&path, "Noise key").unwrap();
        assert_eq!(a.public_bytes(), b.public_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            for loose in [0o644, 0o640, 0o604, 0o660] {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
                let err = load_or_create(&path, "Noise key").unwrap_err().to_string();
                assert!(
                    err.contains("chmod 600") && err.contains("noise.key"),
                    "{err}"
                );
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::write(&path, "garbage").unwrap();
            let err = format!("{:#}", load_or_create(&path, "Noise key").unwrap_err());
            assert!(err.contains("privkey:"), "{err}");
        }
    }
}
