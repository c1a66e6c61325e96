//! The response body of one stream, as hyper polls it.
//!
//! Rules kept here:
//! - A whole body is one DATA frame with END_STREAM, its length known
//!   (hyper sets `content-length` from it unless the application did).
//! - A short body (less than the declared Content-Length) is sent, then the
//!   body fails, so hyper resets the stream (RST_STREAM INTERNAL_ERROR):
//!   never a truncated response that looks complete. `Chunk::Abort` on a
//!   streamed body does the same.
//! - A streamed body is read from the gateway's bounded channel only when
//!   hyper asks for the next frame, which it does only when flow control
//!   lets it send: the Python thread blocks meanwhile (backpressure).
//! - Dropping the body (the response is complete, or the client reset the
//!   stream) drops the receiver, which tells the gateway to close the
//!   iterable; the stream is counted closed for the idle timer and its
//!   access-log line is written.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::Activity;
use crate::exchange::Chunk;
use crate::log::AccessRecord;

/// Why a response body ended before its end: hyper resets the stream.
#[derive(Debug)]
pub(super) struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the response body could not be completed")
    }
}

impl std::error::Error for Aborted {}

/// What is left to do when a stream ends, whichever way it ends: count it
/// closed, and write its access-log line (once a response was made).
pub(super) struct Finished {
    activity: Arc<Activity>,
    /// The access-log record, when the access log is on.
    pub(super) access: Option<AccessRecord>,
    /// The response status; 0 until there is a response.
    pub(super) status: u16,
    /// Body bytes handed to hyper.
    bytes: u64,
}

impl Finished {
    /// A stream began (counted open until this is dropped).
    pub(super) fn new(activity: Arc<Activity>) -> Self {
        activity.opened();
        Finished {
            activity,
            access: None,
            status: 0,
            bytes: 0,
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.activity.closed();
        if let Some(record) = self.access.take() {
            if self.status != 0 {
                record.write(self.bytes);
            }
        }
    }
}

/// Where the bytes of a response body come from.
enum Source {
    /// Nothing (left) to send.
    Empty,
    /// The whole body, sent in one frame.
    Full(Bytes),
    /// A body short of its declared length: sent, then the stream is reset.
    Short(Option<Bytes>),
    /// Chunks from the Python thread.
    Stream(mpsc::Receiver<Chunk>),
}

/// The body of one stream's response.
pub(super) struct ResponseBody {
    source: Source,
    finished: Finished,
}

impl ResponseBody {
    /// No body.
    pub(super) fn empty(finished: Finished) -> Self {
        ResponseBody {
            source: Source::Empty,
            finished,
        }
    }

    /// A whole body.
    pub(super) fn full(bytes: Bytes, finished: Finished) -> Self {
        ResponseBody {
            source: Source::Full(bytes),
            finished,
        }
    }

    /// A body short of its declared length.
    pub(super) fn short(bytes: Bytes, finished: Finished) -> Self {
        ResponseBody {
            source: Source::Short(Some(bytes)),
            finished,
        }
    }

    /// A body streamed by the Python thread.
    pub(super) fn stream(rx: mpsc::Receiver<Chunk>, finished: Finished) -> Self {
        ResponseBody {
            source: Source::Stream(rx),
            finished,
        }
    }

    fn data(&mut self, bytes: Bytes) -> Option<Result<Frame<Bytes>, Aborted>> {
        self.finished.bytes += bytes.len() as u64;
        Some(Ok(Frame::data(bytes)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = self.get_mut();
        let next = match &mut this.source {
            Source::Empty => None,
            Source::Full(_) => match std::mem::replace(&mut this.source, Source::Empty) {
                Source::Full(bytes) => this.data(bytes),
                _ => None,
            },
            Source::Short(rest) => match rest.take() {
                Some(bytes) => this.data(bytes),
                None => Some(Err(Aborted)),
            },
            Source::Stream(rx) => match rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Chunk::Data(bytes))) => this.data(bytes),
                Poll::Ready(Some(Chunk::Abort)) => Some(Err(Aborted)),
                Poll::Ready(None) => None,
            },
        };
        Poll::Ready(next)
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.source, Source::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Empty => SizeHint::with_exact(0),
            Source::Full(bytes) => SizeHint::with_exact(bytes.len() as u64),
            Source::Short(_) | Source::Stream(_) => SizeHint::default(),
        }
    }
}
