//! HDF5 recordings in the three layouts datasets ship (feature `hdf5`): read through a
//! file, not fed as a byte stream, since HDF5 is read by offset.
//!
//! - DSEC: `events/{x,y,p,t}` columns (t in µs from the scalar `t_offset`, added here so
//!   times are absolute), usually compressed with Blosc (hdf5plugin); `ms_to_idx` is a
//!   time index.
//! - MVSEC: `davis/left/events` (else `davis/right/events`), N x 4 float64 rows `x, y, t, p`
//!   with t in seconds (rounded to µs here) and p -1 or 1.
//! - Metavision (SDK 4+, eTraM): `CD/events`, records `x u16, y u16, p i16, t i64` at
//!   offsets 0, 2, 4, 8 of 16 bytes, usually compressed with Prophesee's ECF codec.
//!
//! The container is read with hdf5-pure (pure Rust, no libhdf5); chunks compressed with
//! Blosc or ECF, which it does not decompress, are read raw at the offsets its chunk index
//! gives and decompressed with evshm's own codecs ([`crate::blosc_decompress`],
//! [`crate::ecf_decode`]), a chunk at a time, each bounded by the chunk's size. The events
//! are read a window of rows at a time, so memory stays flat whatever the file's size.

use std::collections::HashMap;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;

use hdf5_pure::{AttrValue, Dataset};

use crate::blosc::{BloscError, blosc_decompress};
use crate::ecf::{ECF_FILTER_ID, EcfError, ecf_decode};
use crate::geometry::Geometry;
use crate::sink::{EventSink, VecSink};

/// HDF5's id of the Blosc filter.
const BLOSC_FILTER_ID: u16 = 32001;
/// Rows read at a time.
const WINDOW: u64 = 1 << 16;
/// Largest chunk read, compressed or not: 256 MiB.
const MAX_CHUNK: u64 = 256 << 20;

/// Which dataset's layout an HDF5 recording has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hdf5Layout {
    /// DSEC: `events/{x,y,p,t}` and `t_offset`.
    Dsec,
    /// MVSEC: `davis/{left,right}/events`.
    Mvsec,
    /// Prophesee Metavision: `CD/events`.
    Metavision,
}

impl Hdf5Layout {
    /// The format's name in schema metadata: `hdf5_dsec`, `hdf5_mvsec`, `hdf5_metavision`.
    pub fn name(self) -> &'static str {
        match self {
            Hdf5Layout::Dsec => "hdf5_dsec",
            Hdf5Layout::Mvsec => "hdf5_mvsec",
            Hdf5Layout::Metavision => "hdf5_metavision",
        }
    }

    /// The sensor of the dataset, for a file that states none: DSEC's Prophesee Gen3.1
    /// 640x480, MVSEC's DAVIS346 346x260, Metavision's IMX636 1280x720.
    pub fn default_geometry(self) -> Geometry {
        let (width, height) = match self {
            Hdf5Layout::Dsec => (640, 480),
            Hdf5Layout::Mvsec => (346, 260),
            Hdf5Layout::Metavision => (1280, 720),
        };
        Geometry { width, height }
    }
}

