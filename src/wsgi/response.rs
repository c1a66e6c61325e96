//! Driving the application's result: iterating what it returned and
//! feeding the responder (`responder.rs`), then calling `close()` (PEP 3333,
//! "The Application/Framework Side" and "Buffering and Streaming").
//!
//! Rules kept here:
//! - A list or tuple of bytes is taken whole: joined (a single item shared,
//!   not copied, when large) and sent in one piece after `close()`.
//! - Any other iterable is run chunk by chunk into the responder, which
//!   streams it; empty chunks are skipped.
//! - HEAD: iteration stops at the first non-empty chunk.
//! - `close()` is called on the iterable exactly once, whatever happened, and
//!   before the response ends, so a client that sees the end of the response
//!   knows `close()` has run.
//! - A `str`, `bytes`, `None` or a non-bytes chunk is a 500 with a log line
//!   saying what PEP 3333 requires.
//!
//! Inline mode (`--threads 1`, see `wsgi::dispatch`): the application runs on
//! the I/O thread, which must never block. Once a chunk has found the stream
//! buffer full (it waits in the responder's backlog), the rest of the
//! iteration moves to a Python thread as a [`Resume`], which sends the
//! backlog first and then carries on with normal backpressure.

use bytes::{Bytes, BytesMut};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyString, PyTuple};

use crate::wsgi::errors::{describe, Failure};
use crate::wsgi::responder::body_bytes;
use crate::wsgi::start_response::StartResponse;

/// What iterating the application's result came to.
enum Delivered<'py> {
    /// A list or tuple, joined: to send whole after `close()`.
    Whole(Bytes),
    /// Everything was streamed (or, for HEAD, nothing had to be).
    Streamed,
    /// Inline only: the stream buffer is full; the rest of the iteration
    /// must go on on a Python thread.
    Suspended(Bound<'py, PyIterator>),
}

/// The rest of a response that began inline, for a Python thread to finish
/// (see the module notes): the backlog, the rest of the iterator, `close()`.
pub struct Resume {
    /// The request's `start_response`, which holds its responder.
    start_response: Py<StartResponse>,
    /// The iterable (for `close()`) and its iterator, to run on; `None` when
    /// the iteration and `close()` are done and only the backlog is left.
    rest: Option<(Py<PyAny>, Py<PyIterator>)>,
}

impl Resume {
    /// Finishes the response; blocks (GIL released) while the client is slow.
    pub fn run(self, py: Python<'_>) {
        let sr = self.start_response.bind(py);
        let start_response = sr.get();
        let flushed = start_response.responder().leave_inline(py);
        let Some((iterable, iterator)) = self.rest else {
            if let Err(failure) = flushed {
                failure.log(py, &start_response.responder().label());
            }
            return;
        };
        let delivered =
            flushed.and_then(|()| stream_rest(py, start_response, iterator.into_bound(py)));
        complete(py, start_response, iterable.bind(py), delivered);
    }
}

/// Sends the response for the application's result, then calls `close()`.
/// Returns what is left to do on a Python thread when running inline.
pub fn run(
    py: Python<'_>,
    sr: &Bound<'_, StartResponse>,
    result: PyResult<Bound<'_, PyAny>>,
) -> Option<Resume> {
    let start_response = sr.get();
    let iterable = match result {
        Ok(iterable) => iterable,
        Err(e) => {
            start_response.responder().fail(py, Failure::Exception(e));
            return backlog_left(sr);
        }
    };
    match deliver(py, start_response, &iterable) {
        Ok(Delivered::Suspended(iterator)) => {
            return Some(Resume {
                start_response: sr.clone().unbind(),
                rest: Some((iterable.unbind(), iterator.unbind())),
            })
        }
        delivered => complete(py, start_response, &iterable, delivered),
    }
    backlog_left(sr)
}

/// A `Resume` that only sends the backlog, if chunks are left in it.
fn backlog_left(sr: &Bound<'_, StartResponse>) -> Option<Resume> {
    sr.get().responder().is_backlogged().then(|| Resume {
        start_response: sr.clone().unbind(),
        rest: None,
    })
}

/// Calls `close()`, then ends the response as `delivered` says.
fn complete(
    py: Python<'_>,
    start_response: &StartResponse,
    iterable: &Bound<'_, PyAny>,
    delivered: Result<Delivered<'_>, Failure>,
) {
    let closed = close(py, iterable);
    let mut responder = start_response.responder();
    let outcome = match (delivered, closed) {
        (Ok(Delivered::Whole(body)), Ok(())) => responder.send_full(py, body),
        (Ok(_), Ok(())) => responder.finish(py),
        (Ok(_), Err(e)) => Err(Failure::Exception(e)),
        (Err(failure), Ok(())) => Err(failure),
        (Err(failure), Err(e)) => {
            Failure::Exception(e).log(py, &responder.label());
            Err(failure)
        }
    };
    if let Err(failure) = outcome {
        responder.fail(py, failure);
    }
}

