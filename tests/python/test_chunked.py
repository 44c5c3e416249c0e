"""Recordings served in many chunks by a real evshmd (``--chunk-events 1000``): whole
recordings and windows equal the whole decode, every column lies in the mappings, views of
a window inside a chunk are zero-copy, and the lease follows every mapping."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest

import evshm
import workers
from harness import (
    Daemon,
    arena_file,
    arena_mapping,
    assert_table_in_place,
    decode_whole,
    extent_ranges,
    real_manifest,
    time_bounds,
)

#: Events per chunk: chunks then end at the first 64 KiB step of input, so the real
#: recordings (0.6 and 2.2 MB) and small.raw come in tens of chunks.
CHUNK_EVENTS = 1000
#: The real recordings of more than one chunk at that size (EVT3 with time stepping back,
#: EVT2).
REAL = ["evt3_sample.raw", "evt2_sample.raw"]


@pytest.fixture
def daemon_args() -> list[str]:
    return ["--chunk-events", str(CHUNK_EVENTS)]


def expected_table(real: Path, name: str) -> pa.Table:
    entry = next(e for e in real_manifest() if e["file"] == name)
    with pa.ipc.open_file(real / entry["expected"]) as reader:
        return reader.read_all().select(["t", "x", "y", "p"])


def assert_same_rows(table: pa.Table, expected: pa.Table) -> None:
    """Column by column (the expected files declare their fields nullable, the daemon
    does not, and Table.equals would compare that flag too)."""
    assert table.num_rows == expected.num_rows
    for name in ("t", "x", "y", "p"):
        assert table.column(name).equals(expected.column(name)), name


def chunk_starts(rec: evshm.Recording) -> list[int]:
    """The first row of each of a whole recording's chunks, and the row count."""
    return [int(v) for v in np.cumsum([0] + [chunk.rows for chunk in rec.chunks])]


def window_rows(running: np.ndarray, t0: int, t1: int) -> tuple[int, int]:
    """The documented rule: rows from the first whose running maximum reaches ``t0`` up
    to the first whose running maximum reaches ``t1``."""
    lo, hi = np.searchsorted(running, [t0, t1], side="left")
    return int(lo), int(hi)


def address(array: np.ndarray) -> int:
    return int(array.__array_interface__["data"][0])


@pytest.mark.parametrize("name", REAL)
def test_a_recording_of_many_chunks_is_the_whole_decode_in_place(daemon: Daemon, real: Path,
                                                                  name: str):
    expected = expected_table(real, name)
    with daemon.client() as client, client.open(name) as rec:
        assert len(rec.chunks) > 3, len(rec.chunks)
        assert [chunk.index for chunk in rec.chunks] == list(range(len(rec.chunks)))
        assert all((c.start, c.end) == (0, c.rows) for c in rec.chunks)
        assert not rec.zero_copy
        assert_same_rows(rec.table, expected)
        for column in rec.table.columns:  # one Arrow chunk per extent
            assert [len(c) for c in column.chunks] == [c.rows for c in rec.chunks]
        # Every chunk an extent of its own, all in one arena mapped once.
        ranges = extent_ranges(rec)
        assert all(a[1] <= b[0] or b[1] <= a[0]
                   for i, a in enumerate(ranges) for b in ranges[i + 1:]), "disjoint"
        assert len({chunk.extent.arena for chunk in rec.chunks}) == 1
        assert_table_in_place(rec)
        # numpy copies across chunks; polars does not.
        assert np.array_equal(rec.numpy()["t"], expected.column("t").to_numpy())
        assert rec.polars()["x"].n_chunks() == len(rec.chunks)


def test_a_synthetic_recording_of_many_chunks(synthetic: Daemon, tmp_path: Path):
    expected = decode_whole(synthetic.root / "small.raw", tmp_path / "small.arrow")
    with synthetic.client() as client, client.open("small.raw") as rec:
        assert len(rec.chunks) > 3
        assert_same_rows(rec.table, expected)
        assert_table_in_place(rec)
        # Time windows and their tiling over chunk boundaries, cut here.
        tiles = list(rec.windows(duration=1_000))
        assert sum(w.rows for w in tiles) == rec.rows
        assert np.array_equal(np.concatenate([w.numpy()["t"] for w in tiles]),
                              expected.column("t").to_numpy())
        assert any(not w.zero_copy for w in tiles) and any(w.zero_copy for w in tiles)


