//! The driver of one HTTP/1.1 connection: reads into one buffer, hands each
//! complete request to the gateway, writes the answers.
//!
//! Rules kept here:
//! - One request at a time, in order; pipelined requests wait in the read
//!   buffer, and the answers that are ready together leave in one write.
//! - The read buffer exists only while bytes are being handled: an idle
//!   keep-alive connection holds its socket, its timer and a small state.
//! - A request body is read completely (`protocols::body`) before the
//!   request crosses the seam; `Expect: 100-continue` is answered first when
//!   the body has not started to arrive, unless it is too large (413).
//! - A rejected request gets its status written directly, then the
//!   connection closes after a bounded lingering read (so the client reads
//!   the answer instead of a reset).
//! - Graceful stop: a request in progress is answered with `Connection:
//!   close`; an idle connection stays open for the drain period, and a
//!   request that comes meanwhile is answered with `Connection: close`.

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode, Version};
use tokio::io::AsyncWriteExt;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

use super::buffers::{self, READ_CHUNK};
use super::encode::{self, BodyFraming, Shape};
use super::head::{Framing, Head};
use super::reader::{Event, Reader};
use super::sendfile;
use super::state::{self, ConnState, State};
pub use super::transport::Transport;
use super::{reject, Rejection};
use crate::exchange::{self, BodySource, Chunk, Connection, FileRegion, Job, RequestBody};
use crate::exchange::{ResponseHeaders, ResponseStart};
use crate::log::AccessRecord;
use crate::protocols::body::{BodyError, BodyLimits, BodySink};
use crate::protocols::{Settings, Shared};
use crate::shutdown::ShutdownSignal;

/// Pending output is written once it reaches this size, bytes.
const FLUSH_AT: usize = 64 * 1024;
/// Body chunks at least this large are written from where they are, in
/// the same `writev` as what precedes them, instead of being copied, bytes.
const WRITE_IN_PLACE: usize = 16 * 1024;
/// After a rejection: how long, and how many bytes, the client's remaining
/// bytes are read and dropped before closing.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Serves one accepted connection until it closes.
///
/// Every byte of an idle connection's future counts (c10k): large states
/// are boxed, and nothing is kept twice.
pub fn serve<S: Transport>(
    io: S,
    conn: Connection,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    let mut core = Core {
        io,
        conn,
        shared,
        state: ConnState::new(),
    };
    // An async block, not an `async fn(self)`: a captured value is kept
    // once, where an argument would be kept twice. While the connection is
    // idle this future holds only the `Core`, the timer and the stop wait;
    // the active part (reader, buffers, the request in progress) is boxed
    // and exists only while bytes are being handled.
    async move {
        let timer = tokio::time::sleep_until(Instant::now() + Duration::from_secs(3600));
        let stop = core.shared.shutdown.stopped();
        tokio::pin!(timer, stop);
        let mut waits = Waits { timer, stop };
        loop {
            if !core.idle(&mut waits).await {
                return; // keep-alive (or drain) period over: close
            }
            let waits = &mut waits;
            let (conn, end) = Box::pin(async move {
                let mut conn = Conn::activate(core);
                let end = conn.run(waits).await;
                (conn, end)
            })
            .await;
            match end {
                End::Idle => core = conn.park(),
                end => return Box::pin(conn.finish(end)).await,
            }
        }
    }
}

/// How a connection's active phase ends.
enum End {
    /// Every request read was answered and no byte waits: the connection
    /// goes idle (its buffers are back in the pool).
    Idle,
    /// Close after what was written (`Connection: close` was sent).
    Close,
    /// Answer with this status, then close.
    Reject(Rejection),
    /// The client went away, or the connection timed out while idle.
    Gone,
}

/// What a connection waits on besides its socket (pinned in its future).
struct Waits<'a> {
    /// The current state's timer (see `state.rs`); reset only when the
    /// deadline moves earlier, otherwise re-armed when it fires.
    timer: Pin<&'a mut Sleep>,
    /// Completes when a graceful stop begins.
    stop: Pin<&'a mut OwnedNotified>,
}

/// What woke a waiting connection.
enum Woke {
    Readable,
    Gone,
    Timer,
    Stop,
}

/// What waiting for bytes came to.
enum Fill {
    Read,
    Eof,
    TimedOut,
}

