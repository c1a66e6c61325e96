//! Building the `environ` dict (PEP 3333, "environ Variables").
//!
//! Rules kept here:
//! - Values are native strings decoded as latin-1 (PEP 3333, "Unicode
//!   Issues"); PATH_INFO is percent-decoded first, so `/caf%C3%A9` is `'cafÃ©'`.
//! - SCRIPT_NAME is the configured mount prefix (empty at the root) and is
//!   removed from the front of PATH_INFO.
//! - CONTENT_TYPE / CONTENT_LENGTH appear only when the request has them (a
//!   chunked body has a length once read, so it gets CONTENT_LENGTH too);
//!   they never appear as HTTP_CONTENT_*.
//! - Every other header becomes `HTTP_<NAME>` (upper case, `-` → `_`);
//!   repeated headers are joined with `,`; a header whose name contains `_`
//!   is dropped, so `X_Forwarded_For` cannot pose as `X-Forwarded-For`.
//! - Nothing from the process environment is copied in.
//! - Variables the front door hands over as they are (`Request::vars`: a
//!   uwsgi or FastCGI proxy's, a TLS connection's) are set last.
//!
//! Speed: the constant entries, and a slot for each key set on every request,
//! live in a template dict that is copied per request; constant keys are
//! interned once per process; `HTTP_*` keys are cached per header name.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use http::header::{HeaderName, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{Method, Version};
use percent_encoding::percent_decode;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use crate::config::ServerConfig;
use crate::exchange::LocalAddr;
use crate::exchange::{under_prefix_bytes, Request};
use crate::wsgi::errors::ErrorStream;
use crate::wsgi::file_wrapper::FileWrapper;
use crate::wsgi::input::Input;

/// Most distinct `HTTP_*` keys cached; beyond it keys are built per request,
/// so a client sending random header names cannot grow memory.
const MAX_CACHED_NAMES: usize = 512;

/// Keys `build` sets on every request (REMOTE_PORT is removed again for a
/// unix-socket client, which has no port).
const ALWAYS_SET: [&str; 9] = [
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "SERVER_PROTOCOL",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.input",
];

/// Builds environs for one server: the constant part is made once.
pub struct EnvironTemplate {
    /// The entries every environ shares (wsgi.*, SCRIPT_NAME).
    base: Py<PyDict>,
    /// `HTTP_*` key for each header name seen so far.
    names: Mutex<HashMap<HeaderName, Py<PyString>>>,
    /// SCRIPT_NAME, to strip from the front of the path.
    script_name: String,
    /// SERVER_PORT when the Host header has none (80 or 443).
    default_port: &'static str,
    /// The last client address and its REMOTE_ADDR.
    last_peer: Mutex<Option<(IpAddr, Py<PyString>)>>,
    /// The last Host header value and its SERVER_NAME, SERVER_PORT.
    last_host: Mutex<Option<HostEntry>>,
}

/// A Host header value and the SERVER_NAME, SERVER_PORT made from it.
type HostEntry = (Vec<u8>, Py<PyString>, Py<PyString>);

impl EnvironTemplate {
    /// Makes the template for `config`.
    ///
    /// # Errors
    /// A Python error if building the dict fails (out of memory).
    pub fn new(py: Python<'_>, config: &ServerConfig) -> PyResult<Self> {
        let base = PyDict::new(py);
        base.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        base.set_item("wsgi.url_scheme", &config.url_scheme)?;
        base.set_item("wsgi.errors", Bound::new(py, ErrorStream)?)?;
        base.set_item("wsgi.multithread", config.threads > 1)?;
        base.set_item("wsgi.multiprocess", config.multiprocess)?;
        base.set_item("wsgi.run_once", false)?;
        base.set_item("wsgi.input_terminated", true)?;
        base.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
        base.set_item("SCRIPT_NAME", &config.script_name)?;
        // Every environ sets these: with a slot in the template, the copy
        // has room for them and setting one replaces a value in place.
        for key in ALWAYS_SET {
            base.set_item(PyString::intern(py, key), py.None())?;
        }
        let default_port = if config.url_scheme == "https" {
            "443"
        } else {
            "80"
        };
        Ok(EnvironTemplate {
            base: base.unbind(),
            names: Mutex::new(HashMap::new()),
            script_name: config.script_name.clone(),
            default_port,
            last_peer: Mutex::new(None),
            last_host: Mutex::new(None),
        })
    }

