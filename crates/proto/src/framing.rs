//! Framing of the `/machine/map` response stream.
//!
//! Each message is `u32 little-endian length | payload`, where the payload is
//! the JSON `MapResponse`, zstd-compressed when the request asked for
//! `Compress: "zstd"` (1.96 always does). Every frame is compressed on its own,
//! so one encoded frame can be sent unchanged to many sessions.

use bytes::{BufMut, Bytes, BytesMut};

use crate::tailcfg::MapResponse;

/// Messages larger than this are refused by the client; we never build one.
pub const MAX_MESSAGE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("map response JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("zstd compression failed: {0}")]
    Zstd(std::io::Error),
    #[error("map response of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
}

/// How a session wants its payloads encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Zstd,
}

impl Compression {
    pub fn from_request(compress: &str) -> Self {
        if compress == "zstd" {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

thread_local! {
    /// One compression context per thread, reused: creating a context costs
    /// more than compressing a small map message with it.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Level 1: map messages are small and latency matters more than ratio.
const ZSTD_LEVEL: i32 = 1;

fn compress_zstd(json: &[u8]) -> Result<Vec<u8>, FramingError> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let c = match slot.as_mut() {
            Some(c) => c,
            None => {
                slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(FramingError::Zstd)?)
            }
        };
        c.compress(json).map_err(FramingError::Zstd)
    })
}

/// Frames already-serialised JSON.
pub fn frame_json(json: &[u8], compression: Compression) -> Result<Bytes, FramingError> {
    let payload: std::borrow::Cow<'_, [u8]> = match compression {
        Compression::None => json.into(),
        Compression::Zstd => compress_zstd(json)?.into(),
    };
    if payload.len() > MAX_MESSAGE {
        return Err(FramingError::TooLarge(payload.len()));
    }
    let mut out = BytesMut::with_capacity(4 + payload.len());
    out.put_u32_le(payload.len() as u32);
    out.put_slice(&payload);
    Ok(out.freeze())
}

/// Serialises and frames one message.
pub fn frame(msg: &MapResponse, compression: Compression) -> Result<Bytes, FramingError> {
    frame_json(&serde_json::to_vec(msg)?, compression)
}

/// Splits frames off the front of `buf` (client side: tests, load generator).
/// Returns the decoded payloads (decompressed when `compression` is zstd).
pub fn decode_frames(
    buf: &mut BytesMut,
    compression: Compression,
) -> Result<Vec<Vec<u8>>, std::io::Error> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 4 {
            return Ok(out);
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > MAX_MESSAGE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("map frame of {len} bytes exceeds the limit"),
            ));
        }
        if buf.len() < 4 + len {
            return Ok(out);
        }
        let _ = buf.split_to(4);
        let payload = buf.split_to(len);
        out.push(match compression {
            Compression::None => payload.to_vec(),
            Compression::Zstd => zstd::stream::decode_all(&payload[..])?,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_and_without_zstd() {
        let msg = MapResponse {
            keep_alive: true,
            ..Default::default()
        };
        for c in [Compression::None, Compression::Zstd] {
            let f = frame(&msg, c).unwrap();
            let len = u32::from_le_bytes(f[..4].try_into().unwrap()) as usize;
            assert_eq!(len, f.len() - 4);
            let mut buf = BytesMut::from(&f[..]);
            buf.extend_from_slice(&f);
            let got = decode_frames(&mut buf, c).unwrap();
            assert_eq!(got.len(), 2);
            assert_eq!(got[0], br#"{"KeepAlive":true}"#);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn partial_frame_waits_for_more() {
        let f = frame(&MapResponse::default(), Compression::Zstd).unwrap();
        let mut buf = BytesMut::from(&f[..f.len() - 1]);
        assert!(
            decode_frames(&mut buf, Compression::Zstd)
                .unwrap()
                .is_empty()
        );
        assert_eq!(buf.len(), f.len() - 1);
    }
}