/// What an idle connection keeps: its socket, who it is, its timers.
struct Core<S> {
    io: S,
    conn: Connection,
    shared: Arc<Shared>,
    state: ConnState,
}

impl<S: Transport> Core<S> {
    /// Waits, holding no buffer, until the client sends bytes (`true`) or
    /// the idle time (keep-alive, or the drain of a graceful stop) is over.
    async fn idle(&mut self, waits: &mut Waits<'_>) -> bool {
        loop {
            let settings = &self.shared.settings;
            if !arm(&self.state, settings, waits) {
                return false;
            }
            match wait(&self.io, &self.state, &self.shared.shutdown, waits).await {
                Woke::Readable | Woke::Gone => return true, // the read tells which
                Woke::Timer => {}
                Woke::Stop => self.state.stop(self.shared.settings.drain),
            }
        }
    }
}

/// An active connection: the `Core` and what handling bytes needs.
struct Conn<S> {
    io: S,
    conn: Connection,
    shared: Arc<Shared>,
    reader: Reader,
    /// Bytes read and not yet consumed; no capacity while idle.
    buf: BytesMut,
    /// Response bytes not yet written.
    out: Vec<u8>,
    state: ConnState,
    /// The access-log record of the request whose body is being read, so a
    /// refusal before dispatch (413, 408) is logged with its request line.
    access: Option<AccessRecord>,
}

/// Facts about a request that outlive its move across the seam.
struct Asked {
    head_request: bool,
    http10: bool,
    keep_alive: bool,
    access: Option<AccessRecord>,
}

impl<S: Transport> Conn<S> {
    /// Bytes are waiting: the active part is made.
    fn activate(core: Core<S>) -> Self {
        let settings = &core.shared.settings;
        Conn {
            reader: Reader::new(settings.limits, settings.body_buffer_size),
            io: core.io,
            conn: core.conn,
            shared: core.shared,
            buf: BytesMut::new(),
            out: Vec::new(),
            state: core.state,
            access: None,
        }
    }

    /// The connection went idle (its buffers are back in the pool).
    fn park(self) -> Core<S> {
        Core {
            io: self.io,
            conn: self.conn,
            shared: self.shared,
            state: self.state,
        }
    }

    async fn run(&mut self, waits: &mut Waits<'_>) -> End {
        // Woken readable: read first (an end of stream is found here); a
        // wake-up without bytes goes back to idle at once.
        self.make_room();
        match self.io.try_read_buf(&mut self.buf) {
            Ok(0) => return End::Gone,
            Ok(_) => self.state.touch(Instant::now()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                buffers::give_back(std::mem::take(&mut self.buf));
                return End::Idle;
            }
            Err(_) => return End::Gone,
        }
        loop {
            match self.reader.next(&mut self.buf) {
                Err(rejection) => return End::Reject(rejection),
                Ok(Some(Event::Head(head))) => {
                    self.state.on(state::Event::HeadDone);
                    // Boxed: the exchange's state is large, and only exists
                    // while a request is in progress; the connection's own
                    // future stays small while it is idle (c10k).
                    if let Some(end) = Box::pin(self.exchange(head, waits)).await {
                        return end;
                    }
                }
                Ok(Some(_)) => return End::Reject(reject(400, "unexpected body")),
                Ok(None) => {
                    if self.buf.is_empty() {
                        // Idle: give the buffers back (c10k: an idle
                        // connection holds no buffer) and leave.
                        if self.flush().await.is_err() {
                            return End::Gone;
                        }
                        buffers::give_back(std::mem::take(&mut self.buf));
                        buffers::give_back_out(std::mem::take(&mut self.out));
                        return End::Idle;
                    }
                    self.state.on(state::Event::HeadBytes);
                    if self.flush().await.is_err() {
                        return End::Gone;
                    }
                    match self.fill(waits).await {
                        Fill::Read => {}
                        Fill::Eof => return End::Gone,
                        Fill::TimedOut if self.state.state() == State::Head => {
                            return End::Reject(reject(408, "request head not received in time"))
                        }
                        Fill::TimedOut => return End::Gone,
                    }
                }
            }
        }
    }

