//! The server side: listeners and the accept loop; each accepted connection
//! is served by the protocol engine of its listener (`protocols`).
//!
//! Nothing here touches Python. Requests leave through the engine to
//! `exchange::Dispatch` (implemented by `wsgi::dispatch`); the shutdown
//! signal is passed in (`shutdown.rs`), and every task is spawned on a
//! `TaskTracker` so the caller can wait for the drain.

pub mod listener;
pub mod proxy;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{Protocol, ServerConfig, TrustList};
use crate::exchange::{Connection, Dispatch, LocalAddr};
use crate::protocols::http1::conn::Transport;
use crate::protocols::{self, http1, HttpVersions, Settings, Shared};
use crate::server::listener::{Accepted, Listener};
use crate::shutdown::ShutdownSignal;

/// What every connection of one server run shares.
pub struct ServerCtx {
    /// What every engine needs: settings, dispatch, the stop signal.
    pub shared: Arc<Shared>,
    /// One permit per open connection (`max_connections`): beyond it, new
    /// connections wait in the listen backlog.
    pub connections: Arc<Semaphore>,
    /// With `--proxy-protocol`: the peers allowed to send the header.
    pub proxy_allow_from: Option<TrustList>,
    /// Time to receive a PROXY header, or to finish a TLS handshake (the
    /// header timeout).
    pub header_timeout: Duration,
    /// Peers allowed on uwsgi and FastCGI listeners (`--proxy-allow-from`):
    /// the variables they send are trusted input.
    pub gateway_peers: TrustList,
    /// With `--certfile`: the TLS handshakes of HTTP listeners.
    pub tls: Option<tls::Acceptor>,
}

/// The least time an idle connection gets, on a graceful stop, to send a
/// request (seconds): a client that connected to a worker about to stop (a
/// reload, `--max-requests`) has done nothing wrong, even with keep-alive off.
const MIN_DRAIN: Duration = Duration::from_secs(1);

impl ServerCtx {
    /// Builds the shared context from the options; `mounts`: the URL
    /// prefixes of the applications mounted side by side, in the gateway's
    /// order (empty: one application).
    pub fn new(
        config: &ServerConfig,
        mounts: &[String],
        dispatch: Arc<dyn Dispatch>,
        shutdown: ShutdownSignal,
    ) -> Self {
        let dispatch = crate::middleware::stack(config, mounts, dispatch);
        let settings = Settings {
            limits: config.limits,
            keep_alive: config.keep_alive,
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            max_body_size: config.max_body_size,
            body_buffer_size: config.body_buffer_size,
            drain: config
                .keep_alive
                .max(MIN_DRAIN)
                .min(config.graceful_timeout),
            http: config.http,
        };
        ServerCtx {
            shared: Arc::new(Shared {
                settings: Arc::new(settings),
                dispatch,
                shutdown,
            }),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            proxy_allow_from: config
                .proxy_protocol
                .then(|| config.proxy_allow_from.clone()),
            header_timeout: config.header_timeout,
            gateway_peers: config.proxy_allow_from.clone(),
            tls: config
                .tls
                .as_ref()
                .map(|tls| tls::Acceptor::new(tls, config.http)),
        }
    }
}

impl ServerCtx {
    /// With `--proxy-protocol`, reads the PROXY header and returns the
    /// client it names (or `peer` for a `LOCAL`/`UNKNOWN` header); `None`
    /// when the connection must be closed (a peer not allowed to send one, a
    /// missing, malformed or late header). Without it, `peer` as it is.
    async fn proxy_header<S>(
        &self,
        stream: &mut S,
        peer: Option<SocketAddr>,
    ) -> Option<Option<SocketAddr>>
    where
        S: tokio::io::AsyncRead + std::os::fd::AsRawFd + Unpin + proxy::Readable,
    {
        let Some(allowed) = &self.proxy_allow_from else {
            return Some(peer);
        };
        if !allowed.allows(peer.map(|p| p.ip())) {
            tracing::debug!("PROXY header refused from {peer:?}: not in --proxy-allow-from");
            return None;
        }
        match proxy::read_header(stream, self.header_timeout).await {
            Ok(named) => Some(named.or(peer)),
            Err(e) => {
                tracing::debug!("connection from {peer:?} closed: PROXY header: {e:?}");
                None
            }
        }
    }
}

/// Spawns one accept loop per listener on `tracker`; they return on shutdown.
pub fn spawn(
    listeners: Vec<(Listener, Arc<LocalAddr>, Protocol)>,
    ctx: Arc<ServerCtx>,
    tracker: &TaskTracker,
) {
    for (listener, local, protocol) in listeners {
        let task = accept_loop(listener, local, protocol, ctx.clone(), tracker.clone());
        tracker.spawn(task);
    }
}

/// Serves one connection with the engine of `protocol`, after the PROXY
/// header when one is expected.
async fn serve<S>(
    mut stream: S,
    peer: Option<SocketAddr>,
    local: Arc<LocalAddr>,
    protocol: Protocol,
    ctx: Arc<ServerCtx>,
) where
    S: Transport + AsyncRead + std::os::fd::AsRawFd + std::os::fd::AsFd + proxy::Readable,
{
    let Some(peer) = ctx.proxy_header(&mut stream, peer).await else {
        return;
    };
    if protocol != Protocol::Http && !ctx.gateway_peers.allows(peer.map(|p| p.ip())) {
        tracing::warn!(
            "{}: connection from {} refused: not in --proxy-allow-from",
            protocol.prefix().trim_end_matches("://"),
            peer.map_or_else(|| "a unix socket".to_owned(), |p| p.to_string())
        );
        return;
    }
    let conn = Connection::plain(peer, local);
    let shared = ctx.shared.clone();
    match protocol {
        // Boxed: a TLS connection's state is large, and would otherwise
        // grow every plain connection's future too.
        Protocol::Http if ctx.tls.is_some() => Box::pin(serve_tls(stream, conn, &ctx)).await,
        Protocol::Http => match speaks_h2(&stream, &shared).await {
            // Boxed: an HTTP/2 connection's state is large, and would
            // otherwise grow every HTTP/1.1 connection's future too (c10k).
            Some(true) => Box::pin(protocols::h2::serve(stream, conn, shared)).await,
            Some(false) => http1::conn::serve(stream, conn, shared).await,
            None => {}
        },
        Protocol::Uwsgi => protocols::uwsgi::serve(stream, conn, shared).await,
        Protocol::FastCgi => protocols::fastcgi::serve(stream, conn, shared).await,
    }
}

