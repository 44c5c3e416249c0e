//! Cross-process tests: a real `evshmd` child per test, real clients (this process, the
//! `evshm` CLI, the Python client), real recordings where `../shared/data/real` exists.

mod util;

mod architecture;

#[cfg(feature = "flight")]
mod flight;
mod lifecycle;
mod memory;
mod readme;
mod robustness;
mod security;
mod serving;
mod windows;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use evshm::ClientError;
use evshm::ErrorCode;
use evshm_formats::synth::SynthConfig;
use util::real::{Row, read_ipc_file, real_data, rows};
use util::{Daemon, TempDir, arenas_of, evshm_cli, python, synthetic, write_evt3};

/// Asserts that every buffer of every column lies inside its chunk's stream, and every
/// stream inside the mapping of an arena of the recording.
fn assert_zero_copy(recording: &evshm::Recording) {
    let arenas: Vec<std::ops::Range<usize>> = (recording.arenas())
        .map(|arena| arena.as_ptr_range())
        .map(|r| r.start as usize..r.end as usize)
        .collect();
    assert_eq!(recording.batches().len(), recording.streams().count(), "a batch per chunk");
    for (batch, stream) in recording.batches().iter().zip(recording.streams()) {
        let stream = stream.as_ptr_range();
        let (start, end) = (stream.start as usize, stream.end as usize);
        assert!(
            arenas.iter().any(|arena| arena.start <= start && end <= arena.end),
            "stream {start:#x}..{end:#x} is outside the arenas' mappings {arenas:x?}"
        );
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            let data = column.to_data();
            assert!(!data.buffers().is_empty());
            for buffer in data.buffers() {
                let at = buffer.as_ptr() as usize;
                assert!(
                    start <= at && at + buffer.len() <= end,
                    "column {} buffer at {at:#x} is outside its stream {start:#x}..{end:#x}",
                    field.name()
                );
            }
        }
    }
}

fn daemon_code(error: ClientError) -> ErrorCode {
    match error {
        ClientError::Daemon { code, .. } => code,
        other => panic!("expected an error reply, got {other}"),
    }
}

/// A size field (`VmRSS:`, `VmHWM:`...) of `/proc/PID/status`, in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}
