//! One client connection: hyper's HTTP/1.1 state machine, our request handler,
//! the keep-alive idle timer and graceful shutdown.
//!
//! Rules kept here: a request body is read completely by Rust before the job
//! goes to a Python thread; an idle keep-alive connection (no request in
//! flight, no byte received) is closed after `keep_alive`; on shutdown the
//! request in flight finishes and the connection then closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, REFERER, TRANSFER_ENCODING, USER_AGENT};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::exchange::{self, Job, ResponseStart};
use crate::log::{self, AccessRecord};
use crate::server::body::{self, BodyError, BodyLimits};
use crate::server::guarded_io::GuardedIo;
use crate::server::listener::LocalAddr;
use crate::server::response_body::ResponseBody;
use crate::server::ServerCtx;
use crate::shutdown::ShutdownSignal;

/// When the connection last did something, and whether a request is out.
#[derive(Debug)]
pub struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Requests hyper has handed over on this connection so far.
    requests: AtomicUsize,
    /// Milliseconds after `born` of the last byte read or response finished.
    last: AtomicU64,
    /// Woken when the last request in flight finishes (see `poll_idle`).
    idle_waker: Mutex<Option<Waker>>,
    /// When the request head being received began, in ms after `born` plus
    /// one; 0 while no head is in progress (`--header-timeout` runs from it).
    head_since: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            last: AtomicU64::new(0),
            idle_waker: Mutex::new(None),
            head_since: AtomicU64::new(0),
        }
    }

    /// Notes that a request head is being received (the first call starts
    /// the header timer; later ones keep it).
    pub fn head_begins(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0 {
            let now = self.born.elapsed().as_millis() as u64 + 1;
            self.head_since.store(now, Ordering::Relaxed);
        }
    }

    /// Notes that no request head is in progress.
    pub fn head_ends(&self) {
        self.head_since.store(0, Ordering::Relaxed);
    }

    /// When the head in progress runs out of time, if one is in progress.
    fn head_deadline(&self, timeout: Duration) -> Option<tokio::time::Instant> {
        match self.head_since.load(Ordering::Relaxed) {
            0 => None,
            since => {
                let began = self.born + Duration::from_millis(since - 1);
                Some(tokio::time::Instant::from_std(began + timeout))
            }
        }
    }

    /// Ready once no request is in flight on the connection.
    pub fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        *self.idle_waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.in_flight.load(Ordering::Acquire) == 0 {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Notes that bytes arrived from the client.
    pub fn touch(&self) {
        self.last
            .store(self.born.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// When the connection task must next look at its timers: the earliest
    /// of the keep-alive expiry and the header timeout. No task wake-up is
    /// needed when a head begins: a head that begins after this call has a
    /// deadline past `now + header_timeout`, which is never before the
    /// returned instant.
    fn next_check(&self, keep_alive: Duration, header_timeout: Duration) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        let idle = if self.in_flight.load(Ordering::Relaxed) > 0 {
            now + keep_alive
        } else {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            tokio::time::Instant::from_std(self.born + last + keep_alive)
        };
        let head = self
            .head_deadline(header_timeout)
            .unwrap_or(now + header_timeout);
        idle.min(head)
    }

    fn is_idle_expired(&self, keep_alive: Duration) -> bool {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.in_flight.load(Ordering::Relaxed) == 0 && self.born.elapsed() >= last + keep_alive
    }
}

/// Marks a request as in flight until dropped (with its response body).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self
                .0
                .idle_waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// What every request on one connection shares.
struct ConnInfo {
    peer: Option<SocketAddr>,
    local: Arc<LocalAddr>,
    activity: Arc<Activity>,
    ctx: Arc<ServerCtx>,
}

/// How long a connection accepted just before shutdown may take to send its
/// first request, which is then answered (seconds). A client that connected
/// to a worker that is about to stop (a reload, `--max-requests`) has done
/// nothing wrong; closing its connection unanswered would fail its request.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// How often a connection in `FIRST_REQUEST_GRACE` checks for its request.
const GRACE_POLL: Duration = Duration::from_millis(10);

/// Serves one accepted connection until it closes.
pub async fn serve<S>(
    stream: S,
    peer: Option<SocketAddr>,
    local: Arc<LocalAddr>,
    ctx: Arc<ServerCtx>,
    mut shutdown: ShutdownSignal,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(GuardedIo::new(stream, activity.clone(), ctx.config.limits));
    let keep_alive = ctx.config.keep_alive;
    let info = Arc::new(ConnInfo {
        peer,
        local,
        activity: activity.clone(),
        ctx: ctx.clone(),
    });
    // The request is in flight from the moment hyper hands it over, before
    // its future is first polled (the guard relies on this to hold back an
    // end-of-stream until earlier requests are answered).
    let service = service_fn(move |req| {
        let guard = InFlight::new(&info.activity);
        handle(req, info.clone(), guard)
    });
    let conn = ctx.http1.serve_connection(io, service);
    tokio::pin!(conn);
    let header_timeout = ctx.config.header_timeout;
    let mut closing = false;
    // Set on shutdown while no request has come yet: see `FIRST_REQUEST_GRACE`.
    let mut grace_until: Option<tokio::time::Instant> = None;
    let timers = tokio::time::sleep_until(activity.next_check(keep_alive, header_timeout));
    tokio::pin!(timers);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection from {}: {e}", peer_name(peer));
                }
                return;
            }
            _ = shutdown.recv(), if !closing && grace_until.is_none() => {
                if activity.requests.load(Ordering::Relaxed) == 0 {
                    grace_until = Some(tokio::time::Instant::now() + FIRST_REQUEST_GRACE);
                } else {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = tokio::time::sleep(GRACE_POLL), if !closing && grace_until.is_some() => {
                let waited_out = grace_until.is_some_and(|t| t <= tokio::time::Instant::now());
                if waited_out || activity.requests.load(Ordering::Relaxed) > 0 {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            _ = &mut timers => {
                let now = tokio::time::Instant::now();
                if activity.head_deadline(header_timeout).is_some_and(|d| d <= now) {
                    tracing::debug!("{}: request head not received in time", peer_name(peer));
                    return; // slowloris: drop the connection
                }
                if !closing && activity.is_idle_expired(keep_alive) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                let next = if closing {
                    activity.head_deadline(header_timeout).unwrap_or(now + header_timeout)
                } else {
                    activity.next_check(keep_alive, header_timeout)
                };
                timers.as_mut().reset(next);
            }
        }
    }
}

fn peer_name(peer: Option<SocketAddr>) -> String {
    peer.map_or_else(|| "unix socket".to_owned(), |p| p.to_string())
}

async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnInfo>,
    guard: InFlight,
) -> Result<Response<ResponseBody>, Infallible> {
    let access = log::access_enabled().then(|| access_record(&req, conn.peer));
    let started = Instant::now();
    let response = respond(req, &conn).await;
    let access = access.map(|mut record| {
        record.status = response.status().as_u16();
        (record, started)
    });
    Ok(response.map(|body| body.track(access, guard)))
}

