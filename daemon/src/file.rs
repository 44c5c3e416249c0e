//! A recording file as the daemon reads it: opened once per version, without following
//! any symbolic link and without blocking, and refused unless it is a regular file. The
//! index pass, detection and every chunk decode of that version read through the one
//! descriptor, so a path swapped for a link, a FIFO or another file meanwhile changes
//! nothing of what is served (a changed file is a new version on the next request).

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use evshm_formats::{Detected, MAX_HEADER_LEN};
use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::ingest_error::IngestError;

/// Bytes read from the file at a time.
const READ_SIZE: usize = 1 << 20;

/// What identifies one version of a file: when any of it changes, the file is decoded
/// anew (a new generation) on its next open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileIdentity {
    /// The version of the file at `path` now, the last component not followed if it is a
    /// link (then this is the link's, which no index has).
    pub fn look(path: &Path) -> Result<Self, IngestError> {
        let metadata = std::fs::symlink_metadata(path)
            .map_err(|source| IngestError::Read { path: path.to_owned(), source })?;
        Ok(Self::of(&metadata))
    }

    /// The version as text (device, inode, size, modification time), to be handed out
    /// and compared later, as a Flight ticket does: equal texts, equal versions.
    pub fn token(&self) -> String {
        format!("{:x}-{:x}-{:x}-{:x}", self.dev, self.ino, self.len, self.mtime_ns)
    }

    /// The identity of the file `metadata` describes.
    pub fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            dev: metadata.dev(),
            ino: metadata.ino(),
            len: metadata.len(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }
}

/// One version of a recording file, open.
#[derive(Debug)]
pub struct RecordingFile {
    file: File,
    path: PathBuf,
    identity: FileIdentity,
}

impl RecordingFile {
    /// Opens the file at `path`, a canonical path (no component of it a link): a link
    /// found on the way now, left there since the path was resolved, is refused, as is
    /// anything but a regular file (a FIFO opens without blocking, and is refused then).
    pub fn open(path: &Path) -> Result<RecordingFile, IngestError> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOFOLLOW;
        let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let opened = match rustix::fs::openat2(CWD, path, flags, Mode::empty(), resolve) {
            // Kernels before 5.6: the final component at least is not followed.
            Err(Errno::NOSYS) => rustix::fs::open(path, flags, Mode::empty()),
            other => other,
        };
        let fd = opened.map_err(|e| match e {
            Errno::LOOP | Errno::XDEV => IngestError::LinkInPath { path: path.to_owned() },
            other => IngestError::Read { path: path.to_owned(), source: other.into() },
        })?;
        let file = File::from(fd);
        let read_error = |source| IngestError::Read { path: path.to_owned(), source };
        let metadata = file.metadata().map_err(read_error)?;
        if !metadata.is_file() {
            return Err(IngestError::NotRegular { path: path.to_owned() });
        }
        let identity = FileIdentity::of(&metadata);
        Ok(RecordingFile { file, path: path.to_owned(), identity })
    }

    /// The canonical path it was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version opened.
    pub fn identity(&self) -> FileIdentity {
        self.identity
    }

    /// Its size in bytes, when it was opened.
    pub fn size(&self) -> u64 {
        self.identity.len
    }

    /// Reads the head of the file and recognises its format.
    pub fn detect(&self) -> Result<Detected, IngestError> {
        let mut head = Vec::with_capacity(4096);
        self.read_range(0, MAX_HEADER_LEN as u64, |bytes| head.extend_from_slice(bytes))?;
        let extension = self.path.extension().and_then(|e| e.to_str());
        evshm_formats::detect(&head, extension)
            .map_err(|source| IngestError::Unrecognized { path: self.path.clone(), source })
    }

    /// Reads `len` bytes of the file (or up to its end) from `offset` on, in pieces.
    pub fn read_range(
        &self,
        offset: u64,
        len: u64,
        mut consume: impl FnMut(&[u8]),
    ) -> Result<(), IngestError> {
        let read_error = |source| IngestError::Read { path: self.path.clone(), source };
        let mut buffer = vec![0u8; READ_SIZE.min(usize::try_from(len).unwrap_or(READ_SIZE))];
        let (mut at, end) = (offset, offset.saturating_add(len));
        while at < end {
            let want = buffer.len().min(usize::try_from(end - at).unwrap_or(usize::MAX));
            match self.file.read_at(&mut buffer[..want], at) {
                Ok(0) => break,
                Ok(n) => {
                    consume(&buffer[..n]);
                    at += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn only_regular_files_at_link_free_paths_open() {
        let dir = TempDir::new("file");
        let file = dir.0.join("a.raw");
        std::fs::write(&file, b"0123456789").unwrap();
        let opened = RecordingFile::open(&file).unwrap();
        let mut read = Vec::new();
        opened.read_range(2, 5, |b| read.extend_from_slice(b)).unwrap();
        assert_eq!(read, b"23456");
        read.clear();
        opened.read_range(8, 100, |b| read.extend_from_slice(b)).unwrap();
        assert_eq!(read, b"89", "up to the end");

        std::os::unix::fs::symlink(&file, dir.0.join("link.raw")).unwrap();
        let link = RecordingFile::open(&dir.0.join("link.raw"));
        assert!(matches!(link, Err(IngestError::LinkInPath { .. })), "{link:?}");
        std::os::unix::fs::symlink(&dir.0, dir.0.join("sub")).unwrap();
        let through = RecordingFile::open(&dir.0.join("sub/a.raw"));
        assert!(matches!(through, Err(IngestError::LinkInPath { .. })), "{through:?}");

        let fifo = dir.0.join("fifo.raw");
        rustix::fs::mknodat(CWD, &fifo, rustix::fs::FileType::Fifo, Mode::RUSR | Mode::WUSR, 0)
            .unwrap();
        let fifo = RecordingFile::open(&fifo);
        assert!(matches!(fifo, Err(IngestError::NotRegular { .. })), "opened without blocking");
    }
}
