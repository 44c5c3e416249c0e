//! What the encoders share: their error type and input checks.

use crate::detect::Geometry;
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

/// An encoder for any format evshm writes, chosen at run time.
#[derive(Debug)]
#[non_exhaustive]
pub enum Encoder<W: std::io::Write> {
    /// DAT.
    Dat(crate::DatEncoder<W>),
    /// EVT 2.0.
    Evt2(crate::Evt2Encoder<W>),
    /// EVT 2.1.
    Evt21(crate::Evt21Encoder<W>),
    /// EVT 3.0.
    Evt3(crate::Evt3Encoder<W>),
    /// Text (always written `t,x,y,p` with a geometry header).
    Text(crate::TextEncoder<W>),
}

impl<W: std::io::Write> Encoder<W> {
    /// Writes the header of `format` and returns an encoder for the events.
    pub fn new(format: crate::Format, out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        use crate::Format;
        Ok(match format {
            Format::Dat => Encoder::Dat(crate::DatEncoder::new(out, geometry)?),
            Format::Evt2 => Encoder::Evt2(crate::Evt2Encoder::new(out, geometry)?),
            Format::Evt21(order) => Encoder::Evt21(crate::Evt21Encoder::new(out, geometry, order)?),
            Format::Evt3 => Encoder::Evt3(crate::Evt3Encoder::new(out, geometry)?),
            Format::Text(_) => Encoder::Text(crate::TextEncoder::new(out, geometry)?),
            Format::Aedat4(_) => return Err(EncodeError::Unsupported { format: format.name() }),
        })
    }

    /// Adds one event.
    pub fn push(&mut self, event: &Event) -> Result<(), EncodeError> {
        match self {
            Encoder::Dat(e) => e.push(event),
            Encoder::Evt2(e) => e.push(event),
            Encoder::Evt21(e) => e.push(event),
            Encoder::Evt3(e) => e.push(event),
            Encoder::Text(e) => e.push(event),
        }
    }

    /// Adds one external trigger; `false` if the format has no place for triggers (DAT
    /// CD files, text), which then drop it.
    pub fn push_trigger(&mut self, trigger: &crate::Trigger) -> Result<bool, EncodeError> {
        match self {
            Encoder::Evt2(e) => e.push_trigger(trigger).map(|()| true),
            Encoder::Evt21(e) => e.push_trigger(trigger).map(|()| true),
            Encoder::Evt3(e) => e.push_trigger(trigger).map(|()| true),
            Encoder::Dat(_) | Encoder::Text(_) => Ok(false),
        }
    }

    /// Writes what is pending and returns the writer.
    pub fn finish(self) -> Result<W, EncodeError> {
        match self {
            Encoder::Dat(e) => e.finish(),
            Encoder::Evt2(e) => e.finish(),
            Encoder::Evt21(e) => e.finish(),
            Encoder::Evt3(e) => e.finish(),
            Encoder::Text(e) => e.finish(),
        }
    }
}
