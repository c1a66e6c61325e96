//! The no-Python ceiling: a hyper HTTP/1.1 server on a current-thread tokio
//! runtime answering every request with `Hello, World!` (13 bytes,
//! `text/plain`), as `benches.apps:hello` does.
//!
//! No WSGI server on one core can beat this: it is what hyper and the kernel
//! cost without any Python. On a 2-core machine it is also close to the load
//! generator's own limit. Usage: `ferrowsgi-ceiling 127.0.0.1:PORT`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const HELLO: &[u8] = b"Hello, World!";

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(HELLO)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8000".to_owned())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        // Same as ferrowsgi's connections: small responses go out at once.
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let conn =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello));
            // A client closing mid-request is not the ceiling's concern.
            let _ = conn.await;
        });
    }
}
