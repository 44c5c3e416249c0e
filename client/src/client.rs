//! The connection to evshmd: connecting, listing, opening recordings, counters.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use evshm_protocol::{
    EvictReply, HelloReply, ListReply, OpenReply, PROTOCOL_VERSION, RecordingEntry, Request,
    StatsReply, Table, Window, default_socket_path,
};
use serde::de::DeserializeOwned;

use crate::connection::Connection;
use crate::error::ClientError;
use crate::recording::{Lease, Recording};
use crate::trust;

/// A connection to evshmd.
///
/// Cheap to share between threads (requests are serialised on the one connection).
/// A lease taken through it ends when its [`Recording`] and every buffer sliced from it
/// are dropped; until then it keeps the connection open, even after the last `Client`
/// handle is gone.
#[derive(Debug, Clone)]
pub struct Client {
    connection: Arc<Mutex<Connection>>,
    server: String,
    roots: Arc<[PathBuf]>,
}

impl Client {
    /// Connects to the daemon listening at `socket` and agrees on the protocol version.
    /// The socket and its listener must belong to this user, root or
    /// `$EVSHM_DAEMON_UID` ([`ClientError::Untrusted`] otherwise).
    pub fn connect(socket: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = socket.as_ref();
        trust::check_socket(path)?;
        let stream = UnixStream::connect(path)
            .map_err(|cause| ClientError::Connect { path: path.to_owned(), cause })?;
        trust::check_peer(path, &stream)?;
        let mut connection = Connection::new(stream);
        let client = format!("evshm-rust/{}", env!("CARGO_PKG_VERSION"));
        let (hello, _): (HelloReply, _) = connection
            .request(&Request::Hello { version: PROTOCOL_VERSION, client: Some(client) })?;
        let (server, roots) = (hello.server, hello.roots.into());
        Ok(Client { connection: Arc::new(Mutex::new(connection)), server, roots })
    }

    /// Connects to the daemon at [`default_socket_path`].
    pub fn connect_default() -> Result<Client, ClientError> {
        Client::connect(default_socket_path())
    }

    /// The daemon's name and version, from its hello.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The directories the daemon serves, canonical, in the order it searches them, from
    /// its hello (empty if it did not say).
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Lists the recordings under the daemon's roots.
    pub fn list(&self) -> Result<Vec<RecordingEntry>, ClientError> {
        Ok(self.request::<ListReply>(&Request::List)?.recordings)
    }

    /// The daemon's counters.
    pub fn stats(&self) -> Result<StatsReply, ClientError> {
        self.request(&Request::Stats)
    }

    /// Drops every resident chunk no client holds, now (leased ones stay): how many, and
    /// their bytes.
    pub fn evict(&self) -> Result<EvictReply, ClientError> {
        self.request(&Request::Evict)
    }

    /// Opens a recording's CD events (a path relative to a served root), decoding what is
    /// not resident yet, and reads them in place from evshmd's arenas (mapped read-only,
    /// once per process). The returned [`Recording`] holds a lease until dropped; its
    /// batches point into the mappings.
    pub fn open(&self, path: &str) -> Result<Recording, ClientError> {
        self.open_table(path, Table::Events)
    }

    /// Opens the CD events of the time window `[t_start, t_end)` (microseconds) of a
    /// recording: the rows from the first with `t >= t_start` to the first with
    /// `t >= t_end` (see [`Window`]). Only the chunks holding them are decoded.
    pub fn open_window(
        &self,
        path: &str,
        t_start: i64,
        t_end: i64,
    ) -> Result<Recording, ClientError> {
        let window = Some(Window { start: t_start, end: t_end });
        self.open_with(path, OpenOptions { window, ..OpenOptions::default() })
    }

    /// Like [`Client::open`], for either of the recording's tables: CD events or
    /// external triggers.
    pub fn open_table(&self, path: &str, table: Table) -> Result<Recording, ClientError> {
        self.open_with(path, OpenOptions { table, ..OpenOptions::default() })
    }

    /// Like [`Client::open`], with every option of the request.
    pub fn open_with(&self, path: &str, options: OpenOptions) -> Result<Recording, ClientError> {
        let started = Instant::now();
        let (width, height) = options.geometry.unzip();
        let request = Request::Open {
            path: path.to_owned(),
            table: options.table,
            width,
            height,
            window: options.window,
        };
        let (reply, fds): (OpenReply, _) = {
            let mut connection = self.lock();
            let (reply, fds): (OpenReply, _) = connection.request(&request)?;
            for arena in &reply.arenas {
                connection.named(&arena.name);
            }
            (reply, fds)
        };
        // From here every way out releases the lease: with the last buffer that carries
        // it, or at once if the reply cannot be attached.
        let lease = Lease::new(reply.lease, Arc::clone(&self.connection));
        Recording::attach(reply, fds, lease, started.elapsed())
    }

    fn request<T: DeserializeOwned>(&self, request: &Request) -> Result<T, ClientError> {
        Ok(self.lock().request(request)?.0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic elsewhere while holding the lock cannot leave the connection half-used:
        // `Connection::request` marks it broken before any early return.
        self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What to open of a recording, for [`Client::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// The table: CD events (the default) or external triggers.
    pub table: Table,
    /// Only the rows of this time window (see [`Window`]); the whole table if `None`.
    pub window: Option<Window>,
    /// Sensor width and height to use if the file states none (otherwise the daemon
    /// assumes a per-format default and checks no event against it). A file that states
    /// a different geometry is refused.
    pub geometry: Option<(u32, u32)>,
}
