//! The uwsgi protocol engine: the binary protocol uWSGI defines, as nginx's
//! `uwsgi_pass` speaks it; one request per connection.
//!
//! - `packet.rs`: the request packet's header and vars block, sans I/O.
//! - `response.rs`: the answer on the wire, whole or streamed.
//! - here: the connection driver. It reads the packet, buffers the body
//!   (`protocols::body`), turns the vars into the seam's request
//!   (`protocols::cgi`), hands it to the gateway and writes the answer.
//!
//! Rules kept here (the uwsgi protocol as uWSGI speaks it to nginx):
//! - Request: the packet (see `packet`), then exactly CONTENT_LENGTH body
//!   bytes. A packet that cannot be served (another modifier1, a truncated
//!   or malformed vars block, vars over `--limit-request-*`) closes the
//!   connection with a debug log line: there is no request to answer yet.
//!   Once the vars are read the request is known, and what is wrong with it
//!   is answered as HTTP: 400 (vars that describe no request), 413 (body
//!   over `--max-body-size`), 408 (body not arriving within
//!   `--body-timeout`). After a 413 the body the proxy still sends is read
//!   and dropped before the close: a proxy whose body write fails on a
//!   reset answers 502 and the 413 is lost.
//! - Timeouts: `--header-timeout` for the whole packet from the accept,
//!   `--body-timeout` between body reads.
//! - Response: `HTTP/1.1 <status> <reason>`, the fields (Date added as the
//!   HTTP/1.1 engine does; Server comes from `start_response`), a blank
//!   line, the body. Never chunked: a body of unknown length ends when the
//!   connection closes, which is how nginx's uwsgi module reads it.
//! - The connection closes after the response. A streamed body goes out as
//!   the application makes it, one chunk written before the next is taken
//!   (backpressure). `Chunk::Abort` resets the connection (nginx then knows
//!   the body is incomplete, even without a Content-Length). A proxy that
//!   closes its end while a streamed body is produced drops the stream, so
//!   the gateway calls `close()` once.
//! - Graceful stop: a connection that has sent bytes is served; one that
//!   has sent none gets `drain` to start, then is closed.
//! - Access log: one record per request served, as the HTTP/1.1 engine
//!   writes it; its client is the one the proxy names (REMOTE_ADDR).

mod packet;
mod response;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::exchange::{self, Connection, Job, RequestBody, ResponseStart};
use crate::log::AccessRecord;
use crate::protocols::body::{BodyError, BodyLimits, BodySink};
use crate::protocols::cgi::{BadVars, CgiVars};
use crate::protocols::http1::buffers::{self, READ_CHUNK};
use crate::protocols::http1::conn::{linger, Transport};
use crate::protocols::Shared;

use packet::PacketLimits;
use response::Sent;

/// Vars a proxy sends besides the `HTTP_*` ones (nginx's `uwsgi_params`
/// has 15): allowed on top of `--limit-request-fields`.
const CGI_VARS: usize = 64;

/// Serves one connection from a proxy: one request, then it closes.
///
/// `io` is the proxy's TCP or unix connection (`AsFd`: an aborted body
/// resets it with `SO_LINGER` 0); `conn` what the connection knows (its peer
/// is the proxy, already checked against `--proxy-allow-from`). Errors are
/// not returned: each ends the connection as the module's rules say.
pub async fn serve<S>(io: S, conn: Connection, shared: Arc<Shared>)
where
    S: Transport + AsFd,
{
    let mut conn = Conn {
        io,
        conn,
        shared,
        buf: BytesMut::new(),
    };
    let end = match conn.exchange().await {
        Ok(()) => End::Done,
        Err(end) => end,
    };
    conn.finish(end).await;
}

