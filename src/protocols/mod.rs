//! The protocol engines: bytes in, requests across the seam
//! (`exchange.rs`), responses out. Pure Rust (no PyO3), so they are
//! unit-tested and fuzzed on their own.
//!
//! - [`http1`]: our HTTP/1.1 engine.
//! - [`uwsgi`], [`fastcgi`]: the protocols nginx and Apache speak to an
//!   application server; [`cgi`] turns the variables both send into a
//!   request.
//! - [`body`]: request-body buffering shared by every engine (memory, then
//!   a temporary file, refused beyond the limit).

pub mod body;
pub mod cgi;
pub mod fastcgi;
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
}