    /// Builds the environ for `request`; its body becomes `wsgi.input`.
    /// `mount`: for an application mounted under a prefix, its SCRIPT_NAME
    /// and the bytes of the path the prefix takes ([`Mounted`]).
    ///
    /// # Errors
    /// A Python error if a dict or string cannot be made (out of memory).
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        request: Request,
        mount: Option<(&Py<PyString>, usize)>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let env = self.base.bind(py).copy()?;
        let http = &request.http;
        env.set_item(intern!(py, "REQUEST_METHOD"), method(py, http.method()))?;
        let path = percent_decode(http.uri().path().as_bytes()).collect::<Cow<'_, [u8]>>();
        let mut path_info = self.strip_script_name(&path);
        if let Some((script_name, prefix_len)) = mount {
            env.set_item(intern!(py, "SCRIPT_NAME"), script_name)?;
            path_info = path_info.get(prefix_len..).unwrap_or(path_info);
        }
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
        let query = http.uri().query().unwrap_or("");
        env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query.as_bytes()))?;
        env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol(py, http.version()))?;
        self.set_addresses(py, &env, &request)?;
        self.set_headers(py, &env, &request)?;
        if let Some(vars) = &request.vars {
            for (name, value) in vars.iter() {
                env.set_item(latin1(py, name), latin1(py, value))?;
            }
        }
        env.set_item(
            intern!(py, "wsgi.input"),
            Bound::new(py, Input::new(request.http.into_body()))?,
        )?;
        Ok(env)
    }

    fn strip_script_name<'a>(&self, path: &'a [u8]) -> &'a [u8] {
        under_prefix_bytes(self.script_name.as_bytes(), path).unwrap_or(path)
    }

    /// wsgi.url_scheme when a trusted proxy gave it; REMOTE_ADDR/REMOTE_PORT
    /// from the socket or the client a trusted proxy named; SERVER_NAME from the Host
    /// header, else from the listening socket; SERVER_PORT from the listening
    /// socket.
    fn set_addresses(
        &self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        req: &Request,
    ) -> PyResult<()> {
        if let Some(scheme) = req.scheme {
            env.set_item(intern!(py, "wsgi.url_scheme"), scheme)?;
        }
        match req.peer {
            Some(peer) => {
                env.set_item(intern!(py, "REMOTE_ADDR"), self.remote_addr(py, peer.ip()))?;
                if peer.port() == 0 {
                    env.del_item(intern!(py, "REMOTE_PORT"))?; // a proxy named no port
                } else {
                    env.set_item(intern!(py, "REMOTE_PORT"), port_text(py, peer.port()))?;
                }
            }
            None => {
                env.set_item(intern!(py, "REMOTE_ADDR"), "")?;
                env.del_item(intern!(py, "REMOTE_PORT"))?;
            }
        }
        let host = req
            .http
            .headers()
            .get(HOST)
            .map(|h| h.as_bytes())
            .filter(|h| !h.is_empty());
        let (name, host_port) = match host {
            Some(host) => self.server_name(py, host),
            None => match &*req.local {
                LocalAddr::Tcp(addr) => (
                    PyString::new(py, &addr.ip().to_string()),
                    port_text(py, addr.port()),
                ),
                LocalAddr::Unix(_) => (intern!(py, "localhost").clone(), PyString::new(py, "")),
            },
        };
        // RFC 3875 §4.1.15: the port the request was received on; a unix
        // socket has none, so the Host header's (or the scheme's) stands in.
        let port = match &*req.local {
            LocalAddr::Tcp(addr) => port_text(py, addr.port()),
            LocalAddr::Unix(_) => host_port,
        };
        env.set_item(intern!(py, "SERVER_NAME"), name)?;
        env.set_item(intern!(py, "SERVER_PORT"), port)
    }

    /// REMOTE_ADDR for `ip`; the last one is cached (clients come back).
    fn remote_addr<'py>(&self, py: Python<'py>, ip: IpAddr) -> Bound<'py, PyString> {
        let mut last = self.last_peer.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some((cached, text)) if *cached == ip => text.bind(py).clone(),
            _ => {
                let text = PyString::new(py, &ip.to_string());
                *last = Some((ip, text.clone().unbind()));
                text
            }
        }
    }

    /// SERVER_NAME and SERVER_PORT for a Host header value; the last one is
    /// cached (nearly every request names the same host).
    fn server_name<'py>(
        &self,
        py: Python<'py>,
        host: &[u8],
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        let mut last = self.last_host.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, name, port)) = &*last {
            if cached.as_slice() == host {
                return (name.bind(py).clone(), port.bind(py).clone());
            }
        }
        let (name, port) = split_host(host, self.default_port);
        let (name, port) = (PyString::new(py, &name), PyString::new(py, &port));
        *last = Some((host.to_vec(), name.clone().unbind(), port.clone().unbind()));
        (name, port)
    }

    fn set_headers(&self, py: Python<'_>, env: &Bound<'_, PyDict>, req: &Request) -> PyResult<()> {
        let headers = req.http.headers();
        if let Some(ct) = headers.get(CONTENT_TYPE) {
            env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, ct.as_bytes()))?;
        }
        let body = req.http.body();
        if req.has_body_framing || !body.is_empty() {
            env.set_item(intern!(py, "CONTENT_LENGTH"), body.len().to_string())?;
        }
        for name in headers.keys() {
            if name == CONTENT_TYPE || name == CONTENT_LENGTH || name.as_str().contains('_') {
                continue;
            }
            let mut values = headers.get_all(name).iter();
            let Some(first) = values.next() else { continue };
            let value = match values.next() {
                None => latin1(py, first.as_bytes()),
                Some(second) => {
                    let mut joined = first.as_bytes().to_vec();
                    for v in std::iter::once(second).chain(values) {
                        joined.push(b',');
                        joined.extend_from_slice(v.as_bytes());
                    }
                    latin1(py, &joined)
                }
            };
            env.set_item(self.http_key(py, name), value)?;
        }
        Ok(())
    }

    fn http_key<'py>(&self, py: Python<'py>, name: &HeaderName) -> Bound<'py, PyString> {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = names.get(name) {
            return key.bind(py).clone();
        }
        let key: String = "HTTP_"
            .chars()
            .chain(name.as_str().chars().map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            }))
            .collect();
        let key = PyString::intern(py, &key);
        if names.len() < MAX_CACHED_NAMES {
            names.insert(name.clone(), key.clone().unbind());
        }
        key
    }
}

