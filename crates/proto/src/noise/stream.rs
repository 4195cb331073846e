//! The record layer: [`NoiseStream`], a tokio `AsyncRead + AsyncWrite` that
//! encrypts everything written to it into Noise records and decrypts what it
//! reads.
//!
//! ```text
//! record: 0x04 | u16be N | ChaCha20-Poly1305(key, nonce, plaintext)   (N includes the 16-byte tag)
//! nonce:  4 zero bytes | u64 big-endian counter                         (per direction, from 0)
//! ```
//!
//! Two Tailscale rules make this more than "snow's transport on a socket":
//! the nonce counter is big-endian (the Noise spec says little-endian; the two
//! agree only for record 0), and no record may exceed 4096 bytes on the wire,
//! because the Go reader refuses larger ones and kills the connection.
//!
//! The stream carries every map update, so it is built to do little work per
//! byte: records are decrypted in place in one reusable buffer and several
//! are decoded per `poll_read`; a write seals up to 16 records into one buffer
//! and hands them to the inner stream in one write; vectored writes (HTTP/2
//! frame header + payload) are packed into shared records. Idle connections
//! hold no buffers, since a server keeps thousands of them open.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::MSG_RECORD;
use super::handshake::TransportKeys;
use crate::tailcfg::EarlyNoise;

/// The largest record on the wire, header included. The Go client refuses
/// anything larger.
pub const MAX_RECORD_LEN: usize = 4096;
const HEADER_LEN: usize = 3;
const TAG_LEN: usize = 16;
const MAX_CIPHERTEXT_LEN: usize = MAX_RECORD_LEN - HEADER_LEN;
/// The most plaintext one record carries (4077 bytes).
pub const MAX_PLAINTEXT_LEN: usize = MAX_CIPHERTEXT_LEN - TAG_LEN;

/// Room for several records per read from the inner stream.
const RX_BUFFER_LEN: usize = 4 * MAX_RECORD_LEN;
/// Records sealed per write call: large writes become ~64 KiB inner writes.
const TX_BATCH_RECORDS: usize = 16;
/// Sealed bytes after which a write first waits for the inner stream.
const TX_HIGH_WATER: usize = TX_BATCH_RECORDS * MAX_RECORD_LEN;
/// A send buffer grown past this is released at flush, so that one large map
/// does not pin 64 KiB+ on a connection that then idles for hours.
const TX_KEEP_CAPACITY: usize = 2 * MAX_RECORD_LEN;

/// The first bytes of an early payload. They cannot start an HTTP/2 frame the
/// server would send first, which is how a client tells the two apart.
pub const EARLY_PAYLOAD_MAGIC: [u8; 5] = [0xff, 0xff, 0xff, b'T', b'S'];
const EARLY_PAYLOAD_HEADER_LEN: usize = EARLY_PAYLOAD_MAGIC.len() + 4;
/// The Go client refuses early payloads larger than this.
pub const MAX_EARLY_PAYLOAD_LEN: usize = 10 << 20;

/// What is wrong with the record stream. Carried inside the `io::Error`s the
/// stream returns (`err.get_ref()` downcasts to it); every one of them ends
/// the connection, since the two sides' counters can no longer agree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("Noise record of {len} bytes exceeds the {MAX_RECORD_LEN}-byte limit")]
    TooLarge { len: usize },
    #[error("Noise frame has message type {found:#04x}; expected 0x04 (record)")]
    WrongType { found: u8 },
    #[error("Noise record #{counter} failed to decrypt: it was corrupted, altered or reordered")]
    Decrypt { counter: u64 },
    #[error("Noise record #{counter} is {len} bytes, shorter than its 16-byte tag")]
    TooShort { counter: u64, len: usize },
    #[error("connection closed inside a Noise record ({buffered} bytes of it received)")]
    Truncated { buffered: usize },
    #[error("Noise nonce counter exhausted; the connection must be re-established")]
    Exhausted,
    #[error("an earlier write on this Noise connection failed; it cannot be used any more")]
    WriteFailed,
    #[error("early payload of {len} bytes exceeds the {MAX_EARLY_PAYLOAD_LEN}-byte limit")]
    EarlyPayloadTooLarge { len: usize },
}

