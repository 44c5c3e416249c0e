//! The Flight service: `ListFlights`, `GetFlightInfo`, `GetSchema` and `DoGet` over the
//! daemon's open pipeline, every call checked against the token first.
//!
//! - `ListFlights`: the recordings under the roots (criteria: a path prefix), with their
//!   schema and file size.
//! - `GetFlightInfo`: an open as a local client makes it (`open::open`: roots, budget,
//!   decoding), answered with the schema, the rows, and one endpoint per chunk whose ticket
//!   names that chunk's rows at this file version, so chunks can be fetched in parallel.
//! - `DoGet`: one chunk made resident (`open::open_chunk`, the same cache and budget),
//!   streamed from the shared memory (`stream`), under a lease counted in `stats` for as
//!   long as the stream lasts.
//!
//! Work that may block (indexing, decoding, waiting for the budget) runs on tokio's
//! blocking threads, never on the threads that move bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::Schema;
use bytes::Bytes;
use evshm_protocol::Table;
use futures::stream::{self, BoxStream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::auth::Token;
use super::status;
use super::stream::{StreamParts, stream_bytes};
use super::ticket::{ChunkTicket, Query};
use crate::file::RecordingFile;
use crate::ingest::metadata;
use crate::open::{OpenRequest, ReadPosition, open, open_chunk};
use crate::state::Daemon;
use crate::stats::Stats;

/// evshmd's Flight service.
#[derive(Debug, Clone)]
pub struct EvshmFlight {
    daemon: Arc<Daemon>,
    token: Token,
}

impl EvshmFlight {
    /// A service over `daemon`, for callers carrying `token`.
    pub fn new(daemon: Arc<Daemon>, token: Token) -> Self {
        Self { daemon, token }
    }

    /// The token every call must carry.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// A `DoGet`'s messages, whose bodies hold a lease on the chunk until the last of
    /// them is gone: sent to the socket (or dropped with a client that went away).
    pub(super) async fn do_get_frames(
        &self,
        ticket: Ticket,
        peer: Option<SocketAddr>,
    ) -> Result<Vec<FlightData>, Status> {
        let ticket = ChunkTicket::decode(&ticket.ticket).map_err(|e| status::ticket_error(&e))?;
        self.blocking(move |daemon| {
            let lease = Arc::new(StreamLease::take(&daemon, peer));
            let mut messages = chunk_stream(&daemon, &ticket)?;
            for data in &mut messages {
                let body = std::mem::take(&mut data.data_body);
                data.data_body =
                    Bytes::from_owner(Leased { bytes: body, _lease: Arc::clone(&lease) });
            }
            Ok(messages)
        })
        .await
    }

    /// Runs blocking work `f` on the daemon off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<Daemon>) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let daemon = Arc::clone(&self.daemon);
        let result = tokio::task::spawn_blocking(move || f(daemon)).await;
        let result = result.map_err(status::internal).and_then(|r| r);
        if result.is_err() {
            Stats::bump(&self.daemon.stats.errors);
        }
        result
    }
}

/// The schema of `table` of a recording as detected.
fn table_schema(detected: &evshm_formats::Detected, name: &str, table: Table) -> Schema {
    let meta = metadata(detected, name);
    match table {
        Table::Events => evshm_protocol::schema::event_schema(meta),
        Table::Triggers => evshm_protocol::schema::trigger_schema(meta),
    }
}

/// Bytes one row of `schema` takes in a body.
fn row_width(schema: &Schema) -> i64 {
    schema.fields().iter().filter_map(|f| f.data_type().primitive_width()).sum::<usize>() as i64
}

fn info_with_schema(schema: &Schema) -> Result<FlightInfo, Status> {
    FlightInfo::new().try_with_schema(schema).map_err(status::internal)
}

