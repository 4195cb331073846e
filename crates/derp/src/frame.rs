//! DERP wire framing: `type (1 byte) | length (u32 big-endian) | payload`.
//!
//! This module knows the frame types, their payload layouts and the size limits
//! both sides enforce. It does no routing and holds no connection state.

use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use headway_proto::keys::NodePublic;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes that open the server-key frame: "DERP" followed by U+1F511 (a key) in UTF-8.
pub const MAGIC: [u8; 8] = *b"DERP\xF0\x9F\x94\x91";
/// The protocol version spoken here: source keys are carried in `RecvPacket`.
pub const PROTOCOL_VERSION: u32 = 2;
/// Length of a Curve25519 public key on the wire.
pub const KEY_LEN: usize = 32;
/// Length of a NaCl box nonce.
pub const NONCE_LEN: usize = 24;
/// Length of a frame header.
pub const HEADER_LEN: usize = 5;
/// Largest packet a client may relay (the bytes after the destination key).
pub const MAX_PACKET_SIZE: usize = 64 << 10;
/// Largest `ClientInfo` payload the server reads from a not yet trusted client.
pub const MAX_CLIENT_INFO_LEN: u32 = 256 << 10;
/// Largest frame a client accepts from a server.
pub const MAX_SERVER_FRAME_LEN: u32 = 1 << 20;
/// Largest `Ping` payload the server accepts (8 bytes are used, the rest is skipped).
pub const MAX_PING_LEN: u32 = 1000;
/// How often a server sends `KeepAlive` at least (plus jitter); clients time out after twice that.
pub const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Length of the `PeerPresent` payload this server sends: key, IPv6-mapped address, port, flags.
pub const PEER_PRESENT_LEN: usize = KEY_LEN + 16 + 2 + 1;

/// Prefix of a disco message ("TS" followed by U+1F4AC in UTF-8).
const DISCO_MAGIC: &[u8; 6] = b"TS\xF0\x9F\x92\xAC";

/// The one-byte frame type. Unknown values are kept, so that they can be skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameType(pub u8);

impl FrameType {
    /// S→C: magic + server public key.
    pub const SERVER_KEY: Self = Self(0x01);
    /// C→S: client public key + nonce + sealed `ClientInfo` JSON.
    pub const CLIENT_INFO: Self = Self(0x02);
    /// S→C: nonce + sealed `ServerInfo` JSON.
    pub const SERVER_INFO: Self = Self(0x03);
    /// C→S: destination key + packet.
    pub const SEND_PACKET: Self = Self(0x04);
    /// S→C: source key + packet.
    pub const RECV_PACKET: Self = Self(0x05);
    /// S→C: no payload.
    pub const KEEP_ALIVE: Self = Self(0x06);
    /// C→S: one byte, 1 if this server is the client's home.
    pub const NOTE_PREFERRED: Self = Self(0x07);
    /// S→C: key of a peer that is gone + reason byte.
    pub const PEER_GONE: Self = Self(0x08);
    /// S→mesh watcher: key of a peer that connected (+ address, port, flags).
    pub const PEER_PRESENT: Self = Self(0x09);
    /// Mesh→S: source key + destination key + packet.
    pub const FORWARD_PACKET: Self = Self(0x0a);
    /// Mesh→S: subscribe to connection changes (mesh key required).
    pub const WATCH_CONNS: Self = Self(0x10);
    /// Mesh→S: close the connections of a key (mesh key required).
    pub const CLOSE_PEER: Self = Self(0x11);
    /// Both ways: 8 bytes to echo back in a `Pong`.
    pub const PING: Self = Self(0x12);
    /// Both ways: the 8 bytes of the `Ping` being answered.
    pub const PONG: Self = Self(0x13);
    /// S→C: text of a connection problem, empty when healthy again.
    pub const HEALTH: Self = Self(0x14);
    /// S→C: reconnect-in and try-for durations in milliseconds (u32 big-endian each).
    pub const RESTARTING: Self = Self(0x15);
}