/// How a connection ends.
enum End {
    /// The response was written: close.
    Done,
    /// No request to answer (malformed packet, truncated, timed out):
    /// close, and log why at debug level.
    Drop(String),
    /// Answer with this status, then close.
    Reject(StatusCode, &'static str),
    /// Answer 413, read and drop the body (of this many bytes, counting
    /// those in the buffer) the proxy is still sending, then close.
    TooLarge(u64),
    /// The body was aborted: reset the connection so the proxy sees it.
    Abort,
    /// The proxy went away.
    Gone,
}

/// What waiting for bytes came to.
enum Fill {
    Read,
    Eof,
    TimedOut,
}

/// One connection while it is served.
struct Conn<S> {
    io: S,
    conn: Connection,
    shared: Arc<Shared>,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
}

impl<S: Transport + AsFd> Conn<S> {
    /// Reads the request, runs it, writes the answer.
    async fn exchange(&mut self) -> Result<(), End> {
        let vars = self.read_vars().await?;
        let settings = &self.shared.settings;
        let length = vars.content_length().map_err(bad_vars)?.unwrap_or(0);
        if length > settings.max_body_size {
            return Err(End::TooLarge(length));
        }
        let body = self.read_body(length).await?;
        let request = vars.into_request(body, &self.conn).map_err(bad_vars)?;
        let head_request = request.http.method() == Method::HEAD;
        let http = &request.http;
        let mut access = AccessRecord::start(
            http.method(),
            http.uri(),
            http.version(),
            http.headers(),
            request.peer,
        );
        let start = self.call(request).await;
        if let Some(record) = access.as_mut() {
            record.answered(start.status, &start.headers);
        }
        let sent = response::respond(&mut self.io, start, head_request).await;
        if let Some(record) = access {
            record.write(sent.as_ref().map_or(0, |s| s.bytes));
        }
        match sent {
            Ok(Sent { aborted: false, .. }) => Ok(()),
            Ok(Sent { aborted: true, .. }) => Err(End::Abort),
            Err(_) => Err(End::Gone),
        }
    }

    /// Reads the packet header and vars, within `--header-timeout` (or the
    /// drain, on a graceful stop before the first byte).
    async fn read_vars(&mut self) -> Result<CgiVars, End> {
        let s = &self.shared.settings;
        let limits = PacketLimits {
            max_size: s.limits.max_head(),
            max_vars: s.limits.max_fields + CGI_VARS,
        };
        let drain = s.drain;
        let mut deadline = Instant::now() + s.header_timeout;
        let stop = self.shared.shutdown.stopped();
        tokio::pin!(stop);
        // A stop that began before this connection was served counts too.
        let mut stopping = self.shared.shutdown.is_triggered();
        if stopping {
            deadline = deadline.min(Instant::now() + drain);
        }
        loop {
            match packet::take_vars(&mut self.buf, &limits) {
                Ok(Some(vars)) => return Ok(vars),
                Ok(None) => {}
                Err(malformed) => return Err(End::Drop(malformed.to_string())),
            }
            let want = match packet::datasize(&self.buf, &limits) {
                Ok(Some(size)) => packet::HEADER_LEN + size,
                _ => packet::HEADER_LEN,
            };
            // `None`: a graceful stop began.
            let fill = tokio::select! {
                fill = self.fill(deadline, want) => Some(fill),
                () = &mut stop, if !stopping => None,
            };
            let Some(fill) = fill else {
                // A graceful stop: a request that has begun is served; a
                // connection that sent nothing yet gets the drain period.
                stopping = true;
                if self.buf.is_empty() {
                    deadline = deadline.min(Instant::now() + drain);
                }
                continue;
            };
            match fill {
                Fill::Read => {}
                Fill::Eof | Fill::TimedOut if self.buf.is_empty() && stopping => {
                    return Err(End::Gone)
                }
                Fill::Eof if self.buf.is_empty() => return Err(End::Gone),
                Fill::Eof => return Err(End::Drop("the packet was cut short".into())),
                Fill::TimedOut => {
                    return Err(End::Drop("the packet was not received in time".into()))
                }
            }
        }
    }

    /// Buffers a body of `length` bytes (memory, then a temporary file).
    async fn read_body(&mut self, length: u64) -> Result<RequestBody, End> {
        let s = &self.shared.settings;
        let limits = BodyLimits {
            max_size: s.max_body_size,
            memory: s.body_buffer_size,
        };
        let (timeout, memory) = (s.body_timeout, s.body_buffer_size);
        let mut sink = BodySink::new(limits, Some(length));
        let mut left = length;
        loop {
            if !self.buf.is_empty() && left > 0 {
                let n = self
                    .buf
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                sink.push(self.buf.split_to(n).freeze())
                    .map_err(body_error)?;
                left -= n as u64;
            }
            if left == 0 {
                return sink.finish().map_err(|e| body_error(BodyError::Spill(e)));
            }
            // Room for the rest of a body that stays in memory, in one piece.
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(memory);
            match self.fill(Instant::now() + timeout, want).await {
                Fill::Read => {}
                Fill::Eof => return Err(End::Drop("the body was cut short".into())),
                Fill::TimedOut => {
                    return Err(End::Reject(
                        StatusCode::REQUEST_TIMEOUT,
                        "request body timed out",
                    ))
                }
            }
        }
    }

