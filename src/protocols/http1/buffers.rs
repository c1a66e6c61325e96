//! Read and write buffers, lent to a connection while it has bytes to handle and
//! taken back when it goes idle: ten thousand idle keep-alive connections
//! hold no buffer, and a busy one does not pay an allocation of
//! `READ_CHUNK` bytes per request.
//!
//! One pool per I/O thread (a thread-local: the runtime is one thread, so
//! no lock). A buffer comes back only when nothing else shares its memory
//! (no request body or header value still points into it).

use std::cell::RefCell;

use bytes::BytesMut;

/// Size of a read buffer, bytes.
pub const READ_CHUNK: usize = 16 * 1024;

/// Buffers kept for reuse per thread; beyond it they are freed.
const KEPT: usize = 64;

/// Room an output buffer keeps when it comes back, bytes (larger ones are
/// freed: a big streamed response must not pin its memory).
const OUT_KEPT: usize = 4096;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static OUT_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty output buffer (for response heads and small bodies).
pub fn take_out() -> Vec<u8> {
    OUT_POOL
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Vec::with_capacity(1024))
}

/// Takes back an output buffer once everything in it was written.
pub fn give_back_out(mut out: Vec<u8>) {
    if out.capacity() == 0 || out.capacity() > OUT_KEPT {
        return;
    }
    out.clear();
    OUT_POOL.with_borrow_mut(|pool| {
        if pool.len() < KEPT {
            pool.push(out);
        }
    });
}

/// An empty buffer with room for `READ_CHUNK` bytes.
pub fn take() -> BytesMut {
    POOL.with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK))
}

/// Takes back an empty buffer (kept if nothing else shares its memory and
/// the pool has room; freed otherwise).
pub fn give_back(mut buf: BytesMut) {
    if buf.capacity() == 0 || !buf.is_empty() || !buf.try_reclaim(READ_CHUNK) {
        return;
    }
    POOL.with_borrow_mut(|pool| {
        if pool.len() < KEPT {
            pool.push(buf);
        }
    });
}
