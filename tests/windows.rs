//! Recordings served in chunks, and time windows of them: only the chunks a window
//! touches are decoded, the rows are exactly those of the definition, zero-copy, and a
//! recording larger than the memory budget can be read window by window.

use std::path::Path;
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use evshm::ErrorCode;
use evshm_formats::synth::{Synth, SynthConfig};
use evshm_formats::{DatEncoder, Event, Evt3Encoder, Geometry};

use crate::util::real::{real_data, rows};
use crate::util::{Daemon, TempDir};
use crate::{assert_zero_copy, daemon_code};

/// The 24-bit EVT3 clock wraps here.
const EVT3_WRAP: i64 = 1 << 24;

/// Events at 2 Mev/s from 100 ms before the EVT3 clock wraps.
fn across_the_wrap(events: u64) -> Vec<Event> {
    let config =
        SynthConfig { events, rate: 2e6, t0: EVT3_WRAP - 100_000, ..SynthConfig::default() };
    Synth::new(config).collect()
}

/// Like [`across_the_wrap`], with every fifth event 20 µs early, as real sensors' readout
/// sometimes is (within one clock loop, which EVT3 requires).
fn jittered_across_the_wrap(events: u64) -> Vec<Event> {
    let mut events = across_the_wrap(events);
    for event in events.iter_mut().step_by(5) {
        if (event.t - 20) >> 24 == event.t >> 24 {
            event.t -= 20;
        }
    }
    events
}

fn write_evt3(path: &Path, events: &[Event]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut encoder = Evt3Encoder::new(file, Geometry { width: 1280, height: 720 }).unwrap();
    events.iter().for_each(|e| encoder.push(e).unwrap());
    encoder.finish().unwrap();
}

/// The `t` column of every batch of a recording, in order.
fn times(recording: &evshm::Recording) -> Vec<i64> {
    let batches = recording.batches().iter();
    batches.flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
}

/// The rows of `[start, end)` by the definition: from the first `t >= start` to the
/// first `t >= end`.
fn window_of(all: &[i64], start: i64, end: i64) -> &[i64] {
    let first = |t: i64| all.iter().position(|&x| x >= t).unwrap_or(all.len());
    let from = first(start);
    &all[from..first(end).max(from)]
}

#[test]
fn windows_equal_slicing_the_whole_decode_and_touch_only_their_chunks() {
    let events = jittered_across_the_wrap(400_000);
    let daemon =
        Daemon::start_with(None, &["--chunk-events", "30000", "--read-ahead", "0"], |root| {
            write_evt3(&root.join("wrap.raw"), &events)
        });
    let client = daemon.client();
    let first = client.open_window("wrap.raw", EVT3_WRAP, EVT3_WRAP + 1000).unwrap();
    let decoded = client.stats().unwrap().decodes;
    assert!(!first.info().chunks.is_empty() && first.info().chunks.len() <= 2);
    assert_eq!(decoded, first.info().chunks.len() as u64, "a window decodes only its chunks");
    assert_zero_copy(&first);

    let whole = client.open("wrap.raw").unwrap();
    assert_zero_copy(&whole);
    let all = times(&whole);
    let expected: Vec<i64> = events.iter().map(|e| e.t).collect();
    assert_eq!(all, expected, "the chunks joined are the whole recording");
    let chunks = whole.info().chunks.clone();
    assert!(chunks.len() >= 10, "{} chunks", chunks.len());
    assert!(all.iter().any(|&t| t >= EVT3_WRAP) && all[0] < EVT3_WRAP);
    assert!(all.windows(2).any(|w| w[1] < w[0]), "time steps back");

    // Windows on chunk boundaries, across the wrap, empty, before and past the ends, and
    // spanning many chunks.
    let mut row = 0;
    let mut boundaries = Vec::new();
    for chunk in &chunks {
        boundaries.push(all[row as usize]);
        row += chunk.rows;
    }
    let (t_first, t_last) = (all[0], *all.iter().max().unwrap());
    let mut windows = vec![
        (EVT3_WRAP - 5_000, EVT3_WRAP + 5_000),
        (t_first - 1_000, t_first),
        (t_first - 1_000, t_first + 1),
        (t_last, t_last + 1),
        (t_last + 1, t_last + 1_000),
        (t_first, t_last + 1),
        (i64::MIN, i64::MAX),
        (boundaries[3], boundaries[3]),
    ];
    for pair in boundaries.windows(2) {
        windows.push((pair[0], pair[1]));
        windows.push((pair[0] - 7, pair[1] + 7));
    }
    for (start, end) in windows {
        let window = client.open_window("wrap.raw", start, end).unwrap();
        let got = times(&window);
        assert_eq!(got, window_of(&all, start, end), "window [{start}, {end})");
        assert_eq!(window.rows(), got.len() as u64);
        assert!(window.info().chunks.iter().all(|c| c.start < c.end), "only chunks with rows");
        assert_zero_copy(&window);
    }
    let reversed = client.open_window("wrap.raw", 10, 5).unwrap_err();
    assert_eq!(daemon_code(reversed), ErrorCode::BadRequest);
}