/// Whether a plain HTTP connection is served as HTTP/2 (`--http`): with
/// `auto`, when it starts with the client preface (h2c with prior knowledge,
/// RFC 9113 §3.3), peeked at without taking a byte. Bytes that stop
/// matching the preface decide for HTTP/1.1 at once; only a proper prefix of
/// it waits for more. `None`: the client left, or sent nothing within the
/// header timeout (or the drain period, once stopping): close.
async fn speaks_h2<S: proxy::Readable>(stream: &S, shared: &Shared) -> Option<bool> {
    match shared.settings.http {
        HttpVersions::Http1 => return Some(false),
        HttpVersions::Http2 => return Some(true),
        HttpVersions::Auto => {}
    }
    let settings = &shared.settings;
    let mut deadline = tokio::time::Instant::now() + settings.header_timeout;
    let stop = shared.shutdown.stopped();
    tokio::pin!(stop);
    let mut stopping = false;
    let mut start = [0u8; protocols::h2::PREFACE.len()];
    loop {
        if !stopping && shared.shutdown.is_triggered() {
            stopping = true;
            deadline = deadline.min(tokio::time::Instant::now() + settings.drain);
        }
        let peeked = tokio::select! {
            ready = stream.readable_again() => ready.and_then(|()| stream.try_peek(&mut start)),
            () = tokio::time::sleep_until(deadline) => return None,
            () = stop.as_mut(), if !stopping => continue,
        };
        let n = match peeked {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        };
        match protocols::h2::preface_verdict(&start[..n]) {
            Some(h2) => return Some(h2),
            // Part of the preface: the bytes stay queued, so readiness
            // would not wait; look again shortly.
            None => tokio::time::sleep(PREFACE_RETRY).await,
        }
    }
}

/// How long to wait before peeking again at a connection that sent part of
/// the HTTP/2 preface (a client split it; rare).
const PREFACE_RETRY: Duration = Duration::from_millis(5);

/// Serves one connection of an HTTP listener over TLS: the handshake
/// (within the header timeout; a failed one closes the connection), then
/// HTTP/2 when ALPN chose `h2` (RFC 9113 §3.2), else our HTTP/1.1 engine.
/// Each request's environ gets `wsgi.url_scheme` `https`, `HTTPS=on` and,
/// with a verified client certificate, `SSL_CLIENT_S_DN`.
async fn serve_tls<S>(stream: S, mut conn: Connection, ctx: &ServerCtx)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let Some(acceptor) = &ctx.tls else { return };
    let Some(accepted) = acceptor.accept(stream, ctx.header_timeout, conn.peer).await else {
        return;
    };
    conn.scheme = Some("https");
    conn.vars = Some(accepted.vars);
    let shared = ctx.shared.clone();
    if accepted.h2 {
        protocols::h2::serve(accepted.stream, conn, shared).await;
    } else {
        http1::conn::serve(tls::TlsTransport::new(accepted.stream), conn, shared).await;
    }
}

/// Accepts connections until the stop, then serves the ones already queued
/// (see [`Listener::take_queued`]) and lets the socket go.
async fn accept_loop(
    listener: Listener,
    local: Arc<LocalAddr>,
    protocol: Protocol,
    ctx: Arc<ServerCtx>,
    tracker: TaskTracker,
) {
    let mut shutdown = ctx.shared.shutdown.clone();
    loop {
        // biased: once stopping, never wait for a connection again, even if
        // the I/O thread was busy in the application meanwhile.
        let permit = tokio::select! {
            biased;
            _ = shutdown.recv() => break,
            permit = ctx.connections.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.recv() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok(accepted) => spawn_serve(accepted, Some(permit), &local, protocol, &ctx, &tracker),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the
                // connections already open keep being served.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Stopping: served under the drain's rules (answered with `Connection:
    // close`), beyond --max-connections if need be, rather than reset; unless
    // retiring, when the next worker takes them from the same socket.
    if shutdown.is_retiring() {
        return;
    }
    for accepted in listener.take_queued() {
        spawn_serve(accepted, None, &local, protocol, &ctx, &tracker);
    }
}

/// Serves an accepted connection on its own task; `permit` (its place under
/// --max-connections) is given back when it closes.
fn spawn_serve(
    accepted: Accepted,
    permit: Option<OwnedSemaphorePermit>,
    local: &Arc<LocalAddr>,
    protocol: Protocol,
    ctx: &Arc<ServerCtx>,
    tracker: &TaskTracker,
) {
    let (ctx, local) = (ctx.clone(), local.clone());
    crate::metrics::record_accepted();
    match accepted {
        Accepted::Tcp(stream, peer) => tracker.spawn(async move {
            serve(stream, Some(peer), local, protocol, ctx).await;
            crate::metrics::record_closed();
            drop(permit)
        }),
        Accepted::Unix(stream) => tracker.spawn(async move {
            serve(stream, None, local, protocol, ctx).await;
            crate::metrics::record_closed();
            drop(permit)
        }),
    };
}
