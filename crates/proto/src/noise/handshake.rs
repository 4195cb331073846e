//! The Noise IK handshake in Tailscale's framing, for both roles.
//!
//! Tailscale runs `Noise_IK_25519_ChaChaPoly_BLAKE2s` with the prologue
//! `"Tailscale Control Protocol v<version>"` and two fixed-size messages:
//!
//! ```text
//! initiation (101 bytes, client → server, base64 in X-Tailscale-Handshake)
//!   u16be version | 0x01 | u16be 96 | ephemeral (32) | encrypted machine key (48) | tag (16)
//! response (51 bytes, server → client, raw on the upgraded connection)
//!   0x02 | u16be 48 | ephemeral (32) | tag (16)
//! error (instead of a response; unauthenticated, a hint only)
//!   0x03 | u16be len | text
//! ```
//!
//! snow runs the Noise state machine; this file adds the framing and the
//! prologue, and takes the two raw transport keys out of snow's split because
//! Tailscale's records do not use snow's (little-endian) nonce encoding.

use std::fmt;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::stream::NoiseStream;
use super::{MSG_ERROR, MSG_INITIATION, MSG_RESPONSE};
use crate::keys::{MachinePublic, PrivateKey};

/// Size of the client's initiation message, header included.
pub const INITIATION_LEN: usize = 101;
/// Size of the server's response message, header included.
pub const RESPONSE_LEN: usize = 51;

const NOISE_PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE_PREFIX: &str = "Tailscale Control Protocol v";
const INITIATION_HEADER_LEN: usize = 5;
const INITIATION_PAYLOAD_LEN: u16 = 96;
const RESPONSE_HEADER_LEN: usize = 3;
const RESPONSE_PAYLOAD_LEN: u16 = 48;

/// Why a handshake could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(
        "the X-Tailscale-Handshake header is not standard padded base64 ({0}); a proxy may have altered it"
    )]
    HeaderBase64(#[source] base64::DecodeError),
    #[error("handshake initiation is {len} bytes; Tailscale clients send exactly {INITIATION_LEN}")]
    InitiationSize { len: usize },
    #[error("handshake initiation has message type {found:#04x}; expected 0x01 (initiation)")]
    InitiationType { found: u8 },
    #[error(
        "handshake initiation declares a {declared}-byte payload; expected {INITIATION_PAYLOAD_LEN}"
    )]
    InitiationLength { declared: u16 },
    #[error(
        "cannot decrypt the handshake initiation: the client encrypted it to another server key \
         (it may hold a stale /key answer) or the message was altered"
    )]
    InitiationDecrypt,
    #[error("the client's machine key {0} is a low-order point, which proves nothing; refused")]
    LowOrderMachineKey(MachinePublic),
    #[error(
        "handshake response has message type {found:#04x}; expected 0x02 (response) or 0x03 (error)"
    )]
    ResponseType { found: u8 },
    #[error(
        "handshake response declares a {declared}-byte payload; expected {RESPONSE_PAYLOAD_LEN}"
    )]
    ResponseLength { declared: u16 },
    #[error(
        "cannot decrypt the handshake response: the server does not hold the private key for the \
         public key we dialled with (fetch /key again)"
    )]
    ResponseDecrypt,
    #[error("server refused the handshake: {0:?}")]
    Refused(String),
    #[error("reading the handshake response failed: {0}")]
    Io(#[source] std::io::Error),
    #[error("Noise handshake state error: {0}")]
    Noise(#[source] snow::Error),
}

/// The two ChaCha20-Poly1305 keys of an established session, already
/// assigned to directions for the side holding them. `Debug` hides them.
pub struct TransportKeys {
    pub(crate) send: [u8; 32],
    pub(crate) receive: [u8; 32],
}

impl TransportKeys {
    /// Noise's split gives (initiator→responder, responder→initiator).
    fn from_split(
        initiator_to_responder: [u8; 32],
        responder_to_initiator: [u8; 32],
        initiator: bool,
    ) -> Self {
        if initiator {
            Self {
                send: initiator_to_responder,
                receive: responder_to_initiator,
            }
        } else {
            Self {
                send: responder_to_initiator,
                receive: initiator_to_responder,
            }
        }
    }
}

impl fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TransportKeys(<redacted>)")
    }
}

