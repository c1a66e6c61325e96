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
use http::{HeaderMap, StatusCode};
use tokio::sync::{mpsc, oneshot};

mod file;

#[cfg(test)]
pub use file::temp_file;
pub use file::{read_cached, FileRegion, FILE_CHUNK};

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

/// CGI variables a front door hands to the environ as they are: a uwsgi or
/// FastCGI proxy's vars (SCRIPT_NAME, PATH_INFO, SERVER_NAME, DOCUMENT_ROOT
/// …), a TLS connection's facts (`SSL_CLIENT_S_DN`). Names and values are
/// bytes (latin-1 in the environ, PEP 3333 "Unicode Issues").
pub type Vars = Vec<(Bytes, Bytes)>;

/// What a connection knows of itself, handed to the engine that serves it
/// and copied into each of its requests.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client; `None` on a unix socket. From a trusted proxy (PROXY
    /// protocol), the client it names.
    pub peer: Option<SocketAddr>,
    /// The listener the connection arrived on.
    pub local: Arc<LocalAddr>,
    /// `https` on a TLS connection; `None`: the server's own
    /// (`--url-scheme`).
    pub scheme: Option<&'static str>,
    /// Variables for the environ of each request (TLS facts), if any.
    pub vars: Option<Arc<Vars>>,
}

impl Connection {
    /// A plain connection from `peer` on `local`.
    pub fn plain(peer: Option<SocketAddr>, local: Arc<LocalAddr>) -> Self {
        Connection {
            peer,
            local,
            scheme: None,
            vars: None,
        }
    }
}

/// One request across the seam: the HTTP request with its body already
/// buffered (the `http` crate's type, which hyper's HTTP/2 server uses too,
/// so every engine hands over the same thing), and what the connection knows
/// of itself.
#[derive(Debug)]
pub struct Request {
    /// Method, target (origin-form, or absolute-form from a proxy), version,
    /// header fields in arrival order, and the body.
    pub http: http::Request<RequestBody>,
    /// Whether the request carried framing (Content-Length or chunked), so
    /// CONTENT_LENGTH belongs in the environ even for an empty body.
    pub has_body_framing: bool,
    /// The client; `None` on a unix socket. From a trusted proxy, the
    /// client it names (PROXY protocol, forwarded headers); port 0 when the
    /// proxy gave none.
    pub peer: Option<SocketAddr>,
    /// The listener the request arrived on.
    pub local: Arc<LocalAddr>,
    /// `wsgi.url_scheme` when the connection (TLS) or a trusted proxy said
    /// it (`http` or `https`); `None`: the server's own.
    pub scheme: Option<&'static str>,
    /// Variables set in the environ last, over the ones made from the
    /// request (a uwsgi or FastCGI proxy's vars, TLS facts).
    pub vars: Option<Arc<Vars>>,
}

impl Request {
    /// `http` as received on `conn`.
    pub fn new(
        http: http::Request<RequestBody>,
        has_body_framing: bool,
        conn: &Connection,
    ) -> Self {
        Request {
            http,
            has_body_framing,
            peer: conn.peer,
            local: conn.local.clone(),
            scheme: conn.scheme,
            vars: conn.vars.clone(),
        }
    }
}

/// Which of the applications mounted side by side (`ferrowsgi.mount`,
/// `--mount`) a request goes to: put in the request's extensions by
/// `middleware::mount`, read by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mounted {
    /// The application's index, in the order the gateway holds them.
    pub app: usize,
    /// Bytes at the front of the percent-decoded path (after SCRIPT_NAME)
    /// that the prefix takes: they move from PATH_INFO to SCRIPT_NAME (PEP
    /// 3333, RFC 3875 §4.1.13). 0 for the application at `/`.
    pub prefix_len: usize,
}

/// The rest of `path` when it lies under `prefix` by whole segments, RFC
/// 3986 §3.3 (`/api` takes `/api`, `/api/` and `/api/x`, not `/apix`): `""`
/// for the prefix itself, else a part that starts with `/`. The prefix `/`
/// takes every path and leaves it whole. `prefix` has no trailing slash
/// (but for `/`).
pub fn under_prefix<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = under_prefix_bytes(prefix.as_bytes(), path.as_bytes())?;
    // The rest starts at a '/' or at the end: a char boundary.
    Some(&path[path.len() - rest.len()..])
}

/// [`under_prefix`] on bytes (a percent-decoded path need not be UTF-8).
pub fn under_prefix_bytes<'a>(prefix: &[u8], path: &'a [u8]) -> Option<&'a [u8]> {
    if prefix == b"/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest[0] == b'/').then_some(rest)
}

/// The response head, and how its body will come.
#[derive(Debug)]
pub struct ResponseStart {
    /// Status code.
    pub status: StatusCode,
    /// Reason phrase, when the application's differs from the standard one.
    pub reason: Option<Bytes>,
    /// Response header fields (validated by `start_response`).
    pub headers: ResponseHeaders,
    /// The body.
    pub body: BodySource,
}

/// Response header fields, validated once and kept as the bytes they go
/// out as: `Name: value` lines, in order, names in the case the
/// application gave them. An HTTP/1.1 engine writes the block as it is; an
/// engine that needs a map builds one ([`ResponseHeaders::to_header_map`]).
#[derive(Debug, Clone, Default)]
pub struct ResponseHeaders {
    /// `Name: value\r\n` per field.
    block: Vec<u8>,
    /// The Content-Length field's value, when there is one, bytes.
    content_length: Option<u64>,
    /// Whether a Date field is there (the server adds one otherwise).
    date: bool,
    /// Whether a Server field is there.
    server: bool,
    /// Whether a `Connection: close` field is there.
    close: bool,
}

