//! One encoder type over every format evshm writes, for callers that pick the format at
//! run time.

use std::io::Write;

use crate::aedat2::{Aedat2Chip, Aedat2Encoder};
use crate::aedat3::Aedat3Encoder;
use crate::atis_bin::AtisBinEncoder;
use crate::dat::DatEncoder;
use crate::encode::EncodeError;
use crate::event_stream::EventStreamEncoder;
use crate::evt2::Evt2Encoder;
use crate::evt3::Evt3Encoder;
use crate::evt21::Evt21Encoder;
use crate::format::Format;
use crate::geometry::Geometry;
use crate::sink::{Event, Trigger};
use crate::text::TextEncoder;

/// An encoder for any format evshm writes, chosen at run time.
#[derive(Debug)]
#[non_exhaustive]
pub enum Encoder<W: Write> {
    /// DAT.
    Dat(DatEncoder<W>),
    /// EVT 2.0.
    Evt2(Evt2Encoder<W>),
    /// EVT 2.1.
    Evt21(Evt21Encoder<W>),
    /// EVT 3.0.
    Evt3(Evt3Encoder<W>),
    /// Text (always written `t,x,y,p` with a geometry header).
    Text(TextEncoder<W>),
    /// AEDAT 3.1.
    Aedat3(Aedat3Encoder<W>),
    /// AEDAT 2.0.
    Aedat2(Aedat2Encoder<W>),
    /// Event Stream 2.0.
    EventStream(EventStreamEncoder<W>),
    /// ATIS `.bin`.
    AtisBin(AtisBinEncoder<W>),
}

impl<W: Write> Encoder<W> {
    /// Writes the header of `format` and returns an encoder for the events. AEDAT 2.0 is
    /// written for the camera of `geometry` (its chip in `format` is ignored), which must
    /// be one jAER has ([`Aedat2Chip::of_geometry`]).
    pub fn new(format: Format, out: W, geometry: Geometry) -> Result<Self, EncodeError> {
        Ok(match format {
            Format::Dat => Encoder::Dat(DatEncoder::new(out, geometry)?),
            Format::Evt2 => Encoder::Evt2(Evt2Encoder::new(out, geometry)?),
            Format::Evt21(order) => Encoder::Evt21(Evt21Encoder::new(out, geometry, order)?),
            Format::Evt3 => Encoder::Evt3(Evt3Encoder::new(out, geometry)?),
            Format::Text(_) => Encoder::Text(TextEncoder::new(out, geometry)?),
            Format::Aedat3 => Encoder::Aedat3(Aedat3Encoder::new(out, geometry)?),
            Format::Aedat2(_) => {
                let chip = Aedat2Chip::of_geometry(geometry).ok_or(EncodeError::OutOfRange {
                    x: 0,
                    y: 0,
                    width: geometry.width,
                    height: geometry.height,
                })?;
                Encoder::Aedat2(Aedat2Encoder::new(out, chip)?)
            }
            Format::EventStream(layout) => {
                Encoder::EventStream(EventStreamEncoder::new(out, geometry, layout.kind)?)
            }
            Format::AtisBin => Encoder::AtisBin(AtisBinEncoder::new(out, geometry)?),
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
            Encoder::Aedat3(e) => e.push(event),
            Encoder::Aedat2(e) => e.push(event),
            Encoder::EventStream(e) => e.push(event),
            Encoder::AtisBin(e) => e.push(event),
        }
    }

    /// Adds one external trigger; `false` if the format has no place for triggers (DAT
    /// CD files, text, and the formats of iniVation and Neuromorphic-Paris as evshm writes
    /// them), which then drop it.
    pub fn push_trigger(&mut self, trigger: &Trigger) -> Result<bool, EncodeError> {
        match self {
            Encoder::Evt2(e) => e.push_trigger(trigger).map(|()| true),
            Encoder::Evt21(e) => e.push_trigger(trigger).map(|()| true),
            Encoder::Evt3(e) => e.push_trigger(trigger).map(|()| true),
            Encoder::Dat(_)
            | Encoder::Text(_)
            | Encoder::Aedat3(_)
            | Encoder::Aedat2(_)
            | Encoder::EventStream(_)
            | Encoder::AtisBin(_) => Ok(false),
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
            Encoder::Aedat3(e) => e.finish(),
            Encoder::Aedat2(e) => e.finish(),
            Encoder::EventStream(e) => e.finish(),
            Encoder::AtisBin(e) => e.finish(),
        }
    }
}
