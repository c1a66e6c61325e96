//! The gateway: PEP 3333 between a parsed request and the application.
//!
//! `Gateway::handle` runs on a Python thread with the GIL held: it builds the
//! environ (`environ.rs`), calls the application with a `start_response`
//! (`start_response.rs`), and sends what comes back (`response.rs` runs the
//! result into the `responder.rs` state machine). Errors never escape: every
//! failure becomes a 500 or a closed connection, and a log line (`errors.rs`).

pub mod dispatch;
pub mod environ;
pub mod errors;
pub mod file_wrapper;
pub mod input;
pub mod pool;
pub mod responder;
pub mod response;
pub mod start_response;

use pyo3::prelude::*;

use crate::config::ServerConfig;
use crate::exchange::Job;
use crate::log::{self, Severity};
use crate::wsgi::environ::EnvironTemplate;
use crate::wsgi::errors::Failure;
use crate::wsgi::responder::Responder;
use crate::wsgi::response::Resume;
use crate::wsgi::start_response::StartResponse;

/// The application and what is needed to call it.
pub struct Gateway {
    app: Py<PyAny>,
    environ: EnvironTemplate,
}

impl Gateway {
    /// A gateway calling `app`.
    ///
    /// # Errors
    /// A Python error if the environ template cannot be built.
    pub fn new(py: Python<'_>, app: Py<PyAny>, config: &ServerConfig) -> PyResult<Self> {
        Ok(Gateway {
            app,
            environ: EnvironTemplate::new(py, config)?,
        })
    }

    /// Runs one request through the application and answers it (on a
    /// Python thread: may block while the client is slow).
    pub fn handle(&self, py: Python<'_>, job: Job) {
        if let Some(resume) = self.call(py, job, false) {
            resume.run(py); // not reached: only inline calls suspend
        }
    }

    /// As `handle`, on the I/O thread, which must not block: returns what is
    /// left to do on a Python thread when the response outgrew the stream
    /// buffer.
    pub fn handle_inline(&self, py: Python<'_>, job: Job) -> Option<Resume> {
        self.call(py, job, true)
    }

    fn call(&self, py: Python<'_>, job: Job, inline: bool) -> Option<Resume> {
        let Job { request, reply } = job;
        let responder = Responder::new(
            reply,
            request.http.method().clone(),
            request.http.uri().clone(),
            inline,
        );
        let sr = match Bound::new(py, StartResponse::new(responder)) {
            Ok(sr) => sr,
            Err(e) => {
                log::emit(Severity::Error, &format!("cannot answer a request: {e}"));
                return None;
            }
        };
        match self.environ.build(py, request) {
            Ok(environ) => {
                let result = self.app.bind(py).call1((environ, &sr));
                response::run(py, &sr, result)
            }
            Err(e) => {
                sr.get().responder().fail(py, Failure::Exception(e));
                None
            }
        }
    }
}
