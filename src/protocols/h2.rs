//! HTTP/2 (RFC 9113), served by hyper's HTTP/2 server: one connection, many
//! streams, each stream one request across the seam (`exchange.rs`).
//!
//! Used for h2c with prior knowledge on plain listeners (the connection
//! starts with the client preface, [`PREFACE`], RFC 9113 §3.3) and for `h2`
//! chosen by ALPN over TLS (§3.2). `stream.rs` serves one stream,
//! `body.rs` is the response body handed to hyper.
//!
//! Rules kept here (the gateway's own rules hold for every stream):
//! - A request body is buffered completely (`protocols::body`) before the
//!   request is dispatched: 413 beyond `max_body_size`, 408 when it stalls
//!   for `body_timeout`. The head keeps the HTTP/1.1 limits: a `:path`
//!   longer than `limit_request_line` gets 414, more than
//!   `limit_request_fields` fields or a field longer than
//!   `limit_request_field_size` gets 431.
//! - Responses: a whole body goes out with its exact length; a streamed one
//!   as the application produces it, polled by hyper only as flow control
//!   allows, so the bounded chunk channel blocks the Python thread
//!   (backpressure). A body that cannot be completed resets the stream
//!   (never a silently truncated success). A stream reset by the client
//!   drops the body, and with it the chunk receiver: the gateway then calls
//!   the iterable's `close()`, once.
//!
//! Limits, each set explicitly on hyper's builder ([`builder`]):
//! - [`MAX_CONCURRENT_STREAMS`] streams at once per connection
//!   (SETTINGS_MAX_CONCURRENT_STREAMS, §6.5.2); more are refused by h2.
//! - SETTINGS_MAX_HEADER_LIST_SIZE from the HTTP/1.1 head limits
//!   ([`header_list_size`]): a larger header list is answered 431 and the
//!   stream refused. It also bounds a CONTINUATION flood (CVE-2024-27316
//!   class): h2 counts the CONTINUATION frames of one header block against
//!   this size and sends GOAWAY (ENHANCE_YOUR_CALM) beyond it.
//! - Rapid reset (CVE-2023-44487): at most [`MAX_PENDING_ACCEPT_RESETS`]
//!   streams reset by the client before the server took them, and at most
//!   [`MAX_LOCAL_ERROR_RESETS`] streams reset by the server for the
//!   client's errors, then GOAWAY (ENHANCE_YOUR_CALM).
//! - PING and SETTINGS floods: h2 keeps one pending PING ACK and one pending
//!   SETTINGS ACK and reads no further frame until it is written, so a
//!   client that floods without reading stalls only itself. Neither kind of
//!   frame counts as activity for the idle timer.
//! - Keep-alive: PING every `keep_alive` seconds while the connection is
//!   open (a peer that does not answer within `header_timeout` is dropped);
//!   a connection with no stream open is sent GOAWAY after `keep_alive`
//!   (before its first stream: `header_timeout`), as an idle HTTP/1.1
//!   connection is closed.
//! - Graceful stop (`shared.shutdown`): GOAWAY (hyper's two-step one: last
//!   stream id 2^31-1, then the real one after a PING round trip), so the
//!   streams in flight finish and no new one is taken; a connection that
//!   has no open stream for the drain period is dropped even if the client
//!   never acknowledges. The runner's `graceful_timeout` bounds the rest.

mod body;
mod stream;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::exchange::Connection;
use crate::protocols::{Limits, Settings, Shared};

/// The client connection preface (RFC 9113 §3.4), 24 bytes.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams the client may reset before the server accepted them, at once,
/// before the connection is closed with ENHANCE_YOUR_CALM (the rapid-reset
/// attack, CVE-2023-44487; h2's default, set explicitly).
pub const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may reset for the client's protocol errors before the
/// connection is closed with ENHANCE_YOUR_CALM (RUSTSEC-2024-0003).
pub const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// Bounds of the header list size, bytes: at least h2's default, and at
/// most 64 KiB of decoded header data per stream (with 100 streams open, a
/// connection holds at most 6.4 MiB of request heads; nginx's default is
/// half as much per request).
const HEADER_LIST_MIN: usize = 16 * 1024;
const HEADER_LIST_MAX: usize = 64 * 1024;

