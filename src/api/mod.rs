//! The PyO3 boundary (the contract is `_ferrowsgi.pyi`): `Server` here, the
//! options dict in [`options`], addresses in [`address`], logs in [`logging`].
//!
//! Errors become Python exceptions here and nowhere else. `serve_forever`
//! runs the server (`runner.rs`): the calling thread waits with the GIL
//! released and every 100 ms runs Python's signal handlers, so Ctrl-C and the
//! CLI's SIGTERM handler work as in any Python server: the handler raises,
//! the server drains gracefully, and the exception propagates.

pub mod address;
pub mod logging;
pub mod metrics;
pub mod options;

use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::config::ServerConfig;
use crate::exchange::LocalAddr;
use crate::log::{self, Severity};
use crate::runner::{self, RunArgs};
use crate::server::listener::{BindOptions, Listening};
use crate::shutdown::{self, ShutdownSignal, ShutdownTrigger};
use crate::wsgi::pool::PoolStats;

#[derive(Default)]
struct RunState {
    /// Present while `serve_forever` runs.
    trigger: Option<Arc<ShutdownTrigger>>,
    /// The thread inside `serve_forever`.
    thread: Option<ThreadId>,
}

/// A bound WSGI server (see the stub for the Python contract).
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
pub struct Server {
    /// The application; `set_app` replaces it for the next run.
    app: Mutex<Py<PyAny>>,
    config: Arc<ServerConfig>,
    /// The listening sockets; given away (left empty) to a run with
    /// `close_on_stop`, which closes them when its graceful stop begins.
    listeners: Mutex<Arc<Vec<Listening>>>,
    /// Where they are bound (kept once they are closed).
    locals: Vec<LocalAddr>,
    /// The `/metrics` listener (`--metrics-bind`), if any.
    metrics: Option<Listening>,
    /// How each is shown in the "Listening at" line (`Listening::url`).
    urls: Vec<String>,
    stats: Arc<PoolStats>,
    state: Mutex<RunState>,
    stopped: Condvar,
}

#[pymethods]
impl Server {
    #[new]
    fn new(app: Bound<'_, PyAny>, config: &Bound<'_, PyDict>) -> PyResult<Self> {
        check_callable(&app)?;
        let config = options::parse(config)?;
        log::emit(
            Severity::Debug,
            &format!("server settings: {}", config.describe()),
        );
        let options = BindOptions {
            backlog: config.backlog,
            reuse_port: false,
            unix_mode: config.unix_socket_mode,
        };
        let listeners = config
            .binds
            .iter()
            .map(|bind| Listening::bind(bind, &options).map_err(|e| address::bind_error(bind, &e)))
            .collect::<PyResult<Vec<_>>>()?;
        let metrics = config
            .metrics_bind
            .as_ref()
            .map(|bind| Listening::bind(bind, &options).map_err(|e| address::bind_error(bind, &e)))
            .transpose()?;
        Ok(Server {
            metrics,
            app: Mutex::new(app.unbind()),
            stats: Arc::new(PoolStats::new(config.threads)),
            locals: listeners.iter().map(|l| l.local.clone()).collect(),
            urls: listeners
                .iter()
                .map(|l| l.url(config.tls.is_some()))
                .collect(),
            listeners: Mutex::new(Arc::new(listeners)),
            config: Arc::new(config),
            state: Mutex::new(RunState::default()),
            stopped: Condvar::new(),
        })
    }

    #[getter]
    fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for local in &self.locals {
            list.append(local_address(py, local)?)?;
        }
        Ok(list)
    }

    /// The listeners as the "Listening at" line shows them, in `bind` order:
    /// `http://127.0.0.1:8000`, `https://…` with TLS, `unix:/run/app.sock`,
    /// `uwsgi://127.0.0.1:3031`, `fcgi://unix:/run/app.sock`.
    #[getter]
    fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// Where `/metrics` is served (`http://HOST:PORT/metrics`), or None.
    #[getter]
    fn metrics_url(&self) -> Option<String> {
        self.metrics
            .as_ref()
            .map(|l| format!("{}/metrics", l.url(false)))
    }

    /// Replaces the application for the next `serve_forever` (wsgiref's
    /// `set_app`).
    fn set_app(&self, app: Bound<'_, PyAny>) -> PyResult<()> {
        check_callable(&app)?;
        *self.app.lock().unwrap_or_else(|e| e.into_inner()) = app.unbind();
        Ok(())
    }

    /// The file descriptor of the first listening socket (still owned here);
    /// -1 once a run with `close_on_stop` took the sockets.
    fn fileno(&self) -> i32 {
        self.sockets().first().map_or(-1, |l| l.socket.as_raw_fd())
    }

    /// Requests handed to the application since the server was made.
    #[getter]
    fn requests_served(&self) -> u64 {
        self.stats.requests()
    }

    /// Seconds the oldest running application call has been running (0.0
    /// when none is running).
    fn busy_seconds(&self) -> f64 {
        self.stats.longest_call().as_secs_f64()
    }

    #[pyo3(signature = (ready=None, max_requests=None, close_on_stop=false))]
    fn serve_forever(
        &self,
        py: Python<'_>,
        ready: Option<Bound<'_, PyAny>>,
        max_requests: Option<u64>,
        close_on_stop: bool,
    ) -> PyResult<()> {
        let (trigger, signal) = shutdown::channel();
        let trigger = Arc::new(trigger);
        {
            let mut state = self.state();
            if state.trigger.is_some() {
                return Err(PyRuntimeError::new_err(
                    "serve_forever() is already running",
                ));
            }
            state.trigger = Some(trigger.clone());
            state.thread = Some(std::thread::current().id());
        }
        let max_requests = max_requests.unwrap_or(self.config.max_requests);
        let result = self.run(py, &trigger, signal, (ready, max_requests, close_on_stop));
        *self.state() = RunState::default();
        self.stopped.notify_all();
        result
    }

    fn shutdown(&self, py: Python<'_>) {
        {
            let state = self.state();
            let Some(trigger) = state.trigger.as_ref() else {
                return;
            };
            trigger.trigger();
            if state.thread == Some(std::thread::current().id()) {
                return; // called from a signal handler inside serve_forever
            }
        }
        py.detach(|| {
            let state = self.state();
            let _unused = self
                .stopped
                .wait_while(state, |s| s.trigger.is_some())
                .unwrap_or_else(|e| e.into_inner());
        });
    }
}

