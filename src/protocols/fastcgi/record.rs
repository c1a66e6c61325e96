//! The FastCGI record layer, sans I/O: record headers, name-value pairs and
//! the management records (FastCGI 1.0, "FastCGI Specification", Open
//! Market, 1996).
//!
//! Rules kept here:
//! - A record (§3.3) is an 8-byte header (version 1, type, requestId u16
//!   BE, contentLength u16 BE, paddingLength u8, reserved), then
//!   `contentLength` bytes of content and `paddingLength` bytes of padding.
//!   A version other than 1 is malformed: the connection cannot be trusted.
//! - Name-value pairs (§3.4): each length is one byte below 128, else four
//!   bytes big-endian with the high bit set; a pair that runs past the end
//!   of its block is malformed.
//! - Streams (PARAMS, STDIN, STDOUT) end with a record of no content
//!   (§3.3); what we send is split into records of at most 65535 content
//!   bytes, padded to a multiple of 8 (§3.3: "recommended").
//! - Management records (request id 0, §4): GET_VALUES is answered with the
//!   values we know (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS = 0);
//!   a type we do not know is answered with UNKNOWN_TYPE (§4.2).

use bytes::{Buf, Bytes, BytesMut};

/// The protocol version this layer speaks (§8: `FCGI_VERSION_1`).
pub const VERSION: u8 = 1;
/// Bytes of a record header (§8: `FCGI_HEADER_LEN`).
pub const HEADER_LEN: usize = 8;
/// Most content bytes one record carries (contentLength is a u16).
pub const MAX_CONTENT: usize = 65535;
/// Content bytes per record when we split a stream: the largest multiple
/// of 8 that fits, so full records need no padding.
const SPLIT_AT: usize = MAX_CONTENT & !7;

/// Record types (§8).
pub mod kind {
    /// Starts a request (web server → application).
    pub const BEGIN_REQUEST: u8 = 1;
    /// Aborts a request (web server → application).
    pub const ABORT_REQUEST: u8 = 2;
    /// Ends a request (application → web server).
    pub const END_REQUEST: u8 = 3;
    /// Name-value pairs of the request's CGI variables (a stream).
    pub const PARAMS: u8 = 4;
    /// The request body (a stream).
    pub const STDIN: u8 = 5;
    /// The response (a stream).
    pub const STDOUT: u8 = 6;
    /// Error output (a stream).
    pub const STDERR: u8 = 7;
    /// Filter data (a stream, Filter role only).
    pub const DATA: u8 = 8;
    /// Asks for the application's variables (management).
    pub const GET_VALUES: u8 = 9;
    /// Answers GET_VALUES (management).
    pub const GET_VALUES_RESULT: u8 = 10;
    /// Answers a management record of a type we do not know.
    pub const UNKNOWN_TYPE: u8 = 11;
}

/// BEGIN_REQUEST role of a responder (§6.2), the only one served.
pub const ROLE_RESPONDER: u16 = 1;
/// BEGIN_REQUEST flag: keep the connection open after the request (§5.1).
pub const FLAG_KEEP_CONN: u8 = 1;

/// END_REQUEST protocolStatus values (§5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProtocolStatus {
    /// Normal end of the request.
    RequestComplete = 0,
    /// A new request was refused: this connection serves one at a time.
    CantMpxConn = 1,
    /// A new request was refused: out of a resource.
    Overloaded = 2,
    /// A new request was refused: the role is not one we serve.
    UnknownRole = 3,
}

/// The input cannot be FastCGI: the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// One record as received, its padding dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Record type (see [`kind`]).
    pub kind: u8,
    /// Request id; 0 for management records.
    pub id: u16,
    /// The content bytes.
    pub content: Bytes,
}

/// The body of a BEGIN_REQUEST record (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The role the web server wants (1 responder, 2 authorizer, 3 filter).
    pub role: u16,
    /// Whether the connection stays open after the request (FCGI_KEEP_CONN).
    pub keep_conn: bool,
}

