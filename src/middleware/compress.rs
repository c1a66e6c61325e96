//! `--compress`: gzip, br or zstd on the way out, for every response the
//! layers inside it make (the application's, forwarded ones, static files).
//!
//! Rules (RFC 9110 §8.4, §12.5.3; nginx's `gzip` module for what to leave
//! alone):
//! - The coding is the one the request's `Accept-Encoding` prefers
//!   ([`coding::choose`]); none (no field, `identity`, `q=0` everywhere):
//!   the response goes out unchanged.
//! - Only compressible types ([`compressible`]): `text/*`, JSON, JavaScript,
//!   XML and the `+json`/`+xml` types (SVG among them). Only bodies of at
//!   least [`MIN_SIZE`] when the length is known (a Content-Length, a whole
//!   body); a streamed body of unknown length is compressed.
//! - Never for HEAD, 1xx/204/304, 206 or any `Content-Range`, a response
//!   that already has a `Content-Encoding`, or `Cache-Control:
//!   no-transform` (RFC 9111 §5.2.2.6).
//! - `Vary: Accept-Encoding` is added (merged into an existing `Vary`)
//!   whenever the response could have been compressed, compressed or not,
//!   so that caches keep the variants apart (RFC 9110 §12.5.5).
//! - A compressed response loses Content-Length and Accept-Ranges (the
//!   engine frames it: chunked on HTTP/1.1); a strong `ETag` becomes weak,
//!   as the bytes are no longer the same (RFC 9110 §8.8.3).
//! - The body is compressed as it comes: the encoder flushes whenever the
//!   application has nothing more ready, so each chunk a generator yields
//!   reaches the client without waiting for the next (async-compression's
//!   encoders, under tower-http's `Compression`). A body the application
//!   cut short stays cut short: the connection is closed, the compressed
//!   stream never ends cleanly.
//! - A response left uncompressed keeps its body as it was (no extra task
//!   or channel for the body). Its head is looked at right in `dispatch`
//!   when the answer is already there (inline mode, `--threads 1`); else a
//!   small task waits for it and hands it on (one oneshot hop, about 0.5 µs
//!   of CPU per request on hello). Avoiding that task would mean running
//!   this code on the application's thread under the GIL, or a hook in the
//!   seam that every engine calls.

pub mod coding;

use std::future::{ready, Future, Ready};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Extensions, Method, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::oneshot::{self, error::TryRecvError};
use tower_http::compression::{Compression, CompressionLevel};
use tower_service::Service;

use crate::exchange::{BodySource, Dispatch, Job, ResponseHeaders, ResponseStart, Stopped};
use crate::middleware::adapt::{response_start, Aborted, SourceBody};
use coding::Coding;

/// Bodies shorter than this (bytes) are not worth compressing: the coding's
/// own framing and the CPU cost eat what it saves.
pub const MIN_SIZE: u64 = 1024;

/// A [`Dispatch`] that compresses the responses of the one it wraps.
pub struct Compress {
    inner: Arc<dyn Dispatch>,
}

impl Compress {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Dispatch>) -> Self {
        Compress { inner }
    }
}

impl Dispatch for Compress {
    fn dispatch(&self, job: Job) -> Result<(), Stopped> {
        let Job { request, reply } = job;
        let coding = if request.http.method() == Method::HEAD {
            None
        } else {
            coding::choose(request.http.headers())
        };
        let (inner_reply, mut answer) = oneshot::channel();
        self.inner.dispatch(Job {
            request,
            reply: inner_reply,
        })?;
        match answer.try_recv() {
            // Answered already (inline mode, a layer that answers at once).
            Ok(start) => {
                let _ = reply.send(outgoing(start, coding));
            }
            Err(TryRecvError::Empty) => {
                tokio::spawn(async move {
                    if let Ok(start) = answer.await {
                        let _ = reply.send(outgoing(start, coding));
                    }
                });
            }
            // No answer will come: dropping `reply` tells the engine so.
            Err(TryRecvError::Closed) => {}
        }
        Ok(())
    }
}

/// `start` as it goes to a client that accepts `coding` (`None`: no coding
/// at all, or a HEAD request).
pub fn outgoing(mut start: ResponseStart, coding: Option<Coding>) -> ResponseStart {
    let head = Head::read(&start.headers);
    if !head.compressible || head.encoded || head.no_transform {
        return start;
    }
    match coding {
        Some(coding) if may_compress(&start, &head) => compressed(start, &head, coding),
        _ => {
            if !head.varies {
                start.headers = with_vary(&start.headers);
            }
            start
        }
    }
}

