//! A strict HTTP/1.1 framing guard that sees every byte before hyper does.
//!
//! hyper parses requests leniently in places, and on a parse error closes the
//! connection without an answer. This module checks each request head and
//! chunked body against RFC 9112 first, and passes hyper only what is valid;
//! the first invalid message ends the stream (with the bytes of that message
//! held back) and yields the status to answer with. So no byte after a framing
//! error ever reaches the application as a request (no smuggling, no desync).
//!
//! Rules kept here (RFC 9112 unless said otherwise):
//! - Lines end in CRLF; a bare CR or LF anywhere in a head or chunk line is
//!   400 (§2.2 lets us reject rather than guess). Empty lines before a
//!   request line are skipped (§2.2).
//! - Request line (§3): `token SP target SP HTTP/D.D`, single spaces; a bad
//!   method, target or version is 400, a major version other than 1 is 505,
//!   `HTTP/1.2`+ is treated as HTTP/1.1 (RFC 9110 §2.5); a line over
//!   `max_request_line` bytes is 414. Authority-form only with CONNECT,
//!   asterisk-form only with OPTIONS (§3.2).
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
//! - Chunked bodies (§7.1): sizes are 1*HEXDIG (at most 16 digits),
//!   extensions are `;name[=token|quoted-string]`, data is followed by CRLF;
//!   trailer fields are checked like headers and the ones that must not be
//!   trailers (framing, routing, Host) are dropped (RFC 9110 §6.5.1).
//!
//! Heads are re-serialised canonically for hyper (normalised version, dropped
//! fields); bodies pass through unchanged.

/// Limits on a request head, bytes and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (method, target, version), bytes. 414 beyond.
    pub max_request_line: usize,
    /// Most header fields. 431 beyond.
    pub max_fields: usize,
    /// Longest header field line, bytes. 431 beyond.
    pub max_field_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8190,
            max_fields: 100,
            max_field_size: 8190,
        }
    }
}

/// Why a request is refused: the status to answer with and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status code (400, 414, 417, 431, 501, 505).
    pub status: u16,
    /// What was wrong, for the response body and the debug log.
    pub reason: &'static str,
}

