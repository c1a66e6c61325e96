//! Our HTTP/1.1 engine: one pass over the bytes, from the socket to the
//! seam and back.
//!
//! - `head.rs`: request heads (httparse tokenizes; our RFC 9112 rules run
//!   over its result in the same pass).
//! - `reader.rs`: sans-I/O message framing (Content-Length, chunked,
//!   trailers) over the connection's one read buffer.
//! - `encode.rs`: response heads (prebuilt status lines, cached `Date`) and
//!   body framing.
//! - `state.rs`: the connection's states and allowed transitions, as data,
//!   and its timers.
//! - `buffers.rs`: read buffers lent to connections while they have bytes
//!   to handle, and taken back when they go idle.
//! - `conn.rs`: the connection driver: reads, dispatches to the gateway
//!   through `exchange::Dispatch`, writes (head and body in one `writev`;
//!   answers to pipelined requests that are ready together in one write).
//! - `sendfile.rs`: a file body (`BodySource::File`) from the page cache
//!   to a plain socket with `sendfile(2)`.
//! - `transport.rs`: what the engine needs of a socket (`Transport`: plain
//!   TCP and unix sockets here, TLS in `server::tls`).
//!
//! Nothing here touches Python. A rejected request gets its
//! 4xx/5xx written directly (with `Connection: close`), then the connection
//! closes after a short lingering read, so the client sees the answer.

pub mod buffers;
pub mod conn;
pub mod encode;
pub mod head;
pub mod reader;
pub mod sendfile;
pub mod state;
pub mod transport;

#[cfg(test)]
mod tests;

/// Limits on a request head, bytes and counts (gunicorn's names and
/// defaults: `--limit-request-line`, `--limit-request-fields`,
/// `--limit-request-field-size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version), bytes. 414 beyond.
    pub max_request_line: usize,
    /// Most header fields. 431 beyond.
    pub max_fields: usize,
    /// Longest header field line, bytes. 431 beyond.
    pub max_field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8190,
            max_fields: 100,
            max_field_size: 8190,
        }
    }
}

impl Limits {
    /// The largest request head these limits allow, bytes.
    pub fn max_head(&self) -> usize {
        self.max_request_line + 2 + (self.max_fields + 1) * (self.max_field_size + 2)
    }
}

/// Why a request is refused: the status to answer with and a short reason
/// (h11's `error_status_hint`: every protocol error knows its status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status code (400, 408, 413, 414, 417, 431, 501, 505).
    pub status: u16,
    /// What was wrong, for the response body and the debug log.
    pub reason: &'static str,
}

/// A [`Rejection`] with `status` and `reason`.
pub const fn reject(status: u16, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}
