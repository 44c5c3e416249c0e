//! Attach latency vs size, Rust: evshm's zero-copy open against the same Arrow IPC bytes
//! received over a Unix socket, and where the time of an evshm open goes.
//!
//! Needs the driver's plan (`$EVSHM_BENCH_PLAN`): run `benches/run.sh`. For every
//! recording of the plan, side by side in one process:
//!
//! - `evshm`: `evshm::Client::open` on a warm connection to a cached recording (open
//!   request, read-only map, `StreamDecoder` with `require_alignment`); the recording is
//!   dropped (lease released, unmapped) outside the timed region;
//! - `bytecopy_stream_reader`: the same bytes from `evshm-bytecopy`, parsed by arrow-rs's
//!   `StreamReader` straight from the socket (one copy into buffers it allocates);
//! - `bytecopy_buffer`: the same bytes read into one buffer, then decoded in place (the
//!   cheapest a byte copy can be).
//!
//! Then the `parts` group splits an evshm open: the bare round trip of a Unix socket,
//! the daemon's per-open path work (`Roots::resolve` + `stat`, run here in-process), the
//! JSON of the exchange, the map and the decode, and the release on drop.
//!
//! Criterion reports means; every operation is also timed alone, and the percentiles go
//! to `attach_rust.json` in the plan's output directory.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow_buffer::{Buffer, MutableBuffer};
use criterion::{Criterion, SamplingMode};
use evshm_benches::bytecopy::{self, BytecopyClient};
use evshm_benches::plan::{PLAN_VAR, Plan, Recording};
use evshm_benches::{Summary, timed};
use evshm_protocol::{FieldInfo, OpenReply, Request, parse_reply, reply_line};
use serde_json::json;

/// Individually timed operations, by benchmark id.
type Samples = BTreeMap<String, Vec<Duration>>;

fn main() {
    let plan = match Plan::from_env() {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            eprintln!("attach: skipped: {PLAN_VAR} is not set (run benches/run.sh)");
            return;
        }
        Err(e) => {
            eprintln!("attach: {e:#}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(&plan) {
        eprintln!("attach: {e:#}");
        std::process::exit(1);
    }
}

fn run(plan: &Plan) -> anyhow::Result<()> {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs_f64(plan.warm_up_s))
        .measurement_time(Duration::from_secs_f64(plan.measure_s))
        .configure_from_args();
    let client = evshm::Client::connect(&plan.socket)?;
    let mut bytecopy = BytecopyClient::connect(&plan.bytecopy_socket)?;
    let mut samples = Samples::new();
    // The parts first, before the large byte copies leave gigabytes for the kernel to
    // reclaim.
    let middle = &plan.attach[plan.attach.len() / 2];
    bench_parts(&mut criterion, plan, &client, &mut bytecopy, middle, &mut samples)?;
    let mut sizes = Vec::new();
    for recording in &plan.attach {
        let segment_bytes = check_agreement(&client, &mut bytecopy, recording)?;
        sizes.push(json!({
            "label": recording.label,
            "path": recording.path,
            "events": recording.events,
            "segment_bytes": segment_bytes,
        }));
        bench_size(&mut criterion, &client, &mut bytecopy, recording, segment_bytes, &mut samples);
    }
    // The server keeps a copy of the last recording it served: leave it the smallest.
    bytecopy.fetch_into_buffer(&plan.attach[0].path)?;
    criterion.final_summary();

    let summaries: BTreeMap<&String, serde_json::Value> = samples
        .iter()
        .map(|(id, durations)| {
            // The first operation of each benchmark is the only cold one: leave it out.
            (id, Summary::json(durations.get(1..).unwrap_or_default()))
        })
        .collect();
    plan.write_result(
        "attach_rust.json",
        &json!({ "sizes": sizes, "parts_of": middle.path, "summaries": summaries }),
    )
}

/// Opens `recording` both ways once and checks that they read the same events; returns
/// the segment size.
fn check_agreement(
    client: &evshm::Client,
    bytecopy: &mut BytecopyClient,
    recording: &Recording,
) -> anyhow::Result<u64> {
    let opened = client.open(&recording.path)?;
    anyhow::ensure!(
        opened.rows() == recording.events,
        "{}: evshm has {} events, the plan says {}",
        recording.path,
        opened.rows(),
        recording.events
    );
    for copied in [
        bytecopy.fetch_stream_reader(&recording.path)?,
        bytecopy.fetch_into_buffer(&recording.path)?,
    ] {
        anyhow::ensure!(
            copied.as_slice() == opened.batches(),
            "{}: the byte copy differs from the arena's",
            recording.path
        );
    }
    Ok(opened.info().chunks[0].extent.size)
}