impl Begin {
    /// Decodes a BEGIN_REQUEST body (8 bytes: role u16 BE, flags, reserved).
    ///
    /// # Errors
    /// [`Malformed`] when the body is shorter than 8 bytes.
    pub fn decode(content: &[u8]) -> Result<Self, Malformed> {
        if content.len() < 8 {
            return Err(Malformed("BEGIN_REQUEST body shorter than 8 bytes"));
        }
        Ok(Begin {
            role: u16::from_be_bytes([content[0], content[1]]),
            keep_conn: content[2] & FLAG_KEEP_CONN != 0,
        })
    }
}

/// Bytes still needed before the next record of `buf` is complete (0 when
/// it is, or when its header is not there yet and one byte would do).
pub fn wanted(buf: &[u8]) -> usize {
    if buf.len() < HEADER_LEN {
        return HEADER_LEN - buf.len();
    }
    let total =
        HEADER_LEN + usize::from(u16::from_be_bytes([buf[4], buf[5]])) + usize::from(buf[6]);
    total.saturating_sub(buf.len())
}

/// Takes the next complete record off the front of `buf`, if there is one.
///
/// # Errors
/// [`Malformed`] when the header's version is not 1 (§3.3).
pub fn decode(buf: &mut BytesMut) -> Result<Option<Record>, Malformed> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(Malformed("record version is not 1"));
    }
    let kind = buf[1];
    let id = u16::from_be_bytes([buf[2], buf[3]]);
    let len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    let padding = usize::from(buf[6]);
    if buf.len() < HEADER_LEN + len + padding {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let content = buf.split_to(len).freeze();
    buf.advance(padding);
    Ok(Some(Record { kind, id, content }))
}

/// Appends a record header for `len` content bytes and `padding` bytes of
/// padding (`len` at most [`MAX_CONTENT`]).
pub fn header(out: &mut Vec<u8>, kind: u8, id: u16, len: usize, padding: u8) {
    debug_assert!(len <= MAX_CONTENT);
    let len = (len as u16).to_be_bytes();
    out.extend_from_slice(&[
        VERSION,
        kind,
        (id >> 8) as u8,
        id as u8,
        len[0],
        len[1],
        padding,
        0,
    ]);
}

/// Padding that brings `len` content bytes to a multiple of 8.
fn padding_for(len: usize) -> u8 {
    ((8 - len % 8) % 8) as u8
}

/// Appends `data` as records of the stream `kind` (split at 65528 bytes,
/// padded to 8); nothing for empty `data` (the stream's end is
/// [`end_stream`]).
pub fn stream(out: &mut Vec<u8>, kind: u8, id: u16, data: &[u8]) {
    for piece in data.chunks(SPLIT_AT) {
        let padding = padding_for(piece.len());
        header(out, kind, id, piece.len(), padding);
        out.extend_from_slice(piece);
        out.extend_from_slice(&[0; 8][..usize::from(padding)]);
    }
}

/// Appends the empty record that ends the stream `kind` (§3.3).
pub fn end_stream(out: &mut Vec<u8>, kind: u8, id: u16) {
    header(out, kind, id, 0, 0);
}

/// Appends an END_REQUEST record (§5.5): `app_status` is the application's
/// exit status (0), `status` says why the request ended.
pub fn end_request(out: &mut Vec<u8>, id: u16, app_status: u32, status: ProtocolStatus) {
    header(out, kind::END_REQUEST, id, 8, 0);
    out.extend_from_slice(&app_status.to_be_bytes());
    out.extend_from_slice(&[status as u8, 0, 0, 0]);
}

/// Appends an UNKNOWN_TYPE record (§4.2) answering a record of `unknown` type.
pub fn unknown_type(out: &mut Vec<u8>, unknown: u8) {
    header(out, kind::UNKNOWN_TYPE, 0, 8, 0);
    out.extend_from_slice(&[unknown, 0, 0, 0, 0, 0, 0, 0]);
}

