//! TLS on HTTP listeners (rustls, with ring): the server configuration
//! built from the options, the handshake, and a stream our HTTP/1.1 engine
//! can serve.
//!
//! - [`Tls::load`] reads `--certfile`, `--keyfile` and `--ca-certs` once,
//!   when the options are parsed (in the master too, before it forks), so a
//!   bad file stops start-up with one line naming it.
//! - [`Acceptor::accept`] runs the handshake within the header timeout and
//!   says what the connection knows: ALPN (`h2` or HTTP/1.1), `HTTPS=on`
//!   and the verified client certificate's subject (`SSL_CLIENT_S_DN`, as
//!   Apache's mod_ssl names it).
//! - [`TlsTransport`] gives a TLS stream the engine's
//!   [`Transport`](crate::protocols::http1::conn::Transport) interface.
//!   Plain TCP never goes through it.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::io::poll_read_buf;

use crate::config::error::ConfigError;
use crate::config::tls::{CertReqs, TlsOptions, TlsVersion};
use crate::exchange::Vars;
use crate::protocols::http1::conn::Transport;
use crate::protocols::HttpVersions;

/// ALPN protocol names offered with `--http auto`, in the server's order of
/// preference (RFC 7301; `h2`: RFC 9113 §3.2).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Plaintext read ahead while waiting for a request (one read), bytes.
const READ_AHEAD: usize = 4096;

/// The TLS options and the rustls configuration made from them (files read
/// and checked).
#[derive(Debug, Clone)]
pub struct Tls {
    /// What was asked for.
    pub options: TlsOptions,
    /// The configuration every handshake uses.
    config: Arc<ServerConfig>,
}

impl Tls {
    /// Reads the certificate chain, the key and the client CAs, and builds
    /// the server configuration: TLS 1.2 (RFC 5246) and 1.3 (RFC 8446), or
    /// 1.3 only; ALPN `h2` then `http/1.1`; client certificates verified
    /// against `--ca-certs` (WebPKI, RFC 5280) when `cert_reqs` asks for them.
    ///
    /// # Errors
    /// `ConfigError`, one line naming the option, the file and what is
    /// wrong: it cannot be read, holds no certificate or no key, the key
    /// does not match the certificate.
    pub fn load(options: TlsOptions) -> Result<Self, ConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match options.min_version {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let certs = read_certs("--certfile", &options.certfile)?;
        let key = read_key(&options.keyfile)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| ConfigError(format!("TLS: {e}")))?;
        let builder = match (&options.ca_certs, options.cert_reqs) {
            (Some(ca), reqs) if reqs != CertReqs::None => {
                builder.with_client_cert_verifier(client_verifier(ca, reqs, provider)?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| cert_error(&options, e))?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Tls {
            options,
            config: Arc::new(config),
        })
    }
}

/// The certificates of a PEM file (`BEGIN CERTIFICATE` sections).
fn read_certs(option: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bad = |why: String| ConfigError(format!("{option} {}: {why}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_error(e)))?;
    if certs.is_empty() {
        return Err(bad(
            "no certificate found (expected a PEM 'BEGIN CERTIFICATE' section)".into(),
        ));
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8 (`PRIVATE KEY`), PKCS#1
/// (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => "no private key found (expected a PEM 'PRIVATE KEY', \
                 'RSA PRIVATE KEY' or 'EC PRIVATE KEY' section; encrypted keys are not supported)"
                .to_owned(),
            e => pem_error(e),
        };
        ConfigError(format!("--keyfile {}: {why}", path.display()))
    })
}

/// What went wrong reading a PEM file, in words.
fn pem_error(e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => {
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
            format!("cannot read it: {text}")
        }
        pem::Error::NoItemsFound => "nothing found in it".to_owned(),
        e => format!("not a valid PEM file: {e:?}"),
    }
}

/// Why the certificate and key were refused, naming the file to blame.
fn cert_error(options: &TlsOptions, e: rustls::Error) -> ConfigError {
    let (cert, key) = (options.certfile.display(), options.keyfile.display());
    ConfigError(match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("--keyfile {key}: the private key does not match the certificate in {cert}")
        }
        rustls::Error::General(why) if why.contains("private key") => {
            format!("--keyfile {key}: unsupported private key ({why})")
        }
        e => format!("--certfile {cert}: the certificate cannot be used: {e}"),
    })
}

