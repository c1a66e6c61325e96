//! Middleware on the seam: steps between the protocol engines and the
//! gateway, each a [`Dispatch`](crate::exchange::Dispatch) wrapping the next.
//!
//! - [`forwarded`]: the client's address and scheme from a trusted proxy's
//!   `X-Forwarded-For`/`X-Forwarded-Proto` or `Forwarded` (RFC 7239) header.
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
pub mod forwarded;
pub mod options;
pub mod static_files;

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::exchange::Dispatch;
use forwarded::Forwarded;
use static_files::StaticFiles;

/// The middleware `config` asks for, around `app` (the gateway's dispatch),
/// outermost first.
pub fn stack(config: &ServerConfig, app: Arc<dyn Dispatch>) -> Arc<dyn Dispatch> {
    let middleware = &config.middleware;
    let mut dispatch = app;
    if !middleware.statics.is_empty() {
        dispatch = Arc::new(StaticFiles::new(
            dispatch,
            &middleware.statics,
            middleware.static_max_age,
        ));
    }
    Arc::new(Forwarded::new(dispatch, config.forwarded_allow_ips.clone()))
}

/// The rest of `path` when it lies under `prefix` by whole segments, RFC
/// 3986 §3.3 (`/api` takes `/api`, `/api/` and `/api/x`, not `/apix`): `""`
/// for the prefix itself, else a part that starts with `/`. The prefix `/`
/// takes every path and leaves it whole. `prefix` has no trailing slash
/// (but for `/`).
pub fn under_prefix<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    if prefix == "/" {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::under_prefix;

    #[test]
    fn prefixes_match_whole_segments() {
        assert_eq!(under_prefix("/api", "/api"), Some(""));
        assert_eq!(under_prefix("/api", "/api/"), Some("/"));
        assert_eq!(under_prefix("/api", "/api/x/y"), Some("/x/y"));
        assert_eq!(under_prefix("/api", "/apix"), None);
        assert_eq!(under_prefix("/api", "/ap"), None);
        assert_eq!(under_prefix("/a/b", "/a/b/c"), Some("/c"));
        assert_eq!(under_prefix("/", "/anything"), Some("/anything"));
    }
}
