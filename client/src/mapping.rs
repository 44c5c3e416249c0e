//! Read-only mappings of published segments.
//!
//! Contract: evshmd publishes a segment only once it is complete, allocates its pages
//! before filling it (so a full shared-memory filesystem fails in the daemon, never as a
//! SIGBUS here) and never writes, truncates or shrinks it afterwards. The file may be
//! longer than the stream (hugetlbfs sizes files in whole huge pages): it is mapped whole,
//! and only the stream's bytes are handed out. In sealed mode the
//! kernel enforces that for everyone, and a passed segment without the seals is refused. A client maps it
//! read-only, after checking that the file is exactly as long as the daemon said, so no
//! access through the mapping can fall past the end of the file.

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
    #[error("cannot map segment {path}: {source}")]
    Io {
        /// The segment file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
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
    // std opens with O_CLOEXEC; read-only, so the mapping cannot be writable either.
    let file = File::open(path).map_err(|source| MapError::Io { path: path.to_owned(), source })?;
    map_file(&file, path, expected_len)
}

/// Maps a segment the daemon passed as a descriptor (sealed mode), after checking that it
/// is sealed against writing, growing and shrinking: only then can no one change it.
pub fn map_sealed_segment(fd: OwnedFd, name: &str, expected_len: u64) -> Result<Buffer, MapError> {
    let required = SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK;
    let sealed = rustix::fs::fcntl_get_seals(&fd).is_ok_and(|seals| seals.contains(required));
    if !sealed {
        return Err(MapError::NotSealed { name: name.to_owned() });
    }
    map_file(&File::from(fd), Path::new(name), expected_len)
}

fn map_file(file: &File, path: &Path, expected_len: u64) -> Result<Buffer, MapError> {
    let io = |source| MapError::Io { path: path.to_owned(), source };
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
    Ok(Buffer::from(bytes::Bytes::from_owner(map)).slice_with_length(0, expected_len as usize))
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