/// Why an HDF5 recording could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Hdf5Error {
    /// Reading the file failed.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// The HDF5 container could not be read.
    #[error("cannot read the HDF5 container: {0}")]
    Container(String),
    /// The file is HDF5, but in none of the layouts evshm reads.
    #[error(
        "an HDF5 file with none of the event layouts evshm reads (DSEC events/{{x,y,p,t}}, \
         MVSEC davis/left/events, Metavision CD/events)"
    )]
    Layout,
    /// A dataset's type, shape or filters are not what the layout says.
    #[error("{dataset}: {what}")]
    Dataset {
        /// The dataset's path.
        dataset: String,
        /// What is wrong with it.
        what: String,
    },
    /// A Blosc chunk could not be decompressed.
    #[error(transparent)]
    Blosc(#[from] BloscError),
    /// An ECF chunk could not be decoded.
    #[error(transparent)]
    Ecf(#[from] EcfError),
}

fn container(error: hdf5_pure::Error) -> Hdf5Error {
    Hdf5Error::Container(error.to_string())
}

/// An HDF5 recording, open.
#[derive(Debug)]
pub struct Hdf5Recording {
    file: hdf5_pure::File,
    raw: std::fs::File,
    layout: Hdf5Layout,
    /// The events dataset (MVSEC, Metavision) or the `t` column (DSEC).
    events_path: String,
    geometry: Option<Geometry>,
    t_offset: i64,
    events: u64,
}

impl Hdf5Recording {
    /// Opens an HDF5 file and finds its layout.
    pub fn open(path: &Path) -> Result<Self, Hdf5Error> {
        let file = hdf5_pure::File::open(path).map_err(container)?;
        let raw = std::fs::File::open(path)?;
        let has = |name: &str| file.dataset(name).is_ok();
        let (layout, events_path) = if has("CD/events") {
            (Hdf5Layout::Metavision, "CD/events")
        } else if has("events/t") {
            (Hdf5Layout::Dsec, "events/t")
        } else if has("davis/left/events") {
            (Hdf5Layout::Mvsec, "davis/left/events")
        } else if has("davis/right/events") {
            (Hdf5Layout::Mvsec, "davis/right/events")
        } else {
            return Err(Hdf5Error::Layout);
        };
        let events_ds = file.dataset(events_path).map_err(container)?;
        let shape = events_ds.shape().map_err(container)?;
        let events = shape.first().copied().unwrap_or(0);
        let t_offset = match layout {
            Hdf5Layout::Dsec => match file.dataset("t_offset") {
                Ok(ds) => ds.read_i64().map_err(container)?.first().copied().unwrap_or(0),
                Err(_) => 0,
            },
            _ => 0,
        };
        let attrs = file.root().attrs().unwrap_or_default();
        let geometry = stated_geometry(&attrs);
        Ok(Self {
            file,
            raw,
            layout,
            events_path: events_path.to_owned(),
            geometry,
            t_offset,
            events,
        })
    }

    /// The layout.
    pub fn layout(&self) -> Hdf5Layout {
        self.layout
    }

    /// The sensor size the file states (Metavision's `geometry` attribute, or `width` and
    /// `height` attributes), if any.
    pub fn stated_geometry(&self) -> Option<Geometry> {
        self.geometry
    }

    /// Events in the file.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Decodes every event into `sink`, a window of rows at a time.
    pub fn decode<S: EventSink>(&self, sink: &mut S) -> Result<(), Hdf5Error> {
        self.decode_rows(0..self.events, sink)
    }

    /// Decodes the events of rows `rows` (clamped to the file's) into `sink`: a chunk of
    /// [`Hdf5Recording::chunks`], or any other run of rows.
    pub fn decode_rows<S: EventSink>(
        &self,
        rows: Range<u64>,
        sink: &mut S,
    ) -> Result<(), Hdf5Error> {
        let rows = rows.start.min(self.events)..rows.end.min(self.events);
        match self.layout {
            Hdf5Layout::Dsec => self.decode_dsec(rows, sink),
            Hdf5Layout::Mvsec => self.decode_mvsec(rows, sink),
            Hdf5Layout::Metavision => self.decode_metavision(rows, sink),
        }
    }

    /// Cuts the rows into chunks of at least `events` events (the last may hold fewer),
    /// each with a bound on its times, for serving windows. DSEC's `ms_to_idx` (the first
    /// row of each millisecond) gives chunks cut at millisecond boundaries and their bounds
    /// without reading an event; other layouts are read once to find each chunk's latest
    /// time.
    pub fn chunks(&self, events: u64) -> Result<Vec<Hdf5Chunk>, Hdf5Error> {
        let events = events.max(1);
        if self.layout == Hdf5Layout::Dsec
            && let Ok(index) = self.file.dataset("ms_to_idx")
        {
            let index = index.read_u64().map_err(container)?;
            return Ok(self.chunks_from_ms_index(&index, events));
        }
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < self.events {
            let end = (start + events).min(self.events);
            let mut bound = BoundSink::default();
            self.decode_rows(start..end, &mut bound)?;
            chunks.push(Hdf5Chunk { rows: start..end, time_bound: bound.0 });
            start = end;
        }
        Ok(chunks)
    }

    /// Chunks cut at the rows where milliseconds start: every row before `index[k]` has a
    /// time below `k` ms (after `t_offset`).
    fn chunks_from_ms_index(&self, index: &[u64], events: u64) -> Vec<Hdf5Chunk> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for (k, &row) in index.iter().enumerate() {
            let row = row.min(self.events);
            if row >= start + events {
                let time_bound = (k as i64 * 1000 - 1).saturating_add(self.t_offset);
                chunks.push(Hdf5Chunk { rows: start..row, time_bound });
                start = row;
            }
        }
        if start < self.events || chunks.is_empty() {
            // Past the index's last millisecond: no bound from it.
            chunks.push(Hdf5Chunk { rows: start..self.events, time_bound: i64::MAX });
        }
        chunks
    }

    fn column(&self, name: &str) -> Result<Column<'_>, Hdf5Error> {
        let ds = self.file.dataset(name).map_err(container)?;
        Column::new(name, ds, &self.raw)
    }

    fn decode_dsec<S: EventSink>(&self, rows: Range<u64>, sink: &mut S) -> Result<(), Hdf5Error> {
        let mut columns = [
            self.column("events/x")?,
            self.column("events/y")?,
            self.column("events/p")?,
            self.column("events/t")?,
        ];
        for column in &columns {
            if column.rows != self.events {
                return Err(Hdf5Error::Dataset {
                    dataset: column.name.clone(),
                    what: format!("{} rows where events/t has {}", column.rows, self.events),
                });
            }
        }
        let mut start = rows.start;
        while start < rows.end {
            let n = WINDOW.min(rows.end - start);
            let [x, y, p, t] = columns.each_mut().map(|c| c.rows(start, n));
            let (x, y, p, t) = (x?, y?, p?, t?);
            for i in 0..n as usize {
                let t = t.int(i).wrapping_add(self.t_offset);
                sink.event(t, x.int(i) as u16, y.int(i) as u16, u8::from(p.int(i) > 0));
            }
            start += n;
        }
        Ok(())
    }

    fn decode_mvsec<S: EventSink>(&self, rows: Range<u64>, sink: &mut S) -> Result<(), Hdf5Error> {
        let ds = self.file.dataset(&self.events_path).map_err(container)?;
        let shape = ds.shape().map_err(container)?;
        if shape.len() != 2 || shape[1] != 4 || ds.element_size().map_err(container)? != 8 {
            return Err(Hdf5Error::Dataset {
                dataset: self.events_path.clone(),
                what: "not N x 4 float64 rows (x, y, t, p)".into(),
            });
        }
        let mut start = rows.start;
        while start < rows.end {
            let n = WINDOW.min(rows.end - start);
            let bytes = ds.read_raw_rows(start, n).map_err(container)?;
            for row in bytes.chunks_exact(32) {
                let f = |k: usize| {
                    f64::from_le_bytes(row[8 * k..8 * k + 8].try_into().expect("8 bytes"))
                };
                let t = (f(2) * 1e6).round() as i64;
                sink.event(t, f(0) as u16, f(1) as u16, u8::from(f(3) > 0.0));
            }
            start += n;
        }
        Ok(())
    }

    fn decode_metavision<S: EventSink>(
        &self,
        rows: Range<u64>,
        sink: &mut S,
    ) -> Result<(), Hdf5Error> {
        let ds = self.file.dataset(&self.events_path).map_err(container)?;
        if ds.element_size().map_err(container)? != 16 {
            return Err(Hdf5Error::Dataset {
                dataset: self.events_path.clone(),
                what: "records are not 16 bytes (x u16, y u16, p i16, t i64)".into(),
            });
        }
        let pipeline: Vec<u16> = ds.filters();
        if pipeline == [ECF_FILTER_ID as u16] {
            return self.decode_ecf(&ds, rows, sink);
        }
        let mut column = Column::new(&self.events_path, ds, &self.raw)?;
        let mut start = rows.start;
        while start < rows.end {
            let n = WINDOW.min(rows.end - start);
            for r in column.rows(start, n)?.bytes.chunks_exact(16) {
                let u16_at = |at: usize| u16::from_le_bytes([r[at], r[at + 1]]);
                let t = i64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
                sink.event(t, u16_at(0), u16_at(2), u8::from(i16::from_le_bytes([r[4], r[5]]) > 0));
            }
            start += n;
        }
        Ok(())
    }

    /// Decodes the rows `rows` of `CD/events` compressed with ECF, from the chunks that
    /// hold them; HDF5 filters whole chunks, so the last one's events past the dataset's end
    /// are padding, never asked for.
    fn decode_ecf<S: EventSink>(
        &self,
        ds: &Dataset,
        rows: Range<u64>,
        sink: &mut S,
    ) -> Result<(), Hdf5Error> {
        let mut chunks = ds.chunks().map_err(container)?;
        chunks.sort_by_key(|c| c.offset.first().copied().unwrap_or(0));
        let chunk_rows = ds.chunk_shape().map_err(container)?.and_then(|s| s.first().copied());
        let chunk_rows = chunk_rows.unwrap_or(u64::MAX);
        for chunk in chunks {
            let first = chunk.offset.first().copied().unwrap_or(0);
            if first >= rows.end || first.saturating_add(chunk_rows) <= rows.start {
                continue;
            }
            if chunk.filter_mask & 1 != 0 {
                return Err(Hdf5Error::Dataset {
                    dataset: self.events_path.clone(),
                    what: "a chunk stored without its ECF filter".into(),
                });
            }
            let raw = read_chunk(&self.raw, &chunk, &self.events_path)?;
            let mut events = VecSink::default();
            ecf_decode(&raw, &mut events)?;
            for (row, e) in (first..).zip(&events.events) {
                if rows.contains(&row) {
                    sink.event(e.t, e.x, e.y, e.p);
                }
            }
        }
        Ok(())
    }
}

