//! The CGI response head a FastCGI responder writes on STDOUT (RFC 3875
//! §6.3: a `Status` field instead of a status line).
//!
//! Rules kept here:
//! - `Status: NNN Reason` first, then the fields as `start_response`
//!   validated them, then `Date` (the HTTP/1.1 engine's cached line,
//!   RFC 9110 §6.6.1) unless the application set one.
//! - A body known in full gets its Content-Length unless one was declared,
//!   the status has no body (1xx, 204, 304), or the request was HEAD (the
//!   gateway has put in the length when it is known): the web server can
//!   then keep its client connection without chunking. Nothing hop-by-hop
//!   (`Connection`, `Transfer-Encoding`) is added: framing is FastCGI's.

use http::StatusCode;

use crate::exchange::{BodySource, ResponseStart};
use crate::protocols::http1::encode;

/// Appends the CGI response head of `start` (ending with the blank line);
/// `head_request`: the answer to a HEAD request.
pub fn head(out: &mut Vec<u8>, start: &ResponseStart, head_request: bool) {
    let status = start.status;
    out.extend_from_slice(b"Status: ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    let standard = status.canonical_reason().unwrap_or("Unknown").as_bytes();
    out.extend_from_slice(start.reason.as_deref().unwrap_or(standard));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(start.headers.as_bytes());
    if !start.headers.has_date() {
        encode::date(out);
    }
    let known = match &start.body {
        BodySource::Full(body) => Some(body.len() as u64),
        BodySource::File(region) => Some(region.len),
        BodySource::Short(_) | BodySource::Stream(_) => None,
    };
    if let Some(n) = known {
        let add = !head_request && has_body(status);
        if add && start.headers.content_length().is_none() {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether a response with `status` may carry a body (RFC 9110 §15.2,
/// §15.3.5, §15.4.5).
pub fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::exchange::ResponseHeaders;

    fn start(status: u16, fields: &[(&str, &str)], body: &'static [u8]) -> ResponseStart {
        let mut headers = ResponseHeaders::default();
        for (n, v) in fields {
            headers.push(n.as_bytes(), v.as_bytes()).unwrap();
        }
        ResponseStart {
            status: StatusCode::from_u16(status).unwrap(),
            reason: None,
            headers,
            body: BodySource::Full(Bytes::from_static(body)),
        }
    }

    fn text(start: &ResponseStart) -> String {
        let mut out = Vec::new();
        head(&mut out, start, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn status_fields_date_and_length() {
        let t = text(&start(200, &[("Content-Type", "text/plain")], b"hello"));
        assert!(
            t.starts_with("Status: 200 OK\r\nContent-Type: text/plain\r\nDate: "),
            "{t}"
        );
        assert!(t.ends_with("GMT\r\nContent-Length: 5\r\n\r\n"), "{t}");
        let mut custom = start(404, &[("Date", "x"), ("Content-Length", "3")], b"abc");
        custom.reason = Some(Bytes::from_static(b"Nope"));
        assert_eq!(
            text(&custom),
            "Status: 404 Nope\r\nDate: x\r\nContent-Length: 3\r\n\r\n"
        );
        let t = text(&start(304, &[("Date", "x")], b""));
        assert_eq!(t, "Status: 304 Not Modified\r\nDate: x\r\n\r\n");
        let mut out = Vec::new();
        head(&mut out, &start(200, &[("Date", "x")], b""), true);
        assert_eq!(
            out, b"Status: 200 OK\r\nDate: x\r\n\r\n",
            "HEAD: no length added"
        );
    }
}