    /// Waits (until `deadline`) for bytes and reads them, with room for
    /// `want` bytes in the buffer.
    async fn fill(&mut self, deadline: Instant, want: usize) -> Fill {
        loop {
            self.make_room(want);
            let ready = poll_fn(|cx| self.io.poll_read_ready(cx));
            match tokio::time::timeout_at(deadline, ready).await {
                Err(_) => return Fill::TimedOut,
                Ok(Err(_)) => return Fill::Eof,
                Ok(Ok(())) => {}
            }
            match self.io.try_read_buf(&mut self.buf) {
                Ok(0) => return Fill::Eof,
                Ok(_) => return Fill::Read,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Fill::Eof,
            }
        }
    }

    /// Reads and drops `length` bytes of body (those in the buffer first),
    /// each read within `--body-timeout`; stops early at the end of stream.
    async fn discard(&mut self, length: u64) {
        let timeout = self.shared.settings.body_timeout;
        let mut left = length;
        loop {
            // Bytes past the body, if any, go too: the connection closes.
            left = left.saturating_sub(self.buf.len() as u64);
            self.buf.clear();
            if left == 0 {
                return;
            }
            if !matches!(
                self.fill(Instant::now() + timeout, READ_CHUNK).await,
                Fill::Read
            ) {
                return;
            }
        }
    }

    /// Makes room for `want` bytes in all (at least `READ_CHUNK` free).
    fn make_room(&mut self, want: usize) {
        if self.buf.capacity() == 0 {
            self.buf = buffers::take();
        }
        let len = self.buf.len();
        if self.buf.capacity() - len < 1024 || self.buf.capacity() < want {
            self.buf.reserve(want.saturating_sub(len).max(READ_CHUNK));
        }
    }

    /// Hands the request to the gateway and waits for the response head.
    async fn call(&self, request: exchange::Request) -> ResponseStart {
        let (reply, answer) = oneshot::channel();
        if self
            .shared
            .dispatch
            .dispatch(Job { request, reply })
            .is_err()
        {
            return ResponseStart::plain(StatusCode::SERVICE_UNAVAILABLE, true);
        }
        answer
            .await
            .unwrap_or_else(|_| ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, true))
    }

    /// Ends the connection as `end` says.
    async fn finish(mut self, end: End) {
        let peer = peer_name(self.conn.peer);
        match end {
            // The close sends the FIN (no `shutdown` first: one syscall less
            // per request; every byte the proxy sent was read).
            End::Done | End::Gone => {}
            End::Drop(why) => tracing::debug!("uwsgi: {peer}: connection closed: {why}"),
            End::Reject(status, why) => {
                tracing::debug!(
                    "uwsgi: {peer}: refused a request: {} {why}",
                    status.as_u16()
                );
                let answer = ResponseStart::plain(status, true);
                let access = AccessRecord::unparsed(self.conn.peer);
                let sent = response::respond(&mut self.io, answer, false).await;
                log_refusal(access, status, &sent);
                if sent.is_ok() {
                    linger(&mut self.io).await;
                }
            }
            End::TooLarge(length) => {
                tracing::debug!("uwsgi: {peer}: refused a request: 413 request body too large");
                let status = StatusCode::PAYLOAD_TOO_LARGE;
                let access = AccessRecord::unparsed(self.conn.peer);
                let sent =
                    response::respond(&mut self.io, ResponseStart::plain(status, true), false)
                        .await;
                log_refusal(access, status, &sent);
                if sent.is_ok() {
                    self.discard(length).await;
                    let _ = self.io.shutdown().await;
                }
            }
            End::Abort => {
                tracing::debug!("uwsgi: {peer}: response body aborted: connection reset");
                // SO_LINGER 0: close() sends RST instead of FIN.
                let _ = socket2::SockRef::from(&self.io).set_linger(Some(Duration::ZERO));
            }
        }
        self.buf.clear();
        buffers::give_back(self.buf);
    }
}

/// Writes the access-log line of a request refused before dispatch.
fn log_refusal(access: Option<AccessRecord>, status: StatusCode, sent: &io::Result<Sent>) {
    if let Some(mut record) = access {
        record.set_status(status);
        record.write(sent.as_ref().map_or(0, |s| s.bytes));
    }
}

fn bad_vars(BadVars(why): BadVars) -> End {
    End::Reject(StatusCode::BAD_REQUEST, why)
}

fn body_error(e: BodyError) -> End {
    match e {
        BodyError::TooLarge => End::Reject(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        BodyError::Spill(e) => {
            tracing::error!("cannot spill a request body to a temporary file: {e}");
            End::Reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot store the request body",
            )
        }
    }
}

fn peer_name(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unix socket".to_owned(), |p| p.to_string())
}