/// The verifier of client certificates against the CAs in `path`; with
/// `optional`, a client without a certificate is let in.
fn client_verifier(
    path: &Path,
    reqs: CertReqs,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs("--ca-certs", path)? {
        roots.add(cert).map_err(|e| {
            ConfigError(format!(
                "--ca-certs {}: a certificate cannot be used as a CA: {e}",
                path.display()
            ))
        })?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if reqs == CertReqs::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map_err(|e| ConfigError(format!("--ca-certs {}: {e}", path.display())))
}

/// Runs handshakes for one server run, and says what each connection knows.
#[derive(Clone)]
pub struct Acceptor {
    acceptor: TlsAcceptor,
    /// `--http 2`: HTTP/2 even when the client named no protocol.
    h2_only: bool,
    /// `HTTPS=on`, shared by the connections without a client certificate.
    https_on: Arc<Vars>,
}

/// A connection after its handshake.
pub struct Accepted<S> {
    /// The TLS stream.
    pub stream: TlsStream<S>,
    /// Whether ALPN chose `h2` (RFC 9113 §3.2).
    pub h2: bool,
    /// CGI variables for each request's environ: `HTTPS=on`, and
    /// `SSL_CLIENT_S_DN` when a verified client certificate was presented.
    pub vars: Arc<Vars>,
}

impl Acceptor {
    /// The acceptor for `tls`, offering by ALPN what `http` allows: `h2`
    /// and `http/1.1` (`auto`), `http/1.1` only (`1`), `h2` only (`2`; a
    /// client that offers only others fails the handshake, RFC 7301 §3.2).
    pub fn new(tls: &Tls, http: HttpVersions) -> Self {
        let offered: &[&[u8]] = match http {
            HttpVersions::Auto => &ALPN,
            HttpVersions::Http1 => &ALPN[1..],
            HttpVersions::Http2 => &ALPN[..1],
        };
        let mut config = (*tls.config).clone();
        config.alpn_protocols = offered.iter().map(|p| p.to_vec()).collect();
        Acceptor {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            h2_only: http == HttpVersions::Http2,
            https_on: Arc::new(vec![(
                Bytes::from_static(b"HTTPS"),
                Bytes::from_static(b"on"),
            )]),
        }
    }

    /// Runs the TLS handshake on `io`, for at most `timeout`. `None` when it
    /// failed or timed out (a debug log line says why; the caller closes the
    /// connection, as TLS has no other answer: RFC 8446 §6).
    pub async fn accept<S>(
        &self,
        io: S,
        timeout: Duration,
        peer: Option<SocketAddr>,
    ) -> Option<Accepted<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let who = || peer.map_or_else(|| "unix socket".to_owned(), |p| p.to_string());
        let stream = match tokio::time::timeout(timeout, self.acceptor.accept(io)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!("{}: TLS handshake failed: {e}", who());
                return None;
            }
            Err(_) => {
                tracing::debug!("{}: TLS handshake not done in {timeout:?}", who());
                return None;
            }
        };
        let session = stream.get_ref().1;
        let h2 = match session.alpn_protocol() {
            Some(protocol) => protocol == ALPN[0],
            None => self.h2_only,
        };
        let vars = match client_subject(session) {
            Some(dn) => Arc::new(vec![
                (Bytes::from_static(b"HTTPS"), Bytes::from_static(b"on")),
                (Bytes::from_static(b"SSL_CLIENT_S_DN"), Bytes::from(dn)),
            ]),
            None => self.https_on.clone(),
        };
        Some(Accepted { stream, h2, vars })
    }
}

/// The subject of the client's certificate (verified during the
/// handshake), in the string form of RFC 4514 §2 (`CN=alice,O=Example`),
/// which is mod_ssl's `SSL_CLIENT_S_DN`.
fn client_subject(session: &ServerConnection) -> Option<String> {
    use x509_cert::der::Decode;
    let leaf = session.peer_certificates()?.first()?;
    match x509_cert::Certificate::from_der(leaf.as_ref()) {
        Ok(cert) => Some(cert.tbs_certificate().subject().to_string()),
        Err(e) => {
            tracing::debug!("client certificate subject not readable: {e}");
            None
        }
    }
}