/// A run of rows of an HDF5 recording, decoded on its own
/// ([`Hdf5Recording::decode_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hdf5Chunk {
    /// Its rows.
    pub rows: Range<u64>,
    /// No event of the chunk has a later time (`i64::MIN` if it has none; `i64::MAX`
    /// where the file's time index says nothing).
    pub time_bound: i64,
}

/// Keeps the latest time of the events it is given.
struct BoundSink(i64);

impl Default for BoundSink {
    fn default() -> Self {
        Self(i64::MIN)
    }
}

impl EventSink for BoundSink {
    fn event(&mut self, t: i64, _x: u16, _y: u16, _p: u8) {
        self.0 = self.0.max(t);
    }
}

/// The geometry in a file's root attributes: `geometry` as `WxH`, or `width` and `height`.
fn stated_geometry(attrs: &HashMap<String, AttrValue>) -> Option<Geometry> {
    let number = |name: &str| match attrs.get(name)? {
        AttrValue::U16(v) => Some(u32::from(*v)),
        AttrValue::U32(v) => Some(*v),
        AttrValue::I32(v) => u32::try_from(*v).ok(),
        AttrValue::I64(v) => u32::try_from(*v).ok(),
        AttrValue::U64(v) => u32::try_from(*v).ok(),
        AttrValue::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let geometry = match attrs.get("geometry") {
        Some(AttrValue::String(s)) => {
            let (w, h) = s.split_once('x')?;
            Geometry { width: w.trim().parse().ok()?, height: h.trim().parse().ok()? }
        }
        _ => Geometry { width: number("width")?, height: number("height")? },
    };
    (geometry.width > 0 && geometry.height > 0).then_some(geometry)
}

/// Reads a chunk's stored bytes at the offset the chunk index gives.
fn read_chunk(
    raw: &std::fs::File,
    chunk: &hdf5_pure::Chunk,
    name: &str,
) -> Result<Vec<u8>, Hdf5Error> {
    if chunk.storage_size > MAX_CHUNK {
        return Err(Hdf5Error::Dataset {
            dataset: name.into(),
            what: "a chunk over 256 MiB".into(),
        });
    }
    let mut bytes = vec![0u8; chunk.storage_size as usize];
    raw.read_exact_at(&mut bytes, chunk.address)?;
    Ok(bytes)
}

/// A window of a column's rows, as little-endian integers of its element size.
struct Rows {
    bytes: Vec<u8>,
    size: usize,
}

impl Rows {
    /// Element `i`, unsigned for 1, 2 and 4 bytes, signed for 8.
    fn int(&self, i: usize) -> i64 {
        let b = &self.bytes[i * self.size..(i + 1) * self.size];
        match self.size {
            1 => i64::from(b[0]),
            2 => i64::from(u16::from_le_bytes([b[0], b[1]])),
            4 => i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            _ => i64::from_le_bytes(b.try_into().expect("8 bytes")),
        }
    }
}

/// A one-dimensional dataset read a window of rows at a time; chunks compressed with
/// Blosc are decompressed here, the last one kept for the next window.
struct Column<'a> {
    name: String,
    ds: Dataset,
    raw: &'a std::fs::File,
    rows: u64,
    size: usize,
    /// With Blosc: rows per chunk, and the chunks by their first row.
    blosc: Option<(u64, HashMap<u64, hdf5_pure::Chunk>)>,
    cached: Option<(u64, Vec<u8>)>,
}

