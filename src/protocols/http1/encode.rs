//! Response heads on the wire, and the framing of response bodies.
//!
//! Rules kept here (RFC 9112 §4, §6, §7, §9; RFC 9110 §6.4.1):
//! - The status line is always `HTTP/1.1` (RFC 9110 §2.5: a server sends its
//!   own highest version); the common ones are prebuilt.
//! - Header fields go out exactly as `start_response` validated them (the
//!   application's own case); `Date` is added (cached, renewed once a
//!   second) unless the application set one.
//! - A body known in full gets its exact Content-Length; a streamed one is
//!   chunked on HTTP/1.1, or close-delimited on HTTP/1.0, unless the
//!   application declared a Content-Length.
//! - No body and no framing headers added to a HEAD, 1xx, 204 or 304 answer.
//! - `Connection: close` whenever the connection closes after this answer;
//!   `Connection: keep-alive` when an HTTP/1.0 connection stays open.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;

use crate::exchange::ResponseHeaders;

/// How the body of one response is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body may follow (HEAD, 1xx, 204, 304).
    Bodiless,
    /// Exactly this many bytes follow.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Bytes until the connection closes (HTTP/1.0 streaming).
    UntilClose,
}

/// What the encoder needs to know about the exchange.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The body length when known now (a whole body), bytes.
    pub known_len: Option<u64>,
    /// The request was HEAD.
    pub head_request: bool,
    /// The request was HTTP/1.0.
    pub http10: bool,
    /// The connection closes after this response.
    pub close: bool,
}

/// Writes the response head to `out`; returns the body framing and
/// whether the connection must close after the response (the framing or
/// the application's own `Connection: close` may demand it).
pub fn head(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: Option<&[u8]>,
    headers: &ResponseHeaders,
    shape: Shape,
) -> (BodyFraming, bool) {
    status_line(out, status, reason);
    // The fields as `start_response` validated them, in one copy.
    out.extend_from_slice(headers.as_bytes());
    if !headers.has_date() {
        date(out);
    }
    let declared = headers.content_length();
    let framing = framing(status, declared, shape);
    match framing {
        BodyFraming::Length(n) if declared.is_none() => {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    let close = shape.close || headers.has_close() || framing == BodyFraming::UntilClose;
    if close && !headers.has_close() {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if !close && shape.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

fn framing(status: StatusCode, declared: Option<u64>, s: Shape) -> BodyFraming {
    let bodiless = s.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return BodyFraming::Bodiless;
    }
    match (declared, s.known_len) {
        (Some(n), _) | (None, Some(n)) => BodyFraming::Length(n),
        (None, None) if s.http10 => BodyFraming::UntilClose,
        (None, None) => BodyFraming::Chunked,
    }
}

/// `HTTP/1.1 NNN Reason\r\n`.
fn status_line(out: &mut Vec<u8>, status: StatusCode, reason: Option<&[u8]>) {
    if reason.is_none() {
        if let Some(line) = prebuilt(status) {
            out.extend_from_slice(line);
            return;
        }
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let standard = status.canonical_reason().unwrap_or("Unknown").as_bytes();
    out.extend_from_slice(reason.unwrap_or(standard));
    out.extend_from_slice(b"\r\n");
}

/// The status lines most answers use, written in one copy.
fn prebuilt(status: StatusCode) -> Option<&'static [u8]> {
    Some(match status.as_u16() {
        200 => b"HTTP/1.1 200 OK\r\n",
        201 => b"HTTP/1.1 201 Created\r\n",
        204 => b"HTTP/1.1 204 No Content\r\n",
        301 => b"HTTP/1.1 301 Moved Permanently\r\n",
        302 => b"HTTP/1.1 302 Found\r\n",
        304 => b"HTTP/1.1 304 Not Modified\r\n",
        400 => b"HTTP/1.1 400 Bad Request\r\n",
        404 => b"HTTP/1.1 404 Not Found\r\n",
        500 => b"HTTP/1.1 500 Internal Server Error\r\n",
        _ => return None,
    })
}

/// Appends the `Date: ...\r\n` line (IMF-fixdate, RFC 9110 §6.6.1), rebuilt
/// at most once a second per thread (also used by the FastCGI engine).
pub fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(cached, line)| {
        if *cached != second {
            line.clear();
            line.extend_from_slice(b"Date: ");
            line.extend_from_slice(httpdate::fmt_http_date(now).as_bytes());
            line.extend_from_slice(b"\r\n");
            *cached = second;
        }
        out.extend_from_slice(line);
    });
}

/// The size line of one chunk (RFC 9112 §7.1), in hexadecimal.
pub fn chunk_size(out: &mut Vec<u8>, len: usize) {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(b"0123456789ABCDEF"[(len >> (i * 4)) & 0xF]);
    }
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
