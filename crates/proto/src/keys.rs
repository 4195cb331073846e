//! Curve25519 keys in Tailscale's text form: a type prefix and 64 hex digits.
//!
//! The prefix says what the key is for (`mkey:` machine, `nodekey:` node/WireGuard,
//! `discokey:` disco, `nlpub:` tailnet lock, `chalpub:` challenge, `privkey:` a
//! private key). Parsing accepts either hex case; formatting is lowercase. A zero
//! key is written as the prefix and 64 zeros, never as an empty string (the client
//! refuses empty strings).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {value:?}: expected prefix {expected:?} followed by 64 hex digits")]
    Prefix {
        expected: &'static str,
        value: String,
    },
    #[error("key {value:?}: expected 64 hex digits after {prefix:?}")]
    Hex { prefix: &'static str, value: String },
}

fn shorten(s: &str) -> String {
    // Keys in error messages are shortened: a private key must never reach a log.
    if s.len() > 24 {
        format!("{}…", &s[..24])
    } else {
        s.to_string()
    }
}

fn parse_prefixed(s: &str, prefixes: &[&'static str]) -> Result<[u8; 32], KeyError> {
    let Some((prefix, hex_part)) = prefixes
        .iter()
        .find_map(|p| s.strip_prefix(p).map(|rest| (*p, rest)))
    else {
        return Err(KeyError::Prefix {
            expected: prefixes[0],
            value: shorten(s),
        });
    };
    let mut out = [0u8; 32];
    if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut out).is_err() {
        return Err(KeyError::Hex {
            prefix,
            value: shorten(s),
        });
    }
    Ok(out)
}

macro_rules! public_key {
    ($(#[$doc:meta])* $name:ident, $prefix:literal $(, $alt:literal)*) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub const ZERO: Self = Self([0; 32]);

            pub fn from_bytes(b: [u8; 32]) -> Self { Self(b) }
            pub fn as_bytes(&self) -> &[u8; 32] { &self.0 }
            pub fn is_zero(&self) -> bool { self.0 == [0; 32] }
            /// Lowercase hex without the prefix.
            pub fn hex(&self) -> String { hex::encode(self.0) }
            /// A short form for logs and listings, e.g. `[AbCdE]`-style prefixes.
            pub fn short(&self) -> String { format!("{}{}", $prefix, &hex::encode(&self.0[..4])) }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.short())
            }
        }

        impl FromStr for $name {
            type Err = KeyError;
            fn from_str(s: &str) -> Result<Self, KeyError> {
                parse_prefixed(s, &[$prefix $(, $alt)*]).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

public_key!(
    /// A machine's long-lived Noise static key: the identity of an installation.
    MachinePublic, "mkey:"
);
public_key!(
    /// A node's WireGuard public key: rotatable, also its DERP address.
    NodePublic, "nodekey:"
);
public_key!(
    /// A node's disco key, regenerated at every tailscaled start.
    DiscoPublic, "discokey:"
);
public_key!(
    /// A tailnet-lock public key (accepted, never interpreted).
    NlPublic, "nlpub:", "tlpub:"
);
public_key!(
    /// The public half of a per-connection challenge key (early Noise payload).
    ChallengePublic, "chalpub:"
);

/// An X25519 private key. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// Text prefix of a private key, as written by Tailscale and headscale.
    pub const PREFIX: &'static str = "privkey:";

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        Self::from_bytes(b)
    }

    /// Uses `b` as the scalar (clamped, as X25519 does).
    pub fn from_bytes(mut b: [u8; 32]) -> Self {
        b[0] &= 248;
        b[31] &= 127;
        b[31] |= 64;
        Self(b)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The public key as raw bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        x25519_dalek::PublicKey::from(&secret).to_bytes()
    }

    pub fn machine_public(&self) -> MachinePublic {
        MachinePublic(self.public_bytes())
    }

    pub fn node_public(&self) -> NodePublic {
        NodePublic(self.public_bytes())
    }

    pub fn disco_public(&self) -> DiscoPublic {
        DiscoPublic(self.public_bytes())
    }

    /// `privkey:<hex>`: the form headscale and Tailscale store on disk.
    pub fn to_text(&self) -> String {
        format!("{}{}", Self::PREFIX, hex::encode(self.0))
    }

    /// X25519 shared secret with a peer's public key.
    pub fn shared_secret(&self, peer: &[u8; 32]) -> [u8; 32] {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        secret
            .diffie_hellman(&x25519_dalek::PublicKey::from(*peer))
            .to_bytes()
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        parse_prefixed(s.trim(), &[Self::PREFIX]).map(Self)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text_and_json() {
        let k = NodePublic([0xab; 32]);
        let s = k.to_string();
        assert_eq!(s, format!("nodekey:{}", "ab".repeat(32)));
        assert_eq!(s.parse::<NodePublic>().unwrap(), k);
        let j = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<NodePublic>(&j).unwrap(), k);
        // Upper-case hex is accepted.
        let upper = format!("nodekey:{}", "AB".repeat(32));
        assert_eq!(upper.parse::<NodePublic>().unwrap(), k);
    }

    #[test]
    fn zero_key_is_prefix_and_zeros() {
        assert_eq!(
            MachinePublic::ZERO.to_string(),
            format!("mkey:{}", "0".repeat(64))
        );
        assert!(MachinePublic::ZERO.is_zero());
    }

    #[test]
    fn rejects_empty_wrong_prefix_and_bad_hex() {
        assert!(matches!(
            "".parse::<NodePublic>(),
            Err(KeyError::Prefix { .. })
        ));
        assert!(matches!(
            format!("mkey:{}", "00".repeat(32)).parse::<NodePublic>(),
            Err(KeyError::Prefix { .. })
        ));
        assert!(matches!(
            "nodekey:zz".parse::<NodePublic>(),
            Err(KeyError::Hex { .. })
        ));
        assert!(serde_json::from_str::<NodePublic>("\"\"").is_err());
    }

    #[test]
    fn tailnet_lock_key_accepts_both_prefixes() {
        let a: NlPublic = format!("nlpub:{}", "01".repeat(32)).parse().unwrap();
        let b: NlPublic = format!("tlpub:{}", "01".repeat(32)).parse().unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn private_key_text_and_public_half() {
        // RFC 7748 §6.1 test vector (Alice).
        let sk = PrivateKey::from_bytes(
            hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        assert_eq!(
            hex::encode(sk.public_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let text = sk.to_text();
        let back: PrivateKey = text.parse().unwrap();
        assert_eq!(back.public_bytes(), sk.public_bytes());
        assert!(!format!("{sk:?}").contains(&text[8..]));
    }
}
