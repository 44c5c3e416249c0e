//! evshmd: decodes event-camera recordings once into Arrow IPC streams in POSIX shared
//! memory, and tells clients over a Unix socket where they are.
//!
//! The binary wires these modules together. The public ones are what the binary, the
//! benches and the tests drive directly; the rest is the daemon's inside (ARCHITECTURE.md
//! at the repository's root maps it):
//!
//! - [`roots`]: which files may be served, and path confinement;
//! - [`access`]: who may connect and be served (socket group, peer credentials);
//! - [`file`](mod@file): a recording file opened once per version, safely, and read through that;
//! - [`ingest`]: a chunk decoded into its extent;
//! - [`arena`]: the shared memory: arenas mapped once, extents in them;
//! - [`provision`]: memory made ready ahead of need, and given back when idle;
//! - [`budget`]: the memory budget;
//! - [`instance`]: one daemon per socket, and the clean-up of dead instances' arenas;
//! - [`limits`]: the descriptor limit, and how many connections it allows;
//! - [`state`]: what every connection shares, and the daemon's settings;
//! - [`server`]: the listening socket;
//! - `flight` (feature `flight`, on by default): the Arrow Flight service (`--flight`).
//!
//! Inside: `session` (one connection: framing, hello, dispatch, leases), `wire` (results
//! and errors as protocol replies), `open` (the open pipeline), `recording` (a
//! recording's chunk index), `cache` (resident chunks), `window` and `times` (which
//! chunks and rows answer a window), `ipc` (the layout of a table's Arrow IPC stream),
//! `listing` and `stats`.

pub mod access;
pub mod arena;
pub mod budget;
mod cache;
pub mod file;
#[cfg(feature = "flight")]
pub mod flight;
mod framing;
pub mod ingest;
mod ingest_error;
pub mod instance;
mod ipc;
pub mod limits;
mod listing;
mod open;
pub mod provision;
mod recording;
pub mod roots;
pub mod server;
mod session;
pub mod state;
mod stats;
#[cfg(test)]
mod temp_dir;
#[cfg(test)]
mod testing;
mod times;
mod window;
mod wire;
