//! The FastCGI engine, responder role (FastCGI 1.0), as nginx's
//! `fastcgi_pass` and Apache's `mod_proxy_fcgi` speak it.
//!
//! - `record.rs`: the record layer, sans I/O (headers, name-value pairs,
//!   management answers).
//! - `response.rs`: the CGI response head sent on STDOUT.
//! - this module: the connection driver.
//!
//! Rules kept here (FastCGI 1.0 §3-§6):
//! - One request at a time per connection: a BEGIN_REQUEST while one is
//!   active gets END_REQUEST with FCGI_CANT_MPX_CONN for its id (§5.5);
//!   records for a request id that is not active are ignored (§3.3); a role
//!   other than responder gets FCGI_UNKNOWN_ROLE.
//! - PARAMS (the CGI variables, `protocols::cgi`) are bounded: at most
//!   `limits.max_head()` bytes (then 431) and `limits.max_fields` pairs
//!   (then 431), all within `header_timeout` of the BEGIN_REQUEST; STDIN is
//!   buffered by `protocols::body` (413 beyond `--max-body-size`, answered
//!   once the stream has ended), with `body_timeout` between records. An
//!   answer the server makes itself is a FastCGI response like any other.
//! - The response goes out on STDOUT (`Status:` line, the fields, `Date`,
//!   the body as the application produces it, with backpressure), then an
//!   empty STDOUT and END_REQUEST (FCGI_REQUEST_COMPLETE). A body that
//!   cannot be completed (`Chunk::Abort`, a short body) closes the
//!   connection without END_REQUEST, so the web server sees it cut.
//! - ABORT_REQUEST for the active request drops it (a running
//!   application's iterable is closed by the gateway, once) and is answered
//!   with END_REQUEST.
//! - Without FCGI_KEEP_CONN the connection closes after END_REQUEST (§5.1);
//!   with it the web server keeps responsibility for the connection, so an
//!   idle one is never timed out by us, except on a graceful stop: it stays
//!   open for the drain period, a request that comes meanwhile is answered,
//!   then the connection closes.
//! - Malformed input (a version other than 1, garbage, a broken
//!   name-value block) closes the connection, with a debug log line.

pub mod record;
mod response;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use self::record::{kind, Begin, Malformed, Pairs, ProtocolStatus, Record};
use crate::exchange::{BodySource, Chunk, Connection, Job, RequestBody, ResponseStart};
use crate::log::AccessRecord;
use crate::protocols::body::{BodyError, BodyLimits, BodySink};
use crate::protocols::cgi::CgiVars;
use crate::protocols::http1::conn::Transport;
use crate::protocols::Shared;

/// Pending output is written once it reaches this size, bytes.
const FLUSH_AT: usize = 64 * 1024;
/// Room made in the read buffer for each read, bytes.
const READ_CHUNK: usize = 16 * 1024;
/// FCGI_MAX_CONNS and FCGI_MAX_REQS in a GET_VALUES_RESULT: we set no limit
/// of our own, so this is advice to the web server, not a cap.
const MAX_CONNS: u32 = 1024;

