//! Writing the answer to a uwsgi request (see the rules in `uwsgi.rs`):
//! `HTTP/1.1` status line, fields and Date (`http1::encode`), then the body:
//! whole, or streamed as the application makes it, delimited by the close.

use std::future::poll_fn;
use std::io::{self, IoSlice};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

use crate::exchange::{BodySource, Chunk, ResponseStart};
use crate::protocols::http1::conn::Transport;
use crate::protocols::http1::encode::{self, BodyFraming, Shape};

/// Writes the response: the head, then the body as it comes.
pub(super) async fn respond<S: Transport>(
    io: &mut S,
    start: ResponseStart,
    head_request: bool,
) -> io::Result<Sent> {
    let known_len = match &start.body {
        BodySource::Full(b) | BodySource::Short(b) => Some(b.len() as u64),
        BodySource::File(region) => Some(region.len),
        BodySource::Stream(_) => None,
    };
    // `http10`: a body of unknown length is delimited by the close, as
    // for an HTTP/1.0 client (nginx's uwsgi module reads no chunks).
    let shape = Shape {
        known_len,
        head_request,
        http10: true,
        close: true,
    };
    let mut head = Vec::with_capacity(512);
    let reason = start.reason.as_deref();
    let (framing, _) = encode::head(&mut head, start.status, reason, &start.headers, shape);
    match (start.body, framing) {
        (_, BodyFraming::Bodiless) => {
            io.write_all(&head).await?;
            Ok(Sent::whole(0))
        }
        (BodySource::Full(body) | BodySource::Short(body), _) => {
            write_two(io, &head, &body).await?;
            Ok(Sent::whole(body.len() as u64))
        }
        (BodySource::Stream(rx), _) => stream(io, head, rx).await,
        (BodySource::File(region), _) => stream(io, head, region.into_chunks()).await,
    }
}

/// Sends a streamed body as the application makes it; the head goes
/// with the first chunk, or alone when that chunk is not ready.
async fn stream<S: Transport>(
    io: &mut S,
    mut head: Vec<u8>,
    mut rx: mpsc::Receiver<Chunk>,
) -> io::Result<Sent> {
    let mut bytes = 0;
    loop {
        let chunk = match rx.try_recv() {
            Ok(chunk) => Some(chunk),
            Err(TryRecvError::Empty) => {
                if !head.is_empty() {
                    io.write_all(&head).await?;
                    head.clear();
                }
                next_chunk(io, &mut rx).await?
            }
            Err(TryRecvError::Disconnected) => None,
        };
        match chunk {
            Some(Chunk::Data(data)) => {
                write_two(io, &head, &data).await?;
                head.clear();
                bytes += data.len() as u64;
            }
            end => {
                io.write_all(&head).await?;
                let aborted = matches!(end, Some(Chunk::Abort));
                return Ok(Sent { bytes, aborted });
            }
        }
    }
}

/// The next chunk of a streamed body; an error when the proxy closes its
/// end meanwhile (the caller then drops the stream: the gateway calls
/// `close()`). A proxy sends nothing after the body, so readable here
/// means closed; stray bytes are read and dropped.
async fn next_chunk<S: Transport>(
    io: &mut S,
    rx: &mut mpsc::Receiver<Chunk>,
) -> io::Result<Option<Chunk>> {
    let mut scratch = BytesMut::new();
    loop {
        tokio::select! {
            biased;
            chunk = rx.recv() => return Ok(chunk),
            ready = poll_fn(|cx| io.poll_read_ready(cx)) => {
                ready?;
                scratch.clear();
                scratch.reserve(4096);
                match io.try_read_buf(&mut scratch) {
                    Ok(0) => return Err(io::ErrorKind::ConnectionAborted.into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// What a response sent.
pub(super) struct Sent {
    /// Body bytes written.
    pub(super) bytes: u64,
    /// The body was aborted (the connection must be reset).
    pub(super) aborted: bool,
}

impl Sent {
    fn whole(bytes: u64) -> Self {
        Sent {
            bytes,
            aborted: false,
        }
    }
}

/// Writes `a` then `b`, in as few `writev`s as the socket allows.
async fn write_two<S: Transport>(io: &mut S, a: &[u8], b: &[u8]) -> io::Result<()> {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let bufs = [IoSlice::new(&a[i..]), IoSlice::new(&b[j..])];
        let n = io.write_vectored(&bufs).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len() - i);
        i += from_a;
        j += n - from_a;
    }
    Ok(())
}
