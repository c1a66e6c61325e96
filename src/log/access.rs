//! The access log: one line per request answered, by every engine, written
//! by Rust (no GIL) to a file or stdout in the compiled [`AccessFormat`].
//!
//! Rules this module keeps:
//! - A record is made when the request head arrives ([`AccessRecord::start`]),
//!   or, for a request refused before it was understood, from the peer alone
//!   ([`AccessRecord::unparsed`]: request line `-`); it is written once, when
//!   the response is over ([`AccessRecord::write`]).
//! - A record keeps only what its format shows: the header fields the format
//!   names, the basic-auth user only when `%(u)s` (or JSON) asks.
//! - The line is built outside the lock; the lock covers one `write_all`.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, Version};

use super::format::{AccessFormat, REQUEST_ID};
use crate::exchange::ResponseHeaders;

/// Where access-log lines go, and in which format; `None` when it is off.
pub(super) struct Sink {
    pub(super) out: Box<dyn Write + Send>,
    pub(super) format: Arc<AccessFormat>,
}

/// The access log's sink; `None` when the access log is off.
pub(super) static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Whether access-log lines are wanted (so callers can skip building them).
pub fn access_enabled() -> bool {
    SINK.lock().map(|s| s.is_some()).unwrap_or(false)
}

/// The format of this request's record, and whether a line is written:
/// `None` when neither the access log nor the metrics want a record.
fn current_format() -> Option<(Arc<AccessFormat>, bool)> {
    let guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(sink) => Some((sink.format.clone(), true)),
        None if crate::metrics::enabled() => Some((metrics_only(), false)),
        None => None,
    }
}

/// A format that keeps nothing, for records made only for the metrics.
fn metrics_only() -> Arc<AccessFormat> {
    static EMPTY: std::sync::OnceLock<Arc<AccessFormat>> = std::sync::OnceLock::new();
    EMPTY
        .get_or_init(|| Arc::new(AccessFormat::compile("").expect("the empty format compiles")))
        .clone()
}

/// What the request line said, when it was understood.
#[derive(Debug)]
struct Line {
    method: Method,
    /// The target as sent (`/path?query`).
    target: String,
    version: Version,
}

/// One request, as the access log records it.
#[derive(Debug)]
pub struct AccessRecord {
    format: Arc<AccessFormat>,
    /// Whether a line is written (else the record is for the metrics only).
    logged: bool,
    /// Counts the request in flight for the metrics until written or dropped.
    in_flight: Option<crate::metrics::InFlight>,
    /// Client address (`REMOTE_ADDR`); `None` for a unix socket client.
    pub(super) remote: Option<IpAddr>,
    /// When the request head arrived (wall clock, for `%(t)s`).
    pub(super) started: SystemTime,
    /// The same instant, for the duration.
    began: Instant,
    line: Option<Line>,
    pub(super) referer: Option<HeaderValue>,
    pub(super) user_agent: Option<HeaderValue>,
    /// The user name of `Authorization: Basic` (RFC 7617), when asked for.
    pub(super) user: Option<String>,
    /// The format's request fields, in its order.
    request_fields: Vec<Option<HeaderValue>>,
    /// The format's response fields, in its order.
    response_fields: Vec<Option<Vec<u8>>>,
    /// Response status code (0 until answered).
    pub(super) status: u16,
    /// Response body bytes sent.
    pub(super) bytes: u64,
    /// From the request head to the end of the response.
    pub(super) duration: Duration,
}

