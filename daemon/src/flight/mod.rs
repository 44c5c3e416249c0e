//! The Arrow Flight service (`evshmd --flight ADDR`): the same decoded chunks, to clients on
//! other machines, over gRPC.
//!
//! Off unless asked for. It runs on a small tokio runtime of its own, on threads of its
//! own, beside the synchronous Unix-socket server; both share one [`Daemon`]: roots,
//! cache, budget, file versions, counters. A `DoGet` sends a chunk's IPC messages from the
//! shared memory as they lie there (`stream`), so remote readers get the bytes local
//! readers map. Parts:
//!
//! - `auth`: the bearer token, and binding beyond loopback only with one;
//! - `ticket`: what `GetFlightInfo` is asked and what `DoGet` is handed;
//! - `service`: the Flight methods over the open pipeline;
//! - `doget`: `DoGet`'s replies written without tonic's encoder, the body never copied;
//! - `stream`: a chunk's stream as `FlightData`, slices of the mapping;
//! - `status`: errors as gRPC statuses, led by the protocol's error codes.

mod auth;
mod doget;
mod service;
mod status;
mod stream;
mod ticket;

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

pub use auth::{AuthSetupError, Token};
pub use doget::ZeroCopyDoGet;
pub use service::EvshmFlight;
pub use ticket::MAX_TICKET_LEN;

use crate::state::Daemon;

/// Most bytes of one request message (a descriptor or a ticket, with protobuf framing);
/// larger ones are refused by gRPC with `RESOURCE_EXHAUSTED`/`OUT_OF_RANGE` unread.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// HTTP/2 flow-control windows: large enough that a chunk of tens of megabytes is not
/// paced by round trips on a fast link.
const STREAM_WINDOW: u32 = 16 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

/// Threads moving bytes (the decoding and waiting happen on tokio's blocking threads).
const WORKER_THREADS: usize = 2;

/// How the Flight service is to run, checked before the daemon starts.
#[derive(Debug)]
pub struct FlightConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The token every call must carry.
    pub token: Token,
    /// The TLS certificate chain and key (PEM), if TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// Why the Flight settings were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlightSetupError {
    /// The address is not one.
    #[error("--flight {given}: {detail} (e.g. grpc://127.0.0.1:8815)")]
    Address {
        /// What was given.
        given: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The token, or its absence.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// A TLS file.
    #[error("cannot read {path}: {source}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// TLS asked for by the scheme, or half given.
    #[error("{0}")]
    Tls(String),
}

impl FlightConfig {
    /// Checks the options: the address (`grpc://HOST:PORT`, `grpc+tcp://`, `grpc+tls://`
    /// or a bare `HOST:PORT`), the token file, whether it may bind beyond loopback without
    /// a token (`open`), and the TLS files (both or neither; required by `grpc+tls://`).
    pub fn new(
        address: &str,
        token_file: Option<&Path>,
        open: bool,
        tls_cert: Option<&Path>,
        tls_key: Option<&Path>,
    ) -> Result<Self, FlightSetupError> {
        let bad = |detail: &str| FlightSetupError::Address {
            given: address.to_owned(),
            detail: detail.to_owned(),
        };
        let (scheme, rest) = match address.split_once("://") {
            Some((scheme, rest)) => (scheme, rest),
            None => ("grpc", address),
        };
        if !matches!(scheme, "grpc" | "grpc+tcp" | "grpc+tls") {
            return Err(bad("the scheme must be grpc, grpc+tcp or grpc+tls"));
        }
        let addr = (rest.to_socket_addrs().map_err(|e| bad(&e.to_string()))?.next())
            .ok_or_else(|| bad("names no address"))?;
        let token = match token_file {
            Some(path) => Token::read(path)?,
            None => Token::none(),
        };
        token.allows_binding(addr, open)?;
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|source| FlightSetupError::TlsFile { path: path.to_owned(), source })
        };
        let tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) if scheme == "grpc+tls" => {
                return Err(FlightSetupError::Tls(
                    "grpc+tls:// needs --flight-tls-cert and --flight-tls-key".into(),
                ));
            }
            (None, None) => None,
            _ => {
                return Err(FlightSetupError::Tls(
                    "--flight-tls-cert and --flight-tls-key go together".into(),
                ));
            }
        };
        Ok(Self { addr, token, tls })
    }
}

