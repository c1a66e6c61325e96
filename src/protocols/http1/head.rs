//! Request heads: httparse tokenizes, and our RFC 9112 rules run over its
//! result in the same pass, before a single byte reaches the gateway.
//!
//! Rules kept here (RFC 9112 unless said otherwise):
//! - Lines end in CRLF; a bare LF anywhere in a head is 400 (§2.2 lets us
//!   reject rather than guess; httparse would accept it), a bare CR too.
//!   Empty lines before a request line are skipped (§2.2).
//! - Request line (§3): `token SP target SP HTTP/D.D`, single spaces; a bad
//!   method, target or version is 400, a major version other than 1 is 505,
//!   `HTTP/1.2`+ is served as HTTP/1.1 (RFC 9110 §2.5); a line over
//!   `max_request_line` bytes is 414. Authority-form only with CONNECT,
//!   asterisk-form only with OPTIONS (§3.2); target bytes are visible ASCII.
//! - Field lines (§5): a token name, no whitespace before the colon, no
//!   obs-fold, no control characters in the value but HTAB; more than
//!   `max_fields` fields or a line over `max_field_size` bytes is 431.
//! - Host: exactly one on HTTP/1.1, at most one on HTTP/1.0 (§3.2).
//! - Framing (§6): Content-Length with Transfer-Encoding, two Content-Length
//!   fields, a Content-Length that is not 1*DIGIT or past 2^63 - 1: 400.
//!   Transfer-Encoding on HTTP/1.0, `chunked` not last or twice: 400; any
//!   other coding: 501 (RFC 9110 §15.6.2).
//! - Expect (RFC 9110 §10.1.1): only `100-continue`, else 417; ignored (and
//!   removed) on HTTP/1.0.
//! - Persistence (§9.3): HTTP/1.1 keeps the connection unless `Connection:
//!   close`; HTTP/1.0 only with `Connection: keep-alive`.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, EXPECT};
use http::{HeaderMap, Method, Uri, Version};

use super::{reject, Limits, Rejection};

/// How the body of a request is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request head that passed every rule.
#[derive(Debug)]
pub struct Head {
    /// Request method.
    pub method: Method,
    /// Request target.
    pub uri: Uri,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: Version,
    /// Header fields, in arrival order; values share the head's buffer.
    pub headers: HeaderMap,
    /// How the body is framed.
    pub framing: Framing,
    /// Whether the client asked to keep the connection open (§9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
}

/// Where a field line lies in the head: name and value, as byte ranges.
#[derive(Debug, Clone, Copy)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

impl Span {
    fn name(&self) -> Range<usize> {
        self.name.0 as usize..self.name.1 as usize
    }
    fn value(&self) -> Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }
}

/// What httparse found, as ranges into the head (so the head can be frozen
/// into shared `Bytes` that header values point into without a copy).
struct Tokens {
    method: Range<usize>,
    target: Range<usize>,
    minor: u8,
    len: usize,
    fields: usize,
}

/// Field lines kept on the stack per parse; more (a raised
/// `--limit-request-fields`) go to the heap.
const STACK_FIELDS: usize = 128;