/// Decodes the `X-Tailscale-Handshake` header value (standard, padded base64).
///
/// The length and contents are checked by [`accept`], so that a bad message can
/// be answered with an [`error_frame`] the client will display.
pub fn decode_handshake_header(value: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(HandshakeError::HeaderBase64)
}

/// Encodes an unauthenticated error frame, sent instead of the handshake
/// response; the official client shows `server error: "<text>"`.
///
/// Text longer than 65535 bytes is cut. The client cannot authenticate it, so
/// it should be a hint ("client too old"), never a secret.
pub fn error_frame(text: &str) -> Vec<u8> {
    let text = &text.as_bytes()[..text.len().min(usize::from(u16::MAX))];
    let mut frame = Vec::with_capacity(3 + text.len());
    frame.push(MSG_ERROR);
    // The slice above is at most u16::MAX long.
    frame.extend_from_slice(&(text.len() as u16).to_be_bytes());
    frame.extend_from_slice(text);
    frame
}

/// A completed server-side handshake: who the client is, and what to send.
#[derive(Debug)]
pub struct ServerHandshake {
    machine_key: MachinePublic,
    protocol_version: u16,
    response: [u8; RESPONSE_LEN],
    keys: TransportKeys,
}

/// Runs the responder side of the handshake on a client's initiation message
/// (the decoded `X-Tailscale-Handshake` header).
///
/// Any protocol version is accepted here, as the Go server does: the version
/// is authenticated (it is in the prologue), and deciding which versions to
/// serve is the caller's job, using [`ServerHandshake::protocol_version`].
pub fn accept(
    server_key: &PrivateKey,
    initiation: &[u8],
) -> Result<ServerHandshake, HandshakeError> {
    accept_with_ephemeral(server_key, initiation, None)
}

fn accept_with_ephemeral(
    server_key: &PrivateKey,
    initiation: &[u8],
    fixed_ephemeral: Option<&[u8; 32]>,
) -> Result<ServerHandshake, HandshakeError> {
    let initiation: &[u8; INITIATION_LEN] =
        initiation
            .try_into()
            .map_err(|_| HandshakeError::InitiationSize {
                len: initiation.len(),
            })?;
    let protocol_version = u16::from_be_bytes([initiation[0], initiation[1]]);
    if initiation[2] != MSG_INITIATION {
        return Err(HandshakeError::InitiationType {
            found: initiation[2],
        });
    }
    let declared = u16::from_be_bytes([initiation[3], initiation[4]]);
    if declared != INITIATION_PAYLOAD_LEN {
        return Err(HandshakeError::InitiationLength { declared });
    }

    let prologue = prologue(protocol_version);
    let mut builder = snow::Builder::new(noise_params()?)
        .local_private_key(server_key.as_bytes())
        .and_then(|b| b.prologue(prologue.as_bytes()))
        .map_err(HandshakeError::Noise)?;
    if let Some(ephemeral) = fixed_ephemeral {
        builder = builder.fixed_ephemeral_key_for_testing_only(ephemeral);
    }
    let mut noise = builder.build_responder().map_err(HandshakeError::Noise)?;

    // Both handshake messages carry an empty payload.
    noise
        .read_message(&initiation[INITIATION_HEADER_LEN..], &mut [])
        .map_err(|e| match e {
            snow::Error::Decrypt => HandshakeError::InitiationDecrypt,
            other => HandshakeError::Noise(other),
        })?;
    let machine_key = noise
        .get_remote_static()
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .map(MachinePublic)
        .ok_or(HandshakeError::Noise(snow::Error::State(
            snow::error::StateProblem::MissingKeyMaterial,
        )))?;
    // A low-order point makes the "ss" exchange all zeros, so the initiation
    // would prove no private key. No real key is one; the Go server refuses
    // them too.
    if server_key.shared_secret(machine_key.as_bytes()) == [0; 32] {
        return Err(HandshakeError::LowOrderMachineKey(machine_key));
    }

    let mut response = [0u8; RESPONSE_LEN];
    response[0] = MSG_RESPONSE;
    response[1..RESPONSE_HEADER_LEN].copy_from_slice(&RESPONSE_PAYLOAD_LEN.to_be_bytes());
    noise
        .write_message(&[], &mut response[RESPONSE_HEADER_LEN..])
        .map_err(HandshakeError::Noise)?;
    let (initiator_to_responder, responder_to_initiator) = noise.dangerously_get_raw_split();

    Ok(ServerHandshake {
        machine_key,
        protocol_version,
        response,
        keys: TransportKeys::from_split(initiator_to_responder, responder_to_initiator, false),
    })
}

