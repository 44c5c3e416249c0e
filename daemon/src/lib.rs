//! evshmd: decodes event-camera recordings once into Arrow IPC streams in POSIX shared
//! memory, and hands their names to clients over a Unix socket.
//!
//! The binary wires these modules together; they are a library so that benches and tests
//! can drive the pieces directly:
//!
//! - [`roots`]: which files may be served, and path confinement;
//! - [`access`]: who may connect and be served (socket group, peer credentials);
//! - [`recording`]: a recording's chunk index, built once per version of the file;
//! - [`ingest`]: the index pass, and a chunk decoded into its published segments;
//! - [`ipc`]: the exact layout of the Arrow IPC stream in a segment;
//! - [`times`] and [`window`]: which chunks and rows answer a time window;
//! - [`chunks`]: chunks made resident, in parallel and ahead of forward readers;
//! - [`segment`]: creating, sizing, filling and unlinking shared-memory segments;
//! - [`instance`]: one daemon per socket, and the clean-up of dead instances' segments;
//! - [`cache`]: resident chunks, decoded once however many ask at once;
//! - [`budget`]: the memory budget, and eviction of unleased chunks;
//! - [`server`], `session` and `framing`: the socket, connections and the protocol.

pub mod access;
pub mod budget;
pub mod cache;
pub mod chunks;
mod framing;
pub mod ingest;
pub mod instance;
pub mod ipc;
pub mod recording;
pub mod roots;
pub mod segment;
pub mod server;
mod session;
pub mod stats;
pub mod times;
pub mod window;
