//! `--forward PREFIX=URL[,URL...]`: requests under a prefix go to remote
//! HTTP backends instead of the application (the small in-process load
//! balancer of the WSGI documents; past one machine, nginx, HAProxy or a
//! Kubernetes Service does this in front of many servers).
//!
//! Rules:
//! - The longest matching prefix wins ([`under_prefix`]: whole segments,
//!   `/api` does not take `/apix`); other requests go on to the next layer.
//! - One pooled client per server (hyper-util's, HTTP/1.1 keep-alive); the
//!   backends of a route are tried in [`balancer`] order.
//! - An attempt fails when the backend refuses or cannot be reached
//!   (nothing was sent), when it gives no response head within
//!   `--forward-timeout` (connecting included), or when the connection
//!   breaks before the head. The first two leave the backend out for
//!   `--forward-fail-timeout`; a broken connection does not (a keep-alive
//!   race is not a sick backend).
//! - The next backend is tried when nothing was sent, or when the method
//!   is idempotent (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT,
//!   DELETE); never for another method that may have reached a backend.
//!   Each backend at most once per request.
//! - When no attempt succeeds: 504 Gateway Timeout if one of them timed
//!   out, else 502 Bad Gateway, each with a short text body; every failure
//!   is a warning naming the backend and the reason.
//! - A backend's answer is passed on as it comes (status, fields but the
//!   hop-by-hop ones, body streamed); a body the backend cuts short
//!   closes the client's connection instead of ending the response.
//!
//! Layout: [`balancer`] (order, health), [`headers`] (the head both ways),
//! [`body`] (the request body per attempt).

pub mod balancer;
pub mod body;
pub mod headers;

use std::error::Error as _;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::adapt::response_start;
use super::under_prefix;
use crate::config::ServerConfig;
use crate::exchange::{Dispatch, Job, Request, ResponseStart, Stopped};
use balancer::Balancer;
use body::{ForwardBody, Payload};

/// How long an idle pooled connection to a backend is kept, below the
/// 5-second keep-alive of a ferrowsgi backend (and of most servers), so
/// the pool seldom picks a connection the backend is closing.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// A [`Dispatch`] that sends the requests under its prefixes to their
/// backends and hands every other request on.
pub struct Forward {
    inner: Arc<dyn Dispatch>,
    shared: Arc<Shared>,
}

/// What every forwarded request needs, shared with its task.
struct Shared {
    /// Longest prefix first.
    routes: Vec<Route>,
    client: Client<HttpConnector, ForwardBody>,
    /// `--forward-timeout`: connect and response head, per attempt.
    timeout: Duration,
    /// `X-Forwarded-Proto` when the connection did not say (`--url-scheme`).
    scheme: HeaderValue,
}

struct Route {
    prefix: String,
    balancer: Balancer,
}

impl Forward {
    /// Wraps `inner` with the `--forward` routes of `config` (none: every
    /// request goes on).
    pub fn new(inner: Arc<dyn Dispatch>, config: &ServerConfig) -> Self {
        let options = &config.middleware;
        let mut routes: Vec<Route> = options
            .forwards
            .iter()
            .map(|route| Route {
                prefix: route.prefix.clone(),
                balancer: Balancer::new(&route.backends, options.forward_fail_timeout),
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.forward_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector);
        let scheme =
            HeaderValue::from_str(&config.url_scheme).unwrap_or(HeaderValue::from_static("http"));
        let shared = Shared {
            routes,
            client,
            timeout: options.forward_timeout,
            scheme,
        };
        Forward {
            inner,
            shared: Arc::new(shared),
        }
    }
}

impl Dispatch for Forward {
    fn dispatch(&self, job: Job) -> Result<(), Stopped> {
        let path = job.request.http.uri().path();
        let Some(route) = self
            .shared
            .routes
            .iter()
            .position(|r| under_prefix(&r.prefix, path).is_some())
        else {
            return self.inner.dispatch(job);
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let start = shared.forward(route, job.request).await;
            // The client may have gone: nothing to answer then.
            let _ = job.reply.send(start);
        });
        Ok(())
    }
}

/// Why one attempt got no response head.
#[derive(Debug)]
enum Failure {
    /// The backend refused or could not be reached: nothing was sent.
    Unreached(String),
    /// No response head within the forward timeout (this long).
    TimedOut(Duration),
    /// The connection broke or the answer was not HTTP.
    Broken(String),
}