const fn reject(status: u16, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

impl Rejection {
    /// The complete response to send before closing the connection.
    pub fn response(&self, server: &str) -> Vec<u8> {
        let phrase = match self.status {
            408 => "Request Timeout",
            414 => "URI Too Long",
            417 => "Expectation Failed",
            431 => "Request Header Fields Too Large",
            501 => "Not Implemented",
            505 => "HTTP Version Not Supported",
            _ => "Bad Request",
        };
        let body = format!("{} {phrase}: {}\n", self.status, self.reason);
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        format!(
            "HTTP/1.1 {} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\nServer: {server}\r\nDate: {date}\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// Longest chunk-size line (size and extensions), bytes.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug)]
enum State {
    /// Accumulating a request head in `Guard::line`.
    Head,
    /// Passing `remaining` body bytes.
    Body { remaining: u64 },
    /// Accumulating a chunk-size line.
    ChunkSize,
    /// Passing chunk data, then expecting CRLF.
    ChunkData { remaining: u64 },
    /// Expecting the CRLF after chunk data (`seen` bytes of it so far).
    ChunkEnd { seen: u8 },
    /// Accumulating the trailer section.
    Trailers,
    /// A message was rejected: nothing more passes.
    Closed,
}

/// The guard for one connection. Feed it the bytes read from the client.
#[derive(Debug)]
pub struct Guard {
    limits: Limits,
    state: State,
    /// The head (or chunk line, or trailer section) being accumulated.
    buf: Vec<u8>,
    /// Whether the rejected message had its head accepted already (the
    /// error is in its body, and the application may answer it itself).
    failed_in_body: bool,
    /// Request heads accepted so far.
    heads: u64,
}

impl Guard {
    /// A guard expecting a request head.
    pub fn new(limits: Limits) -> Self {
        Guard {
            limits,
            state: State::Head,
            buf: Vec::new(),
            failed_in_body: false,
            heads: 0,
        }
    }

    /// Whether a message was rejected (the stream is over).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether part of a request head has arrived but not all of it.
    pub fn head_in_progress(&self) -> bool {
        matches!(self.state, State::Head) && !self.buf.is_empty()
    }

    /// Request heads accepted so far.
    pub fn heads_completed(&self) -> u64 {
        self.heads
    }

    /// Whether the rejected message's head had been passed on (the error was
    /// in its body).
    pub fn failed_in_body(&self) -> bool {
        self.failed_in_body
    }

    /// Checks `input` (the next bytes from the client) and appends what may
    /// go to hyper to `out`.
    ///
    /// # Errors
    /// The [`Rejection`] of the first invalid message; `out` then holds only
    /// the bytes of the messages before it, and every later call is an error.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Rejection> {
        while !input.is_empty() {
            let used = match self.step(input, out) {
                Ok(used) => used,
                Err(rejection) => {
                    self.failed_in_body = !matches!(self.state, State::Head | State::Closed);
                    self.state = State::Closed;
                    self.buf = Vec::new();
                    return Err(rejection);
                }
            };
            input = &input[used..];
        }
        Ok(())
    }

    /// Consumes a prefix of `input`; returns its length.
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, Rejection> {
        match self.state {
            State::Head => self.step_head(input, out),
            State::Body { remaining } => {
                let n = pass(input, remaining, out);
                self.state = match remaining - n as u64 {
                    0 => State::Head,
                    left => State::Body { remaining: left },
                };
                Ok(n)
            }
            State::ChunkSize => self.step_chunk_size(input, out),
            State::ChunkData { remaining } => {
                let n = pass(input, remaining, out);
                self.state = match remaining - n as u64 {
                    0 => State::ChunkEnd { seen: 0 },
                    left => State::ChunkData { remaining: left },
                };
                Ok(n)
            }
            State::ChunkEnd { seen } => {
                let expected = if seen == 0 { b'\r' } else { b'\n' };
                if input[0] != expected {
                    return Err(reject(400, "chunk data not followed by CRLF"));
                }
                out.push(input[0]);
                self.state = if seen == 0 {
                    State::ChunkEnd { seen: 1 }
                } else {
                    State::ChunkSize
                };
                Ok(1)
            }
            State::Trailers => self.step_trailers(input, out),
            State::Closed => Err(reject(400, "connection closed after a bad request")),
        }
    }

    fn step_head(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, Rejection> {
        if self.buf.is_empty() {
            // Empty lines before a request line are skipped (§2.2).
            let skip = input
                .iter()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .count();
            if skip > 0 {
                return Ok(skip);
            }
        }
        let (used, complete) = accumulate(&mut self.buf, input, b"\r\n\r\n");
        if !complete {
            self.check_partial_head()?;
            return Ok(used);
        }
        let head = std::mem::take(&mut self.buf);
        let framing = check_head(&head, &self.limits, out)?;
        self.heads += 1;
        self.state = match framing {
            Framing::None => State::Head,
            Framing::Length(0) => State::Head,
            Framing::Length(n) => State::Body { remaining: n },
            Framing::Chunked => State::ChunkSize,
        };
        Ok(used)
    }

    /// Limits that can be enforced before the head is complete, so a client
    /// cannot make us buffer an endless line.
    fn check_partial_head(&self) -> Result<(), Rejection> {
        let limits = &self.limits;
        let first_line_end = find(&self.buf, b"\n");
        if first_line_end.is_none() && self.buf.len() > limits.max_request_line + 2 {
            return Err(reject(414, "request line too long"));
        }
        let max_head =
            limits.max_request_line + 2 + (limits.max_fields + 1) * (limits.max_field_size + 2);
        if self.buf.len() > max_head {
            return Err(reject(431, "request header section too large"));
        }
        Ok(())
    }

    fn step_chunk_size(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, Rejection> {
        let (used, complete) = accumulate(&mut self.buf, input, b"\r\n");
        if !complete {
            if self.buf.len() > MAX_CHUNK_LINE || self.buf.contains(&b'\n') {
                return Err(reject(400, "malformed chunk-size line"));
            }
            return Ok(used);
        }
        let line = std::mem::take(&mut self.buf);
        if line.len() > MAX_CHUNK_LINE + 2 {
            return Err(reject(400, "malformed chunk-size line"));
        }
        let size = parse_chunk_line(&line[..line.len() - 2])?;
        out.extend_from_slice(&line);
        self.state = if size == 0 {
            State::Trailers
        } else {
            State::ChunkData { remaining: size }
        };
        Ok(used)
    }

    fn step_trailers(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, Rejection> {
        // The common case, no trailer fields: the section is one CRLF.
        match (self.buf.as_slice(), input[0]) {
            ([], b'\r') => {
                self.buf.push(b'\r');
                return Ok(1);
            }
            ([b'\r'], b'\n') => {
                self.buf.clear();
                out.extend_from_slice(b"\r\n");
                self.state = State::Head;
                return Ok(1);
            }
            ([b'\r'], _) => return Err(reject(400, "bare CR in the trailer section")),
            _ => {}
        }
        let (used, complete) = accumulate(&mut self.buf, input, b"\r\n\r\n");
        if !complete {
            if self.buf.len() > self.limits.max_field_size * self.limits.max_fields {
                return Err(reject(431, "trailer section too large"));
            }
            return Ok(used);
        }
        let section = std::mem::take(&mut self.buf);
        if section == b"\r\n" {
            out.extend_from_slice(b"\r\n");
        } else {
            let fields = split_lines(&section[..section.len() - 4])?;
            for line in fields {
                let (name, _) = parse_field(line, &self.limits)?;
                if !FORBIDDEN_TRAILERS
                    .iter()
                    .any(|f| name.eq_ignore_ascii_case(f.as_bytes()))
                {
                    out.extend_from_slice(line);
                    out.extend_from_slice(b"\r\n");
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        self.state = State::Head;
        Ok(used)
    }
}

/// Fields that must not come as trailers (RFC 9110 §6.5.1): dropped.
const FORBIDDEN_TRAILERS: [&str; 12] = [
    "content-length",
    "transfer-encoding",
    "host",
    "content-type",
    "content-encoding",
    "content-range",
    "trailer",
    "expect",
    "connection",
    "te",
    "authorization",
    "cookie",
];

/// Moves up to `limit` bytes of `input` to `out`; returns how many.
fn pass(input: &[u8], limit: u64, out: &mut Vec<u8>) -> usize {
    let n = input
        .len()
        .min(usize::try_from(limit).unwrap_or(usize::MAX));
    out.extend_from_slice(&input[..n]);
    n
}

/// Appends `input` to `buf` up to and including the first `end` marker
/// (which may straddle calls). Returns (bytes used, marker found).
fn accumulate(buf: &mut Vec<u8>, input: &[u8], end: &[u8]) -> (usize, bool) {
    let start = buf.len().saturating_sub(end.len() - 1);
    let old = buf.len();
    buf.extend_from_slice(input);
    match find(&buf[start..], end) {
        Some(i) => {
            let total = start + i + end.len();
            buf.truncate(total);
            (total - old, true)
        }
        None => (input.len(), false),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// How the body of a request is framed.
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// What the header fields say about framing, gathered in one pass.
#[derive(Default)]
struct Fields {
    hosts: usize,
    content_length: Option<u64>,
    content_lengths: usize,
    codings: Vec<Vec<u8>>,
    has_te: bool,
}

/// Validates a complete head (ending in CRLFCRLF) and writes its canonical
/// form to `out`. Returns the body framing.
fn check_head(head: &[u8], limits: &Limits, out: &mut Vec<u8>) -> Result<Framing, Rejection> {
    let lines = split_lines(&head[..head.len() - 4])?;
    let (request_line, field_lines) = lines.split_first().ok_or(reject(400, "empty request"))?;
    if request_line.len() > limits.max_request_line {
        return Err(reject(414, "request line too long"));
    }
    if field_lines.len() > limits.max_fields {
        return Err(reject(431, "too many header fields"));
    }
    let (method, target, minor) = parse_request_line(request_line)?;
    let http10 = minor == 0;
    // Built aside: nothing of a head reaches `out` unless all of it is valid.
    let mut canonical = Vec::with_capacity(head.len());
    let out_final = out;
    let out = &mut canonical;
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    let mut fields = Fields::default();
    for line in field_lines {
        let (name, value) = parse_field(line, limits)?;
        if keep_field(name, value, http10, &mut fields)? {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    let framing = framing(&fields, http10)?;
    out_final.extend_from_slice(&canonical);
    Ok(framing)
}

/// Records what `name: value` means for framing; returns whether the field
/// is passed on.
fn keep_field(name: &[u8], value: &[u8], http10: bool, f: &mut Fields) -> Result<bool, Rejection> {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("host") {
        f.hosts += 1;
    } else if is("content-length") {
        f.content_lengths += 1;
        f.content_length = Some(parse_content_length(value)?);
    } else if is("transfer-encoding") {
        f.has_te = true;
        for coding in value.split(|&b| b == b',') {
            let coding = trim(coding);
            if !coding.is_empty() {
                f.codings.push(coding.to_ascii_lowercase());
            }
        }
    } else if is("expect") {
        if http10 {
            return Ok(false); // Expect is an HTTP/1.1 feature; ignored on 1.0
        }
        if !trim(value).eq_ignore_ascii_case(b"100-continue") {
            return Err(reject(417, "unsupported expectation"));
        }
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
    let chunked = f
        .codings
        .iter()
        .filter(|c| c.as_slice() == b"chunked")
        .count();
    if chunked != 1 || f.codings.last().map(Vec::as_slice) != Some(b"chunked") {
        return Err(reject(
            400,
            "chunked must be the last transfer coding, once",
        ));
    }
    if f.codings.len() > 1 {
        return Err(reject(501, "unsupported transfer coding"));
    }
    Ok(Framing::Chunked)
}

/// Splits a head into lines at CRLF; a bare CR or LF is an error.
fn split_lines(head: &[u8]) -> Result<Vec<&[u8]>, Rejection> {
    let lines: Vec<&[u8]> = split_crlf(head).collect();
    if lines
        .iter()
        .any(|l| l.contains(&b'\r') || l.contains(&b'\n'))
    {
        return Err(reject(400, "bare CR or LF in the request head"));
    }
    Ok(lines)
}

fn split_crlf(mut s: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if s.is_empty() {
            return None;
        }
        match find(s, b"\r\n") {
            Some(i) => {
                let line = &s[..i];
                s = &s[i + 2..];
                Some(line)
            }
            None => Some(std::mem::take(&mut s)),
        }
    })
}

/// `method SP target SP HTTP/1.x` → (method, target, minor version 0 or 1).
fn parse_request_line(line: &[u8]) -> Result<(&[u8], &[u8], u8), Rejection> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(reject(400, "malformed request line"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(reject(400, "invalid method"));
    }
    check_target(method, target)?;
    let minor = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major != b'1' {
                return Err(reject(505, "HTTP version not supported"));
            }
            u8::from(*minor != b'0')
        }
        _ => return Err(reject(400, "invalid HTTP version")),
    };
    Ok((method, target, minor))
}

/// The four request-target forms of §3.2, each with the method it belongs to.
fn check_target(method: &[u8], target: &[u8]) -> Result<(), Rejection> {
    if target.is_empty() || !target.iter().all(|&b| b > b' ' && b < 0x7f) {
        return Err(reject(400, "invalid request target"));
    }
    let connect = method == b"CONNECT";
    let ok = match target[0] {
        b'/' => !connect,
        b'*' => target == b"*" && method == b"OPTIONS",
        _ if connect => !target.contains(&b'/'),
        _ => find(target, b"://").is_some_and(|i| i > 0),
    };
    if ok {
        Ok(())
    } else {
        Err(reject(400, "request target does not fit the method"))
    }
}

/// `name: OWS value OWS` → (name, trimmed value).
fn parse_field<'a>(line: &'a [u8], limits: &Limits) -> Result<(&'a [u8], &'a [u8]), Rejection> {
    if line.len() > limits.max_field_size {
        return Err(reject(431, "header field too large"));
    }
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(reject(400, "obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(reject(400, "header line without a colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(reject(400, "invalid header name"));
    }
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(reject(400, "control character in a header value"));
    }
    Ok((name, trim(value)))
}

/// Content-Length = 1*DIGIT, at most 2^63 - 1.
fn parse_content_length(value: &[u8]) -> Result<u64, Rejection> {
    let bad = reject(400, "invalid Content-Length");
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or(bad)
}

/// `1*HEXDIG *( BWS ";" BWS name [ BWS "=" BWS value ] )` → the size.
fn parse_chunk_line(line: &[u8]) -> Result<u64, Rejection> {
    let bad = |why| reject(400, why);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(bad("invalid chunk size"));
    }
    let size = u64::from_str_radix(std::str::from_utf8(&line[..digits]).unwrap_or("x"), 16)
        .map_err(|_| bad("invalid chunk size"))?;
    let mut rest = &line[digits..];
    loop {
        rest = trim_start(rest);
        if rest.is_empty() {
            return Ok(size);
        }
        if rest[0] != b';' {
            return Err(bad("invalid chunk size"));
        }
        rest = trim_start(&rest[1..]);
        let name_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name_len == 0 {
            return Err(bad("malformed chunk extension"));
        }
        rest = trim_start(&rest[name_len..]);
        if rest.first() == Some(&b'=') {
            rest = trim_start(&rest[1..]);
            rest = skip_ext_value(rest).ok_or(bad("malformed chunk extension"))?;
        }
    }
}

/// Skips a token or a quoted-string; `None` when neither is there.
fn skip_ext_value(s: &[u8]) -> Option<&[u8]> {
    if s.first() == Some(&b'"') {
        let mut i = 1;
        while i < s.len() {
            match s[i] {
                b'"' => return Some(&s[i + 1..]),
                b'\\' if i + 1 < s.len() => i += 2,
                b'\t' | b' '..=b'~' | 0x80..=0xff => i += 1,
                _ => return None,
            }
        }
        return None; // unterminated
    }
    let n = s.iter().take_while(|&&b| is_tchar(b)).count();
    (n > 0).then(|| &s[n..])
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let n = s
        .iter()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    &s[..s.len() - n]
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
