//! The server side: listeners and the accept loop; each accepted connection
//! is served by a protocol engine (`protocols::http1`).
//!
//! Nothing here touches Python. Requests leave through the engine to
//! `exchange::Dispatch` (implemented by `wsgi::dispatch`); the shutdown
//! signal is passed in (`shutdown.rs`), and every task is spawned on a
//! `TaskTracker` so the caller can wait for the drain.

pub mod listener;
pub mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::{ServerConfig, TrustList};
use crate::exchange::{Dispatch, LocalAddr};
use crate::middleware::forwarded::Forwarded;
use crate::protocols::http1::{self, conn::Shared, Settings};
use crate::server::listener::{Accepted, Listener};
use crate::shutdown::ShutdownSignal;

/// What every connection of one server run shares.
pub struct ServerCtx {
    /// What the HTTP/1.1 engine needs: settings, dispatch, the stop signal.
    pub http1: Arc<Shared>,
    /// One permit per open connection (`max_connections`): beyond it, new
    /// connections wait in the listen backlog.
    pub connections: Arc<Semaphore>,
    /// With `--proxy-protocol`: the peers allowed to send the header.
    pub proxy_allow_from: Option<TrustList>,
    /// Time to receive a PROXY header (the header timeout).
    pub header_timeout: Duration,
}

/// The least time an idle connection gets, on a graceful stop, to send a
/// request (seconds): a client that connected to a worker about to stop (a
/// reload, `--max-requests`) has done nothing wrong, even with keep-alive off.
const MIN_DRAIN: Duration = Duration::from_secs(1);

impl ServerCtx {
    /// Builds the shared context from the options.
    pub fn new(
        config: &ServerConfig,
        dispatch: Arc<dyn Dispatch>,
        shutdown: ShutdownSignal,
    ) -> Self {
        let dispatch: Arc<dyn Dispatch> =
            Arc::new(Forwarded::new(dispatch, config.forwarded_allow_ips.clone()));
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
        };
        ServerCtx {
            http1: Arc::new(Shared {
                settings: Arc::new(settings),
                dispatch,
                shutdown,
            }),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            proxy_allow_from: config
                .proxy_protocol
                .then(|| config.proxy_allow_from.clone()),
            header_timeout: config.header_timeout,
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
    listeners: Vec<(Listener, Arc<LocalAddr>)>,
    ctx: Arc<ServerCtx>,
    tracker: &TaskTracker,
) {
    for (listener, local) in listeners {
        let task = accept_loop(listener, local, ctx.clone(), tracker.clone());
        tracker.spawn(task);
    }
}

async fn accept_loop(
    listener: Listener,
    local: Arc<LocalAddr>,
    ctx: Arc<ServerCtx>,
    tracker: TaskTracker,
) {
    let mut shutdown = ctx.http1.shutdown.clone();
    loop {
        // biased: once stopping, never accept again, even if connections
        // are waiting (the I/O thread may have been busy in the application).
        let permit = tokio::select! {
            biased;
            _ = shutdown.recv() => return,
            permit = ctx.connections.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.recv() => return,
            accepted = listener.accept() => accepted,
        };
        let (ctx, local) = (ctx.clone(), local.clone());
        match accepted {
            Ok(Accepted::Tcp(mut stream, peer)) => {
                tracker.spawn(async move {
                    if let Some(peer) = ctx.proxy_header(&mut stream, Some(peer)).await {
                        http1::conn::serve(stream, peer, local, ctx.http1.clone()).await;
                    }
                    drop(permit)
                });
            }
            Ok(Accepted::Unix(mut stream)) => {
                tracker.spawn(async move {
                    if let Some(peer) = ctx.proxy_header(&mut stream, None).await {
                        http1::conn::serve(stream, peer, local, ctx.http1.clone()).await;
                    }
                    drop(permit)
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning; the
                // connections already open keep being served.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
