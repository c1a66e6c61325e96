//! Listening sockets: bound once (before any runtime exists, so a master can
//! fork after binding), then turned into tokio listeners inside the runtime.
//!
//! Rules kept here: TCP sockets get `SO_REUSEADDR` and the configured backlog;
//! a unix socket path left over by a dead server is replaced, and the path is
//! removed again when the listener that created it is dropped; an inherited
//! `fd://N` socket is used as it is (its owner bound it).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::{Bind, BindAddr};
use crate::exchange::LocalAddr;

/// How listening sockets are bound.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// The `listen()` queue length.
    pub backlog: i32,
    /// `SO_REUSEPORT` on TCP sockets (one socket per worker).
    pub reuse_port: bool,
    /// Permission bits of a unix socket file we create (`--unix-socket-mode`):
    /// who may connect.
    pub unix_mode: u32,
}

/// One `--bind`: its socket, bound before any runtime exists, the address it
/// is bound to and the protocol spoken there.
#[derive(Debug)]
pub struct Listening {
    /// The socket.
    pub socket: StdListener,
    /// Where it is bound.
    pub local: LocalAddr,
    /// What it speaks.
    pub protocol: crate::config::Protocol,
}

impl Listening {
    /// How the listener is shown in the "Listening at" line: `http://HOST:PORT`
    /// (`https://` with `tls`), `unix:PATH`, `uwsgi://HOST:PORT`,
    /// `fcgi://unix:PATH`.
    pub fn url(&self, tls: bool) -> String {
        use crate::config::Protocol;
        let scheme = match (self.protocol, tls) {
            (Protocol::Http, false) => "http://",
            (Protocol::Http, true) => "https://",
            (other, _) => other.prefix(),
        };
        match &self.local {
            LocalAddr::Tcp(addr) => format!("{scheme}{addr}"),
            LocalAddr::Unix(path) if self.protocol == Protocol::Http => {
                format!("unix:{}", path.display())
            }
            LocalAddr::Unix(path) => format!("{scheme}unix:{}", path.display()),
        }
    }

    /// Binds (or adopts, for `fd://N`) the socket of `bind`.
    ///
    /// # Errors
    /// As [`StdListener::bind`]; the OS error of `getsockname`.
    pub fn bind(bind: &Bind, options: &BindOptions) -> io::Result<Self> {
        let socket = StdListener::bind(&bind.addr, options)?;
        let local = socket.local_addr()?;
        Ok(Listening {
            socket,
            local,
            protocol: bind.protocol,
        })
    }
}

/// A bound, listening socket not yet attached to a runtime.
#[derive(Debug)]
pub enum StdListener {
    /// A TCP socket.
    Tcp(std::net::TcpListener),
    /// A unix domain socket; `owned` is the path to remove on drop, when we created it.
    Unix {
        /// The socket.
        listener: StdUnixListener,
        /// The path we created, removed again on drop; `None` for inherited sockets.
        owned: Option<PathBuf>,
    },
}

impl StdListener {
    /// Binds (or adopts, for `fd://N`) one listening socket.
    ///
    /// # Errors
    /// The OS error of `bind`/`listen`/`chmod` (address in use, permission
    /// denied), or `InvalidInput` for an fd that is not a stream socket.
    pub fn bind(addr: &BindAddr, options: &BindOptions) -> io::Result<Self> {
        match addr {
            BindAddr::Tcp(sa) => bind_tcp(*sa, options.backlog, options.reuse_port),
            BindAddr::Unix(path) => bind_unix(path, options.backlog, options.unix_mode),
            BindAddr::Fd(fd) => adopt_fd(*fd),
        }
    }

    /// The address this listener is bound to.
    ///
    /// # Errors
    /// The OS error of `getsockname`.
    pub fn local_addr(&self) -> io::Result<LocalAddr> {
        match self {
            StdListener::Tcp(l) => l.local_addr().map(LocalAddr::Tcp),
            StdListener::Unix { listener, .. } => {
                let addr = listener.local_addr()?;
                Ok(LocalAddr::Unix(
                    addr.as_pathname().map(PathBuf::from).unwrap_or_default(),
                ))
            }
        }
    }

    /// The socket's file descriptor, handed to the caller to own (the master
    /// process keeps it, a worker serves it as `fd://N`); a unix socket's path
    /// is then the caller's to remove.
    pub fn into_raw_fd(mut self) -> i32 {
        match &mut self {
            StdListener::Tcp(l) => l.try_clone().map_or(-1, IntoRawFd::into_raw_fd),
            StdListener::Unix { listener, owned } => {
                *owned = None;
                listener.try_clone().map_or(-1, IntoRawFd::into_raw_fd)
            }
        }
    }

