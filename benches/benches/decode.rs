//! The decoders' bench: evshm-formats on each format, from memory, single thread: the
//! index pass that counts the events to size an extent, the decoding pass into columns
//! already in memory, the same into fresh memory (as evshmd writes into pages no chunk
//! used before), and into the touched columns of an arena's extent through a sink that
//! writes as evshmd's does.
//!
//! With the driver's plan (`benches/run.sh`) it decodes the plan's files, the very files
//! the peers (expelliarmus, `evt3`) decode in `benches/python/peers.py`, and writes
//! `decode_rust.json`; without one it decodes synthetic recordings made in memory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use evshm_benches::plan::{DecodeInput, Plan};
use evshm_benches::{Summary, timed};
use evshm_formats::synth::{Synth, SynthConfig};
use evshm_formats::{
    ChunkLimits, ColumnSink, CountingSink, DatEncoder, Decoder, EventSink, Evt2Encoder,
    Evt3Encoder, Format, Geometry, GeometryFilter, Indexer, Slots,
};
use evshmd::arena::{Arenas, Extent};
use evshmd::instance::InstanceId;
use serde_json::json;

/// Bytes fed to the decoder at a time, as evshmd reads a file.
const CHUNK: usize = 1 << 20;

/// Events of the synthetic recordings used without a plan.
const SYNTH_EVENTS: u64 = 4_000_000;

struct Input {
    format: Format,
    /// The geometry the file states, which evshmd filters events by.
    geometry: Option<Geometry>,
    /// The event data (header removed).
    data: Vec<u8>,
    events: u64,
}

