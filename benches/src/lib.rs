//! Benchmarks of evshm, and the pieces they share.
//!
//! `benches/run.sh` is the one entry point: it builds release, generates recordings,
//! starts `evshmd` and the byte-copy server, runs the criterion benches of this crate
//! (`benches/attach.rs`, `benches/decode.rs`), the helper binaries (`evshm-load`) and the
//! Python scripts of `benches/python/`, and writes `docs/BENCHMARKS.md`. The driver hands
//! every bench the same [`Plan`] (a JSON file named by `$EVSHM_BENCH_PLAN`), so Rust and
//! Python measure the same recordings through the same daemon in one run.
//!
//! Nothing here runs under `cargo test`: criterion benches are built by `cargo bench`
//! only, and the binaries do nothing without a plan or a socket.

pub mod bytecopy;
pub mod plan;
pub mod summary;

pub use plan::Plan;
pub use summary::{Summary, timed};
