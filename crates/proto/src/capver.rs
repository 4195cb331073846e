//! Capability versions: which clients we serve.
//!
//! The client sends its capability version in `/key?v=`, the Noise prologue and
//! every request. 1.78 speaks 109, 1.96 speaks 133.

use crate::tailcfg::CapabilityVersion;

/// The oldest client we serve: Tailscale 1.78 (capver 109). Older clients are
/// refused with a message that names the minimum.
pub const MIN_SUPPORTED: CapabilityVersion = 109;

/// Highest capability version this server was written against (1.96).
pub const CURRENT: CapabilityVersion = 133;

/// The error text shown to a client that is too old.
pub fn unsupported_message(v: CapabilityVersion) -> String {
    format!(
        "client capability version {v} is too old for this server (Tailscale 1.78 or newer is required); please upgrade tailscale"
    )
}

pub fn is_supported(v: CapabilityVersion) -> bool {
    v >= MIN_SUPPORTED
}