    /// Reads the body, runs the request, writes the answer. `Some` ends the
    /// connection.
    async fn exchange(&mut self, head: Box<Head>, waits: &mut Waits<'_>) -> Option<End> {
        self.access = AccessRecord::start(
            &head.method,
            &head.uri,
            head.version,
            &head.headers,
            self.conn.peer,
        );
        let settings = &self.shared.settings;
        if let Framing::Length(n) = head.framing {
            if n > settings.max_body_size {
                return Some(End::Reject(reject(413, "request body too large")));
            }
        }
        if head.expect_continue && head.framing != Framing::None && self.buf.is_empty() {
            self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        let body = match self.read_body(head.framing, waits).await {
            Ok(body) => body,
            Err(end) => return Some(end),
        };
        let mut asked = Asked {
            head_request: head.method == Method::HEAD,
            http10: head.version == Version::HTTP_10,
            keep_alive: head.keep_alive
                && !self.shared.settings.keep_alive.is_zero()
                && head.method != Method::CONNECT,
            access: self.access.take(),
        };
        self.state.on(state::Event::Dispatched);
        let start = self.call(head, body).await;
        self.state.on(state::Event::Answered);
        let close = !asked.keep_alive || self.shared.shutdown.is_triggered();
        let mut access = asked.access.take();
        if let Some(record) = access.as_mut() {
            record.answered(start.status, &start.headers);
        }
        let sent = self.respond(start, &asked, close).await;
        if let Some(record) = access {
            record.write(sent.as_ref().map_or(0, |s| s.0));
        }
        match sent {
            Ok((_, false)) => {
                self.state.on(state::Event::KeptAlive);
                None
            }
            Ok((_, true)) => Some(End::Close),
            Err(_) => Some(End::Gone),
        }
    }

    /// Buffers the whole body of the request whose head was just read.
    async fn read_body(
        &mut self,
        framing: Framing,
        waits: &mut Waits<'_>,
    ) -> Result<RequestBody, End> {
        let s = &self.shared.settings;
        let limits = BodyLimits {
            max_size: s.max_body_size,
            memory: s.body_buffer_size,
        };
        let expected = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let mut sink = BodySink::new(limits, expected);
        loop {
            match self.reader.next(&mut self.buf) {
                Ok(Some(Event::Data(piece))) => sink.push(piece).map_err(body_error)?,
                Ok(Some(Event::End)) => {
                    return sink.finish().map_err(|e| body_error(BodyError::Spill(e)))
                }
                Ok(Some(Event::Head(_))) => {
                    return Err(End::Reject(reject(400, "unexpected head")))
                }
                Err(rejection) => return Err(End::Reject(rejection)),
                Ok(None) => {
                    if self.flush().await.is_err() {
                        return Err(End::Gone);
                    }
                    match self.fill(waits).await {
                        Fill::Read => {}
                        Fill::Eof => return Err(End::Gone),
                        Fill::TimedOut => {
                            return Err(End::Reject(reject(408, "request body timed out")))
                        }
                    }
                }
            }
        }
    }

    /// Hands the request to the gateway and waits for the response head.
    async fn call(&mut self, head: Box<Head>, body: RequestBody) -> ResponseStart {
        let head = *head;
        let has_body_framing = head.framing != Framing::None;
        let mut http = http::Request::new(body);
        *http.method_mut() = head.method;
        *http.uri_mut() = head.uri;
        *http.version_mut() = head.version;
        *http.headers_mut() = head.headers;
        let request = exchange::Request::new(http, has_body_framing, &self.conn);
        let (reply, mut answer) = oneshot::channel();
        if self
            .shared
            .dispatch
            .dispatch(Job { request, reply })
            .is_err()
        {
            return ResponseStart::plain(StatusCode::SERVICE_UNAVAILABLE, true);
        }
        let answered = match answer.try_recv() {
            Ok(start) => Ok(start),
            Err(oneshot::error::TryRecvError::Empty) => {
                // Not ready (a Python thread has it): what waits goes out now.
                let _ = self.flush().await;
                answer.await.map_err(|_| ())
            }
            Err(oneshot::error::TryRecvError::Closed) => Err(()),
        };
        answered.unwrap_or_else(|()| ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, true))
    }

