//! Reading requests off one connection's buffer, sans I/O: the caller
//! appends the bytes it read, and [`Reader::next`] turns them into events
//! (a head, body data, the end of a body). Everything that decides where a
//! message ends lives here, so a byte after a framing error can never be
//! taken for a request (no smuggling, no desync).
//!
//! Rules kept here (RFC 9112 §6 and §7.1; heads in `head.rs`):
//! - A Content-Length body is exactly that many bytes. One that fits in
//!   `contiguous` bytes is handed over as one piece, cut from the read buffer
//!   without a copy; a larger one as it arrives.
//! - Chunk sizes are 1*HEXDIG (at most 16 digits), extensions are
//!   `;name[=token|quoted-string]` with optional whitespace, the size line is
//!   at most 4096 bytes, data is followed by CRLF; a bare CR or LF is 400.
//! - Trailer fields are checked like header fields and then dropped: PEP
//!   3333 has no place for them, and fields that must not be trailers
//!   (framing, routing, Host: RFC 9110 §6.5.1) can never reach the environ.
//! - After a rejection nothing more is read: the connection must close.

use bytes::{Buf, Bytes, BytesMut};

use super::head::{self, Framing, Head};
use super::{reject, Limits, Rejection};
use crate::exchange::is_tchar;

/// Longest chunk-size line (size and extensions), bytes.
const MAX_CHUNK_LINE: usize = 4096;

/// Room asked for per read inside a body that does not come whole, bytes.
const LARGE_READ: usize = 64 * 1024;

/// What the bytes so far amount to.
#[derive(Debug)]
pub enum Event {
    /// A request head. Its body (possibly none) follows as `Data`, then
    /// `End`. Boxed: it moves several times on its way across the seam.
    Head(Box<Head>),
    /// Body bytes (chunked framing removed).
    Data(Bytes),
    /// The body of the current request is complete.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a request head.
    Head,
    /// A Content-Length body with `remaining` bytes to come.
    Length { remaining: u64 },
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data.
    ChunkData { remaining: u64 },
    /// Expecting the CRLF after chunk data.
    ChunkEnd,
    /// Expecting the trailer section.
    Trailers,
    /// The body is complete: `End` is next.
    Ended,
    /// A message was rejected: nothing more is read.
    Closed,
}

/// The request reader of one connection.
#[derive(Debug)]
pub struct Reader {
    state: State,
    limits: Limits,
    /// Content-Length bodies up to this size come as one `Data`, bytes.
    contiguous: usize,
}

impl Reader {
    /// A reader expecting a request head; `contiguous`: see the module notes.
    pub fn new(limits: Limits, contiguous: usize) -> Self {
        Reader {
            state: State::Head,
            limits,
            contiguous,
        }
    }

    /// Whether the reader waits for a request head (not inside a body).
    pub fn at_head(&self) -> bool {
        self.state == State::Head
    }

    /// The total buffer length the reader waits for, when it is waiting for
    /// a whole body to arrive (so the caller can reserve room for it once).
    pub fn wants(&self, buffered: usize) -> usize {
        match self.state {
            State::Length { remaining } if remaining <= self.contiguous as u64 => {
                remaining as usize
            }
            State::Length { .. } | State::ChunkData { .. } => buffered + LARGE_READ,
            _ => buffered + 1,
        }
    }

    /// The next event the bytes in `buf` make; consumed bytes are removed.
    /// `Ok(None)`: more bytes are needed.
    ///
    /// # Errors
    /// The [`Rejection`] of the first invalid message; every later call
    /// fails too.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Rejection> {
        match self.step(buf) {
            Err(rejection) => {
                self.state = State::Closed;
                Err(rejection)
            }
            ok => ok,
        }
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Rejection> {
        loop {
            let event = match self.state {
                State::Head => return self.head(buf),
                State::Length { remaining } => return Ok(self.length(buf, remaining)),
                State::ChunkData { remaining } => return Ok(self.chunk_data(buf, remaining)),
                State::Ended => {
                    self.state = State::Head;
                    return Ok(Some(Event::End));
                }
                State::ChunkSize => self.chunk_size(buf)?,
                State::ChunkEnd => self.chunk_end(buf)?,
                State::Trailers => self.trailers(buf)?,
                State::Closed => return Err(reject(400, "connection closed after a bad request")),
            };
            if !event {
                return Ok(None);
            }
        }
    }

