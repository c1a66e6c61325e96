//! A file region as a response body ([`BodySource::File`]), and the one way
//! an engine that cannot `sendfile(2)` sends it: read in chunks.
//!
//! Rules:
//! - The region is an open regular file, `offset` and `len` in bytes; the
//!   response's Content-Length is `len`. Whoever made it opened the file
//!   (`--static` hands over the very descriptor its confined backend
//!   opened: nothing is reopened by path).
//! - [`FileRegion::into_chunks`] reads it into the seam's chunk channel on a
//!   task of its own, [`FILE_CHUNK`] bytes at a time, a read only when the
//!   channel has room (a slow client holds back the reads; memory stays
//!   flat whatever the file's size) and none once the receiver is gone.
//! - A file that ends before the region does (truncated meanwhile), or a
//!   read that fails, ends the chunks with [`Chunk::Abort`]: the engine
//!   closes the connection instead of ending the response normally.
//! - Reads come from the page cache on the calling thread when it can
//!   answer at once ([`read_cached`]), else from the blocking pool, so a
//!   cold file never stalls an I/O thread.
//!
//! [`BodySource::File`]: super::BodySource::File

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::ReadBuf;
use tokio::sync::mpsc;

use super::Chunk;

/// Bytes read from a file at a time by [`FileRegion::into_chunks`] (and the
/// most a chunk holds). With wrk on a 1 MiB file, 64 KiB to 1 MiB pieces
/// cost the same server CPU per request within this machine's noise; 256
/// KiB makes a quarter of 64 KiB's reads, channel sends and writes.
pub const FILE_CHUNK: usize = 256 * 1024;

/// Chunks read ahead of the engine (each up to [`FILE_CHUNK`] bytes).
const CHUNKS_AHEAD: usize = 2;

/// A region of an open regular file: the body of a response.
#[derive(Debug)]
pub struct FileRegion {
    /// The file, open for reading (its own position is never used: every
    /// read says where).
    pub file: File,
    /// Where the region starts, bytes from the start of the file.
    pub offset: u64,
    /// The region's length, bytes: the response's Content-Length.
    pub len: u64,
}

impl FileRegion {
    /// The region as the seam's streamed body: read on a task of its own,
    /// as the receiver takes the chunks (see the module's rules).
    ///
    /// Must be called within a tokio runtime.
    pub fn into_chunks(self) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        tokio::spawn(self.pump(tx));
        rx
    }

    /// Reads the region into `tx`, a chunk whenever it has room.
    async fn pump(self, tx: mpsc::Sender<Chunk>) {
        let file = Arc::new(self.file);
        let end = self.offset.saturating_add(self.len);
        let mut pos = self.offset;
        while pos < end {
            // Room first: nothing is read for a client that has left.
            let Ok(permit) = tx.reserve().await else {
                return;
            };
            let want = usize::try_from(end - pos).map_or(FILE_CHUNK, |n| n.min(FILE_CHUNK));
            match read_chunk(&file, pos, want).await {
                Ok(data) if !data.is_empty() => {
                    pos += data.len() as u64;
                    permit.send(Chunk::Data(data));
                }
                outcome => {
                    let why = outcome
                        .err()
                        .map_or("the file is shorter".into(), |e| e.to_string());
                    tracing::warn!("file body cut short at byte {pos}: {why}");
                    permit.send(Chunk::Abort);
                    return;
                }
            }
        }
    }
}

