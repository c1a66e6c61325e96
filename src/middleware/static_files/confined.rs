//! A `ServeDir` backend that opens only what really lies under the
//! directory it serves.
//!
//! Rules:
//! - Every path `ServeDir` asks for (the file, its precompressed siblings,
//!   the directory check) is opened first (following symlinks, as any
//!   open does), then the kernel is asked where the open descriptor really
//!   is (`/proc/self/fd/N`; elsewhere, or without /proc, `realpath(3)` of
//!   the path). One that is not under the canonical directory is "not
//!   found": a symlink inside the directory that leads outside it is a 404,
//!   one that stays inside is followed. What is checked is what was opened,
//!   so a symlink swapped in between cannot slip through.
//! - Only regular files are served: a directory, FIFO or device is "not
//!   found" (opened non-blocking, so a FIFO cannot hold the thread).
//! - The metadata is the open file's (`fstat`), taken once.
//! - Look-ups run on the calling I/O thread: under a directory on a local
//!   disk the kernel answers them from its dentry cache in microseconds, as
//!   nginx's own `open` does. A trip to the blocking pool per look-up cost
//!   more than the look-up: `ServeDir` makes up to five per request (the
//!   directory check, then `.br`, `.zst`, `.gz` and the plain file for a
//!   client that accepts all three), and an 8 KiB stylesheet fell from
//!   10.5k to 4.1k req/s with a browser's `Accept-Encoding`. A missing
//!   sibling costs one failed `open`.
//! - Reads come from the page cache on the I/O thread when it can answer at
//!   once ([`ConfinedFile`]), else from the blocking pool: file data, unlike
//!   metadata, is often not cached.
//! - Within [`capture`], the file opened for reading (`ServeDir` opens one
//!   per GET: the file or the precompressed sibling it serves) is kept, so
//!   the caller can send that very descriptor itself (`sendfile`) instead
//!   of `ServeDir`'s body: nothing is reopened by path.

use std::cell::RefCell;
use std::future::{self, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::os::unix::fs::FileExt;

use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tokio::task::JoinHandle;
use tower_http::services::fs::{Backend, File};

use crate::exchange::read_cached;

tokio::task_local! {
    /// The file the backend opened for reading last, within [`capture`].
    static OPENED: RefCell<Option<Arc<std::fs::File>>>;
}

/// Runs `serve` (a `ServeDir` call over a [`Confined`] backend), and
/// returns its output with the file it opened for reading, if it opened
/// one: the file its response's body reads.
pub async fn capture<F: Future>(serve: F) -> (F::Output, Option<Arc<std::fs::File>>) {
    let run = async move {
        let output = serve.await;
        (output, OPENED.with(RefCell::take))
    };
    OPENED.scope(RefCell::new(None), run).await
}

/// Files under one canonical directory.
#[derive(Debug, Clone)]
pub struct Confined {
    /// The directory, canonical (symlinks resolved), so that a resolved
    /// path can be compared with it component by component.
    root: Arc<Path>,
}

impl Confined {
    /// The files under `dir`. A `dir` that cannot be resolved (removed
    /// since the options were read) is logged and kept as given: nothing
    /// resolves under it, so every request is a 404.
    pub fn new(dir: &Path) -> Self {
        let root = std::fs::canonicalize(dir).unwrap_or_else(|e| {
            tracing::error!("--static: {}: {e}", dir.display());
            dir.to_path_buf()
        });
        Confined { root: root.into() }
    }

    /// `file`, opened from `path`, when it really lies under the
    /// directory; else NotFound.
    fn check(&self, file: std::fs::File, path: &Path) -> io::Result<std::fs::File> {
        if real_path(&file, path)?.starts_with(&self.root) {
            Ok(file)
        } else {
            tracing::info!("static: {} leads outside the directory", path.display());
            Err(io::ErrorKind::NotFound.into())
        }
    }

    /// Opens the regular file at `path`.
    fn open_now(&self, path: &Path) -> io::Result<ConfinedFile> {
        let file = self.check(open(path, OpenFor::Reading)?, path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let file = ConfinedFile::new(file, meta);
        // Outside `capture` there is nobody to tell.
        let _ = OPENED.try_with(|opened| opened.replace(Some(file.file.clone())));
        Ok(file)
    }

    /// The metadata of what is at `path` (a file or a directory).
    fn metadata_now(&self, path: &Path) -> io::Result<std::fs::Metadata> {
        self.check(open(path, OpenFor::Metadata)?, path)?.metadata()
    }
}

/// What a file is opened for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenFor {
    Reading,
    Metadata,
}

/// Opens `path` without blocking on a FIFO; for metadata alone, on Linux,
/// without opening the file for reading (`O_PATH`).
fn open(path: &Path, purpose: OpenFor) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    #[cfg(target_os = "linux")]
    let flags = match purpose {
        OpenFor::Reading => libc::O_NONBLOCK,
        OpenFor::Metadata => libc::O_PATH,
    };
    #[cfg(not(target_os = "linux"))]
    let flags = {
        let _ = purpose;
        libc::O_NONBLOCK
    };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
}