#[test]
fn back_to_back_windows_of_a_real_recording_cover_every_row_once() {
    let Some(dir) = real_data() else { return };
    let daemon = Daemon::start_with(None, &["--chunk-events", "1"], |root| {
        std::fs::copy(dir.join("evt3_sample.raw"), root.join("real.raw")).unwrap();
    });
    let expected: Vec<i64> =
        rows(&crate::util::real::read_ipc_file(&dir.join("evt3_sample.raw.expected.arrow")))
            .into_iter()
            .map(|r| r.0)
            .collect();
    let client = daemon.client();
    let whole = client.open("real.raw").unwrap();
    assert!(whole.info().chunks.len() > 3);
    assert_eq!(times(&whole), expected);
    let (lo, hi) = (expected[0], *expected.iter().max().unwrap());
    let step = (hi - lo) / 37;
    // Back-to-back windows cover every row once.
    let mut joined = Vec::new();
    let mut start = lo;
    while start <= hi {
        let window = client.open_window("real.raw", start, start + step).unwrap();
        let got = times(&window);
        assert_eq!(got, window_of(&expected, start, start + step));
        joined.extend(got);
        start += step;
    }
    assert_eq!(joined, expected);
}

#[test]
fn a_recording_larger_than_the_budget_is_read_window_by_window_within_it() {
    let events = across_the_wrap(600_000);
    let tmp = TempDir::new("budget-windows");
    let probe = tmp.path().join("probe");
    std::fs::create_dir(&probe).unwrap();
    // Chunks of ~100k events: about 1.3 MB each; a budget of 3.5 chunks for 6 of them.
    let budget = "4600000";
    let args = ["--chunk-events", "100000", "--memory-budget", budget, "--budget-wait", "1"];
    let daemon = Daemon::start_with(None, &args, |root| write_evt3(&root.join("big.raw"), &events));
    let client = daemon.client();
    let refused = client.open("big.raw").unwrap_err();
    assert_eq!(daemon_code(refused), ErrorCode::OverBudget, "the whole does not fit");

    let expected: Vec<i64> = events.iter().map(|e| e.t).collect();
    let (t_first, t_last) = (expected[0], *expected.last().unwrap());
    let mut read = Vec::new();
    let mut start = t_first;
    let mut read_ahead_seen = false;
    while start <= t_last {
        let window = client.open_window("big.raw", start, start + 20_000).unwrap();
        read_ahead_seen |= window.info().cached && !read.is_empty();
        read.extend(times(&window));
        let stats = client.stats().unwrap();
        assert!(
            stats.bytes_resident <= stats.memory_budget,
            "{} bytes resident, budget {}",
            stats.bytes_resident,
            stats.memory_budget
        );
        drop(window);
        start += 20_000;
    }
    assert_eq!(read, expected, "every event read once, in order");
    let stats = client.stats().unwrap();
    assert!(stats.evictions > 0, "chunks were evicted to stay within the budget");
    assert!(read_ahead_seen, "reading forward found chunks decoded ahead");
}

/// A window across a chunk boundary needs both chunks at once: when they do not fit the
/// budget together, the refusal says so, and how much budget the window needs (reading by
/// windows, the advice for a whole recording, is no advice for a window). The amount it
/// names is enough: a daemon with that budget serves the window.
#[test]
fn a_window_across_two_chunks_over_the_budget_is_told_the_budget_it_needs() {
    let events = across_the_wrap(300_000);
    // Chunks of 100k to about 130k events, 1.3 to 1.7 MB decoded: one fits, two do not.
    let serve = |budget: &str| {
        let args = ["--chunk-events", "100000", "--memory-budget", budget, "--budget-wait", "0.2"];
        Daemon::start_with(None, &args, |root| write_evt3(&root.join("two.raw"), &events))
    };
    let daemon = serve("2500000");
    let client = daemon.client();
    let inside = client.open_window("two.raw", events[10].t, events[20_000].t).unwrap();
    assert_eq!(inside.info().chunks.len(), 1);
    drop(inside);
    // From the middle of chunk 0 into chunk 1 (chunk 0 ends before event 130k or so,
    // chunk 1 after event 200k).
    let (start, end) = (events[50_000].t, events[150_000].t);
    let refused = client.open_window("two.raw", start, end).unwrap_err();
    let message = refused.to_string();
    assert_eq!(daemon_code(refused), ErrorCode::OverBudget);
    let expected = format!(
        "two.raw: the window [{start}, {end}) spans chunks 0 and 1 (it crosses the boundary \
         between them, so both must be resident at once), whose chunks need "
    );
    assert!(message.contains(&expected), "{message}");
    assert!(!message.contains("time windows"), "{message}");
    let needed = (message.split("raise --memory-budget to at least ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no budget named: {message}"));
    drop(daemon);

    let enough = serve(needed);
    let window = enough.client().open_window("two.raw", start, end).unwrap();
    assert_eq!(window.info().chunks.len(), 2, "the window spans two chunks");
}

