//! `--static PREFIX=DIR`: files answered by Rust, never by the application.
//!
//! Rules:
//! - A request whose path lies under a PREFIX ([`under_prefix`], whole
//!   segments; the longest prefix wins) is answered here, whatever the
//!   answer: the file, 304, 206/416, or 404 for a missing file, a
//!   directory (no listings), a refused path ([`path`]) or a symlink that
//!   leads outside DIR ([`confined`]). Any other request goes on.
//! - GET and HEAD only; any other method is 405 with `Allow: GET, HEAD`
//!   (RFC 9110 §15.5.6).
//! - tower-http's `ServeDir` does the HTTP: `Content-Type` from the
//!   extension, `Last-Modified` and a strong `ETag` (size and mtime),
//!   `If-None-Match`/`If-Modified-Since` → 304 and `If-Match`/
//!   `If-Unmodified-Since` → 412 (RFC 9110 §13.1, §13.2.2), one `Range` →
//!   206 or 416 (§14), HEAD, and a `.br`/`.zst`/`.gz` sibling when the
//!   client's `Accept-Encoding` takes it (with `Content-Encoding` and
//!   `Vary: accept-encoding`).
//! - Added here: `Cache-Control: public, max-age=N` (`--static-max-age`,
//!   RFC 9111 §5.2.2.1) on 200, 206 and 304, and a short text body on the
//!   errors `ServeDir` leaves empty.
//! - A body of up to [`WHOLE`] bytes is read at once and leaves with the
//!   head. A larger one (a 200 or a 206) leaves as [`BodySource::File`]:
//!   the descriptor the confined backend opened (never reopened by path)
//!   and the region `ServeDir` chose (the range of a 206), which the
//!   HTTP/1.1 engine sends with `sendfile(2)` and the other engines read
//!   in chunks; memory stays flat whatever the file's size.

mod confined;
mod path;

use std::io;
use std::path::Path;
use std::sync::Arc;

use http::{header, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use tower_http::services::fs::{ServeDir, ServeFileSystemResponseBody};

use crate::exchange::{BodySource, Dispatch, FileRegion, Job, Request, ResponseStart, Stopped};
use crate::exchange::{FILE_CHUNK, SERVER_HEADER};
use crate::middleware::{adapt, under_prefix};
use confined::Confined;

/// Bodies up to this many bytes (stylesheets, scripts, icons: most of a
/// site's static files) are read whole before the head goes out.
const WHOLE: u64 = 64 * 1024;

/// One `--static` route.
struct Route {
    /// URL prefix, as `under_prefix` takes it.
    prefix: String,
    /// The directory's server.
    serve: ServeDir<tower_http::services::fs::DefaultServeDirFallback, Confined>,
}

/// A [`Dispatch`] that answers requests under its prefixes from their
/// directories and hands every other request to the next one.
pub struct StaticFiles {
    inner: Arc<dyn Dispatch>,
    /// Longest prefix first, so the first match is the longest.
    routes: Arc<[Route]>,
    /// `Cache-Control` of the answers that carry the file or stand for it.
    cache_control: HeaderValue,
}

impl StaticFiles {
    /// Serves `statics` (prefix, absolute directory) before `inner`;
    /// `max_age`: seconds a client may keep a file without asking again.
    pub fn new(
        inner: Arc<dyn Dispatch>,
        statics: &[(String, std::path::PathBuf)],
        max_age: std::time::Duration,
    ) -> Self {
        let mut routes: Vec<Route> = statics.iter().map(|(p, dir)| route(p, dir)).collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let cache_control = format!("public, max-age={}", max_age.as_secs());
        StaticFiles {
            inner,
            routes: routes.into(),
            // Digits and ASCII only: always a valid value.
            cache_control: HeaderValue::try_from(cache_control)
                .unwrap_or(HeaderValue::from_static("no-cache")),
        }
    }

    /// The index of the route that takes `path`, if any.
    fn route_for(&self, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| under_prefix(&r.prefix, path).is_some())
    }
}

fn route(prefix: &str, dir: &Path) -> Route {
    let serve = ServeDir::with_backend(dir, Confined::new(dir))
        .append_index_html_on_directories(false)
        .precompressed_br()
        .precompressed_zstd()
        .precompressed_gzip()
        .with_buf_chunk_size(FILE_CHUNK);
    Route {
        prefix: prefix.to_owned(),
        serve,
    }
}

impl Dispatch for StaticFiles {
    fn dispatch(&self, job: Job) -> Result<(), Stopped> {
        let Some(index) = self.route_for(job.request.http.uri().path()) else {
            return self.inner.dispatch(job);
        };
        let routes = self.routes.clone();
        let cache_control = self.cache_control.clone();
        tokio::spawn(async move {
            let start = answer(&routes[index], job.request, cache_control).await;
            // The client may have gone: nobody to answer.
            let _ = job.reply.send(start);
        });
        Ok(())
    }
}

