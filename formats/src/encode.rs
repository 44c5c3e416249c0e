//! What the encoders share: their error type and input checks.

use crate::geometry::Geometry;
use crate::sink::Event;

/// Why an event stream could not be written in a format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Writing failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// An event lies outside the geometry, or beyond what the format's fields hold.
    #[error("event at x={x}, y={y} lies outside the {width}x{height} sensor or the format's range")]
    OutOfRange {
        /// Column of the event.
        x: u16,
        /// Row of the event.
        y: u16,
        /// Sensor width.
        width: u32,
        /// Sensor height.
        height: u32,
    },
    /// Polarity other than 0 or 1.
    #[error("polarity {p} is neither 0 nor 1")]
    BadPolarity {
        /// The polarity given.
        p: u8,
    },
    /// Timestamps are never negative in these formats.
    #[error("timestamp {t} is negative")]
    NegativeTime {
        /// The timestamp given.
        t: i64,
    },
    /// evshm reads this format but does not write it.
    #[error("evshm does not write {format} files")]
    Unsupported {
        /// The format's name.
        format: &'static str,
    },
    /// The step from the previous timestamp cannot be expressed in the format.
    #[error("cannot go from time {previous} to {t}: {reason}")]
    TimeNotEncodable {
        /// The timestamp given.
        t: i64,
        /// The time the stream was at.
        previous: i64,
        /// What the format cannot express.
        reason: &'static str,
    },
}

/// Checks an event against the geometry and the widest coordinate the format holds.
pub(crate) fn check_coordinates(
    event: &Event,
    geometry: Geometry,
    max_coordinate: u16,
) -> Result<(), EncodeError> {
    let inside = u32::from(event.x) < geometry.width
        && u32::from(event.y) < geometry.height
        && event.x <= max_coordinate
        && event.y <= max_coordinate;
    if !inside {
        return Err(EncodeError::OutOfRange {
            x: event.x,
            y: event.y,
            width: geometry.width,
            height: geometry.height,
        });
    }
    if event.p > 1 {
        return Err(EncodeError::BadPolarity { p: event.p });
    }
    Ok(())
}
/// A buffered encoder's writer, flushed: what its `finish` returns.
pub(crate) fn flushed<W: std::io::Write>(out: std::io::BufWriter<W>) -> Result<W, EncodeError> {
    let mut out = out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
    out.flush()?;
    Ok(out)
}