/// Splits a Host header value into (name, port); IPv6 literals keep brackets.
fn split_host(host: &[u8], default_port: &str) -> (String, String) {
    let host = String::from_utf8_lossy(host);
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], &host[i + 1..]),
        _ => (&host[..], default_port),
    };
    (name.to_owned(), port.to_owned())
}

/// A port number as a `str`, without going through `fmt`.
fn port_text(py: Python<'_>, port: u16) -> Bound<'_, PyString> {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = port;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    latin1(py, &digits[at..])
}

/// A latin-1 decoded native string (PEP 3333, "Unicode Issues"): one call
/// into CPython's own latin-1 decoder, which also makes the compact ASCII
/// form when every byte is ASCII (no UTF-8 validation on the way).
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: the pointer and length describe `bytes`, which CPython copies;
    // latin-1 decoding cannot fail, so NULL means only out of memory.
    let decoded = unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast(),
            bytes.len() as pyo3::ffi::Py_ssize_t,
            std::ptr::null(),
        );
        Bound::from_owned_ptr_or_err(py, ptr)
    };
    match decoded.map(|s| s.cast_into::<PyString>()) {
        Ok(Ok(s)) => s,
        _ => PyString::new(py, ""), // out of memory: the next allocation fails too
    }
}

fn method<'py>(py: Python<'py>, method: &Method) -> Bound<'py, PyString> {
    match *method {
        Method::GET => intern!(py, "GET").clone(),
        Method::POST => intern!(py, "POST").clone(),
        Method::HEAD => intern!(py, "HEAD").clone(),
        Method::PUT => intern!(py, "PUT").clone(),
        Method::DELETE => intern!(py, "DELETE").clone(),
        _ => PyString::new(py, method.as_str()),
    }
}

fn protocol(py: Python<'_>, version: Version) -> Bound<'_, PyString> {
    match version {
        Version::HTTP_10 => intern!(py, "HTTP/1.0").clone(),
        Version::HTTP_09 => intern!(py, "HTTP/0.9").clone(),
        Version::HTTP_2 => intern!(py, "HTTP/2").clone(),
        _ => intern!(py, "HTTP/1.1").clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn splits_host_headers() {
        let s = |h: &str| split_host(h.as_bytes(), "80");
        assert_eq!(s("example.com"), ("example.com".into(), "80".into()));
        assert_eq!(s("example.com:8080"), ("example.com".into(), "8080".into()));
        assert_eq!(s("[::1]:9000"), ("[::1]".into(), "9000".into()));
        assert_eq!(s("[::1]"), ("[::1]".into(), "80".into()));
    }
}