/// Up to `len` bytes of `file` at `pos` (fewer at its end; none past it).
async fn read_chunk(file: &Arc<File>, pos: u64, len: usize) -> io::Result<Bytes> {
    let mut data = BytesMut::with_capacity(len);
    let mut buf = ReadBuf::uninit(&mut data.spare_capacity_mut()[..len]);
    match read_cached(file, &mut buf, pos) {
        Ok(n) => {
            // SAFETY: `read_cached` initialized (filled) the first `n`
            // bytes of the spare capacity.
            unsafe { data.set_len(n) };
            return Ok(data.freeze());
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    let file = file.clone();
    let read = tokio::task::spawn_blocking(move || {
        let mut data = vec![0; len];
        let n = file.read_at(&mut data, pos)?;
        data.truncate(n);
        Ok(Bytes::from(data))
    });
    read.await.map_err(io::Error::other)?
}

/// Reads into `buf` at `pos` what the page cache holds now; `WouldBlock`
/// when the kernel would have to wait for the disk (or cannot tell).
/// `preadv2(RWF_NOWAIT)`, Linux 4.14.
#[cfg(target_os = "linux")]
pub fn read_cached(file: &File, buf: &mut ReadBuf<'_>, pos: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let offset = libc::off_t::try_from(pos).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: the kernel only writes to the unfilled part of `buf`, never
    // reads it, and at most `iov_len` bytes of it.
    let unfilled = unsafe { buf.unfilled_mut() };
    let iov = libc::iovec {
        iov_base: unfilled.as_mut_ptr().cast(),
        iov_len: unfilled.len(),
    };
    // SAFETY: one valid iovec over memory we hold; the fd is open.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // No RWF_NOWAIT here (old kernel, some filesystems): the pool then.
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            _ => Err(e),
        };
    }
    let n = n as usize; // not negative: checked above
                        // SAFETY: the kernel wrote `n` bytes at the start of the unfilled part.
    unsafe { buf.assume_init(n) };
    buf.advance(n);
    Ok(n)
}

/// Elsewhere every read goes to the blocking pool.
#[cfg(not(target_os = "linux"))]
pub fn read_cached(_: &File, _: &mut ReadBuf<'_>, _: u64) -> io::Result<usize> {
    Err(io::ErrorKind::WouldBlock.into())
}

/// An anonymous temporary file holding `data`, for tests.
#[cfg(test)]
pub fn temp_file(data: &[u8]) -> File {
    let mut file = tempfile::tempfile().unwrap();
    io::Write::write_all(&mut file, data).unwrap();
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk of `rx`, and whether it ended with an abort.
    async fn drain(mut rx: mpsc::Receiver<Chunk>) -> (Vec<u8>, bool) {
        let mut got = Vec::new();
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Data(data) => {
                    assert!(!data.is_empty() && data.len() <= FILE_CHUNK);
                    got.extend_from_slice(&data);
                }
                Chunk::Abort => return (got, true),
            }
        }
        (got, false)
    }

    #[tokio::test]
    async fn a_region_comes_whole_in_chunks() {
        let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        for (offset, len) in [(0, 700_000), (5, 600_001), (699_999, 1), (10, 0)] {
            let file = temp_file(&data);
            let region = FileRegion { file, offset, len };
            let (got, aborted) = drain(region.into_chunks()).await;
            let (from, to) = (offset as usize, (offset + len) as usize);
            assert!(!aborted, "{offset}+{len}");
            assert_eq!(got, &data[from..to], "{offset}+{len}");
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_its_region_aborts() {
        let file = temp_file(&[7; 300_000]);
        let region = FileRegion {
            file,
            offset: 0,
            len: 400_000,
        };
        let (got, aborted) = drain(region.into_chunks()).await;
        assert_eq!(got.len(), 300_000);
        assert!(aborted);
    }

    #[tokio::test]
    async fn reads_stop_when_the_receiver_is_gone() {
        let region = FileRegion {
            file: temp_file(&[1; 8 * FILE_CHUNK]),
            offset: 0,
            len: 8 * FILE_CHUNK as u64,
        };
        let alive = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let mut rx = region.into_chunks();
        assert!(matches!(rx.recv().await, Some(Chunk::Data(_))));
        assert_eq!(alive(), 1);
        drop(rx);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(alive(), 0, "the reading task is still there");
    }
}
