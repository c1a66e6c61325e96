//! Several applications in one server, by URL prefix (`--mount
//! PREFIX=APP`, `ferrowsgi.mount`).
//!
//! Rules (PEP 3333 "environ Variables", RFC 3875 §4.1.5 and §4.1.13):
//! - A prefix takes whole path segments ([`under_prefix`](super::under_prefix)):
//!   `/api` takes `/api` and `/api/x`, never `/apix`. The longest prefix
//!   that matches wins; `/` takes whatever no other one does.
//! - Matching is on the percent-decoded path after the server's own
//!   SCRIPT_NAME, the same bytes PATH_INFO is made of, so the application
//!   sees SCRIPT_NAME + PATH_INFO as the whole path.
//! - The prefix moves from PATH_INFO to the end of SCRIPT_NAME; a request
//!   for exactly `/api` gets PATH_INFO `''`.
//! - No prefix matches (and nothing is mounted at `/`): 404, answered here
//!   without calling Python.

use std::borrow::Cow;
use std::sync::Arc;

use http::StatusCode;
use percent_encoding::percent_decode;

use super::under_prefix_bytes;
use crate::exchange::{Dispatch, Job, Mounted, ResponseStart, Stopped};

/// A [`Dispatch`] that marks each request with the application it goes to
/// ([`Mounted`]), or answers 404.
pub struct Mount {
    inner: Arc<dyn Dispatch>,
    /// (prefix, application index), longest prefix first.
    routes: Vec<(String, usize)>,
    /// The server's SCRIPT_NAME, stripped first.
    script_name: String,
}

impl Mount {
    /// Routes to the applications whose prefixes are `prefixes` (index `i`
    /// is the gateway's application `i`); `script_name`: the server's own
    /// mount point (`--script-name`, empty at the root).
    pub fn new(inner: Arc<dyn Dispatch>, prefixes: &[String], script_name: &str) -> Self {
        let mut routes: Vec<(String, usize)> = prefixes.iter().cloned().zip(0..).collect();
        routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Mount {
            inner,
            routes,
            script_name: script_name.to_owned(),
        }
    }

    /// The application for the raw (percent-encoded) `path`, if any.
    pub fn route(&self, path: &str) -> Option<Mounted> {
        let decoded: Cow<'_, [u8]> = percent_decode(path.as_bytes()).into();
        let path = under_prefix_bytes(self.script_name.as_bytes(), &decoded).unwrap_or(&decoded);
        self.routes.iter().find_map(|(prefix, app)| {
            under_prefix_bytes(prefix.as_bytes(), path).map(|rest| Mounted {
                app: *app,
                prefix_len: path.len() - rest.len(),
            })
        })
    }
}

impl Dispatch for Mount {
    fn dispatch(&self, mut job: Job) -> Result<(), Stopped> {
        match self.route(job.request.http.uri().path()) {
            Some(mounted) => {
                job.request.http.extensions_mut().insert(mounted);
                self.inner.dispatch(job)
            }
            None => {
                // The client may have left: nothing to answer then.
                let _ = job
                    .reply
                    .send(ResponseStart::plain(StatusCode::NOT_FOUND, false));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nowhere;

    impl Dispatch for Nowhere {
        fn dispatch(&self, _job: Job) -> Result<(), Stopped> {
            Err(Stopped)
        }
    }

    fn mount(prefixes: &[&str], script_name: &str) -> Mount {
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        Mount::new(Arc::new(Nowhere), &prefixes, script_name)
    }

    #[test]
    fn the_longest_whole_segment_prefix_wins() {
        let m = mount(&["/", "/api", "/api/v2"], "");
        let at = |app, prefix_len| Some(Mounted { app, prefix_len });
        assert_eq!(m.route("/api/v2/x"), at(2, 7));
        assert_eq!(m.route("/api/v2"), at(2, 7));
        assert_eq!(m.route("/api/v20"), at(1, 4));
        assert_eq!(m.route("/api"), at(1, 4));
        assert_eq!(m.route("/apix"), at(0, 0));
        assert_eq!(m.route("/%61pi/x"), at(1, 4), "matched on the decoded path");
        assert_eq!(mount(&["/api"], "").route("/other"), None);
    }

    #[test]
    fn the_server_script_name_comes_first() {
        let m = mount(&["/admin", "/"], "/site");
        assert_eq!(
            m.route("/site/admin/x"),
            Some(Mounted {
                app: 0,
                prefix_len: 6
            })
        );
        assert_eq!(
            m.route("/site/x"),
            Some(Mounted {
                app: 1,
                prefix_len: 0
            })
        );
    }
}
