//! The uwsgi request packet, sans I/O: the 4-byte header and the vars
//! block, taken off the front of a connection's read buffer.
//!
//! Wire format (the uwsgi protocol, "The uwsgi Protocol" in the uWSGI
//! documentation; what nginx's `ngx_http_uwsgi_module` writes):
//! - header: `modifier1` (u8), `datasize` (u16, little-endian), `modifier2`
//!   (u8);
//! - then `datasize` bytes of vars, each `key length` (u16 LE), key,
//!   `value length` (u16 LE), value;
//! - then the request body (CONTENT_LENGTH bytes: not this module's).
//!
//! Rules kept here:
//! - `modifier1` 0 (a WSGI request) is the only packet served; any other is
//!   refused as soon as the header is there. `modifier2` is not used (nginx
//!   sends 0 unless `uwsgi_modifier2` says otherwise).
//! - A `datasize` over the head limit is refused before its bytes are read.
//! - Every var must lie wholly inside the block: a length that runs past its
//!   end, or a block that ends inside a length, is malformed. An empty name
//!   is malformed; an empty value is not (nginx sends `CONTENT_LENGTH ""`).
//! - At most `max_vars` vars.
//! - Names and values are slices of the received bytes: no copy.

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

use crate::protocols::cgi::CgiVars;

/// Length of the packet header, bytes.
pub const HEADER_LEN: usize = 4;

/// `modifier1` of a WSGI request (uWSGI's modifier 0, what nginx sends by
/// default).
pub const MODIFIER_WSGI: u8 = 0;

/// Limits on one packet's head.
#[derive(Debug, Clone, Copy)]
pub struct PacketLimits {
    /// Largest vars block accepted, bytes.
    pub max_size: usize,
    /// Most vars accepted in one block.
    pub max_vars: usize,
}

/// Why a packet cannot be served. The protocol has no way to answer before
/// a request exists: the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// `modifier1` is not 0 (WSGI).
    Modifier(u8),
    /// `datasize` is over the limit, bytes.
    TooLarge(usize),
    /// More vars than the limit allows.
    TooMany,
    /// A var (or its length) runs past the end of the block.
    Overrun,
    /// A var with an empty name.
    EmptyName,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Modifier(m) => write!(f, "modifier1 {m} is not a WSGI request (0)"),
            Malformed::TooLarge(n) => write!(f, "a vars block of {n} bytes is over the head limit"),
            Malformed::TooMany => f.write_str("more vars than --limit-request-fields allows"),
            Malformed::Overrun => f.write_str("a var runs past the end of the vars block"),
            Malformed::EmptyName => f.write_str("a var has an empty name"),
        }
    }
}

/// The `datasize` a packet header announces, once its 4 bytes are there.
///
/// # Errors
/// [`Malformed::Modifier`] for a `modifier1` other than 0;
/// [`Malformed::TooLarge`] for a `datasize` over `limits.max_size`.
pub fn datasize(buf: &[u8], limits: &PacketLimits) -> Result<Option<usize>, Malformed> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if header[0] != MODIFIER_WSGI {
        return Err(Malformed::Modifier(header[0]));
    }
    let size = usize::from(u16::from_le_bytes([header[1], header[2]]));
    if size > limits.max_size {
        return Err(Malformed::TooLarge(size));
    }
    Ok(Some(size))
}

/// Takes one packet's header and vars off the front of `buf` once all of
/// it is there (`Ok(None)` until then: read more). What follows (the body)
/// stays in `buf`.
///
/// # Errors
/// [`Malformed`]: see [`datasize`] and [`decode_vars`].
pub fn take_vars(buf: &mut BytesMut, limits: &PacketLimits) -> Result<Option<CgiVars>, Malformed> {
    let Some(size) = datasize(buf, limits)? else {
        return Ok(None);
    };
    if buf.len() < HEADER_LEN + size {
        return Ok(None);
    }
    let mut block = buf.split_to(HEADER_LEN + size).freeze();
    block.advance(HEADER_LEN);
    decode_vars(block, limits.max_vars).map(Some)
}

/// The vars of a complete block, in order.
///
/// # Errors
/// [`Malformed::Overrun`] when a length or a var runs past the block's end,
/// [`Malformed::EmptyName`], [`Malformed::TooMany`] past `max_vars`.
pub fn decode_vars(mut block: Bytes, max_vars: usize) -> Result<CgiVars, Malformed> {
    let mut vars = CgiVars::with_capacity(32);
    let mut count = 0;
    while !block.is_empty() {
        count += 1;
        if count > max_vars {
            return Err(Malformed::TooMany);
        }
        let name = take_string(&mut block)?;
        if name.is_empty() {
            return Err(Malformed::EmptyName);
        }
        let value = take_string(&mut block)?;
        vars.push(name, value);
    }
    Ok(vars)
}

