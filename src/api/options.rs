//! The options dict `_ferrowsgi.Server` takes, turned into a `ServerConfig`.
//!
//! Every key of [`KEYS`] must be present and no other is accepted: the
//! options table (`python/ferrowsgi/options.py`) sends each one with its
//! value, so its defaults are the only ones. Values arrive checked by the
//! table; what is checked here is only what Rust relies on.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use std::path::PathBuf;

use crate::config::{seconds, Bind, ConfigError, ServerConfig, TlsOptions, TrustList, KEYS};
use crate::middleware::options::{parse_backends, ForwardRoute, MiddlewareConfig};
use crate::protocols::http1::Limits;
use crate::protocols::HttpVersions;
use crate::server::tls::Tls;

/// Builds the configuration from the options dict.
///
/// # Errors
/// `ValueError` for a missing or unknown key or a value out of range,
/// `TypeError` for a value of the wrong type.
pub fn parse(dict: &Bound<'_, PyDict>) -> PyResult<ServerConfig> {
    for key in dict.keys() {
        let key: String = key.extract()?;
        if !KEYS.contains(&key.as_str()) {
            return Err(PyValueError::new_err(format!(
                "unknown server option {key:?}; expected {}",
                KEYS.join(", ")
            )));
        }
    }
    let get = |key: &str| {
        dict.get_item(key)?
            .ok_or_else(|| PyValueError::new_err(format!("missing server option {key:?}")))
    };
    let secs = |key: &str| seconds(key, get(key)?.extract()?).map_err(config_error);
    let trust = |key: &str| {
        let entries: Vec<String> = get(key)?.extract()?;
        TrustList::parse(&entries).map_err(config_error)
    };
    let binds: Vec<String> = get("bind")?.extract()?;
    let config = ServerConfig {
        binds: binds
            .iter()
            .map(|b| Bind::parse(b))
            .collect::<Result<_, _>>()
            .map_err(config_error)?,
        backlog: get("backlog")?.extract()?,
        unix_socket_mode: get("unix_socket_mode")?.extract()?,
        threads: get("threads")?.extract()?,
        max_connections: get("max_connections")?.extract()?,
        graceful_timeout: secs("graceful_timeout")?,
        keep_alive: secs("keep_alive")?,
        header_timeout: secs("header_timeout")?,
        body_timeout: secs("body_timeout")?,
        max_body_size: get("max_body_size")?.extract()?,
        body_buffer_size: get("body_buffer_size")?.extract()?,
        limits: Limits {
            max_request_line: get("limit_request_line")?.extract()?,
            max_fields: get("limit_request_fields")?.extract()?,
            max_field_size: get("limit_request_field_size")?.extract()?,
        },
        max_requests: get("max_requests")?.extract()?,
        url_scheme: get("url_scheme")?.extract()?,
        script_name: get("script_name")?.extract()?,
        multiprocess: get("multiprocess")?.extract()?,
        forwarded_allow_ips: trust("forwarded_allow_ips")?,
        proxy_protocol: get("proxy_protocol")?.extract()?,
        proxy_allow_from: trust("proxy_allow_from")?,
        http: HttpVersions::parse(&get("http")?.extract::<String>()?)
            .map_err(PyValueError::new_err)?,
        tls: tls_options(
            get("certfile")?.extract()?,
            get("keyfile")?.extract()?,
            get("ca_certs")?.extract()?,
            get("cert_reqs")?.extract()?,
            get("ssl_min_version")?.extract()?,
        )?,
        middleware: middleware_options(dict)?,
        max_queue: get("max_queue")?.extract()?,
        metrics_bind: metrics_bind(get("metrics_bind")?.extract()?)?,
    };
    config.validate().map_err(config_error)?;
    Ok(config)
}

/// `--metrics-bind`: an HTTP address (TCP, unix or an inherited fd).
///
/// # Errors
/// `ValueError` for a malformed address or a uwsgi:// or fcgi:// one.
fn metrics_bind(value: Option<String>) -> PyResult<Option<Bind>> {
    let Some(value) = value else { return Ok(None) };
    let bind = Bind::parse(&value).map_err(config_error)?;
    if bind.protocol != crate::config::Protocol::Http {
        return Err(PyValueError::new_err(format!(
            "--metrics-bind {value}: the metrics endpoint speaks HTTP; give HOST:PORT"
        )));
    }
    Ok(Some(bind))
}

/// The built-in middleware's options.
///
/// # Errors
/// `ValueError` for a bad backend URL or a negative number of seconds.
fn middleware_options(dict: &Bound<'_, PyDict>) -> PyResult<MiddlewareConfig> {
    let get = |key: &str| {
        dict.get_item(key)?
            .ok_or_else(|| PyValueError::new_err(format!("missing server option {key:?}")))
    };
    let secs = |key: &str| seconds(key, get(key)?.extract()?).map_err(config_error);
    let statics: Vec<(String, PathBuf)> = get("static")?.extract()?;
    let forwards: Vec<(String, String)> = get("forward")?.extract()?;
    Ok(MiddlewareConfig {
        statics,
        static_max_age: secs("static_max_age")?,
        compress: get("compress")?.extract()?,
        forwards: forwards
            .into_iter()
            .map(|(prefix, urls)| {
                let backends = parse_backends(&urls).map_err(config_error)?;
                Ok(ForwardRoute { prefix, backends })
            })
            .collect::<PyResult<_>>()?,
        forward_timeout: secs("forward_timeout")?,
        forward_fail_timeout: secs("forward_fail_timeout")?,
    })
}

/// The TLS options, their files read and checked; `None` without
/// `certfile` and `keyfile` (plain HTTP).
///
/// # Errors
/// `ValueError` with one line naming the option (and file) at fault.
fn tls_options(
    certfile: Option<String>,
    keyfile: Option<String>,
    ca_certs: Option<String>,
    cert_reqs: String,
    ssl_min_version: String,
) -> PyResult<Option<Tls>> {
    TlsOptions::from_values(
        certfile.as_deref(),
        keyfile.as_deref(),
        ca_certs.as_deref(),
        &cert_reqs,
        &ssl_min_version,
    )
    .and_then(|options| options.map(Tls::load).transpose())
    .map_err(config_error)
}

/// Checks the TLS options as the server will use them: reads the
/// certificate, key and CA files and builds the TLS configuration once, so
/// that the master finds a bad file before it forks a worker.
///
/// # Errors
/// `ValueError` with one line naming the option (and file) at fault.
#[pyfunction]
#[pyo3(signature = (certfile, keyfile, ca_certs, cert_reqs, ssl_min_version))]
pub fn check_tls(
    certfile: Option<String>,
    keyfile: Option<String>,
    ca_certs: Option<String>,
    cert_reqs: String,
    ssl_min_version: String,
) -> PyResult<()> {
    tls_options(certfile, keyfile, ca_certs, cert_reqs, ssl_min_version).map(drop)
}

/// A configuration error as Python's `ValueError`.
pub fn config_error(e: ConfigError) -> PyErr {
    PyValueError::new_err(e.0)
}