    /// A tokio listener sharing this socket (a `dup`), for one run of the server.
    /// Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// The OS error of `dup` or of registering the socket with the runtime.
    pub fn to_tokio(&self) -> io::Result<Listener> {
        match self {
            StdListener::Tcp(l) => {
                let l = l.try_clone()?;
                l.set_nonblocking(true)?;
                Ok(Listener::Tcp(TcpListener::from_std(l)?))
            }
            StdListener::Unix { listener, .. } => {
                let l = listener.try_clone()?;
                l.set_nonblocking(true)?;
                Ok(Listener::Unix(UnixListener::from_std(l)?))
            }
        }
    }
}

impl std::os::fd::AsRawFd for StdListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            StdListener::Tcp(l) => l.as_raw_fd(),
            StdListener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }
}

impl Drop for StdListener {
    fn drop(&mut self) {
        if let StdListener::Unix {
            owned: Some(path), ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_tcp(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<StdListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(StdListener::Tcp(socket.into()))
}

fn bind_unix(path: &PathBuf, backlog: i32, mode: u32) -> io::Result<StdListener> {
    // A socket file left by a server that died is replaced; any other file is
    // an error (never delete a user's regular file).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    // Before listen(): no client can connect while the mode is the umask's.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    socket.listen(backlog)?;
    // SAFETY: `into_raw_fd` hands over sole ownership of a valid, listening
    // unix stream socket.
    let listener = unsafe { StdUnixListener::from_raw_fd(socket.into_raw_fd()) };
    Ok(StdListener::Unix {
        listener,
        owned: Some(path.clone()),
    })
}

fn adopt_fd(fd: i32) -> io::Result<StdListener> {
    // SAFETY: the caller passed this fd to us to own (`fd://N`); if it is not
    // an open socket, the `getsockopt` calls below fail and we return an error.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    if socket.r#type()? != Type::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "fd is not a stream socket",
        ));
    }
    let domain = socket.local_addr()?.domain();
    if domain == Domain::UNIX {
        // SAFETY: as above; ownership moves from `socket` to the listener.
        let listener = unsafe { StdUnixListener::from_raw_fd(socket.into_raw_fd()) };
        Ok(StdListener::Unix {
            listener,
            owned: None,
        })
    } else {
        Ok(StdListener::Tcp(socket.into()))
    }
}

/// A listener attached to the runtime.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket.
    Unix(UnixListener),
}

/// An accepted connection and who is on the other end.
#[derive(Debug)]
pub enum Accepted {
    /// A TCP client at this address.
    Tcp(TcpStream, SocketAddr),
    /// A unix socket client.
    Unix(UnixStream),
}

/// The most connections [`Listener::take_queued`] takes (a listen queue is
/// at most `--backlog` long).
const MAX_QUEUED: usize = 65_536;

impl Listener {
    /// Waits for the next connection.
    ///
    /// # Errors
    /// The OS error of `accept` (e.g. `EMFILE` when out of file descriptors).
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(Accepted::Tcp(stream, peer))
            }
            Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }

    /// Takes, without waiting, every connection the kernel has already
    /// completed on this socket, then closes this copy of the socket. For a
    /// graceful stop: when the last copy closes, the kernel resets what is
    /// still queued (a client, or nginx, that connected a moment before would
    /// see its request fail); taken, those connections are served instead.
    /// Asks the socket itself, not the runtime's readiness, which may not
    /// have seen the latest connections yet. Must be called inside the runtime.
    pub fn take_queued(self) -> Vec<Accepted> {
        match self {
            Listener::Tcp(l) => match l.into_std() {
                Ok(l) => drain(
                    || l.accept(),
                    |(s, peer)| {
                        s.set_nonblocking(true)?;
                        let s = TcpStream::from_std(s)?;
                        let _ = s.set_nodelay(true);
                        Ok(Accepted::Tcp(s, peer))
                    },
                ),
                Err(_) => Vec::new(),
            },
            Listener::Unix(l) => match l.into_std() {
                Ok(l) => drain(
                    || l.accept(),
                    |(s, _)| {
                        s.set_nonblocking(true)?;
                        Ok(Accepted::Unix(UnixStream::from_std(s)?))
                    },
                ),
                Err(_) => Vec::new(),
            },
        }
    }
}

/// Calls the non-blocking `accept` until nothing is queued (or it fails), and
/// turns each connection into an [`Accepted`] (one that cannot be is dropped).
fn drain<T>(
    mut accept: impl FnMut() -> io::Result<T>,
    into: impl Fn(T) -> io::Result<Accepted>,
) -> Vec<Accepted> {
    let mut taken = Vec::new();
    for _ in 0..MAX_QUEUED {
        match accept() {
            Ok(conn) => taken.extend(into(conn).ok()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(_) => break, // WouldBlock: the queue is empty
        }
    }
    taken
}