impl<'a> Column<'a> {
    fn new(name: &str, ds: Dataset, raw: &'a std::fs::File) -> Result<Self, Hdf5Error> {
        let bad = |what: &str| Hdf5Error::Dataset { dataset: name.into(), what: what.into() };
        let shape = ds.shape().map_err(container)?;
        let size = ds.element_size().map_err(container)? as usize;
        if shape.is_empty() || !matches!(size, 1 | 2 | 4 | 8 | 16) {
            return Err(bad("not a column of 1, 2, 4 or 8-byte numbers"));
        }
        let filters = ds.filters();
        let blosc = if filters.contains(&BLOSC_FILTER_ID) {
            if filters != [BLOSC_FILTER_ID] {
                return Err(bad("Blosc among other filters"));
            }
            let chunk_rows = ds.chunk_shape().map_err(container)?.and_then(|s| s.first().copied());
            let chunk_rows =
                chunk_rows.filter(|&r| r > 0).ok_or_else(|| bad("Blosc without chunks"))?;
            let chunks = ds.chunks().map_err(container)?;
            Some((chunk_rows, chunks.into_iter().map(|c| (c.offset[0], c)).collect()))
        } else {
            None
        };
        Ok(Self { name: name.into(), ds, raw, rows: shape[0], size, blosc, cached: None })
    }