    fn head(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Rejection> {
        let Some(head) = head::parse(buf, &self.limits)? else {
            return Ok(None);
        };
        self.state = match head.framing {
            Framing::None | Framing::Length(0) => State::Ended,
            Framing::Length(n) => State::Length { remaining: n },
            Framing::Chunked => State::ChunkSize,
        };
        Ok(Some(Event::Head(Box::new(head))))
    }

    fn length(&mut self, buf: &mut BytesMut, remaining: u64) -> Option<Event> {
        let whole = remaining <= self.contiguous as u64;
        if buf.is_empty() || (whole && (buf.len() as u64) < remaining) {
            return None;
        }
        let (data, left) = take(buf, remaining);
        self.state = match left {
            0 => State::Ended,
            left => State::Length { remaining: left },
        };
        Some(Event::Data(data))
    }

    fn chunk_data(&mut self, buf: &mut BytesMut, remaining: u64) -> Option<Event> {
        if buf.is_empty() {
            return None;
        }
        let (data, left) = take(buf, remaining);
        self.state = match left {
            0 => State::ChunkEnd,
            left => State::ChunkData { remaining: left },
        };
        Some(Event::Data(data))
    }

    /// Consumes a chunk-size line; `Ok(false)` when it is not complete.
    fn chunk_size(&mut self, buf: &mut BytesMut) -> Result<bool, Rejection> {
        let Some(lf) = memchr::memchr(b'\n', buf) else {
            if buf.len() > MAX_CHUNK_LINE + 1 {
                return Err(reject(400, "malformed chunk-size line"));
            }
            return Ok(false);
        };
        if lf == 0 || buf[lf - 1] != b'\r' || lf > MAX_CHUNK_LINE + 1 {
            return Err(reject(400, "malformed chunk-size line"));
        }
        let size = parse_chunk_line(&buf[..lf - 1])?;
        buf.advance(lf + 1);
        self.state = match size {
            0 => State::Trailers,
            n => State::ChunkData { remaining: n },
        };
        Ok(true)
    }

    /// Consumes the CRLF after chunk data; `Ok(false)` when not all here.
    fn chunk_end(&mut self, buf: &mut BytesMut) -> Result<bool, Rejection> {
        let bad = || reject(400, "chunk data not followed by CRLF");
        match buf.as_ref() {
            [] => Ok(false),
            [b'\r'] => Ok(false),
            [b'\r', b'\n', ..] => {
                buf.advance(2);
                self.state = State::ChunkSize;
                Ok(true)
            }
            _ => Err(bad()),
        }
    }

    /// Consumes (checks, then drops) the trailer section; `Ok(false)` when
    /// it is not complete.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<bool, Rejection> {
        match buf.as_ref() {
            [] | [b'\r'] => return Ok(false),
            [b'\r', b'\n', ..] => {
                buf.advance(2);
                self.state = State::Ended;
                return Ok(true);
            }
            _ => {}
        }
        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.max_fields];
        let len = match httparse::parse_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete((len, _))) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() > self.limits.max_field_size * self.limits.max_fields {
                    return Err(reject(431, "trailer section too large"));
                }
                return Ok(false);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(reject(431, "too many trailer fields"))
            }
            Err(_) => return Err(reject(400, "malformed trailer section")),
        };
        let section = &buf[..len];
        if memchr::memchr_iter(b'\n', section).any(|i| i == 0 || section[i - 1] != b'\r') {
            return Err(reject(400, "bare LF in the trailer section"));
        }
        buf.advance(len);
        self.state = State::Ended;
        Ok(true)
    }
}

/// Cuts up to `remaining` body bytes off the front of `buf` (no copy);
/// returns them and how many are still to come.
fn take(buf: &mut BytesMut, remaining: u64) -> (Bytes, u64) {
    let n = buf
        .len()
        .min(usize::try_from(remaining).unwrap_or(usize::MAX));
    (buf.split_to(n).freeze(), remaining - n as u64)
}

/// `1*HEXDIG *( BWS ";" BWS name [ BWS "=" BWS value ] )` → the size.
fn parse_chunk_line(line: &[u8]) -> Result<u64, Rejection> {
    let bad = |why| reject(400, why);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(bad("invalid chunk size"));
    }
    let size = line[..digits].iter().fold(0u64, |n, &d| {
        // At most 16 hex digits: no overflow.
        (n << 4) | u64::from((d as char).to_digit(16).unwrap_or(0))
    });
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