/// Parses the request head at the start of `buf`, removing it from `buf`.
///
/// `Ok(None)`: the head is not complete yet (empty lines before it are
/// dropped already). Every limit that can be checked early is.
///
/// # Errors
/// The [`Rejection`] of an invalid head.
pub fn parse(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Head>, Rejection> {
    let blank = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    buf.advance(blank);
    if buf.is_empty() {
        return Ok(None);
    }
    if limits.max_fields < STACK_FIELDS {
        // Not zeroed: `tokenize` writes each span before it is read.
        let mut spans = [MaybeUninit::<Span>::uninit(); STACK_FIELDS];
        parse_with(buf, limits, &mut spans[..=limits.max_fields])
    } else {
        let mut spans = vec![MaybeUninit::<Span>::uninit(); limits.max_fields + 1];
        parse_with(buf, limits, &mut spans)
    }
}

fn parse_with(
    buf: &mut BytesMut,
    limits: &Limits,
    spans: &mut [MaybeUninit<Span>],
) -> Result<Option<Head>, Rejection> {
    let tokens = match tokenize(buf, spans) {
        Ok(Some(tokens)) => tokens,
        Ok(None) => return check_partial(buf, limits).map(|()| None),
        Err(httparse::Error::Version) => return odd_version(buf, limits),
        Err(httparse::Error::TooManyHeaders) => return Err(reject(431, "too many header fields")),
        Err(e) => return Err(reject(400, error_reason(e))),
    };
    let head = buf.split_to(tokens.len).freeze();
    // SAFETY: `tokenize` wrote the first `tokens.fields` spans, and a
    // `MaybeUninit<Span>` has the layout of a `Span`.
    let spans = unsafe { &*(&raw const spans[..tokens.fields] as *const [Span]) };
    check_line_ends(&head, spans)?;
    build(&head, &tokens, spans, limits).map(Some)
}

/// Runs httparse; `Ok(None)` while the head is incomplete.
fn tokenize(
    buf: &[u8],
    spans: &mut [MaybeUninit<Span>],
) -> Result<Option<Tokens>, httparse::Error> {
    // An array of `MaybeUninit`: nothing is written until httparse fills it.
    let mut headers: [MaybeUninit<httparse::Header<'_>>; STACK_FIELDS] =
        [const { MaybeUninit::uninit() }; STACK_FIELDS];
    let mut heap;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if spans.len() <= STACK_FIELDS {
        &mut headers[..spans.len()]
    } else {
        heap = Vec::with_capacity(spans.len());
        heap.resize_with(spans.len(), MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots)? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let at = |s: &[u8]| s.as_ptr() as usize - buf.as_ptr() as usize;
    let range = |s: &[u8]| at(s)..at(s) + s.len();
    for (span, field) in spans.iter_mut().zip(req.headers.iter()) {
        let (name, value) = (range(field.name.as_bytes()), range(field.value));
        span.write(Span {
            name: (name.start as u32, name.end as u32),
            value: (value.start as u32, value.end as u32),
        });
    }
    // Complete: httparse filled method, path and version.
    let (Some(method), Some(path), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(httparse::Error::Token);
    };
    Ok(Some(Tokens {
        method: range(method.as_bytes()),
        target: range(path.as_bytes()),
        minor,
        len,
        fields: req.headers.len(),
    }))
}

/// Limits that can be enforced before the head is complete, so a client
/// cannot make us buffer an endless line.
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), Rejection> {
    if memchr::memchr(b'\n', buf).is_none() && buf.len() > limits.max_request_line + 2 {
        return Err(reject(414, "request line too long"));
    }
    if buf.len() > limits.max_head() {
        return Err(reject(431, "request header section too large"));
    }
    Ok(())
}

/// httparse knows only `HTTP/1.0` and `HTTP/1.1`: decide the others once
/// the request line is complete (RFC 9110 §2.5: 1.2+ is served as 1.1).
fn odd_version(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Head>, Rejection> {
    let Some(end) = memchr::memchr(b'\n', buf) else {
        return check_partial(buf, limits).map(|()| None);
    };
    let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    let at = line.len() - version.len();
    let parts = line.split(|&b| b == b' ').count();
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if parts == 3 && major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(reject(505, "HTTP version not supported"));
            }
            if *minor < b'2' {
                // httparse refused the line for another reason.
                return Err(reject(400, "malformed request line"));
            }
            let mut served = buf.clone();
            served[at + 7] = b'1';
            let head = parse(&mut served, limits)?;
            if head.is_some() {
                buf.advance(buf.len() - served.len());
            }
            Ok(head)
        }
        _ => Err(reject(400, "invalid HTTP version")),
    }
}

fn error_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name (or obsolete line folding)",
        httparse::Error::HeaderValue => "invalid character in a header value",
        httparse::Error::NewLine => "malformed line ending",
        httparse::Error::Token => "malformed request line",
        _ => "malformed request head",
    }
}

/// A bare LF (one not after a CR) anywhere in the head is refused. httparse
/// admits LF only as a line end (and CR only before LF), so it is enough
/// to look where lines end: before each field line, and at the very end.
fn check_line_ends(head: &[u8], spans: &[Span]) -> Result<(), Rejection> {
    let crlf_before = |at: usize| at >= 2 && &head[at - 2..at] == b"\r\n";
    let fields_ok = spans.iter().all(|s| crlf_before(s.name.0 as usize));
    if !fields_ok || !head.ends_with(b"\r\n\r\n") {
        return Err(reject(400, "bare LF in the request head"));
    }
    Ok(())
}