@pytest.mark.parametrize("name", REAL)
def test_windows_served_by_the_daemon_follow_the_documented_rule(daemon: Daemon, real: Path,
                                                                  name: str):
    expected = expected_table(real, name)
    t = expected.column("t").to_numpy()
    running = np.maximum.accumulate(t)
    first, last = int(t[0]), int(running[-1])
    with daemon.client() as client:
        with client.open(name) as whole:
            starts = chunk_starts(whole)
            schema = whole.table.schema
        rng = np.random.default_rng(1)
        windows = [(int(a), int(a) + int(d)) for a, d in zip(
            rng.integers(first - 1_000, last + 1_000, 25), rng.integers(0, 3_000, 25))]
        for row in starts[1:-1]:  # on and around every chunk boundary
            at = int(t[row])
            windows += [(at, at + 50), (at - 50, at), (int(running[row - 1]), at),
                        (int(running[row - 1]), int(running[row - 1]) + 1)]
        windows += [(starts[1], starts[1]), (first, last + 1), (first - 10_000, first),
                    (first - 10_000, first + 1), (last, last + 1), (last + 1, last + 50_000),
                    (int(t[starts[1]]), int(t[starts[4]]))]
        for t0, t1 in windows:
            lo, hi = window_rows(running, t0, t1)
            rec = client.open(name, window=(t0, t1))
            assert (rec.rows, rec.window, rec.start) == (hi - lo, (t0, t1), 0), (t0, t1)
            assert_same_rows(rec.table, expected.slice(lo, hi - lo))
            assert rec.table.schema.equals(schema, check_metadata=True)
            # The chunks listed are exactly those holding rows lo..hi, sliced right.
            spanned = [k for k in range(len(starts) - 1)
                       if lo < hi and starts[k] < hi and lo < starts[k + 1]]
            assert [c.index for c in rec.chunks] == spanned, (t0, t1)
            for chunk in rec.chunks:
                first_row = starts[chunk.index]
                assert (chunk.start, chunk.end) == (max(lo - first_row, 0),
                                                   min(hi, starts[chunk.index + 1]) - first_row)
            assert rec.zero_copy == (len(spanned) <= 1)
            assert_table_in_place(rec)
            del rec
        gc.collect()
        assert client.stats()["leases"] == 0


def test_views_of_a_window_inside_one_chunk_are_zero_copy(daemon: Daemon, real: Path):
    pl = pytest.importorskip("polars")
    name = "evt2_sample.raw"
    t = expected_table(real, name).column("t").to_numpy()
    running = np.maximum.accumulate(t)
    with daemon.client() as client:
        with client.open(name) as whole:
            starts = chunk_starts(whole)
        # Well inside chunk 3: its rows, by the rule, lie in that chunk only.
        t0, t1 = int(running[starts[3] + 100]), int(running[starts[4] - 100])
        lo, hi = window_rows(running, t0, t1)
        assert starts[3] <= lo < hi <= starts[4]
        with client.open(name, window=(t0, t1)) as rec:
            assert rec.zero_copy and [c.index for c in rec.chunks] == [3]
            [(start, end)] = extent_ranges(rec)
            views: dict[str, np.ndarray] = rec.numpy()
            for array in views.values():
                assert start <= address(array) and address(array) + array.nbytes <= end
                assert not array.flags.writeable
            events = rec.events()
            assert start <= address(events.t) < end
            frame = rec.polars()
            assert isinstance(frame, pl.DataFrame) and frame.height == hi - lo
            for column in frame.columns:
                array = frame[column].to_numpy()
                assert start <= address(array) and address(array) + array.nbytes <= end
            try:
                import torch  # noqa: F401
            except ImportError:
                return  # torch views: where torch is installed (see test_torch.py)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                tensors = rec.torch()
            for tensor in tensors.values():
                assert start <= tensor.data_ptr() < end


def test_the_lease_follows_every_extent(daemon: Daemon, real: Path):
    name = "evt2_sample.raw"
    with daemon.client() as client:
        rec = client.open(name)
        [arena] = {chunk.extent.arena for chunk in rec.chunks}
        path = arena_file(rec.chunks[0].extent)
        starts = chunk_starts(rec)
        kept = rec.slice(starts[3] + 10, starts[3] + 110).numpy()["x"]  # inside chunk 3
        before = client.stats()
        rec.close()
        del rec
        gc.collect()
        # Only a view into chunk 3's extent is still reachable, and it holds the lease
        # of every extent of the open: evict drops none of them.
        assert client.stats()["leases"] == 1
        assert client.evict()["evicted"] == 0
        assert client.stats()["extents"] == before["extents"]
        assert len(kept) == 100
        del kept
        gc.collect()
        assert client.stats()["leases"] == 0
        assert client.evict()["evicted"] == len(starts) - 1
        # The process keeps its one mapping of the arena (nothing of it is read now).
        arena_mapping(arena)
        assert workers.mappings_of(path) == 1


def test_thousands_of_window_opens_leave_no_mapping(synthetic: Daemon):
    pl = pytest.importorskip("polars")
    client = synthetic.client()
    with client.open("small.raw") as rec:
        [arena] = {arena_file(chunk.extent) for chunk in rec.chunks}
        first, last = time_bounds(rec)
    cycles = 2000
    step = (last - first) // cycles
    total = 0
    for i in range(cycles):
        t0 = first + i * step
        rec = client.open("small.raw", window=(t0, t0 + 3 * step))
        cols = rec.numpy()
        frame = rec.polars() if i % 10 == 0 else pl.DataFrame()
        total += len(cols["t"]) + frame.height
        if i % 2:
            rec.close()
        del rec, cols, frame
    gc.collect()
    assert total > 0
    # One mapping of the arena, made by the first open: the 2,000 others mapped nothing.
    assert workers.mappings_of(arena) == 1
    assert client.stats()["leases"] == 0
    client.close()
