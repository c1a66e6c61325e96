//! Responses between the seam and `http_body`, for the middleware built on
//! `tower` services (tower-http's `ServeDir` and `CompressionLayer`,
//! hyper's client): [`response_start`] turns their `http::Response` into a
//! [`ResponseStart`], and [`SourceBody`] turns a [`BodySource`] (the
//! application's body) into an `http_body::Body` they can wrap.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::exchange::{BodySource, Chunk, ResponseHeaders, ResponseStart};

/// Chunks a pumped body may have waiting for the connection (each up to
/// the producer's chunk size): the producer waits beyond it.
const PUMP_CHUNKS: usize = 4;

/// `response` as the seam's response head. A body that is already over
/// (a 304, a HEAD answer) is sent as it is; any other is read on a task of
/// its own, frame by frame, as the connection takes it (bounded channel: a
/// slow client holds back the producer). Header fields the seam refuses
/// (control characters) are dropped; `http::HeaderValue` has none.
///
/// Must be called within a tokio runtime.
pub fn response_start<B>(response: http::Response<B>) -> ResponseStart
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: fmt::Display + Send,
{
    let (parts, body) = response.into_parts();
    let mut headers = ResponseHeaders::with_capacity(64 * parts.headers.len().max(1));
    for (name, value) in &parts.headers {
        let _ = headers.push(name.as_str().as_bytes(), value.as_bytes());
    }
    let body = if body.is_end_stream() {
        BodySource::Full(Bytes::new())
    } else {
        pump(body)
    };
    ResponseStart {
        status: parts.status,
        reason: None,
        headers,
        body,
    }
}

/// Reads `body` on its own task into a streamed body.
fn pump<B>(body: B) -> BodySource
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: fmt::Display + Send,
{
    let (tx, rx) = mpsc::channel(PUMP_CHUNKS);
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(frame) = body.frame().await {
            let (chunk, last) = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => (Chunk::Data(data), false),
                    Err(_trailers) => continue,
                },
                Err(e) => {
                    tracing::warn!("response body cut short: {e}");
                    (Chunk::Abort, true)
                }
            };
            // Stop reading when the client has left.
            if tx.send(chunk).await.is_err() || last {
                return;
            }
        }
    });
    BodySource::Stream(rx)
}

/// A response body from the seam as an `http_body::Body`: whole, short
/// (its bytes, then an error), streamed (each chunk a frame; an abort an
/// error, so that whoever wraps it never ends the body normally), or a
/// file region (read in chunks: [`FileRegion::into_chunks`]).
///
/// [`FileRegion::into_chunks`]: crate::exchange::FileRegion::into_chunks
#[derive(Debug)]
pub struct SourceBody {
    source: Option<BodySource>,
}

impl SourceBody {
    /// Wraps `source`.
    pub fn new(source: BodySource) -> Self {
        SourceBody {
            source: Some(source),
        }
    }
}

/// The application's body could not be completed (PEP 3333: an error
/// after the headers were sent); the connection must be closed.
#[derive(Debug, Clone, Copy)]
pub struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the response body was cut short")
    }
}

impl std::error::Error for Aborted {}

impl Body for SourceBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = &mut *self;
        match this.source.take() {
            None => Poll::Ready(None),
            Some(BodySource::Full(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(BodySource::Short(data)) if data.is_empty() => Poll::Ready(Some(Err(Aborted))),
            Some(BodySource::Short(data)) => {
                this.source = Some(BodySource::Short(Bytes::new()));
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(BodySource::File(region)) => {
                this.source = Some(BodySource::Stream(region.into_chunks()));
                Pin::new(this).poll_frame(cx)
            }
            Some(BodySource::Stream(mut rx)) => {
                let polled = rx.poll_recv(cx);
                let out = match polled {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Some(Chunk::Data(data))) => {
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    Poll::Ready(Some(Chunk::Abort)) => return Poll::Ready(Some(Err(Aborted))),
                    Poll::Ready(None) => return Poll::Ready(None),
                };
                this.source = Some(BodySource::Stream(rx));
                out
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            None => true,
            Some(BodySource::Full(data)) => data.is_empty(),
            Some(BodySource::File(region)) => region.len == 0,
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            None => SizeHint::with_exact(0),
            Some(BodySource::Full(data)) => SizeHint::with_exact(data.len() as u64),
            Some(BodySource::File(region)) => SizeHint::with_exact(region.len),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_streamed_body_goes_both_ways() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"ab")))
            .await
            .unwrap();
        tx.send(Chunk::Data(Bytes::from_static(b"cd")))
            .await
            .unwrap();
        drop(tx);
        let response = http::Response::new(SourceBody::new(BodySource::Stream(rx)));
        let start = response_start(response);
        let BodySource::Stream(rx) = start.body else {
            panic!("not streamed")
        };
        let collected = SourceBody::new(BodySource::Stream(rx)).collect().await;
        assert_eq!(collected.unwrap().to_bytes(), &b"abcd"[..]);
    }

    #[tokio::test]
    async fn an_aborted_body_stays_an_error() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Chunk::Data(Bytes::from_static(b"ab")))
            .await
            .unwrap();
        tx.send(Chunk::Abort).await.unwrap();
        let start = response_start(http::Response::new(SourceBody::new(BodySource::Stream(rx))));
        let BodySource::Stream(mut rx) = start.body else {
            panic!("not streamed")
        };
        assert!(matches!(rx.recv().await, Some(Chunk::Data(_))));
        assert!(matches!(rx.recv().await, Some(Chunk::Abort)));
        let short = SourceBody::new(BodySource::Short(Bytes::from_static(b"x")));
        assert!(short.collect().await.is_err());
    }

    #[tokio::test]
    async fn a_file_body_is_read_in_chunks() {
        let region = crate::exchange::FileRegion {
            file: crate::exchange::temp_file(b"0123456789"),
            offset: 2,
            len: 5,
        };
        let body = SourceBody::new(BodySource::File(region));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), &b"23456"[..]);
    }
}
