//! STUN (RFC 5389) binding requests and responses, the STUN server that tells
//! clients their public address, and a one-shot query for tests.
//!
//! Tailscale clients send a 20-byte header, a SOFTWARE attribute and a
//! FINGERPRINT; the answer is a binding success with XOR-MAPPED-ADDRESS,
//! echoing the transaction id, sent to the address the request came from.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::net::UdpSocket;

/// The STUN port clients use when the DERP map says 0.
pub const DEFAULT_PORT: u16 = 3478;

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const BINDING_SUCCESS: [u8; 2] = [0x01, 0x01];
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// Some servers send XOR-MAPPED-ADDRESS with this (comprehension-optional) type.
const ATTR_XOR_MAPPED_ADDRESS_ALT: u16 = 0x8020;
const ATTR_SOFTWARE: u16 = 0x8022;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// What Tailscale clients put in SOFTWARE (8 bytes: no padding).
const SOFTWARE: &[u8; 8] = b"tailnode";

/// A STUN transaction id.
pub type TxId = [u8; 12];

/// A datagram that is not a usable STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("not a STUN message (shorter than 20 bytes, bad leading bits or no magic cookie)")]
    NotStun,
    #[error("STUN message is not a binding request")]
    NotBindingRequest,
    #[error("STUN message is not a binding success response")]
    NotSuccessResponse,
    #[error("STUN attributes are malformed or truncated")]
    MalformedAttributes,
    #[error("STUN FINGERPRINT does not match the message")]
    BadFingerprint,
    #[error("STUN response has no usable mapped address")]
    NoMappedAddress,
}

/// Whether `b` looks like a STUN message (length, leading zero bits, magic cookie).
pub fn is_stun(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN && b[0] & 0b1100_0000 == 0 && b[4..8] == MAGIC_COOKIE
}

fn fingerprint(b: &[u8]) -> u32 {
    crc32fast::hash(b) ^ FINGERPRINT_XOR
}

fn tx_id(b: &[u8]) -> TxId {
    let mut tx = [0u8; 12];
    tx.copy_from_slice(&b[8..HEADER_LEN]);
    tx
}

/// Calls `f(type, value, offset_of_attribute)` for each attribute in `attrs`.
fn for_each_attr(
    attrs: &[u8],
    mut f: impl FnMut(u16, &[u8], usize) -> Result<(), StunError>,
) -> Result<(), StunError> {
    let mut at = 0;
    while at < attrs.len() {
        let h = attrs
            .get(at..at + 4)
            .ok_or(StunError::MalformedAttributes)?;
        let t = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
        let padded = (len + 3) & !3;
        let value = attrs
            .get(at + 4..at + 4 + len)
            .ok_or(StunError::MalformedAttributes)?;
        if at + 4 + padded > attrs.len() {
            return Err(StunError::MalformedAttributes);
        }
        f(t, value, at)?;
        at += 4 + padded;
    }
    Ok(())
}

/// A binding request as Tailscale clients send it (SOFTWARE + FINGERPRINT).
pub fn binding_request(tx: TxId) -> Vec<u8> {
    let attrs_len = (4 + SOFTWARE.len() + 8) as u16;
    let mut b = Vec::with_capacity(HEADER_LEN + usize::from(attrs_len));
    b.extend_from_slice(&BINDING_REQUEST);
    b.extend_from_slice(&attrs_len.to_be_bytes());
    b.extend_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&tx);
    b.extend_from_slice(&ATTR_SOFTWARE.to_be_bytes());
    b.extend_from_slice(&(SOFTWARE.len() as u16).to_be_bytes());
    b.extend_from_slice(SOFTWARE);
    let fp = fingerprint(&b);
    b.extend_from_slice(&ATTR_FINGERPRINT.to_be_bytes());
    b.extend_from_slice(&4u16.to_be_bytes());
    b.extend_from_slice(&fp.to_be_bytes());
    b
}

/// The transaction id of a well-formed binding request.
///
/// SOFTWARE is not required (any STUN client may ask), but a FINGERPRINT, when
/// present, must be the last attribute and must match.
pub fn parse_binding_request(b: &[u8]) -> Result<TxId, StunError> {
    if !is_stun(b) {
        return Err(StunError::NotStun);
    }
    if b[..2] != BINDING_REQUEST {
        return Err(StunError::NotBindingRequest);
    }
    let declared = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let attrs = b
        .get(HEADER_LEN..HEADER_LEN + declared)
        .ok_or(StunError::MalformedAttributes)?;
    for_each_attr(attrs, |t, value, at| {
        if t != ATTR_FINGERPRINT {
            return Ok(());
        }
        let end = HEADER_LEN + at + 8;
        if value.len() != 4 || end != HEADER_LEN + attrs.len() {
            return Err(StunError::BadFingerprint);
        }
        let got = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
        if got != fingerprint(&b[..HEADER_LEN + at]) {
            return Err(StunError::BadFingerprint);
        }
        Ok(())
    })?;
    Ok(tx_id(b))
}

