//! `wsgi.input`: the request body, already read by Rust, as a Python stream.
//!
//! PEP 3333, "Input and Error Streams": `read(size)`, `readline(size)`,
//! `readlines(hint)` and iteration. Rules kept here: `read()` with no size
//! (or a negative one, or `None`) returns the rest of the body; EOF is `b""`;
//! lines keep their `\n`; reading never blocks on the network (the body is in
//! memory or in a temporary file).

use std::io::{BufRead, BufReader, Cursor, Read};
use std::sync::Mutex;

use bytes::Bytes;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::exchange::RequestBody;

enum Source {
    Memory(Cursor<Bytes>),
    File(BufReader<std::fs::File>),
}

/// The request body stream handed to the application.
#[pyclass(module = "ferrowsgi._ferrowsgi", name = "Input")]
pub struct Input {
    source: Mutex<Source>,
}

impl Input {
    /// A stream over a request body.
    pub fn new(body: RequestBody) -> Self {
        let source = match body {
            RequestBody::Empty => Source::Memory(Cursor::new(Bytes::new())),
            RequestBody::Memory(b) => Source::Memory(Cursor::new(b)),
            RequestBody::File(f, _) => Source::File(BufReader::with_capacity(64 * 1024, f)),
        };
        Input {
            source: Mutex::new(source),
        }
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut dyn BufRead) -> std::io::Result<T>,
    ) -> PyResult<T> {
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        let reader: &mut dyn BufRead = match &mut *source {
            Source::Memory(c) => c,
            Source::File(f) => f,
        };
        f(reader).map_err(|e| PyOSError::new_err(e.to_string()))
    }

    /// `read(size)` of a body held in memory: one copy, straight into the
    /// new `bytes`. `None` for a body in a temporary file.
    fn read_memory<'py>(
        &self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> Option<Bound<'py, PyBytes>> {
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        let Source::Memory(cursor) = &mut *source else {
            return None;
        };
        let body = cursor.get_ref();
        let start = (cursor.position() as usize).min(body.len());
        let rest = &body[start..];
        let n = limit(size).map_or(rest.len(), |n| n.min(rest.len()));
        let data = PyBytes::new(py, &rest[..n]);
        cursor.set_position((start + n) as u64);
        Some(data)
    }
}

/// A Python size argument: `None` or negative means "no limit".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|n| usize::try_from(n).ok())
}

/// Reads one line (through `\n`), at most `max` bytes.
fn read_line(reader: &mut dyn BufRead, max: Option<usize>) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    match max {
        None => {
            reader.read_until(b'\n', &mut line)?;
        }
        Some(max) => {
            reader.take(max as u64).read_until(b'\n', &mut line)?;
        }
    }
    Ok(line)
}

#[pymethods]
impl Input {
    /// Reads up to `size` bytes (all that is left when `size` is omitted,
    /// `None` or negative). Returns `b""` at the end of the body.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        if let Some(data) = self.read_memory(py, size) {
            return Ok(data);
        }
        let data = self.with_reader(|reader| {
            let mut data = Vec::new();
            match limit(size) {
                None => reader.read_to_end(&mut data)?,
                Some(n) => reader.take(n as u64).read_to_end(&mut data)?,
            };
            Ok(data)
        })?;
        Ok(PyBytes::new(py, &data))
    }

    /// Reads one line, keeping its `\n`; at most `size` bytes when given.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.with_reader(|reader| read_line(reader, limit(size)))?;
        Ok(PyBytes::new(py, &line))
    }

    /// Reads the remaining lines; stops once `hint` bytes were read, when given.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let lines = self.with_reader(|reader| {
            let (mut lines, mut total) = (Vec::new(), 0usize);
            loop {
                let line = read_line(reader, None)?;
                if line.is_empty() {
                    return Ok(lines);
                }
                total += line.len();
                lines.push(line);
                if limit(hint).is_some_and(|h| h > 0 && total >= h) {
                    return Ok(lines);
                }
            }
        })?;
        PyList::new(py, lines.iter().map(|l| PyBytes::new(py, l)))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.readline(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}
