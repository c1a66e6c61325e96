//! The head of a forwarded request and of the backend's answer.
//!
//! Rules:
//! - Hop-by-hop fields go neither way (RFC 9110 §7.6.1): `Connection`, every
//!   field it names, `Proxy-Connection`, `Keep-Alive`, `TE`,
//!   `Transfer-Encoding` and `Upgrade` (so no protocol switch, no WebSocket,
//!   goes through). `Expect` is dropped too: the body is already read
//!   (RFC 9110 §10.1.1 lets a proxy answer `100-continue` itself).
//! - The request keeps the client's `Host` (nginx's `proxy_set_header Host
//!   $host`), so the application builds its URLs for the name the client
//!   used; without one (HTTP/1.0), hyper's client sends the backend's.
//! - `X-Forwarded-For`: the fields received, then the client's address
//!   (nginx's `$proxy_add_x_forwarded_for`), unless the last entry already
//!   is that address (a trusted proxy's entry that `--forwarded-allow-ips`
//!   made the client). `X-Forwarded-Proto`: the request's scheme.
//!   `X-Forwarded-Host`: the request's `Host`. The last two replace what the
//!   client sent: the backend must be able to believe them.
//! - The request target is sent as received (path and query, prefix kept:
//!   nginx's `proxy_pass` without a URI); a backend URL's path other than
//!   `/` is put in front of it.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};

/// `X-Forwarded-For`: the addresses the request went through.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`: the scheme the client used.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`: the `Host` the client asked for.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The fixed hop-by-hop fields (RFC 9110 §7.6.1), besides those
/// `Connection` names.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes the hop-by-hop fields of `headers` (RFC 9110 §7.6.1).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// The request's fields as a backend gets them: hop-by-hop and `Expect`
/// removed, `Content-Length` set to the body's `len` bytes (when
/// `framed` or not empty: the body is always sent with a length), and
/// the `X-Forwarded-*` fields for a client at `peer` that used `proto`.
pub fn for_backend(
    headers: &mut HeaderMap,
    len: u64,
    framed: bool,
    peer: Option<IpAddr>,
    proto: &HeaderValue,
) {
    strip_hop_by_hop(headers);
    headers.remove(header::EXPECT);
    headers.remove(header::CONTENT_LENGTH);
    if framed || len > 0 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(peer) = peer {
        forwarded_for(headers, peer);
    }
    headers.insert(X_FORWARDED_PROTO, proto.clone());
    match headers.get(header::HOST).cloned() {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// `X-Forwarded-For`: the received entries, then `peer` unless it is the
/// last of them already.
fn forwarded_for(headers: &mut HeaderMap, peer: IpAddr) {
    let peer = peer.to_string();
    let entries: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    let value = match entries.last() {
        None => peer,
        Some(last) if *last == peer => entries.join(", "),
        Some(_) => format!("{}, {peer}", entries.join(", ")),
    };
    // Addresses and fields that were valid values, joined by ", ".
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// The URL a request for `target` goes to on `backend`: the backend's
/// scheme and authority, its path (unless `/`, without a trailing slash),
/// then the target's path and query.
///
/// # Errors
/// [`http::Error`] if the pieces make no valid URL (a backend URL is
/// checked when the options are read, so this does not happen).
pub fn target(backend: &Uri, target: &Uri) -> Result<Uri, http::Error> {
    let asked = target.path_and_query().map_or("/", PathAndQuery::as_str);
    let base = backend.path().trim_end_matches('/');
    let path: PathAndQuery = if base.is_empty() {
        PathAndQuery::try_from(asked)?
    } else {
        PathAndQuery::try_from(format!("{base}{asked}"))?
    };
    let mut parts = backend.clone().into_parts();
    parts.path_and_query = Some(path);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_go() {
        let mut headers = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "2"),
        ]);
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-kept"]);
    }

    #[test]
    fn forwarded_fields_are_added() {
        let proto = HeaderValue::from_static("https");
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let mut headers = map(&[
            ("host", "site.example"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "ftp"),
            ("x-forwarded-host", "forged"),
            ("expect", "100-continue"),
            ("transfer-encoding", "chunked"),
        ]);
        for_backend(&mut headers, 5, true, Some(peer), &proto);
        assert_eq!(headers["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "site.example");
        assert_eq!(headers["content-length"], "5");
        assert!(!headers.contains_key("expect") && !headers.contains_key("transfer-encoding"));

        // The client a trusted proxy named is not named twice.
        let mut headers = map(&[("x-forwarded-for", "7.7.7.7, 10.0.0.9")]);
        for_backend(&mut headers, 0, false, Some(peer), &proto);
        assert_eq!(headers["x-forwarded-for"], "7.7.7.7, 10.0.0.9");
        assert!(!headers.contains_key("content-length"));
        assert!(!headers.contains_key("x-forwarded-host"));
    }

    #[test]
    fn the_target_keeps_path_and_query_after_the_backend_path() {
        let uri = |u: &str| u.parse::<Uri>().unwrap();
        let cases = [
            ("http://b:9/", "/api/x?q=1", "http://b:9/api/x?q=1"),
            ("http://b:9/base", "/api/x?q=1", "http://b:9/base/api/x?q=1"),
            ("http://b:9/base/", "/api", "http://b:9/base/api"),
            ("http://b:9/", "http://front/api/y", "http://b:9/api/y"),
        ];
        for (backend, asked, want) in cases {
            assert_eq!(target(&uri(backend), &uri(asked)).unwrap(), uri(want));
        }
    }
}