/// One length-prefixed string (u16 LE length, then the bytes).
fn take_string(block: &mut Bytes) -> Result<Bytes, Malformed> {
    if block.len() < 2 {
        return Err(Malformed::Overrun);
    }
    let len = usize::from(block.get_u16_le());
    if block.len() < len {
        return Err(Malformed::Overrun);
    }
    Ok(block.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PacketLimits = PacketLimits {
        max_size: 4096,
        max_vars: 8,
    };

    fn block(vars: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in vars {
            for s in [name, value] {
                out.extend_from_slice(&(s.len() as u16).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        out
    }

    fn packet(modifier1: u8, block: &[u8]) -> Vec<u8> {
        let mut out = vec![modifier1];
        out.extend_from_slice(&(block.len() as u16).to_le_bytes());
        out.push(0);
        out.extend_from_slice(block);
        out
    }

    const VARS: &[(&str, &str)] = &[
        ("REQUEST_METHOD", "POST"),
        ("PATH_INFO", "/a b"),
        ("CONTENT_LENGTH", "4"),
        ("QUERY_STRING", ""),
        ("HTTP_HOST", "example.com"),
    ];

    fn assert_vars(vars: &CgiVars) {
        for (name, value) in VARS {
            assert_eq!(vars.get(name), Some(value.as_bytes()), "{name}");
        }
    }

    #[test]
    fn a_packet_split_at_every_byte_boundary() {
        let mut wire = packet(0, &block(VARS));
        wire.extend_from_slice(b"body");
        let head_len = wire.len() - 4;
        for split in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            let first = take_vars(&mut buf, &LIMITS).unwrap();
            if split < head_len {
                assert!(first.is_none(), "complete at {split} of {head_len}");
                buf.extend_from_slice(&wire[split..]);
                assert_vars(&take_vars(&mut buf, &LIMITS).unwrap().expect("complete"));
            } else {
                assert_vars(&first.expect("complete"));
                buf.extend_from_slice(&wire[split..]);
            }
            assert_eq!(&buf[..], b"body", "the body stays, at {split}");
        }
    }

    #[test]
    fn a_packet_fed_byte_by_byte() {
        let wire = packet(0, &block(VARS));
        let mut buf = BytesMut::new();
        for (i, &b) in wire.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            let got = take_vars(&mut buf, &LIMITS).unwrap();
            assert_eq!(got.is_some(), i == wire.len() - 1, "at byte {i}");
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn an_empty_block_has_no_vars() {
        let mut buf = BytesMut::from(&packet(0, &[])[..]);
        let vars = take_vars(&mut buf, &LIMITS).unwrap().expect("complete");
        assert_eq!(vars.get("REQUEST_METHOD"), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_values_are_kept() {
        let vars = decode_vars(Bytes::from(block(&[("CONTENT_TYPE", "")])), 8).unwrap();
        assert_eq!(vars.get("CONTENT_TYPE"), Some(&b""[..]));
    }

    #[test]
    fn truncated_blocks_are_malformed() {
        let whole = block(VARS);
        // Every cut that is not at a var's end leaves a var unfinished.
        let ends: Vec<usize> = (0..=VARS.len()).map(|n| block(&VARS[..n]).len()).collect();
        for cut in 0..whole.len() {
            let got = decode_vars(Bytes::copy_from_slice(&whole[..cut]), 8);
            if ends.contains(&cut) {
                assert!(got.is_ok(), "cut at a var's end ({cut})");
            } else {
                assert_eq!(got.err(), Some(Malformed::Overrun), "cut at {cut}");
            }
        }
        // A block that ends inside a value's length.
        let mut odd = block(&[("A", "1")]);
        odd.extend_from_slice(&[1, 0, b'B', 1]);
        assert_eq!(
            decode_vars(Bytes::from(odd), 8).err(),
            Some(Malformed::Overrun)
        );
    }

    #[test]
    fn a_var_that_overruns_the_block_is_malformed() {
        let mut b = block(&[("REQUEST_METHOD", "GET")]);
        b.extend_from_slice(&9u16.to_le_bytes());
        b.extend_from_slice(b"PATH");
        assert_eq!(
            decode_vars(Bytes::from(b), 8).err(),
            Some(Malformed::Overrun)
        );
        // A value whose length is past the block, whose next bytes (the body)
        // are in the buffer: still malformed, the body is not read as vars.
        let mut b = block(&[("A", "1")]);
        let n = b.len();
        b[n - 3] = 200;
        let mut wire = BytesMut::from(&packet(0, &b)[..]);
        wire.extend_from_slice(&[b'x'; 300]);
        assert_eq!(
            take_vars(&mut wire, &LIMITS).err(),
            Some(Malformed::Overrun)
        );
    }

    #[test]
    fn bad_modifier_and_oversize_are_refused_from_the_header_alone() {
        let mut buf = BytesMut::from(&[5u8, 10, 0, 0][..]);
        assert_eq!(
            take_vars(&mut buf, &LIMITS).err(),
            Some(Malformed::Modifier(5))
        );
        let mut buf = BytesMut::from(&[0u8, 0x01, 0x10, 0][..]); // 4097
        assert_eq!(
            take_vars(&mut buf, &LIMITS).err(),
            Some(Malformed::TooLarge(4097))
        );
        let mut buf = BytesMut::from(&[0u8, 0, 0x10][..]);
        assert_eq!(take_vars(&mut buf, &LIMITS).unwrap().map(|_| ()), None);
    }

    #[test]
    fn too_many_vars_and_empty_names_are_refused() {
        let many: Vec<(String, String)> =
            (0..9).map(|i| (format!("V{i}"), String::new())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let b = Bytes::from(block(&many));
        assert_eq!(decode_vars(b.clone(), 8).err(), Some(Malformed::TooMany));
        assert!(decode_vars(b, 9).is_ok());
        let b = Bytes::from(block(&[("", "x")]));
        assert_eq!(decode_vars(b, 8).err(), Some(Malformed::EmptyName));
    }
}