    /// Writes the response (the head now; a short body now or with the next
    /// flush). Returns the body bytes sent and whether the connection must
    /// close.
    async fn respond(
        &mut self,
        start: ResponseStart,
        asked: &Asked,
        close: bool,
    ) -> io::Result<(u64, bool)> {
        let known_len = match &start.body {
            BodySource::Full(b) | BodySource::Short(b) => Some(b.len() as u64),
            BodySource::File(region) => Some(region.len),
            BodySource::Stream(_) => None,
        };
        let shape = Shape {
            known_len,
            head_request: asked.head_request,
            http10: asked.http10,
            close,
        };
        if self.out.capacity() == 0 {
            self.out = buffers::take_out();
        }
        let reason = start.reason.as_deref();
        let (framing, close) =
            encode::head(&mut self.out, start.status, reason, &start.headers, shape);
        match (start.body, framing) {
            (BodySource::Stream(rx), BodyFraming::Bodiless) => {
                drop(rx);
                Ok((0, close))
            }
            (_, BodyFraming::Bodiless) => Ok((0, close)),
            (BodySource::Full(body), _) => {
                let n = body.len() as u64;
                self.write_body(body).await.map(|()| (n, close))
            }
            (BodySource::Short(body), _) => {
                let n = body.len() as u64;
                self.write_body(body).await.map(|()| (n, true))
            }
            (BodySource::Stream(rx), framing) => {
                let (n, aborted) = self.stream(rx, framing).await?;
                Ok((n, close || aborted))
            }
            (BodySource::File(region), framing) => {
                let (n, cut) = self.send_file(region, framing).await?;
                Ok((n, close || cut))
            }
        }
    }

    /// Sends a file region: the pending output (the head) with
    /// `MSG_MORE`, then the file with `sendfile(2)`, where the transport
    /// can (head and first bytes share a packet); else read in chunks. Returns the body bytes
    /// sent and whether the body fell short of its Content-Length (the
    /// region was shorter, or the file ended early): then the connection
    /// must close.
    async fn send_file(
        &mut self,
        mut region: FileRegion,
        framing: BodyFraming,
    ) -> io::Result<(u64, bool)> {
        let BodyFraming::Length(declared) = framing else {
            return self.stream(region.into_chunks(), framing).await;
        };
        region.len = region.len.min(declared);
        let (sent, aborted) = if S::SENDFILE {
            let sent = sendfile::send_region(&self.io, &self.out, &region).await?;
            self.out.clear();
            (sent, false)
        } else {
            self.stream(region.into_chunks(), framing).await?
        };
        Ok((sent, aborted || sent < declared))
    }

    /// Copies a small body after the pending output; writes a large one
    /// from where it is, in one `writev` with the pending output.
    async fn write_body(&mut self, body: Bytes) -> io::Result<()> {
        if body.len() >= WRITE_IN_PLACE {
            return self.write_with(&body).await;
        }
        self.out.extend_from_slice(&body);
        if self.out.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends a streamed body as the application produces it. Returns the
    /// body bytes sent and whether it was aborted (the connection must close
    /// without ending the response normally).
    async fn stream(
        &mut self,
        mut rx: mpsc::Receiver<Chunk>,
        framing: BodyFraming,
    ) -> io::Result<(u64, bool)> {
        let mut sent = 0;
        loop {
            let chunk = match rx.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(TryRecvError::Empty) => {
                    self.flush().await?;
                    rx.recv().await
                }
                Err(TryRecvError::Disconnected) => None,
            };
            match chunk {
                Some(Chunk::Data(data)) => {
                    sent += data.len() as u64;
                    if framing == BodyFraming::Chunked {
                        encode::chunk_size(&mut self.out, data.len());
                        self.write_body(data).await?;
                        self.out.extend_from_slice(b"\r\n");
                    } else {
                        self.write_body(data).await?;
                    }
                }
                Some(Chunk::Abort) => {
                    self.flush().await?;
                    return Ok((sent, true));
                }
                None => {
                    if framing == BodyFraming::Chunked {
                        self.out.extend_from_slice(encode::LAST_CHUNK);
                    }
                    return Ok((sent, false));
                }
            }
        }
    }

