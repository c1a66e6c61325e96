//! Turning what the application returned into a response (PEP 3333, "The
//! Application/Framework Side" and "Buffering and Streaming").
//!
//! Rules kept here:
//! - A list or tuple of bytes is taken whole: one body with an exact
//!   Content-Length (the application's own, or computed).
//! - Any other iterable is streamed chunk by chunk through a bounded channel;
//!   the Python thread blocks (GIL released) while the client is slow.
//! - Headers go out with the first non-empty chunk; empty chunks are skipped.
//! - Never more bytes than the application's Content-Length; fewer, and the
//!   connection is closed after them, and the error log says so.
//! - HEAD: the head is computed as for GET, no body byte is sent, iteration
//!   stops at the first non-empty chunk.
//! - `close()` is called on the iterable exactly once, whatever happened, and
//!   before the response ends, so a client that sees the end of the response
//!   knows `close()` has run.
//! - A `str`, `bytes`, `None` or a non-bytes chunk is a 500 with a log line
//!   saying what PEP 3333 requires.
//!
//! Inline mode (`--threads 1`, see `wsgi::dispatch`): the application runs on
//! the I/O thread, which must never block. A chunk that finds the stream
//! buffer full is kept in the responder's backlog instead, and the rest of
//! the iteration moves to a Python thread as a [`Resume`], which sends the
//! backlog first and then carries on with normal backpressure.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use hyper::header::{HeaderValue, CONTENT_LENGTH};
use hyper::{HeaderMap, Method, StatusCode, Uri};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString, PyTuple};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use crate::exchange::{BodySource, Chunk, ResponseStart};
use crate::log::{self, Severity};
use crate::wsgi::errors::{describe, Failure};
use crate::wsgi::start_response::StartResponse;

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

/// `chunk` as `Bytes`: shared when large, copied when small.
fn body_bytes(chunk: &Bound<'_, PyBytes>) -> Bytes {
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
    /// Headers, `Server` included.
    pub headers: HeaderMap,
    /// The application's Content-Length, if it set one, bytes.
    pub content_length: Option<u64>,
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
    method: Method,
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

    /// Whether chunks wait in the backlog (inline mode only).
    fn is_backlogged(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Leaves inline mode on a Python thread: sends the backlog, waiting for
    /// the client as needed, then closes the stream if the response ended.
    ///
    /// # Errors
    /// `Failure::ClientGone` when the connection is gone.
    fn leave_inline(&mut self, py: Python<'_>) -> Result<(), Failure> {
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

    fn is_head_request(&self) -> bool {
        self.method == Method::HEAD
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
            self.budget = head.content_length;
            self.declared = head.content_length;
            let (tx, rx) = mpsc::channel(STREAM_CHUNKS);
            self.send_start(head, BodySource::Stream(rx))?;
            self.stream = Some(tx);
        }
        let allowed = self
            .budget
            .map_or(data.len(), |b| data.len().min(b as usize));
        if allowed < data.len() {
            log::emit(
                Severity::Warning,
                &format!(
                    "{}: body longer than its Content-Length; truncated",
                    self.label()
                ),
            );
        }
        if allowed == 0 {
            return Ok(());
        }
        self.budget = self.budget.map(|b| b - allowed as u64);
        self.send_chunk(py, Chunk::Data(data.slice(..allowed)))
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
        let len = body.len() as u64;
        if self.is_head_request() {
            if head.content_length.is_none() && known {
                head.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
            }
            return self.send_start(head, BodySource::Full(Bytes::new()));
        }
        let source = match head.content_length {
            Some(declared) if len > declared => {
                log::emit(
                    Severity::Warning,
                    &format!(
                        "{}: body longer than its Content-Length; truncated",
                        self.label()
                    ),
                );
                BodySource::Full(body.slice(..declared as usize))
            }
            Some(declared) if len < declared => {
                self.log_short(declared - len, declared);
                BodySource::Short(body)
            }
            _ => BodySource::Full(body),
        };
        self.send_start(head, source)
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

/// What iterating the application's result came to.
enum Delivered<'py> {
    /// A list or tuple, joined: to send whole after `close()`.
    Whole(Bytes),
    /// Everything was streamed (or, for HEAD, nothing had to be).
    Streamed,
    /// Inline only: the stream buffer is full; the rest of the iteration
    /// must go on on a Python thread.
    Suspended(Bound<'py, PyIterator>),
}

/// The rest of a response that began inline, for a Python thread to finish
/// (see the module notes): the backlog, the rest of the iterator, `close()`.
pub struct Resume {
    start_response: Py<StartResponse>,
    /// The iterable (for `close()`) and its iterator, to run on; `None` when
    /// the iteration and `close()` are done and only the backlog is left.
    rest: Option<(Py<PyAny>, Py<PyIterator>)>,
}

impl Resume {
    /// Finishes the response; blocks (GIL released) while the client is slow.
    pub fn run(self, py: Python<'_>) {
        let sr = self.start_response.bind(py);
        let start_response = sr.get();
        let flushed = start_response.responder().leave_inline(py);
        let Some((iterable, iterator)) = self.rest else {
            if let Err(failure) = flushed {
                failure.log(py, &start_response.responder().label());
            }
            return;
        };
        let delivered =
            flushed.and_then(|()| stream_rest(py, start_response, iterator.into_bound(py)));
        complete(py, start_response, iterable.bind(py), delivered);
    }
}

/// Sends the response for the application's result, then calls `close()`.
/// Returns what is left to do on a Python thread when running inline.
pub fn run(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    result: PyResult<Bound<'_, PyAny>>,
) -> Option<Resume> {
    let start_response = sr.get();
    let iterable = match result {
        Ok(iterable) => iterable,
        Err(e) => {
            start_response.responder().fail(py, Failure::Exception(e));
            return backlog_left(sr);
        }
    };
    match deliver(py, start_response, &iterable) {
        Ok(Delivered::Suspended(iterator)) => {
            return Some(Resume {
                start_response: sr.clone().unbind(),
                rest: Some((iterable.unbind(), iterator.unbind())),
            })
        }
        delivered => complete(py, start_response, &iterable, delivered),
    }
    backlog_left(sr)
}

/// A `Resume` that only sends the backlog, if chunks are left in it.
fn backlog_left(sr: &Bound<'_, StartResponse>) -> Option<Resume> {
    sr.get().responder().is_backlogged().then(|| Resume {
        start_response: sr.clone().unbind(),
        rest: None,
    })
}

/// Calls `close()`, then ends the response as `delivered` says.
fn complete(
    py: Python<'_>,
    start_response: &StartResponse,
    iterable: &Bound<'_, PyAny>,
    delivered: Result<Delivered<'_>, Failure>,
) {
    let closed = close(py, iterable);
    let mut responder = start_response.responder();
    let outcome = match (delivered, closed) {
        (Ok(Delivered::Whole(body)), Ok(())) => responder.send_full(py, body),
        (Ok(_), Ok(())) => responder.finish(py),
        (Ok(_), Err(e)) => Err(Failure::Exception(e)),
        (Err(failure), Ok(())) => Err(failure),
        (Err(failure), Err(e)) => {
            Failure::Exception(e).log(py, &responder.label());
            Err(failure)
        }
    };
    if let Err(failure) = outcome {
        responder.fail(py, failure);
    }
}

/// Sends what the iterable yields; a list or tuple is returned whole instead,
/// to be sent after `close()`.
fn deliver<'py>(
    py: Python<'py>,
    start_response: &StartResponse,
    iterable: &Bound<'py, PyAny>,
) -> Result<Delivered<'py>, Failure> {
    if let Ok(list) = iterable.cast::<PyList>() {
        return collect(list.iter()).map(Delivered::Whole);
    }
    if let Ok(tuple) = iterable.cast::<PyTuple>() {
        return collect(tuple.iter()).map(Delivered::Whole);
    }
    reject_non_iterables(iterable)?;
    let iterator = iterable.try_iter().map_err(|_| {
        Failure::protocol(format!(
            "the application returned {}, which is not iterable; \
             PEP 3333 requires an iterable of bytestrings",
            describe(iterable)
        ))
    })?;
    stream_rest(py, start_response, iterator)
}

/// Sends the chunks `iterator` yields, until it ends or (inline) the stream
/// buffer is full.
fn stream_rest<'py>(
    py: Python<'py>,
    start_response: &StartResponse,
    mut iterator: Bound<'py, PyIterator>,
) -> Result<Delivered<'py>, Failure> {
    if start_response.responder().is_backlogged() {
        return Ok(Delivered::Suspended(iterator)); // write() filled the buffer
    }
    while let Some(item) = iterator.next() {
        let item = item.map_err(Failure::Exception)?;
        let chunk = item.cast::<PyBytes>().map_err(|_| bad_chunk(&item))?;
        if chunk.as_bytes().is_empty() {
            continue;
        }
        let mut responder = start_response.responder();
        if responder.is_head_request() {
            responder.head_body_skipped = true;
            return responder.require_head().map(|()| Delivered::Streamed);
        }
        responder.write(py, chunk)?;
        if responder.is_backlogged() {
            return Ok(Delivered::Suspended(iterator));
        }
    }
    Ok(Delivered::Streamed)
}

