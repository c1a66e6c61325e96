//! The kernel floor: one thread, one level-triggered epoll loop, no HTTP
//! library, and a fixed answer (`Hello, World!`, 13 bytes, `text/plain`, as
//! `benches.apps:hello` gives, with a fixed `Date`).
//!
//! It is what one core pays for hello when user space does (almost) nothing:
//! accept, `recv`, count the request heads, one `send` of that many answers.
//! `benches/run.py` divides every server's CPU time per request by this one's.
//!
//! Rules it keeps:
//! * Every request head ending in `\r\n\r\n` gets one answer, in order, so
//!   pipelined requests are all answered; heads split across reads are
//!   counted once (the `\r\n\r\n` matcher carries over). Bodies are not
//!   understood: this serves GETs only.
//! * Connections stay open until the client closes them; there is no timeout
//!   and no limit but the process's file descriptors.
//! * What the kernel would not take is kept and sent when the socket is
//!   writable; meanwhile that connection is not read (backpressure).
//!
//! Usage: `ferrowsgi-floor PORT` (binds 127.0.0.1).

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, RawFd};

/// The answer to every request: what hello's application returns, with the
/// `Date` and `Server` headers every peer adds (fixed, so never formatted).
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: floor\r\n\
Date: Thu, 01 Jan 2026 00:00:00 GMT\r\n\
Content-Type: text/plain\r\n\
Content-Length: 13\r\n\
\r\n\
Hello, World!";
/// The end of a request head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";
/// Bytes read per `recv`: many pipelined heads at once.
const READ_SIZE: usize = 64 * 1024;
/// Events taken per `epoll_wait`.
const MAX_EVENTS: usize = 1024;
/// The listen backlog (the kernel caps it at `net.core.somaxconn`).
const BACKLOG: libc::c_int = 4096;

/// One open connection, indexed by its file descriptor.
#[derive(Default)]
struct Conn {
    /// Whether this slot holds an open connection.
    open: bool,
    /// How many bytes of `\r\n\r\n` the last read ended with (0..=3).
    matched: usize,
    /// Answers the kernel has not taken yet (empty almost always).
    pending: Vec<u8>,
}

/// A libc return value as an `io::Result` (negative means `errno`).
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// How many complete heads `data` ends, given `matched` bytes of `\r\n\r\n`
/// already seen; updates `matched` for the next read.
fn count_heads(data: &[u8], matched: &mut usize) -> usize {
    let mut heads = 0;
    for &byte in data {
        *matched = if byte == HEAD_END[*matched] {
            *matched + 1
        } else if byte == b'\r' {
            1
        } else {
            0
        };
        if *matched == HEAD_END.len() {
            heads += 1;
            *matched = 0;
        }
    }
    heads
}

/// The event loop and its buffers.
struct Floor {
    listener: TcpListener,
    epoll: RawFd,
    conns: Vec<Conn>,
    /// The buffer every `recv` reads into.
    input: Vec<u8>,
    /// Answers to a pipelined batch (one answer is sent from `RESPONSE` itself).
    output: Vec<u8>,
}

