//! The login exchange: `ClientInfo`/`ServerInfo` messages, sealed in NaCl boxes.
//!
//! A box is X25519 + HSalsa20 + XSalsa20-Poly1305 (`crypto_box::SalsaBox`); on the
//! wire it is `nonce (24) | tag (16) | ciphertext`, the layout of NaCl's `box`.

use std::fmt;
use std::str::FromStr;

use crypto_box::aead::{Aead, AeadCore, OsRng};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use headway_proto::keys::{NodePublic, PrivateKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

use crate::frame::{NONCE_LEN, PROTOCOL_VERSION};

/// A sealed box could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoxError {
    #[error("sealed message of {0} bytes is shorter than a nonce and a tag")]
    TooShort(usize),
    #[error("sealed message does not open with the expected keys (wrong key or corrupted)")]
    Open,
}

/// Seals `msg` from `private` to `peer` with a fresh random nonce: `nonce | tag | ciphertext`.
pub fn seal(private: &PrivateKey, peer: &NodePublic, msg: &[u8]) -> Vec<u8> {
    let nonce = SalsaBox::generate_nonce(&mut OsRng);
    seal_with_nonce(private, peer, &nonce.into(), msg)
}

/// Seals with a given nonce (tests and vectors; never reuse a nonce with the same keys).
pub fn seal_with_nonce(
    private: &PrivateKey,
    peer: &NodePublic,
    nonce: &[u8; NONCE_LEN],
    msg: &[u8],
) -> Vec<u8> {
    let salsa = salsa_box(private, peer);
    let mut out = Vec::with_capacity(NONCE_LEN + 16 + msg.len());
    out.extend_from_slice(nonce);
    // Encryption into a Vec cannot fail (only buffer-capacity errors exist for in-place use).
    if let Ok(ct) = salsa.encrypt(nonce.into(), msg) {
        out.extend_from_slice(&ct);
    }
    out
}

/// Opens `nonce | tag | ciphertext` sealed by `peer` to `private`.
pub fn open(private: &PrivateKey, peer: &NodePublic, sealed: &[u8]) -> Result<Vec<u8>, BoxError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(BoxError::TooShort(sealed.len()));
    }
    let (nonce, boxed) = sealed.split_at(NONCE_LEN);
    salsa_box(private, peer)
        .decrypt(nonce.into(), boxed)
        .map_err(|_| BoxError::Open)
}

fn salsa_box(private: &PrivateKey, peer: &NodePublic) -> SalsaBox {
    let secret = SecretKey::from_bytes(*private.as_bytes());
    SalsaBox::new(&PublicKey::from_bytes(*peer.as_bytes()), &secret)
}

/// The pre-shared key that lets DERP servers of one region mesh (64 hex digits).
#[derive(Clone)]
pub struct MeshKey([u8; 32]);

/// A mesh key that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DERP mesh key must be 64 hex digits (32 bytes), got {len} characters")]
pub struct MeshKeyError {
    pub len: usize,
}

impl MeshKey {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }

    /// Constant-time comparison, so that probing clients learn nothing from timing.
    pub fn matches(&self, other: &MeshKey) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl FromStr for MeshKey {
    type Err = MeshKeyError;
    fn from_str(s: &str) -> Result<Self, MeshKeyError> {
        let s = s.trim();
        let mut b = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut b).is_err() {
            return Err(MeshKeyError { len: s.len() });
        }
        Ok(Self(b))
    }
}

impl fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MeshKey(<redacted>)")
    }
}

impl Serialize for MeshKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

/// An absent or empty `meshKey` means "no mesh key"; anything else must parse.
fn lenient_mesh_key<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MeshKey>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// What a client says about itself in the `ClientInfo` frame.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientInfo {
    /// Present only for mesh peers and privileged watchers.
    #[serde(
        rename = "meshKey",
        default,
        deserialize_with = "lenient_mesh_key",
        skip_serializing_if = "Option::is_none"
    )]
    pub mesh_key: Option<MeshKey>,
    #[serde(
        rename = "version",
        alias = "Version",
        default,
        skip_serializing_if = "is_zero_u32"
    )]
    pub version: u32,
    #[serde(rename = "CanAckPings", default)]
    pub can_ack_pings: bool,
    #[serde(rename = "IsProber", default, skip_serializing_if = "is_false")]
    pub is_prober: bool,
}

impl ClientInfo {
    /// What an official client sends.
    pub fn current() -> Self {
        Self {
            mesh_key: None,
            version: PROTOCOL_VERSION,
            can_ack_pings: true,
            is_prober: false,
        }
    }
}

