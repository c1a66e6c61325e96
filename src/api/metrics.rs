//! The metrics segment for Python: the master maps it before forking and
//! counts restarts; a worker claims its slot (`crate::metrics`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::metrics::{self, Restart, RESTART_CAUSES};

/// Maps the shared metrics segment with room for `workers` worker slots
/// (slots 1 to `workers`; slot 0 is the master's), once per process tree:
/// call it in the master before forking. A second call keeps the first.
///
/// # Errors
/// `OSError` when the memory cannot be mapped.
#[pyfunction]
pub fn metrics_open(workers: usize) -> PyResult<()> {
    metrics::open(workers).map_err(|e| super::os_error(&e, "metrics segment"))
}

/// In a worker: counts this process's requests in slot `slot` (1-based),
/// its gauges starting at zero. Returns False when there is no such slot
/// (no segment, or `slot` beyond it): the worker then counts nothing.
#[pyfunction]
pub fn metrics_claim(slot: usize) -> bool {
    slot > 0 && metrics::claim(slot)
}

/// In the master, after the worker of slot `slot` exited: its gauges go
/// back to zero; its counters stay.
#[pyfunction]
pub fn metrics_release(slot: usize) {
    if slot > 0 {
        metrics::release(slot);
    }
}

/// In the master: one worker replaced for `cause` (crash, timeout,
/// max-requests, memory or reload).
///
/// # Errors
/// `ValueError` for another cause.
#[pyfunction]
pub fn metrics_restart(cause: &str) -> PyResult<()> {
    let cause = Restart::parse(cause).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown restart cause {cause:?}; expected one of {}",
            RESTART_CAUSES.join(", ")
        ))
    })?;
    metrics::count_restart(cause);
    Ok(())
}

/// The exposition text `/metrics` answers with (every slot summed).
#[pyfunction]
pub fn metrics_scrape() -> String {
    metrics::expose::scrape()
}
