//! One run of a server: the I/O thread, the Python threads, the drain.
//!
//! The tokio runtime runs on its own thread (`ferrowsgi-io`), attached to
//! the interpreter but with the GIL released, so that with `--threads 1` it
//! can call the application itself (`wsgi::dispatch`). The thread that called
//! `serve_forever` only waits: every 100 ms it takes the GIL to run Python's
//! signal handlers. Signal handlers therefore never run inside the
//! application: a handler that raises (Ctrl-C, the CLI's SIGTERM handler)
//! starts the graceful stop and its exception propagates once the server
//! has drained; a second one stops without waiting.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use pyo3::prelude::*;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::log::{self, Severity};
use crate::server::listener::Listening;
use crate::server::{self, ServerCtx};
use crate::shutdown::{ShutdownSignal, ShutdownTrigger};
use crate::wsgi::dispatch::Dispatcher;
use crate::wsgi::pool::{Pool, PoolStats};
use crate::wsgi::Gateway;

/// How long, after a second signal (stop without waiting), the I/O thread
/// gets to close its connections before the run returns without it.
const ABORT_GRACE: Duration = Duration::from_millis(300);

/// How often the waiting thread runs Python signal handlers.
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// What a server run needs from its owner.
pub struct RunArgs<'a> {
    /// The WSGI application.
    pub app: &'a Py<PyAny>,
    /// Requests after which the server stops by itself; 0 = never.
    pub max_requests: u64,
    /// Called (no arguments) once the server is ready to serve: sockets
    /// attached, every Python thread up.
    pub ready: Option<Bound<'a, PyAny>>,
    /// The validated options.
    pub config: &'a Arc<ServerConfig>,
    /// The bound listening sockets. The run keeps this reference until its
    /// graceful stop begins, then drops it: when it is the last one (the
    /// owner gave its sockets to the run: `close_on_stop`), the sockets close
    /// at that moment, so connections made from then on are refused (or go
    /// to the processes that still listen, such as the master through a
    /// reload) instead of waiting in a queue nobody accepts from, to be reset
    /// when this process exits.
    pub listeners: Arc<Vec<Listening>>,
    /// Statistics shared with the worker process's watchdog (`busy_seconds`).
    pub stats: &'a Arc<PoolStats>,
}

/// How the drain ended.
#[derive(Debug, Clone, Copy)]
enum Drained {
    /// Every connection finished.
    Done,
    /// `graceful_timeout` passed with this many connections open.
    TimedOut(usize),
    /// A second signal cut it short.
    Aborted,
}

