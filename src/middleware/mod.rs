//! Middleware on the seam: steps between the protocol engines and the
//! gateway, each a [`Dispatch`](crate::exchange::Dispatch) wrapping the next.
//!
//! - [`forwarded`]: the client's address and scheme from a trusted proxy's
//!   `X-Forwarded-For`/`X-Forwarded-Proto` or `Forwarded` (RFC 7239) header.
//! - [`compress`]: `--compress`, gzip/br/zstd on the way out.
//! - [`mount`]: several applications side by side, by URL prefix.
//! - [`forward`]: `--forward`, requests under a prefix sent to remote
//!   backends, round-robin, through a pooled HTTP client.
//! - [`options`]: the middleware's options (`MiddlewareConfig`).
//! - [`static_files`]: `--static PREFIX=DIR`, files answered without the
//!   application (tower-http's `ServeDir`, kept inside DIR).
//! - [`adapt`]: a response from a `tower`/`http_body` service as the seam's
//!   [`ResponseStart`](crate::exchange::ResponseStart), and back.
//!
//! The order a request meets them in ([`stack`]): forwarded headers, then
//! compression (which acts on the way out), static files, forwarding to
//! remote backends, mounting by prefix, and the application.

pub mod adapt;
pub mod compress;
pub mod forward;
pub mod forwarded;
pub mod mount;
pub mod options;
pub mod static_files;

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::exchange::Dispatch;
/// The prefix rule every layer (and the gateway's SCRIPT_NAME) keeps.
pub use crate::exchange::{under_prefix, under_prefix_bytes};
use compress::Compress;
use forwarded::Forwarded;
use static_files::StaticFiles;

/// The middleware `config` asks for, around `app` (the gateway's dispatch),
/// outermost first. `mounts`: the URL prefixes of the applications the
/// gateway holds, in its order (empty: one application, no routing).
pub fn stack(
    config: &ServerConfig,
    mounts: &[String],
    app: Arc<dyn Dispatch>,
) -> Arc<dyn Dispatch> {
    let middleware = &config.middleware;
    let mut dispatch = app;
    if !mounts.is_empty() {
        dispatch = Arc::new(mount::Mount::new(dispatch, mounts, &config.script_name));
    }
    if !middleware.forwards.is_empty() {
        dispatch = Arc::new(forward::Forward::new(dispatch, config));
    }
    if !middleware.statics.is_empty() {
        dispatch = Arc::new(StaticFiles::new(
            dispatch,
            &middleware.statics,
            middleware.static_max_age,
        ));
    }
    if middleware.compress {
        dispatch = Arc::new(Compress::new(dispatch));
    }
    if crate::metrics::enabled() {
        dispatch = Arc::new(CountBodies(dispatch));
    }
    Arc::new(Forwarded::new(dispatch, config.forwarded_allow_ips.clone()))
}

/// Counts request body bytes for the metrics (`--metrics-bind`), for every
/// request that crosses the seam, whoever answers it.
struct CountBodies(Arc<dyn Dispatch>);

impl Dispatch for CountBodies {
    fn dispatch(&self, job: crate::exchange::Job) -> Result<(), crate::exchange::Stopped> {
        crate::metrics::record_request_body(job.request.http.body().len());
        self.0.dispatch(job)
    }
}

#[cfg(test)]
mod tests {
    use super::{under_prefix, under_prefix_bytes};

    #[test]
    fn prefixes_match_whole_segments() {
        assert_eq!(under_prefix("/api", "/api"), Some(""));
        assert_eq!(under_prefix("/api", "/api/"), Some("/"));
        assert_eq!(under_prefix("/api", "/api/x/y"), Some("/x/y"));
        assert_eq!(under_prefix("/api", "/apix"), None);
        assert_eq!(under_prefix("/api", "/ap"), None);
        assert_eq!(under_prefix("/a/b", "/a/b/c"), Some("/c"));
        assert_eq!(under_prefix("/", "/anything"), Some("/anything"));
        assert_eq!(
            under_prefix("", "/x"),
            Some("/x"),
            "no prefix takes every path"
        );
        assert_eq!(under_prefix_bytes(b"/a", b"/a/\xff"), Some(&b"/\xff"[..]));
    }
}
