//! `evshmd`: the evshm daemon. See the crate documentation of `evshmd` and the README.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use evshm_formats::ChunkLimits;
use evshmd::access::AccessPolicy;
use evshmd::arena::{ARENA_SIZE, Arenas};
use evshmd::budget::{Budget, default_limit};
use evshmd::instance::{Instance, InstanceError, remove_stale_arenas};
use evshmd::limits::{default_max_connections, raise_descriptor_limit};
use evshmd::roots::Roots;
use evshmd::server::{bind_socket, make_private_dir, serve};
use evshmd::state::{Daemon, Settings};
use signal_hook::consts::{SIGINT, SIGTERM};

/// Serves event-camera recordings, decoded once into Arrow IPC streams in shared memory.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Directory of recordings to serve (repeat for several; the first that holds a path
    /// wins).
    #[arg(long = "root", required = true, value_name = "DIR")]
    roots: Vec<PathBuf>,
    /// Control socket [default: $EVSHM_SOCKET, else $XDG_RUNTIME_DIR/evshm.sock, else
    /// /tmp/evshm-$UID/evshm.sock]. Exits with status 3 if another evshmd serves it.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Group (name or number) given the socket and the arenas, so that its members can
    /// connect and read; without it, only the daemon's own user can.
    #[arg(long, value_name = "GROUP", value_parser = evshmd::access::resolve_group)]
    group: Option<u32>,
    /// Serve only this user (repeatable; the daemon's own user is always served).
    #[arg(long = "allow-uid", value_name = "UID")]
    allow_uids: Vec<u32>,
    /// Serve only members of this group (repeatable; name or number).
    #[arg(long = "allow-gid", value_name = "GROUP", value_parser = evshmd::access::resolve_group)]
    allow_gids: Vec<u32>,
    /// Make arenas memfds sealed against growing, shrinking and any new writable
    /// mapping, passed to clients as file descriptors: only evshmd's own mapping writes
    /// them, so no other process, whatever its user, can change what clients read.
    #[arg(long)]
    sealed: bool,
    /// Directory for the arenas: a tmpfs or hugetlbfs mount.
    #[arg(long, value_name = "DIR", default_value = "/dev/shm")]
    shm_dir: PathBuf,
    /// Most bytes of shared memory in use or provisioned at once, e.g. 8G or 512M
    /// [default: 3/4 of the free space of the shared-memory filesystem at start].
    /// Recordings no client holds are evicted, least recently used first, to make room.
    #[arg(long, value_name = "SIZE", value_parser = evshmd::budget::parse_size)]
    memory_budget: Option<u64>,
    /// Bytes of free shared memory kept allocated and mapped for the next cold opens,
    /// e.g. 1G; 0 keeps none [default: 1 GiB, at most a quarter of the budget]. It is
    /// made in the background while at most half the budget is in use, and given back
    /// first when a decode needs room.
    #[arg(long, value_name = "SIZE", value_parser = evshmd::budget::parse_size_or_zero)]
    provision: Option<u64>,
    /// Seconds without a decode after which free memory beyond --provision goes back to
    /// the system.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    idle_release: f64,
    /// Size of each arena, the unit in which shared memory is named and mapped, e.g. 1G
    /// [default: 1 GiB, at most the budget]. A table larger gets an arena of its own size.
    #[arg(long, value_name = "SIZE", value_parser = evshmd::budget::parse_size)]
    arena_size: Option<u64>,
    /// Seconds an open waits for clients to release leases when the budget is full.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    budget_wait: f64,
    /// Most leases one connection may hold at once.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    max_leases: usize,
    /// Most client connections served at once; more are refused with
    /// too_many_connections [default: a quarter of the open-file limit, less a reserve,
    /// at most 4096].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Seconds a request line may take once begun, and a new connection may wait before
    /// its hello (an idle connection between requests is never closed).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    frame_timeout: f64,
    /// Events per chunk: recordings are decoded and held in chunks of about this many
    /// events (plus at most those of 64 KiB of input), each its own extent.
    #[arg(long, value_name = "N", default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_events: u64,
    /// Also end a chunk once its events span this many microseconds.
    #[arg(long, value_name = "MICROSECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    chunk_span: Option<i64>,
    /// Chunks decoded in the background ahead of a connection that reads windows forward.
    #[arg(long, value_name = "N", default_value_t = 1)]
    read_ahead: usize,
    /// Threads decoding the chunks of one request [default: the number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    decode_threads: Option<u64>,
    /// Serve recordings over Arrow Flight (gRPC) at this address too, e.g.
    /// grpc://127.0.0.1:8815 (grpc+tls:// with --flight-tls-cert/--flight-tls-key). Off by
    /// default; beyond loopback only with --flight-token-file (or --flight-no-token).
    #[cfg(feature = "flight")]
    #[arg(long, value_name = "ADDR")]
    flight: Option<String>,
    /// File holding the bearer token every Flight call must carry
    /// (`authorization: Bearer <token>`).
    #[cfg(feature = "flight")]
    #[arg(long, value_name = "FILE", requires = "flight")]
    flight_token_file: Option<PathBuf>,
    /// Serve Flight beyond loopback without a token: anyone who reaches the address reads
    /// every recording under the roots.
    #[cfg(feature = "flight")]
    #[arg(long, requires = "flight")]
    flight_no_token: bool,
    /// TLS certificate chain (PEM) of the Flight service.
    #[cfg(feature = "flight")]
    #[arg(long, value_name = "FILE", requires = "flight")]
    flight_tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the Flight service.
    #[cfg(feature = "flight")]
    #[arg(long, value_name = "FILE", requires = "flight")]
    flight_tls_key: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, trace, or env_logger directives); overrides
    /// RUST_LOG.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

