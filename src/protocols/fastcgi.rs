//! The FastCGI engine, responder role (nginx's `fastcgi_pass`).
//!
//! Not written yet: a connection is closed at once.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::exchange::Connection;
use crate::protocols::Shared;

/// Serves one connection until it closes.
pub async fn serve<S>(io: S, conn: Connection, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    drop((io, conn, shared));
}