/// `GetFlightInfo` answered from a local open.
fn flight_info(
    daemon: &Arc<Daemon>,
    query: &Query,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let geometry = crate::wire::requested_geometry(query.width, query.height)
        .map_err(|e| status::from_reply(&e))?;
    let request =
        OpenRequest { path: &query.path, table: query.table, geometry, window: query.window };
    Stats::bump(&daemon.stats.opens);
    let opened =
        open(daemon, &request, &mut ReadPosition::default()).map_err(|e| status::open_error(&e))?;
    let schema = table_schema(&opened.target.detected, &opened.target.name, query.table);
    let version = opened.target.identity.token();
    let rows: u64 = opened.chunks.iter().map(|s| s.end - s.start).sum();
    let ticket = |s: &crate::window::Selected<crate::open::ChunkTable>| {
        let rows = [s.start, s.end];
        ChunkTicket::new(&query.path, query.table, geometry, s.chunk, rows, version.clone())
    };
    let endpoints = opened
        .chunks
        .iter()
        .map(|s| FlightEndpoint::new().with_ticket(Ticket::new(ticket(s).encode())));
    // One ticket for all of it, in one stream: for a reader that fetches one chunk at a
    // time, which then waits for nothing between chunks.
    let whole =
        opened.chunks.split_first().filter(|(_, rest)| !rest.is_empty()).map(|(first, rest)| {
            let mut whole = ticket(first);
            whole.then = rest.iter().map(|s| (s.chunk, [s.start, s.end])).collect();
            String::from_utf8(whole.encode()).unwrap_or_default()
        });
    // Not for thousands of chunks: a ticket is at most MAX_TICKET_LEN bytes.
    let whole = whole.filter(|whole| whole.len() <= super::MAX_TICKET_LEN);
    let metadata = serde_json::json!({ "whole": whole }).to_string();
    let info = info_with_schema(&schema)?
        .with_descriptor(descriptor)
        .with_endpoints(endpoints.collect())
        .with_app_metadata(metadata.into_bytes())
        .with_total_records(rows as i64)
        .with_total_bytes(rows as i64 * row_width(&schema))
        .with_ordered(true);
    Ok(info)
}

/// The schema `GetSchema` answers: detection only, nothing decoded.
fn schema_of(daemon: &Arc<Daemon>, query: &Query) -> Result<Schema, Status> {
    let geometry = crate::wire::requested_geometry(query.width, query.height)
        .map_err(|e| status::from_reply(&e))?;
    let open_error = |e| status::open_error(&e);
    let resolved = daemon.roots.resolve(&query.path).map_err(|e| open_error(e.into()))?;
    let ingest = |e| open_error(crate::open::OpenError::ingest(&resolved.name, Arc::new(e)));
    let file = RecordingFile::open(&resolved.file).map_err(ingest)?;
    let mut detected = file.detect().map_err(ingest)?;
    if let Some(given) = geometry {
        detected = detected.with_geometry(given).map_err(|stated| {
            ingest(crate::ingest::IngestError::GeometryConflict {
                path: resolved.file.clone(),
                stated,
                given,
            })
        })?;
    }
    Ok(table_schema(&detected, &resolved.name, query.table))
}

/// The recordings under the roots whose name starts with `prefix`.
fn listing(daemon: &Daemon, prefix: &str) -> Vec<Result<FlightInfo, Status>> {
    (daemon.roots.files().into_iter())
        .filter(|(name, _)| name.starts_with(prefix))
        .filter_map(|(name, file)| {
            let opened = RecordingFile::open(&file).ok()?;
            let detected = opened.detect().ok()?;
            let schema = table_schema(&detected, &name, Table::Events);
            let descriptor = FlightDescriptor::new_path(vec![name]);
            let info = info_with_schema(&schema).map(|info| {
                info.with_descriptor(descriptor)
                    .with_total_records(-1)
                    .with_total_bytes(opened.size() as i64)
            });
            Some(info)
        })
        .collect()
}

/// What a `DoGet` holds while it streams: a lease on its chunk, counted in `stats` like a
/// local client's, its peer listed among the clients.
#[derive(Debug)]
struct StreamLease {
    daemon: Arc<Daemon>,
    client: u64,
}

impl StreamLease {
    fn take(daemon: &Arc<Daemon>, peer: Option<SocketAddr>) -> Self {
        let client = daemon.clients.add(0, u32::MAX);
        let name = match peer {
            Some(peer) => format!("flight {peer}"),
            None => "flight".to_owned(),
        };
        daemon.clients.update(client, |c| {
            c.name = Some(name);
            c.leases = 1;
        });
        daemon.stats.leases.fetch_add(1, Ordering::Relaxed);
        Self { daemon: Arc::clone(daemon), client }
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.daemon.stats.leases.fetch_sub(1, Ordering::Relaxed);
        self.daemon.clients.remove(self.client);
        self.daemon.budget.notify_released();
    }
}

/// Bytes that hold a stream's lease (no copy: a view of the same memory).
struct Leased {
    bytes: Bytes,
    _lease: Arc<StreamLease>,
}

