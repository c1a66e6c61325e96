//! `start_response(status, response_headers, exc_info=None)` and the `write()`
//! callable it returns (PEP 3333, "The start_response() Callable").
//!
//! Rules kept here:
//! - status is a `str` `"NNN Reason"`: three digits (200-999; a 1xx cannot
//!   be a final response), one space, a reason without control characters.
//! - headers is a list of `(name, value)` tuples of `str`; names are tokens
//!   (RFC 9110 §5.1), values latin-1 without CR, LF, NUL or other controls
//!   but HTAB (RFC 9110 §5.5); hop-by-hop headers are the server's business
//!   and refused (PEP 3333, "Other HTTP Features").
//! - a second call is an error unless `exc_info` is given; with `exc_info`
//!   after the headers went out, the exception is re-raised.
//! - nothing is sent here: headers go out with the first non-empty body
//!   chunk (`responder.rs`), so start_response may be called lazily.

use std::sync::{Mutex, MutexGuard};

use http::StatusCode;
use pyo3::exceptions::{PyAssertionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::exchange::{FieldError, ResponseHeaders, SERVER_HEADER};
use crate::wsgi::errors::Failure;
use crate::wsgi::responder::{Head, Responder};

/// Headers a WSGI application must not set (RFC 9110 §7.6.1 and PEP 3333).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The `start_response` callable given to the application for one request.
#[pyclass(module = "ferrowsgi._ferrowsgi", name = "start_response", frozen)]
pub struct StartResponse {
    responder: Mutex<Responder>,
}

impl StartResponse {
    /// Wraps the responder of one request.
    pub fn new(responder: Responder) -> Self {
        StartResponse {
            responder: Mutex::new(responder),
        }
    }

    /// The responder; only the request's own Python thread uses it.
    pub fn responder(&self) -> MutexGuard<'_, Responder> {
        self.responder.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl StartResponse {
    /// Records the status and headers; returns the `write(data)` callable.
    ///
    /// Raises `TypeError`/`ValueError` for a malformed status or header,
    /// `AssertionError` for a second call without `exc_info`, and re-raises
    /// `exc_info[1]` when headers were already sent.
    #[pyo3(signature = (status, headers, exc_info=None))]
    fn __call__(
        slf: &Bound<'_, Self>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        let this = slf.get();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let responder = this.responder();
            match exc_info {
                Some(info) if responder.headers_sent() => {
                    return Err(PyErr::from_value(info.get_item(1)?));
                }
                None if responder.has_head() => {
                    return Err(PyAssertionError::new_err(
                        "start_response() called a second time without exc_info (PEP 3333)",
                    ));
                }
                _ => {}
            }
        }
        let head = parse_head(status, headers)?;
        this.responder().set_head(head);
        Ok(Write {
            start_response: slf.clone().unbind(),
        })
    }
}

/// The `write(data)` callable returned by `start_response` (PEP 3333, "The
/// write() Callable"): sends `data` at once, headers first if not yet sent.
#[pyclass(module = "ferrowsgi._ferrowsgi", name = "write", frozen)]
pub struct Write {
    start_response: Py<StartResponse>,
}

#[pymethods]
impl Write {
    /// Sends `data` (a `bytes`). Raises `TypeError` for anything else, and
    /// `OSError` when the client has gone away.
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data.cast::<PyBytes>().map_err(|_| {
            PyTypeError::new_err(format!(
                "write() takes bytes, not {} (PEP 3333: bytestrings only)",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        let mut responder = self.start_response.get().responder();
        match responder.write(py, data) {
            Ok(()) => Ok(()),
            Err(Failure::Exception(e)) => Err(e),
            Err(Failure::Protocol(m)) => Err(PyAssertionError::new_err(m)),
            Err(Failure::ClientGone) => Err(pyo3::exceptions::PyConnectionAbortedError::new_err(
                "client disconnected",
            )),
        }
    }
}

/// Validates status and headers into a response head.
fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<Head> {
    let status = status
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("status must be a str such as '200 OK' (PEP 3333)"))?;
    let (code, reason) = parse_status(&status.to_cow()?)?;
    let mut fields = ResponseHeaders::with_capacity(256);
    let mut content_length = None;
    let not_a_list = |_| header_list_error(&format!("got {}", type_name(headers)));
    for item in headers.try_iter().map_err(not_a_list)? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .ok()
            .filter(|p| p.len() == 2)
            .ok_or_else(|| header_list_error(&format!("got the item {}", repr(&item))))?;
        let (name, value) = (pair.get_item(0)?, pair.get_item(1)?);
        let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
            let why = format!(
                "the header {} has a name of type {} and a value of type {}",
                repr(&item),
                type_name(&name),
                type_name(&value)
            );
            return Err(header_list_error(&why));
        };
        let (name, value) = (name.to_cow()?, value.to_cow()?);
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(parse_content_length(&value, content_length)?);
        }
        push_header(&mut fields, &name, &value)?;
    }
    if !fields.has_server() {
        push_header(&mut fields, "Server", SERVER_HEADER)?;
    }
    Ok(Head {
        status: code,
        reason,
        headers: fields,
    })
}

