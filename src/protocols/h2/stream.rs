//! One HTTP/2 stream: hyper's request in, the request buffered and handed
//! across the seam, the application's answer out as hyper's response.
//!
//! Rules kept here:
//! - `:authority` becomes the `Host` field when the request has none (so the
//!   environ gets HTTP_HOST and SERVER_NAME from it); a `Host` that names
//!   another authority is a malformed request (RFC 9113 §8.3.1): 400. The
//!   target goes across in origin-form (`:path`), as HTTP/1.1's does.
//! - Cookie fields, which HTTP/2 clients may split one per cookie, are
//!   joined with "; " into one (RFC 9113 §8.2.3), as HTTP/1.1 sends them:
//!   HTTP_COOKIE is what an application expects.
//! - The head keeps the HTTP/1.1 limits (414, 431); the body is buffered
//!   whole before dispatch (413 past `max_body_size`, 408 when it stalls).
//! - Response fields are the application's minus the connection-specific
//!   ones HTTP/2 forbids (RFC 9113 §8.2.2), plus `server` (and hyper's
//!   `date`) when the application set none. No body goes out for HEAD, 1xx,
//!   204 or 304 (RFC 9110 §6.4.1); a streamed one is dropped unread, so the
//!   gateway closes the iterable.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use super::body::{Finished, ResponseBody};
use super::StreamCtx;
use crate::exchange::{self, BodySource, Job, RequestBody, ResponseStart, SERVER_HEADER};
use crate::log::AccessRecord;
use crate::protocols::body::{BodyError, BodyLimits, BodySink};
use crate::protocols::{Limits, Settings, Shared};

/// Fields that are meaningful only to one HTTP/1.1 connection, which an
/// HTTP/2 response must not carry (RFC 9113 §8.2.2; TE only in requests).
const CONNECTION_SPECIFIC: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("proxy-connection"),
    header::TE,
];

/// A request the server answers itself: the status and why (for the debug
/// log).
struct Refusal(StatusCode, &'static str);

/// Serves one stream: hyper calls this once per request.
pub(super) async fn handle(
    request: http::Request<Incoming>,
    ctx: Arc<StreamCtx>,
) -> Result<Response<ResponseBody>, Infallible> {
    let mut finished = Finished::new(ctx.activity.clone());
    let bodiless_request = request.method() == Method::HEAD;
    let start = match answer(request, &ctx, &mut finished).await {
        Ok(start) => start,
        Err(Refusal(status, why)) => {
            tracing::debug!(
                "{}: refused an HTTP/2 request: {status} {why}",
                super::peer_name(ctx.conn.peer)
            );
            ResponseStart::plain(status, false)
        }
    };
    Ok(response(start, bodiless_request, finished))
}

/// Reads the request (head checks, body), runs it, and returns the answer.
async fn answer(
    request: http::Request<Incoming>,
    ctx: &StreamCtx,
    finished: &mut Finished,
) -> Result<ResponseStart, Refusal> {
    let (mut parts, body) = request.into_parts();
    let settings = &ctx.shared.settings;
    // The record is made before the head's checks: a refused stream is logged too.
    let p = &parts;
    let target = origin_form(&p.uri);
    finished.access = AccessRecord::start(&p.method, &target, p.version, &p.headers, ctx.conn.peer);
    prepare(&mut parts, &settings.limits)?;
    let declared = content_length(&parts.headers)?;
    let has_body_framing = declared.is_some() || !hyper::body::Body::is_end_stream(&body);
    let body = read_body(body, declared, settings).await?;
    let http = http::Request::from_parts(parts, body);
    let request = exchange::Request::new(http, has_body_framing, &ctx.conn);
    Ok(call(request, &ctx.shared).await)
}

/// The target as `:path` gave it (hyper makes HTTP/2 request URIs absolute).
fn origin_form(uri: &Uri) -> Uri {
    uri.path_and_query()
        .map_or_else(|| uri.clone(), |path| Uri::from(path.clone()))
}

/// The head's checks and rewrites: limits, `Host` from `:authority`, the
/// target in origin-form.
fn prepare(parts: &mut Parts, limits: &Limits) -> Result<(), Refusal> {
    join_cookies(&mut parts.headers);
    check_limits(parts, limits)?;
    if let Some(authority) = parts.uri.authority() {
        let value = HeaderValue::from_str(authority.as_str())
            .map_err(|_| Refusal(StatusCode::BAD_REQUEST, "bad :authority"))?;
        match parts.headers.get(header::HOST) {
            None => {
                parts.headers.insert(header::HOST, value);
            }
            Some(host) if host.as_bytes().eq_ignore_ascii_case(value.as_bytes()) => {}
            Some(_) => {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "Host differs from :authority",
                ))
            }
        }
    }
    parts.uri = origin_form(&parts.uri);
    Ok(())
}

/// Joins the `cookie` fields into one, separated by "; " (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (crumbs.next(), crumbs.next()) else {
        return; // none, or one: nothing to join
    };
    let mut joined = first.as_bytes().to_vec();
    for crumb in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(crumb.as_bytes());
    }
    // Valid field values joined by "; " make a valid field value.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// The HTTP/1.1 head limits, applied to HTTP/2's head: the `:path` like a