fn main() {
    let args = Args::parse();
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(filter) = &args.log_level {
        logger.parse_filters(filter);
    }
    logger.init();
    if let Err(error) = run(args) {
        log::error!("{error:#}");
        let taken = matches!(error.downcast_ref(), Some(InstanceError::AlreadyRunning { .. }));
        std::process::exit(if taken { ALREADY_RUNNING } else { 1 });
    }
}

/// Exit status when another evshmd holds the socket: a caller that starts a daemon when
/// none answers (`evshm.start`) may race another, and then waits for the winner.
const ALREADY_RUNNING: i32 = 3;

fn run(args: Args) -> anyhow::Result<()> {
    // Every argument is checked before anything is created that would need cleaning up.
    let frame_timeout = std::time::Duration::try_from_secs_f64(args.frame_timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .context("--frame-timeout must be a positive number of seconds")?;
    let budget_wait = std::time::Duration::try_from_secs_f64(args.budget_wait)
        .context("--budget-wait must be a number of seconds")?;
    let idle_release = std::time::Duration::try_from_secs_f64(args.idle_release)
        .context("--idle-release must be a number of seconds")?;
    let roots = Roots::new(&args.roots).context("invalid --root")?;
    #[cfg(feature = "flight")]
    let flight = match &args.flight {
        Some(address) => Some(evshmd::flight::FlightConfig::new(
            address,
            args.flight_token_file.as_deref(),
            args.flight_no_token,
            args.flight_tls_cert.as_deref(),
            args.flight_tls_key.as_deref(),
        )?),
        None => None,
    };
    anyhow::ensure!(
        args.shm_dir.is_dir(),
        "shared-memory directory {} does not exist",
        args.shm_dir.display()
    );
    let stat = rustix::fs::statvfs(&args.shm_dir)
        .with_context(|| format!("cannot inspect {}", args.shm_dir.display()))?;
    let (default_budget, small) = default_limit(&stat);
    if let Some(warning) = small {
        log::warn!("{warning}");
    }
    let descriptors = raise_descriptor_limit();
    let max_connections =
        args.max_connections.map_or_else(|| default_max_connections(descriptors), |n| n as usize);
    log::info!("at most {max_connections} connections ({descriptors} open files allowed)");
    let budget = Budget::new(args.memory_budget.unwrap_or(default_budget), budget_wait);
    // Allow-lists are checked at the socket; an arena file in the shm directory would be
    // readable by every member of --group all the same. Sealed arenas exist only as
    // descriptors passed to admitted clients.
    let allow_listed = !args.allow_uids.is_empty() || !args.allow_gids.is_empty();
    if allow_listed && !args.sealed {
        log::info!("--allow-uid/--allow-gid given: arenas are sealed memfds (--sealed)");
    }
    let socket = args.socket.unwrap_or_else(evshm_protocol::default_socket_path);
    let fallback = evshm_protocol::fallback_socket_dir();
    if socket.parent() == Some(fallback.as_path()) {
        make_private_dir(&fallback)?;
    }
    let instance = Arc::new(Instance::start(&socket, &args.shm_dir)?);
    // Bound before anything is served, so that a taken port stops the daemon early.
    #[cfg(feature = "flight")]
    let flight = match flight {
        Some(config) => {
            let addr = config.addr;
            Some(config.bind().with_context(|| format!("cannot listen on {addr} for --flight"))?)
        }
        None => None,
    };
    let stale = remove_stale_arenas(&args.shm_dir);
    if stale > 0 {
        log::info!("removed {stale} arenas left by evshmd instances that are gone");
    }
    let sealed = args.sealed || allow_listed;
    let arena_size = args.arena_size.unwrap_or(ARENA_SIZE.min(budget.limit()));
    // Address space, not memory: room for fragmentation beyond the budget.
    let most_arenas = budget.limit().saturating_mul(2);
    let arenas =
        Arenas::new(&args.shm_dir, instance.id(), args.group, sealed, arena_size, most_arenas);
    let listener = bind_socket(&socket, args.group)?;

    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).context("cannot handle signals")?;
    let on_signal = {
        let (arenas, socket, instance) =
            (Arc::clone(&arenas), socket.clone(), Arc::clone(&instance));
        move || {
            if let Some(signal) = signals.forever().next() {
                log::info!("signal {signal}: shutting down");
                if let Err(e) = std::fs::remove_file(&socket) {
                    log::warn!("cannot remove socket {}: {e}", socket.display());
                }
                let removed = arenas.close();
                instance.close();
                log::info!("removed {removed} arenas; bye");
                std::process::exit(0);
            }
        }
    };
    std::thread::Builder::new().name("evshmd-signals".into()).spawn(on_signal)?;

    let dirs: Vec<String> = roots.dirs().iter().map(|d| d.display().to_string()).collect();
    log::info!(
        "instance {} serving {} on {} (arenas in {} as {}*)",
        instance.id(),
        dirs.join(", "),
        socket.display(),
        arenas.dir().display(),
        arenas.prefix()
    );
    match budget.limit() {
        u64::MAX => log::info!("no memory budget: {} reports no size", args.shm_dir.display()),
        limit => log::info!("memory budget {} MiB", limit >> 20),
    }
    let access = AccessPolicy { allow_uids: args.allow_uids, allow_gids: args.allow_gids };
    let decode_threads = args.decode_threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        |n| n as usize,
    );
    let chunk_limits =
        ChunkLimits { events: args.chunk_events, span: args.chunk_span, step: ChunkLimits::STEP };
    let settings = Settings {
        max_leases: args.max_leases,
        max_connections,
        frame_timeout,
        chunk_limits,
        read_ahead: args.read_ahead,
        decode_threads,
        provision: args.provision.unwrap_or((1 << 30).min(budget.limit() / 4)),
        idle_release,
    };
    let daemon = Daemon::new(roots, arenas, budget, access, settings);
    daemon.start_provisioning()?;
    #[cfg(feature = "flight")]
    if let Some(listener) = flight {
        listener.spawn(&daemon).context("cannot start the Flight service")?;
    }
    serve(&daemon, listener);
    Ok(())
}