fn main() {
    let plan = match Plan::from_env() {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("decode: {e:#}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(plan.as_ref()) {
        eprintln!("decode: {e:#}");
        std::process::exit(1);
    }
}

fn run(plan: Option<&Plan>) -> anyhow::Result<()> {
    let inputs = match plan {
        Some(plan) if !plan.decode.is_empty() => plan
            .decode
            .iter()
            .map(|d| {
                let file = std::fs::read(&d.file)?;
                let ext = d.file.extension().and_then(|e| e.to_str());
                let detected = evshm_formats::detect(&file, ext)?;
                Ok(Input {
                    format: detected.format,
                    geometry: detected.stated_geometry(),
                    data: file[detected.data_offset..].to_vec(),
                    events: d.events,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        _ => synthetic()?,
    };
    let mut criterion = Criterion::default();
    if let Some(plan) = plan {
        criterion = criterion
            .warm_up_time(Duration::from_secs_f64(plan.warm_up_s))
            .measurement_time(Duration::from_secs_f64(plan.measure_s));
    }
    let mut criterion = criterion.configure_from_args();
    let mut results = BTreeMap::new();
    let arenas = new_arenas()?;
    for input in &inputs {
        let name = input.format.name();
        let mut counter = CountingSink::default();
        decode(input, &mut counter);
        anyhow::ensure!(
            counter.events == input.events,
            "{name}: decoded {} events, expected {}",
            counter.events,
            input.events
        );
        let mut group = criterion.benchmark_group(format!("decode/{name}"));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .throughput(Throughput::Elements(input.events));
        // evshmd's first pass: the index, which counts the events to size the extent.
        let count = bench(&mut group, "count", || {
            let mut indexer = Indexer::new(input.format, ChunkLimits::events(u64::MAX));
            input.data.chunks(CHUNK).for_each(|chunk| indexer.feed(chunk));
            indexer.finish()
        });
        // The second pass, into columns whose pages are already mapped...
        let mut warm = ColumnSink::with_capacity(input.events as usize);
        let decode_warm = bench(&mut group, "decode", || {
            warm.clear();
            decode(input, &mut warm);
        });
        // ...and into fresh memory, as evshmd writes into pages no chunk used before:
        // every page is faulted in on first write.
        let decode_fresh = bench(&mut group, "decode_fresh", || {
            let mut fresh = ColumnSink::with_capacity(input.events as usize);
            decode(input, &mut fresh);
            fresh
        });
        // ...and into the columns of an extent of an arena made and mapped as evshmd makes
        // them, through its geometry filter and a sink that writes as evshmd's does, every
        // page touched first: the daemon's decode into provisioned memory.
        let mut mapped = MappedColumns::new(&arenas, input.events as usize)?;
        let decode_mapped = bench(&mut group, "decode_mapped", || {
            let mut sink = GeometryFilter::new(mapped.sink(), input.geometry);
            decode(input, &mut sink);
            assert_eq!(sink.inner.len as u64 + sink.dropped, input.events, "{name}");
        });
        group.finish();
        let rate = |s: &Option<Summary>| s.map(|s| input.events as f64 / s.p50_us);
        results.insert(
            name,
            json!({
                "events": input.events,
                "bytes": input.data.len(),
                "count": { "time": count, "mev_per_s": rate(&count) },
                "decode": { "time": decode_warm, "mev_per_s": rate(&decode_warm) },
                "decode_fresh": { "time": decode_fresh, "mev_per_s": rate(&decode_fresh) },
                "decode_mapped": { "time": decode_mapped, "mev_per_s": rate(&decode_mapped) },
            }),
        );
    }
    let mut ingest = BTreeMap::new();
    if let Some(plan) = plan {
        for input in &plan.decode {
            ingest.insert(input.format.as_str(), bench_ingest(&mut criterion, input)?);
        }
    }
    criterion.final_summary();
    if let Some(plan) = plan {
        plan.write_result("decode_rust.json", &json!({ "decoders": results, "ingest": ingest }))?;
    }
    Ok(())
}

/// Arenas in /dev/shm, as evshmd makes them by default, unlinked when dropped.
fn new_arenas() -> anyhow::Result<Arc<Arenas>> {
    let instance = InstanceId::random()?;
    Ok(Arenas::new(Path::new("/dev/shm"), &instance, None, false, 4 << 30, u64::MAX))
}

/// An extent of `len` bytes of `arenas`, its pages allocated.
fn extent(arenas: &Arc<Arenas>, len: u64) -> Result<Extent, evshmd::ingest::IngestError> {
    let extent = arenas.reserve(len)?.expect("arenas without a limit have room");
    extent.back()?;
    Ok(extent)
}

/// What evshmd does on the first open of a file read as one chunk: the index pass, then
/// the decode into an extent of `arenas`.
fn ingest_whole(
    file: &Path,
    arenas: &Arc<Arenas>,
) -> Result<evshmd::ingest::DecodedChunk, evshmd::ingest::IngestError> {
    let file = evshmd::file::RecordingFile::open(file)?;
    let detected = file.detect()?;
    let mut indexer = Indexer::new(detected.format, ChunkLimits::events(u64::MAX));
    let data = detected.data_offset as u64;
    file.read_range(data, u64::MAX, |bytes| indexer.feed(bytes))?;
    let chunks = indexer.finish();
    let place = |len| Ok((extent(arenas, len)?, ()));
    evshmd::ingest::ingest_chunk(&file, "bench", &detected, &chunks[0], place)
}

/// evshmd's ingest of one file, run in-process through the daemon's library, into pages
/// provisioned (an extent freed by the previous run, as after an eviction) and into fresh
/// ones (a new arena each run), and its parts beyond decoding: reading the file,
/// allocating an extent's pages (`fallocate`), then also faulting every page in. Arenas
/// are created in /dev/shm by this process and unlinked when dropped (untimed).
fn bench_ingest(
    criterion: &mut Criterion,
    input: &DecodeInput,
) -> anyhow::Result<serde_json::Value> {
    let arenas = new_arenas()?;
    let len = ingest_whole(&input.file, &arenas)?.extent.len();
    let mut group = criterion.benchmark_group(format!("ingest/{}", input.format));
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    let whole = bench(&mut group, "ingest", || ingest_whole(&input.file, &arenas).expect("ingest"));
    let fresh = bench(&mut group, "ingest_fresh", || {
        let arenas = new_arenas().expect("arenas");
        (ingest_whole(&input.file, &arenas).expect("ingest"), arenas)
    });
    let read = bench(&mut group, "read_file", || {
        let mut file = std::fs::File::open(&input.file).expect("open");
        let mut buffer = vec![0u8; CHUNK];
        while file.read(&mut buffer).expect("read") > 0 {}
    });
    let allocate = bench(&mut group, "allocate", || {
        let arenas = new_arenas().expect("arenas");
        (extent(&arenas, len).expect("extent"), arenas)
    });
    let fill = bench(&mut group, "allocate_fault", || {
        let arenas = new_arenas().expect("arenas");
        let mut extent = extent(&arenas, len).expect("extent");
        extent.bytes_mut().iter_mut().step_by(4096).for_each(|byte| *byte = 1);
        (extent, arenas)
    });
    // The same pages faulted in by one MAP_POPULATE instead of a fault per page, on a
    // file of the same size that this bench creates and allocates like an extent.
    let scratch = arenas.dir().join(format!("{}populate", arenas.prefix()));
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&scratch)?;
    let _remove = RemoveOnDrop(&scratch);
    rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len)?;
    let populate = bench(&mut group, "map_populate_unmap", || {
        // SAFETY: this process created the file and nothing else writes or truncates it.
        let mut map =
            unsafe { memmap2::MmapOptions::new().populate().map_mut(&file) }.expect("map");
        map.iter_mut().step_by(4096).for_each(|byte| *byte = 1);
    });
    let faults = bench(&mut group, "map_fault_unmap", || {
        // SAFETY: as above.
        let mut map = unsafe { memmap2::MmapOptions::new().map_mut(&file) }.expect("map");
        map.iter_mut().step_by(4096).for_each(|byte| *byte = 1);
    });
    group.finish();
    Ok(json!({
        "extent_bytes": len,
        "ingest": whole,
        "ingest_fresh": fresh,
        "read_file": read,
        "allocate": allocate,
        "allocate_fault": fill,
        "map_fault_unmap": faults,
        "map_populate_unmap": populate,
    }))
}

/// Benchmarks `op` as `id` in `group`, timing every run alone (what it returns is
/// dropped untimed); the percentiles of all runs but the first.
fn bench<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    mut op: impl FnMut() -> T,
) -> Option<Summary> {
    let mut samples = Vec::new();
    group.bench_function(id, |b| b.iter_custom(|iters| timed(iters, &mut samples, &mut op)));
    Summary::of(samples.get(1..).unwrap_or_default())
}

fn decode(input: &Input, sink: &mut impl EventSink) {
    let mut decoder = Decoder::new(input.format);
    for chunk in input.data.chunks(CHUNK) {
        decoder.feed(chunk, sink);
    }
    decoder.finish(sink);
}

/// The event columns `t`, `x`, `y`, `p` of `events` rows in one extent of an arena made
/// and mapped as evshmd makes them, each column 64-byte aligned, every page touched.
struct MappedColumns {
    extent: Extent,
    events: usize,
}

/// Bytes per row of each event column.
const COLUMN_WIDTHS: [usize; 4] = [8, 2, 2, 1];

impl MappedColumns {
    fn new(arenas: &Arc<Arenas>, events: usize) -> anyhow::Result<Self> {
        let len = COLUMN_WIDTHS.iter().map(|width| padded(width * events)).sum::<usize>();
        let mut extent = extent(arenas, len as u64)?;
        extent.bytes_mut().iter_mut().step_by(4096).for_each(|byte| *byte = 0);
        Ok(Self { extent, events })
    }

    /// An empty sink over the columns.
    fn sink(&mut self) -> ColumnsSink<'_> {
        let n = self.events;
        let (t, rest) = self.extent.bytes_mut().split_at_mut(padded(8 * n));
        let (x, rest) = rest.split_at_mut(padded(2 * n));
        let (y, p) = rest.split_at_mut(padded(2 * n));
        let (t, x, y, p) = (cast_mut(t), cast_mut(x), cast_mut(y), cast_mut(p));
        ColumnsSink { t: &mut t[..n], x: &mut x[..n], y: &mut y[..n], p: &mut p[..n], len: 0 }
    }
}

/// `len` rounded up to the 64-byte alignment of Arrow IPC buffers.
fn padded(len: usize) -> usize {
    len.div_ceil(64) * 64
}

/// Views `bytes` as a slice of `T`, which must be aligned.
fn cast_mut<T: Primitive>(bytes: &mut [u8]) -> &mut [T] {
    // SAFETY: `T` is a primitive integer, valid for every bit pattern; `align_to_mut`
    // only returns a middle part that is correctly aligned for `T`.
    let (prefix, values, _) = unsafe { bytes.align_to_mut::<T>() };
    assert!(prefix.is_empty(), "column misaligned");
    values
}

/// Integers that any bit pattern is a valid value of.
trait Primitive {}
impl Primitive for i64 {}
impl Primitive for i16 {}
impl Primitive for i8 {}

/// Writes events into mapped columns as evshmd's sink (`daemon/src/ingest.rs`) does:
/// through slots where the decoder takes them, one by one otherwise.
struct ColumnsSink<'a> {
    t: &'a mut [i64],
    x: &'a mut [i16],
    y: &'a mut [i16],
    p: &'a mut [i8],
    len: usize,
}