async fn respond(req: Request<Incoming>, conn: &ConnInfo) -> Response<ResponseBody> {
    let config = &conn.ctx.config;
    let limits = BodyLimits {
        max_size: config.max_body_size,
        memory: config.body_buffer_size,
        timeout: config.body_timeout,
    };
    let (parts, incoming) = req.into_parts();
    if body::declared_too_large(&parts.headers, limits) {
        return to_response(ResponseStart::plain(StatusCode::PAYLOAD_TOO_LARGE, true));
    }
    let has_body_framing =
        parts.headers.contains_key(CONTENT_LENGTH) || parts.headers.contains_key(TRANSFER_ENCODING);
    let body = match body::read(incoming, limits).await {
        Ok(body) => body,
        Err(e) => return to_response(body_error(e, conn.peer)),
    };
    let (reply, answer) = oneshot::channel();
    let request = exchange::Request {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
        has_body_framing,
        body,
        peer: conn.peer,
        local: conn.local.clone(),
    };
    if conn.ctx.dispatch.dispatch(Job { request, reply }).is_err() {
        return to_response(ResponseStart::plain(StatusCode::SERVICE_UNAVAILABLE, true));
    }
    match answer.await {
        Ok(start) => to_response(start),
        Err(_) => to_response(ResponseStart::plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            true,
        )),
    }
}

fn body_error(e: BodyError, peer: Option<SocketAddr>) -> ResponseStart {
    match e {
        BodyError::TooLarge => ResponseStart::plain(StatusCode::PAYLOAD_TOO_LARGE, true),
        BodyError::Timeout => {
            tracing::debug!("request body from {} timed out", peer_name(peer));
            ResponseStart::plain(StatusCode::REQUEST_TIMEOUT, true)
        }
        BodyError::Client(e) => {
            tracing::debug!("bad request body from {}: {e}", peer_name(peer));
            ResponseStart::plain(StatusCode::BAD_REQUEST, true)
        }
        BodyError::Spill(e) => {
            tracing::error!("cannot spill a request body to a temporary file: {e}");
            ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, true)
        }
    }
}

fn to_response(start: ResponseStart) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::new(start.body));
    *response.status_mut() = start.status;
    *response.headers_mut() = start.headers;
    if let Some(reason) = start.reason {
        if let Ok(reason) = hyper::ext::ReasonPhrase::try_from(reason) {
            response.extensions_mut().insert(reason);
        }
    }
    response
}

fn access_record(req: &Request<Incoming>, peer: Option<SocketAddr>) -> AccessRecord {
    let header = |name| {
        req.headers()
            .get(name)
            .map(|v: &hyper::header::HeaderValue| {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            })
            .unwrap_or_else(|| "-".to_owned())
    };
    AccessRecord {
        remote: peer.map_or_else(|| "-".to_owned(), |p| p.ip().to_string()),
        started: SystemTime::now(),
        request_line: format!("{} {} {:?}", req.method(), req.uri(), req.version()),
        status: 0,
        bytes: 0,
        referer: header(REFERER),
        user_agent: header(USER_AGENT),
        duration: Duration::ZERO,
    }
}
