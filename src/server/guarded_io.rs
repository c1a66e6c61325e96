//! The client stream as hyper sees it: every byte read passes the strict
//! HTTP/1.1 guard first (`protocols::http1_guard`), and every read is noted
//! in the connection's [`Activity`] (so the keep-alive timer never takes a
//! connection receiving its next request for idle).
//!
//! When the guard rejects a message, hyper gets end-of-stream once it has no
//! request in flight (so earlier pipelined requests are still answered, in
//! order), and the rejection's response is written when hyper shuts the
//! stream down, after everything hyper wrote: the status always reaches the
//! client, and never in the middle of another response.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::exchange::SERVER_HEADER;
use crate::protocols::http1_guard::{Guard, Limits};
use crate::server::connection::Activity;

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 16 * 1024;

/// A guarded, activity-tracking client stream.
pub struct GuardedIo<S> {
    inner: S,
    activity: Arc<Activity>,
    guard: Guard,
    /// Bytes read from the socket, before the guard.
    scratch: Box<[u8]>,
    /// Guard-approved bytes not yet handed to hyper, from `ready_pos`.
    ready: Vec<u8>,
    ready_pos: usize,
    /// The rejection response still to write, from `error_pos`.
    error: Option<Vec<u8>>,
    error_pos: usize,
    /// Response bytes hyper wrote, total; and that count when the guard
    /// rejected a body (hyper may then have answered the request itself).
    written: u64,
    written_at_reject: Option<u64>,
}

impl<S> GuardedIo<S> {
    /// Wraps `inner`, checking requests against `limits`.
    pub fn new(inner: S, activity: Arc<Activity>, limits: Limits) -> Self {
        GuardedIo {
            inner,
            activity,
            guard: Guard::new(limits),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            ready: Vec::new(),
            ready_pos: 0,
            error: None,
            error_pos: 0,
            written: 0,
            written_at_reject: None,
        }
    }
}

impl<S: AsyncRead + Unpin> GuardedIo<S> {
    /// Reads from the socket and runs the guard; `Ok(false)` at end of stream.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut buf = ReadBuf::new(&mut self.scratch);
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n == 0 {
            return Poll::Ready(Ok(false));
        }
        self.activity.touch();
        self.ready.clear();
        self.ready_pos = 0;
        let heads = self.guard.heads_completed();
        let fed = self.guard.feed(&self.scratch[..n], &mut self.ready);
        if self.guard.heads_completed() != heads {
            self.activity.head_ends();
        }
        if self.guard.head_in_progress() {
            self.activity.head_begins();
        }
        if let Err(rejection) = fed {
            tracing::debug!(
                "refused a request: {} {}",
                rejection.status,
                rejection.reason
            );
            self.error = Some(rejection.response(SERVER_HEADER));
            if self.guard.failed_in_body() {
                self.written_at_reject = Some(self.written);
            }
        }
        Poll::Ready(Ok(true))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready_pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_pos);
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.guard.is_closed() {
                // End of stream for hyper, but only once the requests before
                // the rejected one have been answered (a rejected body ends
                // at once: its own request is the one in flight).
                if this.guard.failed_in_body() {
                    return Poll::Ready(Ok(()));
                }
                return match this.activity.poll_idle(cx) {
                    Poll::Ready(()) => Poll::Ready(Ok(())),
                    Poll::Pending => Poll::Pending,
                };
            }
            if !std::task::ready!(this.fill(cx))? {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, data))?;
        self.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = std::task::ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // A body rejected after hyper already answered it needs no second answer.
        if this.written_at_reject.is_some_and(|w| w != this.written) {
            this.error = None;
        }
        if let Some(error) = &this.error {
            while this.error_pos < error.len() {
                let rest = &error[this.error_pos..];
                match std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, rest)) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => this.error_pos += n,
                }
            }
            this.error = None;
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
