//! The request body as it goes to a backend.
//!
//! Rules:
//! - The engine has buffered the body already ([`RequestBody`]): a body in
//!   memory is sent as it is (a `Bytes` clone per attempt, no copy); a body
//!   spilled to a file is read from the file in 64 KiB pieces (`CHUNK`) while
//!   the backend takes them, never loaded whole (a 20 MiB upload is not held
//!   in memory twice).
//! - Every attempt reads the file from its start with positional reads
//!   (`pread`), so a retry needs no rewinding and two readers never share a
//!   file offset.
//! - The length is always exact (`size_hint`): the body goes out with
//!   Content-Length, never chunked.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::exchange::RequestBody;

/// Bytes read from a spilled body per piece.
const CHUNK: usize = 64 * 1024;

/// Pieces read ahead of the backend (memory: `CHUNK` bytes each).
const READ_AHEAD: usize = 4;

/// A request body kept for every attempt at sending it.
#[derive(Debug, Clone)]
pub enum Payload {
    /// No bytes.
    Empty,
    /// The body in memory.
    Memory(Bytes),
    /// The body in a file, and its length (bytes).
    File(Arc<File>, u64),
}

impl From<RequestBody> for Payload {
    fn from(body: RequestBody) -> Self {
        match body {
            RequestBody::Empty => Payload::Empty,
            RequestBody::Memory(bytes) => Payload::Memory(bytes),
            RequestBody::File(file, len) => Payload::File(Arc::new(file), len),
        }
    }
}

impl Payload {
    /// Length, bytes.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Empty => 0,
            Payload::Memory(bytes) => bytes.len() as u64,
            Payload::File(_, len) => *len,
        }
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A body for one attempt. A file body starts a blocking reader; must
    /// be called within a tokio runtime.
    pub fn body(&self) -> ForwardBody {
        match self {
            Payload::Empty => ForwardBody::Memory(None),
            Payload::Memory(bytes) => ForwardBody::Memory(Some(bytes.clone())),
            Payload::File(file, len) => ForwardBody::File {
                pieces: read_pieces(file.clone(), *len),
                left: *len,
            },
        }
    }
}

/// Reads `len` bytes of `file` on a blocking thread, piece by piece, as
/// the receiver takes them; stops when the receiver is dropped.
fn read_pieces(file: Arc<File>, len: u64) -> mpsc::Receiver<io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut offset = 0;
        while offset < len {
            // At most CHUNK, so the cast cannot truncate.
            let size = (len - offset).min(CHUNK as u64) as usize;
            let mut piece = vec![0; size];
            let read = file
                .read_exact_at(&mut piece, offset)
                .map(|()| Bytes::from(piece));
            let failed = read.is_err();
            if tx.blocking_send(read).is_err() || failed {
                return;
            }
            offset += size as u64;
        }
    });
    rx
}

/// One attempt's request body (an `http_body::Body` for hyper's client).
#[derive(Debug)]
pub enum ForwardBody {
    /// Bytes in memory, sent in one frame.
    Memory(Option<Bytes>),
    /// Pieces of a file, and how many bytes are still to come.
    File {
        /// The reader's pieces.
        pieces: mpsc::Receiver<io::Result<Bytes>>,
        /// Bytes not yet sent.
        left: u64,
    },
}

impl Body for ForwardBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut *self {
            ForwardBody::Memory(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            ForwardBody::File { left: 0, .. } => Poll::Ready(None),
            ForwardBody::File { pieces, left } => match pieces.poll_recv(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(piece))) => {
                    *left = left.saturating_sub(piece.len() as u64);
                    Poll::Ready(Some(Ok(Frame::data(piece))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the spilled request body ended early",
                )))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ForwardBody::Memory(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            ForwardBody::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ForwardBody::Memory(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ForwardBody::File { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    #[tokio::test]
    async fn a_file_body_is_read_whole_by_every_attempt() {
        let mut file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&data).unwrap();
        let payload = Payload::from(RequestBody::File(file, data.len() as u64));
        for _ in 0..2 {
            let body = payload.body();
            assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
            let got = body.collect().await.unwrap().to_bytes();
            assert_eq!(got, &data[..]);
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_said_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"abc").unwrap();
        let payload = Payload::from(RequestBody::File(file, 10));
        assert!(payload.body().collect().await.is_err());
        let memory = Payload::Memory(Bytes::from_static(b"xy")).body();
        assert_eq!(memory.collect().await.unwrap().to_bytes(), &b"xy"[..]);
        assert!(Payload::Empty.body().is_end_stream());
    }
}
