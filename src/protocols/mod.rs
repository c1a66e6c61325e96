//! The protocol engines: bytes in, requests across the seam
//! (`exchange.rs`), responses out. Pure Rust (no PyO3), so they are
//! unit-tested and fuzzed on their own.
//!
//! - [`http1`]: our HTTP/1.1 engine.
//! - [`body`]: request-body buffering shared by every engine (memory, then
//!   a temporary file, refused beyond the limit).

pub mod body;
pub mod http1;
