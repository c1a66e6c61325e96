//! The server side: listeners, the accept loop, one task per connection.
//!
//! Nothing here touches Python. Requests leave through [`ServerCtx::dispatch`]
//! (implemented by `wsgi::dispatch`); the shutdown
//! signal is passed in (`shutdown.rs`), and every task is spawned on a
//! `TaskTracker` so the caller can wait for the drain.

pub mod body;
pub mod connection;
pub mod guarded_io;
pub mod listener;
pub mod response_body;

use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::exchange::Dispatch;
use crate::server::listener::{Accepted, Listener, LocalAddr};
use crate::shutdown::ShutdownSignal;

/// What every connection of one server run shares.
pub struct ServerCtx {
    /// The validated options.
    pub config: Arc<ServerConfig>,
    /// Where fully-read requests go: to the application.
    pub dispatch: Arc<dyn Dispatch>,
    /// hyper's HTTP/1.1 settings, built once.
    pub http1: http1::Builder,
    /// One permit per open connection (`max_connections`): beyond it, new
    /// connections wait in the listen backlog.
    pub connections: Arc<Semaphore>,
}

impl ServerCtx {
    /// Builds the shared context and hyper's HTTP/1.1 settings.
    pub fn new(config: Arc<ServerConfig>, dispatch: Arc<dyn Dispatch>) -> Self {
        let mut http1 = http1::Builder::new();
        // The header timeout is ours (connection.rs): hyper's own timer also
        // runs while a keep-alive connection waits, which would tie the two.
        http1
            .header_read_timeout(None)
            .keep_alive(!config.keep_alive.is_zero())
            .title_case_headers(true)
            .half_close(false)
            .max_buf_size(guard_head_size(&config).max(1 << 20));
        // The guard enforces the header limits; hyper must not refuse what
        // the guard let through. hyper's default is 100 fields, and setting
        // any limit makes it initialise its header arrays per request.
        if config.limits.max_fields > HYPER_DEFAULT_MAX_HEADERS {
            http1.max_headers(config.limits.max_fields);
        }
        let connections = Arc::new(Semaphore::new(config.max_connections));
        ServerCtx {
            config,
            dispatch,
            http1,
            connections,
        }
    }
}

/// hyper's own limit on request header fields when none is set.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The largest request head the guard accepts, bytes.
fn guard_head_size(config: &ServerConfig) -> usize {
    let l = config.limits;
    l.max_request_line + 2 + (l.max_fields + 1) * (l.max_field_size + 2)
}

/// Spawns one accept loop per listener on `tracker`; they return on shutdown.
pub fn spawn(
    listeners: Vec<(Listener, Arc<LocalAddr>)>,
    ctx: Arc<ServerCtx>,
    shutdown: ShutdownSignal,
    tracker: &TaskTracker,
) {
    for (listener, local) in listeners {
        let task = accept_loop(
            listener,
            local,
            ctx.clone(),
            shutdown.clone(),
            tracker.clone(),
        );
        tracker.spawn(task);
    }
}

async fn accept_loop(
    listener: Listener,
    local: Arc<LocalAddr>,
    ctx: Arc<ServerCtx>,
    mut shutdown: ShutdownSignal,
    tracker: TaskTracker,
) {
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
        let (ctx, local, stop) = (ctx.clone(), local.clone(), shutdown.clone());
        match accepted {
            Ok(Accepted::Tcp(stream, peer)) => {
                let serve = connection::serve(stream, Some(peer), local, ctx, stop);
                tracker.spawn(async move {
                    serve.await;
                    drop(permit)
                });
            }
            Ok(Accepted::Unix(stream)) => {
                let serve = connection::serve(stream, None, local, ctx, stop);
                tracker.spawn(async move {
                    serve.await;
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