/// A TLS stream that our HTTP/1.1 engine can serve: it waits for bytes
/// with `&self` ([`Transport`]).
///
/// rustls can only tell whether plaintext is there by reading, so
/// `poll_read_ready` reads up to [`READ_AHEAD`] bytes into a stash and is
/// ready when it holds bytes or the stream ended; `try_read_buf` hands the
/// stash over, then reads what else is there without waiting (a no-op
/// waker; `Pending` becomes `WouldBlock`, and the engine polls
/// `poll_read_ready` again before it sleeps). The stream sits in a mutex:
/// one task uses it, so it is never contended; writes reach it without
/// locking (`&mut self`).
pub struct TlsTransport<S> {
    inner: Mutex<Inner<S>>,
}

struct Inner<S> {
    stream: TlsStream<S>,
    /// Plaintext read by `poll_read_ready`, not yet taken.
    stash: BytesMut,
    /// How the read side ended, once it has.
    end: ReadEnd,
}

/// The state of the read side.
enum ReadEnd {
    Open,
    /// End of stream (close_notify, or the peer closed).
    Eof,
    /// A read failed; reported once by `try_read_buf`, then end of stream.
    Failed(io::Error),
}

impl<S> TlsTransport<S> {
    /// Wraps an established TLS stream.
    pub fn new(stream: TlsStream<S>) -> Self {
        TlsTransport {
            inner: Mutex::new(Inner {
                stream,
                stash: BytesMut::new(),
                end: ReadEnd::Open,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stream(self: Pin<&mut Self>) -> Pin<&mut TlsStream<S>>
    where
        S: Unpin,
    {
        let inner = self.get_mut().inner.get_mut();
        Pin::new(&mut inner.unwrap_or_else(|e| e.into_inner()).stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Inner<S> {
    /// Reads into the stash (waker of `cx` registered when nothing is there).
    fn poll_stash(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.stash.is_empty() || !matches!(self.end, ReadEnd::Open) {
            return Poll::Ready(());
        }
        self.stash.reserve(READ_AHEAD);
        match poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.stash) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(0)) => self.end = ReadEnd::Eof,
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => self.end = ReadEnd::Failed(e),
        }
        Poll::Ready(())
    }

    /// Moves the stash into `buf`; returns the bytes moved.
    fn take_stash(&mut self, buf: &mut BytesMut) -> usize {
        let n = self.stash.len();
        buf.extend_from_slice(&self.stash);
        self.stash.clear();
        n
    }

    /// The end of the read side as a read's result: end of stream, or the
    /// error a read met (once; end of stream after it).
    fn take_end(&mut self) -> io::Result<usize> {
        match std::mem::replace(&mut self.end, ReadEnd::Eof) {
            ReadEnd::Failed(e) => Err(e),
            _ => Ok(0),
        }
    }
}

impl<S> Transport for TlsTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.lock().poll_stash(cx).map(Ok)
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let mut inner = self.lock();
        let taken = inner.take_stash(buf);
        match inner.end {
            ReadEnd::Open => {}
            _ if taken > 0 => return Ok(taken), // the end comes with the next read
            _ => return inner.take_end(),
        }
        let mut cx = Context::from_waker(Waker::noop());
        match poll_read_buf(Pin::new(&mut inner.stream), &mut cx, buf) {
            Poll::Ready(Ok(0)) => {
                inner.end = ReadEnd::Eof;
                Ok(taken)
            }
            Poll::Ready(Ok(n)) => Ok(taken + n),
            Poll::Ready(Err(e)) if taken > 0 => {
                inner.end = ReadEnd::Failed(e);
                Ok(taken)
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending if taken > 0 => Ok(taken),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsTransport<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = self.get_mut().inner.get_mut();
        let inner = inner.unwrap_or_else(|e| e.into_inner());
        if !inner.stash.is_empty() {
            let n = inner.stash.len().min(buf.remaining());
            buf.put_slice(&inner.stash.split_to(n));
            return Poll::Ready(Ok(()));
        }
        if !matches!(inner.end, ReadEnd::Open) {
            return Poll::Ready(inner.take_end().map(drop));
        }
        Pin::new(&mut inner.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsTransport<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Writes out what rustls holds (records not yet sent): the engine
    /// flushes after each write, as a buffered stream needs.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }

    /// Sends close_notify (RFC 8446 §6.1), then shuts the socket's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tls::TlsOptions;
    use crate::exchange::{
        BodySource, Connection, Dispatch, Job, LocalAddr, ResponseHeaders, ResponseStart, Stopped,
    };
    use crate::protocols::{Limits, Settings, Shared};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BODY: usize = 300 * 1024;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/tls")
            .join(name)
    }

    /// Answers every request with `BODY` bytes.
    struct Answer;
    impl Dispatch for Answer {
        fn dispatch(&self, job: Job) -> Result<(), Stopped> {
            let mut headers = ResponseHeaders::default();
            headers.set_content_length(BODY as u64);
            let _ = job.reply.send(ResponseStart {
                status: http::StatusCode::OK,
                reason: None,
                headers,
                body: BodySource::Full(Bytes::from(vec![b'x'; BODY])),
            });
            Ok(())
        }
    }

    fn shared() -> Arc<Shared> {
        let (trigger, shutdown) = crate::shutdown::channel();
        std::mem::forget(trigger); // never stops
        let secs = Duration::from_secs(5);
        Arc::new(Shared {
            settings: Arc::new(Settings {
                limits: Limits::default(),
                keep_alive: secs,
                header_timeout: secs,
                body_timeout: secs,
                max_body_size: 1 << 20,
                body_buffer_size: 1 << 20,
                drain: secs,
                http: HttpVersions::Auto,
            }),
            dispatch: Arc::new(Answer),
            shutdown,
        })
    }

    fn client() -> tokio_rustls::TlsConnector {
        let mut roots = RootCertStore::empty();
        for cert in read_certs("ca", &fixture("ca.pem")).expect("CA") {
            roots.add(cert).expect("CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }

    /// Reads `count` responses of `BODY` bytes (head, then the body).
    async fn read_responses<R: AsyncRead + Unpin>(io: &mut R, count: usize) -> usize {
        let mut data = Vec::new();
        let mut chunk = vec![0; 8192];
        let mut seen = 0;
        while seen < count {
            let n = io.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {seen} responses");
            data.extend_from_slice(&chunk[..n]);
            while let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                if data.len() < end + 4 + BODY {
                    break;
                }
                assert!(data.starts_with(b"HTTP/1.1 200 OK\r\n"));
                data.drain(..end + 4 + BODY);
                seen += 1;
            }
        }
        seen
    }

    /// Through a pipe that holds only 1 KiB, every write waits: the end of
    /// each response must still go out (the engine flushes what rustls
    /// holds), and pipelined requests read ahead into the stash are served.
    #[test]
    fn responses_through_a_narrow_pipe_arrive_whole() {
        let tls = Tls::load(TlsOptions {
            certfile: fixture("server.pem"),
            keyfile: fixture("server.key"),
            ca_certs: None,
            cert_reqs: CertReqs::None,
            min_version: TlsVersion::Tls12,
        })
        .expect("fixture certificate");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client_io, server_io) = tokio::io::duplex(1024);
            let acceptor = Acceptor::new(&tls, HttpVersions::Auto);
            let server = tokio::spawn(async move {
                let secs = Duration::from_secs(5);
                let accepted = acceptor
                    .accept(server_io, secs, None)
                    .await
                    .expect("handshake");
                assert!(!accepted.h2);
                let local = Arc::new(LocalAddr::Unix("test".into()));
                let conn = Connection::plain(None, local);
                let transport = TlsTransport::new(accepted.stream);
                crate::protocols::http1::conn::serve(transport, conn, shared()).await;
            });
            let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
            let mut tls = client()
                .connect(name, client_io)
                .await
                .expect("client handshake");
            let request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
            let exchange = async {
                tls.write_all(request).await.expect("write");
                assert_eq!(read_responses(&mut tls, 1).await, 1);
                tls.write_all(&request.repeat(3)).await.expect("write");
                assert_eq!(read_responses(&mut tls, 3).await, 3);
            };
            tokio::time::timeout(Duration::from_secs(10), exchange)
                .await
                .expect("responses stalled");
            drop(tls);
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        });
    }
}