/// The answer to `request` from `route`.
async fn answer(route: &Route, request: Request, cache_control: HeaderValue) -> ResponseStart {
    let (mut parts, _body) = request.http.into_parts();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return method_not_allowed();
    }
    let rest = under_prefix(&route.prefix, parts.uri.path()).unwrap_or("");
    if !path::is_safe(rest) {
        tracing::info!("static: refused path {:?}", parts.uri.path());
        return ResponseStart::plain(StatusCode::NOT_FOUND, false);
    }
    let Ok(uri) = http::Uri::try_from(if rest.is_empty() { "/" } else { rest }) else {
        return ResponseStart::plain(StatusCode::NOT_FOUND, false);
    };
    parts.uri = uri;
    let request = http::Request::from_parts(parts, http_body_util::Empty::<bytes::Bytes>::new());
    let serve = async { route.serve.clone().try_call(request).await };
    let (served, opened) = confined::capture(serve).await;
    match served {
        Ok(response) => finish(response, opened, cache_control).await,
        Err(e) if is_not_found(&e) => ResponseStart::plain(StatusCode::NOT_FOUND, false),
        Err(e) => {
            tracing::error!("static: {e}");
            ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, false)
        }
    }
}

/// `ServeDir`'s response as the seam's: `Cache-Control` on what stands for
/// the file, a text body on the errors it leaves empty.
/// `opened`: the file `ServeDir` opened for the body, if it opened one.
async fn finish(
    mut response: http::Response<ServeFileSystemResponseBody>,
    opened: Option<Arc<std::fs::File>>,
    cache_control: HeaderValue,
) -> ResponseStart {
    match response.status() {
        StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED => {
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, cache_control);
            headers.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
            let length = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            match (length, opened) {
                (Some(n), _) if n > 0 && n <= WHOLE => whole(response).await,
                (Some(n), Some(file)) if n > 0 => from_file(response, file, n),
                _ => adapt::response_start(response),
            }
        }
        StatusCode::METHOD_NOT_ALLOWED => method_not_allowed(),
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let headers = response.headers_mut();
            headers.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
            adapt::response_start(response)
        }
        status => ResponseStart::plain(status, false),
    }
}

/// `response` with its (short) body read now: head and body then leave in
/// one write, without a task and a channel of their own.
async fn whole(response: http::Response<ServeFileSystemResponseBody>) -> ResponseStart {
    let (parts, body) = response.into_parts();
    match body.collect().await {
        Ok(collected) => head_with(parts, BodySource::Full(collected.to_bytes())),
        Err(e) => {
            tracing::error!("static: {e}");
            ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, true)
        }
    }
}

/// `response` with its body sent from `file` (of which `len` bytes are
/// the body): the region its `Content-Range` names on a 206, else the whole
/// file. `ServeDir`'s own body (which reads the same file) is dropped
/// unread.
fn from_file(
    response: http::Response<ServeFileSystemResponseBody>,
    file: Arc<std::fs::File>,
    len: u64,
) -> ResponseStart {
    let offset = match response.status() {
        StatusCode::PARTIAL_CONTENT => response
            .headers()
            .get(header::CONTENT_RANGE)
            .and_then(|v| range_start(v.as_bytes())),
        _ => Some(0),
    };
    let Some(offset) = offset else {
        return adapt::response_start(response);
    };
    let (parts, body) = response.into_parts();
    drop(body); // its share of the file
    match Arc::try_unwrap(file).or_else(|shared| shared.try_clone()) {
        Ok(file) => head_with(parts, BodySource::File(FileRegion { file, offset, len })),
        Err(e) => {
            tracing::error!("static: {e}");
            ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, false)
        }
    }
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/SIZE` value
/// (RFC 9110 §14.4).
fn range_start(value: &[u8]) -> Option<u64> {
    let range = value.strip_prefix(b"bytes ")?;
    let first = &range[..range.iter().position(|&b| b == b'-')?];
    std::str::from_utf8(first).ok()?.parse().ok()
}

/// The seam's head of `parts`, with `body`.
fn head_with(parts: http::response::Parts, body: BodySource) -> ResponseStart {
    let empty = http_body_util::Empty::<bytes::Bytes>::new();
    let mut start = adapt::response_start(http::Response::from_parts(parts, empty));
    start.body = body;
    start
}

/// 405 with the methods a static route takes (RFC 9110 §15.5.6).
fn method_not_allowed() -> ResponseStart {
    let mut start = ResponseStart::plain(StatusCode::METHOD_NOT_ALLOWED, false);
    // A constant, valid field.
    let _ = start.headers.push(b"Allow", b"GET, HEAD");
    start
}

/// Whether `e` means "no such file here" (as `ServeDir` itself reads it:
/// missing, not allowed, or a path through a file: ENOTDIR).
fn is_not_found(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied | io::ErrorKind::NotADirectory
    ) || e.raw_os_error() == Some(libc::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_of_a_content_range() {
        assert_eq!(range_start(b"bytes 0-9/10"), Some(0));
        assert_eq!(range_start(b"bytes 70000-2000000/3145735"), Some(70000));
        for bad in [&b"bytes */10"[..], b"items 1-2/3", b"bytes 1", b""] {
            assert_eq!(range_start(bad), None);
        }
    }
}
