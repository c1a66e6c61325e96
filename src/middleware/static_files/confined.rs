//! A `ServeDir` backend that opens only what really lies under the
//! directory it serves.
//!
//! Rules:
//! - Every path `ServeDir` asks for (the file, its precompressed siblings,
//!   the directory check) is resolved with `realpath(3)` first; one whose
//!   resolved form is not under the canonical directory is "not found", so
//!   a symlink inside the directory that leads outside it is a 404, and one
//!   that stays inside is followed.
//! - Only regular files are opened (a FIFO or a device under the directory
//!   is "not found": opening a FIFO would block a thread).
//! - The file opened is the resolved path, and its metadata is taken from
//!   the open file (`fstat`), once: what is sent is what was checked.
//! - The blocking calls run on tokio's blocking pool, one hop per look-up.

use std::future::{self, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use tower_http::services::fs::{Backend, File};

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

    /// `path` resolved, when it lies under the directory; else NotFound.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        let real = std::fs::canonicalize(path)?;
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            tracing::debug!("static: {} leads outside the directory", path.display());
            Err(io::ErrorKind::NotFound.into())
        }
    }

    /// Opens the regular file at `path` (blocking).
    fn open_blocking(&self, path: &Path) -> io::Result<ConfinedFile> {
        let real = self.resolve(path)?;
        if !std::fs::metadata(&real)?.is_file() {
            return Err(io::ErrorKind::NotFound.into());
        }
        let file = std::fs::File::open(&real)?;
        let meta = file.metadata()?;
        Ok(ConfinedFile {
            file: tokio::fs::File::from_std(file),
            meta,
        })
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

type BoxedIo<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl Backend for Confined {
    type File = ConfinedFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxedIo<ConfinedFile>;
    type MetadataFuture = BoxedIo<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let this = self.clone();
        Box::pin(blocking(move || this.open_blocking(&path)))
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let this = self.clone();
        Box::pin(blocking(move || std::fs::metadata(this.resolve(&path)?)))
    }
}

/// An open file under the directory, with its metadata as it was opened.
#[derive(Debug)]
pub struct ConfinedFile {
    file: tokio::fs::File,
    meta: std::fs::Metadata,
}

impl AsyncRead for ConfinedFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl AsyncSeek for ConfinedFile {
    fn start_seek(mut self: Pin<&mut Self>, position: io::SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
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
        assert!(backend
            .metadata(dir.path().to_path_buf())
            .await
            .unwrap()
            .is_dir());
    }
}