/// Why a response header field was refused (RFC 9110 §5.1, §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldError {
    /// The name is empty or not a token.
    Name,
    /// The value holds CR, LF, NUL or another control character but HTAB.
    Value,
}

impl ResponseHeaders {
    /// No fields, with room for `bytes` bytes of them.
    pub fn with_capacity(bytes: usize) -> Self {
        ResponseHeaders {
            block: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// The fields of an answer the server makes itself: `Content-Type:
    /// text/plain; charset=utf-8` and `Server`.
    pub fn plain_text() -> Self {
        let mut headers = ResponseHeaders::with_capacity(96);
        // Constant, valid fields: `push` cannot refuse them.
        let _ = headers.push(b"Content-Type", b"text/plain; charset=utf-8");
        let _ = headers.push(b"Server", SERVER_HEADER.as_bytes());
        headers
    }

    /// Appends the field `name: value` (value bytes are latin-1).
    ///
    /// # Errors
    /// [`FieldError`] when the name is not a token (RFC 9110 §5.6.2) or the
    /// value holds a control character other than HTAB (§5.5): a response
    /// split is never written.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), FieldError> {
        // Table lookups without an early exit: a short, branch-free loop.
        let name_ok = name
            .iter()
            .fold(!name.is_empty(), |ok, &b| ok & is_tchar(b));
        if !name_ok {
            return Err(FieldError::Name);
        }
        let value_ok = value
            .iter()
            .fold(true, |ok, &b| ok & FIELD_VALUE[usize::from(b)]);
        if !value_ok {
            return Err(FieldError::Value);
        }
        self.note(name, value);
        self.block.reserve(name.len() + value.len() + 4);
        self.block.extend_from_slice(name);
        self.block.extend_from_slice(b": ");
        self.block.extend_from_slice(value);
        self.block.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Records what the server must know of a field it does not write itself.
    fn note(&mut self, name: &[u8], value: &[u8]) {
        let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
        match name.len() {
            4 if is("date") => self.date = true,
            6 if is("server") => self.server = true,
            10 if is("connection") => self.close |= value.eq_ignore_ascii_case(b"close"),
            14 if is("content-length") => self.content_length = parse_digits(value),
            _ => {}
        }
    }

    /// Sets Content-Length to `n` bytes (a field is appended).
    pub fn set_content_length(&mut self, n: u64) {
        let mut digits = itoa::Buffer::new();
        let _ = self.push(b"Content-Length", digits.format(n).as_bytes());
    }

    /// The Content-Length field's value, if there is one, bytes.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether a Date field is there.
    pub fn has_date(&self) -> bool {
        self.date
    }

    /// Whether a Server field is there.
    pub fn has_server(&self) -> bool {
        self.server
    }

    /// Whether `Connection: close` is there.
    pub fn has_close(&self) -> bool {
        self.close
    }

    /// The fields as they go out: `Name: value\r\n` lines.
    pub fn as_bytes(&self) -> &[u8] {
        &self.block
    }

    /// The fields, in order, as (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.block
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r")?;
                let colon = line.iter().position(|&b| b == b':')?;
                Some((&line[..colon], &line[colon + 2..]))
            })
    }

    /// The fields as a map (for engines that need one, such as HTTP/2's).
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(8);
        for (name, value) in self.iter() {
            // Both were validated by `push`, so neither conversion fails.
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }
}

/// `1*DIGIT` (with optional whitespace) as a number.
fn parse_digits(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// tchar (RFC 9110 §5.6.2).
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Which bytes a field value may hold: HTAB, SP to `~`, obs-text.
static FIELD_VALUE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b == 0x09 || (b >= 0x20 && b != 0x7f);
        b += 1;
    }
    table
};

/// Which bytes are tchar: one lookup per byte on the response path.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

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
    /// A region of an open regular file, sent as the engine likes: with
    /// `sendfile(2)` by the HTTP/1.1 engine on a plain socket, else read in
    /// chunks ([`FileRegion::into_chunks`]). The Content-Length is the
    /// region's `len`.
    File(FileRegion),
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
        let mut headers = ResponseHeaders::plain_text();
        if close {
            let _ = headers.push(b"Connection", b"close");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_fields_are_checked_and_kept_as_given() {
        let mut headers = ResponseHeaders::default();
        headers.push(b"Content-Type", b"text/html").unwrap();
        headers.push(b"content-length", b" 12").unwrap();
        headers.push(b"X-A", b"caf\xe9\tb").unwrap();
        assert_eq!(
            headers.push(b"X-B", b"a\r\nInjected: 1"),
            Err(FieldError::Value)
        );
        assert_eq!(headers.push(b"X C", b"a"), Err(FieldError::Name));
        assert_eq!(headers.push(b"", b"a"), Err(FieldError::Name));
        assert_eq!(
            headers.as_bytes(),
            b"Content-Type: text/html\r\ncontent-length:  12\r\nX-A: caf\xe9\tb\r\n"
        );
        assert_eq!(headers.content_length(), Some(12));
        assert!(!headers.has_date() && !headers.has_server() && !headers.has_close());
        let names: Vec<&[u8]> = headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, [&b"Content-Type"[..], b"content-length", b"X-A"]);
        let map = headers.to_header_map();
        assert_eq!(map["content-type"], "text/html");
        assert_eq!(map.len(), 3);
    }
}
