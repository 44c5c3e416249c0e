//! The event formats evshm reads, each with what its decoder needs to know of a file.

use crate::aedat2::Aedat2Chip;
use crate::aedat4::Aedat4Layout;
use crate::event_stream::EsLayout;
use crate::evt21::WordOrder;
use crate::geometry::Geometry;
use crate::text::Columns;

/// The event formats evshm decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// Prophesee DAT: 8-byte records, CD events.
    Dat,
    /// Prophesee EVT 2.0: 32-bit words.
    Evt2,
    /// Prophesee EVT 2.1: 64-bit vector words, in either half order.
    Evt21(WordOrder),
    /// Prophesee EVT 3.0: 16-bit words with vectorised x runs.
    Evt3,
    /// Text export: one `t x y p` event per line, in the given column order.
    Text(Columns),
    /// iniVation AEDAT 4.0: the polarity events of the first event stream.
    Aedat4(Aedat4Layout),
    /// libcaer AEDAT 3.1: the polarity packets.
    Aedat3,
    /// jAER AEDAT 2.0: 8-byte big-endian records of the given camera's addresses.
    Aedat2(Aedat2Chip),
    /// Event Stream 2.x (`.es`) of DVS or ATIS events.
    EventStream(EsLayout),
    /// ATIS 40-bit `.bin` records (N-MNIST, N-Caltech101).
    AtisBin,
}

impl Format {
    /// The lowercase name used on the wire and in schema metadata: `dat`, `evt2`,
    /// `evt21`, `evt3`, `text`, `aedat4`, `aedat3`, `aedat2`, `es`, `atis_bin`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dat => "dat",
            Format::Evt2 => "evt2",
            Format::Evt21(_) => "evt21",
            Format::Evt3 => "evt3",
            Format::Text(_) => "text",
            Format::Aedat4(_) => "aedat4",
            Format::Aedat3 => "aedat3",
            Format::Aedat2(_) => "aedat2",
            Format::EventStream(_) => "es",
            Format::AtisBin => "atis_bin",
        }
    }

    /// The geometry assumed when a file states none: the sensor most files of that format
    /// come from (ATIS 304x240 for DAT as in N-CARS and Gen1, Gen3 640x480 for EVT2,
    /// Gen4.1/IMX636 1280x720 for EVT2.1, EVT3 and text, DAVIS346 346x260 for AEDAT4,
    /// DVS128 128x128 for AEDAT 3.1 as in DVS128 Gesture, the camera's for AEDAT 2.0, the
    /// ATIS sensor's 304x240 for ATIS `.bin`; Event Stream files always state theirs).
    pub fn default_geometry(self) -> Geometry {
        match self {
            Format::Dat => Geometry { width: 304, height: 240 },
            Format::Evt2 => Geometry { width: 640, height: 480 },
            Format::Evt21(_) | Format::Evt3 | Format::Text(_) | Format::EventStream(_) => {
                Geometry { width: 1280, height: 720 }
            }
            Format::Aedat4(_) => Geometry { width: 346, height: 260 },
            Format::Aedat3 => Geometry { width: 128, height: 128 },
            Format::Aedat2(chip) => chip.geometry(),
            Format::AtisBin => Geometry { width: 304, height: 240 },
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
