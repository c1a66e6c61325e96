//! Requests described by CGI variables: what the uwsgi and FastCGI engines
//! receive from a proxy (nginx's `uwsgi_params` and `fastcgi_params`,
//! Apache's `mod_proxy_fcgi`), turned into the seam's [`Request`].
//!
//! Rules kept here (RFC 3875 §4.1, PEP 3333 "environ Variables"):
//! - The proxy is trusted (only peers in `--proxy-allow-from` get this far),
//!   so what it says holds: every variable it sends reaches the environ as
//!   it is (`Request::vars`), set over the ones made from the request, with
//!   these exceptions:
//!   - `HTTP_*` variables become header fields (`HTTP_X_A` → `x-a`), so the
//!     middleware (`--forwarded-allow-ips`) and the environ see headers.
//!   - `CONTENT_TYPE` becomes the header of that name, and `CONTENT_LENGTH`
//!     is the body's length as received; an empty value means "none".
//!   - `REMOTE_ADDR`/`REMOTE_PORT`, when they are an IP address and a port,
//!     become the request's client (`Request::peer`).
//!   - `SCRIPT_NAME` only when `PATH_INFO` comes too: nginx's
//!     `fastcgi_params` send `SCRIPT_NAME` as the whole path (a PHP script's
//!     name) and no `PATH_INFO`; the path then comes from `REQUEST_URI`, as
//!     for HTTP, and SCRIPT_NAME is `--script-name`.
//! - `HTTPS` (`on`, `1`), else `REQUEST_SCHEME` or `UWSGI_SCHEME`, sets
//!   `wsgi.url_scheme`.
//! - The target is `REQUEST_URI` when it is an origin-form target, else
//!   `PATH_INFO` (percent-encoded again) and `QUERY_STRING`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Method, Uri, Version};
use percent_encoding::{percent_encode, AsciiSet, CONTROLS};

use crate::exchange::{Connection, Request, RequestBody, Vars};

/// Why variables do not describe a request; the engine answers 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadVars(pub &'static str);

/// What a path needs escaped to be a URI path again (RFC 3986 §3.3).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'%');

/// The variables of one request, as received.
#[derive(Debug, Default)]
pub struct CgiVars {
    vars: Vec<(Bytes, Bytes)>,
}

impl CgiVars {
    /// No variables, with room for `n`.
    pub fn with_capacity(n: usize) -> Self {
        CgiVars {
            vars: Vec::with_capacity(n),
        }
    }

    /// Adds `name = value` (a repeated name: the last one counts).
    pub fn push(&mut self, name: Bytes, value: Bytes) {
        self.vars.push((name, value));
    }

