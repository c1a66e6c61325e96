//! `--forwarded-allow-ips`: believe a proxy about the client.
//!
//! Rules (gunicorn's option, with its known gaps closed):
//! - Only a peer in the trust list is believed; from anyone else the headers
//!   reach the application untouched and change nothing.
//! - `Forwarded` (RFC 7239 §4) wins over `X-Forwarded-For`/`-Proto` when
//!   both are present. Each header may be repeated; its lists are read in
//!   order, the last element being the nearest proxy's.
//! - The client is the rightmost address that is not itself trusted (a
//!   client cannot forge the entries our own proxies appended); if every hop
//!   is trusted, the leftmost. An entry that is not an address (`unknown`,
//!   an obfuscated `_name`, garbage) stops the walk and nothing is changed.
//! - The scheme is the one given beside that hop (or the only one given);
//!   only `http` and `https` are taken.
//! - REMOTE_PORT is the port given with the address (`Forwarded:
//!   for="[2001:db8::1]:4711"`), else absent.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};

use crate::config::TrustList;
use crate::exchange::{Dispatch, Job, Request, Stopped};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// A [`Dispatch`] that applies forwarded headers from trusted peers, then
/// hands the job on.
pub struct Forwarded {
    inner: Arc<dyn Dispatch>,
    trusted: TrustList,
}

impl Forwarded {
    /// Wraps `inner`; `trusted`: the peers whose headers are believed.
    pub fn new(inner: Arc<dyn Dispatch>, trusted: TrustList) -> Self {
        Forwarded { inner, trusted }
    }
}

impl Dispatch for Forwarded {
    fn dispatch(&self, mut job: Job) -> Result<(), Stopped> {
        apply(&mut job.request, &self.trusted);
        self.inner.dispatch(job)
    }
}

/// One hop as a proxy reported it: the address it received the request
/// from (`None`: not an address) and the scheme it was received with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    client: Option<SocketAddr>,
    /// Whether the proxy named a client at all (`unknown` and garbage do).
    named: bool,
    proto: Option<&'static str>,
}

/// Rewrites `peer` and `scheme` of a request from a trusted peer.
pub fn apply(request: &mut Request, trusted: &TrustList) {
    if !trusted.allows(request.peer.map(|p| p.ip())) {
        return;
    }
    let headers = request.http.headers();
    // One pass over the (few) names first: most requests carry none of these.
    let named = |n: &HeaderName| {
        n == http::header::FORWARDED || n == X_FORWARDED_FOR || n == X_FORWARDED_PROTO
    };
    if !headers.keys().any(named) {
        return;
    }
    let hops = if headers.contains_key(http::header::FORWARDED) {
        rfc7239_hops(headers)
    } else {
        x_forwarded_hops(headers)
    };
    if hops.is_empty() {
        return;
    }
    // From the nearest proxy outwards: skip the hops we trust.
    let chosen = hops
        .iter()
        .rev()
        .find(|hop| !hop.client.is_some_and(|c| trusted.allows(Some(c.ip()))))
        .unwrap_or(&hops[0]);
    match chosen.client {
        Some(client) => request.peer = Some(client),
        None if chosen.named => return, // `unknown` or garbage: believe nothing
        None => {}
    }
    if let Some(proto) = chosen.proto {
        request.scheme = Some(proto);
    }
}

/// The comma-separated elements of every `name` field, in order.
fn elements<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

fn x_forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let clients = elements(headers, &X_FORWARDED_FOR);
    let protos = elements(headers, &X_FORWARDED_PROTO);
    if clients.is_empty() {
        // A scheme alone, from a trusted proxy: the nearest one's.
        return protos
            .last()
            .map(|p| Hop {
                client: None,
                named: false,
                proto: scheme(p),
            })
            .into_iter()
            .collect();
    }
    let aligned = protos.len() == clients.len();
    clients
        .iter()
        .enumerate()
        .map(|(i, c)| Hop {
            client: address(c),
            named: true,
            proto: if aligned {
                scheme(protos[i])
            } else {
                protos.last().and_then(|p| scheme(p))
            },
        })
        .collect()
}