impl AccessRecord {
    /// The record of a request whose head just arrived from `peer` (`None`:
    /// a unix socket client); `None` when the access log is off. Every
    /// engine makes its records here.
    pub fn start(
        method: &Method,
        uri: &Uri,
        version: Version,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Option<Self> {
        let mut record = Self::blank(current_format()?, peer);
        let format = record.format.clone();
        record.line = Some(Line {
            method: method.clone(),
            target: uri.to_string(),
            version,
        });
        record.referer = headers.get(http::header::REFERER).cloned();
        record.user_agent = headers.get(http::header::USER_AGENT).cloned();
        if format.wants_user {
            record.user = headers
                .get(http::header::AUTHORIZATION)
                .and_then(basic_user);
        }
        record.request_fields = format
            .request_fields
            .iter()
            .map(|name| headers.get(name).cloned())
            .collect();
        Some(record)
    }

    /// The record of a request refused before it was understood (a bad or
    /// too large head, a timeout): only the peer is known.
    pub fn unparsed(peer: Option<SocketAddr>) -> Option<Self> {
        Some(Self::blank(current_format()?, peer))
    }

    fn blank((format, logged): (Arc<AccessFormat>, bool), peer: Option<SocketAddr>) -> Self {
        let wanted = (format.request_fields.len(), format.response_fields.len());
        AccessRecord {
            format,
            logged,
            in_flight: crate::metrics::enabled().then(crate::metrics::request_started),
            remote: peer.map(|p| p.ip()),
            started: SystemTime::now(),
            began: Instant::now(),
            line: None,
            referer: None,
            user_agent: None,
            user: None,
            request_fields: vec![None; wanted.0],
            response_fields: vec![None; wanted.1],
            status: 0,
            bytes: 0,
            duration: Duration::ZERO,
        }
    }

    /// Notes the response head: its status and the fields the format shows.
    pub fn answered(&mut self, status: StatusCode, headers: &ResponseHeaders) {
        self.status = status.as_u16();
        for (slot, name) in self
            .response_fields
            .iter_mut()
            .zip(&self.format.response_fields)
        {
            *slot = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.as_str().as_bytes()))
                .map(|(_, v)| v.to_vec());
        }
    }

    /// Notes the status of a response made without fields worth logging.
    pub fn set_status(&mut self, status: StatusCode) {
        self.status = status.as_u16();
    }

    /// Closes the record: `bytes` of body sent and the time taken until now;
    /// the metrics count the request as answered. Whether a line is wanted
    /// ([`AccessRecord::write`], in `line.rs`, writes it).
    pub(super) fn finish(&mut self, bytes: u64) -> bool {
        self.bytes = bytes;
        self.duration = self.began.elapsed();
        if let Some(in_flight) = self.in_flight.take() {
            let method = self.line.as_ref().map(|l| &l.method);
            in_flight.finish(method, self.status, bytes, self.duration);
        }
        self.logged
    }

    /// The compiled format this record is written in.
    pub(super) fn format(&self) -> &AccessFormat {
        &self.format
    }

    /// `GET /path?q HTTP/1.1`, when the request line was understood.
    pub(super) fn request_line(&self) -> Option<String> {
        let l = self.line.as_ref()?;
        Some(format!("{} {} {}", l.method, l.target, protocol(l.version)))
    }

    pub(super) fn method(&self) -> Option<&str> {
        self.line.as_ref().map(|l| l.method.as_str())
    }

    pub(super) fn target(&self) -> Option<&str> {
        self.line.as_ref().map(|l| l.target.as_str())
    }

    /// The path as sent (percent-encoded), without the query.
    pub(super) fn path(&self) -> Option<&str> {
        let target = self.target()?;
        Some(target.split_once('?').map_or(target, |(path, _)| path))
    }

    /// The query string as sent; empty when there is none (QUERY_STRING).
    pub(super) fn query(&self) -> Option<&str> {
        let target = self.target()?;
        Some(target.split_once('?').map_or("", |(_, query)| query))
    }

    pub(super) fn protocol(&self) -> Option<&'static str> {
        self.line.as_ref().map(|l| protocol(l.version))
    }

    pub(super) fn request_field(&self, i: usize) -> Option<&[u8]> {
        self.request_fields
            .get(i)?
            .as_ref()
            .map(HeaderValue::as_bytes)
    }

    pub(super) fn response_field(&self, i: usize) -> Option<&[u8]> {
        self.response_fields.get(i)?.as_deref()
    }

    /// The `X-Request-ID` request field (JSON's `request_id`).
    pub(super) fn request_id(&self) -> Option<&[u8]> {
        let i = self
            .format
            .request_fields
            .iter()
            .position(|f| *f == REQUEST_ID)?;
        self.request_field(i)
    }
}

/// `HTTP/1.1` (SERVER_PROTOCOL's spelling).
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// The user name of `Authorization: Basic BASE64(user:password)` (RFC 7617
/// §2): the decoded text before the first `:`; `None` for another scheme or
/// a value that is not base64 of UTF-8 (gunicorn's `_get_user`).
pub(super) fn basic_user(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let user = decoded.split(|&b| b == b':').next()?;
    String::from_utf8(user.to_vec()).ok()
}

/// Appends a finished `line` to the access log, under the lock.
pub(super) fn append(line: &[u8]) {
    let mut guard = SINK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(sink) = guard.as_mut() {
        let _ = sink.out.write_all(line);
    }
}

/// Opens the access-log destination: `"-"` is stdout, else a file path,
/// appended to.
pub(super) fn open(path: &str) -> io::Result<Box<dyn Write + Send>> {
    Ok(match path {
        "-" => Box::new(io::LineWriter::new(io::stdout())),
        path => Box::new(io::LineWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_users() {
        let user = |v: &'static str| basic_user(&HeaderValue::from_static(v));
        assert_eq!(user("Basic YWxpY2U6c2VjcmV0"), Some("alice".to_owned()));
        assert_eq!(user("basic  Ym9iOg== "), Some("bob".to_owned()));
        assert_eq!(user("Bearer YWxpY2U6c2VjcmV0"), None);
        assert_eq!(user("Basic !!!"), None);
    }
}