    /// The value of `name`, if sent (the last one when repeated).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v.as_ref())
    }

    /// `CONTENT_LENGTH` as a number of bytes; `None` when absent or empty.
    ///
    /// # Errors
    /// [`BadVars`] when it is not a decimal number.
    pub fn content_length(&self) -> Result<Option<u64>, BadVars> {
        match self.get("CONTENT_LENGTH") {
            None | Some(b"") => Ok(None),
            Some(digits) => std::str::from_utf8(digits)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or(BadVars("CONTENT_LENGTH is not a number")),
        }
    }

    /// Builds the request these variables describe, with `body`, received
    /// on `conn` (the proxy's connection).
    ///
    /// # Errors
    /// [`BadVars`] when REQUEST_METHOD is missing or not a token, the target
    /// cannot be made, or a header variable's value holds a control
    /// character.
    pub fn into_request(self, body: RequestBody, conn: &Connection) -> Result<Request, BadVars> {
        let method = self
            .get("REQUEST_METHOD")
            .and_then(|m| Method::from_bytes(m).ok())
            .ok_or(BadVars("REQUEST_METHOD is missing or malformed"))?;
        let uri = self.target()?;
        let version = match self.get("SERVER_PROTOCOL") {
            Some(b"HTTP/1.0") => Version::HTTP_10,
            Some(b"HTTP/2.0" | b"HTTP/2") => Version::HTTP_2,
            _ => Version::HTTP_11,
        };
        let has_body_framing = self.content_length()?.is_some();
        let scheme = self.scheme();
        let peer = self.peer();
        let keep_script_name = self.get("PATH_INFO").is_some();
        let mut http = http::Request::new(body);
        *http.method_mut() = method;
        *http.uri_mut() = uri;
        *http.version_mut() = version;
        let mut vars: Vars = Vec::with_capacity(self.vars.len());
        for (name, value) in self.vars {
            if let Some(header) = name.strip_prefix(b"HTTP_") {
                let (name, value) = header_field(header, &value)?;
                http.headers_mut().append(name, value);
                continue;
            }
            match name.as_ref() {
                b"CONTENT_LENGTH" => {}
                b"CONTENT_TYPE" if !value.is_empty() => {
                    let value = HeaderValue::from_maybe_shared(value)
                        .map_err(|_| BadVars("CONTENT_TYPE holds a control character"))?;
                    http.headers_mut().insert(CONTENT_TYPE, value);
                }
                b"CONTENT_TYPE" => {}
                b"REMOTE_ADDR" | b"REMOTE_PORT" if peer.is_some() => {}
                b"SCRIPT_NAME" if !keep_script_name => {}
                _ => vars.push((name, value)),
            }
        }
        let mut request = Request::new(http, has_body_framing, conn);
        request.peer = peer;
        request.scheme = scheme.or(request.scheme);
        request.vars = Some(Arc::new(vars));
        Ok(request)
    }

    /// The request target: REQUEST_URI when it is origin-form, else
    /// PATH_INFO (escaped again) and QUERY_STRING.
    fn target(&self) -> Result<Uri, BadVars> {
        if let Some(uri) = self.get("REQUEST_URI").filter(|u| u.starts_with(b"/")) {
            if let Ok(uri) = Uri::from_maybe_shared(Bytes::copy_from_slice(uri)) {
                return Ok(uri);
            }
        }
        let path = self
            .get("PATH_INFO")
            .filter(|p| !p.is_empty())
            .unwrap_or(b"/");
        let mut target = BytesMut::with_capacity(path.len() + 16);
        if !path.starts_with(b"/") {
            target.extend_from_slice(b"/");
        }
        for piece in percent_encode(path, PATH) {
            target.extend_from_slice(piece.as_bytes());
        }
        if let Some(query) = self.get("QUERY_STRING").filter(|q| !q.is_empty()) {
            target.extend_from_slice(b"?");
            target.extend_from_slice(query);
        }
        Uri::from_maybe_shared(target.freeze()).map_err(|_| BadVars("no usable request target"))
    }

    /// `https` or `http` when the proxy said which.
    fn scheme(&self) -> Option<&'static str> {
        let is = |name: &str, want: &str| {
            self.get(name)
                .is_some_and(|v| v.eq_ignore_ascii_case(want.as_bytes()))
        };
        if is("HTTPS", "on") || is("HTTPS", "1") {
            return Some("https");
        }
        ["REQUEST_SCHEME", "UWSGI_SCHEME"]
            .iter()
            .find_map(|name| match self.get(name) {
                Some(v) if v.eq_ignore_ascii_case(b"https") => Some("https"),
                Some(v) if v.eq_ignore_ascii_case(b"http") => Some("http"),
                _ => None,
            })
    }

    /// The client the proxy names (port 0 when it gave none).
    fn peer(&self) -> Option<SocketAddr> {
        let text = |name| self.get(name).and_then(|v| std::str::from_utf8(v).ok());
        let ip: IpAddr = text("REMOTE_ADDR")?.parse().ok()?;
        let port = text("REMOTE_PORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Some(SocketAddr::new(ip, port))
    }
}

