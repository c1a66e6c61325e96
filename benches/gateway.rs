//! Criterion micro-benchmarks of ferrowsgi's hot pieces, without sockets.
//!
//! - `bind_parse`: `BindAddr::parse` on each `--bind` form (pure Rust).
//! - `headermap`: a `HeaderMap` of typical browser request headers built from
//!   raw bytes, as the HTTP/1.1 engine hands them to us (pure Rust).
//! - `environ/*`: `EnvironTemplate::build` for a GET with those headers, and
//!   `latin1` decoding of header values (GIL held).
//! - `gateway/*`: one whole request through `Gateway::handle` with no I/O:
//!   environ, the application, `start_response`, the response collected and
//!   handed over on the reply channel. `hello` answers 13 bytes; `list_1mib`
//!   returns 16 × 64 KiB in a list, which the gateway joins into one body.
//!
//! Run with `cargo bench --bench gateway` (`-- --quick` for a short run).
//! Requests are built in criterion's untimed setup; only the piece is timed.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ferrowsgi::config::{BindAddr, ServerConfig};
use ferrowsgi::exchange::{Connection, LocalAddr};
use ferrowsgi::exchange::{Job, Request, RequestBody, ResponseStart};
use ferrowsgi::wsgi::environ::{latin1, EnvironTemplate};
use ferrowsgi::wsgi::Gateway;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri, Version};
use pyo3::prelude::*;
use tokio::sync::oneshot;

/// What a browser sends with a plain GET, as (name, value) bytes.
const BROWSER_HEADERS: [(&[u8], &[u8]); 8] = [
    (b"host", b"127.0.0.1:8000"),
    (
        b"user-agent",
        b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    (
        b"accept",
        b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
    (b"accept-language", b"en-US,en;q=0.5"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"connection", b"keep-alive"),
    (b"cookie", b"session=0123456789abcdef; theme=dark"),
    (b"cache-control", b"no-cache"),
];

/// The applications the gateway benchmarks call.
const APPS: &std::ffi::CStr = c"
def hello(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '13')])
    return [b'Hello, World!']

CHUNKS = [b'x' * 65536] * 16

def list_1mib(environ, start_response):
    start_response('200 OK', [('Content-Type', 'application/octet-stream')])
    return CHUNKS
";

fn header_map() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(BROWSER_HEADERS.len());
    for (name, value) in BROWSER_HEADERS {
        // Constants above: valid names and values, so these cannot fail.
        let name = HeaderName::from_bytes(name).expect("valid header name");
        let value = HeaderValue::from_bytes(value).expect("valid header value");
        headers.append(name, value);
    }
    headers
}

fn request() -> Request {
    let addr = SocketAddr::from(([127, 0, 0, 1], 8000));
    let mut http = http::Request::new(RequestBody::Empty);
    *http.method_mut() = Method::GET;
    *http.uri_mut() = Uri::from_static("/hello/world?name=ferrowsgi&x=1");
    *http.version_mut() = Version::HTTP_11;
    *http.headers_mut() = header_map();
    let peer = Some(SocketAddr::from(([127, 0, 0, 1], 54321)));
    Request::new(
        http,
        false,
        &Connection::plain(peer, Arc::new(LocalAddr::Tcp(addr))),
    )
}

fn bench_pure_rust(c: &mut Criterion) {
    let mut group = c.benchmark_group("bind_parse");
    for value in [
        "127.0.0.1:8000",
        "[::1]:8080",
        "unix:/run/app.sock",
        "fd://3",
    ] {
        group.bench_function(value, |b| b.iter(|| BindAddr::parse(black_box(value))));
    }
    group.finish();
    c.bench_function("headermap/8_browser_headers", |b| b.iter(header_map));
}

fn bench_environ(c: &mut Criterion) {
    Python::initialize();
    Python::attach(|py| {
        let template = EnvironTemplate::new(py, &ServerConfig::example()).expect("template");
        c.bench_function("environ/build_get_8_headers", |b| {
            b.iter_batched(
                request,
                |req| template.build(py, req, None).expect("environ"),
                BatchSize::SmallInput,
            )
        });
        let ascii = BROWSER_HEADERS[1].1;
        c.bench_function("environ/latin1_ascii_70B", |b| {
            b.iter(|| latin1(py, black_box(ascii)))
        });
        let accented = "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e".repeat(3);
        let latin: Vec<u8> = accented.chars().map(|c| c as u8).collect();
        c.bench_function("environ/latin1_non_ascii_60B", |b| {
            b.iter(|| latin1(py, black_box(&latin)))
        });
    });
}

/// One request through the gateway; returns the response head it sent.
fn handle(py: Python<'_>, gateway: &Gateway, req: Request) -> ResponseStart {
    let (reply, mut answer) = oneshot::channel();
    gateway.handle(
        py,
        Job {
            request: req,
            reply,
        },
    );
    answer
        .try_recv()
        .expect("the gateway answers before returning")
}

fn bench_gateway(c: &mut Criterion) {
    Python::initialize();
    Python::attach(|py| {
        let apps = PyModule::from_code(py, APPS, c"bench_apps.py", c"bench_apps").expect("apps");
        let config = ServerConfig::example();
        for name in ["hello", "list_1mib"] {
            let app = apps.getattr(name).expect("app").unbind();
            let gateway = Gateway::new(py, app, &config).expect("gateway");
            assert_eq!(handle(py, &gateway, request()).status, 200);
            c.bench_function(&format!("gateway/{name}"), |b| {
                b.iter_batched(
                    request,
                    |req| handle(py, &gateway, req),
                    BatchSize::SmallInput,
                )
            });
        }
    });
}

criterion_group!(benches, bench_pure_rust, bench_environ, bench_gateway);
criterion_main!(benches);