/// request line (414), the fields by count and by size (431).
fn check_limits(parts: &Parts, limits: &Limits) -> Result<(), Refusal> {
    let path_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if path_len > limits.max_request_line {
        return Err(Refusal(StatusCode::URI_TOO_LONG, "path too long"));
    }
    let too_large = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    if parts.headers.len() > limits.max_fields {
        return Err(Refusal(too_large, "too many header fields"));
    }
    let longest = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len())
        .max();
    if longest.is_some_and(|n| n > limits.max_field_size) {
        return Err(Refusal(too_large, "header field too long"));
    }
    Ok(())
}

/// The declared body length, if any (h2 checked it is one number and that
/// the DATA frames match it).
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    let bad = || Refusal(StatusCode::BAD_REQUEST, "bad content-length");
    let text = value.to_str().map_err(|_| bad())?;
    text.trim().parse().map(Some).map_err(|_| bad())
}

/// Buffers the whole request body (memory, then a temporary file).
async fn read_body(
    mut body: Incoming,
    declared: Option<u64>,
    settings: &Settings,
) -> Result<RequestBody, Refusal> {
    if declared.is_some_and(|n| n > settings.max_body_size) {
        return Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large",
        ));
    }
    let limits = BodyLimits {
        max_size: settings.max_body_size,
        memory: settings.body_buffer_size,
    };
    let mut sink = BodySink::new(limits, declared);
    loop {
        let frame = tokio::time::timeout(settings.body_timeout, body.frame()).await;
        let data = match frame {
            Err(_) => {
                return Err(Refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body timed out",
                ))
            }
            Ok(None) => break,
            Ok(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            // The stream was reset or the connection broke: no one will
            // read an answer.
            Ok(Some(Err(_))) => return Err(Refusal(StatusCode::BAD_REQUEST, "stream reset")),
        };
        sink.push(data).map_err(body_error)?;
    }
    sink.finish().map_err(|e| body_error(BodyError::Spill(e)))
}

fn body_error(e: BodyError) -> Refusal {
    match e {
        BodyError::TooLarge => Refusal(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        BodyError::Spill(e) => {
            tracing::error!("cannot spill a request body to a temporary file: {e}");
            Refusal(StatusCode::INTERNAL_SERVER_ERROR, "cannot store the body")
        }
    }
}

/// Hands the request to the gateway and waits for the response head.
async fn call(request: exchange::Request, shared: &Shared) -> ResponseStart {
    let (reply, answer) = oneshot::channel();
    if shared.dispatch.dispatch(Job { request, reply }).is_err() {
        return ResponseStart::plain(StatusCode::SERVICE_UNAVAILABLE, false);
    }
    answer
        .await
        .unwrap_or_else(|_| ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, false))
}

/// hyper's response for `start`; `bodiless_request`: a HEAD request.
fn response(
    start: ResponseStart,
    bodiless_request: bool,
    mut finished: Finished,
) -> Response<ResponseBody> {
    let status = start.status;
    finished.status = status.as_u16();
    if let Some(record) = finished.access.as_mut() {
        record.answered(status, &start.headers);
    }
    let mut headers = start.headers.to_header_map();
    for name in &CONNECTION_SPECIFIC {
        headers.remove(name);
    }
    if !start.headers.has_server() {
        headers.insert(header::SERVER, HeaderValue::from_static(SERVER_HEADER));
    }
    let bodiless = bodiless_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let body = match start.body {
        // A streamed body is dropped unread: the gateway closes it.
        _ if bodiless => ResponseBody::empty(finished),
        BodySource::Full(bytes) => ResponseBody::full(bytes, finished),
        BodySource::Short(bytes) => ResponseBody::short(bytes, finished),
        BodySource::Stream(rx) => ResponseBody::stream(rx, finished),
        BodySource::File(region) => ResponseBody::stream(region.into_chunks(), finished),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> Parts {
        let mut request = http::Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn authority_becomes_host_and_the_target_origin_form() {
        let mut p = parts("http://example.com:8080/a%20b?x=1", None);
        prepare(&mut p, &Limits::default()).ok().unwrap();
        assert_eq!(p.headers["host"], "example.com:8080");
        assert_eq!(p.uri, "/a%20b?x=1");
        let mut p = parts("http://example.com/", Some("EXAMPLE.com"));
        assert!(prepare(&mut p, &Limits::default()).is_ok());
        let mut p = parts("http://example.com/", Some("evil.example"));
        let refused = prepare(&mut p, &Limits::default()).err().unwrap();
        assert_eq!(refused.0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn cookie_crumbs_are_joined() {
        let mut p = parts("http://h/", None);
        for crumb in ["a=1", "b=2", "c=3"] {
            p.headers.append("cookie", HeaderValue::from_static(crumb));
        }
        prepare(&mut p, &Limits::default()).ok().unwrap();
        let cookies: Vec<_> = p.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn head_limits_apply() {
        let limits = Limits {
            max_request_line: 10,
            max_fields: 2,
            max_field_size: 20,
        };
        let status = |p: &mut Parts| prepare(p, &limits).err().map(|r| r.0);
        assert_eq!(
            status(&mut parts("http://h/0123456789", None)),
            Some(StatusCode::URI_TOO_LONG)
        );
        let mut p = parts("http://h/", None);
        p.headers
            .insert("x-a", HeaderValue::from_static("0123456789abcdefghij"));
        assert_eq!(
            status(&mut p),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let mut p = parts("http://h/", None);
        p.headers.insert("x-a", HeaderValue::from_static("1"));
        p.headers.insert("x-b", HeaderValue::from_static("1"));
        p.headers.insert("x-c", HeaderValue::from_static("1"));
        assert_eq!(
            status(&mut p),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
    }
}