/// The header field of an `HTTP_*` variable: `X_FORWARDED_FOR` →
/// `x-forwarded-for`.
fn header_field(name: &[u8], value: &Bytes) -> Result<(HeaderName, HeaderValue), BadVars> {
    let name: Vec<u8> = name
        .iter()
        .map(|&b| {
            if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    let name = HeaderName::from_bytes(&name)
        .map_err(|_| BadVars("a header variable's name is not a token"))?;
    let value = HeaderValue::from_maybe_shared(value.clone())
        .map_err(|_| BadVars("a header variable's value holds a control character"))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::LocalAddr;

    fn vars(pairs: &[(&str, &str)]) -> CgiVars {
        let mut vars = CgiVars::default();
        for (n, v) in pairs {
            vars.push(
                Bytes::copy_from_slice(n.as_bytes()),
                Bytes::copy_from_slice(v.as_bytes()),
            );
        }
        vars
    }

    fn request(pairs: &[(&str, &str)]) -> Request {
        let conn = Connection::plain(None, Arc::new(LocalAddr::Unix("/s".into())));
        vars(pairs).into_request(RequestBody::Empty, &conn).unwrap()
    }

    fn var<'a>(r: &'a Request, name: &str) -> Option<&'a [u8]> {
        let vars = r.vars.as_ref()?;
        vars.iter()
            .find(|(n, _)| n.as_ref() == name.as_bytes())
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn nginx_fastcgi_params() {
        let r = request(&[
            ("QUERY_STRING", "a=1"),
            ("REQUEST_METHOD", "POST"),
            ("CONTENT_TYPE", "text/plain"),
            ("CONTENT_LENGTH", "3"),
            ("SCRIPT_NAME", "/app/x"),
            ("REQUEST_URI", "/app/x?a=1"),
            ("DOCUMENT_URI", "/app/x"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "https"),
            ("HTTPS", "on"),
            ("REMOTE_ADDR", "10.1.2.3"),
            ("REMOTE_PORT", "5555"),
            ("SERVER_NAME", "example.com"),
            ("SERVER_PORT", "443"),
            ("HTTP_HOST", "example.com"),
            ("HTTP_X_FORWARDED_FOR", "1.1.1.1"),
        ]);
        assert_eq!(r.http.method(), Method::POST);
        assert_eq!(r.http.uri(), "/app/x?a=1");
        assert_eq!(r.http.headers()["host"], "example.com");
        assert_eq!(r.http.headers()["x-forwarded-for"], "1.1.1.1");
        assert_eq!(r.http.headers()["content-type"], "text/plain");
        assert!(r.has_body_framing);
        assert_eq!(r.peer, Some("10.1.2.3:5555".parse().unwrap()));
        assert_eq!(r.scheme, Some("https"));
        assert_eq!(
            var(&r, "SCRIPT_NAME"),
            None,
            "no PATH_INFO: SCRIPT_NAME is ours"
        );
        assert_eq!(var(&r, "SERVER_NAME"), Some(&b"example.com"[..]));
        assert_eq!(var(&r, "REMOTE_ADDR"), None, "carried as the peer");
        assert_eq!(var(&r, "CONTENT_LENGTH"), None);
    }

    #[test]
    fn uwsgi_params_keep_path_info_and_script_name() {
        let r = request(&[
            ("REQUEST_METHOD", "GET"),
            ("PATH_INFO", "/caf\u{e9} x"),
            ("SCRIPT_NAME", "/mount"),
            ("QUERY_STRING", "q=1"),
            ("CONTENT_LENGTH", ""),
            ("CONTENT_TYPE", ""),
            ("REMOTE_ADDR", "unix:"),
        ]);
        assert_eq!(r.http.uri().path(), "/caf%C3%A9%20x");
        assert_eq!(r.http.uri().query(), Some("q=1"));
        assert!(!r.has_body_framing);
        assert!(r.http.headers().get("content-type").is_none());
        assert_eq!(var(&r, "SCRIPT_NAME"), Some(&b"/mount"[..]));
        assert_eq!(var(&r, "PATH_INFO"), Some("/caf\u{e9} x".as_bytes()));
        assert_eq!(r.peer, None);
        assert_eq!(var(&r, "REMOTE_ADDR"), Some(&b"unix:"[..]));
    }

    #[test]
    fn bad_variables_are_refused() {
        let conn = Connection::plain(None, Arc::new(LocalAddr::Unix("/s".into())));
        let bad = |pairs: &[(&str, &str)]| {
            vars(pairs)
                .into_request(RequestBody::Empty, &conn)
                .expect_err("refused")
        };
        bad(&[("PATH_INFO", "/")]);
        bad(&[("REQUEST_METHOD", "G ET")]);
        bad(&[("REQUEST_METHOD", "GET"), ("HTTP_X", "a\nb")]);
        bad(&[("REQUEST_METHOD", "GET"), ("HTTP_X Y", "a")]);
        bad(&[("REQUEST_METHOD", "GET"), ("CONTENT_LENGTH", "-1")]);
    }
}