    /// Writes the pending output.
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.write_with(&[]).await
    }

    /// Writes the pending output, then `tail`, in as few `writev`s as the
    /// socket allows.
    async fn write_with(&mut self, tail: &[u8]) -> io::Result<()> {
        let (mut a, mut b) = (0, 0);
        while a < self.out.len() || b < tail.len() {
            let bufs = [IoSlice::new(&self.out[a..]), IoSlice::new(&tail[b..])];
            let n = self.io.write_vectored(&bufs).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            let from_out = n.min(self.out.len() - a);
            a += from_out;
            b += n - from_out;
        }
        // A no-op on a socket; a TLS stream sends the records it still holds.
        self.io.flush().await?;
        self.out.clear();
        if self.out.capacity() > FLUSH_AT {
            self.out = Vec::new();
        }
        Ok(())
    }

    /// Waits for bytes and reads them into the buffer, within the current
    /// state's timer; notices a graceful stop meanwhile.
    async fn fill(&mut self, waits: &mut Waits<'_>) -> Fill {
        loop {
            if !arm(&self.state, &self.shared.settings, waits) {
                return Fill::TimedOut;
            }
            match wait(&self.io, &self.state, &self.shared.shutdown, waits).await {
                Woke::Readable => {}
                Woke::Gone => return Fill::Eof,
                Woke::Timer => continue,
                Woke::Stop => {
                    self.state.stop(self.shared.settings.drain);
                    continue;
                }
            }
            self.make_room();
            match self.io.try_read_buf(&mut self.buf) {
                Ok(0) => return Fill::Eof,
                Ok(_) => {
                    self.state.touch(Instant::now());
                    return Fill::Read;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A wake-up without bytes: an empty buffer goes back.
                    if self.buf.is_empty() {
                        buffers::give_back(std::mem::take(&mut self.buf));
                    }
                }
                Err(_) => return Fill::Eof,
            }
        }
    }

    /// Makes room in the read buffer for the next read: what the reader
    /// waits for (a whole body at once), and at least `READ_CHUNK`.
    fn make_room(&mut self) {
        if self.buf.capacity() == 0 {
            self.buf = buffers::take();
        }
        let len = self.buf.len();
        let want = self.reader.wants(len);
        if self.buf.capacity() - len < 1024 || self.buf.capacity() < want {
            self.buf.reserve(want.saturating_sub(len).max(READ_CHUNK));
        }
    }

    /// Ends the connection as `end` says.
    async fn finish(mut self, end: End) {
        self.state.on(state::Event::Close);
        match end {
            End::Gone | End::Idle => {
                let _ = self.flush().await;
            }
            End::Close => {
                // Unread bytes (pipelined requests after a close) would make
                // the close a reset: read them away first.
                if self.flush().await.is_ok() && !self.buf.is_empty() {
                    self.linger().await;
                } else {
                    let _ = self.io.shutdown().await;
                }
            }
            End::Reject(rejection) => {
                tracing::debug!(
                    "{}: refused a request: {} {}",
                    peer_name(self.conn.peer),
                    rejection.status,
                    rejection.reason
                );
                let record = self.access.take();
                let record = record.or_else(|| AccessRecord::unparsed(self.conn.peer));
                let response = rejection_response(rejection);
                self.out.extend_from_slice(&response.bytes);
                if let Some(mut record) = record {
                    record.set_status(response.status);
                    record.write(response.body_len);
                }
                if self.flush().await.is_ok() {
                    self.linger().await;
                }
            }
        }
    }

    /// See [`linger`].
    async fn linger(&mut self) {
        linger(&mut self.io).await;
    }
}

