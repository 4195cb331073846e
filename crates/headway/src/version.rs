//! `headway version`: what this binary is and which clients it serves.

use headway_proto::capver;
use serde::Serialize;

/// The oldest and newest Tailscale releases, matching
/// `capver::MIN_SUPPORTED` and `capver::CURRENT` (a test keeps them in step).
const OLDEST_CLIENT: &str = "1.78";
const NEWEST_CLIENT: &str = "1.96";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    pub version: &'static str,
    /// The git commit it was built from, when known at build time.
    pub commit: Option<&'static str>,
    /// Tailscale clients served: this release and newer.
    pub min_client_version: &'static str,
    /// The newest Tailscale release this server was written against.
    pub max_tested_client_version: &'static str,
    pub min_capability_version: i32,
    pub max_capability_version: i32,
}

pub fn info() -> VersionInfo {
    VersionInfo {
        version: env!("CARGO_PKG_VERSION"),
        commit: option_env!("HEADWAY_GIT_COMMIT").filter(|c| !c.is_empty()),
        min_client_version: OLDEST_CLIENT,
        max_tested_client_version: NEWEST_CLIENT,
        min_capability_version: capver::MIN_SUPPORTED,
        max_capability_version: capver::CURRENT,
    }
}

impl std::fmt::Display for VersionInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "headway {}", self.version)?;
        if let Some(commit) = self.commit {
            write!(f, " (commit {commit})")?;
        }
        write!(
            f,
            "\nsupported clients: Tailscale {} and newer (tested up to {}; capability versions {} to {})",
            self.min_client_version,
            self.max_tested_client_version,
            self.min_capability_version,
            self.max_capability_version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_match_the_capability_versions() {
        // When these fail, update OLDEST_CLIENT / NEWEST_CLIENT with the
        // Tailscale releases that speak the new capability versions.
        assert_eq!(capver::MIN_SUPPORTED, 109, "Tailscale 1.78 speaks 109");
        assert_eq!(capver::CURRENT, 133, "Tailscale 1.96 speaks 133");
    }

    #[test]
    fn the_text_names_version_and_clients() {
        let text = info().to_string();
        assert!(
            text.starts_with(&format!("headway {}", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(text.contains("Tailscale 1.78 and newer"), "{text}");
    }
}
