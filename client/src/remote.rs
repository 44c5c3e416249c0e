//! A client of evshmd's Arrow Flight service (`evshmd --flight ADDR`): the same recordings
//! from another machine, through `arrow-flight` (feature `remote`).
//!
//! [`RemoteClient::open_with`] asks `GetFlightInfo` for a path or window (one endpoint per
//! chunk) and fetches the chunks with `DoGet`, several at once, each on a connection of
//! its own. The record batches are decoded from the received messages without a further
//! copy: the bytes cross the network once, into memory this process owns (a local open
//! maps the daemon's shared memory instead and copies nothing).
//!
//! ```no_run
//! let client = evshm::RemoteClient::connect(
//!     "grpc://node0:8815",
//!     evshm::RemoteOptions { token: Some("...".into()), ..Default::default() },
//! )?;
//! let window = client.open_with("day1/cam0.raw", Some((0, 50_000)), evshm::Table::Events)?;
//! println!("{} events in {} chunks", window.num_rows(), window.batches().len());
//! # Ok::<(), evshm::RemoteError>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{FlightClient, FlightDescriptor, FlightInfo, Ticket};
use arrow_ipc::MessageHeader;
use arrow_schema::SchemaRef;
use evshm_protocol::Table;
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// Chunks fetched at once unless [`RemoteOptions::parallel`] says otherwise.
pub const DEFAULT_PARALLEL: usize = 4;

/// How to reach a Flight service.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// The bearer token (`evshmd --flight-token-file`), sent on every call.
    pub token: Option<String>,
    /// PEM certificates to trust for `grpc+tls://` (the system's by default).
    pub tls_root_certs: Option<Vec<u8>>,
    /// Chunks fetched at once, each on a connection of its own (0: [`DEFAULT_PARALLEL`]).
    pub parallel: usize,
    /// Time limit of each call.
    pub timeout: Option<Duration>,
}

/// What can go wrong reading from a Flight service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The address is not a Flight address.
    #[error(
        "{address} is not a Flight address (grpc://HOST:PORT or grpc+tls://HOST:PORT): {detail}"
    )]
    Address {
        /// What was given.
        address: String,
        /// What is wrong.
        detail: String,
    },
    /// The service answered with an error: `code` is the protocol's error code
    /// (`not_found`, `over_budget`, `unauthenticated`, `stale_ticket`...) when the daemon
    /// gave one, else gRPC's.
    #[error("evshmd at {address}: {message} ({code})")]
    Daemon {
        /// The service.
        address: String,
        /// The error code.
        code: String,
        /// What failed.
        message: String,
    },
    /// The service cannot be reached, or went away mid-call.
    #[error("evshmd at {address} cannot be reached or went away: {detail}")]
    Unreachable {
        /// The service.
        address: String,
        /// What the transport said.
        detail: String,
    },
    /// What arrived is not what was announced.
    #[error("evshmd at {address} sent data that does not fit: {detail}")]
    Data {
        /// The service.
        address: String,
        /// What did not fit.
        detail: String,
    },
    /// The client's own threads could not be started.
    #[error("cannot start the Flight client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// A recording, or a window of one, read over Flight: its record batches (one per chunk