impl ServerHandshake {
    /// The client's machine key: its authenticated identity on this connection.
    pub fn machine_key(&self) -> MachinePublic {
        self.machine_key
    }

    /// The protocol (capability) version from the initiation header,
    /// authenticated by the handshake.
    pub fn protocol_version(&self) -> u16 {
        self.protocol_version
    }

    /// The 51-byte response message, for callers that write it themselves
    /// (then build the stream with [`NoiseStream::new`] and [`Self::into_keys`]).
    pub fn response(&self) -> &[u8; RESPONSE_LEN] {
        &self.response
    }

    /// The session keys, for callers that wrote [`Self::response`] themselves.
    pub fn into_keys(self) -> TransportKeys {
        self.keys
    }

    /// Wraps the upgraded connection in the transport, with the response
    /// queued as its first bytes.
    ///
    /// Nothing is sent until the stream is written to or flushed, so the
    /// response and the early payload leave in one write, as the Go server's
    /// "corked" connection does.
    pub fn into_stream<T>(self, io: T) -> NoiseStream<T> {
        NoiseStream::with_queued(io, self.keys, &self.response)
    }
}

/// The initiator side: builds the initiation message and, given the server's
/// response, the session keys.
pub struct ClientHandshake {
    noise: snow::HandshakeState,
    initiation: [u8; INITIATION_LEN],
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake").finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts a handshake as the machine `machine_key` towards the server whose
    /// Noise key (from `/key`) is `server_key`, speaking `protocol_version`
    /// (the client's capability version, e.g. 133 for Tailscale 1.96).
    pub fn new(
        machine_key: &PrivateKey,
        server_key: &MachinePublic,
        protocol_version: u16,
    ) -> Result<Self, HandshakeError> {
        Self::with_ephemeral(machine_key, server_key, protocol_version, None)
    }

    fn with_ephemeral(
        machine_key: &PrivateKey,
        server_key: &MachinePublic,
        protocol_version: u16,
        fixed_ephemeral: Option<&[u8; 32]>,
    ) -> Result<Self, HandshakeError> {
        let prologue = prologue(protocol_version);
        let mut builder = snow::Builder::new(noise_params()?)
            .local_private_key(machine_key.as_bytes())
            .and_then(|b| b.remote_public_key(server_key.as_bytes()))
            .and_then(|b| b.prologue(prologue.as_bytes()))
            .map_err(HandshakeError::Noise)?;
        if let Some(ephemeral) = fixed_ephemeral {
            builder = builder.fixed_ephemeral_key_for_testing_only(ephemeral);
        }
        let mut noise = builder.build_initiator().map_err(HandshakeError::Noise)?;

        let mut initiation = [0u8; INITIATION_LEN];
        initiation[..2].copy_from_slice(&protocol_version.to_be_bytes());
        initiation[2] = MSG_INITIATION;
        initiation[3..INITIATION_HEADER_LEN].copy_from_slice(&INITIATION_PAYLOAD_LEN.to_be_bytes());
        noise
            .write_message(&[], &mut initiation[INITIATION_HEADER_LEN..])
            .map_err(HandshakeError::Noise)?;
        Ok(Self { noise, initiation })
    }

    /// The 101-byte message to send (base64) in `X-Tailscale-Handshake`.
    pub fn initiation(&self) -> &[u8; INITIATION_LEN] {
        &self.initiation
    }