/// Sends what the iterable yields; a list or tuple is returned whole instead,
/// to be sent after `close()`.
fn deliver<'py>(
    py: Python<'py>,
    start_response: &StartResponse,
    iterable: &Bound<'py, PyAny>,
) -> Result<Delivered<'py>, Failure> {
    if let Ok(list) = iterable.cast::<PyList>() {
        return collect(list.iter()).map(Delivered::Whole);
    }
    if let Ok(tuple) = iterable.cast::<PyTuple>() {
        return collect(tuple.iter()).map(Delivered::Whole);
    }
    reject_non_iterables(iterable)?;
    let iterator = iterable.try_iter().map_err(|_| {
        Failure::protocol(format!(
            "the application returned {}, which is not iterable; \
             PEP 3333 requires an iterable of bytestrings",
            describe(iterable)
        ))
    })?;
    stream_rest(py, start_response, iterator)
}

/// Sends the chunks `iterator` yields, until it ends or (inline) the stream
/// buffer is full.
fn stream_rest<'py>(
    py: Python<'py>,
    start_response: &StartResponse,
    mut iterator: Bound<'py, PyIterator>,
) -> Result<Delivered<'py>, Failure> {
    if start_response.responder().is_backlogged() {
        return Ok(Delivered::Suspended(iterator)); // write() filled the buffer
    }
    while let Some(item) = iterator.next() {
        let item = item.map_err(Failure::Exception)?;
        let chunk = item.cast::<PyBytes>().map_err(|_| bad_chunk(&item))?;
        if chunk.as_bytes().is_empty() {
            continue;
        }
        let mut responder = start_response.responder();
        if responder.is_head_request() {
            return responder.skip_head_body().map(|()| Delivered::Streamed);
        }
        responder.write(py, chunk)?;
        if responder.is_backlogged() {
            return Ok(Delivered::Suspended(iterator));
        }
    }
    Ok(Delivered::Streamed)
}

/// Joins the bytes of a list or tuple body; a single item is taken as it is
/// (shared, not copied, when large).
fn collect<'py>(
    mut items: impl ExactSizeIterator<Item = Bound<'py, PyAny>>,
) -> Result<Bytes, Failure> {
    let as_bytes = |item: &Bound<'py, PyAny>| -> Result<Bound<'py, PyBytes>, Failure> {
        item.cast::<PyBytes>().cloned().map_err(|_| bad_chunk(item))
    };
    if items.len() == 1 {
        let item = items.next().expect("one item");
        return as_bytes(&item).map(|chunk| body_bytes(&chunk));
    }
    let mut body = BytesMut::new();
    for item in items {
        body.extend_from_slice(as_bytes(&item)?.as_bytes());
    }
    Ok(body.freeze())
}

/// The failure for a chunk that is not `bytes`.
fn bad_chunk(item: &Bound<'_, PyAny>) -> Failure {
    Failure::protocol(format!(
        "the application's iterable yielded {}; PEP 3333 requires an iterable of \
         bytestrings (bytes, not str: encode the text)",
        describe(item)
    ))
}

/// The usual mistakes, named: a `str` (Python 2 era tutorials), `bytes`
/// (iterable, but of ints), `None` (a forgotten `return`).
fn reject_non_iterables(value: &Bound<'_, PyAny>) -> Result<(), Failure> {
    let what = if value.is_none() {
        "None (did it forget to return the body?)".to_owned()
    } else if value.is_instance_of::<PyString>() {
        format!(
            "a str ({}); return [body.encode()] instead",
            describe(value)
        )
    } else if value.is_instance_of::<PyBytes>() {
        format!(
            "a bare bytes object ({}); return [body] instead",
            describe(value)
        )
    } else {
        return Ok(());
    };
    Err(Failure::protocol(format!(
        "the application returned {what}. PEP 3333 requires an iterable of bytestrings"
    )))
}

/// Calls `iterable.close()` if it has one (PEP 3333: exactly once). A plain
/// list or tuple has none: asking would build and drop an AttributeError.
fn close(py: Python<'_>, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
    if iterable.is_exact_instance_of::<PyList>() || iterable.is_exact_instance_of::<PyTuple>() {
        return Ok(());
    }
    if iterable.hasattr(intern!(py, "close"))? {
        iterable.call_method0(intern!(py, "close"))?;
    }
    Ok(())
}