/// What the response's fields say about compressing it, in one pass.
#[derive(Debug, Default)]
struct Head {
    /// The Content-Type is one worth compressing.
    compressible: bool,
    /// A Content-Encoding is set (by the application, or a precompressed
    /// static file).
    encoded: bool,
    /// A Content-Range is set: the body is a part of something.
    ranged: bool,
    /// `Cache-Control: no-transform`.
    no_transform: bool,
    /// `Vary` names Accept-Encoding or `*` already.
    varies: bool,
}

impl Head {
    fn read(headers: &ResponseHeaders) -> Self {
        let mut head = Head::default();
        for (name, value) in headers.iter() {
            let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
            if is("content-type") {
                head.compressible = compressible(value);
            } else if is("content-encoding") {
                head.encoded = true;
            } else if is("content-range") {
                head.ranged = true;
            } else if is("cache-control") {
                head.no_transform |= has_token(value, "no-transform");
            } else if is("vary") {
                head.varies |= has_token(value, "accept-encoding") || has_token(value, "*");
            }
        }
        head
    }
}

/// Whether a response whose type is compressible may be compressed: not
/// bodiless, not a range, not known to be shorter than [`MIN_SIZE`].
fn may_compress(start: &ResponseStart, head: &Head) -> bool {
    let status = start.status;
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless || status == StatusCode::PARTIAL_CONTENT || head.ranged {
        return false;
    }
    let known = match &start.body {
        BodySource::Full(data) => Some(data.len() as u64),
        BodySource::File(region) => Some(region.len),
        BodySource::Short(_) | BodySource::Stream(_) => start.headers.content_length(),
    };
    known.is_none_or(|n| n >= MIN_SIZE)
}

/// Whether a Content-Type value names a compressible media type: `text/*`,
/// `application/json`, `application/javascript`, `application/xml`, or
/// any `+json`/`+xml` type (`image/svg+xml`, `application/ld+json`).
pub fn compressible(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    let ends = |suffix: &[u8]| essence.ends_with(suffix);
    essence.starts_with(b"text/")
        || matches!(
            &essence[..],
            b"application/json" | b"application/javascript" | b"application/xml"
        )
        || ends(b"+json")
        || ends(b"+xml")
}

/// Whether a comma-separated field value holds `token` (case-insensitive;
/// a directive's `=value` is ignored).
fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|item| {
        let name = item.split(|&b| b == b'=').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(token.as_bytes())
    })
}

/// `headers` with Accept-Encoding added to Vary: appended as a field of its
/// own when there is no Vary, else merged into one Vary field where the
/// first one was.
fn with_vary(headers: &ResponseHeaders) -> ResponseHeaders {
    let mut vary: Vec<&[u8]> = Vec::new();
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case(b"vary") && !value.trim_ascii().is_empty() {
            vary.push(value.trim_ascii());
        }
    }
    if vary.is_empty() {
        let mut out = headers.clone();
        let _ = out.push(b"Vary", b"Accept-Encoding");
        return out;
    }
    vary.push(b"Accept-Encoding");
    let merged = vary.join(&b", "[..]);
    let mut out = ResponseHeaders::with_capacity(headers.as_bytes().len() + 24);
    let mut placed = false;
    for (name, value) in headers.iter() {
        // Fields already in `headers` passed `push`'s checks: it cannot refuse them.
        if !name.eq_ignore_ascii_case(b"vary") {
            let _ = out.push(name, value);
        } else if !placed {
            let _ = out.push(name, &merged);
            placed = true;
        }
    }
    out
}

/// `start` compressed with `coding` by tower-http's `Compression`, its body
/// read (and compressed) on a task of its own.
fn compressed(start: ResponseStart, head: &Head, coding: Coding) -> ResponseStart {
    let ResponseStart {
        status,
        reason,
        headers,
        body,
    } = start;
    let mut fields = headers.to_header_map();
    if !head.varies {
        let merged = with_vary(&headers).to_header_map();
        fields.remove(header::VARY);
        for value in merged.get_all(header::VARY) {
            fields.append(header::VARY, value.clone());
        }
    }
    weaken_etag(&mut fields);
    let mut response = http::Response::new(FlushBeforeError::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = fields;
    let mut request = http::Request::new(());
    request.headers_mut().insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    let always = |_: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| true;
    let mut service = Compression::new(Given(Some(response)))
        .quality(CompressionLevel::Default)
        .compress_when(always);
    let Some(Ok(response)) = now(service.call(request)) else {
        // `Given` answers at once and only once; this is never reached.
        return ResponseStart::plain(StatusCode::INTERNAL_SERVER_ERROR, true);
    };
    let mut start = response_start(response);
    start.reason = reason;
    start
}

/// A strong `ETag` made weak (`W/"x"`): the compressed bytes are a
/// different representation, equal only semantically.
fn weaken_etag(fields: &mut HeaderMap) {
    let Some(etag) = fields.get(header::ETAG) else {
        return;
    };
    if etag.as_bytes().starts_with(b"W/") {
        return;
    }
    let weak = [b"W/", etag.as_bytes()].concat();
    if let Ok(weak) = HeaderValue::from_bytes(&weak) {
        fields.insert(header::ETAG, weak);
    }
}

/// The application's body, with its error (an abort) held back for one
/// poll: the encoder above first sees "nothing ready", flushes what it
/// has, and only then the error. So the client gets every byte the
/// application made before it failed, as it would uncompressed.
struct FlushBeforeError {
    body: SourceBody,
    held: Option<Aborted>,
}

impl FlushBeforeError {
    fn new(source: BodySource) -> Self {
        FlushBeforeError {
            body: SourceBody::new(source),
            held: None,
        }
    }
}

impl Body for FlushBeforeError {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        if let Some(error) = self.held.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Err(error))) => {
                self.held = Some(error);
                // Asked again at once; the encoder flushes in between.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_none() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A service that answers with the response it holds (one already made):
/// how a finished response enters tower-http's `Compression`.
struct Given(Option<http::Response<FlushBeforeError>>);

/// `Given` was called a second time.
#[derive(Debug)]
struct Spent;

impl Service<http::Request<()>> for Given {
    type Response = http::Response<FlushBeforeError>;
    type Error = Spent;
    type Future = Ready<Result<Self::Response, Spent>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Spent>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<()>) -> Self::Future {
        ready(self.0.take().ok_or(Spent))
    }
}

