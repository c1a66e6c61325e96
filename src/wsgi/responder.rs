//! The responder: the state machine behind one response. `start_response`
//! records the head, `write()` and the response driver (`response.rs`) feed
//! it the body; it decides what goes to the connection, and when.
//!
//! Rules kept here:
//! - Headers go out with the first non-empty chunk; empty chunks are skipped.
//!   A body before `start_response` is an error.
//! - A whole body (from a list or tuple) is sent in one piece with an exact
//!   Content-Length (the application's own, or computed).
//! - A streamed body goes chunk by chunk through a bounded channel
//!   (`STREAM_CHUNKS`); the Python thread blocks (GIL released) while the
//!   client is slow.
//! - Never more bytes than the application's Content-Length; fewer, and the
//!   connection is closed after them, and the error log says so.
//! - HEAD: the head is computed as for GET and no body byte is sent; a length
//!   not known because the body was not run through is left out.
//! - Inline mode (`--threads 1`, see `wsgi::dispatch`): the responder runs on
//!   the I/O thread, which must never block. A chunk that finds the stream
//!   buffer full is kept in the backlog instead, in order, and the stream
//!   stays open until `Responder::leave_inline`, on a Python thread, has
//!   sent the backlog.
//!
//! This module imports neither `start_response.rs` nor `response.rs`: they
//! drive it.

use std::collections::VecDeque;

use bytes::Bytes;
use http::{Method, StatusCode, Uri};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use crate::exchange::{BodySource, Chunk, ResponseHeaders, ResponseStart};
use crate::log::{self, Severity};
use crate::wsgi::errors::Failure;

/// Chunks buffered between the Python thread and the connection; with the
/// application's chunk size this bounds memory per streamed response.
const STREAM_CHUNKS: usize = 16;

/// Body chunks of at least this many bytes are sent straight from the
/// application's `bytes` object; smaller ones are copied, which costs less
/// than releasing the object later from the I/O thread.
const SHARE_AT: usize = 16 * 1024;

/// Body bytes that stay in the application's `bytes` object (no copy).
struct SharedBytes {
    /// Keeps the object, hence its buffer, alive (released without the GIL
    /// through PyO3's deferred reference counting).
    _object: Py<PyBytes>,
    data: *const u8,
    len: usize,
}

// SAFETY: `data` points into the buffer of `_object`, which this struct keeps
// alive; a `bytes` object's buffer never moves or changes.
unsafe impl Send for SharedBytes {}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: see `Send` above; `len` is the buffer's length.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

/// `chunk` as `Bytes`: shared when large (at least `SHARE_AT` bytes),
/// copied when small.
pub(crate) fn body_bytes(chunk: &Bound<'_, PyBytes>) -> Bytes {
    let data = chunk.as_bytes();
    if data.len() < SHARE_AT {
        return Bytes::copy_from_slice(data);
    }
    let shared = SharedBytes {
        _object: chunk.clone().unbind(),
        data: data.as_ptr(),
        len: data.len(),
    };
    Bytes::from_owner(shared)
}

/// A validated response head from `start_response`.
#[derive(Debug)]
pub struct Head {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase, when not the standard one.
    pub reason: Option<Bytes>,
    /// Header fields, `Server` included (and the application's
    /// Content-Length, if it set one).
    pub headers: ResponseHeaders,
}

/// The response side of one request: what was started, what was sent.
pub struct Responder {
    /// Taken when the head is sent; `None` means headers are out.
    reply: Option<oneshot::Sender<ResponseStart>>,
    /// Set by `start_response`, taken when sent.
    head: Option<Head>,
    /// Open while a streamed body is being sent.
    stream: Option<mpsc::Sender<Chunk>>,
    /// Bytes still allowed by the application's Content-Length.
    budget: Option<u64>,
    /// The application's Content-Length of a streamed body, for log lines.
    declared: Option<u64>,
    /// HEAD only: the iterator had body bytes that were not run through, so
    /// the length is unknown (as for the GET answer, which is chunked).
    head_body_skipped: bool,
    /// Running on the I/O thread: never block (see the module notes).
    inline: bool,
    /// Inline only: chunks that found the stream buffer full, in order.
    backlog: VecDeque<Chunk>,
    /// The response is complete, but the stream stays open until the
    /// backlog has been sent.
    ended: bool,
    /// The request's method: HEAD is answered without a body.
    method: Method,
    /// The request's target, for log lines.
    uri: Uri,
}