impl AsRef<[u8]> for Leased {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// A `DoGet`: the chunk's two messages, from the shared memory.
fn chunk_stream(daemon: &Arc<Daemon>, ticket: &ChunkTicket) -> Result<Vec<FlightData>, Status> {
    let mut messages = Vec::with_capacity(2 + ticket.then.len());
    let parts = std::iter::once((ticket.chunk, ticket.rows)).chain(ticket.then.iter().copied());
    for (chunk, rows) in parts {
        let [schema, batch] = chunk_messages(daemon, ticket, chunk, rows)?;
        if messages.is_empty() {
            messages.push(schema);
        }
        messages.push(batch);
    }
    Ok(messages)
}

/// Chunk `chunk`'s schema and record batch messages, cut to `rows`.
fn chunk_messages(
    daemon: &Arc<Daemon>,
    ticket: &ChunkTicket,
    chunk: usize,
    [start, end]: [u64; 2],
) -> Result<[FlightData; 2], Status> {
    let table =
        open_chunk(daemon, &ticket.path, ticket.table, ticket.geometry(), chunk, &ticket.version)
            .map_err(|e| status::chunk_error(&e))?;
    let total = table.stream().rows;
    if end > total {
        let message = format!("rows {start}..{end} of a chunk of {total}");
        return Err(Status::invalid_argument(format!("{}bad_ticket: {message}", status::PREFIX)));
    }
    let stream = stream_bytes(&table);
    let parts = StreamParts::split(&stream).map_err(status::internal)?;
    let schema = arrow_ipc::convert::try_schema_from_flatbuffer_bytes(&parts.schema_header)
        .map_err(status::internal)?;
    let rows =
        usize::try_from(start).unwrap_or(usize::MAX)..usize::try_from(end).unwrap_or(usize::MAX);
    let total = usize::try_from(total).unwrap_or(usize::MAX);
    let batch = parts.rows_data(Arc::new(schema), rows, total).map_err(status::internal)?;
    Ok([parts.schema_data(), batch])
}

type Streamed<T> = BoxStream<'static, Result<T, Status>>;

#[tonic::async_trait]
impl FlightService for EvshmFlight {
    type HandshakeStream = Streamed<HandshakeResponse>;
    type ListFlightsStream = Streamed<FlightInfo>;
    type DoGetStream = Streamed<FlightData>;
    type DoPutStream = Streamed<PutResult>;
    type DoExchangeStream = Streamed<FlightData>;
    type DoActionStream = Streamed<arrow_flight::Result>;
    type ListActionsStream = Streamed<ActionType>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.token.check(&request)?;
        Err(Status::unimplemented("send the token as `authorization: Bearer <token>` on each call"))
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.token.check(&request)?;
        let prefix = String::from_utf8_lossy(&request.get_ref().expression).into_owned();
        let listed = self.blocking(move |daemon| Ok(listing(&daemon, &prefix))).await?;
        Ok(Response::new(stream::iter(listed).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.token.check(&request)?;
        let descriptor = request.into_inner();
        let query = Query::parse(&descriptor.cmd, &descriptor.path)
            .map_err(|e| status::ticket_error(&e))?;
        let info = self.blocking(move |daemon| flight_info(&daemon, &query, descriptor)).await?;
        Ok(Response::new(info))
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.token.check(&request)?;
        Err(Status::unimplemented("PollFlightInfo: use GetFlightInfo"))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.token.check(&request)?;
        let descriptor = request.into_inner();
        let query = Query::parse(&descriptor.cmd, &descriptor.path)
            .map_err(|e| status::ticket_error(&e))?;
        let schema = self.blocking(move |daemon| schema_of(&daemon, &query)).await?;
        let options = IpcWriteOptions::default();
        let result = SchemaAsIpc::new(&schema, &options).try_into().map_err(status::internal)?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.token.check(&request)?;
        let peer = request.remote_addr();
        let messages = self.do_get_frames(request.into_inner(), peer).await?;
        Ok(Response::new(stream::iter(messages.into_iter().map(Ok)).boxed()))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.token.check(&request)?;
        Err(Status::unimplemented("evshmd serves recordings read-only"))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.token.check(&request)?;
        Err(Status::unimplemented("evshmd serves recordings read-only"))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.token.check(&request)?;
        Err(Status::unimplemented("evshmd has no Flight actions"))
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.token.check(&request)?;
        Ok(Response::new(stream::empty().boxed()))
    }
}
