//! `ResponseBody`: the hyper body that carries what the application returned.
//!
//! Rules kept here: a `Full` body reports its exact size, so hyper writes a
//! Content-Length; a `Short` body or an aborted stream ends in an error, which
//! makes hyper close the connection instead of ending the response normally
//! (a short body must never let the next response be spliced into it,
//! RFC 9112 §6.3). When the body is dropped — finished, aborted, or the client
//! went away — the access-log line is written and the connection's in-flight
//! count goes down.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::exchange::{BodySource, Chunk};
use crate::log::{self, AccessRecord};
use crate::server::connection::InFlight;

/// The error a body ends with when the response cannot be completed; hyper
/// closes the connection on it.
#[derive(Debug)]
pub struct BodyAborted;

impl std::fmt::Display for BodyAborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response body aborted")
    }
}

impl std::error::Error for BodyAborted {}

enum Kind {
    Full(Option<Bytes>),
    Short(Option<Bytes>),
    Stream(mpsc::Receiver<Chunk>),
    /// The body must end in an error, after hyper had one chance to flush
    /// what was already written (hyper drops its write buffer on a body error).
    Aborting,
    Done,
}

/// A response body, with the bookkeeping done when it ends.
pub struct ResponseBody {
    kind: Kind,
    /// Body bytes handed to hyper so far (for the access log).
    sent: u64,
    /// The access-log record, completed on drop; `None` when the log is off.
    access: Option<(AccessRecord, Instant)>,
    /// Keeps the connection from being seen as idle while the body is out.
    _in_flight: Option<InFlight>,
}

impl ResponseBody {
    /// A body from what the Python side produced.
    pub fn new(source: BodySource) -> Self {
        let kind = match source {
            BodySource::Full(b) => Kind::Full(Some(b)),
            BodySource::Short(b) => Kind::Short(Some(b)),
            BodySource::Stream(rx) => Kind::Stream(rx),
        };
        ResponseBody {
            kind,
            sent: 0,
            access: None,
            _in_flight: None,
        }
    }

    /// A complete body held in memory.
    pub fn full(data: impl Into<Bytes>) -> Self {
        Self::new(BodySource::Full(data.into()))
    }

    /// Attaches the bookkeeping: the access record (if logging) and the
    /// in-flight guard of the connection.
    pub fn track(mut self, access: Option<(AccessRecord, Instant)>, guard: InFlight) -> Self {
        self.access = access;
        self._in_flight = Some(guard);
        self
    }

    /// Yields once so hyper flushes the bytes already written, then errors.
    fn abort(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        self.kind = Kind::Aborting;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn data(&mut self, bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        self.sent += bytes.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        let this = &mut *self;
        match &mut this.kind {
            Kind::Full(data) => match data.take() {
                Some(b) if !b.is_empty() => this.data(b),
                _ => Poll::Ready(None),
            },
            Kind::Short(data) => match data.take() {
                Some(b) if !b.is_empty() => this.data(b),
                _ => this.abort(cx),
            },
            Kind::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Chunk::Data(b))) => this.data(b),
                Poll::Ready(Some(Chunk::Abort)) => this.abort(cx),
                Poll::Ready(None) => Poll::Ready(None),
            },
            Kind::Aborting => {
                this.kind = Kind::Done;
                Poll::Ready(Some(Err(BodyAborted)))
            }
            Kind::Done => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, Kind::Full(None) | Kind::Done)
            || matches!(&self.kind, Kind::Full(Some(b)) if b.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some((mut record, started)) = self.access.take() {
            record.bytes = self.sent;
            record.duration = started.elapsed();
            log::access(&record);
        }
    }
}
