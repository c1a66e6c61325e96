//! ferrowsgi: a production WSGI server (PEP 3333) in Rust.
//!
//! # Layout
//!
//! - [`api`]: the PyO3 boundary (`Server`, the options dict, `parse_bind`
//!   and `bind_socket`, the logs); the contract is
//!   `python/ferrowsgi/_ferrowsgi.pyi`.
//! - [`runner`]: one run of a server: the I/O thread, the Python threads,
//!   signals and the drain.
//! - [`config`]: `ServerConfig` and its keys; `Bind`/`BindAddr`, the one
//!   address parser (with the `uwsgi://` and `fcgi://` schemes); the TLS
//!   options in `config::tls`, `ConfigError` in `config::error`.
//! - [`server`]: listeners and the accept loop; one task per connection;
//!   the PROXY protocol header (`server::proxy`) and TLS (`server::tls`,
//!   rustls) before the engine.
//! - [`protocols`]: the protocol engines (our HTTP/1.1 engine in
//!   `protocols::http1`, HTTP/2 with hyper in `protocols::h2`, our uwsgi and
//!   FastCGI codecs in `protocols::uwsgi` and `protocols::fastcgi`, the CGI
//!   variables both send in `protocols::cgi`) and request-body buffering.
//! - [`middleware`]: steps on the seam between the engines and the gateway
//!   (trusted forwarded headers, static files, compression, forwarding,
//!   mounting by prefix).
//! - [`exchange`]: the seam: the plain-Rust request, response head and body
//!   chunks between the engines and the gateway; the local address type.
//! - [`wsgi`]: the gateway: environ, start_response, wsgi.input, responses,
//!   the Python thread pool, and where each request runs (inline or pooled).
//! - [`metrics`]: Prometheus metrics in shared memory, one slot per
//!   worker, and the `/metrics` endpoint on a thread of its own.
//! - [`shutdown`]: the graceful-shutdown signal and drain.
//! - [`log`]: error log and access log (text or JSON; the access-log
//!   format compiled once, gunicorn's atoms).

#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod exchange;
pub mod log;
pub mod metrics;
pub mod middleware;
pub mod protocols;
pub mod runner;
pub mod server;
pub mod shutdown;
pub mod wsgi;

use pyo3::prelude::*;

/// The native module `ferrowsgi._ferrowsgi`.
#[pymodule]
fn _ferrowsgi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<api::Server>()?;
    m.add_class::<wsgi::file_wrapper::FileWrapper>()?;
    m.add_class::<wsgi::input::Input>()?;
    m.add_class::<wsgi::errors::ErrorStream>()?;
    m.add("SERVER_OPTIONS", config::KEYS.to_vec())?;
    m.add("DEFAULT_ACCESS_LOG_FORMAT", log::format::DEFAULT)?;
    m.add_function(wrap_pyfunction!(api::logging::init_logging, m)?)?;
    m.add_function(wrap_pyfunction!(api::logging::log_message, m)?)?;
    m.add_function(wrap_pyfunction!(api::logging::check_access_log_format, m)?)?;
    m.add_function(wrap_pyfunction!(api::address::parse_bind, m)?)?;
    m.add_function(wrap_pyfunction!(api::address::bind_socket, m)?)?;
    m.add_function(wrap_pyfunction!(api::address::check_trusted, m)?)?;
    m.add_function(wrap_pyfunction!(api::address::check_backends, m)?)?;
    m.add_function(wrap_pyfunction!(api::address::under_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(api::options::check_tls, m)?)?;
    m.add_function(wrap_pyfunction!(api::metrics::metrics_open, m)?)?;
    m.add_function(wrap_pyfunction!(api::metrics::metrics_claim, m)?)?;
    m.add_function(wrap_pyfunction!(api::metrics::metrics_release, m)?)?;
    m.add_function(wrap_pyfunction!(api::metrics::metrics_restart, m)?)?;
    m.add_function(wrap_pyfunction!(api::metrics::metrics_scrape, m)?)?;
    Ok(())
}