impl From<RecordError> for io::Error {
    fn from(e: RecordError) -> Self {
        let kind = match e {
            RecordError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            RecordError::WriteFailed => io::ErrorKind::BrokenPipe,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// One direction's cipher and record counter.
struct RecordCipher {
    aead: ChaCha20Poly1305,
    counter: u64,
}

impl RecordCipher {
    fn new(key: &[u8; 32]) -> Self {
        Self {
            aead: ChaCha20Poly1305::new(key.into()),
            counter: 0,
        }
    }

    /// The nonce for the next record: Tailscale puts the counter big-endian in
    /// the last 8 bytes. 2^64-1 is reserved, as in Noise.
    fn next_nonce(&mut self) -> Result<Nonce, RecordError> {
        if self.counter == u64::MAX {
            return Err(RecordError::Exhausted);
        }
        let mut nonce = Nonce::default();
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        Ok(nonce)
    }
}

struct Receiver {
    cipher: RecordCipher,
    /// Bytes read from the inner stream; records are decrypted in place.
    /// Empty (unallocated) while the connection idles.
    buf: Vec<u8>,
    /// `buf[..filled]` holds data.
    filled: usize,
    /// Start of the first record not yet decrypted.
    next: usize,
    /// Decrypted bytes not yet handed out.
    plaintext: Range<usize>,
    /// Plaintext given back by a peek (the early-payload check); served first.
    unread: Vec<u8>,
    /// The first error: a failed stream stays failed.
    error: Option<RecordError>,
}

struct Sender {
    cipher: RecordCipher,
    /// Sealed records (and, right after the handshake, the response) waiting
    /// for the inner stream.
    buf: Vec<u8>,
    /// `buf[..written]` has been handed to the inner stream.
    written: usize,
    failed: bool,
}

/// A Noise `ts2021` connection over `T` (an upgraded TCP or TLS stream).
///
/// Reads yield the peer's plaintext; writes are encrypted. Like a `BufWriter`,
/// written data may wait in the stream until [`AsyncWriteExt::flush`]: each
/// write tries to pass it on, and a flush guarantees it. hyper flushes after
/// every batch of frames.
pub struct NoiseStream<T> {
    inner: T,
    rx: Receiver,
    tx: Sender,
}

impl<T> NoiseStream<T> {
    /// Wraps `inner`, on which the handshake has just completed.
    pub fn new(inner: T, keys: TransportKeys) -> Self {
        Self::with_queued(inner, keys, &[])
    }

    /// Like [`Self::new`], with `raw` (unencrypted) queued ahead of the first record.
    pub(crate) fn with_queued(inner: T, keys: TransportKeys, raw: &[u8]) -> Self {
        Self {
            inner,
            rx: Receiver {
                cipher: RecordCipher::new(&keys.receive),
                buf: Vec::new(),
                filled: 0,
                next: 0,
                plaintext: 0..0,
                unread: Vec::new(),
                error: None,
            },
            tx: Sender {
                cipher: RecordCipher::new(&keys.send),
                buf: raw.to_vec(),
                written: 0,
                failed: false,
            },
        }
    }

    /// The inner stream, e.g. for its peer address.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for NoiseStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseStream")
            .field("inner", &self.inner)
            .field("records_received", &self.rx.cipher.counter)
            .field("records_sent", &self.tx.cipher.counter)
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Decrypts the next record if it is wholly buffered. Returns whether it did.
    fn decrypt_next(&mut self) -> Result<bool, RecordError> {
        let available = &self.buf[self.next..self.filled];
        if available.len() < HEADER_LEN {
            return Ok(false);
        }
        // Check the header as soon as it arrives, so garbage fails fast
        // instead of waiting for a body that may never come.
        if available[0] != MSG_RECORD {
            return Err(RecordError::WrongType {
                found: available[0],
            });
        }
        let len = usize::from(u16::from_be_bytes([available[1], available[2]]));
        if HEADER_LEN + len > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge {
                len: HEADER_LEN + len,
            });
        }
        if available.len() < HEADER_LEN + len {
            return Ok(false);
        }
        let counter = self.cipher.counter;
        if len < TAG_LEN {
            return Err(RecordError::TooShort { counter, len });
        }
        let body = self.next + HEADER_LEN..self.next + HEADER_LEN + len - TAG_LEN;
        let tag = Tag::clone_from_slice(&self.buf[body.end..body.end + TAG_LEN]);
        let nonce = self.cipher.next_nonce()?;
        self.cipher
            .aead
            .decrypt_in_place_detached(&nonce, &[], &mut self.buf[body.clone()], &tag)
            .map_err(|_| RecordError::Decrypt { counter })?;
        self.next = body.end + TAG_LEN;
        // An empty record leaves `plaintext` empty: the caller moves on.
        self.plaintext = body;
        Ok(true)
    }

    /// Copies out decrypted bytes; returns whether `out` is full.
    fn copy_plaintext(&mut self, out: &mut ReadBuf<'_>) -> bool {
        let n = self.plaintext.len().min(out.remaining());
        out.put_slice(&self.buf[self.plaintext.start..self.plaintext.start + n]);
        self.plaintext.start += n;
        out.remaining() == 0
    }

    /// Reads more bytes from `inner`. `Ok(false)` is a clean end of stream.
    fn poll_fill<T: AsyncRead + Unpin>(
        &mut self,
        inner: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<bool>> {
        if self.buf.is_empty() {
            return self.poll_fill_idle(inner, cx);
        }
        // Only a partial record remains (all plaintext was handed out): move
        // it to the front so the next record always fits.
        if self.next > 0 {
            self.buf.copy_within(self.next..self.filled, 0);
            self.filled -= self.next;
            self.next = 0;
            self.plaintext = 0..0;
        }
        debug_assert!(
            self.filled < MAX_RECORD_LEN,
            "a whole record should have been decoded"
        );
        let mut read = ReadBuf::new(&mut self.buf[self.filled..]);
        match Pin::new(inner).poll_read(cx, &mut read) {
            Poll::Pending => {
                if self.filled == 0 {
                    // Caught up: give the memory back until the peer speaks again.
                    self.buf = Vec::new();
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    if self.filled > 0 {
                        let e = RecordError::Truncated {
                            buffered: self.filled,
                        };
                        self.error = Some(e.clone());
                        return Poll::Ready(Err(e.into()));
                    }
                    self.buf = Vec::new();
                    return Poll::Ready(Ok(false));
                }
                self.filled += n;
                Poll::Ready(Ok(true))
            }
        }
    }

    /// Reads into the stack while no buffer is held, so that waiting on a
    /// quiet peer (most connections, most of the time) allocates nothing;
    /// the heap buffer is taken only once bytes arrive.
    fn poll_fill_idle<T: AsyncRead + Unpin>(
        &mut self,
        inner: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<bool>> {
        let mut stack = [MaybeUninit::<u8>::uninit(); RX_BUFFER_LEN];
        let mut read = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(inner).poll_read(cx, &mut read))?;
        let received = read.filled();
        if received.is_empty() {
            return Poll::Ready(Ok(false));
        }
        let mut buf = Vec::with_capacity(RX_BUFFER_LEN);
        buf.extend_from_slice(received);
        buf.resize(RX_BUFFER_LEN, 0);
        self.buf = buf;
        self.filled = received.len();
        self.next = 0;
        self.plaintext = 0..0;
        Poll::Ready(Ok(true))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for NoiseStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let rx = &mut this.rx;
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if !rx.unread.is_empty() {
            let n = rx.unread.len().min(out.remaining());
            out.put_slice(&rx.unread[..n]);
            rx.unread.drain(..n);
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &rx.error {
            return Poll::Ready(Err(e.clone().into()));
        }
        let start = out.filled().len();
        loop {
            if rx.copy_plaintext(out) {
                return Poll::Ready(Ok(()));
            }
            match rx.decrypt_next() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    rx.error = Some(e.clone());
                    // Hand out what was decrypted before the bad record; the
                    // error comes with the next read.
                    return Poll::Ready(if out.filled().len() > start {
                        Ok(())
                    } else {
                        Err(e.into())
                    });
                }
            }
            // Return what we have rather than wait for more.
            if out.filled().len() > start {
                return Poll::Ready(Ok(()));
            }
            if !ready!(rx.poll_fill(&mut this.inner, cx))? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl Sender {
    fn pending(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Seals up to [`TX_BATCH_RECORDS`] records' worth of `bufs`, filling
    /// each record across slice boundaries. Returns the plaintext bytes taken.
    fn seal(&mut self, bufs: &[IoSlice<'_>]) -> Result<usize, RecordError> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let accepted = total.min(TX_BATCH_RECORDS * MAX_PLAINTEXT_LEN);
        let records = accepted.div_ceil(MAX_PLAINTEXT_LEN);
        self.buf
            .reserve(accepted + records * (HEADER_LEN + TAG_LEN));

        let mut slices = bufs.iter().map(|b| &**b);
        let mut current: &[u8] = &[];
        let mut remaining = accepted;
        while remaining > 0 {
            let start = self.buf.len();
            // The length is filled in once the record's plaintext is in place.
            self.buf.extend_from_slice(&[MSG_RECORD, 0, 0]);
            let mut need = remaining.min(MAX_PLAINTEXT_LEN);
            while need > 0 {
                if current.is_empty() {
                    match slices.next() {
                        Some(next) => current = next,
                        None => break,
                    }
                }
                let take = need.min(current.len());
                self.buf.extend_from_slice(&current[..take]);
                current = &current[take..];
                need -= take;
            }
            let plaintext_len = self.buf.len() - start - HEADER_LEN;
            if plaintext_len == 0 {
                // The slices held less than they claimed; nothing left to seal.
                self.buf.truncate(start);
                break;
            }
            let nonce = self.cipher.next_nonce()?;
            let tag = self
                .cipher
                .aead
                .encrypt_in_place_detached(&nonce, &[], &mut self.buf[start + HEADER_LEN..])
                // Only fails for plaintexts beyond 256 GiB.
                .map_err(|_| RecordError::Exhausted)?;
            self.buf.extend_from_slice(&tag);
            // At most MAX_PLAINTEXT_LEN + TAG_LEN = 4093, so it fits.
            let ciphertext_len = (plaintext_len + TAG_LEN) as u16;
            self.buf[start + 1..start + HEADER_LEN].copy_from_slice(&ciphertext_len.to_be_bytes());
            remaining -= plaintext_len;
        }
        Ok(accepted - remaining)
    }

    /// Writes everything sealed so far to `inner`.
    fn poll_drain<T: AsyncWrite + Unpin>(
        &mut self,
        inner: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            match ready!(Pin::new(&mut *inner).poll_write(cx, &self.buf[self.written..])) {
                Ok(0) => {
                    self.failed = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the connection under the Noise stream accepted no bytes",
                    )));
                }
                Ok(n) => self.written += n,
                Err(e) => {
                    // Part of a record may be out: the peer's counter can no
                    // longer match ours.
                    self.failed = true;
                    return Poll::Ready(Err(e));
                }
            }
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.failed {
            Err(RecordError::WriteFailed.into())
        } else {
            Ok(())
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for NoiseStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let tx = &mut this.tx;
        tx.check_usable()?;
        if tx.pending() >= TX_HIGH_WATER {
            ready!(tx.poll_drain(&mut this.inner, cx))?;
        }
        let accepted = tx.seal(bufs).inspect_err(|_| tx.failed = true)?;
        // Pass the records on now, so that a write without a flush still
        // makes progress; if the inner stream is busy they wait for the next
        // write or flush (its waker is registered either way).
        if let Poll::Ready(Err(e)) = tx.poll_drain(&mut this.inner, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(accepted))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tx.check_usable()?;
        ready!(this.tx.poll_drain(&mut this.inner, cx))?;
        if this.tx.buf.capacity() > TX_KEEP_CAPACITY {
            this.tx.buf = Vec::new();
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.tx.check_usable()?;
        ready!(this.tx.poll_drain(&mut this.inner, cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncWrite + Unpin> NoiseStream<T> {
    /// Sends the early payload (server side, before HTTP/2 starts): the magic,
    /// a u32 big-endian length, and the JSON. Flushes, so that it leaves
    /// together with a queued handshake response.
    pub async fn write_early_payload(&mut self, payload: &EarlyNoise) -> io::Result<()> {
        self.write_all(&encode_early_payload(payload)?).await?;
        self.flush().await
    }
}

impl<T: AsyncRead + Unpin> NoiseStream<T> {
    /// Reads the early payload if the server sent one (client side, before
    /// HTTP/2 starts). Like the Go client, it looks at the first 9 plaintext
    /// bytes: the magic means a payload follows; anything else is the start
    /// of the server's HTTP/2 SETTINGS frame and is kept for the next read.
    ///
    /// It waits for the server's first bytes; servers send their SETTINGS
    /// without waiting for the client, so this does not deadlock.
    pub async fn read_early_payload(&mut self) -> io::Result<Option<EarlyNoise>> {
        let mut header = [0u8; EARLY_PAYLOAD_HEADER_LEN];
        self.read_exact(&mut header).await?;
        if header[..EARLY_PAYLOAD_MAGIC.len()] != EARLY_PAYLOAD_MAGIC {
            self.rx.unread.splice(0..0, header);
            return Ok(None);
        }
        let len_bytes = [header[5], header[6], header[7], header[8]];
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > MAX_EARLY_PAYLOAD_LEN {
            return Err(RecordError::EarlyPayloadTooLarge { len }.into());
        }
        let mut json = vec![0u8; len];
        self.read_exact(&mut json).await?;
        serde_json::from_slice(&json).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("early payload is not EarlyNoise JSON: {e}"),
            )
        })
    }
}

/// The early payload's bytes: magic, u32 big-endian length, JSON.
pub fn encode_early_payload(payload: &EarlyNoise) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(payload)?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|&len| len as usize <= MAX_EARLY_PAYLOAD_LEN)
        .ok_or(RecordError::EarlyPayloadTooLarge { len: json.len() })?;
    let mut out = Vec::with_capacity(EARLY_PAYLOAD_HEADER_LEN + json.len());
    out.extend_from_slice(&EARLY_PAYLOAD_MAGIC);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;
    use crate::keys::{ChallengePublic, PrivateKey};
    use crate::noise::handshake::{ClientHandshake, accept};

    /// Keys of a real handshake: (client's, server's).
    fn key_pair() -> (TransportKeys, TransportKeys) {
        let server_key = PrivateKey::generate();
        let client =
            ClientHandshake::new(&PrivateKey::generate(), &server_key.machine_public(), 133)
                .unwrap();
        let server = accept(&server_key, client.initiation()).unwrap();
        let response = *server.response();
        (client.finish(&response).unwrap(), server.into_keys())
    }

    fn copy_keys(keys: &TransportKeys) -> TransportKeys {
        TransportKeys {
            send: keys.send,
            receive: keys.receive,
        }
    }

    fn stream_pair(buffer: usize) -> (NoiseStream<DuplexStream>, NoiseStream<DuplexStream>) {
        let (client_keys, server_keys) = key_pair();
        let (a, b) = duplex(buffer);
        (
            NoiseStream::new(a, client_keys),
            NoiseStream::new(b, server_keys),
        )
    }

    /// Seals one record by hand, with the nonce in either byte order.
    fn seal_record(key: &[u8; 32], counter: u64, plaintext: &[u8], big_endian: bool) -> Vec<u8> {
        let aead = ChaCha20Poly1305::new(key.into());
        let mut nonce = Nonce::default();
        if big_endian {
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
        } else {
            nonce[4..].copy_from_slice(&counter.to_le_bytes());
        }
        let mut body = plaintext.to_vec();
        let tag = aead
            .encrypt_in_place_detached(&nonce, &[], &mut body)
            .unwrap();
        body.extend_from_slice(&tag);
        let mut record = vec![MSG_RECORD];
        record.extend_from_slice(&(body.len() as u16).to_be_bytes());
        record.extend_from_slice(&body);
        record
    }

    /// Splits raw bytes into records, checking each header.
    fn records(wire: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = wire;
        while !rest.is_empty() {
            assert_eq!(rest[0], MSG_RECORD);
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
            out.push(&rest[..3 + len]);
            rest = &rest[3 + len..];
        }
        out
    }

    fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect()
    }

    /// Reads `wire` as the receiving side of `keys` until EOF or an error.
    async fn read_all(keys: TransportKeys, wire: &[u8]) -> (Vec<u8>, Option<io::Error>) {
        let mut stream = NoiseStream::new(wire, keys);
        let mut out = Vec::new();
        let mut chunk = [0u8; 1000];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    fn record_error(e: &io::Error) -> &RecordError {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<RecordError>())
            .unwrap()
    }

    mod vector {
        use super::*;
        use crate::noise::handshake::tests::{vector, vector_client, vector_server};

        pub const CLIENT_RECORD_0: &str =
            "04001e0680e2431415e6cb8713377a233da726886dd7fcf61f6dd43acbfbd0b979";
        pub const SERVER_RECORD_0: &str =
            "04001f9c6f318d1e05c276f38b7016707b11990f0fd7c018b8a4fc2196dd9c5e3dfb";
        pub const SERVER_RECORD_1: &str =
            "040023c1106eb5075a262752f4f1b77c33fe95339f49d32a5df173cb74520c996f56af6c468f";

        fn sides() -> (TransportKeys, crate::noise::ServerHandshake) {
            let client = vector_client();
            let server = vector_server(client.initiation());
            let client_keys = client.finish(server.response()).unwrap();
            (client_keys, server)
        }

        #[tokio::test]
        async fn client_record_matches_the_vector() {
            let (client_keys, _) = sides();
            let mut client = NoiseStream::new(Vec::new(), client_keys);
            client.write_all(b"PRI * HTTP/2.0").await.unwrap();
            client.flush().await.unwrap();
            assert_eq!(hex::encode(client.get_ref()), CLIENT_RECORD_0);
        }

        #[tokio::test]
        async fn server_response_and_records_match_the_vector() {
            let (_, server) = sides();
            let mut stream = server.into_stream(Vec::new());
            stream.write_all(b"early-payload-0").await.unwrap();
            stream.flush().await.unwrap();
            // Record #1 uses counter 1, where big- and little-endian differ.
            stream.write_all(b"hello-from-server-1").await.unwrap();
            stream.flush().await.unwrap();
            let expected = format!("{}{SERVER_RECORD_0}{SERVER_RECORD_1}", vector::RESPONSE);
            assert_eq!(hex::encode(stream.get_ref()), expected);
        }

        #[tokio::test]
        async fn both_sides_read_the_vector_records() {
            let (client_keys, server) = sides();
            let server_keys = server.into_keys();
            let wire = hex::decode(format!("{SERVER_RECORD_0}{SERVER_RECORD_1}")).unwrap();
            let (plain, err) = read_all(client_keys, &wire).await;
            assert!(err.is_none(), "{err:?}");
            assert_eq!(plain, b"early-payload-0hello-from-server-1");
            let (plain, err) = read_all(server_keys, &hex::decode(CLIENT_RECORD_0).unwrap()).await;
            assert!(err.is_none(), "{err:?}");
            assert_eq!(plain, b"PRI * HTTP/2.0");
        }
    }

    #[tokio::test]
    async fn megabytes_both_ways_at_once() {
        let (client, server) = stream_pair(64 << 10);
        let up = pseudo_random(5 << 20, 1);
        let down = pseudo_random(3 << 20, 2);
        let (mut client_rx, mut client_tx) = tokio::io::split(client);
        let (mut server_rx, mut server_tx) = tokio::io::split(server);
        let (received_up, received_down, (), ()) = tokio::join!(
            async {
                let mut buf = Vec::new();
                server_rx.read_to_end(&mut buf).await.unwrap();
                buf
            },
            async {
                let mut buf = Vec::new();
                client_rx.read_to_end(&mut buf).await.unwrap();
                buf
            },
            async {
                client_tx.write_all(&up).await.unwrap();
                client_tx.shutdown().await.unwrap();
            },
            async {
                // Odd-sized writes, so records and writes do not line up.
                for chunk in down.chunks(10_007) {
                    server_tx.write_all(chunk).await.unwrap();
                }
                server_tx.shutdown().await.unwrap();
            },
        );
        assert!(received_up == up, "client → server data differs");
        assert!(received_down == down, "server → client data differs");
    }

    #[tokio::test]
    async fn large_write_is_cut_into_full_records_of_at_most_4096_bytes() {
        let (client_keys, server_keys) = key_pair();
        let data = pseudo_random(3 * MAX_PLAINTEXT_LEN + 10, 3);
        let mut stream = NoiseStream::new(Vec::new(), client_keys);
        stream.write_all(&data).await.unwrap();
        stream.flush().await.unwrap();
        let wire = stream.get_ref().clone();
        let sizes: Vec<usize> = records(&wire).iter().map(|r| r.len()).collect();
        assert_eq!(
            sizes,
            [MAX_RECORD_LEN, MAX_RECORD_LEN, MAX_RECORD_LEN, 3 + 10 + 16]
        );
        let (plain, err) = read_all(server_keys, &wire).await;
        assert!(err.is_none(), "{err:?}");
        assert!(plain == data);
    }

    #[tokio::test]
    async fn vectored_write_shares_records_between_slices() {
        let (client_keys, server_keys) = key_pair();
        let mut stream = NoiseStream::new(Vec::new(), client_keys);
        // An HTTP/2 frame header and its payload, as hyper hands them over.
        let header = [0u8, 0, 100, 0, 1, 0, 0, 0, 1];
        let payload = [7u8; 100];
        let n = stream
            .write_vectored(&[
                IoSlice::new(&header),
                IoSlice::new(&[]),
                IoSlice::new(&payload),
            ])
            .await
            .unwrap();
        assert_eq!(n, 109);
        stream.flush().await.unwrap();
        let wire = stream.get_ref().clone();
        assert_eq!(records(&wire).len(), 1);
        let (plain, _) = read_all(server_keys, &wire).await;
        assert_eq!(&plain[..9], &header);
        assert_eq!(&plain[9..], &payload);
    }

    #[tokio::test]
    async fn nonces_are_big_endian_past_record_one() {
        let (sender_keys, receiver_keys) = key_pair();
        let key = sender_keys.send;
        // Our writer: each record must open with the big-endian nonce.
        let mut stream = NoiseStream::new(Vec::new(), sender_keys);
        for i in 0..300u32 {
            stream.write_all(&i.to_be_bytes()).await.unwrap();
            stream.flush().await.unwrap();
        }
        let wire = stream.get_ref().clone();
        for (counter, record) in records(&wire).iter().enumerate() {
            assert_eq!(
                *record,
                seal_record(&key, counter as u64, &(counter as u32).to_be_bytes(), true)
            );
        }
        // Our reader accepts big-endian records well past counter 255…
        let (plain, err) = read_all(copy_keys(&receiver_keys), &wire).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(plain.len(), 1200);
        // …and refuses the Noise-spec (little-endian) encoding at record #1.
        let mut wire = seal_record(&key, 0, b"zero", false);
        wire.extend(seal_record(&key, 1, b"one", false));
        let (plain, err) = read_all(receiver_keys, &wire).await;
        assert_eq!(plain, b"zero");
        assert_eq!(
            *record_error(&err.unwrap()),
            RecordError::Decrypt { counter: 1 }
        );
    }

    #[tokio::test]
    async fn empty_records_are_skipped() {
        let (sender, receiver) = key_pair();
        let mut wire = seal_record(&sender.send, 0, b"", true);
        wire.extend(seal_record(&sender.send, 1, b"", true));
        wire.extend(seal_record(&sender.send, 2, b"hi", true));
        let (plain, err) = read_all(receiver, &wire).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(plain, b"hi");
    }

    #[tokio::test]
    async fn record_of_exactly_4096_bytes_is_accepted_and_4097_refused() {
        let (sender, receiver) = key_pair();
        let full = seal_record(&sender.send, 0, &[1; MAX_PLAINTEXT_LEN], true);
        assert_eq!(full.len(), MAX_RECORD_LEN);
        let (plain, err) = read_all(receiver, &full).await;
        assert!(err.is_none(), "{err:?}");
        assert_eq!(plain.len(), MAX_PLAINTEXT_LEN);

        let (sender, receiver) = key_pair();
        let too_big = seal_record(&sender.send, 0, &[1; MAX_PLAINTEXT_LEN + 1], true);
        let (plain, err) = read_all(receiver, &too_big).await;
        assert!(plain.is_empty());
        let err = err.unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(*record_error(&err), RecordError::TooLarge { len: 4097 });
    }

    #[tokio::test]
    async fn oversized_header_fails_before_the_body_arrives() {
        let (_, receiver) = key_pair();
        let (mut peer, ours) = duplex(1024);
        let mut stream = NoiseStream::new(ours, receiver);
        peer.write_all(&[MSG_RECORD, 0xff, 0xff]).await.unwrap();
        let err = stream.read(&mut [0u8; 16]).await.unwrap_err();
        assert_eq!(
            *record_error(&err),
            RecordError::TooLarge { len: 3 + 0xffff }
        );
    }

    #[tokio::test]
    async fn wrong_message_type_is_refused() {
        let (sender, receiver) = key_pair();
        let mut wire = seal_record(&sender.send, 0, b"data", true);
        wire[0] = 0x02;
        let (_, err) = read_all(receiver, &wire).await;
        assert_eq!(
            *record_error(&err.unwrap()),
            RecordError::WrongType { found: 0x02 }
        );
    }

    #[tokio::test]
    async fn tampered_record_fails_and_the_stream_stays_failed() {
        let (sender, receiver) = key_pair();
        let mut wire = seal_record(&sender.send, 0, b"good", true);
        let mut bad = seal_record(&sender.send, 1, b"evil", true);
        bad[4] ^= 0x01;
        wire.extend(&bad);
        wire.extend(seal_record(&sender.send, 2, b"after", true));
        let mut stream = NoiseStream::new(&wire[..], receiver);
        let mut buf = [0u8; 64];
        // Data before the bad record is still delivered…
        assert_eq!(stream.read(&mut buf).await.unwrap(), 4);
        assert_eq!(&buf[..4], b"good");
        // …then the error, for good.
        for _ in 0..2 {
            let err = stream.read(&mut buf).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert_eq!(*record_error(&err), RecordError::Decrypt { counter: 1 });
        }
    }

    #[tokio::test]
    async fn record_shorter_than_a_tag_is_refused() {
        let (_, receiver) = key_pair();
        let (_, err) = read_all(receiver, &[MSG_RECORD, 0, 5, 1, 2, 3, 4, 5]).await;
        assert_eq!(
            *record_error(&err.unwrap()),
            RecordError::TooShort { counter: 0, len: 5 }
        );
    }

    #[tokio::test]
    async fn truncated_input_is_unexpected_eof() {
        let (sender, receiver) = key_pair();
        let mut wire = seal_record(&sender.send, 0, b"complete", true);
        let second = seal_record(&sender.send, 1, b"cut short", true);
        wire.extend(&second[..10]);
        let (plain, err) = read_all(receiver, &wire).await;
        assert_eq!(plain, b"complete");
        let err = err.unwrap();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(*record_error(&err), RecordError::Truncated { buffered: 10 });
        // A cut inside the header is caught too.
        let (_, receiver) = key_pair();
        let (_, err) = read_all(receiver, &[MSG_RECORD, 0]).await;
        assert_eq!(err.unwrap().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test]
    async fn clean_eof_between_records_is_eof() {
        let (sender, receiver) = key_pair();
        let (plain, err) = read_all(receiver, &seal_record(&sender.send, 0, b"bye", true)).await;
        assert!(err.is_none());
        assert_eq!(plain, b"bye");
    }

    #[tokio::test]
    async fn early_payload_is_read_and_http2_bytes_follow() {
        let (mut client, mut server) = stream_pair(64 << 10);
        let payload = EarlyNoise {
            node_key_challenge: ChallengePublic([7; 32]),
        };
        server.write_early_payload(&payload).await.unwrap();
        server
            .write_all(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00settings")
            .await
            .unwrap();
        server.flush().await.unwrap();
        let got = client.read_early_payload().await.unwrap().unwrap();
        assert_eq!(got.node_key_challenge, payload.node_key_challenge);
        let mut rest = [0u8; 17];
        client.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00settings");
    }

    #[tokio::test]
    async fn without_early_payload_the_first_bytes_are_kept() {
        let (mut client, mut server) = stream_pair(64 << 10);
        // Split over records so the peeked bytes span two of them.
        server.write_all(b"\x00\x00\x00\x04").await.unwrap();
        server.flush().await.unwrap();
        server.write_all(b"\x00\x00\x00\x00\x00rest").await.unwrap();
        server.shutdown().await.unwrap();
        assert!(client.read_early_payload().await.unwrap().is_none());
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00rest");
    }

    #[tokio::test]
    async fn early_payload_split_over_records_and_limits() {
        let (mut client, mut server) = stream_pair(64 << 10);
        let bytes = encode_early_payload(&EarlyNoise {
            node_key_challenge: ChallengePublic([9; 32]),
        })
        .unwrap();
        for part in [&bytes[..3], &bytes[3..7], &bytes[7..20], &bytes[20..]] {
            server.write_all(part).await.unwrap();
            server.flush().await.unwrap();
        }
        let got = client.read_early_payload().await.unwrap().unwrap();
        assert_eq!(got.node_key_challenge, ChallengePublic([9; 32]));

        let (mut client, mut server) = stream_pair(64 << 10);
        let mut header = EARLY_PAYLOAD_MAGIC.to_vec();
        header.extend_from_slice(&((10u32 << 20) + 1).to_be_bytes());
        server.write_all(&header).await.unwrap();
        server.flush().await.unwrap();
        let err = client.read_early_payload().await.unwrap_err();
        assert_eq!(
            *record_error(&err),
            RecordError::EarlyPayloadTooLarge {
                len: (10 << 20) + 1
            }
        );
    }

    /// An inner stream that counts write calls and may fail them.
    #[derive(Default)]
    struct CountingWriter {
        writes: usize,
        data: Vec<u8>,
        fail: bool,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes += 1;
            if this.fail {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")));
            }
            this.data.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn large_writes_become_few_inner_writes() {
        let (keys, _) = key_pair();
        let mut stream = NoiseStream::new(CountingWriter::default(), keys);
        let data = pseudo_random(1 << 20, 4);
        stream.write_all(&data).await.unwrap();
        stream.flush().await.unwrap();
        let records_needed = data.len().div_ceil(MAX_PLAINTEXT_LEN);
        assert_eq!(records(&stream.get_ref().data).len(), records_needed);
        // 16 records per inner write, not one.
        assert_eq!(
            stream.get_ref().writes,
            records_needed.div_ceil(TX_BATCH_RECORDS)
        );
    }

    #[tokio::test]
    async fn queued_response_and_early_payload_leave_in_one_write() {
        let server_key = PrivateKey::generate();
        let client =
            ClientHandshake::new(&PrivateKey::generate(), &server_key.machine_public(), 133)
                .unwrap();
        let server = accept(&server_key, client.initiation()).unwrap();
        let response = *server.response();
        let mut stream = server.into_stream(CountingWriter::default());
        let payload = EarlyNoise {
            node_key_challenge: ChallengePublic([1; 32]),
        };
        stream.write_early_payload(&payload).await.unwrap();
        assert_eq!(stream.get_ref().writes, 1);
        let wire = stream.get_ref().data.clone();
        assert_eq!(&wire[..51], &response);
        // And the client makes sense of it all.
        let mut reader = client.finish_on(&wire[..]).await.unwrap();
        let got = reader.read_early_payload().await.unwrap().unwrap();
        assert_eq!(got.node_key_challenge, payload.node_key_challenge);
    }

    #[tokio::test]
    async fn a_failed_write_breaks_the_stream() {
        let (keys, _) = key_pair();
        let mut stream = NoiseStream::new(
            CountingWriter {
                fail: true,
                ..Default::default()
            },
            keys,
        );
        let err = stream.write_all(b"x").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        stream.inner.fail = false;
        let err = stream.write_all(b"y").await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(*record_error(&err), RecordError::WriteFailed);
        assert!(stream.flush().await.is_err());
    }

    #[tokio::test]
    async fn idle_streams_hold_no_buffers() {
        let (mut client, mut server) = stream_pair(256 << 10);
        server.write_all(&pseudo_random(100_000, 5)).await.unwrap();
        server.flush().await.unwrap();
        // The big write's send buffer is released at flush.
        assert!(server.tx.buf.capacity() <= TX_KEEP_CAPACITY);
        let mut got = vec![0u8; 100_000];
        client.read_exact(&mut got).await.unwrap();
        assert!(client.rx.buf.capacity() > 0);
        // Nothing more to read: the receive buffer goes once the read waits.
        let mut buf = [0u8; 16];
        let poll = poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut client).poll_read(cx, &mut ReadBuf::new(&mut buf)))
        })
        .await;
        assert!(poll.is_pending());
        assert_eq!(client.rx.buf.capacity(), 0);
        // Waiting again, with nothing held, takes nothing either.
        let poll = poll_fn(|cx| {
            Poll::Ready(Pin::new(&mut client).poll_read(cx, &mut ReadBuf::new(&mut buf)))
        })
        .await;
        assert!(poll.is_pending());
        assert_eq!(client.rx.buf.capacity(), 0);
        // And comes back when data does.
        server.write_all(b"again").await.unwrap();
        server.flush().await.unwrap();
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"again");
    }

    #[tokio::test]
    async fn counter_exhaustion_is_an_error() {
        let (keys, _) = key_pair();
        let mut stream = NoiseStream::new(Vec::new(), keys);
        stream.tx.cipher.counter = u64::MAX;
        let err = stream.write_all(b"x").await.unwrap_err();
        assert_eq!(*record_error(&err), RecordError::Exhausted);
        let (sender, receiver) = key_pair();
        let wire = seal_record(&sender.send, 0, b"x", true);
        let mut stream = NoiseStream::new(&wire[..], receiver);
        stream.rx.cipher.counter = u64::MAX;
        let err = stream.read(&mut [0u8; 4]).await.unwrap_err();
        assert_eq!(*record_error(&err), RecordError::Exhausted);
    }
}
