//! What the daemon's unit tests share: a temporary directory, synthetic recordings, and a
//! `Daemon` over them with arenas in its own directory (no socket).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use evshm_formats::ChunkLimits;
use evshm_formats::synth::{Synth, SynthConfig};

use crate::access::AccessPolicy;
use crate::arena::Arenas;
use crate::budget::Budget;
use crate::instance::InstanceId;
use crate::roots::Roots;
use crate::state::{Daemon, Settings};

pub use crate::temp_dir::TempDir;

/// The events of a synthetic recording of `events` events on a 1280x720 sensor.
pub fn synthetic(events: u64) -> Synth {
    Synth::new(SynthConfig::events(events))
}

/// Writes the EVT3 recording of [`synthetic`]`(events)` to `path`.
pub fn write_evt3(path: &Path, events: u64) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    evshm_formats::synth::write_evt3(SynthConfig::events(events), file).unwrap();
}

/// A daemon serving `dir/root`, arenas in `dir/shm`, recordings in chunks of about
/// `chunk_events`, with a budget of `budget` bytes.
pub fn daemon(dir: &TempDir, chunk_events: u64, budget: u64) -> Arc<Daemon> {
    let (root, shm) = (dir.0.join("root"), dir.0.join("shm"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&shm).unwrap();
    let settings = Settings {
        max_leases: 16,
        max_connections: 16,
        frame_timeout: Duration::from_secs(5),
        chunk_limits: ChunkLimits::events(chunk_events),
        read_ahead: 0,
        decode_threads: 2,
        provision: 0,
        idle_release: Duration::from_secs(3600),
    };
    Daemon::new(
        Roots::new(&[root]).unwrap(),
        Arenas::new(&shm, &InstanceId::random().unwrap(), None, false, 1 << 26, u64::MAX),
        Budget::new(budget, Duration::ZERO),
        AccessPolicy::default(),
        settings,
    )
}

/// A recording of `events` events written to `dir`, decoded whole into an extent of
/// `arenas` (what evshmd does on a first open of a one-chunk recording).
pub fn decoded_chunk(
    dir: &TempDir,
    arenas: &Arc<Arenas>,
    events: u64,
) -> crate::ingest::DecodedChunk {
    use crate::file::RecordingFile;
    use crate::ingest::ingest_chunk;
    let path = dir.0.join(format!("decoded-{events}.raw"));
    write_evt3(&path, events);
    let file = RecordingFile::open(&path).unwrap();
    let detected = file.detect().unwrap();
    let mut indexer = evshm_formats::Indexer::new(detected.format, ChunkLimits::events(u64::MAX));
    file.read_range(detected.data_offset as u64, u64::MAX, |bytes| indexer.feed(bytes)).unwrap();
    let chunks = indexer.finish();
    let place = |len| {
        let extent = arenas.reserve(len).unwrap().unwrap();
        extent.back().unwrap();
        Ok((extent, ()))
    };
    ingest_chunk(&file, "test", &detected, &chunks[0], place).unwrap()
}
