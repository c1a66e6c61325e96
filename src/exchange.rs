//! The plain-Rust messages between the I/O side and the Python side.
//!
//! A [`Job`] carries one fully-read request from a tokio task to a Python
//! thread; the Python thread answers once with a [`ResponseStart`] on the
//! job's oneshot channel, and, for a streamed body, keeps sending [`Chunk`]s
//! on a bounded channel (backpressure: the Python thread blocks, GIL released,
//! while the client is slow). No Python object ever crosses this seam.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode, Uri, Version};
use tokio::sync::{mpsc, oneshot};

/// What a listener is bound to, as shown to users and to the environ
/// (SERVER_PORT is the port a request was received on: RFC 3875 §4.1.15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalAddr {
    /// A TCP address (the real port when 0 was asked for).
    Tcp(SocketAddr),
    /// A unix socket path (may be empty for an unnamed inherited socket).
    Unix(PathBuf),
}

/// A request body, read completely before the application runs.
#[derive(Debug)]
pub enum RequestBody {
    /// No body bytes.
    Empty,
    /// A body held in memory (up to `body_buffer_size` bytes).
    Memory(Bytes),
    /// A body spilled to an anonymous temporary file, rewound to its start.
    File(File, u64),
}

impl RequestBody {
    /// Body length, bytes.
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Empty => 0,
            RequestBody::Memory(b) => b.len() as u64,
            RequestBody::File(_, n) => *n,
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One request, as the gateway needs it to build the environ.
#[derive(Debug)]
pub struct Request {
    /// Request method.
    pub method: Method,
    /// Request target (origin-form, or absolute-form from a proxy).
    pub uri: Uri,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// Request headers, in arrival order.
    pub headers: HeaderMap,
    /// Whether the request carried framing (Content-Length or chunked), so
    /// CONTENT_LENGTH belongs in the environ even for an empty body.
    pub has_body_framing: bool,
    /// The request body.
    pub body: RequestBody,
    /// The client; `None` on a unix socket.
    pub peer: Option<SocketAddr>,
    /// The listener the request arrived on.
    pub local: Arc<LocalAddr>,
}

/// The response head, and how its body will come.
#[derive(Debug)]
pub struct ResponseStart {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase, when the application's differs from the standard one.
    pub reason: Option<Bytes>,
    /// Response headers (validated by `start_response`).
    pub headers: HeaderMap,
    /// The body.
    pub body: BodySource,
}

/// Where the response body comes from.
#[derive(Debug)]
pub enum BodySource {
    /// The whole body, known now: sent with an exact length.
    Full(Bytes),
    /// Bytes that fall short of the declared Content-Length: sent, then the
    /// connection is closed (never let the next response fill the gap).
    Short(Bytes),
    /// Chunks still being produced by the Python thread.
    Stream(mpsc::Receiver<Chunk>),
}

/// One message on a streamed body.
#[derive(Debug)]
pub enum Chunk {
    /// Body bytes.
    Data(Bytes),
    /// The body cannot be completed (application error, short body): the
    /// connection must be closed rather than the response ended normally.
    Abort,
}

/// Work for a Python thread: a request and where to answer.
#[derive(Debug)]
pub struct Job {
    /// The request.
    pub request: Request,
    /// Receives the response head exactly once.
    pub reply: oneshot::Sender<ResponseStart>,
}

/// Where the I/O side hands fully-read requests (implemented by the gateway
/// side, `wsgi::dispatch`).
pub trait Dispatch: Send + Sync {
    /// Takes `job` to the application. May run it before returning (inline
    /// mode).
    ///
    /// # Errors
    /// [`Stopped`] when no Python thread will take it any more.
    fn dispatch(&self, job: Job) -> Result<(), Stopped>;
}

/// The application side has stopped taking requests.
#[derive(Debug, Clone, Copy)]
pub struct Stopped;

/// Value of the `Server` response header, unless the application sets one.
pub const SERVER_HEADER: &str = concat!("ferrowsgi/", env!("CARGO_PKG_VERSION"));

impl ResponseStart {
    /// A short `text/plain` answer made by the server itself (4xx/5xx).
    ///
    /// `close`: add `Connection: close`, for errors after which the rest of
    /// the connection's bytes cannot be trusted (RFC 9112 §9.6).
    pub fn plain(status: StatusCode, close: bool) -> Self {
        use http::header::{HeaderValue, CONNECTION, CONTENT_TYPE, SERVER};
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(SERVER, HeaderValue::from_static(SERVER_HEADER));
        if close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let reason = status.canonical_reason().unwrap_or("Error");
        let body = Bytes::from(format!("{} {reason}\n", status.as_u16()));
        ResponseStart {
            status,
            reason: None,
            headers,
            body: BodySource::Full(body),
        }
    }
}