/// What the header fields say about framing, gathered in one pass.
#[derive(Default)]
struct Fields {
    hosts: usize,
    content_length: Option<u64>,
    content_lengths: usize,
    chunked: usize,
    codings: usize,
    chunked_last: bool,
    has_te: bool,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// Applies the rules to a complete head and builds the request.
fn build(head: &Bytes, t: &Tokens, spans: &[Span], limits: &Limits) -> Result<Head, Rejection> {
    // The request line ends where the first field line (or the empty line
    // ending the head) begins, less its CRLF.
    let request_line = spans
        .first()
        .map_or(head.len() - 4, |s| s.name.0 as usize - 2);
    if request_line > limits.max_request_line {
        return Err(reject(414, "request line too long"));
    }
    if spans.len() > limits.max_fields {
        return Err(reject(431, "too many header fields"));
    }
    let method =
        Method::from_bytes(&head[t.method.clone()]).map_err(|_| reject(400, "invalid method"))?;
    check_target(&method, &head[t.target.clone()])?;
    let uri = Uri::from_maybe_shared(head.slice(t.target.clone()))
        .map_err(|_| reject(400, "invalid request target"))?;
    let http10 = t.minor == 0;
    let mut fields = Fields::default();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for span in spans {
        if span.value.1 - span.name.0 > limits.max_field_size as u32 {
            return Err(reject(431, "header field too large"));
        }
        let name = HeaderName::from_bytes(&head[span.name()])
            .map_err(|_| reject(400, "invalid header name"))?;
        let value = &head[span.value()];
        if !note_field(&name, value, http10, &mut fields)? {
            continue;
        }
        // SAFETY: httparse admitted only HTAB, SP..~ and obs-text in a field
        // value, the very bytes `HeaderValue` allows.
        let value = unsafe { HeaderValue::from_maybe_shared_unchecked(head.slice(span.value())) };
        headers.append(name, value);
    }
    let framing = framing(&fields, http10)?;
    Ok(Head {
        method,
        uri,
        version: if http10 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        },
        headers,
        framing,
        keep_alive: if http10 {
            fields.keep_alive
        } else {
            !fields.close
        },
        expect_continue: fields.expect_continue,
    })
}

/// Records what `name: value` means for framing and persistence; returns
/// whether the field is passed on.
fn note_field(
    name: &HeaderName,
    value: &[u8],
    http10: bool,
    f: &mut Fields,
) -> Result<bool, Rejection> {
    use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
    if name == HOST {
        f.hosts += 1;
    } else if name == CONTENT_LENGTH {
        f.content_lengths += 1;
        f.content_length = Some(parse_content_length(value)?);
    } else if name == TRANSFER_ENCODING {
        f.has_te = true;
        for coding in value
            .split(|&b| b == b',')
            .map(trim)
            .filter(|c| !c.is_empty())
        {
            f.codings += 1;
            f.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            f.chunked += usize::from(f.chunked_last);
        }
    } else if name == CONNECTION {
        for token in value.split(|&b| b == b',').map(trim) {
            f.close |= token.eq_ignore_ascii_case(b"close");
            f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    } else if name == EXPECT {
        if http10 {
            return Ok(false); // Expect is an HTTP/1.1 feature; ignored on 1.0
        }
        if !trim(value).eq_ignore_ascii_case(b"100-continue") {
            return Err(reject(417, "unsupported expectation"));
        }
        f.expect_continue = true;
    }
    Ok(true)
}

fn framing(f: &Fields, http10: bool) -> Result<Framing, Rejection> {
    if f.hosts > 1 || (f.hosts == 0 && !http10) {
        return Err(reject(400, "exactly one Host header is required"));
    }
    if f.content_lengths > 1 {
        return Err(reject(400, "more than one Content-Length"));
    }
    if !f.has_te {
        return Ok(f.content_length.map_or(Framing::None, Framing::Length));
    }
    if http10 {
        return Err(reject(400, "Transfer-Encoding on an HTTP/1.0 request"));
    }
    if f.content_length.is_some() {
        return Err(reject(400, "both Content-Length and Transfer-Encoding"));
    }
    if f.chunked != 1 || !f.chunked_last {
        return Err(reject(
            400,
            "chunked must be the last transfer coding, once",
        ));
    }
    if f.codings > 1 {
        return Err(reject(501, "unsupported transfer coding"));
    }
    Ok(Framing::Chunked)
}

/// The four request-target forms of §3.2, each with the method it belongs
/// to; every byte visible ASCII.
fn check_target(method: &Method, target: &[u8]) -> Result<(), Rejection> {
    if target.is_empty() || !target.iter().all(|&b| b > b' ' && b < 0x7f) {
        return Err(reject(400, "invalid request target"));
    }
    let connect = method == Method::CONNECT;
    let ok = match target[0] {
        b'/' => !connect,
        b'*' => target == b"*" && method == Method::OPTIONS,
        _ if connect => !target.contains(&b'/'),
        _ => memchr::memmem::find(target, b"://").is_some_and(|i| i > 0),
    };
    if ok {
        Ok(())
    } else {
        Err(reject(400, "request target does not fit the method"))
    }
}

/// Content-Length = 1*DIGIT, at most 2^63 - 1 (§6.2).
fn parse_content_length(value: &[u8]) -> Result<u64, Rejection> {
    let bad = reject(400, "invalid Content-Length");
    if value.is_empty() {
        return Err(bad);
    }
    let mut n: u64 = 0;
    for &d in value {
        if !d.is_ascii_digit() {
            return Err(bad);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or(bad)?;
    }
    Ok(n)
}

/// Strips optional whitespace (SP, HTAB) from both ends.
fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    let s = &s[start..];
    let end = s.len()
        - s.iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
    &s[..end]
}
