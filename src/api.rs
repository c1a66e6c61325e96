//! The PyO3 boundary: `Server`, `init_logging`, `log` (see `_ferrowsgi.pyi`).
//!
//! Errors become Python exceptions here and nowhere else. `serve_forever`
//! runs the server (`runner.rs`): the calling thread waits with the GIL
//! released and every 100 ms runs Python's signal handlers, so Ctrl-C and the
//! CLI's SIGTERM handler work as in any Python server: the handler raises,
//! the server drains gracefully, and the exception propagates.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::config::{seconds, BindAddr, ConfigError, ServerConfig};
use crate::exchange::LocalAddr;
use crate::log::{self, Severity};
use crate::runner::{self, RunArgs};
use crate::server::listener::StdListener;
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
    app: Py<PyAny>,
    config: Arc<ServerConfig>,
    listeners: Vec<(StdListener, LocalAddr)>,
    stats: Arc<PoolStats>,
    state: Mutex<RunState>,
    stopped: Condvar,
}

#[pymethods]
impl Server {
    #[new]
    fn new(app: Bound<'_, PyAny>, config: &Bound<'_, PyDict>) -> PyResult<Self> {
        if !app.is_callable() {
            return Err(PyTypeError::new_err(
                "the WSGI application must be callable",
            ));
        }
        let config = parse_config(config)?;
        let listeners = config
            .binds
            .iter()
            .map(|addr| {
                let listener = StdListener::bind(addr, config.backlog)
                    .map_err(|e| PyOSError::new_err(format!("cannot bind {addr}: {e}")))?;
                let local = listener.local_addr()?;
                Ok((listener, local))
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Server {
            app: app.unbind(),
            stats: Arc::new(PoolStats::new(config.threads)),
            config: Arc::new(config),
            listeners,
            state: Mutex::new(RunState::default()),
            stopped: Condvar::new(),
        })
    }

    #[getter]
    fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for (_, local) in &self.listeners {
            match local {
                LocalAddr::Tcp(addr) => list.append((addr.ip().to_string(), addr.port()))?,
                LocalAddr::Unix(path) => list.append(path.to_string_lossy().into_owned())?,
            }
        }
        Ok(list)
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

    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
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
        let result = self.run(py, &trigger, signal);
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

    fn run(
        &self,
        py: Python<'_>,
        trigger: &ShutdownTrigger,
        signal: ShutdownSignal,
    ) -> PyResult<()> {
        let args = RunArgs {
            app: &self.app,
            config: &self.config,
            listeners: &self.listeners,
            stats: &self.stats,
        };
        runner::run(py, args, trigger, signal)
    }
}

fn parse_config(dict: &Bound<'_, PyDict>) -> PyResult<ServerConfig> {
    let mut config = ServerConfig::default();
    for (key, value) in dict.iter() {
        let key: String = key.extract()?;
        apply_option(&mut config, &key, &value)?;
    }
    config.validate().map_err(config_error)?;
    Ok(config)
}

fn apply_option(config: &mut ServerConfig, key: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match key {
        "binds" => {
            let binds: Vec<String> = value.extract()?;
            config.binds = binds
                .iter()
                .map(|b| BindAddr::parse(b))
                .collect::<Result<_, _>>()
                .map_err(config_error)?;
        }
        "threads" => config.threads = value.extract()?,
        "keep_alive" => config.keep_alive = seconds(key, value.extract()?).map_err(config_error)?,
        "header_timeout" => {
            config.header_timeout = seconds(key, value.extract()?).map_err(config_error)?
        }
        "body_timeout" => {
            config.body_timeout = seconds(key, value.extract()?).map_err(config_error)?
        }
        "max_connections" => config.max_connections = value.extract()?,
        "limit_request_line" => config.limits.max_request_line = value.extract()?,
        "limit_request_fields" => config.limits.max_fields = value.extract()?,
        "limit_request_field_size" => config.limits.max_field_size = value.extract()?,
        "graceful_timeout" => {
            config.graceful_timeout = seconds(key, value.extract()?).map_err(config_error)?
        }
        "max_body_size" => config.max_body_size = value.extract()?,
        "body_buffer_size" => config.body_buffer_size = value.extract()?,
        "backlog" => config.backlog = value.extract()?,
        "multiprocess" => config.multiprocess = value.extract()?,
        "url_scheme" => config.url_scheme = value.extract()?,
        "script_name" => config.script_name = value.extract()?,
        _ => {
            return Err(PyValueError::new_err(format!(
                "unknown server option {key:?}"
            )))
        }
    }
    Ok(())
}

fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.0)
}

/// Configures the error-log level and the access log (see the stub).
#[pyfunction]
#[pyo3(signature = (level="info", access_log=None))]
pub fn init_logging(level: &str, access_log: Option<&str>) -> PyResult<()> {
    let severity = Severity::parse(level)
        .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level:?}")))?;
    log::init(severity, access_log)
        .map_err(|e| PyOSError::new_err(format!("cannot open access log {access_log:?}: {e}")))
}

/// Writes one error-log line at `level`.
#[pyfunction(name = "log")]
pub fn log_message(level: &str, message: &str) {
    log::emit(Severity::parse(level).unwrap_or(Severity::Info), message);
}