/// RFC 7239 §4: `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::17]:4711"`.
fn rfc7239_hops(headers: &HeaderMap) -> Vec<Hop> {
    elements(headers, &http::header::FORWARDED)
        .into_iter()
        .map(|element| {
            let mut hop = Hop {
                client: None,
                named: false,
                proto: None,
            };
            for pair in element.split(';') {
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => (hop.client, hop.named) = (address(value), true),
                    "proto" => hop.proto = scheme(value),
                    _ => {}
                }
            }
            hop
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:80`; port 0 when none is given.
fn address(text: &str) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip = text.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    Some(SocketAddr::new(ip, 0))
}

fn scheme(text: &str) -> Option<&'static str> {
    match text.trim().to_ascii_lowercase().as_str() {
        "http" => Some("http"),
        "https" => Some("https"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Connection, LocalAddr, RequestBody};

    fn request(peer: &str, fields: &[(&str, &str)]) -> Request {
        let mut http = http::Request::new(RequestBody::Empty);
        for (name, value) in fields {
            http.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let local = Arc::new(LocalAddr::Tcp("127.0.0.1:8000".parse().unwrap()));
        Request::new(
            http,
            false,
            &Connection::plain(Some(peer.parse().unwrap()), local),
        )
    }

    fn local_proxy() -> TrustList {
        TrustList::parse(&["127.0.0.1".into(), "::1".into()]).unwrap()
    }

    fn applied(peer: &str, fields: &[(&str, &str)]) -> (String, Option<&'static str>) {
        let mut req = request(peer, fields);
        apply(&mut req, &local_proxy());
        (req.peer.unwrap().to_string(), req.scheme)
    }

    #[test]
    fn believes_a_trusted_proxy_only() {
        let fields = [
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-Proto", "https"),
        ];
        assert_eq!(
            applied("127.0.0.1:5000", &fields),
            ("203.0.113.7:0".into(), Some("https"))
        );
        assert_eq!(
            applied("198.51.100.1:5000", &fields),
            ("198.51.100.1:5000".into(), None)
        );
    }

    #[test]
    fn takes_the_rightmost_untrusted_hop() {
        let fields = [("X-Forwarded-For", "6.6.6.6, 203.0.113.7, 127.0.0.1")];
        assert_eq!(applied("127.0.0.1:1", &fields).0, "203.0.113.7:0");
        let all_trusted = [("X-Forwarded-For", "::1, 127.0.0.1")];
        assert_eq!(applied("127.0.0.1:1", &all_trusted).0, "[::1]:0");
        let garbage = [("X-Forwarded-For", "203.0.113.7, nonsense")];
        assert_eq!(applied("127.0.0.1:1", &garbage).0, "127.0.0.1:1");
    }

    #[test]
    fn reads_rfc7239() {
        let fields = [(
            "Forwarded",
            r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711";proto=https"#,
        )];
        assert_eq!(
            applied("127.0.0.1:1", &fields),
            ("[2001:db8:cafe::17]:4711".into(), Some("https"))
        );
        let both = [
            ("Forwarded", "for=192.0.2.60"),
            ("X-Forwarded-For", "203.0.113.7"),
        ];
        assert_eq!(applied("127.0.0.1:1", &both).0, "192.0.2.60:0");
    }

    #[test]
    fn a_scheme_alone_is_taken() {
        let fields = [("X-Forwarded-Proto", "https")];
        assert_eq!(
            applied("127.0.0.1:1", &fields),
            ("127.0.0.1:1".into(), Some("https"))
        );
        let bogus = [("X-Forwarded-Proto", "gopher")];
        assert_eq!(applied("127.0.0.1:1", &bogus).1, None);
        let unknown = [
            ("X-Forwarded-For", "unknown"),
            ("X-Forwarded-Proto", "https"),
        ];
        assert_eq!(
            applied("127.0.0.1:1", &unknown),
            ("127.0.0.1:1".into(), None)
        );
    }
}
