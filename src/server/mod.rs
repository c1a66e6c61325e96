//! The server side: listeners and the accept loop; each accepted connection
//! is served by a protocol engine (`protocols::http1`).
//!
//! Nothing here touches Python. Requests leave through the engine to
//! `exchange::Dispatch` (implemented by `wsgi::dispatch`); the shutdown
//! signal is passed in (`shutdown.rs`), and every task is spawned on a
//! `TaskTracker` so the caller can wait for the drain.

pub mod listener;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::exchange::{Dispatch, LocalAddr};
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
        let (shared, local) = (ctx.http1.clone(), local.clone());
        match accepted {
            Ok(Accepted::Tcp(stream, peer)) => {
                tracker.spawn(async move {
                    http1::conn::serve(stream, Some(peer), local, shared).await;
                    drop(permit)
                });
            }
            Ok(Accepted::Unix(stream)) => {
                tracker.spawn(async move {
                    http1::conn::serve(stream, None, local, shared).await;
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
