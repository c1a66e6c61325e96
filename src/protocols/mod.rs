//! The protocol engines: bytes in, requests across the seam
//! (`exchange.rs`), responses out. Pure Rust (no PyO3), so they are
//! unit-tested and fuzzed on their own.
//!
//! - [`http1`]: our HTTP/1.1 engine.
//! - [`uwsgi`], [`fastcgi`]: the protocols nginx and Apache speak to an
//!   application server; [`cgi`] turns the variables both send into a
//!   request.
//! - [`h2`]: HTTP/2 (hyper's server), for h2c with prior knowledge and h2
//!   by ALPN over TLS.
//! - [`body`]: request-body buffering shared by every engine (memory, then
//!   a temporary file, refused beyond the limit).

pub mod body;
pub mod cgi;
pub mod fastcgi;
pub mod h2;
pub mod http1;
pub mod uwsgi;

use std::sync::Arc;
use std::time::Duration;

use crate::exchange::Dispatch;
use crate::shutdown::ShutdownSignal;

pub use http1::Limits;

/// What the shared parts of a server hand every connection of every engine
/// (behind one `Arc`).
pub struct Shared {
    /// The engines' settings.
    pub settings: Arc<Settings>,
    /// Where complete requests go.
    pub dispatch: Arc<dyn Dispatch>,
    /// The graceful-stop signal.
    pub shutdown: ShutdownSignal,
}

/// Everything the engines need from the server's options, copied once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Request-head limits.
    pub limits: Limits,
    /// Idle time after which a keep-alive connection is closed; zero turns
    /// keep-alive off.
    pub keep_alive: Duration,
    /// Time to receive a whole request head, from its first byte (then 408).
    pub header_timeout: Duration,
    /// Longest wait for the next bytes of a request body (then 408).
    pub body_timeout: Duration,
    /// Largest request body accepted, bytes (then 413).
    pub max_body_size: u64,
    /// Request bodies up to this size stay in memory, bytes.
    pub body_buffer_size: usize,
    /// On a graceful stop, how long an idle keep-alive connection stays
    /// open for one more request (served with `Connection: close`).
    pub drain: Duration,
    /// Which HTTP versions an HTTP listener speaks (`--http`).
    pub http: HttpVersions,
}

/// Which HTTP versions an HTTP listener speaks (`--http auto|1|2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpVersions {
    /// HTTP/1.1, and HTTP/2 when the client asks for it: h2c with prior
    /// knowledge on plain listeners (RFC 9113 §3.3), `h2` by ALPN over TLS
    /// (§3.2).
    #[default]
    Auto,
    /// HTTP/1.1 only (HTTP/1.0 too).
    Http1,
    /// HTTP/2 only: every connection of a plain listener must start with the
    /// client preface; ALPN offers only `h2` over TLS.
    Http2,
}

impl HttpVersions {
    /// Parses an `--http` value: `auto`, `1` or `2`.
    ///
    /// # Errors
    /// The value itself, when it is none of those.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "auto" => Ok(HttpVersions::Auto),
            "1" => Ok(HttpVersions::Http1),
            "2" => Ok(HttpVersions::Http2),
            _ => Err(format!("--http takes auto, 1 or 2, not {value:?}")),
        }
    }

    /// The `--http` value.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersions::Auto => "auto",
            HttpVersions::Http1 => "1",
            HttpVersions::Http2 => "2",
        }
    }
}
