//! Read buffers, lent to a connection while it has bytes to handle and
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

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
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
