//! What the engine needs of a connection's socket ([`Transport`]): waiting
//! for bytes without a buffer, reading what is there, and, on plain
//! sockets, raw writes for `sendfile` (`super::sendfile`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::{TcpStream, UnixStream};

/// A stream socket the engine can wait on without holding a buffer (and
/// without a future of its own: an idle connection's state stays small).
pub trait Transport: AsyncWrite + Unpin + Send + Sync + 'static {
    /// Whether [`Transport::poll_write_fd`] works: the bytes written to the
    /// socket reach the client as they are (a plain TCP or unix socket on
    /// Linux; not TLS, which must encrypt them).
    const SENDFILE: bool = false;

    /// Ready when bytes (or end of stream) can be read.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// Reads what is there into `buf` without waiting (`WouldBlock` if
    /// nothing is); `Ok(0)` at end of stream.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Runs `write` (a raw write on the socket's descriptor: `send`,
    /// `sendfile`) once the socket is writable, and again each time it
    /// would block; returns its result. `Unsupported` unless
    /// [`Transport::SENDFILE`].
    fn poll_write_fd(
        &self,
        cx: &mut Context<'_>,
        write: &mut dyn FnMut(BorrowedFd<'_>) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let _ = (cx, write);
        Poll::Ready(Err(io::ErrorKind::Unsupported.into()))
    }
}

/// [`Transport`] for the plain sockets, which can `sendfile`.
macro_rules! plain_socket {
    ($($stream:ty),*) => {$(
        impl Transport for $stream {
            const SENDFILE: bool = cfg!(target_os = "linux");

            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$stream>::poll_read_ready(self, cx)
            }

            fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
                <$stream>::try_read_buf(self, buf)
            }

            fn poll_write_fd(
                &self,
                cx: &mut Context<'_>,
                write: &mut dyn FnMut(BorrowedFd<'_>) -> io::Result<usize>,
            ) -> Poll<io::Result<usize>> {
                loop {
                    std::task::ready!(self.poll_write_ready(cx))?;
                    match self.try_io(Interest::WRITABLE, || write(self.as_fd())) {
                        // Readiness cleared: the next poll waits for it.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        done => return Poll::Ready(done),
                    }
                }
            }
        }
    )*};
}

plain_socket!(TcpStream, UnixStream);