/// The `TypeError` for a header list that is not one, saying what was wrong.
fn header_list_error(why: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "headers must be a list of (name, value) tuples of str (PEP 3333): {why}"
    ))
}

fn repr(object: &Bound<'_, PyAny>) -> String {
    object
        .repr()
        .map_or_else(|_| "<unprintable>".to_owned(), |r| r.to_string())
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// Parses `"NNN Reason"`; returns the code and the reason when it is not the
/// standard one.
fn parse_status(status: &str) -> PyResult<(StatusCode, Option<bytes::Bytes>)> {
    let bad = || {
        PyValueError::new_err(format!(
            "invalid status {status:?}: PEP 3333 requires 'NNN Reason', e.g. '200 OK'"
        ))
    };
    let bytes = status.as_bytes();
    if bytes.len() < 4 || bytes[3] != b' ' || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let code = StatusCode::from_bytes(&bytes[..3]).map_err(|_| bad())?;
    if code.is_informational() {
        return Err(PyValueError::new_err(format!(
            "invalid status {status:?}: a 1xx status cannot be a final response"
        )));
    }
    let reason = &status[4..];
    if reason.chars().any(|c| c.is_control() && c != '\t') || !reason.is_ascii() {
        return Err(bad());
    }
    let standard = code.canonical_reason() == Some(reason);
    Ok((
        code,
        (!standard).then(|| bytes::Bytes::copy_from_slice(reason.as_bytes())),
    ))
}

/// Checks one field (PEP 3333: `str` name and value, latin-1; no hop-by-hop
/// field) and appends it as the bytes that go out.
fn push_header(fields: &mut ResponseHeaders, name: &str, value: &str) -> PyResult<()> {
    if HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
        return Err(PyValueError::new_err(format!(
            "hop-by-hop header {name:?} is not allowed from a WSGI application (PEP 3333)"
        )));
    }
    let latin1: Option<std::borrow::Cow<'_, [u8]>> = if value.is_ascii() {
        Some(value.as_bytes().into()) // the common case: no per-char work
    } else {
        value
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<Vec<u8>>>()
            .map(Into::into)
    };
    let pushed = match latin1 {
        Some(bytes) => fields.push(name.as_bytes(), &bytes),
        None => Err(FieldError::Value),
    };
    pushed.map_err(|e| match e {
        FieldError::Name => PyValueError::new_err(format!(
            "invalid header name {name:?}: must be an HTTP token"
        )),
        FieldError::Value => PyValueError::new_err(format!(
            "invalid value for header {name:?}: {value:?} (must be latin-1 without CR, LF, NUL or other control characters)"
        )),
    })
}

/// `1*DIGIT`, with optional SP/HTAB around it (as `ResponseHeaders` reads it).
fn parse_content_length(value: &str, previous: Option<u64>) -> PyResult<u64> {
    let text = value.trim_matches([' ', '\t']);
    let n = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| PyValueError::new_err(format!("invalid Content-Length {text:?}")))?;
    match previous {
        Some(p) if p != n => Err(PyValueError::new_err("conflicting Content-Length headers")),
        _ => Ok(n),
    }
}