/// A binding success carrying `addr` in XOR-MAPPED-ADDRESS (IPv4-mapped IPv6
/// addresses are answered as IPv4).
pub fn binding_response(tx: TxId, addr: SocketAddr) -> Vec<u8> {
    let ip = canonical_ip(addr.ip());
    let (family, ip_bytes): (u8, Vec<u8>) = match ip {
        IpAddr::V4(v4) => (0x01, v4.octets().to_vec()),
        IpAddr::V6(v6) => (0x02, v6.octets().to_vec()),
    };
    let attr_len = 4 + ip_bytes.len();
    let mut b = Vec::with_capacity(HEADER_LEN + 4 + attr_len);
    b.extend_from_slice(&BINDING_SUCCESS);
    b.extend_from_slice(&((4 + attr_len) as u16).to_be_bytes());
    b.extend_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(&tx);
    b.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    b.extend_from_slice(&(attr_len as u16).to_be_bytes());
    b.push(0);
    b.push(family);
    b.extend_from_slice(&(addr.port() ^ 0x2112).to_be_bytes());
    let mask = xor_mask(&tx);
    b.extend(ip_bytes.iter().zip(mask).map(|(a, m)| a ^ m));
    b
}

/// Cookie followed by the transaction id: what mapped addresses are XORed with.
fn xor_mask(tx: &TxId) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..4].copy_from_slice(&MAGIC_COOKIE);
    m[4..].copy_from_slice(tx);
    m
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn parse_address(value: &[u8], mask: Option<&[u8; 16]>) -> Result<SocketAddr, StunError> {
    if value.len() < 4 {
        return Err(StunError::MalformedAttributes);
    }
    let mut port = u16::from_be_bytes([value[2], value[3]]);
    let len = match value[1] {
        0x01 => 4,
        0x02 => 16,
        _ => return Err(StunError::MalformedAttributes),
    };
    let mut raw: Vec<u8> = value
        .get(4..4 + len)
        .ok_or(StunError::MalformedAttributes)?
        .to_vec();
    if let Some(mask) = mask {
        port ^= 0x2112;
        raw.iter_mut().zip(mask).for_each(|(a, m)| *a ^= m);
    }
    let ip = match <[u8; 4]>::try_from(&raw[..]) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => {
            let v6: [u8; 16] = raw.try_into().map_err(|_| StunError::MalformedAttributes)?;
            canonical_ip(IpAddr::V6(Ipv6Addr::from(v6)))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// The transaction id and mapped address of a binding success (XOR-MAPPED-ADDRESS
/// preferred, MAPPED-ADDRESS as a fallback).
pub fn parse_binding_response(b: &[u8]) -> Result<(TxId, SocketAddr), StunError> {
    if !is_stun(b) {
        return Err(StunError::NotStun);
    }
    if b[..2] != BINDING_SUCCESS {
        return Err(StunError::NotSuccessResponse);
    }
    let tx = tx_id(b);
    let declared = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let attrs = b
        .get(HEADER_LEN..HEADER_LEN + declared)
        .ok_or(StunError::MalformedAttributes)?;
    let mask = xor_mask(&tx);
    let (mut xor_mapped, mut mapped) = (None, None);
    for_each_attr(attrs, |t, value, _| {
        match t {
            ATTR_XOR_MAPPED_ADDRESS | ATTR_XOR_MAPPED_ADDRESS_ALT => {
                xor_mapped = Some(parse_address(value, Some(&mask))?)
            }
            ATTR_MAPPED_ADDRESS => mapped = Some(parse_address(value, None)?),
            _ => {}
        }
        Ok(())
    })?;
    xor_mapped
        .or(mapped)
        .map(|a| (tx, a))
        .ok_or(StunError::NoMappedAddress)
}

/// Counters of a STUN server.
#[derive(Debug, Default)]
pub struct StunStats {
    requests_ipv4: AtomicU64,
    requests_ipv6: AtomicU64,
    not_stun: AtomicU64,
    read_errors: AtomicU64,
    write_errors: AtomicU64,
}

/// A snapshot of [`StunStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StunStatsSnapshot {
    /// Binding requests answered, by address family of the requester.
    pub requests_ipv4: u64,
    pub requests_ipv6: u64,
    /// Datagrams ignored as not being a valid binding request.
    pub not_stun: u64,
    pub read_errors: u64,
    pub write_errors: u64,
}

impl StunStats {
    pub fn snapshot(&self) -> StunStatsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StunStatsSnapshot {
            requests_ipv4: l(&self.requests_ipv4),
            requests_ipv6: l(&self.requests_ipv6),
            not_stun: l(&self.not_stun),
            read_errors: l(&self.read_errors),
            write_errors: l(&self.write_errors),
        }
    }
}

/// Answers binding requests on `socket` until `shutdown` resolves.
pub async fn serve_stun(socket: UdpSocket, shutdown: impl Future<Output = ()>) -> io::Result<()> {
    serve_stun_with_stats(socket, Arc::new(StunStats::default()), shutdown).await
}