/// Where `file` (opened from `path`) really is, symlinks resolved.
fn real_path(file: &std::fs::File, path: &Path) -> io::Result<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let link = format!("/proc/self/fd/{}", file.as_raw_fd());
        if let Ok(real) = std::fs::read_link(link) {
            return Ok(real);
        }
    }
    let _ = file;
    std::fs::canonicalize(path)
}

impl Backend for Confined {
    type File = ConfinedFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = future::Ready<io::Result<ConfinedFile>>;
    type MetadataFuture = future::Ready<io::Result<std::fs::Metadata>>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        future::ready(self.open_now(&path))
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        future::ready(self.metadata_now(&path))
    }
}

/// An open file under the directory, with its metadata as it was opened.
///
/// Reads come from the page cache on the calling (I/O) thread, without a
/// trip to another thread, when the kernel can answer at once
/// (`preadv2(RWF_NOWAIT)`, Linux 4.14); a read that would wait for the disk
/// goes to the blocking pool instead, so a cold file never stalls the
/// connections of the I/O thread.
#[derive(Debug)]
pub struct ConfinedFile {
    file: Arc<std::fs::File>,
    meta: std::fs::Metadata,
    /// Where the next read starts, bytes from the start of the file.
    pos: u64,
    /// A read the page cache could not answer at once, under way.
    pending: Option<JoinHandle<io::Result<Vec<u8>>>>,
}

impl ConfinedFile {
    fn new(file: std::fs::File, meta: std::fs::Metadata) -> Self {
        ConfinedFile {
            file: Arc::new(file),
            meta,
            pos: 0,
            pending: None,
        }
    }

    /// Starts reading up to `len` bytes at `pos` on the blocking pool.
    fn read_on_pool(&mut self, len: usize) {
        let (file, pos) = (self.file.clone(), self.pos);
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let mut data = vec![0; len];
            let n = file.read_at(&mut data, pos)?;
            data.truncate(n);
            Ok(data)
        }));
    }
}

impl AsyncRead for ConfinedFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.pending.is_none() {
            match read_cached(&this.file, buf, this.pos) {
                Ok(n) => {
                    this.pos += n as u64;
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    this.read_on_pool(buf.remaining());
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let done = std::task::ready!(Pin::new(pending).poll(cx));
        this.pending = None;
        let data = done.map_err(io::Error::other)??;
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        this.pos += n as u64;
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for ConfinedFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        let target = match position {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            io::SeekFrom::End(d) => self.meta.len().checked_add_signed(d),
        };
        self.pos = target.ok_or(io::ErrorKind::InvalidInput)?;
        self.pending = None;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos))
    }
}

impl File for ConfinedFile {
    type Metadata = std::fs::Metadata;
    type MetadataFuture<'a> = future::Ready<io::Result<std::fs::Metadata>>;

    fn metadata(&self) -> Self::MetadataFuture<'_> {
        future::ready(Ok(self.meta.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn symlinks_are_followed_only_inside() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"no").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"yes").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
        };
        link(&outside.path().join("secret"), "out");
        link(&dir.path().join("a.txt"), "in");
        link(outside.path(), "outdir");
        let backend = Confined::new(dir.path());
        assert!(backend.open(dir.path().join("a.txt")).await.is_ok());
        assert!(backend.open(dir.path().join("in")).await.is_ok());
        for name in ["out", "outdir/secret", "missing", ""] {
            let err = backend.open(dir.path().join(name)).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::NotFound, "{name:?}");
        }
        assert!(backend.metadata(dir.path().join("outdir")).await.is_err());
        // A FIFO is not a file: refused at once, never waited on.
        let fifo = std::ffi::CString::new(
            dir.path()
                .join("fifo")
                .into_os_string()
                .into_encoded_bytes(),
        );
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.unwrap().as_ptr(), 0o644) }, 0);
        let err = backend.open(dir.path().join("fifo")).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(backend
            .metadata(dir.path().to_path_buf())
            .await
            .unwrap()
            .is_dir());
    }

    #[tokio::test]
    async fn reads_come_whole_from_the_cache_or_the_pool() {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let backend = Confined::new(dir.path());
        let mut file = backend.open(dir.path().join("f")).await.unwrap();
        let mut got = Vec::new();
        file.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, data);
        file.seek(io::SeekFrom::Start(299_990)).await.unwrap();
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).await.unwrap();
        assert_eq!(tail, &data[299_990..]);
        // The path taken when the page cache cannot answer at once.
        file.seek(io::SeekFrom::Start(5)).await.unwrap();
        file.read_on_pool(10);
        let mut ten = [0u8; 10];
        file.read_exact(&mut ten).await.unwrap();
        assert_eq!(ten, data[5..15]);
        assert!(file.seek(io::SeekFrom::Current(-100)).await.is_err());
    }
}
