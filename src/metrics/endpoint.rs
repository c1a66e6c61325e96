//! The `/metrics` endpoint: hyper's HTTP/1.1 server on a thread and a
//! tokio runtime of its own, so a scrape is answered while the I/O thread
//! runs the application (`--threads 1`) or every Python thread is busy.
//! Nothing here takes the GIL.

use std::convert::Infallible;
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::expose;
use crate::server::listener::{Accepted, StdListener};

/// A running endpoint; [`Endpoint::stop`] ends it.
pub struct Endpoint {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl Endpoint {
    /// Serves `/metrics` on `socket` (shared, a `dup` is taken) until
    /// stopped.
    ///
    /// # Errors
    /// The OS error when the runtime, the thread or the socket's `dup`
    /// cannot be made.
    pub fn start(socket: &StdListener) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _entered = rt.enter();
            socket.to_tokio()?
        };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ferrowsgi-metrics".to_owned())
            .spawn(move || {
                rt.block_on(async move {
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener) => {}
                    }
                });
            })?;
        Ok(Endpoint { stop, thread })
    }

    /// Stops accepting scrapes and waits for the thread.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

async fn accept_loop(listener: crate::server::listener::Listener) {
    loop {
        match listener.accept().await {
            Ok(Accepted::Tcp(stream, _)) => serve(TokioIo::new(stream)),
            Ok(Accepted::Unix(stream)) => serve(TokioIo::new(stream)),
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

fn serve<S>(io: TokioIo<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let served = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service_fn(answer))
            .await;
        if let Err(e) = served {
            tracing::debug!("metrics endpoint: connection: {e}");
        }
    });
}

/// `GET /metrics` (or HEAD): the exposition; any other path 404, any
/// other method 405.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, text: String, kind: &str| {
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        if let Ok(value) = kind.parse() {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, value);
        }
        response
    };
    let plain = "text/plain; charset=utf-8";
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            reply(StatusCode::OK, expose::scrape(), expose::CONTENT_TYPE)
        }
        (&Method::GET | &Method::HEAD, _) => reply(
            StatusCode::NOT_FOUND,
            "404 Not Found: try /metrics\n".to_owned(),
            plain,
        ),
        _ => {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed\n".to_owned(),
                plain,
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            r
        }
    })
}