impl Server {
    fn state(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sockets(&self) -> MutexGuard<'_, Arc<Vec<Listening>>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The sockets for one run: shared with this server, or given to the run
    /// (`close_on_stop`: this server keeps none).
    ///
    /// # Errors
    /// `RuntimeError` when an earlier run with `close_on_stop` took them.
    fn sockets_for_run(&self, close_on_stop: bool) -> PyResult<Arc<Vec<Listening>>> {
        let mut sockets = self.sockets();
        if sockets.is_empty() && !self.locals.is_empty() {
            return Err(PyRuntimeError::new_err(
                "the listening sockets were closed by an earlier serve_forever(close_on_stop=True)",
            ));
        }
        Ok(if close_on_stop {
            std::mem::take(&mut *sockets)
        } else {
            sockets.clone()
        })
    }

    fn run(
        &self,
        py: Python<'_>,
        trigger: &Arc<ShutdownTrigger>,
        signal: ShutdownSignal,
        (ready, max_requests, close_on_stop): (Option<Bound<'_, PyAny>>, u64, bool),
    ) -> PyResult<()> {
        let app = self
            .app
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone_ref(py);
        let args = RunArgs {
            app: &app,
            ready,
            max_requests,
            config: &self.config,
            listeners: self.sockets_for_run(close_on_stop)?,
            stats: &self.stats,
        };
        let endpoint = self.metrics_endpoint()?;
        let result = runner::run(py, args, trigger, signal);
        if let Some(endpoint) = endpoint {
            py.detach(|| endpoint.stop());
        }
        result
    }

    /// With `--metrics-bind`: the endpoint for one run, this process
    /// counting in its own slot (a one-process server maps a one-slot
    /// segment; a worker has claimed the master's before).
    fn metrics_endpoint(&self) -> PyResult<Option<crate::metrics::endpoint::Endpoint>> {
        let Some(listening) = &self.metrics else {
            return Ok(None);
        };
        if !crate::metrics::enabled() {
            crate::metrics::open(1).map_err(|e| os_error(&e, "metrics segment"))?;
            crate::metrics::claim(1);
        }
        let endpoint = crate::metrics::endpoint::Endpoint::start(&listening.socket)
            .map_err(|e| os_error(&e, "--metrics-bind"))?;
        Ok(Some(endpoint))
    }
}

fn check_callable(app: &Bound<'_, PyAny>) -> PyResult<()> {
    if app.is_callable() {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!(
            "the WSGI application must be callable, got {}",
            app.get_type().name()?
        )))
    }
}

/// `OSError(errno, strerror, filename)` for an I/O error about `filename`
/// (Python maps the errno to its subclass: `PermissionError`...).
pub fn os_error(e: &std::io::Error, filename: &str) -> PyErr {
    let reason = e.to_string();
    let reason = reason.split(" (os error").next().unwrap_or(&reason);
    pyo3::exceptions::PyOSError::new_err((
        e.raw_os_error().unwrap_or(0),
        reason.to_owned(),
        filename.to_owned(),
    ))
}

/// A bound address as Python sees it: `(host, port)` for TCP, the path for a
/// unix socket.
pub fn local_address(py: Python<'_>, local: &LocalAddr) -> PyResult<Py<PyAny>> {
    Ok(match local {
        LocalAddr::Tcp(addr) => (addr.ip().to_string(), addr.port())
            .into_pyobject(py)?
            .into_any()
            .unbind(),
        LocalAddr::Unix(path) => path
            .to_string_lossy()
            .into_owned()
            .into_pyobject(py)?
            .into_any()
            .unbind(),
    })
}