    /// Rows `start..start + n`.
    fn rows(&mut self, start: u64, n: u64) -> Result<Rows, Hdf5Error> {
        let Some((chunk_rows, _)) = &self.blosc else {
            let bytes = self.ds.read_raw_rows(start, n).map_err(container)?;
            return Ok(Rows { bytes, size: self.size });
        };
        let chunk_rows = *chunk_rows;
        let mut bytes = Vec::with_capacity(n as usize * self.size);
        let mut row = start;
        while row < start + n {
            let first = row / chunk_rows * chunk_rows;
            let (size, name) = (self.size, self.name.clone());
            let from = ((row - first) as usize) * size;
            let to = (((start + n).min(first + chunk_rows) - first) as usize) * size;
            let chunk = self.chunk(first, chunk_rows)?;
            let part = chunk.get(from..to).ok_or_else(|| Hdf5Error::Dataset {
                dataset: name,
                what: "a chunk shorter than its rows".into(),
            })?;
            bytes.extend_from_slice(part);
            row = first + chunk_rows;
        }
        Ok(Rows { bytes, size: self.size })
    }

    /// The decompressed chunk whose first row is `first`.
    fn chunk(&mut self, first: u64, chunk_rows: u64) -> Result<&[u8], Hdf5Error> {
        if self.cached.as_ref().is_none_or(|(at, _)| *at != first) {
            let (_, chunks) = self.blosc.as_ref().expect("a Blosc column");
            let chunk = chunks.get(&first).ok_or_else(|| Hdf5Error::Dataset {
                dataset: self.name.clone(),
                what: format!("no chunk holds row {first}"),
            })?;
            let stored = read_chunk(self.raw, chunk, &self.name)?;
            // The chunk's size from its shape, never more than the largest chunk read.
            let len = (chunk_rows.saturating_mul(self.size as u64)).min(MAX_CHUNK) as usize;
            let bytes =
                if chunk.filter_mask & 1 != 0 { stored } else { blosc_decompress(&stored, len)? };
            self.cached = Some((first, bytes));
        }
        Ok(&self.cached.as_ref().expect("just filled").1)
    }
}