/// Joins the bytes of a list or tuple body; a single item is taken as it is
/// (shared, not copied, when large).
fn collect<'py>(
    mut items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
) -> Result<Bytes, Failure> {
    let as_bytes = |item: &Bound<'py, PyAny>| -> Result<Bound<'py, PyBytes>, Failure> {
        item.cast::<PyBytes>().cloned().map_err(|_| bad_chunk(item))
    };
    if items.len() == 1 {
        let item = items.next().expect("one item");
        return as_bytes(&item).map(|chunk| body_bytes(&chunk));
    }
    let mut body = BytesMut::new();
    for item in items {
        body.extend_from_slice(as_bytes(&item)?.as_bytes());
    }
    Ok(body.freeze())
}

fn bad_chunk(item: &Bound<'_, PyAny>) -> Failure {
    Failure::protocol(format!(
        "the application's iterable yielded {}; PEP 3333 requires an iterable of \
         bytestrings (bytes, not str: encode the text)",
        describe(item)
    ))
}

/// The usual mistakes, named: a `str` (Python 2 era tutorials), `bytes`
/// (iterable, but of ints), `None` (a forgotten `return`).
fn reject_non_iterables(value: &Bound<'_, PyAny>) -> Result<(), Failure> {
    let what = if value.is_none() {
        "None (did it forget to return the body?)".to_owned()
    } else if value.is_instance_of::<PyString>() {
        format!(
            "a str ({}); return [body.encode()] instead",
            describe(value)
        )
    } else if value.is_instance_of::<PyBytes>() {
        format!(
            "a bare bytes object ({}); return [body] instead",
            describe(value)
        )
    } else {
        return Ok(());
    };
    Err(Failure::protocol(format!(
        "the application returned {what}. PEP 3333 requires an iterable of bytestrings"
    )))
}

/// Calls `iterable.close()` if it has one (PEP 3333: exactly once). A plain
/// list or tuple has none: asking would build and drop an AttributeError.
fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    if iterable.hasattr(intern!(py, "close"))? {
        iterable.call_method0(intern!(py, "close"))?;
    }
    Ok(())
}
