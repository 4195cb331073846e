//! A writer that fails when its peer stops reading for too long.
//!
//! The timer is only armed while the inner writer reports back-pressure, so a
//! healthy connection pays nothing per write.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};

pub(crate) struct StallGuard<W> {
    inner: W,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<W> StallGuard<W> {
    /// `limit` zero disables the guard.
    pub fn new(inner: W, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    fn progress<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.armed = false;
            return r;
        }
        if self.limit.is_zero() {
            return Poll::Pending;
        }
        if !self.armed {
            self.timer.as_mut().reset(Instant::now() + self.limit);
            self.armed = true;
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "peer stopped reading: no write progress for {:?}",
                    self.limit
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for StallGuard<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(r, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(r, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(r, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn fails_after_the_limit_without_progress() {
        // A duplex pipe whose reader never reads: writes block once 16 bytes are buffered.
        let (a, _b) = tokio::io::duplex(16);
        let mut w = StallGuard::new(a, Duration::from_secs(2));
        w.write_all(&[0; 16]).await.unwrap();
        let start = Instant::now();
        let err = w.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_peer_never_trips_it() {
        let (a, mut b) = tokio::io::duplex(16);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut b, &mut sink)
                .await
                .unwrap();
            sink.len()
        });
        let mut w = StallGuard::new(a, Duration::from_millis(1));
        w.write_all(&[7; 4096]).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 4096);
    }
}