impl Responder {
    /// A responder answering on `reply` for a `method` request to `uri`;
    /// `inline`: it runs on the I/O thread and must never block.
    pub fn new(
        reply: oneshot::Sender<ResponseStart>,
        method: Method,
        uri: Uri,
        inline: bool,
    ) -> Self {
        Responder {
            reply: Some(reply),
            head: None,
            stream: None,
            budget: None,
            declared: None,
            head_body_skipped: false,
            inline,
            backlog: VecDeque::new(),
            ended: false,
            method,
            uri,
        }
    }

    /// Whether chunks wait in the backlog (inline mode only): the rest of
    /// the response must go on on a Python thread.
    pub(crate) fn is_backlogged(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Leaves inline mode on a Python thread: sends the backlog, waiting for
    /// the client as needed, then closes the stream if the response ended.
    ///
    /// # Errors
    /// `Failure::ClientGone` when the connection is gone.
    pub(crate) fn leave_inline(&mut self, py: Python<'_>) -> Result<(), Failure> {
        self.inline = false;
        while let Some(chunk) = self.backlog.pop_front() {
            self.send_chunk(py, chunk)?;
        }
        if self.ended {
            self.stream = None;
        }
        Ok(())
    }

    /// Closes the stream, or marks it to close once the backlog is sent.
    fn end_stream(&mut self) {
        if self.is_backlogged() {
            self.ended = true;
        } else {
            self.stream = None;
        }
    }

    /// `"GET /path?query"`, for log lines.
    pub fn label(&self) -> String {
        let target = self.uri.path_and_query().map_or("/", |p| p.as_str());
        format!("{} {target}", self.method)
    }

    /// Whether the head has been handed to the connection.
    pub fn headers_sent(&self) -> bool {
        self.reply.is_none()
    }

    /// Whether `start_response` has been called (and not yet superseded).
    pub fn has_head(&self) -> bool {
        self.head.is_some() || self.headers_sent()
    }

    /// Records (or, with exc_info, replaces) the head to send.
    pub fn set_head(&mut self, head: Head) {
        self.head = Some(head);
    }

    /// Whether this answers a HEAD request: no body byte is sent.
    pub(crate) fn is_head_request(&self) -> bool {
        self.method == Method::HEAD
    }

    /// HEAD only: the application's iterator has body bytes that will not be
    /// run through, so the answer goes out without a Content-Length.
    ///
    /// # Errors
    /// `Failure::Protocol` before `start_response`.
    pub(crate) fn skip_head_body(&mut self) -> Result<(), Failure> {
        self.head_body_skipped = true;
        self.require_head()
    }

    fn require_head(&self) -> Result<(), Failure> {
        if self.has_head() {
            Ok(())
        } else {
            Err(Failure::protocol(
                "the application produced a body before calling start_response() (PEP 3333)",
            ))
        }
    }

    /// Sends `chunk` as the next body chunk, the head first if not yet sent.
    ///
    /// # Errors
    /// `Failure::Protocol` before `start_response`; `Failure::ClientGone`
    /// when the connection is gone.
    pub fn write(&mut self, py: Python<'_>, chunk: &Bound<'_, PyBytes>) -> Result<(), Failure> {
        self.write_data(py, body_bytes(chunk))
    }

    /// As `write`, for bytes already taken from the application.
    fn write_data(&mut self, py: Python<'_>, data: Bytes) -> Result<(), Failure> {
        self.require_head()?;
        if data.is_empty() || self.is_head_request() {
            return Ok(());
        }
        if let Some(head) = self.head.take().filter(|_| !self.headers_sent()) {
            self.start_stream(head)?;
        }
        let allowed = self
            .budget
            .map_or(data.len(), |b| data.len().min(b as usize));
        if allowed < data.len() {
            self.log_long();
        }
        if allowed == 0 {
            return Ok(());
        }
        self.budget = self.budget.map(|b| b - allowed as u64);
        self.send_chunk(py, Chunk::Data(data.slice(..allowed)))
    }

    /// Sends `head` with a streamed body, and opens the stream.
    fn start_stream(&mut self, head: Head) -> Result<(), Failure> {
        self.budget = head.headers.content_length();
        self.declared = head.headers.content_length();
        let (tx, rx) = mpsc::channel(STREAM_CHUNKS);
        self.send_start(head, BodySource::Stream(rx))?;
        self.stream = Some(tx);
        Ok(())
    }

    fn send_start(&mut self, head: Head, body: BodySource) -> Result<(), Failure> {
        let reply = self.reply.take().ok_or(Failure::ClientGone)?;
        let Head {
            status,
            reason,
            headers,
            ..
        } = head;
        reply
            .send(ResponseStart {
                status,
                reason,
                headers,
                body,
            })
            .map_err(|_| Failure::ClientGone)
    }

    fn send_chunk(&mut self, py: Python<'_>, chunk: Chunk) -> Result<(), Failure> {
        let Some(tx) = self.stream.as_ref() else {
            return Err(Failure::ClientGone);
        };
        if self.inline && self.is_backlogged() {
            self.backlog.push_back(chunk); // keep the order
            return Ok(());
        }
        match tx.try_send(chunk) {
            Ok(()) => Ok(()),
            // Inline: the I/O thread must not wait for the client.
            Err(TrySendError::Full(chunk)) if self.inline => {
                self.backlog.push_back(chunk);
                Ok(())
            }
            // The client is slower than the application: wait without the GIL.
            Err(TrySendError::Full(chunk)) => py
                .detach(|| tx.blocking_send(chunk))
                .map_err(|_| Failure::ClientGone),
            Err(TrySendError::Closed(_)) => Err(Failure::ClientGone),
        }
    }

    /// Sends a whole body collected from a list or tuple.
    ///
    /// # Errors
    /// As [`Responder::write`].
    pub fn send_full(&mut self, py: Python<'_>, body: Bytes) -> Result<(), Failure> {
        self.send_whole(py, body, true)
    }

    /// As `send_full`; `known`: whether the body length is known (false for
    /// a HEAD answer whose iterator was not run to its end).
    fn send_whole(&mut self, py: Python<'_>, body: Bytes, known: bool) -> Result<(), Failure> {
        if self.headers_sent() {
            return self.write_data(py, body); // write() was used: keep streaming
        }
        self.require_head()?;
        let Some(mut head) = self.head.take() else {
            return Err(Failure::ClientGone);
        };
        if self.is_head_request() {
            if head.headers.content_length().is_none() && known {
                head.headers.set_content_length(body.len() as u64);
            }
            return self.send_start(head, BodySource::Full(Bytes::new()));
        }
        let source = self.fit(body, head.headers.content_length());
        self.send_start(head, source)
    }

    /// A whole `body` held to the application's `content_length`: cut when
    /// longer, sent as short (the connection closes) when shorter.
    fn fit(&self, body: Bytes, content_length: Option<u64>) -> BodySource {
        let len = body.len() as u64;
        match content_length {
            Some(declared) if len > declared => {
                self.log_long();
                BodySource::Full(body.slice(..declared as usize))
            }
            Some(declared) if len < declared => {
                self.log_short(declared - len, declared);
                BodySource::Short(body)
            }
            _ => BodySource::Full(body),
        }
    }

    /// Ends the response normally.
    ///
    /// # Errors
    /// As [`Responder::write`].
    pub fn finish(&mut self, py: Python<'_>) -> Result<(), Failure> {
        if !self.headers_sent() {
            return self.send_whole(py, Bytes::new(), !self.head_body_skipped);
        }
        if let Some(missing) = self.budget.filter(|b| *b > 0) {
            self.log_short(missing, self.declared.unwrap_or(missing));
            self.send_chunk(py, Chunk::Abort)?;
        }
        self.end_stream();
        Ok(())
    }

    fn log_long(&self) {
        log::emit(
            Severity::Warning,
            &format!(
                "{}: body longer than its Content-Length; truncated",
                self.label()
            ),
        );
    }

    fn log_short(&self, missing: u64, declared: u64) {
        log::emit(
            Severity::Error,
            &format!(
                "{}: the application sent {missing} bytes fewer than its Content-Length \
                 ({declared}); closing the connection",
                self.label()
            ),
        );
    }

    /// Ends the response after `failure`: logs it, then answers 500 if the
    /// head is not out yet, or aborts the body (the connection closes).
    pub fn fail(&mut self, py: Python<'_>, failure: Failure) {
        failure.log(py, &self.label());
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(ResponseStart::plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                false,
            ));
        } else if self.stream.is_some() {
            let _ = self.send_chunk(py, Chunk::Abort);
            self.end_stream();
        }
    }
}
