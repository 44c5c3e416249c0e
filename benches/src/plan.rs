//! The plan the driver (`benches/run.py`) writes for one run, shared by every bench.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable naming the plan file.
pub const PLAN_VAR: &str = "EVSHM_BENCH_PLAN";

/// What to measure and where: one JSON file per driver run.
#[derive(Debug, Clone, Deserialize)]
pub struct Plan {
    /// evshmd's control socket.
    pub socket: PathBuf,
    /// The root evshmd serves (recordings' paths are relative to it).
    pub root: PathBuf,
    /// The byte-copy server's socket (`evshm-bytecopy`).
    pub bytecopy_socket: PathBuf,
    /// Where each bench writes its JSON results.
    pub out_dir: PathBuf,
    /// Short run: fewer sizes, shorter measurement.
    #[serde(default)]
    pub quick: bool,
    /// Criterion warm-up per benchmark, in seconds.
    pub warm_up_s: f64,
    /// Criterion measurement time per benchmark, in seconds.
    pub measure_s: f64,
    /// The recordings of the attach benchmark, smallest first.
    pub attach: Vec<Recording>,
    /// One recording per format for the decoders' bench and the cold open.
    #[serde(default)]
    pub decode: Vec<DecodeInput>,
}

/// A recording served by evshmd.
#[derive(Debug, Clone, Deserialize)]
pub struct Recording {
    /// Label for tables (`"1 MB"`).
    pub label: String,
    /// Path relative to evshmd's root.
    pub path: String,
    /// Number of events.
    pub events: u64,
}

/// A recording file for the decoders' bench.
#[derive(Debug, Clone, Deserialize)]
pub struct DecodeInput {
    /// `dat`, `evt2` or `evt3`.
    pub format: String,
    /// The file.
    pub file: PathBuf,
    /// Number of events in it.
    pub events: u64,
}

impl Plan {
    /// The plan named by `$EVSHM_BENCH_PLAN`; `Ok(None)` when the variable is unset
    /// (the bench was started outside `benches/run.sh`).
    pub fn from_env() -> anyhow::Result<Option<Plan>> {
        let Some(path) = std::env::var_os(PLAN_VAR) else {
            return Ok(None);
        };
        Plan::load(Path::new(&path)).map(Some)
    }

    /// Reads a plan file.
    pub fn load(path: &Path) -> anyhow::Result<Plan> {
        let text = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read plan {}: {e}", path.display()))?;
        Ok(serde_json::from_slice(&text)?)
    }

    /// Writes `value` as pretty JSON to `out_dir/name`.
    pub fn write_result(&self, name: &str, value: &serde_json::Value) -> anyhow::Result<()> {
        let path = self.out_dir.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(value)?)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    }
}