fn bench_size(
    criterion: &mut Criterion,
    client: &evshm::Client,
    bytecopy: &mut BytecopyClient,
    recording: &Recording,
    segment_bytes: u64,
    samples: &mut Samples,
) {
    let path = recording.path.as_str();
    let mut group = criterion.benchmark_group(format!("attach/{}", recording.label));
    if segment_bytes > 64 << 20 {
        group.sampling_mode(SamplingMode::Flat).sample_size(10);
    }
    let key = |method: &str| format!("{}/{method}", recording.label);

    let evshm = samples.entry(key("evshm")).or_default();
    group.bench_function("evshm", |b| {
        b.iter_custom(|iters| timed(iters, evshm, || client.open(path).expect("evshm open")))
    });
    let reader = samples.entry(key("bytecopy_stream_reader")).or_default();
    group.bench_function("bytecopy_stream_reader", |b| {
        b.iter_custom(|iters| {
            timed(iters, reader, || bytecopy.fetch_stream_reader(path).expect("byte copy"))
        })
    });
    let buffer = samples.entry(key("bytecopy_buffer")).or_default();
    group.bench_function("bytecopy_buffer", |b| {
        b.iter_custom(|iters| {
            timed(iters, buffer, || bytecopy.fetch_into_buffer(path).expect("byte copy"))
        })
    });
    group.finish();
}

/// Where an evshm open spends its time, on one recording.
fn bench_parts(
    criterion: &mut Criterion,
    plan: &Plan,
    client: &evshm::Client,
    bytecopy: &mut BytecopyClient,
    recording: &Recording,
    samples: &mut Samples,
) -> anyhow::Result<()> {
    let path = recording.path.as_str();
    let opened = client.open(path)?;
    let info = wire_reply(&opened);
    let roots = evshmd::roots::Roots::new(std::slice::from_ref(&plan.root))?;
    let request_line = json!({ "op": "open", "path": path }).to_string().into_bytes();
    let mut group = criterion.benchmark_group("parts");

    // The whole open, split by the client's own timings.
    let (mut request, mut attach) = (Vec::new(), Vec::new());
    let open = samples.entry("parts/open".into()).or_default();
    group.bench_function("open", |b| {
        b.iter_custom(|iters| {
            timed(iters, open, || {
                let recording = client.open(path).expect("evshm open");
                let timings = recording.timings();
                request.push(timings.request);
                attach.push(timings.attach);
                recording
            })
        })
    });
    samples.insert("parts/open.request".into(), request);
    samples.insert("parts/open.attach".into(), attach);

    let cycle = samples.entry("parts/open_and_drop".into()).or_default();
    group.bench_function("open_and_drop", |b| {
        b.iter_custom(|iters| timed(iters, cycle, || drop(client.open(path).expect("evshm open"))))
    });
    let ping = samples.entry("parts/socket_round_trip".into()).or_default();
    group.bench_function("socket_round_trip", |b| {
        b.iter_custom(|iters| timed(iters, ping, || bytecopy.ping().expect("ping")))
    });
    let resolve = samples.entry("parts/daemon_resolve_stat".into()).or_default();
    group.bench_function("daemon_resolve_stat", |b| {
        b.iter_custom(|iters| {
            timed(iters, resolve, || {
                let resolved = roots.resolve(path).expect("resolve");
                std::fs::metadata(&resolved.file).expect("stat")
            })
        })
    });
    let json = samples.entry("parts/json".into()).or_default();
    group.bench_function("json", |b| {
        b.iter_custom(|iters| {
            timed(iters, json, || {
                let request = Request::parse(&request_line).expect("parse request");
                let line = reply_line(&info);
                let reply: OpenReply = parse_reply(&line[..line.len() - 1]).expect("parse reply");
                (request, reply)
            })
        })
    });
    // Decoding in place costs the same over any aligned buffer: an aligned copy of the
    // stream serves in every mode. (No mapping is timed: a warm open maps nothing, the
    // process has its arenas mapped already.)
    let stream = opened.streams().next().expect("one chunk");
    let mut copy = MutableBuffer::from_len_zeroed(stream.len());
    copy.as_slice_mut().copy_from_slice(stream);
    let copy = Buffer::from(copy);
    let decode = samples.entry("parts/decode".into()).or_default();
    group.bench_function("decode", |b| {
        b.iter_custom(|iters| {
            timed(iters, decode, || bytecopy::decode_buffer(copy.clone()).expect("decode"))
        })
    });
    group.finish();
    Ok(())
}

/// The `open` reply the daemon sent for `opened`, rebuilt from what the client keeps of
/// it, to time the protocol's parsing alone.
fn wire_reply(opened: &evshm::Recording) -> OpenReply {
    let info = opened.info();
    let schema = opened.schema();
    OpenReply {
        lease: 1,
        path: info.path.clone(),
        table: info.table,
        window: info.window,
        arenas: info.arenas.clone(),
        chunks: info.chunks.clone(),
        rows: opened.rows(),
        format: info.format.clone(),
        width: info.width,
        height: info.height,
        schema: (schema.fields().iter())
            .map(|f| FieldInfo {
                name: f.name().clone(),
                data_type: f.data_type().to_string().to_lowercase(),
            })
            .collect(),
        metadata: schema.metadata().clone().into_iter().collect(),
        cached: info.cached,
        dropped: info.dropped,
        skipped: info.skipped,
        gone: Vec::new(),
    }
}
