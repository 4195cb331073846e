//! Wire types of the Tailscale control protocol and the transport that carries them.
//!
//! This crate owns everything a byte on the wire turns into: the text forms of
//! keys (`nodekey:…`, `mkey:…`), the JSON shapes the official client sends and
//! expects (`tailcfg`), the framing of streamed map responses, and the Noise
//! (`ts2021`) transport. It knows nothing about storage, policy or sessions.

pub mod capver;
pub mod framing;
pub mod keys;
pub mod noise;
pub mod tailcfg;