impl Floor {
    fn new(port: u16) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        // SAFETY: a listening socket we own; listen() again only raises the backlog.
        cvt(unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) })?;
        // SAFETY: no pointer arguments; the new descriptor is owned by Floor.
        let epoll = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        let floor = Floor {
            listener,
            epoll,
            conns: Vec::new(),
            input: vec![0; READ_SIZE],
            output: Vec::new(),
        };
        floor.control(
            libc::EPOLL_CTL_ADD,
            floor.listener.as_raw_fd(),
            libc::EPOLLIN,
        )?;
        Ok(floor)
    }

    /// `epoll_ctl(op, fd)` with interest `events`; the event's data is the fd.
    fn control(&self, op: libc::c_int, fd: RawFd, events: libc::c_int) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` lives across the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut event) })?;
        Ok(())
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let listener = self.listener.as_raw_fd();
        loop {
            // SAFETY: `events` has MAX_EVENTS initialised entries for the kernel to fill.
            let ready = unsafe {
                libc::epoll_wait(
                    self.epoll,
                    events.as_mut_ptr(),
                    MAX_EVENTS as libc::c_int,
                    -1,
                )
            };
            let ready = match cvt(ready) {
                Ok(n) => n as usize,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for event in &events[..ready] {
                let fd = event.u64 as RawFd;
                if fd == listener {
                    self.accept_all()?;
                } else if event.events & libc::EPOLLOUT as u32 != 0 {
                    self.flush(fd);
                } else {
                    self.serve(fd);
                }
            }
        }
    }

    /// Accept every waiting connection; a full descriptor table waits for the next event.
    fn accept_all(&mut self) -> io::Result<()> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        loop {
            // SAFETY: null address pointers are allowed: the peer is not needed.
            let ret = unsafe {
                libc::accept4(
                    self.listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    flags,
                )
            };
            let fd = match cvt(ret) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Ok(()), // EAGAIN, or EMFILE and the like: try at the next event
            };
            // Same as ferrowsgi and the ceiling: small answers go out at once.
            let one: libc::c_int = 1;
            // SAFETY: `one` outlives the call and its size is passed.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
            let slot = fd as usize;
            if self.conns.len() <= slot {
                self.conns.resize_with(slot + 1, Conn::default);
            }
            self.conns[slot] = Conn {
                open: true,
                ..Conn::default()
            };
            if self
                .control(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN)
                .is_err()
            {
                self.close(fd);
            }
        }
    }

    /// Read once, answer every head the read completed.
    fn serve(&mut self, fd: RawFd) {
        let Some(conn) = self.conns.get_mut(fd as usize).filter(|c| c.open) else {
            return;
        };
        // SAFETY: `input` is READ_SIZE bytes long and lives across the call.
        let got = unsafe { libc::recv(fd, self.input.as_mut_ptr().cast(), READ_SIZE, 0) };
        if got == 0 {
            return self.close(fd);
        }
        if got < 0 {
            let err = io::Error::last_os_error();
            if !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                self.close(fd);
            }
            return;
        }
        let heads = count_heads(&self.input[..got as usize], &mut conn.matched);
        if heads == 0 {
            return;
        }
        let answers = if heads == 1 {
            RESPONSE
        } else {
            self.output.clear();
            for _ in 0..heads {
                self.output.extend_from_slice(RESPONSE);
            }
            &self.output[..]
        };
        match send(fd, answers) {
            Ok(sent) if sent == answers.len() => {}
            Ok(sent) => {
                conn.pending = answers[sent..].to_vec();
                if self
                    .control(libc::EPOLL_CTL_MOD, fd, libc::EPOLLOUT)
                    .is_err()
                {
                    self.close(fd);
                }
            }
            Err(_) => self.close(fd),
        }
    }

    /// Send what the kernel did not take before; read again once it is all sent.
    fn flush(&mut self, fd: RawFd) {
        let Some(conn) = self.conns.get_mut(fd as usize).filter(|c| c.open) else {
            return;
        };
        match send(fd, &conn.pending) {
            Ok(sent) if sent == conn.pending.len() => {
                conn.pending = Vec::new();
                if self
                    .control(libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN)
                    .is_err()
                {
                    self.close(fd);
                }
            }
            Ok(sent) => {
                conn.pending.drain(..sent);
            }
            Err(_) => self.close(fd),
        }
    }

    fn close(&mut self, fd: RawFd) {
        if let Some(conn) = self.conns.get_mut(fd as usize) {
            *conn = Conn::default();
        }
        // SAFETY: `fd` is a connection this loop accepted and still owns;
        // closing it also removes it from the epoll set.
        unsafe { libc::close(fd) };
    }
}

/// One non-blocking `send`; `Ok(0)` when the kernel would block.
fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `data` is valid for its length across the call.
        // MSG_NOSIGNAL: a client gone away is an error, not a SIGPIPE.
        let ret = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(0),
            _ => return Err(err),
        }
    }
}

fn main() -> io::Result<()> {
    let port = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "8000".to_owned())
        .parse::<u16>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("PORT: {e}")))?;
    Floor::new(port)?.run()
}

#[cfg(test)]
mod tests {
    use super::count_heads;

    #[test]
    fn heads_are_counted_whole_and_in_pieces() {
        let batch = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(16);
        let mut matched = 0;
        assert_eq!(count_heads(&batch, &mut matched), 16);
        for size in 1..=7 {
            let (mut matched, mut heads) = (0, 0);
            for piece in batch.chunks(size) {
                heads += count_heads(piece, &mut matched);
            }
            assert_eq!((heads, matched), (16, 0), "pieces of {size}");
        }
    }

    #[test]
    fn stray_line_ends_are_not_heads() {
        let mut matched = 0;
        assert_eq!(count_heads(b"\r\r\n\n\n\r\n\r\r\n", &mut matched), 0);
        assert_eq!(count_heads(b"\r\n", &mut matched), 1);
    }
}
