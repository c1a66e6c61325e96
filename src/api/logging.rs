//! The logs for Python: `init_logging`, `log` and `check_access_log_format`
//! (see the stub).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::log::{self, AccessFormat, LogSettings, Severity};

/// Configures the error log and the access log (see the stub).
///
/// # Errors
/// `ValueError` for an unknown level or log format, or an access-log format
/// that does not compile; `OSError` when the access log cannot be opened.
#[pyfunction]
#[pyo3(signature = (level="info", access_log=None, access_log_format=None, log_format="text"))]
pub fn init_logging(
    level: &str,
    access_log: Option<&str>,
    access_log_format: Option<&str>,
    log_format: &str,
) -> PyResult<()> {
    let severity = Severity::parse(level)
        .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level:?}")))?;
    let json_errors = match log_format {
        "text" => false,
        "json" => true,
        other => {
            return Err(PyValueError::new_err(format!(
                "unknown log format {other:?}"
            )))
        }
    };
    if let Some(text) = access_log_format {
        check_access_log_format(text)?;
    }
    let settings = LogSettings {
        level: severity,
        json_errors,
        access_log,
        access_log_format,
    };
    log::init(settings).map_err(|e| super::os_error(&e, access_log.unwrap_or("-")))
}

/// Writes one error-log entry at `level`, with a Python traceback when given.
#[pyfunction(name = "log")]
#[pyo3(signature = (level, message, traceback=None))]
pub fn log_message(level: &str, message: &str, traceback: Option<&str>) {
    let severity = Severity::parse(level).unwrap_or(Severity::Info);
    log::emit_traceback(severity, message, traceback);
}

/// Returns `text` if it is a usable access-log format (gunicorn's atoms or
/// `json`).
///
/// # Errors
/// `ValueError` naming the first bad `%`.
#[pyfunction]
pub fn check_access_log_format(text: &str) -> PyResult<String> {
    AccessFormat::compile(text)
        .map(|_| text.to_owned())
        .map_err(|e| PyValueError::new_err(e.0))
}
