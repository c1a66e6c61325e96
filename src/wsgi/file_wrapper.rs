//! `wsgi.file_wrapper` (PEP 3333, "Optional Platform-Specific File Handling").
//!
//! `environ['wsgi.file_wrapper'](filelike, block_size=8192)` returns an
//! iterable that reads `filelike` in blocks of `block_size` bytes until
//! `read()` returns `b""`, and whose `close()` closes `filelike` (if it has a
//! `close`). The server calls that `close()` exactly once, like any iterable's.

use pyo3::intern;
use pyo3::prelude::*;

/// Iterates a file-like object in blocks.
#[pyclass(module = "ferrowsgi._ferrowsgi", name = "FileWrapper", frozen)]
pub struct FileWrapper {
    /// The wrapped object (anything with `read(n)`).
    #[pyo3(get)]
    filelike: Py<PyAny>,
    /// Bytes per `read()` call.
    #[pyo3(get)]
    block_size: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, block_size=8192))]
    fn new(filelike: Py<PyAny>, block_size: usize) -> Self {
        FileWrapper {
            filelike,
            block_size: block_size.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.block_size,))?;
        Ok((data.len().unwrap_or(0) > 0).then_some(data))
    }

    /// Closes the wrapped object, if it has a `close()`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(intern!(py, "close"))? {
            filelike.call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }
}