impl EventSink for ColumnsSink<'_> {
    #[inline]
    fn event(&mut self, t: i64, x: u16, y: u16, p: u8) {
        let i = self.len;
        self.len += 1;
        if let (Some(ct), Some(cx), Some(cy), Some(cp)) =
            (self.t.get_mut(i), self.x.get_mut(i), self.y.get_mut(i), self.p.get_mut(i))
        {
            (*ct, *cx, *cy, *cp) = (t, x as i16, y as i16, p as i8);
        }
    }

    #[inline]
    fn slots(&mut self) -> Option<Slots<'_>> {
        let n = self.len;
        let t = self.t.get_mut(n..)?;
        Some(Slots::new(t, &mut self.x[n..], &mut self.y[n..], &mut self.p[n..]))
    }

    #[inline]
    fn commit(&mut self, n: usize) {
        self.len += n;
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Synthetic recordings of every format, made in memory.
fn synthetic() -> anyhow::Result<Vec<Input>> {
    let geometry = Geometry { width: 1280, height: 720 };
    let config = SynthConfig { geometry, events: SYNTH_EVENTS, ..SynthConfig::default() };
    let mut inputs = Vec::new();
    for format in [Format::Dat, Format::Evt2, Format::Evt3] {
        let mut file = Vec::new();
        match format {
            Format::Dat => {
                let mut encoder = DatEncoder::new(&mut file, geometry)?;
                Synth::new(config).try_for_each(|e| encoder.push(&e))?;
                encoder.finish()?;
            }
            Format::Evt2 => {
                let mut encoder = Evt2Encoder::new(&mut file, geometry)?;
                Synth::new(config).try_for_each(|e| encoder.push(&e))?;
                encoder.finish()?;
            }
            _ => {
                let mut encoder = Evt3Encoder::new(&mut file, geometry)?;
                Synth::new(config).try_for_each(|e| encoder.push(&e))?;
                encoder.finish()?;
            }
        }
        let detected = evshm_formats::detect(&file, None)?;
        inputs.push(Input {
            format: detected.format,
            geometry: detected.stated_geometry(),
            data: file[detected.data_offset..].to_vec(),
            events: SYNTH_EVENTS,
        });
    }
    Ok(inputs)
}
