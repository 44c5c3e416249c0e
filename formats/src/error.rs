//! Errors of format detection.

/// Why a file's head could not be recognised as an event recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// The content matches no supported format.
    #[error(
        "not an event recording evshm reads ({reason}); evshm reads, by their content \
         whatever their name: Prophesee RAW (EVT2, EVT2.1, EVT3) with a `% ` header, \
         Prophesee DAT (CD events), iniVation AEDAT 4.0 and 3.1, jAER AEDAT 2.0, Event \
         Stream 2.x (DVS, ATIS), ATIS .bin (N-MNIST), and text with one `t x y p` event \
         per line; convert other formats to one of these"
    )]
    Unrecognized {
        /// What was seen instead.
        reason: String,
    },
    /// The header names a format that exists but is not decoded yet.
    #[error(
        "event format {name} is recognised but not supported yet; supported: EVT2, EVT2.1, EVT3, DAT, AEDAT4, AEDAT 3.1, AEDAT 2.0, Event Stream 2.x DVS and ATIS, ATIS .bin, text"
    )]
    UnsupportedFormat {
        /// The format as spelled in the header.
        name: String,
    },
    /// The `% ` header does not end within [`crate::MAX_HEADER_LEN`] bytes.
    #[error("header is longer than {max} bytes; the file is probably not an event recording")]
    HeaderTooLong {
        /// The limit.
        max: usize,
    },
    /// The header states a geometry that cannot be right.
    #[error("header gives an invalid geometry: {detail}")]
    BadGeometry {
        /// The offending text.
        detail: String,
    },
}
