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
use pyo3::types::PyString;

use crate::config::ServerConfig;
use crate::exchange::{Job, Mounted};
use crate::log::{self, Severity};
use crate::wsgi::environ::EnvironTemplate;
use crate::wsgi::errors::Failure;
use crate::wsgi::responder::Responder;
use crate::wsgi::response::Resume;
use crate::wsgi::start_response::StartResponse;

/// The application (or the applications mounted side by side) and what is
/// needed to call it.
pub struct Gateway {
    apps: Vec<Application>,
    /// The prefix of each of `apps` when `app` was a `ferrowsgi.mount`
    /// (`middleware::mount` routes by them); empty otherwise.
    mounts: Vec<String>,
    environ: EnvironTemplate,
}

/// One application and its SCRIPT_NAME when it is mounted under a prefix.
struct Application {
    app: Py<PyAny>,
    script_name: Option<Py<PyString>>,
}

impl Gateway {
    /// A gateway calling `app`. A `ferrowsgi.mount.Mount` is not called
    /// itself: the applications it holds are, each under its prefix (the
    /// same rules, applied in Rust: `middleware::mount`).
    ///
    /// # Errors
    /// A Python error if the environ template cannot be built, or a
    /// `Mount`'s routes cannot be read.
    pub fn new(py: Python<'_>, app: Py<PyAny>, config: &ServerConfig) -> PyResult<Self> {
        let (apps, mounts) = if is_mount(app.bind(py))? {
            let routes: Vec<(String, Py<PyAny>)> = app.bind(py).getattr("routes")?.extract()?;
            let apps = routes
                .iter()
                .map(|(prefix, app)| Application {
                    app: app.clone_ref(py),
                    script_name: (prefix != "/").then(|| {
                        PyString::new(py, &(config.script_name.clone() + prefix)).unbind()
                    }),
                })
                .collect();
            (apps, routes.into_iter().map(|(prefix, _)| prefix).collect())
        } else {
            let only = Application {
                app,
                script_name: None,
            };
            (vec![only], Vec::new())
        };
        Ok(Gateway {
            apps,
            mounts,
            environ: EnvironTemplate::new(py, config)?,
        })
    }

    /// The URL prefixes of the applications mounted side by side, in the
    /// order [`Mounted::app`] counts them; empty for one application.
    pub fn mounts(&self) -> &[String] {
        &self.mounts
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
        let mounted = request.http.extensions().get::<Mounted>().copied();
        let app = &self.apps[mounted.map_or(0, |m| m.app).min(self.apps.len() - 1)];
        let mount = mounted
            .zip(app.script_name.as_ref())
            .map(|(m, script_name)| (script_name, m.prefix_len));
        match self.environ.build(py, request, mount) {
            Ok(environ) => {
                let result = app.app.bind(py).call1((environ, &sr));
                response::run(py, &sr, result)
            }
            Err(e) => {
                sr.get().responder().fail(py, Failure::Exception(e));
                None
            }
        }
    }
}

/// Whether `app` is a `ferrowsgi.mount.Mount` (by its type's qualified name:
/// the gateway never imports the package).
fn is_mount(app: &Bound<'_, PyAny>) -> PyResult<bool> {
    let name = app.get_type().fully_qualified_name()?;
    Ok(name.to_str()? == "ferrowsgi.mount.Mount")
}