/// Serves one connection until it closes.
///
/// `S` is a TCP or unix stream (readiness-based reads: the socket is
/// watched for ABORT_REQUEST while the application runs).
pub async fn serve<S: Transport>(io: S, conn: Connection, shared: Arc<Shared>) {
    let shared_timeout = shared.settings.header_timeout;
    let mut c = Conn {
        io,
        conn,
        shared,
        buf: BytesMut::new(),
        out: Vec::new(),
        drain_until: None,
        fresh_until: Some(Instant::now() + shared_timeout),
        closing: false,
    };
    let end = c.run().await;
    c.finish(end).await;
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// Close after what was written.
    Close,
    /// The web server went away (end of stream, a socket error).
    Gone,
    /// The input is not FastCGI.
    Malformed(&'static str),
    /// A record did not come in time.
    TimedOut,
}

impl From<Malformed> for End {
    fn from(m: Malformed) -> Self {
        End::Malformed(m.0)
    }
}

impl From<io::Error> for End {
    fn from(_: io::Error) -> Self {
        End::Gone
    }
}

/// One FastCGI connection.
struct Conn<S> {
    io: S,
    conn: Connection,
    shared: Arc<Shared>,
    /// Bytes read and not yet decoded.
    buf: BytesMut,
    /// Bytes to write.
    out: Vec<u8>,
    /// Once a graceful stop began while idle: when the drain period ends.
    drain_until: Option<Instant>,
    /// Until a request begins: when a connection that never sent one is
    /// closed (`header_timeout` after it was accepted).
    fresh_until: Option<Instant>,
    /// The connection closes after the request just ended.
    closing: bool,
}

/// The active request's id and what its BEGIN_REQUEST asked.
#[derive(Debug, Clone, Copy)]
struct Active {
    id: u16,
    keep_conn: bool,
}

impl<S: Transport> Conn<S> {
    /// Serves requests one after another until the connection must end.
    async fn run(&mut self) -> End {
        loop {
            let active = match self.await_begin().await {
                Ok(Some(active)) => active,
                Ok(None) => return End::Close,
                Err(end) => return end,
            };
            // Boxed: a request's state is large and exists only while it
            // runs; an idle pooled connection's future stays small.
            if let Err(end) = Box::pin(self.request(active)).await {
                return end;
            }
            if self.closing {
                return End::Close;
            }
        }
    }

    /// Waits for the next BEGIN_REQUEST for a responder, answering
    /// management records (and refusing other roles) meanwhile. `None`: the
    /// connection should close (drain over, or a refused role without
    /// FCGI_KEEP_CONN).
    async fn await_begin(&mut self) -> Result<Option<Active>, End> {
        let mut deadline = None;
        loop {
            while let Some(r) = record::decode(&mut self.buf)? {
                if r.id == 0 {
                    self.management(&r)?;
                    continue;
                }
                if r.kind != kind::BEGIN_REQUEST {
                    continue; // not an active request: ignored (§3.3)
                }
                let begin = Begin::decode(&r.content)?;
                if begin.role == record::ROLE_RESPONDER {
                    self.fresh_until = None;
                    return Ok(Some(Active {
                        id: r.id,
                        keep_conn: begin.keep_conn,
                    }));
                }
                tracing::debug!("fastcgi: request {} refused: role {}", r.id, begin.role);
                record::end_request(&mut self.out, r.id, 0, ProtocolStatus::UnknownRole);
                if !begin.keep_conn {
                    return Ok(None);
                }
            }
            self.flush().await?;
            if self.buf.is_empty() {
                if !self.idle().await {
                    return Ok(None);
                }
                // A wake-up without bytes (readiness left from the last
                // request) goes back to waiting idle.
                if self.read_now()? {
                    deadline = Some(Instant::now() + self.shared.settings.header_timeout);
                }
                continue;
            }
            let until = *deadline
                .get_or_insert_with(|| Instant::now() + self.shared.settings.header_timeout);
            self.fill(until).await?;
        }
    }

    /// Waits, holding no bytes, until the web server sends some (`true`),
    /// or the connection should close (`false`): the drain period of a
    /// graceful stop is over, or a connection that never began a request
    /// has waited `header_timeout`.
    async fn idle(&mut self) -> bool {
        // An idle connection holds no buffer (c10k): the next read or
        // answer makes one again.
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        if self.out.is_empty() {
            self.out = Vec::new();
        }
        loop {
            let stopped = self.shared.shutdown.stopped();
            if self.drain_until.is_none() && self.shared.shutdown.is_triggered() {
                self.drain_until = Some(Instant::now() + self.shared.settings.drain);
            }
            let until = match (self.drain_until, self.fresh_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let draining = self.drain_until.is_some();
            let readable = poll_fn(|cx| self.io.poll_read_ready(cx));
            let far = Instant::now() + Duration::from_secs(86400);
            // Biased, bytes first: a request that came as the drain period
            // ended is answered rather than closed on.
            tokio::select! {
                biased;
                _ = readable => return true,
                () = tokio::time::sleep_until(until.unwrap_or(far)), if until.is_some() => {
                    return false
                }
                () = stopped, if !draining => {}
            }
        }
    }

    /// Serves the request `active` from its PARAMS to its END_REQUEST.
    async fn request(&mut self, active: Active) -> Result<(), End> {
        let until = Instant::now() + self.shared.settings.header_timeout;
        let Some(params) = self.params(active, until).await? else {
            return self.acknowledge_abort(active).await;
        };
        let vars = match self.vars(params) {
            Ok(vars) => vars,
            Err(status) => return self.answer_after_stdin(active, status).await,
        };
        let declared = match vars.content_length() {
            Ok(n) => n,
            Err(bad) => {
                tracing::debug!("fastcgi: request {}: {}", active.id, bad.0);
                return self
                    .answer_after_stdin(active, StatusCode::BAD_REQUEST)
                    .await;
            }
        };
        let body = match self.stdin(active, declared, true).await? {
            Stdin::Body(body) => body,
            Stdin::Refused(status) => {
                let access = AccessRecord::unparsed(self.conn.peer);
                return self.answer(active, plain(status), access).await;
            }
            Stdin::Aborted => return self.acknowledge_abort(active).await,
        };
        let request = match vars.into_request(body, &self.conn) {
            Ok(request) => request,
            Err(bad) => {
                tracing::debug!("fastcgi: request {}: {}", active.id, bad.0);
                let start = plain(StatusCode::BAD_REQUEST);
                let access = AccessRecord::unparsed(self.conn.peer);
                return self.answer(active, start, access).await;
            }
        };
        let access = {
            let http = &request.http;
            let (method, uri, headers) = (http.method(), http.uri(), http.headers());
            AccessRecord::start(method, uri, http.version(), headers, request.peer)
        };
        let head_request = request.http.method() == Method::HEAD;
        let (reply, answer) = oneshot::channel();
        if self
            .shared
            .dispatch
            .dispatch(Job { request, reply })
            .is_err()
        {
            let start = plain(StatusCode::SERVICE_UNAVAILABLE);
            return self.answer(active, start, access).await;
        }
        let start = match self.wait_answer(active, answer).await? {
            Some(Ok(start)) => start,
            Some(Err(())) => plain(StatusCode::INTERNAL_SERVER_ERROR),
            None => return self.acknowledge_abort(active).await,
        };
        self.answer_with(active, start, access, head_request).await
    }

    /// Reads the PARAMS stream of `active` (by `until`). `None`: the
    /// request was aborted.
    async fn params(&mut self, active: Active, until: Instant) -> Result<Option<Params>, End> {
        let max = self.shared.settings.limits.max_head();
        let mut block = BytesMut::new();
        let mut too_large = false;
        loop {
            let r = match self.next_record(until).await {
                Err(End::TimedOut) => {
                    tracing::debug!(
                        "fastcgi: request {}: PARAMS not received in time",
                        active.id
                    );
                    self.answer_plain(active, StatusCode::REQUEST_TIMEOUT)
                        .await?;
                    return Err(End::Close);
                }
                r => r?,
            };
            if !self.side_record(&r, active)? {
                continue;
            }
            match r.kind {
                kind::ABORT_REQUEST => return Ok(None),
                kind::PARAMS if r.content.is_empty() => {
                    return Ok(Some(if too_large {
                        Params::TooLarge
                    } else {
                        Params::Block(block.freeze())
                    }))
                }
                kind::PARAMS if block.len() + r.content.len() > max => too_large = true,
                kind::PARAMS if !too_large => block.extend_from_slice(&r.content),
                kind::STDIN => return Err(End::Malformed("STDIN before the end of PARAMS")),
                _ => {}
            }
        }
    }

    /// The CGI variables of a PARAMS block, or the status to refuse it with.
    fn vars(&self, params: Params) -> Result<CgiVars, StatusCode> {
        let Params::Block(block) = params else {
            tracing::debug!(
                "fastcgi: PARAMS over {} bytes",
                self.shared.settings.limits.max_head()
            );
            return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        };
        let max = self.shared.settings.limits.max_fields;
        let mut vars = CgiVars::with_capacity(32);
        let mut fields = 0;
        for pair in Pairs::new(block) {
            let Ok((name, value)) = pair else {
                tracing::debug!("fastcgi: malformed name-value pairs in PARAMS");
                return Err(StatusCode::BAD_REQUEST);
            };
            // Header fields (HTTP_*) count against --limit-request-fields,
            // as on HTTP; the other variables are bounded by the bytes.
            fields += usize::from(name.starts_with(b"HTTP_"));
            if fields > max {
                tracing::debug!("fastcgi: more than {max} header fields in PARAMS");
                return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            vars.push(name, value);
        }
        Ok(vars)
    }

    /// Reads the STDIN stream of `active` into a body (`declared`: its
    /// CONTENT_LENGTH), `body_timeout` between records; `keep: false` drops
    /// what comes (a request already refused).
    async fn stdin(
        &mut self,
        active: Active,
        declared: Option<u64>,
        keep: bool,
    ) -> Result<Stdin, End> {
        let settings = &self.shared.settings;
        let limits = BodyLimits {
            max_size: settings.max_body_size,
            memory: settings.body_buffer_size,
        };
        let timeout = settings.body_timeout;
        let mut refused = declared
            .filter(|&n| n > limits.max_size)
            .map(|_| StatusCode::PAYLOAD_TOO_LARGE);
        if !keep {
            refused = Some(StatusCode::BAD_REQUEST);
        }
        let mut sink = BodySink::new(limits, declared);
        loop {
            let r = match self.next_record(Instant::now() + timeout).await {
                Err(End::TimedOut) => {
                    tracing::debug!("fastcgi: request {}: STDIN timed out", active.id);
                    self.answer_plain(active, StatusCode::REQUEST_TIMEOUT)
                        .await?;
                    return Err(End::Close);
                }
                r => r?,
            };
            if !self.side_record(&r, active)? {
                continue;
            }
            match r.kind {
                kind::ABORT_REQUEST => return Ok(Stdin::Aborted),
                kind::STDIN if r.content.is_empty() => break,
                kind::STDIN if refused.is_none() => match sink.push(r.content) {
                    Ok(()) => {}
                    Err(BodyError::TooLarge) => refused = Some(StatusCode::PAYLOAD_TOO_LARGE),
                    Err(BodyError::Spill(e)) => {
                        tracing::error!("cannot spill a request body to a temporary file: {e}");
                        refused = Some(StatusCode::INTERNAL_SERVER_ERROR);
                    }
                },
                _ => {}
            }
        }
        if let Some(status) = refused {
            if !keep {
                return Ok(Stdin::Refused(status));
            }
            tracing::debug!("fastcgi: request {}: body refused: {status}", active.id);
            return Ok(Stdin::Refused(status));
        }
        match sink.finish() {
            Ok(body) => Ok(Stdin::Body(body)),
            Err(e) => {
                tracing::error!("cannot rewind a request body's temporary file: {e}");
                Ok(Stdin::Refused(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }

    /// Reads (and drops) the rest of the request's STDIN, then answers
    /// `status`.
    async fn answer_after_stdin(&mut self, active: Active, status: StatusCode) -> Result<(), End> {
        match self.stdin(active, None, false).await? {
            Stdin::Aborted => self.acknowledge_abort(active).await,
            _ => {
                let access = AccessRecord::unparsed(self.conn.peer);
                self.answer(active, plain(status), access).await
            }
        }
    }

    /// Waits for the application's answer, watching the connection for
    /// ABORT_REQUEST (`None`). `Some(Err)`: the gateway dropped the job.
    async fn wait_answer(
        &mut self,
        active: Active,
        mut answer: oneshot::Receiver<ResponseStart>,
    ) -> Result<Option<Result<ResponseStart, ()>>, End> {
        loop {
            let readable = poll_fn(|cx| self.io.poll_read_ready(cx));
            tokio::select! {
                start = &mut answer => return Ok(Some(start.map_err(|_| ()))),
                _ = readable => {}
            }
            if self.read_side(active).await? {
                return Ok(None);
            }
        }
    }

    /// Reads what the web server sent while a request runs and handles it
    /// (management, refused requests); `true` when it aborted `active`.
    async fn read_side(&mut self, active: Active) -> Result<bool, End> {
        self.read_now()?;
        while let Some(r) = record::decode(&mut self.buf)? {
            if self.side_record(&r, active)? && r.kind == kind::ABORT_REQUEST {
                return Ok(true);
            }
        }
        self.flush().await?;
        Ok(false)
    }

    /// Handles a record that is not for the active request (management,
    /// another id); `true` when it is for `active` and the caller's to use.
    fn side_record(&mut self, r: &Record, active: Active) -> Result<bool, End> {
        if r.id == 0 {
            self.management(r)?;
            return Ok(false);
        }
        if r.kind == kind::BEGIN_REQUEST {
            tracing::debug!("fastcgi: request {} refused: one at a time", r.id);
            record::end_request(&mut self.out, r.id, 0, ProtocolStatus::CantMpxConn);
            return Ok(false);
        }
        Ok(r.id == active.id)
    }

    /// Answers a management record (§4).
    fn management(&mut self, r: &Record) -> Result<(), End> {
        match r.kind {
            kind::GET_VALUES => record::get_values_result(&mut self.out, &r.content, MAX_CONNS)?,
            other => {
                tracing::debug!("fastcgi: unknown management record type {other}");
                record::unknown_type(&mut self.out, other);
            }
        }
        Ok(())
    }

    /// Queues the END_REQUEST (FCGI_REQUEST_COMPLETE) of `active`, and
    /// decides whether the connection closes after it: without
    /// FCGI_KEEP_CONN, or once a graceful stop began.
    ///
    /// A pooled connection that closes gets an empty STDERR record right
    /// after its END_REQUEST: FastCGI has no "Connection: close", and nginx
    /// keeps a connection for reuse only when END_REQUEST is the last thing
    /// it read (`ngx_http_fastcgi_input_filter`), so it closes this one
    /// instead of sending the next request on it while our FIN is on its
    /// way (which it would report as "upstream prematurely closed").
    fn end_request(&mut self, active: Active) {
        record::end_request(&mut self.out, active.id, 0, ProtocolStatus::RequestComplete);
        let stopping = self.shared.shutdown.is_triggered();
        if active.keep_conn && stopping {
            record::end_stream(&mut self.out, kind::STDERR, active.id);
        }
        self.closing = !active.keep_conn || stopping;
    }

    /// Ends an aborted request with END_REQUEST (§5.4).
    async fn acknowledge_abort(&mut self, active: Active) -> Result<(), End> {
        tracing::debug!("fastcgi: request {} aborted by the web server", active.id);
        self.end_request(active);
        self.flush().await?;
        Ok(())
    }

    /// Answers `status` (a server-made answer) and ends the request.
    async fn answer_plain(&mut self, active: Active, status: StatusCode) -> Result<(), End> {
        self.answer(active, plain(status), None).await.map(|_| ())
    }

    /// Writes the response on STDOUT, then END_REQUEST; logs it.
    async fn answer(
        &mut self,
        active: Active,
        start: ResponseStart,
        access: Option<AccessRecord>,
    ) -> Result<(), End> {
        self.answer_with(active, start, access, false).await
    }

    /// [`Conn::answer`], without the body when `head_request` (HEAD: the
    /// fields are a GET's, Content-Length included).
    async fn answer_with(
        &mut self,
        active: Active,
        start: ResponseStart,
        access: Option<AccessRecord>,
        head_request: bool,
    ) -> Result<(), End> {
        let mut access = access;
        if let Some(record) = access.as_mut() {
            record.answered(start.status, &start.headers);
        }
        let mut sent = 0;
        let result = self.send(active, start, head_request, &mut sent).await;
        if let Some(record) = access {
            record.write(sent);
        }
        match result? {
            Sent::Complete => {
                record::end_stream(&mut self.out, kind::STDOUT, active.id);
                self.end_request(active);
                self.flush().await?;
                Ok(())
            }
            Sent::Aborted => self.acknowledge_abort(active).await,
            Sent::Cut => {
                self.flush().await?;
                Err(End::Close)
            }
        }
    }

    /// Writes the head and body of `start` on STDOUT (no body for HEAD,
    /// 1xx, 204, 304: a stream is dropped, and the gateway closes the
    /// iterable); `sent` counts body bytes.
    async fn send(
        &mut self,
        active: Active,
        start: ResponseStart,
        head_request: bool,
        sent: &mut u64,
    ) -> Result<Sent, End> {
        let mut head = Vec::with_capacity(256);
        response::head(&mut head, &start, head_request);
        record::stream(&mut self.out, kind::STDOUT, active.id, &head);
        if head_request || !response::has_body(start.status) {
            return Ok(Sent::Complete);
        }
        match start.body {
            BodySource::Full(body) => {
                self.stdout(active.id, &body).await?;
                *sent = body.len() as u64;
                Ok(Sent::Complete)
            }
            BodySource::Short(body) => {
                self.stdout(active.id, &body).await?;
                *sent = body.len() as u64;
                Ok(Sent::Cut)
            }
            BodySource::Stream(rx) => self.stream(active, rx, sent).await,
            BodySource::File(region) => self.stream(active, region.into_chunks(), sent).await,
        }
    }

    /// Sends a streamed body as the application produces it, watching the
    /// connection for ABORT_REQUEST (then the receiver is dropped: the
    /// gateway closes the iterable).
    async fn stream(
        &mut self,
        active: Active,
        mut rx: mpsc::Receiver<Chunk>,
        sent: &mut u64,
    ) -> Result<Sent, End> {
        loop {
            let chunk = match rx.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    self.flush().await?;
                    let readable = poll_fn(|cx| self.io.poll_read_ready(cx));
                    tokio::select! {
                        chunk = rx.recv() => chunk,
                        _ = readable => {
                            if self.read_side(active).await? {
                                return Ok(Sent::Aborted);
                            }
                            continue;
                        }
                    }
                }
            };
            match chunk {
                Some(Chunk::Data(data)) => {
                    *sent += data.len() as u64;
                    self.stdout(active.id, &data).await?;
                }
                Some(Chunk::Abort) => return Ok(Sent::Cut),
                None => return Ok(Sent::Complete),
            }
        }
    }

    /// Queues `data` as STDOUT records, writing whenever enough waits.
    async fn stdout(&mut self, id: u16, data: &[u8]) -> io::Result<()> {
        for piece in data.chunks(FLUSH_AT) {
            record::stream(&mut self.out, kind::STDOUT, id, piece);
            if self.out.len() >= FLUSH_AT {
                self.flush().await?;
            }
        }
        Ok(())
    }

    /// The next record, reading (by `until`) as needed.
    async fn next_record(&mut self, until: Instant) -> Result<Record, End> {
        loop {
            if let Some(r) = record::decode(&mut self.buf)? {
                return Ok(r);
            }
            self.flush().await?;
            self.fill(until).await?;
        }
    }

    /// Reads at least one byte (by `until`).
    async fn fill(&mut self, until: Instant) -> Result<(), End> {
        loop {
            if self.read_now()? {
                return Ok(());
            }
            let readable = poll_fn(|cx| self.io.poll_read_ready(cx));
            match tokio::time::timeout_at(until, readable).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(End::Gone),
                Err(_) => return Err(End::TimedOut),
            }
        }
    }

    /// Reads what is there without waiting; `false` when nothing was.
    ///
    /// # Errors
    /// [`End::Gone`] at end of stream or on a socket error.
    fn read_now(&mut self) -> Result<bool, End> {
        let want = record::wanted(&self.buf).max(READ_CHUNK);
        if self.buf.capacity() - self.buf.len() < want.min(READ_CHUNK) {
            self.buf.reserve(want);
        }
        match self.io.try_read_buf(&mut self.buf) {
            Ok(0) => Err(End::Gone),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(_) => Err(End::Gone),
        }
    }

    /// Writes the pending output.
    async fn flush(&mut self) -> io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        self.io.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Ends the connection as `end` says.
    async fn finish(mut self, end: End) {
        match end {
            End::Close => {
                if self.flush().await.is_ok() {
                    let _ = self.io.shutdown().await;
                }
            }
            End::Gone => {}
            End::Malformed(why) => {
                tracing::debug!(
                    "fastcgi: {}: connection closed: {why}",
                    peer_name(self.conn.peer)
                );
            }
            End::TimedOut => {
                tracing::debug!(
                    "fastcgi: {}: connection closed: timed out",
                    peer_name(self.conn.peer)
                );
            }
        }
    }
}

/// A PARAMS stream as received.
enum Params {
    /// The joined content of its records.
    Block(Bytes),
    /// Over the limit (its content was dropped).
    TooLarge,
}

/// A STDIN stream as received.
enum Stdin {
    /// The body, buffered.
    Body(RequestBody),
    /// Refused with this status (too large, cannot be stored).
    Refused(StatusCode),
    /// ABORT_REQUEST came first.
    Aborted,
}

/// How sending a response ended.
enum Sent {
    /// The whole body went out: end the request normally.
    Complete,
    /// ABORT_REQUEST came while it streamed.
    Aborted,
    /// The body cannot be completed: close without END_REQUEST.
    Cut,
}

/// A short answer made by the server itself.
fn plain(status: StatusCode) -> ResponseStart {
    ResponseStart::plain(status, false)
}

fn peer_name(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unix socket".to_owned(), |p| p.to_string())
}