/// Half-closes, then reads and drops what the client still sends (for at
/// most `LINGER` (1 s) and `LINGER_BYTES` (1 MiB)), so closing with unread
/// bytes does not reset the connection before the client read the answer
/// (RFC 9112 §9.6).
pub async fn linger<S: Transport>(io: &mut S) {
    if io.shutdown().await.is_err() {
        return;
    }
    let until = Instant::now() + LINGER;
    let mut dropped = 0;
    let mut scratch = BytesMut::with_capacity(4096);
    while dropped < LINGER_BYTES {
        let readable = std::future::poll_fn(|cx| io.poll_read_ready(cx));
        let ready = tokio::time::timeout_at(until, readable).await;
        if !matches!(ready, Ok(Ok(()))) {
            return;
        }
        scratch.clear();
        match io.try_read_buf(&mut scratch) {
            Ok(0) => return,
            Ok(n) => dropped += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Sets the timer for the current state's deadline; `false` when it has
/// passed. The timer is moved only when the deadline comes earlier (or it
/// fired): a later deadline is found when the timer fires early, so a busy
/// connection does not re-arm its timer per request.
fn arm(state: &ConnState, settings: &Settings, waits: &mut Waits<'_>) -> bool {
    let Some(deadline) = state.deadline(settings) else {
        return false; // not reached: only waiting states wait
    };
    if deadline <= Instant::now() {
        return false;
    }
    if deadline < waits.timer.deadline() || waits.timer.is_elapsed() {
        waits.timer.as_mut().reset(deadline);
    }
    true
}

/// Waits for the socket, the timer or (once) the graceful stop, polled by
/// hand: no future is kept per wait.
async fn wait<S: Transport>(
    io: &S,
    state: &ConnState,
    shutdown: &ShutdownSignal,
    waits: &mut Waits<'_>,
) -> Woke {
    if !state.stopping() && shutdown.is_triggered() {
        return Woke::Stop; // a stop that began before this connection
    }
    let stopping = state.stopping();
    std::future::poll_fn(|cx| {
        if let Poll::Ready(ready) = io.poll_read_ready(cx) {
            return Poll::Ready(if ready.is_ok() {
                Woke::Readable
            } else {
                Woke::Gone
            });
        }
        if waits.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Timer);
        }
        if !stopping && waits.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Woke::Stop);
        }
        Poll::Pending
    })
    .await
}

fn body_error(e: BodyError) -> End {
    match e {
        BodyError::TooLarge => End::Reject(reject(413, "request body too large")),
        BodyError::Spill(e) => {
            tracing::error!("cannot spill a request body to a temporary file: {e}");
            End::Reject(reject(500, "cannot store the request body"))
        }
    }
}

/// The complete answer to a rejected request, `Connection: close` included.
/// The bytes of a rejection's answer, and what the access log records of it.
struct RejectionResponse {
    status: StatusCode,
    bytes: Vec<u8>,
    /// Body bytes.
    body_len: u64,
}

fn rejection_response(rejection: Rejection) -> RejectionResponse {
    let status = StatusCode::from_u16(rejection.status).unwrap_or(StatusCode::BAD_REQUEST);
    let phrase = status.canonical_reason().unwrap_or("Bad Request");
    let body = format!("{} {phrase}: {}\n", status.as_u16(), rejection.reason);
    let headers = ResponseHeaders::plain_text();
    let mut out = Vec::with_capacity(256);
    let shape = Shape {
        known_len: Some(body.len() as u64),
        head_request: false,
        http10: false,
        close: true,
    };
    encode::head(&mut out, status, None, &headers, shape);
    out.extend_from_slice(body.as_bytes());
    RejectionResponse {
        status,
        bytes: out,
        body_len: body.len() as u64,
    }
}

fn peer_name(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unix socket".to_owned(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Dispatch, LocalAddr};
    use tokio::net::TcpStream;

    struct Nowhere;
    impl Dispatch for Nowhere {
        fn dispatch(&self, _: Job) -> Result<(), exchange::Stopped> {
            Err(exchange::Stopped)
        }
    }

    /// An idle connection's memory is mostly its future: keep it small
    /// (c10k). A guard against a large state creeping back in unboxed.
    #[test]
    fn an_idle_connection_future_stays_small() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("address");
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (_trigger, shutdown) = crate::shutdown::channel();
            let settings = Settings {
                limits: super::super::Limits::default(),
                keep_alive: Duration::from_secs(5),
                header_timeout: Duration::from_secs(5),
                body_timeout: Duration::from_secs(5),
                max_body_size: 1 << 20,
                body_buffer_size: 1 << 20,
                drain: Duration::from_secs(5),
                http: crate::protocols::HttpVersions::Auto,
            };
            let shared = Arc::new(Shared {
                settings: Arc::new(settings),
                dispatch: Arc::new(Nowhere),
                shutdown,
            });
            let local = Arc::new(LocalAddr::Tcp(addr));
            let future = serve(stream, Connection::plain(None, local), shared);
            let size = std::mem::size_of_val(&future);
            assert!(size <= 512, "the connection future grew to {size} bytes");
        });
    }
}