#[test]
fn read_ahead_decodes_the_next_chunk_of_a_forward_reader() {
    let events = across_the_wrap(200_000);
    let daemon = Daemon::start_with(None, &["--chunk-events", "30000"], |root| {
        write_evt3(&root.join("ahead.raw"), &events)
    });
    let whole = evshm::Client::connect(&daemon.socket).unwrap().open("ahead.raw").unwrap();
    let chunks = whole.info().chunks.clone();
    let all = times(&whole);
    drop(whole);
    // A time in the middle of each chunk.
    let mut middles = Vec::new();
    let mut row = 0;
    for chunk in &chunks {
        middles.push(all[(row + chunk.rows / 2) as usize]);
        row += chunk.rows;
    }
    let fresh = Daemon::start_with(None, &["--chunk-events", "30000"], |root| {
        write_evt3(&root.join("ahead.raw"), &events)
    });
    let client = fresh.client();
    drop(client.open_window("ahead.raw", middles[0], middles[0] + 10).unwrap());
    drop(client.open_window("ahead.raw", middles[1], middles[1] + 10).unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.stats().unwrap().decodes < 3 {
        assert!(Instant::now() < deadline, "the next chunk was never decoded ahead");
        std::thread::sleep(Duration::from_millis(5));
    }
    let next = client.open_window("ahead.raw", middles[2], middles[2] + 10).unwrap();
    assert!(next.info().cached, "the next window finds its chunk decoded");
    assert_eq!(next.info().chunks[0].index, 2);
    drop(daemon);
}

#[test]
fn sealed_recordings_of_hundreds_of_chunks_arrive_with_one_reply() {
    // At 2.6 bytes per event, a 64 KiB step holds ~25k events: 7.5 M events make ~300
    // chunks, more descriptors than one message carries.
    let events = across_the_wrap(7_500_000);
    let daemon = Daemon::start_with(None, &["--sealed", "--chunk-events", "1"], |root| {
        write_evt3(&root.join("many.raw"), &events)
    });
    let whole = daemon.client().open("many.raw").unwrap();
    assert!(whole.info().chunks.len() > 250, "{} chunks", whole.info().chunks.len());
    assert!(whole.info().arenas.iter().all(|a| a.path.is_none()));
    assert!(whole.info().arenas.len() <= 2, "{} arenas", whole.info().arenas.len());
    assert_zero_copy(&whole);
    assert_eq!(whole.rows(), events.len() as u64);
    let first_and_last = (times(&whole)[0], *times(&whole).last().unwrap());
    assert_eq!(first_and_last, (events[0].t, events.last().unwrap().t));
}

#[test]
fn chunks_can_be_bounded_in_time() {
    // 300k events at 2 Mev/s span 150 ms. A chunk ends at the first 64 KiB step (~13 ms
    // at this rate) after it spans 10 ms, and the first measures from its first step: at
    // most ~36 ms each, at least 6 of them.
    let events = across_the_wrap(300_000);
    let args = ["--chunk-events", "100000000", "--chunk-span", "10000"];
    let daemon =
        Daemon::start_with(None, &args, |root| write_evt3(&root.join("span.raw"), &events));
    let whole = daemon.client().open("span.raw").unwrap();
    assert!(whole.info().chunks.len() >= 6, "{} chunks", whole.info().chunks.len());
    for batch in whole.batches() {
        let t = batch.column(0).as_primitive::<Int64Type>().values();
        let span = t.iter().max().unwrap() - t.iter().min().unwrap();
        assert!(span < 10_000 + 30_000, "a chunk spans {span} µs");
    }
    assert_eq!(times(&whole), events.iter().map(|e| e.t).collect::<Vec<_>>());
}

#[test]
fn the_index_goes_only_as_far_into_the_file_as_requests_need() {
    // 2.5 M DAT events: 20 MB, indexed 8 MiB at a time.
    let events = across_the_wrap(2_500_000);
    let daemon = Daemon::start_with(None, &["--chunk-events", "100000"], |root| {
        let file = std::io::BufWriter::new(std::fs::File::create(root.join("long.dat")).unwrap());
        let mut encoder = DatEncoder::new(file, Geometry { width: 1280, height: 720 }).unwrap();
        events.iter().for_each(|e| encoder.push(e).unwrap());
        encoder.finish().unwrap();
    });
    let size = std::fs::metadata(daemon.root().join("long.dat")).unwrap().len();
    let client = daemon.client();
    let (first, last) = (events[0].t, events.last().unwrap().t);
    let early = client.open_window("long.dat", first, first + 1000).unwrap();
    assert_eq!(
        times(&early),
        window_of(&events.iter().map(|e| e.t).collect::<Vec<_>>(), first, first + 1000)
    );
    let indexed = client.stats().unwrap().bytes_indexed;
    assert!(indexed > 0 && indexed < size / 2, "{indexed} of {size} bytes indexed");
    let late = client.open_window("long.dat", last - 1000, last + 1).unwrap();
    assert_eq!(times(&late).last(), Some(&last));
    let indexed = client.stats().unwrap().bytes_indexed;
    assert_eq!(indexed, events.len() as u64 * 8, "every record indexed, the header not");
    drop(client.open_window("long.dat", first, last).unwrap());
    assert_eq!(client.stats().unwrap().bytes_indexed, indexed, "the index is built once");
}
