//! `wsgi.errors`, and how application failures are described in the error log.
//!
//! Rules kept here: every failure the server answers with a 500 (or a closed
//! connection) leaves one error-log entry naming the request, what went wrong
//! and, when the application broke a PEP 3333 rule, what the rule requires.
//! A client that went away is not the application's fault: debug level only.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::log::{self, Severity};

/// `environ['wsgi.errors']`: a text stream that writes to the server's error
/// log (PEP 3333, "environ Variables": an output stream for error output).
#[pyclass(module = "ferrowsgi._ferrowsgi", frozen)]
pub struct ErrorStream;

#[pymethods]
impl ErrorStream {
    /// Writes `text` (a `str`) to the error log as it is.
    ///
    /// Raises `TypeError` for anything but a `str` (it is a text stream).
    fn write(&self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text = text
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("wsgi.errors.write() takes a str"))?;
        let text = text.to_cow()?;
        log::write_raw(&text);
        Ok(text.chars().count())
    }

    /// Writes every `str` of `lines`, as `write()` does.
    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    /// No-op: the error log is not buffered.
    fn flush(&self) {}
}

/// Why a request could not be answered normally by the application.
#[derive(Debug)]
pub enum Failure {
    /// The application (or its iterable, or its `close()`) raised.
    Exception(PyErr),
    /// The application broke a PEP 3333 rule; the message says which.
    Protocol(String),
    /// The client went away while the response was streamed.
    ClientGone,
}

impl Failure {
    /// A PEP 3333 violation described by `message`.
    pub fn protocol(message: impl Into<String>) -> Self {
        Failure::Protocol(message.into())
    }

    /// Writes the error-log entry for this failure of request `label`
    /// (`"GET /path"`).
    pub fn log(&self, py: Python<'_>, label: &str) {
        if !matches!(self, Failure::ClientGone) {
            crate::metrics::record_exception();
        }
        match self {
            Failure::Exception(err) => log::emit_traceback(
                Severity::Error,
                &format!("Error handling request {label}"),
                Some(&format_exception(py, err)),
            ),
            Failure::Protocol(message) => log::emit(
                Severity::Error,
                &format!("Error handling request {label}: {message}"),
            ),
            Failure::ClientGone => log::emit(
                Severity::Debug,
                &format!("{label}: client disconnected mid-response"),
            ),
        }
    }
}

/// The traceback of `err`, formatted as Python prints it.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        let lines = tb.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        PyString::new(py, "")
            .call_method1("join", (lines,))?
            .extract::<String>()
    });
    formatted.unwrap_or_else(|_| err.to_string())
}

/// A short, safe description of a Python value for log lines: its type and
/// a repr cut to 80 characters.
pub fn describe(value: &Bound<'_, PyAny>) -> String {
    let type_name = value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    let repr = value.repr().map(|r| r.to_string()).unwrap_or_default();
    let repr: String = if repr.chars().count() > 80 {
        repr.chars().take(77).chain("...".chars()).collect()
    } else {
        repr
    };
    format!("{type_name} {repr}")
}