/// Appends the GET_VALUES_RESULT (§4.1) for the GET_VALUES `query`: the
/// asked variables we know, with `max_conns` (FCGI_MAX_CONNS and
/// FCGI_MAX_REQS: one request per connection) and FCGI_MPXS_CONNS = 0.
///
/// # Errors
/// [`Malformed`] when `query` is not a block of name-value pairs.
pub fn get_values_result(
    out: &mut Vec<u8>,
    query: &Bytes,
    max_conns: u32,
) -> Result<(), Malformed> {
    let mut body = Vec::with_capacity(64);
    let conns = max_conns.to_string();
    for (name, _) in Pairs::new(query.clone()).collect::<Result<Vec<_>, _>>()? {
        let value = match name.as_ref() {
            b"FCGI_MAX_CONNS" | b"FCGI_MAX_REQS" => conns.as_bytes(),
            b"FCGI_MPXS_CONNS" => b"0",
            _ => continue,
        };
        pair(&mut body, &name, value);
    }
    header(
        out,
        kind::GET_VALUES_RESULT,
        0,
        body.len(),
        padding_for(body.len()),
    );
    out.extend_from_slice(&body);
    out.extend_from_slice(&[0; 8][..usize::from(padding_for(body.len()))]);
    Ok(())
}

/// Appends one name-value pair (§3.4).
pub fn pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&(len as u32 | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// The name-value pairs of a block (§3.4), as slices of it (no copy).
#[derive(Debug)]
pub struct Pairs {
    block: Bytes,
}

impl Pairs {
    /// The pairs of `block` (the joined content of a PARAMS stream).
    pub fn new(block: Bytes) -> Self {
        Pairs { block }
    }

    fn length(&mut self) -> Result<usize, Malformed> {
        let short = *self
            .block
            .first()
            .ok_or(Malformed("name-value pair cut short"))?;
        if short < 128 {
            self.block.advance(1);
            return Ok(usize::from(short));
        }
        if self.block.len() < 4 {
            return Err(Malformed("name-value pair cut short"));
        }
        Ok((self.block.get_u32() & 0x7fff_ffff) as usize)
    }
}

impl Iterator for Pairs {
    type Item = Result<(Bytes, Bytes), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.block.is_empty() {
            return None;
        }
        let lengths = self.length().and_then(|n| Ok((n, self.length()?)));
        let item = lengths.and_then(|(name_len, value_len)| {
            if self.block.len() < name_len.saturating_add(value_len) {
                return Err(Malformed("name-value pair longer than its block"));
            }
            let name = self.block.split_to(name_len);
            Ok((name, self.block.split_to(value_len)))
        });
        if item.is_err() {
            self.block.clear(); // one error, then the end
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, id: u16, content: &[u8], padding: u8) -> Vec<u8> {
        let mut out = Vec::new();
        header(&mut out, kind, id, content.len(), padding);
        out.extend_from_slice(content);
        out.extend(std::iter::repeat_n(0xAA, usize::from(padding)));
        out
    }

    #[test]
    fn records_are_decoded_whole_and_in_pieces() {
        let mut wire = record(kind::PARAMS, 0x0102, b"abc", 5);
        wire.extend(record(kind::STDIN, 1, b"", 0));
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            if i < 15 {
                assert_eq!(decode(&mut buf).unwrap(), None, "incomplete at {i}");
                assert!(wanted(&buf) > 0);
            }
            buf.extend_from_slice(&[*byte]);
        }
        let first = decode(&mut buf).unwrap().unwrap();
        assert_eq!(first.kind, kind::PARAMS);
        assert_eq!(first.id, 0x0102);
        assert_eq!(first.content, "abc");
        let second = decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            (second.kind, second.id, second.content.len()),
            (kind::STDIN, 1, 0)
        );
        assert!(buf.is_empty());
        assert_eq!(decode(&mut buf).unwrap(), None);
    }

    #[test]
    fn a_bad_version_is_malformed() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert!(decode(&mut buf).is_err());
        let mut wire = record(kind::PARAMS, 1, b"", 0);
        wire[0] = 2;
        assert!(decode(&mut BytesMut::from(&wire[..])).is_err());
    }

    #[test]
    fn streams_are_split_and_padded() {
        let data = vec![7u8; 70_000];
        let mut out = Vec::new();
        stream(&mut out, kind::STDOUT, 3, &data);
        end_stream(&mut out, kind::STDOUT, 3);
        let mut buf = BytesMut::from(&out[..]);
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while let Some(r) = decode(&mut buf).unwrap() {
            assert_eq!((r.kind, r.id), (kind::STDOUT, 3));
            sizes.push(r.content.len());
            got.extend_from_slice(&r.content);
        }
        assert_eq!(sizes, [65528, 70_000 - 65528, 0]);
        assert_eq!(got, data);
        assert_eq!(out.len() % 8, 0, "every record padded to 8 bytes");
    }

    #[test]
    fn pairs_round_trip_with_short_and_long_lengths() {
        let long = vec![b'x'; 300];
        let mut block = Vec::new();
        pair(&mut block, b"REQUEST_METHOD", b"GET");
        pair(&mut block, b"HTTP_X_LONG", &long);
        pair(&mut block, b"EMPTY", b"");
        let pairs: Vec<_> = Pairs::new(Bytes::from(block.clone()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(pairs.len(), 3);
        assert_eq!(
            pairs[0],
            (Bytes::from("REQUEST_METHOD"), Bytes::from("GET"))
        );
        assert_eq!(pairs[1].1.len(), 300);
        assert_eq!(pairs[2].1, "");
        assert_eq!(block[20], 0x80, "a long length has its high bit set");
        // Cut anywhere inside the last pair but at its end: malformed.
        for cut in [block.len() - 1, block.len() - 3, 1] {
            let bad = Pairs::new(Bytes::copy_from_slice(&block[..cut]));
            assert!(bad.collect::<Result<Vec<_>, _>>().is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn management_answers() {
        let mut query = Vec::new();
        for name in [
            "FCGI_MAX_CONNS",
            "FCGI_MAX_REQS",
            "FCGI_MPXS_CONNS",
            "OTHER",
        ] {
            pair(&mut query, name.as_bytes(), b"");
        }
        let mut out = Vec::new();
        get_values_result(&mut out, &Bytes::from(query), 100).unwrap();
        let r = decode(&mut BytesMut::from(&out[..])).unwrap().unwrap();
        assert_eq!((r.kind, r.id), (kind::GET_VALUES_RESULT, 0));
        let got: Vec<_> = Pairs::new(r.content).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            [
                (Bytes::from("FCGI_MAX_CONNS"), Bytes::from("100")),
                (Bytes::from("FCGI_MAX_REQS"), Bytes::from("100")),
                (Bytes::from("FCGI_MPXS_CONNS"), Bytes::from("0")),
            ]
        );
        let mut out = Vec::new();
        unknown_type(&mut out, 77);
        end_request(&mut out, 9, 0, ProtocolStatus::UnknownRole);
        let mut buf = BytesMut::from(&out[..]);
        let r = decode(&mut buf).unwrap().unwrap();
        assert_eq!((r.kind, r.content[0]), (kind::UNKNOWN_TYPE, 77));
        let r = decode(&mut buf).unwrap().unwrap();
        assert_eq!((r.kind, r.id, r.content[4]), (kind::END_REQUEST, 9, 3));
        assert_eq!(
            Begin::decode(&[0, 1, 1, 0, 0, 0, 0, 0]).unwrap(),
            Begin {
                role: 1,
                keep_conn: true
            }
        );
        assert!(Begin::decode(&[0, 1]).is_err());
    }
}