/// that holds rows), in memory of this process.
#[derive(Debug, Clone)]
pub struct RemoteRecording {
    path: String,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl RemoteRecording {
    /// The recording's path, as asked.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The table's schema, with evshm's metadata (`evshm.width`...).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows, one batch per chunk, in order.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// The ticket of every chunk in one stream, from `GetFlightInfo`'s `app_metadata`
/// (`{"whole": ticket}`), if the service gave one.
fn whole_ticket(app_metadata: &[u8]) -> Option<Ticket> {
    let value: serde_json::Value = serde_json::from_slice(app_metadata).ok()?;
    value.get("whole")?.as_str().map(|whole| Ticket::new(whole.to_owned()))
}

/// The record batches of a `DoGet`, read in place from the received messages. (arrow-flight's
/// own decoder copies every body not aligned to 64 bytes; Arrow needs each buffer aligned
/// to its type only, which a body evshmd sends 8-byte aligned in its message mostly is.)
async fn fetch(
    client: &mut FlightClient,
    ticket: Ticket,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, FlightError> {
    let mut request = tonic::Request::new(ticket);
    *request.metadata_mut() = client.metadata().clone();
    let mut stream = client.inner_mut().do_get(request).await?.into_inner();
    let mut batches = Vec::new();
    while let Some(data) = stream.message().await? {
        let message = arrow_ipc::root_as_message(&data.data_header)
            .map_err(|e| FlightError::DecodeError(format!("not an IPC message: {e}")))?;
        match message.header_type() {
            MessageHeader::Schema => {}
            MessageHeader::RecordBatch => {
                let header = message.header_as_record_batch().ok_or_else(|| {
                    FlightError::DecodeError("a record batch message without its header".into())
                })?;
                let body = Buffer::from(data.data_body);
                let batch = arrow_ipc::reader::read_record_batch(
                    &body,
                    header,
                    Arc::clone(schema),
                    &HashMap::new(),
                    None,
                    &message.version(),
                )?;
                batches.push(batch);
            }
            other => {
                return Err(FlightError::DecodeError(format!("unexpected IPC message {other:?}")));
            }
        }
    }
    Ok(batches)
}

/// A client of one Flight service. Its calls block; it runs a small tokio runtime of its
/// own.
#[derive(Debug)]
pub struct RemoteClient {
    address: String,
    endpoint: Endpoint,
    options: RemoteOptions,
    runtime: tokio::runtime::Runtime,
}

impl RemoteClient {
    /// A client of the service at `address` (`grpc://HOST:PORT`, `grpc+tls://HOST:PORT`).
    /// Connections are made on first use.
    pub fn connect(address: &str, options: RemoteOptions) -> Result<Self, RemoteError> {
        let bad = |detail: String| RemoteError::Address { address: address.to_owned(), detail };
        let (scheme, rest) = address.split_once("://").ok_or_else(|| bad("no scheme".into()))?;
        let tls = match scheme {
            "grpc" | "grpc+tcp" => false,
            "grpc+tls" => true,
            other => return Err(bad(format!("scheme {other}"))),
        };
        let uri = format!("{}://{rest}", if tls { "https" } else { "http" });
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| bad(e.to_string()))?
            .tcp_nodelay(true)
            .initial_stream_window_size(16 << 20)
            .initial_connection_window_size(64 << 20);
        if let Some(timeout) = options.timeout {
            endpoint = endpoint.timeout(timeout);
        }
        if tls {
            let mut config = ClientTlsConfig::new();
            if let Some(pem) = &options.tls_root_certs {
                config = config.ca_certificate(Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| bad(e.to_string()))?;
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("evshm-flight")
            .enable_all()
            .build()
            .map_err(RemoteError::Runtime)?;
        Ok(Self { address: address.to_owned(), endpoint, options, runtime })
    }

    /// The recordings under the service's roots.
    pub fn list(&self) -> Result<Vec<String>, RemoteError> {
        self.runtime.block_on(async {
            let mut client = self.client().await?;
            let infos = client.list_flights("").await.map_err(|e| self.error(e))?;
            let infos: Vec<FlightInfo> = infos.try_collect().await.map_err(|e| self.error(e))?;
            let path = |info: FlightInfo| info.flight_descriptor.map(|d| d.path.join("/"));
            Ok(infos.into_iter().filter_map(path).collect())
        })
    }

    /// The whole recording at `path` (its events).
    pub fn open(&self, path: &str) -> Result<RemoteRecording, RemoteError> {
        self.open_with(path, None, Table::Events)
    }

    /// Table `table` of the recording at `path`, or only the rows of the window
    /// `[t_start, t_end)` (microseconds), as a local open selects them.
    pub fn open_with(
        &self,
        path: &str,
        window: Option<(i64, i64)>,
        table: Table,
    ) -> Result<RemoteRecording, RemoteError> {
        match self.open_once(path, window, table) {
            // The file changed between GetFlightInfo and DoGet: once more, on the new
            // version.
            Err(RemoteError::Daemon { code, .. }) if code == "stale_ticket" => {
                self.open_once(path, window, table)
            }
            other => other,
        }
    }

    fn open_once(
        &self,
        path: &str,
        window: Option<(i64, i64)>,
        table: Table,
    ) -> Result<RemoteRecording, RemoteError> {
        let mut command = serde_json::json!({ "path": path, "table": table });
        if let Some((start, end)) = window {
            command["window"] = serde_json::json!([start, end]);
        }
        let descriptor = FlightDescriptor::new_cmd(command.to_string());
        self.runtime.block_on(async {
            let mut client = self.client().await?;
            let info = client.get_flight_info(descriptor).await.map_err(|e| self.error(e))?;
            let schema = Arc::new(info.clone().try_decode_schema().map_err(|e| self.data(e))?);
            let parallel = match self.options.parallel {
                0 => DEFAULT_PARALLEL,
                n => n,
            }
            .min(info.endpoint.len().max(1));
            if parallel == 1
                && info.endpoint.len() > 1
                && let Some(whole) = whole_ticket(&info.app_metadata)
            {
                // One chunk at a time: all in one stream, which never waits between.
                let batches =
                    fetch(&mut client, whole, &schema).await.map_err(|e| self.error(e))?;
                return self.recording(path, &info, schema, batches);
            }
            let mut clients = vec![client];
            for _ in 1..parallel {
                clients.push(self.client().await?);
            }
            let tickets: Vec<Ticket> =
                info.endpoint.iter().filter_map(|e| e.ticket.clone()).collect();
            // Ticket i goes to connection i % parallel; each connection fetches its
            // tickets in turn, the connections at once.
            let lanes = clients.into_iter().enumerate().map(|(lane, mut client)| {
                let schema = Arc::clone(&schema);
                let mine: Vec<(usize, Ticket)> = (tickets.iter().cloned().enumerate())
                    .filter(|(i, _)| i % parallel == lane)
                    .collect();
                async move {
                    let mut got = Vec::new();
                    for (i, ticket) in mine {
                        got.push((i, fetch(&mut client, ticket, &schema).await?));
                    }
                    Ok::<_, FlightError>(got)
                }
            });
            // Each lane a task of its own, so that the lanes decode on every worker thread.
            let lanes: Vec<_> = lanes.map(tokio::spawn).collect();
            let mut done = Vec::with_capacity(lanes.len());
            for lane in lanes {
                let joined = lane.await.map_err(|e| self.data(format!("a fetch failed: {e}")))?;
                done.push(joined.map_err(|e| self.error(e))?);
            }
            let lanes = done;
            let mut parts: Vec<(usize, Vec<RecordBatch>)> = lanes.into_iter().flatten().collect();
            parts.sort_by_key(|(i, _)| *i);
            let batches: Vec<RecordBatch> = parts.into_iter().flat_map(|(_, b)| b).collect();
            self.recording(path, &info, schema, batches)
        })
    }

    /// The recording of `batches`, if they hold the rows `info` announced.
    fn recording(
        &self,
        path: &str,
        info: &FlightInfo,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<RemoteRecording, RemoteError> {
        let batches: Vec<RecordBatch> = batches.into_iter().filter(|b| b.num_rows() > 0).collect();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if info.total_records >= 0 && rows as i64 != info.total_records {
            let detail = format!("{} rows announced, {rows} received", info.total_records);
            return Err(RemoteError::Data { address: self.address.clone(), detail });
        }
        Ok(RemoteRecording { path: path.to_owned(), schema, batches })
    }

    /// A Flight client on a connection of its own, with the token.
    async fn client(&self) -> Result<FlightClient, RemoteError> {
        let channel: Channel = self.endpoint.connect().await.map_err(|e| {
            let detail = std::error::Error::source(&e)
                .map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
            RemoteError::Unreachable { address: self.address.clone(), detail }
        })?;
        let inner = FlightServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let mut client = FlightClient::new_from_inner(inner);
        if let Some(token) = &self.options.token {
            client.add_header("authorization", &format!("Bearer {token}")).map_err(|e| {
                RemoteError::Address {
                    address: self.address.clone(),
                    detail: format!("token: {e}"),
                }
            })?;
        }
        Ok(client)
    }

    fn data(&self, error: impl std::fmt::Display) -> RemoteError {
        RemoteError::Data { address: self.address.clone(), detail: error.to_string() }
    }

    /// A failed call, with the daemon's error code when it gave one.
    fn error(&self, error: FlightError) -> RemoteError {
        let address = self.address.clone();
        let status = match error {
            FlightError::Tonic(status) => *status,
            other => return RemoteError::Data { address, detail: other.to_string() },
        };
        let message = status.message();
        if let Some((code, message)) =
            message.strip_prefix("evshm:").and_then(|rest| rest.split_once(": "))
        {
            let (code, message) = (code.to_owned(), message.to_owned());
            return RemoteError::Daemon { address, code, message };
        }
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::Unknown => {
                RemoteError::Unreachable { address, detail: status.to_string() }
            }
            code => RemoteError::Daemon {
                address,
                code: format!("{code:?}"),
                message: message.to_owned(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        for bad in ["node0:8815", "http://node0:8815", "grpc://", "grpc://bad host:1"] {
            let refused = RemoteClient::connect(bad, RemoteOptions::default());
            assert!(matches!(refused, Err(RemoteError::Address { .. })), "{bad}: {refused:?}");
        }
        assert!(RemoteClient::connect("grpc://127.0.0.1:1", RemoteOptions::default()).is_ok());
        assert!(RemoteClient::connect("grpc+tls://localhost:1", RemoteOptions::default()).is_ok());
    }

    #[test]
    fn errors_keep_the_daemons_code() {
        let client = RemoteClient::connect("grpc://127.0.0.1:1", RemoteOptions::default()).unwrap();
        let status = tonic::Status::not_found("evshm:not_found: a.raw: no such file");
        match client.error(FlightError::Tonic(Box::new(status))) {
            RemoteError::Daemon { code, message, .. } => {
                assert_eq!((code.as_str(), message.as_str()), ("not_found", "a.raw: no such file"));
            }
            other => panic!("{other:?}"),
        }
        let gone = client.error(FlightError::Tonic(Box::new(tonic::Status::unavailable("reset"))));
        assert!(matches!(gone, RemoteError::Unreachable { .. }));
        assert!(matches!(client.open("a.raw"), Err(RemoteError::Unreachable { .. })));
    }
}
