//! Addresses for Python: the one `--bind` parser, and binding for the master.
//!
//! The master process binds its listening sockets here, before it forks, with
//! the same parser and the same socket options as a server that binds its own
//! (`--workers 0`, the Python API): `server::listener` does both.

use pyo3::prelude::*;

use super::options::config_error;
use crate::config::{Bind, TrustList};
use crate::middleware::options::{parse_backends, show_backends};
use crate::server::listener::{BindOptions, Listening};

/// Checks one `--bind` value and returns it in canonical form
/// (`127.0.0.1:8000`, `[::1]:80`, `unix:/run/app.sock`, `fd://3`,
/// `uwsgi://127.0.0.1:3031`, `fcgi://unix:/run/app.sock`).
///
/// # Errors
/// `ValueError` saying why, with the accepted forms.
#[pyfunction]
pub fn parse_bind(address: &str) -> PyResult<String> {
    Bind::parse(address)
        .map(|a| a.to_string())
        .map_err(config_error)
}

/// Checks one `--forward` value's `URL[,URL...]` and returns it in
/// canonical form (URLs comma-separated), as the forwarding middleware will
/// read it.
///
/// # Errors
/// `ValueError` naming the URL at fault.
#[pyfunction]
pub fn check_backends(urls: &str) -> PyResult<String> {
    parse_backends(urls)
        .map(|b| show_backends(&b))
        .map_err(config_error)
}

/// The rest of `path` when it lies under the URL prefix `prefix` by whole
/// segments (`/api` takes `/api` → `''` and `/api/x` → `'/x'`, not `/apix`
/// → `None`; `/` takes every path whole): the rule `--mount`, `--static`
/// and `--forward` keep (RFC 3986 §3.3), for `ferrowsgi.mount`.
#[pyfunction]
pub fn under_prefix(prefix: &str, path: &str) -> Option<String> {
    crate::exchange::under_prefix(prefix, path).map(str::to_owned)
}

/// Binds (or, for `fd://N`, checks) one listening socket and returns its file
/// descriptor, which the caller owns (and, for `unix:PATH`, the socket file),
/// the address it is bound to (`(host, port)` for TCP, the path for a unix
/// socket, as `Server.addresses` gives them), the `--bind` value a worker
/// process serves it with (`fd://N`, `uwsgi://fd://N`, …) and its URL for
/// the "Listening at" line (`https://…` when `tls`: see `Server.urls`).
///
/// `backlog`: the `listen()` queue length; `reuse_port`: `SO_REUSEPORT`;
/// `unix_mode`: permission bits of a unix socket file (e.g. `0o660`).
///
/// # Errors
/// `ValueError` for a malformed address; `OSError` (with the address as
/// `filename`) when it cannot be bound.
#[pyfunction]
pub fn bind_socket(
    py: Python<'_>,
    address: &str,
    backlog: i32,
    reuse_port: bool,
    unix_mode: u32,
    tls: bool,
) -> PyResult<(i32, Py<PyAny>, String, String)> {
    let bind = Bind::parse(address).map_err(config_error)?;
    let options = BindOptions {
        backlog,
        reuse_port,
        unix_mode,
    };
    let listening = Listening::bind(&bind, &options).map_err(|e| bind_error(&bind, &e))?;
    let local = super::local_address(py, &listening.local)?;
    let url = listening.url(tls);
    let fd = listening.socket.into_raw_fd();
    Ok((fd, local, bind.on_fd(fd).to_string(), url))
}

/// `OSError(errno, strerror, address)` for a failed bind.
pub fn bind_error(bind: &Bind, e: &std::io::Error) -> PyErr {
    super::os_error(e, &bind.to_string())
}

/// Checks one entry of a trusted-peers option (`--forwarded-allow-ips`,
/// `--proxy-allow-from`) and returns it trimmed.
///
/// # Errors
/// `ValueError` naming the forms: an IP address, a network, `unix`, `*`.
#[pyfunction]
pub fn check_trusted(entry: &str) -> PyResult<String> {
    let entry = entry.trim().to_owned();
    TrustList::parse(std::slice::from_ref(&entry)).map_err(config_error)?;
    Ok(entry)
}
