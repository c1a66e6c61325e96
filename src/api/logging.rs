//! The logs for Python: `init_logging` and `log` (see the stub).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::log::{self, Severity};

/// Configures the error-log level and the access log (see the stub).
///
/// # Errors
/// `ValueError` for an unknown level, `OSError` when the access log cannot
/// be opened.
#[pyfunction]
#[pyo3(signature = (level="info", access_log=None))]
pub fn init_logging(level: &str, access_log: Option<&str>) -> PyResult<()> {
    let severity = Severity::parse(level)
        .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level:?}")))?;
    log::init(severity, access_log).map_err(|e| super::os_error(&e, access_log.unwrap_or("-")))
}

/// Writes one error-log line at `level`.
#[pyfunction(name = "log")]
pub fn log_message(level: &str, message: &str) {
    log::emit(Severity::parse(level).unwrap_or(Severity::Info), message);
}