/// Serves until `signal` fires (or a Python signal handler raises), then
/// drains for up to `graceful_timeout`. Returns the handler's exception.
///
/// # Errors
/// An OS error when the runtime, a thread or a listener cannot be set up; the
/// exception a signal handler raised.
pub fn run(
    py: Python<'_>,
    args: RunArgs<'_>,
    trigger: &Arc<ShutdownTrigger>,
    signal: ShutdownSignal,
) -> PyResult<()> {
    let config = args.config;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let gateway = Arc::new(Gateway::new(py, args.app.clone_ref(py), config)?);
    let (queue_tx, queue_rx) = crossbeam_channel::unbounded();
    let pending = Arc::new(AtomicUsize::new(0));
    let pool = Pool::start(
        py,
        args.stats.clone(),
        gateway.clone(),
        queue_rx,
        pending.clone(),
    )?;
    let mounts = gateway.mounts().to_vec();
    // With --max-queue the I/O thread must stay free to answer 503s.
    let inline = (config.threads == 1 && config.max_queue == 0).then_some(gateway);
    // Counted from now: the server may have served before (`handle_request`).
    let limit = (args.max_requests > 0)
        .then(|| (args.stats.requests() + args.max_requests, trigger.clone()));
    let dispatcher = Dispatcher::new(queue_tx, inline, args.stats.clone(), pending, limit)
        .with_max_queue(config.max_queue);
    let tracker = TaskTracker::new();
    {
        let _entered = rt.enter();
        let listeners = args
            .listeners
            .iter()
            .map(|l| Ok((l.socket.to_tokio()?, Arc::new(l.local.clone()), l.protocol)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let ctx = Arc::new(ServerCtx::new(
            config,
            &mounts,
            Arc::new(dispatcher),
            signal.clone(),
        ));
        server::spawn(listeners, ctx, &tracker);
    }
    let abort = Arc::new(Notify::new());
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let io = {
        let (abort, timeout) = (abort.clone(), config.graceful_timeout);
        let sockets = args.listeners;
        std::thread::Builder::new()
            .name("ferrowsgi-io".to_owned())
            .spawn(move || {
                let drained = Python::attach(|py| {
                    py.detach(|| serve_and_drain(rt, tracker, signal, sockets, &abort, timeout))
                });
                let _ = done_tx.send(drained);
            })?
    };
    let refused = args.ready.and_then(|ready| ready.call0().err());
    if refused.is_some() {
        trigger.trigger();
    }
    let (drained, interrupted) = wait(py, &done, trigger, &abort, refused);
    if io.is_finished() || !matches!(drained, Drained::Aborted) {
        let _ = py.detach(|| io.join());
    } else {
        // Aborted while the I/O thread runs an application call inline
        // (`--threads 1`): it cannot see the abort until the call returns,
        // and the caller asked not to wait. The thread is left to end alone.
        log::emit(
            Severity::Warning,
            "an application call is still running on the I/O thread",
        );
    }
    report(drained, config.graceful_timeout);
    let grace = match drained {
        Drained::Done => Duration::from_secs(5),
        _ => Duration::from_millis(100),
    };
    let busy = pool.join(py, Instant::now() + grace);
    if busy > 0 {
        log::emit(
            Severity::Warning,
            &format!("{busy} application call(s) still running"),
        );
    }
    interrupted.map_or(Ok(()), Err)
}

/// The I/O thread: serves until the shutdown signal, lets go of `sockets`
/// (see [`RunArgs::listeners`]; the accept loops drop their own copies on the
/// same signal), then lets connections finish for up to `timeout` (or until
/// `abort`), then drops the rest.
fn serve_and_drain(
    rt: Runtime,
    tracker: TaskTracker,
    mut signal: ShutdownSignal,
    sockets: Arc<Vec<Listening>>,
    abort: &Notify,
    timeout: Duration,
) -> Drained {
    let drained = rt.block_on(async {
        signal.recv().await;
        drop(sockets);
        tracker.close();
        tokio::select! {
            _ = tracker.wait() => Drained::Done,
            _ = tokio::time::sleep(timeout) => Drained::TimedOut(tracker.len()),
            _ = abort.notified() => Drained::Aborted,
        }
    });
    rt.shutdown_timeout(Duration::ZERO);
    drained
}

/// The calling thread: waits for the I/O thread, running Python signal
/// handlers meanwhile. Returns how the drain ended and the exception of the
/// first handler that raised (or `interrupted`, the ready callback's). After
/// a second handler raised (abort), waits at most [`ABORT_GRACE`] more.
fn wait(
    py: Python<'_>,
    done: &crossbeam_channel::Receiver<Drained>,
    trigger: &ShutdownTrigger,
    abort: &Notify,
    mut interrupted: Option<PyErr>,
) -> (Drained, Option<PyErr>) {
    let mut aborted: Option<Instant> = None;
    loop {
        match py.detach(|| done.recv_timeout(SIGNAL_CHECK)) {
            Ok(drained) => return (drained, interrupted),
            Err(RecvTimeoutError::Disconnected) => return (Drained::Aborted, interrupted),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if aborted.is_some_and(|at| at.elapsed() >= ABORT_GRACE) {
            return (Drained::Aborted, interrupted);
        }
        if let Err(e) = py.check_signals() {
            if interrupted.is_none() {
                interrupted = Some(e);
                trigger.trigger();
            } else {
                log::emit(Severity::Warning, &format!("stopping without waiting: {e}"));
                abort.notify_one();
                aborted.get_or_insert_with(Instant::now);
            }
        }
    }
}

fn report(drained: Drained, timeout: Duration) {
    if let Drained::TimedOut(open) = drained {
        log::emit(
            Severity::Warning,
            &format!("graceful timeout ({timeout:?}) reached; closing {open} connection(s)"),
        );
    }
}
