//! Middleware on the seam: steps between the protocol engines and the
//! gateway, each a [`Dispatch`](crate::exchange::Dispatch) wrapping the next.
//!
//! - [`forwarded`]: the client's address and scheme from a trusted proxy's
//!   `X-Forwarded-For`/`X-Forwarded-Proto` or `Forwarded` (RFC 7239) header.

pub mod forwarded;