/// Why a server says a peer is not reachable through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerGoneReason {
    /// The peer was connected and has disconnected.
    Disconnected,
    /// The server has no connection for that key.
    NotHere,
    /// A reason this version does not know.
    Other(u8),
}

impl PeerGoneReason {
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Disconnected => 0x00,
            Self::NotHere => 0x01,
            Self::Other(b) => b,
        }
    }

    pub fn from_byte(b: u8) -> Self {
        match b {
            0x00 => Self::Disconnected,
            0x01 => Self::NotHere,
            other => Self::Other(other),
        }
    }
}

/// Bits of the flags byte that follows a `PeerPresent` frame.
pub mod peer_present_flags {
    pub const REGULAR: u8 = 1 << 0;
    pub const MESH_PEER: u8 = 1 << 1;
    pub const PROBER: u8 = 1 << 2;
    pub const NOT_IDEAL: u8 = 1 << 3;
}

/// A frame header.
pub fn header(frame_type: FrameType, len: u32) -> [u8; HEADER_LEN] {
    let l = len.to_be_bytes();
    [frame_type.0, l[0], l[1], l[2], l[3]]
}

/// Reads a frame header. A clean end of stream before its first byte is `UnexpectedEof`.
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<(FrameType, u32)> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h).await?;
    Ok((
        FrameType(h[0]),
        u32::from_be_bytes([h[1], h[2], h[3], h[4]]),
    ))
}

/// Reads and discards `len` payload bytes (frames that are not understood are skipped).
pub async fn skip<R: AsyncRead + Unpin>(r: &mut R, len: u32) -> io::Result<()> {
    let copied = tokio::io::copy(&mut r.take(u64::from(len)), &mut tokio::io::sink()).await?;
    if copied < u64::from(len) {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Writes a whole frame (not flushed).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame_type: FrameType,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "DERP frame larger than 4 GiB"))?;
    w.write_all(&header(frame_type, len)).await?;
    w.write_all(payload).await
}

/// Payload of the server-key frame.
pub fn server_key_payload(server_key: &NodePublic) -> [u8; MAGIC.len() + KEY_LEN] {
    let mut b = [0u8; MAGIC.len() + KEY_LEN];
    b[..MAGIC.len()].copy_from_slice(&MAGIC);
    b[MAGIC.len()..].copy_from_slice(server_key.as_bytes());
    b
}

/// Payload of a `PeerGone` frame.
pub fn peer_gone_payload(peer: &NodePublic, reason: PeerGoneReason) -> [u8; KEY_LEN + 1] {
    let mut b = [0u8; KEY_LEN + 1];
    b[..KEY_LEN].copy_from_slice(peer.as_bytes());
    b[KEY_LEN] = reason.to_byte();
    b
}

/// Payload of a `PeerPresent` frame: key, address as 16 bytes (IPv4-mapped), port, flags.
pub fn peer_present_payload(
    peer: &NodePublic,
    addr: Option<SocketAddr>,
    flags: u8,
) -> [u8; PEER_PRESENT_LEN] {
    let mut b = [0u8; PEER_PRESENT_LEN];
    b[..KEY_LEN].copy_from_slice(peer.as_bytes());
    if let Some(addr) = addr {
        let ip16 = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        b[KEY_LEN..KEY_LEN + 16].copy_from_slice(&ip16.octets());
        b[KEY_LEN + 16..KEY_LEN + 18].copy_from_slice(&addr.port().to_be_bytes());
    }
    b[KEY_LEN + 18] = flags;
    b
}

/// A parsed `PeerPresent` payload. Older servers send only the key, or no flags.
pub fn parse_peer_present(b: &[u8]) -> Option<(NodePublic, Option<SocketAddr>, u8)> {
    let key = key_at(b, 0)?;
    let addr = b.get(KEY_LEN..KEY_LEN + 18).map(|a| {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&a[..16]);
        let ip = Ipv6Addr::from(ip);
        let ip = ip.to_ipv4_mapped().map_or(IpAddr::V6(ip), IpAddr::V4);
        SocketAddr::new(ip, u16::from_be_bytes([a[16], a[17]]))
    });
    let flags = b.get(KEY_LEN + 18).copied().unwrap_or(0);
    Some((key, addr, flags))
}