    /// Completes the handshake with the server's 51-byte response.
    pub fn finish(
        mut self,
        response: &[u8; RESPONSE_LEN],
    ) -> Result<TransportKeys, HandshakeError> {
        if response[0] != MSG_RESPONSE {
            return Err(HandshakeError::ResponseType { found: response[0] });
        }
        let declared = u16::from_be_bytes([response[1], response[2]]);
        if declared != RESPONSE_PAYLOAD_LEN {
            return Err(HandshakeError::ResponseLength { declared });
        }
        self.noise
            .read_message(&response[RESPONSE_HEADER_LEN..], &mut [])
            .map_err(|e| match e {
                snow::Error::Decrypt => HandshakeError::ResponseDecrypt,
                other => HandshakeError::Noise(other),
            })?;
        let (initiator_to_responder, responder_to_initiator) =
            self.noise.dangerously_get_raw_split();
        Ok(TransportKeys::from_split(
            initiator_to_responder,
            responder_to_initiator,
            true,
        ))
    }

    /// Reads the server's answer from `io` (a response or an error frame) and
    /// completes the handshake. Reads exactly the answer's bytes, so records
    /// that follow it stay in `io`.
    pub async fn read_response<T: AsyncRead + Unpin>(
        self,
        io: &mut T,
    ) -> Result<TransportKeys, HandshakeError> {
        let mut response = [0u8; RESPONSE_LEN];
        io.read_exact(&mut response[..RESPONSE_HEADER_LEN])
            .await
            .map_err(HandshakeError::Io)?;
        match response[0] {
            MSG_RESPONSE => {}
            MSG_ERROR => {
                let len = usize::from(u16::from_be_bytes([response[1], response[2]]));
                let mut text = vec![0u8; len];
                io.read_exact(&mut text).await.map_err(HandshakeError::Io)?;
                return Err(HandshakeError::Refused(
                    String::from_utf8_lossy(&text).into_owned(),
                ));
            }
            found => return Err(HandshakeError::ResponseType { found }),
        }
        let declared = u16::from_be_bytes([response[1], response[2]]);
        if declared != RESPONSE_PAYLOAD_LEN {
            return Err(HandshakeError::ResponseLength { declared });
        }
        io.read_exact(&mut response[RESPONSE_HEADER_LEN..])
            .await
            .map_err(HandshakeError::Io)?;
        self.finish(&response)
    }

    /// Reads the server's answer from `io` and wraps `io` in the transport.
    pub async fn finish_on<T: AsyncRead + Unpin>(
        self,
        mut io: T,
    ) -> Result<NoiseStream<T>, HandshakeError> {
        let keys = self.read_response(&mut io).await?;
        Ok(NoiseStream::new(io, keys))
    }
}

/// The prologue binds the version from the cleartext header into the
/// handshake, so a changed version byte makes decryption fail.
fn prologue(protocol_version: u16) -> String {
    format!("{PROLOGUE_PREFIX}{protocol_version}")
}

