//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer's
//! header before the first byte of HTTP, naming the client.
//!
//! Rules: only a peer in `--proxy-allow-from` may send one, and with
//! `--proxy-protocol` every connection must start with one; a connection
//! from anyone else, without a header, or with a malformed one is closed
//! without an answer. The header is consumed exactly (peeked, then read to
//! its last byte), so the engine's first read starts at the request. `LOCAL`
//! (v2) and `UNKNOWN` (v1) keep the connection's own peer.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The version 2 signature (12 bytes).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 header, CRLF included.
const V1_MAX: usize = 107;
/// The longest version 2 header: 16 bytes and a 16-bit length.
const MAX_HEADER: usize = 16 + u16::MAX as usize;

/// Why a connection was closed.
#[derive(Debug)]
pub enum ProxyError {
    /// No complete header within the time allowed, or the peer went away.
    Io(io::Error),
    /// Not a PROXY header, or a malformed one.
    Malformed(&'static str),
}

impl From<io::Error> for ProxyError {
    fn from(e: io::Error) -> Self {
        ProxyError::Io(e)
    }
}

/// Reads the PROXY header at the start of `stream` within `timeout` and
/// returns the client it names (`None`: keep the connection's own peer).
///
/// # Errors
/// [`ProxyError`]: the header is missing, malformed, or late.
pub async fn read_header<S>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyError>
where
    S: AsyncRead + AsRawFd + Unpin + Readable,
{
    tokio::time::timeout(timeout, read(stream))
        .await
        .map_err(|_| ProxyError::Io(io::ErrorKind::TimedOut.into()))?
}

async fn read<S>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError>
where
    S: AsyncRead + AsRawFd + Unpin + Readable,
{
    // Bytes of an unfinished header are taken off the socket (they are all
    // header), so a peer that closes mid-header is seen (the next peek gives
    // 0); the end of the header is found by peeking, so that no byte of the
    // request is read here.
    let mut header = Vec::new();
    let mut peeked = [0u8; 256];
    loop {
        let n = peek(stream, &mut peeked).await?;
        if n == 0 {
            return Err(ProxyError::Malformed("closed before the end of the header"));
        }
        let start = header.len();
        header.extend_from_slice(&peeked[..n]);
        match header_len(&header)? {
            Some(len) => {
                header.truncate(len);
                stream.read_exact(&mut header[start..]).await?;
                return parse(&header);
            }
            None if header.len() > MAX_HEADER => {
                return Err(ProxyError::Malformed("header too long"))
            }
            None => stream.read_exact(&mut header[start..]).await?,
        };
    }
}

/// The header's whole length once `data` holds enough of it; `None`: more
/// bytes are needed.
fn header_len(data: &[u8]) -> Result<Option<usize>, ProxyError> {
    let start = &data[..data.len().min(V2_SIGNATURE.len())];
    if !start.is_empty() && V2_SIGNATURE.starts_with(start) {
        if data.len() < 16 {
            return Ok(None);
        }
        let len = 16 + usize::from(u16::from_be_bytes([data[14], data[15]]));
        return Ok((data.len() >= len).then_some(len));
    }
    if !b"PROXY ".starts_with(&data[..data.len().min(6)]) {
        return Err(ProxyError::Malformed("no PROXY header"));
    }
    match memchr::memmem::find(data, b"\r\n") {
        Some(end) if end + 2 <= V1_MAX => Ok(Some(end + 2)),
        Some(_) => Err(ProxyError::Malformed("version 1 header too long")),
        None if data.len() >= V1_MAX => Err(ProxyError::Malformed("version 1 header too long")),
        None => Ok(None),
    }
}

/// Parses a complete header (v1 or v2).
fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    if header.starts_with(V2_SIGNATURE) {
        parse_v2(header)
    } else {
        parse_v1(header)
    }
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`.
fn parse_v1(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let bad = ProxyError::Malformed("malformed version 1 header");
    let line = std::str::from_utf8(&header[..header.len() - 2])
        .map_err(|_| ProxyError::Malformed("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Ok(None),
        ["PROXY", family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| bad)?;
            if ip.is_ipv4() != (*family == "TCP4") {
                return Err(ProxyError::Malformed("address does not match its family"));
            }
            let port = sport
                .parse::<u16>()
                .map_err(|_| ProxyError::Malformed("bad port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(bad),
    }
}

/// The binary header: signature, version/command, family, length, addresses.
fn parse_v2(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    let (version, command, family) = (header[12] >> 4, header[12] & 0x0f, header[13]);
    if version != 2 {
        return Err(ProxyError::Malformed("unknown version"));
    }
    let body = &header[16..];
    match (command, family >> 4) {
        (0x0, _) => Ok(None), // LOCAL: the proxy's own health check
        (0x1, 0x1) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Ok(Some(SocketAddr::new(
                ip.into(),
                u16::from_be_bytes([body[8], body[9]]),
            )))
        }
        (0x1, 0x2) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Ok(Some(SocketAddr::new(Ipv6Addr::from(octets).into(), port)))
        }
        (0x1, 0x0 | 0x3) => Ok(None), // UNSPEC or unix: no address to give
        (0x1, _) => Err(ProxyError::Malformed("address block too short")),
        _ => Err(ProxyError::Malformed("unknown command")),
    }
}

/// Streams that can be peeked at through the runtime (so that a peek that
/// finds nothing clears the readiness and the task really waits).
pub trait Readable {
    /// Completes when the stream may have bytes to read.
    fn readable_again(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    /// `recv(MSG_PEEK)` now; `WouldBlock` (readiness cleared) when empty.
    fn try_peek(&self, buf: &mut [u8]) -> io::Result<usize>;
}

macro_rules! readable {
    ($stream:ty) => {
        impl Readable for $stream {
            async fn readable_again(&self) -> io::Result<()> {
                self.readable().await
            }

            fn try_peek(&self, buf: &mut [u8]) -> io::Result<usize> {
                self.try_io(tokio::io::Interest::READABLE, || {
                    peek_now(self.as_raw_fd(), buf)
                })
            }
        }
    };
}

readable!(tokio::net::TcpStream);
readable!(tokio::net::UnixStream);

/// One `recv(MSG_PEEK | MSG_DONTWAIT)` on `fd`.
fn peek_now(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is open for as long
    // as the stream that lent it lives.
    let n = unsafe {
        libc::recv(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The bytes queued on `stream`, without taking them; waits until there is
/// at least one (or the end of the stream: 0).
async fn peek<S: Readable>(stream: &S, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable_again().await?;
        match stream.try_peek(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(header: &[u8]) -> Option<SocketAddr> {
        let len = header_len(header).unwrap().expect("complete");
        assert_eq!(len, header.len());
        parse(header).unwrap()
    }

    #[test]
    fn version_1() {
        assert_eq!(
            client(b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"),
            Some("192.0.2.1:56324".parse().unwrap())
        );
        assert_eq!(
            client(b"PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n"),
            Some("[2001:db8::1]:4711".parse().unwrap())
        );
        assert_eq!(client(b"PROXY UNKNOWN\r\n"), None);
        assert!(header_len(b"GET / HTTP/1.1\r\n").is_err());
        assert!(header_len(b"PROXY TCP4 1.2").unwrap().is_none());
        assert!(parse(b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2\r\n").is_err());
        assert!(parse(b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n").is_err());
    }

    #[test]
    fn version_2() {
        let mut v4 = V2_SIGNATURE.to_vec();
        v4.extend([
            0x21, 0x11, 0, 12, 192, 0, 2, 1, 198, 51, 100, 1, 0xdc, 0x04, 1, 187,
        ]);
        assert_eq!(client(&v4), Some("192.0.2.1:56324".parse().unwrap()));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(client(&local), None);
        assert!(header_len(&v4[..14]).unwrap().is_none());
        let mut short = V2_SIGNATURE.to_vec();
        short.extend([0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(parse(&short).is_err());
    }
}
