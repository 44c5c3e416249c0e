"""Views and windows of recordings served by a real evshmd: zero-copy (checked against
/proc/self/maps), correct (against the expected decodes), and leaving nothing behind."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc
import pytest

import workers
from harness import Daemon, arena_file, extent_ranges, real_manifest


def assert_in(bounds: tuple[int, int], address: int, nbytes: int) -> None:
    assert bounds[0] <= address and address + nbytes <= bounds[1]


def test_every_view_lies_inside_the_mapping(synthetic: Daemon):
    pl = pytest.importorskip("polars")
    with synthetic.client() as client, client.open("small.raw") as rec:
        [bounds] = extent_ranges(rec)  # the extent in the arena's one mapping
        cols = rec.numpy()
        for array in cols.values():
            assert_in(bounds, array.__array_interface__["data"][0], array.nbytes)
            assert not array.flags.writeable
        frame = rec.polars()
        assert isinstance(frame, pl.DataFrame) and frame.height == 200_000
        for name in frame.columns:
            array = frame[name].to_numpy()
            assert_in(bounds, array.__array_interface__["data"][0], array.nbytes)
            assert np.array_equal(array, cols[name])
        window = rec.time_window(10_001_000, 10_002_000)
        assert 0 < window.rows < rec.rows
        for array in window.numpy().values():
            assert_in(bounds, array.__array_interface__["data"][0], array.nbytes)
        try:
            import torch  # noqa: F401
        except ImportError:
            return  # torch views: tested where torch is installed (see test_torch.py)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            tensors = rec.torch()
        for name, tensor in tensors.items():
            assert_in(bounds, tensor.data_ptr(), tensor.numel() * tensor.element_size())
            assert np.array_equal(tensor.numpy(), cols[name])


def test_thousands_of_open_and_drop_cycles_leave_nothing_behind(synthetic: Daemon):
    pl = pytest.importorskip("polars")
    client = synthetic.client()
    with client.open("small.raw") as rec:
        [arena] = [arena_file(chunk.extent) for chunk in rec.chunks]
        expected_x = int(rec.numpy()["x"].sum(dtype=np.int64))
    cycles = 2000
    for i in range(cycles):
        rec = client.open("small.raw")
        cols = rec.numpy()
        assert int(cols["x"].sum(dtype=np.int64)) == expected_x if i % 500 == 0 else True
        frame = rec.polars() if i % 4 == 0 else pl.DataFrame()
        window = rec.slice(i, i + 100)
        assert window.rows == 100 and frame.height in (0, 200_000)
        if i % 2:
            rec.close()
        del rec, cols, frame, window
    gc.collect()
    # The arena stays mapped once (the next open maps nothing), not once per open.
    assert workers.mappings_of(arena) == 1
    stats = client.stats()
    assert stats["leases"] == 0
    assert stats["opens"] == cycles + 1 and stats["decodes"] == 1
    client.close()


def expected_table(real: Path, name: str) -> pa.Table:
    entry = next(e for e in real_manifest() if e["file"] == name)
    with pa.ipc.open_file(real / entry["expected"]) as reader:
        return reader.read_all()


@pytest.mark.parametrize("name", ["evt3_sample.raw", "evt2_sample.raw"])
def test_time_windows_of_real_recordings(daemon: Daemon, real: Path, name: str):
    expected = expected_table(real, name)
    t = expected.column("t").to_numpy()
    running = np.maximum.accumulate(t)
    first, last = int(t[0]), int(running[-1])
    with daemon.client() as client:
        with client.open(name) as rec:
            assert rec.time_bounds == (first, last)
            windows = list(rec.windows(duration=(last - first) // 7 + 1))
            assert len(windows) == 7 and sum(w.rows for w in windows) == rec.rows
        for t0, t1 in [(first, first + 1_000), (first + 2_345, last - 999), (last, last + 1)]:
            lo, hi = np.searchsorted(running, [t0, t1])
            with client.open(name, window=(t0, t1)) as window:
                assert (window.start, window.rows, window.window) == (0, hi - lo, (t0, t1))
                for column in "txyp":
                    assert np.array_equal(window.numpy()[column],
                                          expected.column(column).to_numpy()[lo:hi])
        assert client.stats()["leases"] == 1  # the windows of the first open live on
        del windows
        gc.collect()
        assert client.stats()["leases"] == 0


def test_events_and_transforms_on_a_real_window(daemon: Daemon, real: Path):
    from evshm.transforms import EventHistogram, VoxelGrid

    expected = expected_table(real, "evt3_test_pedestrians.raw")
    with daemon.client() as client, client.open("evt3_test_pedestrians.raw") as rec:
        events = rec.events()
        assert (events.width, events.height, len(events)) == (1280, 720, 5000)
        histogram = EventHistogram()(events)
        assert histogram.shape == (2, 720, 1280) and histogram.sum() == 5000
        on = int((expected.column("p").to_numpy() == 1).sum())
        assert histogram[1].sum() == on
        grid = VoxelGrid(5)(events)
        assert grid.shape == (5, 720, 1280)
        assert grid.sum(dtype=np.float64) == pytest.approx(on - (5000 - on), abs=1e-2)
