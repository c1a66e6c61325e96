//! A file region straight from the page cache to a plain socket:
//! `sendfile(2)`, no copy through our memory.
//!
//! Rules:
//! - Only on a transport whose bytes reach the client as written
//!   ([`Transport::SENDFILE`]: a plain TCP or unix socket; not TLS, which
//!   must encrypt them: that one reads the region in chunks).
//! - The head goes first, with `MSG_MORE`, so that it shares a packet with
//!   the file's first bytes.
//! - The socket is nonblocking: each call sends what the socket buffer
//!   takes; `EAGAIN` waits for the socket to be writable again (tokio's
//!   readiness, `try_io`), like any other write of the engine.
//! - A file that ends before the region does (truncated meanwhile) stops
//!   the sending: the caller closes the connection rather than leave the
//!   response short of its Content-Length.

use std::fs::File;
use std::future::poll_fn;
use std::io;
use std::os::fd::BorrowedFd;

use super::transport::Transport;
use crate::exchange::FileRegion;

/// Sends `head` (bytes already encoded: the response head), then the
/// region's bytes, on `io`, waiting for the socket as needed. The head goes
/// with `MSG_MORE`, so the kernel holds it for the file's first bytes:
/// one packet, not a small one for the head alone (nginx's `tcp_nopush`).
/// Returns the file bytes sent: fewer than the region's only when the file
/// ended first.
///
/// # Errors
/// The socket's (`EPIPE`, `ECONNRESET`: the client left) or the file's.
pub async fn send_region<S: Transport>(
    io: &S,
    head: &[u8],
    region: &FileRegion,
) -> io::Result<u64> {
    let more = region.len > 0;
    let mut written = 0;
    while written < head.len() {
        let mut send = |fd: BorrowedFd<'_>| send_head(fd, &head[written..], more);
        written += poll_fn(|cx| io.poll_write_fd(cx, &mut send)).await?;
    }
    let (file, offset, len) = (&region.file, region.offset, region.len);
    let mut sent = 0;
    while sent < len {
        let left = usize::try_from(len - sent).unwrap_or(usize::MAX);
        let mut send = |fd: BorrowedFd<'_>| sendfile(fd, file, offset + sent, left);
        let n = poll_fn(|cx| io.poll_write_fd(cx, &mut send)).await?;
        if n == 0 {
            break;
        }
        sent += n as u64;
    }
    Ok(sent)
}

/// One `send(2)` of `bytes` without waiting (`MSG_MORE` when `more` follows).
fn send_head(socket: BorrowedFd<'_>, bytes: &[u8], more: bool) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    #[cfg(target_os = "linux")]
    let flags = libc::MSG_NOSIGNAL | if more { libc::MSG_MORE } else { 0 };
    #[cfg(not(target_os = "linux"))]
    let flags = {
        let _ = more;
        0
    };
    loop {
        // SAFETY: `bytes` is valid for `len` bytes; the descriptor is open.
        let n = unsafe {
            libc::send(
                socket.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                flags,
            )
        };
        if n >= 0 {
            return Ok(n as usize); // not negative: checked
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Most bytes Linux sends per `sendfile` call.
const MAX_PER_CALL: usize = 0x7fff_f000;

/// One `sendfile(2)` of up to `len` bytes of `file` from `offset` into
/// `socket`, without waiting: `WouldBlock` when the socket buffer is full;
/// `Ok(0)` at the file's end.
#[cfg(target_os = "linux")]
pub fn sendfile(socket: BorrowedFd<'_>, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut off = libc::off_t::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    loop {
        // SAFETY: both descriptors are open for the call; `off` is ours.
        let n = unsafe {
            libc::sendfile(
                socket.as_raw_fd(),
                file.as_raw_fd(),
                &mut off,
                len.min(MAX_PER_CALL),
            )
        };
        if n >= 0 {
            return Ok(n as usize); // not negative: checked
        }
        let e = io::Error::last_os_error();
        // Interrupted is retried here: reported, it would end the response.
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Elsewhere there is no `sendfile` (`Transport::SENDFILE` is false).
#[cfg(not(target_os = "linux"))]
pub fn sendfile(_: BorrowedFd<'_>, _: &File, _: u64, _: usize) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::temp_file;
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixStream;

    #[tokio::test]
    async fn a_region_goes_out_exactly() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let file = temp_file(&data);
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            theirs.read_to_end(&mut got).await.map(|_| got)
        });
        // More than a socket buffer: the sender waits for the reader.
        let region = |offset, len| FileRegion {
            file: file.try_clone().unwrap(),
            offset,
            len,
        };
        let sent = send_region(&ours, b"head", &region(7, 2_500_000)).await;
        assert_eq!(sent.unwrap(), 2_500_000);
        // Asked past the end of the file: what is there, then 0.
        let sent = send_region(&ours, b"", &region(2_999_990, 100)).await;
        assert_eq!(sent.unwrap(), 10);
        let sent = send_region(&ours, b"tail", &region(0, 0)).await;
        assert_eq!(sent.unwrap(), 0);
        drop(ours);
        let got = reader.await.unwrap().unwrap();
        assert_eq!(got.len(), 4 + 2_500_010 + 4);
        assert_eq!(&got[..4], b"head");
        assert!(got[4..2_500_004] == data[7..2_500_007]);
        assert!(got[2_500_004..2_500_014] == data[2_999_990..]);
        assert_eq!(&got[2_500_014..], b"tail");
    }

    #[tokio::test]
    async fn a_peer_that_left_is_an_error() {
        let region = FileRegion {
            file: temp_file(&[5; 1 << 20]),
            offset: 0,
            len: 1 << 20,
        };
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let err = send_region(&ours, b"", &region).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