impl Failure {
    fn leaves_backend_out(&self) -> bool {
        matches!(self, Failure::Unreached(_) | Failure::TimedOut(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreached(why) => write!(f, "unreachable ({why})"),
            Failure::TimedOut(after) => write!(
                f,
                "gave no response head within {}s (--forward-timeout)",
                after.as_secs_f64()
            ),
            Failure::Broken(why) => write!(f, "failed ({why})"),
        }
    }
}

impl Shared {
    /// Sends `request` to the backends of route `route` until one answers.
    async fn forward(&self, route: usize, request: Request) -> ResponseStart {
        let balancer = &self.routes[route].balancer;
        let (head, payload) = self.for_backends(request);
        let retry_any = is_idempotent(&head.method);
        let order = balancer.order();
        let mut timed_out = false;
        for (tried, &index) in order.iter().enumerate() {
            let backend = balancer.uri(index);
            let failure = match self.attempt(&head, &payload, backend).await {
                Ok(response) => {
                    balancer.answered(index);
                    return answer(response);
                }
                Err(failure) => failure,
            };
            if failure.leaves_backend_out() {
                balancer.failed(index);
            }
            timed_out |= matches!(failure, Failure::TimedOut(_));
            let retry = retry_any || matches!(failure, Failure::Unreached(_));
            warn(&head, backend, &failure, retry, tried + 1 < order.len());
            if !retry {
                break;
            }
        }
        let status = if timed_out {
            StatusCode::GATEWAY_TIMEOUT
        } else {
            StatusCode::BAD_GATEWAY
        };
        ResponseStart::plain(status, false)
    }

    /// The head every backend gets ([`headers::for_backend`]) and the body
    /// kept for each attempt.
    fn for_backends(&self, request: Request) -> (http::request::Parts, Payload) {
        let proto = request
            .scheme
            .map_or(self.scheme.clone(), HeaderValue::from_static);
        let (mut head, body) = request.http.into_parts();
        let payload = Payload::from(body);
        let peer = request.peer.map(|p| p.ip());
        let (len, framed) = (payload.len(), request.has_body_framing);
        headers::for_backend(&mut head.headers, len, framed, peer, &proto);
        head.version = Version::HTTP_11;
        (head, payload)
    }

    /// One try at `backend`: the response head, or why there is none.
    async fn attempt(
        &self,
        head: &http::request::Parts,
        payload: &Payload,
        backend: &Uri,
    ) -> Result<http::Response<Incoming>, Failure> {
        let uri = headers::target(backend, &head.uri)
            .map_err(|e| Failure::Unreached(format!("no URL for the request: {e}")))?;
        let mut request = http::Request::new(payload.body());
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = Version::HTTP_11;
        *request.headers_mut() = head.headers.clone();
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_elapsed) => Err(Failure::TimedOut(self.timeout)),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(Failure::Unreached(causes(&e))),
            Ok(Err(e)) => Err(Failure::Broken(causes(&e))),
        }
    }
}

/// The warning for a failed attempt: the request, the backend, why, and
/// what happens next.
fn warn(head: &http::request::Parts, backend: &Uri, failure: &Failure, retry: bool, more: bool) {
    let then = match (retry, more) {
        (true, true) => "trying the next one",
        (false, true) => "not retried (the method is not idempotent)",
        (_, false) => "no backend left",
    };
    tracing::warn!(
        "forward {} {}: backend {backend} {failure}; {then}",
        head.method,
        head.uri,
    );
}

/// The backend's answer as the seam's, hop-by-hop fields removed.
fn answer(mut response: http::Response<Incoming>) -> ResponseStart {
    headers::strip_hop_by_hop(response.headers_mut());
    response_start(response)
}

/// Idempotent methods (RFC 9110 §9.2.2): sending one twice does what
/// sending it once does, so a retry is safe.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The chain of causes of a client error, innermost last (hyper-util's
/// own message names only the stage: "client error (Connect)").
fn causes(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = String::new();
    let mut source = error.source();
    while let Some(cause) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        let _ = write!(text, "{cause}");
        source = cause.source();
    }
    if text.is_empty() {
        text = error.to_string();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_idempotent_methods_are_retried_after_sending() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(&m.parse().unwrap()), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "PURGE"] {
            assert!(!is_idempotent(&m.parse().unwrap()), "{m}");
        }
    }

    #[test]
    fn refusals_and_timeouts_leave_a_backend_out_a_broken_connection_does_not() {
        assert!(Failure::TimedOut(Duration::from_secs(1)).leaves_backend_out());
        assert!(Failure::Unreached("refused".into()).leaves_backend_out());
        assert!(!Failure::Broken("reset".into()).leaves_backend_out());
    }
}