fn noise_params() -> Result<snow::params::NoiseParams, HandshakeError> {
    NOISE_PATTERN.parse().map_err(HandshakeError::Noise)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// §2.6 of the protocol guide: fixed keys, version 133.
    pub(crate) mod vector {
        pub const CLIENT_MACHINE: [u8; 32] = [0x11; 32];
        pub const CLIENT_EPHEMERAL: [u8; 32] = [0x22; 32];
        pub const SERVER_STATIC: [u8; 32] = [0x33; 32];
        pub const SERVER_EPHEMERAL: [u8; 32] = [0x44; 32];
        pub const VERSION: u16 = 133;
        pub const CLIENT_MACHINE_PUB: &str =
            "7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13";
        pub const SERVER_STATIC_PUB: &str =
            "7b0d47d93427f8311160781c7c733fd89f88970aef490d8aa0ee19a4cb8a1b14";
        pub const INITIATION: &str = concat!(
            "00850100600faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f2061d2949213e755bc",
            "180b5d5dbbd8c50a2a1beb69f8940d24cab4606a34cd5d41d508832063cdab8eb322a57af9f2844824b54c976c",
            "bb159e27ceaa70d6147c2a"
        );
        pub const HEADER: &str = "AIUBAGAPqmhO0ohnuX9Kai3uXfjOl052twGOPyKhxM8meFcPIGHSlJIT51W8GAtdXbvYxQoqG+tp+JQNJMq0YGo0zV1B1QiDIGPNq46zIqV6+fKESCS1TJdsuxWeJ86qcNYUfCo=";
        pub const RESPONSE: &str = "020030ff2ee45601ec1b67310c7790404585ae697331eee1c1f8cf2419731c1fff3e6babcaadc63925c89481ae4ec38564aae6";
        pub const K1: &str = "d9811dd6a320dc8484bb37ea989640c99f99a8582f50b829e347bd75da510717";
        pub const K2: &str = "8561e3fd4551ed82ee22220925e41e923d64b1c04b856f8ec1eaa544a511a427";
    }

    pub(crate) fn vector_client() -> ClientHandshake {
        let server_pub = PrivateKey::from_bytes(vector::SERVER_STATIC).machine_public();
        ClientHandshake::with_ephemeral(
            &PrivateKey::from_bytes(vector::CLIENT_MACHINE),
            &server_pub,
            vector::VERSION,
            Some(&vector::CLIENT_EPHEMERAL),
        )
        .unwrap()
    }

    pub(crate) fn vector_server(initiation: &[u8]) -> ServerHandshake {
        accept_with_ephemeral(
            &PrivateKey::from_bytes(vector::SERVER_STATIC),
            initiation,
            Some(&vector::SERVER_EPHEMERAL),
        )
        .unwrap()
    }

    #[test]
    fn test_vector_keys() {
        assert_eq!(
            PrivateKey::from_bytes(vector::CLIENT_MACHINE)
                .machine_public()
                .hex(),
            vector::CLIENT_MACHINE_PUB
        );
        assert_eq!(
            PrivateKey::from_bytes(vector::SERVER_STATIC)
                .machine_public()
                .hex(),
            vector::SERVER_STATIC_PUB
        );
    }

    #[test]
    fn test_vector_initiation_is_byte_exact() {
        let client = vector_client();
        assert_eq!(hex::encode(client.initiation()), vector::INITIATION);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(client.initiation()),
            vector::HEADER
        );
    }

    #[test]
    fn test_vector_server_side() {
        let init = decode_handshake_header(vector::HEADER.as_bytes()).unwrap();
        let server = vector_server(&init);
        assert_eq!(server.protocol_version(), 133);
        assert_eq!(server.machine_key().hex(), vector::CLIENT_MACHINE_PUB);
        assert_eq!(hex::encode(server.response()), vector::RESPONSE);
        let keys = server.into_keys();
        // The server receives with k1 and sends with k2.
        assert_eq!(hex::encode(keys.receive), vector::K1);
        assert_eq!(hex::encode(keys.send), vector::K2);
    }

    #[test]
    fn test_vector_client_finishes_with_the_response() {
        let response: [u8; RESPONSE_LEN] =
            hex::decode(vector::RESPONSE).unwrap().try_into().unwrap();
        let keys = vector_client().finish(&response).unwrap();
        assert_eq!(hex::encode(keys.send), vector::K1);
        assert_eq!(hex::encode(keys.receive), vector::K2);
    }

    #[test]
    fn random_keys_agree_on_both_sides() {
        let server_key = PrivateKey::generate();
        let machine_key = PrivateKey::generate();
        let client = ClientHandshake::new(&machine_key, &server_key.machine_public(), 109).unwrap();
        let server = accept(&server_key, client.initiation()).unwrap();
        assert_eq!(server.machine_key(), machine_key.machine_public());
        assert_eq!(server.protocol_version(), 109);
        let response = *server.response();
        let server_keys = server.into_keys();
        let client_keys = client.finish(&response).unwrap();
        assert_eq!(client_keys.send, server_keys.receive);
        assert_eq!(client_keys.receive, server_keys.send);
        assert_ne!(client_keys.send, client_keys.receive);
    }

    fn vector_initiation() -> Vec<u8> {
        hex::decode(vector::INITIATION).unwrap()
    }

    fn server_key() -> PrivateKey {
        PrivateKey::from_bytes(vector::SERVER_STATIC)
    }

    #[test]
    fn initiation_of_the_wrong_size_is_refused() {
        let mut init = vector_initiation();
        init.push(0);
        assert!(matches!(
            accept(&server_key(), &init),
            Err(HandshakeError::InitiationSize { len: 102 })
        ));
        assert!(matches!(
            accept(&server_key(), &init[..100]),
            Err(HandshakeError::InitiationSize { len: 100 })
        ));
        assert!(matches!(
            accept(&server_key(), &[]),
            Err(HandshakeError::InitiationSize { len: 0 })
        ));
    }

    #[test]
    fn initiation_with_the_wrong_type_is_refused() {
        let mut init = vector_initiation();
        init[2] = 0x04;
        let err = accept(&server_key(), &init).unwrap_err();
        assert!(
            matches!(err, HandshakeError::InitiationType { found: 0x04 }),
            "{err}"
        );
        assert!(err.to_string().contains("0x04"), "{err}");
    }

    #[test]
    fn initiation_with_the_wrong_length_field_is_refused() {
        let mut init = vector_initiation();
        init[4] = 0x61;
        assert!(matches!(
            accept(&server_key(), &init),
            Err(HandshakeError::InitiationLength { declared: 97 })
        ));
    }

    #[test]
    fn tampered_or_misdirected_initiation_does_not_decrypt() {
        // A flipped bit in the encrypted machine key.
        let mut init = vector_initiation();
        init[50] ^= 1;
        assert!(matches!(
            accept(&server_key(), &init),
            Err(HandshakeError::InitiationDecrypt)
        ));
        // A changed version: the prologue no longer matches.
        let mut init = vector_initiation();
        init[1] = 0x84;
        assert!(matches!(
            accept(&server_key(), &init),
            Err(HandshakeError::InitiationDecrypt)
        ));
        // Encrypted to another server key.
        assert!(matches!(
            accept(&PrivateKey::generate(), &vector_initiation()),
            Err(HandshakeError::InitiationDecrypt)
        ));
        // Random bytes behind a valid header.
        let mut init = vector_initiation();
        for (i, b) in init[5..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        assert!(matches!(
            accept(&server_key(), &init),
            Err(HandshakeError::InitiationDecrypt)
        ));
    }

    /// A Curve25519 implementation for the test initiator whose static key is
    /// the all-zero (low-order) point: its public key is zero and every
    /// exchange with it yields zero, which is what the server computes too.
    struct LowOrderStatic {
        real: Box<dyn snow::types::Dh>,
        forged: bool,
    }

    impl snow::types::Dh for LowOrderStatic {
        fn name(&self) -> &'static str {
            self.real.name()
        }
        fn pub_len(&self) -> usize {
            32
        }
        fn priv_len(&self) -> usize {
            32
        }
        fn set(&mut self, _privkey: &[u8]) {
            // Only the static key is set from outside; the ephemeral is generated.
            self.forged = true;
        }
        fn generate(&mut self, rng: &mut dyn snow::types::Random) -> Result<(), snow::Error> {
            self.real.generate(rng)
        }
        fn pubkey(&self) -> &[u8] {
            if self.forged {
                &[0; 32]
            } else {
                self.real.pubkey()
            }
        }
        fn privkey(&self) -> &[u8] {
            self.real.privkey()
        }
        fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
            if self.forged {
                out[..32].fill(0);
                Ok(())
            } else {
                self.real.dh(pubkey, out)
            }
        }
    }

    struct ForgingResolver;

    impl snow::resolvers::CryptoResolver for ForgingResolver {
        fn resolve_rng(&self) -> Option<Box<dyn snow::types::Random>> {
            snow::resolvers::DefaultResolver.resolve_rng()
        }
        fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn snow::types::Dh>> {
            let real = snow::resolvers::DefaultResolver.resolve_dh(choice)?;
            Some(Box::new(LowOrderStatic {
                real,
                forged: false,
            }))
        }
        fn resolve_hash(
            &self,
            choice: &snow::params::HashChoice,
        ) -> Option<Box<dyn snow::types::Hash>> {
            snow::resolvers::DefaultResolver.resolve_hash(choice)
        }
        fn resolve_cipher(
            &self,
            choice: &snow::params::CipherChoice,
        ) -> Option<Box<dyn snow::types::Cipher>> {
            snow::resolvers::DefaultResolver.resolve_cipher(choice)
        }
    }

    #[test]
    fn low_order_machine_key_is_refused() {
        let server = server_key();
        let mut noise =
            snow::Builder::with_resolver(noise_params().unwrap(), Box::new(ForgingResolver))
                .local_private_key(&[1; 32])
                .unwrap()
                .remote_public_key(&server.public_bytes())
                .unwrap()
                .prologue(prologue(133).as_bytes())
                .unwrap()
                .build_initiator()
                .unwrap();
        let mut init = [0u8; INITIATION_LEN];
        init[..2].copy_from_slice(&133u16.to_be_bytes());
        init[2] = MSG_INITIATION;
        init[3..5].copy_from_slice(&96u16.to_be_bytes());
        noise.write_message(&[], &mut init[5..]).unwrap();
        // The forged initiation decrypts (it needed no private key)…
        let err = accept(&server, &init).unwrap_err();
        // …and is refused for what it is.
        assert!(
            matches!(err, HandshakeError::LowOrderMachineKey(k) if k.is_zero()),
            "{err}"
        );
    }

    #[test]
    fn bad_base64_header_is_refused() {
        assert!(matches!(
            decode_handshake_header(b"not base64!"),
            Err(HandshakeError::HeaderBase64(_))
        ));
        // Unpadded base64 is not what the client sends.
        let unpadded = vector::HEADER.trim_end_matches('=');
        assert!(decode_handshake_header(unpadded.as_bytes()).is_err());
    }

    #[test]
    fn client_refuses_wrong_responses() {
        let server = vector_server(&vector_initiation());
        let mut response = *server.response();
        response[0] = 0x04;
        assert!(matches!(
            vector_client().finish(&response),
            Err(HandshakeError::ResponseType { found: 0x04 })
        ));
        let mut response = *server.response();
        response[2] = 0x31;
        assert!(matches!(
            vector_client().finish(&response),
            Err(HandshakeError::ResponseLength { declared: 0x31 })
        ));
        let mut response = *server.response();
        response[40] ^= 0x80;
        assert!(matches!(
            vector_client().finish(&response),
            Err(HandshakeError::ResponseDecrypt)
        ));
    }

    #[test]
    fn error_frame_layout_and_cut() {
        assert_eq!(error_frame("too old"), b"\x03\x00\x07too old");
        let long = "x".repeat(70_000);
        let frame = error_frame(&long);
        assert_eq!(frame.len(), 3 + 65_535);
        assert_eq!(&frame[..3], &[0x03, 0xff, 0xff]);
    }

    #[tokio::test]
    async fn client_reads_error_frame_as_refusal() {
        let mut io: &[u8] = &error_frame("client capability version 100 is too old");
        let err = vector_client().read_response(&mut io).await.unwrap_err();
        match err {
            HandshakeError::Refused(text) => {
                assert_eq!(text, "client capability version 100 is too old")
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[tokio::test]
    async fn client_reads_response_and_leaves_following_bytes() {
        let server = vector_server(&vector_initiation());
        let mut wire = server.response().to_vec();
        wire.extend_from_slice(b"next");
        let mut io: &[u8] = &wire;
        let keys = vector_client().read_response(&mut io).await.unwrap();
        assert_eq!(hex::encode(keys.receive), vector::K2);
        assert_eq!(io, b"next");
    }

    #[tokio::test]
    async fn truncated_response_is_an_io_error() {
        let server = vector_server(&vector_initiation());
        let mut io: &[u8] = &server.response()[..30];
        assert!(matches!(
            vector_client().read_response(&mut io).await,
            Err(HandshakeError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
        ));
    }

    #[test]
    fn debug_output_hides_keys() {
        let server = vector_server(&vector_initiation());
        let text = format!("{server:?}");
        assert!(text.contains("<redacted>"));
        assert!(!text.contains(&vector::K1[..16]));
    }
}