/// What the server says in the `ServerInfo` frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    #[serde(rename = "version", default, skip_serializing_if = "is_zero_u32")]
    pub version: u32,
    /// Advisory: the client rate-limits its sends to this many bytes per second (0 = none).
    #[serde(
        rename = "TokenBucketBytesPerSecond",
        default,
        skip_serializing_if = "is_zero_u32"
    )]
    pub token_bucket_bytes_per_second: u32,
    #[serde(
        rename = "TokenBucketBytesBurst",
        default,
        skip_serializing_if = "is_zero_u32"
    )]
    pub token_bucket_bytes_burst: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_str: &str) -> [u8; 32] {
        hex::decode(hex_str).unwrap().try_into().unwrap()
    }

    /// The box test vector shipped with NaCl (tests/box.c): Alice's secret key,
    /// Bob's public key, a fixed nonce and a 131-byte message.
    #[test]
    fn matches_the_nacl_box_test_vector() {
        let alice = PrivateKey::from_bytes(key(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob_secret = PrivateKey::from_bytes(key(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let bob = NodePublic::from_bytes(key(
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
        ));
        assert_eq!(bob_secret.node_public(), bob);
        let nonce: [u8; 24] = hex::decode("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")
            .unwrap()
            .try_into()
            .unwrap();
        let msg = hex::decode(concat!(
            "be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffc",
            "e5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb31",
            "0e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde",
            "048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f93776384864",
            "5e0705",
        ))
        .unwrap();
        let expected = hex::decode(concat!(
            "f3ffc7703f9400e52a7dfb4b3d3305d98e993b9f48681273c29650ba32fc76ce",
            "48332ea7164d96a4476fb8c531a1186ac0dfc17c98dce87b4da7f011ec48c972",
            "71d2c20f9b928fe2270d6fb863d51738b48eeee314a7cc8ab932164548e526ae",
            "90224368517acfeabd6bb3732bc0e9da99832b61ca01b6de56244a9e88d5f9b3",
            "7973f622a43d14a6599b1f654cb45a74e355a5",
        ))
        .unwrap();
        let sealed = seal_with_nonce(&alice, &bob, &nonce, &msg);
        assert_eq!(&sealed[..24], &nonce);
        assert_eq!(hex::encode(&sealed[24..]), hex::encode(&expected));
        // Bob opens it with Alice's public key.
        assert_eq!(
            open(&bob_secret, &alice.node_public(), &sealed).unwrap(),
            msg
        );
    }

    #[test]
    fn client_seals_and_server_opens() {
        let client = PrivateKey::generate();
        let server = PrivateKey::generate();
        let json = serde_json::to_vec(&ClientInfo::current()).unwrap();
        let sealed = seal(&client, &server.node_public(), &json);
        assert_eq!(sealed.len(), 24 + 16 + json.len());
        let opened = open(&server, &client.node_public(), &sealed).unwrap();
        assert_eq!(opened, json);
        // A different sender key or a flipped bit fails.
        let other = PrivateKey::generate().node_public();
        assert_eq!(open(&server, &other, &sealed), Err(BoxError::Open));
        let mut bad = sealed.clone();
        bad[30] ^= 1;
        assert_eq!(
            open(&server, &client.node_public(), &bad),
            Err(BoxError::Open)
        );
        assert_eq!(
            open(&server, &client.node_public(), &sealed[..39]),
            Err(BoxError::TooShort(39))
        );
    }

    #[test]
    fn client_info_json_matches_the_official_client() {
        let v = serde_json::to_value(ClientInfo::current()).unwrap();
        assert_eq!(v, serde_json::json!({"version": 2, "CanAckPings": true}));
        let parsed: ClientInfo =
            serde_json::from_str(r#"{"version":2,"CanAckPings":true,"meshKey":""}"#).unwrap();
        assert!(parsed.mesh_key.is_none());
        let mk = "ab".repeat(32);
        let parsed: ClientInfo =
            serde_json::from_str(&format!(r#"{{"meshKey":"{mk}","IsProber":true}}"#)).unwrap();
        assert!(parsed.mesh_key.unwrap().matches(&mk.parse().unwrap()));
        assert!(parsed.is_prober);
        assert!(serde_json::from_str::<ClientInfo>(r#"{"meshKey":"abc"}"#).is_err());
    }

    #[test]
    fn server_info_is_version_two() {
        let v = serde_json::to_string(&ServerInfo {
            version: 2,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(v, r#"{"version":2}"#);
    }

    #[test]
    fn mesh_key_parses_compares_and_hides() {
        let a: MeshKey = "01".repeat(32).parse().unwrap();
        let b: MeshKey = "02".repeat(32).parse().unwrap();
        assert!(a.matches(&a.clone()));
        assert!(!a.matches(&b));
        assert!("01".parse::<MeshKey>().is_err());
        assert!(!format!("{a:?}").contains("0101"));
    }
}
