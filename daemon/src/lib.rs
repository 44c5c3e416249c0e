//! evshmd: decodes event-camera recordings once into Arrow IPC streams in POSIX shared
//! memory, and hands their names to clients over a Unix socket.
//!
//! The binary wires these modules together. The public ones are what the binary, the
//! benches and the tests drive directly; the rest is the daemon's inside (ARCHITECTURE.md
//! at the repository's root maps it):
//!
//! - [`roots`]: which files may be served, and path confinement;
//! - [`access`]: who may connect and be served (socket group, peer credentials);
//! - [`file`](mod@file): a recording file opened once per version, safely, and read through that;
//! - [`ingest`]: a chunk decoded into its segments;
//! - [`segment`]: creating, sizing, filling and unlinking shared-memory segments;
//! - [`spares`]: segments made ahead of need, so that cold opens find memory in place;
//! - [`budget`]: the memory budget;
//! - [`instance`]: one daemon per socket, and the clean-up of dead instances' segments;
//! - [`limits`]: the descriptor limit, and how many connections it allows;
//! - [`state`]: what every connection shares, and the daemon's settings;
//! - [`server`]: the listening socket;
//! - `flight` (feature `flight`, on by default): the Arrow Flight service (`--flight`).
//!
//! Inside: `session` (one connection: framing, hello, dispatch, leases), `wire` (results
//! and errors as protocol replies), `open` (the open pipeline), `recording` (a
//! recording's chunk index), `cache` (resident chunks), `window` and `times` (which
//! chunks and rows answer a window), `ipc` (the layout of a segment's Arrow IPC stream),
//! `listing` and `stats`.

pub mod access;
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
mod recording;
pub mod roots;
pub mod segment;
pub mod server;
mod session;
pub mod spares;
pub mod state;
mod stats;
#[cfg(test)]
mod testing;
mod times;
mod window;
mod wire;