/// The key stored at `b[at..at + 32]`, if the slice is long enough.
pub fn key_at(b: &[u8], at: usize) -> Option<NodePublic> {
    let raw: [u8; KEY_LEN] = b.get(at..at + KEY_LEN)?.try_into().ok()?;
    Some(NodePublic::from_bytes(raw))
}

/// Whether a relayed packet looks like an encrypted disco message (magic, disco key, nonce).
///
/// Such packets set up direct paths; they are queued with priority and only they
/// trigger `PeerGone(NotHere)` replies.
pub fn looks_like_disco(packet: &[u8]) -> bool {
    packet.len() >= DISCO_MAGIC.len() + KEY_LEN + NONCE_LEN && packet.starts_with(DISCO_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_derp_and_key_emoji() {
        assert_eq!(MAGIC, [0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91]);
        assert_eq!(std::str::from_utf8(&MAGIC).unwrap(), "DERP🔑");
    }

    #[test]
    fn header_is_type_and_big_endian_length() {
        assert_eq!(header(FrameType::SEND_PACKET, 0x0102_0304), [4, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn frames_round_trip_and_unknown_ones_are_skipped() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FrameType(0x7f), b"ignored")
            .await
            .unwrap();
        write_frame(&mut buf, FrameType::PING, &[1, 2, 3, 4, 5, 6, 7, 8])
            .await
            .unwrap();
        let mut r = &buf[..];
        let (t, len) = read_header(&mut r).await.unwrap();
        assert_eq!((t, len), (FrameType(0x7f), 7));
        skip(&mut r, len).await.unwrap();
        let (t, len) = read_header(&mut r).await.unwrap();
        assert_eq!((t, len), (FrameType::PING, 8));
        let mut p = [0u8; 8];
        r.read_exact(&mut p).await.unwrap();
        assert_eq!(p, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(read_header(&mut r).await.is_err());
    }

    #[tokio::test]
    async fn skipping_past_the_end_is_an_error() {
        let mut r: &[u8] = &[1, 2, 3];
        assert_eq!(
            skip(&mut r, 4).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn server_key_and_peer_gone_layouts() {
        let k = NodePublic::from_bytes([7; 32]);
        let p = server_key_payload(&k);
        assert_eq!(&p[..8], &MAGIC);
        assert_eq!(&p[8..], &[7; 32]);
        let g = peer_gone_payload(&k, PeerGoneReason::NotHere);
        assert_eq!(g.len(), 33);
        assert_eq!(g[32], 1);
        assert_eq!(PeerGoneReason::from_byte(0), PeerGoneReason::Disconnected);
        assert_eq!(PeerGoneReason::from_byte(0xf0), PeerGoneReason::Other(0xf0));
    }

    #[test]
    fn peer_present_round_trips_v4_and_v6() {
        let k = NodePublic::from_bytes([9; 32]);
        for addr in ["192.0.2.7:41641", "[2001:db8::1]:3478"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let p = peer_present_payload(&k, Some(addr), peer_present_flags::REGULAR);
            assert_eq!(p.len(), 51);
            assert_eq!(parse_peer_present(&p), Some((k, Some(addr), 1)));
        }
        // An old server's key-only frame.
        assert_eq!(parse_peer_present(&[9; 32]), Some((k, None, 0)));
        assert_eq!(parse_peer_present(&[9; 31]), None);
    }

    #[test]
    fn disco_detection_needs_magic_and_minimum_length() {
        let mut p = DISCO_MAGIC.to_vec();
        p.resize(62, 0);
        assert!(looks_like_disco(&p));
        assert!(!looks_like_disco(&p[..61]));
        p[0] = b'X';
        assert!(!looks_like_disco(&p));
    }
}