/// The output of `future` if it is ready on its first poll.
fn now<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    use crate::exchange::Chunk;
    use tokio::sync::mpsc;

    fn start(status: u16, fields: &[(&str, &str)], body: BodySource) -> ResponseStart {
        let mut headers = ResponseHeaders::default();
        for (name, value) in fields {
            headers.push(name.as_bytes(), value.as_bytes()).unwrap();
        }
        ResponseStart {
            status: StatusCode::from_u16(status).unwrap(),
            reason: None,
            headers,
            body,
        }
    }

    fn field(start: &ResponseStart, name: &str) -> Option<String> {
        let values: Vec<String> = start
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(" | "))
    }

    fn text(n: usize) -> BodySource {
        BodySource::Full(Bytes::from("x".repeat(n)))
    }

    #[test]
    fn compressible_types() {
        for yes in [
            "text/html",
            "text/plain; charset=utf-8",
            "TEXT/CSS",
            "application/json",
            "application/problem+json",
            "application/javascript",
            "text/javascript",
            "application/xml",
            "application/atom+xml",
            " image/svg+xml ;charset=utf-8",
        ] {
            assert!(compressible(yes.as_bytes()), "{yes}");
        }
        for no in [
            "image/png",
            "application/octet-stream",
            "application/zip",
            "application/jsonx",
            "video/mp4",
            "",
        ] {
            assert!(!compressible(no.as_bytes()), "{no}");
        }
    }

    /// (status, fields, body size, coding, whether Vary is added).
    type Case<'a> = (u16, &'a [(&'a str, &'a str)], usize, Option<Coding>, bool);

    #[tokio::test]
    async fn what_is_left_alone() {
        let html = ("Content-Type", "text/html");
        let cases: &[Case] = &[
            (200, &[html], 100, Some(Coding::Gzip), true),
            (
                200,
                &[html, ("Content-Length", "100")],
                100,
                Some(Coding::Gzip),
                true,
            ),
            (200, &[html], 5000, None, true),
            (204, &[html], 0, Some(Coding::Gzip), true),
            (304, &[html], 0, Some(Coding::Gzip), true),
            (
                206,
                &[html, ("Content-Range", "bytes 0-4999/9999")],
                5000,
                Some(Coding::Gzip),
                true,
            ),
            (
                200,
                &[html, ("Content-Encoding", "gzip")],
                5000,
                Some(Coding::Gzip),
                false,
            ),
            (
                200,
                &[html, ("Cache-Control", "public, No-Transform")],
                5000,
                Some(Coding::Brotli),
                false,
            ),
            (
                200,
                &[("Content-Type", "image/png")],
                5000,
                Some(Coding::Zstd),
                false,
            ),
            (200, &[], 5000, Some(Coding::Zstd), false),
        ];
        for (status, fields, size, coding, vary) in cases {
            let out = outgoing(start(*status, fields, text(*size)), *coding);
            assert_eq!(
                field(&out, "content-encoding").is_some(),
                fields.iter().any(|f| f.0 == "Content-Encoding"),
                "{fields:?}"
            );
            assert_eq!(field(&out, "vary").is_some(), *vary, "{status} {fields:?}");
            let BodySource::Full(body) = out.body else {
                panic!("body changed: {status} {fields:?}")
            };
            assert_eq!(body.len(), *size);
        }
    }

    #[tokio::test]
    async fn vary_is_merged() {
        let fields = [
            ("Content-Type", "text/html"),
            ("Vary", "Cookie"),
            ("X-A", "1"),
            ("vary", "Origin"),
        ];
        let out = outgoing(start(200, &fields, text(10)), Some(Coding::Gzip));
        assert_eq!(
            field(&out, "vary").unwrap(),
            "Cookie, Origin, Accept-Encoding"
        );
        assert_eq!(field(&out, "x-a").unwrap(), "1");
        let already = [("Content-Type", "text/html"), ("Vary", "accept-encoding")];
        let out = outgoing(start(200, &already, text(10)), None);
        assert_eq!(field(&out, "vary").unwrap(), "accept-encoding");
        let compressed = outgoing(start(200, &fields, text(5000)), Some(Coding::Gzip));
        assert_eq!(
            field(&compressed, "vary").unwrap(),
            "Cookie, Origin, Accept-Encoding"
        );
    }

    /// Reads a streamed body to its end: the bytes, and whether it aborted.
    async fn drain(body: BodySource) -> (Vec<u8>, bool) {
        let BodySource::Stream(mut rx) = body else {
            panic!("not streamed")
        };
        let mut out = Vec::new();
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Data(data) => out.extend_from_slice(&data),
                Chunk::Abort => return (out, true),
            }
        }
        (out, false)
    }

    fn gunzip(data: &[u8]) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(data)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[tokio::test]
    async fn a_whole_body_is_compressed() {
        let fields = [
            ("Content-Type", "application/json"),
            ("Content-Length", "5000"),
            ("ETag", "\"abc\""),
            ("Accept-Ranges", "bytes"),
        ];
        let mut response = start(200, &fields, text(5000));
        response.reason = Some(Bytes::from_static(b"Fine"));
        let out = outgoing(response, Some(Coding::Gzip));
        assert_eq!(field(&out, "content-encoding").unwrap(), "gzip");
        assert_eq!(field(&out, "etag").unwrap(), "W/\"abc\"");
        assert_eq!(field(&out, "content-length"), None);
        assert_eq!(field(&out, "accept-ranges"), None);
        assert_eq!(out.reason.as_deref(), Some(&b"Fine"[..]));
        let (body, aborted) = drain(out.body).await;
        assert!(!aborted && body.len() < 200);
        assert_eq!(gunzip(&body), "x".repeat(5000));
    }

    #[tokio::test]
    async fn each_chunk_is_flushed_and_an_abort_stays_one() {
        let (tx, rx) = mpsc::channel(4);
        let fields = [("Content-Type", "text/plain")];
        let out = outgoing(
            start(200, &fields, BodySource::Stream(rx)),
            Some(Coding::Gzip),
        );
        let BodySource::Stream(mut out) = out.body else {
            panic!("not streamed")
        };
        tx.send(Chunk::Data(Bytes::from_static(b"first chunk")))
            .await
            .unwrap();
        // The first chunk comes out, decodable, before a second one exists.
        let mut got = Vec::new();
        while !got.ends_with(&[0, 0, 0xff, 0xff]) {
            let next = tokio::time::timeout(Duration::from_secs(5), out.recv()).await;
            let Ok(Some(Chunk::Data(data))) = next else {
                panic!("no flushed output: {next:?}")
            };
            got.extend_from_slice(&data);
        }
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        std::io::Write::write_all(&mut decoder, &got).unwrap();
        std::io::Write::flush(&mut decoder).unwrap();
        assert_eq!(decoder.get_ref(), b"first chunk");
        tx.send(Chunk::Abort).await.unwrap();
        let (_, aborted) = drain(BodySource::Stream(out)).await;
        assert!(aborted, "an abort became a clean end");
    }

    #[tokio::test]
    async fn a_short_body_stays_short() {
        let fields = [("Content-Type", "text/plain"), ("Content-Length", "9000")];
        let short = BodySource::Short(Bytes::from("y".repeat(4000)));
        let out = outgoing(start(200, &fields, short), Some(Coding::Zstd));
        assert_eq!(field(&out, "content-encoding").unwrap(), "zstd");
        let (_, aborted) = drain(out.body).await;
        assert!(aborted);
    }

    #[tokio::test]
    async fn what_came_before_an_abort_is_flushed_first() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"made before the error")))
            .await
            .unwrap();
        tx.send(Chunk::Abort).await.unwrap();
        let fields = [("Content-Type", "text/plain")];
        let out = outgoing(
            start(200, &fields, BodySource::Stream(rx)),
            Some(Coding::Gzip),
        );
        let (body, aborted) = drain(out.body).await;
        assert!(aborted);
        let mut decoder = flate2::write::GzDecoder::new(Vec::new());
        std::io::Write::write_all(&mut decoder, &body).unwrap();
        std::io::Write::flush(&mut decoder).unwrap();
        assert_eq!(decoder.get_ref(), b"made before the error");
    }
}
