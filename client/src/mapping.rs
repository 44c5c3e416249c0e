//! Read-only mappings of published segments.
//!
//! Contract: evshmd publishes a segment only once it is complete, allocates its pages
//! before filling it (so a full shared-memory filesystem fails in the daemon, never as a
//! SIGBUS here) and never writes, truncates or shrinks it afterwards; in sealed mode the
//! kernel enforces that for everyone, and a passed segment without the seals is refused.
//! The file may be longer than the stream (hugetlbfs sizes files in whole huge pages): a
//! client checks that it is at least as long as the daemon said, maps the whole file
//! read-only (a hugetlbfs mapping can only be unmapped in whole huge pages) and hands out
//! only the stream's bytes, so no access through the mapping falls past the end of the
//! file.
//!
//! A mapping can carry a value that lives exactly as long as it (its `keep`): the client
//! puts the lease there, so that the daemon keeps counting the segment as read until the
//! last buffer sliced from it is dropped.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use arrow_buffer::Buffer;
use rustix::fs::SealFlags;

/// Why a segment could not be mapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// Opening, inspecting or mapping the file failed.
    #[error("cannot map segment {path}: {cause}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The OS error (in the message, so not a `source` that error chains would print
        /// again).
        cause: std::io::Error,
    },
    /// A segment passed as a descriptor lacks the seals that make it immutable.
    #[error("segment {name} was passed without the seals against writing, growing and shrinking")]
    NotSealed {
        /// The segment's name.
        name: String,
    },
    /// The file is shorter than the daemon said: it is not the segment that was
    /// published (or it was tampered with), so it is not mapped.
    #[error("segment {path} is {actual} bytes long, shorter than the {expected} evshmd published")]
    SizeMismatch {
        /// The segment file.
        path: PathBuf,
        /// Size in the daemon's reply.
        expected: u64,
        /// Size found.
        actual: u64,
    },
}

/// Maps the segment at `path` read-only and returns it as an Arrow buffer. The mapping
/// lives as long as the buffer or any slice of it.
pub fn map_segment(path: &Path, expected_len: u64) -> Result<Buffer, MapError> {
    map_segment_keeping(path, expected_len, ())
}

/// Like [`map_segment`], with `keep` dropped only when the mapping is unmapped.
pub(crate) fn map_segment_keeping<K: Send + 'static>(
    path: &Path,
    expected_len: u64,
    keep: K,
) -> Result<Buffer, MapError> {
    // std opens with O_CLOEXEC; read-only, so the mapping cannot be writable either.
    let file = File::open(path).map_err(|cause| MapError::Io { path: path.to_owned(), cause })?;
    map_file(&file, path, expected_len, keep)
}

/// Maps a segment the daemon passed as a descriptor (sealed mode), after checking that it
/// is sealed against writing, growing and shrinking: only then can no one change it.
pub fn map_sealed_segment(fd: OwnedFd, name: &str, expected_len: u64) -> Result<Buffer, MapError> {
    map_sealed_segment_keeping(fd, name, expected_len, ())
}

/// Like [`map_sealed_segment`], with `keep` dropped only when the mapping is unmapped.
pub(crate) fn map_sealed_segment_keeping<K: Send + 'static>(
    fd: OwnedFd,
    name: &str,
    expected_len: u64,
    keep: K,
) -> Result<Buffer, MapError> {
    let required = SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK;
    let sealed = rustix::fs::fcntl_get_seals(&fd).is_ok_and(|seals| seals.contains(required));
    if !sealed {
        return Err(MapError::NotSealed { name: name.to_owned() });
    }
    map_file(&File::from(fd), Path::new(name), expected_len, keep)
}

fn map_file<K: Send + 'static>(
    file: &File,
    path: &Path,
    expected_len: u64,
    keep: K,
) -> Result<Buffer, MapError> {
    let io = |cause| MapError::Io { path: path.to_owned(), cause };
    let actual = file.metadata().map_err(io)?.len();
    // A longer file is fine (hugetlbfs rounds files up to whole huge pages); a shorter one
    // would make the mapping's tail fault with SIGBUS.
    if actual < expected_len || expected_len == 0 {
        return Err(MapError::SizeMismatch {
            path: path.to_owned(),
            expected: expected_len,
            actual,
        });
    }
    // SAFETY: the map is read-only and no longer than the file (checked above). The
    // daemon never modifies or shrinks a published segment (module contract), and file
    // permissions, or the seals of a passed memfd, deny writes and resizing to clients,
    // so the bytes cannot change under the `&[u8]` views Arrow takes of them.
    // The whole file is mapped, because a hugetlbfs mapping can only be unmapped in whole
    // huge pages (a shorter one would leak), and the stream's bytes are sliced off it.
    let map = unsafe { memmap2::MmapOptions::new().len(actual as usize).map(file) }.map_err(io)?;
    let owner = Mapped { map, _keep: keep };
    Ok(Buffer::from(bytes::Bytes::from_owner(owner)).slice_with_length(0, expected_len as usize))
}

/// A mapping and what must live as long as it.
struct Mapped<K> {
    map: memmap2::Mmap,
    _keep: K,
}

impl<K> AsRef<[u8]> for Mapped<K> {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_file_of_the_wrong_size() {
        let dir = std::env::temp_dir().join(format!("evshm-map-test-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789").unwrap();
        assert!(matches!(map_segment(&dir, 11), Err(MapError::SizeMismatch { actual: 10, .. })));
        assert_eq!(map_segment(&dir, 4).unwrap().as_slice(), b"0123", "a longer file is fine");
        let buffer = map_segment(&dir, 10).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(buffer.as_slice(), b"0123456789");
        assert!(matches!(map_segment(&dir, 10), Err(MapError::Io { .. })));
    }
}