/// Whether `start` (the first bytes of a connection) is, so far, the client
/// preface: `Some(true)` for the whole preface, `Some(false)` as soon as a
/// byte differs (an HTTP/1.1 request: decided without waiting for more),
/// `None` for a proper prefix of it (more bytes are needed).
pub fn preface_verdict(start: &[u8]) -> Option<bool> {
    let n = start.len().min(PREFACE.len());
    if start[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// SETTINGS_MAX_HEADER_LIST_SIZE for `limits`, bytes: the largest head the
/// HTTP/1.1 limits allow (request line and every field at its longest, with
/// HPACK's 32 bytes per field, RFC 9113 §6.5.2), kept within 16..64 KiB.
pub fn header_list_size(limits: &Limits) -> u32 {
    let fields = limits.max_fields.saturating_add(1);
    let size = limits
        .max_request_line
        .saturating_add(fields.saturating_mul(limits.max_field_size.saturating_add(32)));
    let size = size.clamp(HEADER_LIST_MIN, HEADER_LIST_MAX);
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// hyper's HTTP/2 server, configured from `settings` (see the module docs).
fn builder(settings: &Settings) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(header_list_size(&settings.limits))
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .auto_date_header(true);
    if !settings.keep_alive.is_zero() {
        builder
            .keep_alive_interval(settings.keep_alive)
            .keep_alive_timeout(settings.header_timeout.max(Duration::from_secs(1)));
    }
    builder
}

/// What every stream of one connection shares.
struct StreamCtx {
    /// What the connection knows of itself, copied into each request.
    conn: Connection,
    /// Settings, dispatch, the stop signal.
    shared: Arc<Shared>,
    /// Open streams and the time of the last one, for the idle timer.
    activity: Arc<Activity>,
}

/// Open streams on a connection, and when the last one started or ended:
/// a connection is idle while it has no stream open.
#[derive(Debug)]
struct Activity {
    state: Mutex<ActivityState>,
    /// Woken when the last open stream ends (the idle deadline moves).
    quiet: Notify,
}

#[derive(Debug)]
struct ActivityState {
    /// Streams begun and not yet ended: while any is, the connection is
    /// not idle.
    open: usize,
    /// When a stream last began or ended (the connection's start before
    /// the first): the idle time runs from it.
    last: Instant,
    /// Whether a stream was ever opened: before the first, the idle limit
    /// is `header_timeout` (as for HTTP/1.1), then `keep_alive`.
    served: bool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new(ActivityState {
                open: 0,
                last: Instant::now(),
                served: false,
            }),
            quiet: Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ActivityState) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A stream started.
    fn opened(&self) {
        self.with(|s| {
            s.open += 1;
            s.served = true;
            s.last = Instant::now();
        });
    }

    /// A stream ended (its response sent, or the stream reset).
    fn closed(&self) {
        let quiet = self.with(|s| {
            s.open = s.open.saturating_sub(1);
            s.last = Instant::now();
            s.open == 0
        });
        if quiet {
            self.quiet.notify_one();
        }
    }

    /// When the connection will have been idle too long: `None` while a
    /// stream is open. `going_away`: when GOAWAY was sent (a graceful stop,
    /// or the idle limit), after which the drain period applies.
    fn idle_deadline(&self, settings: &Settings, going_away: Option<Instant>) -> Option<Instant> {
        self.with(|s| {
            if s.open > 0 {
                return None;
            }
            Some(match going_away {
                Some(at) => s.last.max(at) + settings.drain,
                None if s.served => s.last + settings.keep_alive,
                None => s.last + settings.header_timeout,
            })
        })
    }
}

/// Serves one HTTP/2 connection (after TLS, or a plain one that starts with
/// the client preface) until it closes: every stream goes to the gateway
/// through `shared.dispatch`.
pub async fn serve<S>(io: S, conn: Connection, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let peer = conn.peer;
    let ctx = Arc::new(StreamCtx {
        conn,
        shared: shared.clone(),
        activity: activity.clone(),
    });
    let service = service_fn(move |request| stream::handle(request, ctx.clone()));
    let connection = builder(&shared.settings).serve_connection(TokioIo::new(io), service);
    let stop = shared.shutdown.stopped();
    tokio::pin!(connection, stop);
    let mut going_away: Option<Instant> = None;
    loop {
        if going_away.is_none() && shared.shutdown.is_triggered() {
            going_away = Some(Instant::now());
            connection.as_mut().graceful_shutdown();
        }
        let deadline = activity.idle_deadline(&shared.settings, going_away);
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("{}: HTTP/2 connection ended: {}", peer_name(peer), why(&e));
                }
                return;
            }
            () = stop.as_mut(), if going_away.is_none() => {}
            () = activity.quiet.notified() => {} // the deadline moves
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                if deadline.is_some() =>
            {
                let still = activity.idle_deadline(&shared.settings, going_away);
                if still.is_some_and(|d| d <= Instant::now()) {
                    if going_away.is_some() {
                        return; // drained: the client did not close
                    }
                    going_away = Some(Instant::now());
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// An error and its causes, for the debug log (hyper's own message is
/// only "http2 error"; h2's cause names the frame and the reason).
fn why(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The client's address for log lines.
fn peer_name(peer: Option<std::net::SocketAddr>) -> String {
    peer.map_or_else(|| "unix socket".to_owned(), |p| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_recognised_from_its_first_bytes() {
        assert_eq!(preface_verdict(PREFACE), Some(true));
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\x12\x04");
        assert_eq!(preface_verdict(&more), Some(true));
        assert_eq!(preface_verdict(b"PRI * HTTP/2"), None);
        assert_eq!(preface_verdict(b"P"), None);
        assert_eq!(preface_verdict(b"POST / HTTP/1.1\r\n"), Some(false));
        assert_eq!(preface_verdict(b"GET / HTTP/1.1\r\n"), Some(false));
        assert_eq!(preface_verdict(b"PRI * HTTP/1.1\r\n"), Some(false));
    }

    fn settings() -> Settings {
        Settings {
            limits: Limits::default(),
            keep_alive: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_body_size: 1 << 20,
            body_buffer_size: 1 << 16,
            drain: Duration::from_secs(2),
            http: crate::protocols::HttpVersions::Auto,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_idle_deadline_follows_the_streams() {
        let (s, activity) = (settings(), Activity::new());
        let born = Instant::now();
        assert_eq!(
            activity.idle_deadline(&s, None),
            Some(born + s.header_timeout)
        );
        activity.opened();
        activity.opened();
        assert_eq!(activity.idle_deadline(&s, None), None);
        tokio::time::advance(Duration::from_secs(3)).await;
        activity.closed();
        assert_eq!(activity.idle_deadline(&s, None), None); // one still open
        activity.closed();
        let quiet = Instant::now();
        assert_eq!(activity.idle_deadline(&s, None), Some(quiet + s.keep_alive));
        tokio::time::advance(Duration::from_secs(1)).await;
        let stop = Instant::now();
        assert_eq!(activity.idle_deadline(&s, Some(stop)), Some(stop + s.drain));
    }

    #[test]
    fn the_header_list_size_follows_the_head_limits() {
        assert_eq!(header_list_size(&Limits::default()), 64 * 1024);
        let small = Limits {
            max_request_line: 100,
            max_fields: 10,
            max_field_size: 100,
        };
        assert_eq!(header_list_size(&small), 16 * 1024);
        let middle = Limits {
            max_request_line: 8190,
            max_fields: 5,
            max_field_size: 4096,
        };
        assert_eq!(header_list_size(&middle), 8190 + 6 * (4096 + 32));
    }
}