/// [`serve_stun`] counting into `stats`.
pub async fn serve_stun_with_stats(
    socket: UdpSocket,
    stats: Arc<StunStats>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 << 10];
    tokio::pin!(shutdown);
    loop {
        let (n, from) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                Err(e) => {
                    stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "STUN receive failed");
                    // Errors such as ICMP-induced refusals are transient; do not spin on them.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(tx) = parse_binding_request(&buf[..n]) else {
            stats.not_stun.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let counter = match canonical_ip(from.ip()) {
            IpAddr::V4(_) => &stats.requests_ipv4,
            IpAddr::V6(_) => &stats.requests_ipv6,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let reply = binding_response(tx, from);
        if let Err(e) = socket.send_to(&reply, from).await {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, error = %e, "STUN reply failed");
        }
    }
}

/// Asks `server` for this socket's mapped address (one request, answers with
/// another transaction id are skipped until `timeout`).
pub async fn stun_query(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> io::Result<SocketAddr> {
    let tx: TxId = rand::random();
    socket.send_to(&binding_request(tx), server).await?;
    let mut buf = [0u8; 1500];
    tokio::time::timeout(timeout, async {
        loop {
            let (n, from) = socket.recv_from(&mut buf).await?;
            if from != server {
                continue;
            }
            if let Ok((got_tx, addr)) = parse_binding_response(&buf[..n])
                && got_tx == tx
            {
                return Ok(addr);
            }
        }
    })
    .await
    .map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no STUN answer from {server} within {timeout:?}"),
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    const TX: TxId = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

    #[test]
    fn request_has_the_tailscale_layout() {
        let r = binding_request(TX);
        assert_eq!(r.len(), 40);
        assert_eq!(&r[..8], &[0x00, 0x01, 0x00, 0x14, 0x21, 0x12, 0xa4, 0x42]);
        assert_eq!(&r[8..20], &TX);
        assert_eq!(&r[20..24], &[0x80, 0x22, 0x00, 0x08]);
        assert_eq!(&r[24..32], b"tailnode");
        assert_eq!(&r[32..36], &[0x80, 0x28, 0x00, 0x04]);
        let fp = crc32fast::hash(&r[..32]) ^ 0x5354_554e;
        assert_eq!(&r[36..], &fp.to_be_bytes());
        assert_eq!(parse_binding_request(&r), Ok(TX));
    }

    #[test]
    fn requests_without_attributes_are_fine_but_bad_fingerprints_are_not() {
        let mut plain = binding_request(TX)[..20].to_vec();
        plain[2..4].copy_from_slice(&[0, 0]);
        assert_eq!(parse_binding_request(&plain), Ok(TX));
        let mut bad = binding_request(TX);
        bad[39] ^= 1;
        assert_eq!(parse_binding_request(&bad), Err(StunError::BadFingerprint));
    }

    #[test]
    fn junk_and_truncation_are_rejected() {
        let r = binding_request(TX);
        assert_eq!(parse_binding_request(&r[..19]), Err(StunError::NotStun));
        assert_eq!(
            parse_binding_request(&r[..30]),
            Err(StunError::MalformedAttributes)
        );
        assert_eq!(
            parse_binding_request(b"GET / HTTP/1.1\r\nHost: x\r\n"),
            Err(StunError::NotStun)
        );
        let mut not_req = r.clone();
        not_req[1] = 0x02;
        assert_eq!(
            parse_binding_request(&not_req),
            Err(StunError::NotBindingRequest)
        );
        let mut odd = r.clone();
        odd[22..24].copy_from_slice(&[0xff, 0xff]);
        assert_eq!(
            parse_binding_request(&odd),
            Err(StunError::MalformedAttributes)
        );
    }

    #[test]
    fn response_xors_address_and_round_trips() {
        let v4: SocketAddr = "192.0.2.1:41641".parse().unwrap();
        let r = binding_response(TX, v4);
        assert_eq!(r.len(), 32);
        assert_eq!(&r[..4], &[0x01, 0x01, 0x00, 0x0c]);
        assert_eq!(&r[20..26], &[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
        assert_eq!(u16::from_be_bytes([r[26], r[27]]), 41641 ^ 0x2112);
        assert_eq!(&r[28..32], &[192 ^ 0x21, 0x12, 2 ^ 0xa4, 1 ^ 0x42]);
        assert_eq!(parse_binding_response(&r), Ok((TX, v4)));

        let v6: SocketAddr = "[2001:db8::5]:3478".parse().unwrap();
        let r = binding_response(TX, v6);
        assert_eq!(r.len(), 44);
        assert_eq!(&r[2..4], &[0x00, 0x18]);
        assert_eq!(r[25], 0x02);
        assert_eq!(parse_binding_response(&r), Ok((TX, v6)));

        let mapped: SocketAddr = "[::ffff:192.0.2.1]:41641".parse().unwrap();
        assert_eq!(
            parse_binding_response(&binding_response(TX, mapped)),
            Ok((TX, v4))
        );
    }

    #[test]
    fn plain_mapped_address_is_a_fallback() {
        let mut r = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        r.extend_from_slice(&TX);
        r.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x0d, 0x96, 10, 0, 0, 1]);
        assert_eq!(
            parse_binding_response(&r),
            Ok((TX, "10.0.0.1:3478".parse().unwrap()))
        );
    }
}