impl FlightConfig {
    /// Binds the service's address, before the daemon serves anything (so that a taken
    /// port stops it early, with nothing to clean up).
    pub fn bind(self) -> std::io::Result<FlightListener> {
        let listener = TcpListener::bind(self.addr)?;
        listener.set_nonblocking(true)?;
        Ok(FlightListener { listener, config: self })
    }
}

/// The service's bound address, to be served with [`FlightListener::spawn`].
#[derive(Debug)]
pub struct FlightListener {
    listener: TcpListener,
    config: FlightConfig,
}

impl FlightListener {
    /// The address bound (its port chosen by the system if 0 was given).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the Flight service for `daemon` on threads of its own until the process
    /// ends.
    pub fn spawn(self, daemon: &Arc<Daemon>) -> anyhow::Result<SocketAddr> {
        let FlightListener { listener, config } = self;
        let bound = listener.local_addr()?;
        let token = if config.token.is_set() { "a token" } else { "no token" };
        let mut server = Server::builder()
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW);
        if let Some((cert, key)) = &config.tls {
            let identity = Identity::from_pem(cert, key);
            server = server.tls_config(ServerTlsConfig::new().identity(identity))?;
        }
        let flight = EvshmFlight::new(Arc::clone(daemon), config.token);
        let generated = FlightServiceServer::new(flight.clone())
            .max_decoding_message_size(MAX_REQUEST_BYTES)
            .max_encoding_message_size(usize::MAX);
        let service = ZeroCopyDoGet::new(generated, flight);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(64)
            .thread_name("evshmd-flight")
            .enable_all()
            .build()?;
        std::thread::Builder::new().name("evshmd-flight".into()).spawn(move || {
            runtime.block_on(async move {
                let incoming = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => TcpIncoming::from(listener).with_nodelay(Some(true)),
                    Err(e) => {
                        log::error!("Flight service cannot listen: {e}");
                        return;
                    }
                };
                if let Err(e) = server.add_service(service).serve_with_incoming(incoming).await {
                    log::error!("Flight service stopped: {e}");
                }
            });
        })?;
        let scheme = if config.tls.is_some() { "grpc+tls" } else { "grpc" };
        log::info!("Flight service on {scheme}://{bound} ({token})");
        Ok(bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_tokens_and_tls_are_checked_at_start() {
        let config = FlightConfig::new("grpc://127.0.0.1:0", None, false, None, None).unwrap();
        assert!(config.addr.ip().is_loopback() && config.tls.is_none());
        assert!(FlightConfig::new("127.0.0.1:8815", None, false, None, None).is_ok());
        assert!(FlightConfig::new("http://127.0.0.1:1", None, false, None, None).is_err());
        assert!(FlightConfig::new("grpc://nowhere", None, false, None, None).is_err());
        let wide = FlightConfig::new("grpc://0.0.0.0:0", None, false, None, None);
        assert!(matches!(wide, Err(FlightSetupError::Auth(_))), "{wide:?}");
        assert!(FlightConfig::new("grpc://0.0.0.0:0", None, true, None, None).is_ok());
        let tls = FlightConfig::new("grpc+tls://127.0.0.1:0", None, false, None, None);
        assert!(matches!(tls, Err(FlightSetupError::Tls(_))));
        let half = FlightConfig::new("grpc://127.0.0.1:0", None, false, Some(Path::new("c")), None);
        assert!(matches!(half, Err(FlightSetupError::Tls(_))));
    }
}
