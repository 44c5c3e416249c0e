"""numpy / polars / torch views and windows: zero-copy, read-only, and holding the lease."""

from __future__ import annotations

import gc
import sys
import warnings
from typing import Any

import numpy as np
import pytest

import evshm
from fakes import assert_inside, jittery_table, mappings_of

try:
    import torch
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False

needs_torch = pytest.mark.skipif(
    not HAVE_TORCH, reason="torch is not installed (pip install 'evshm[torch]'): "
                          "the torch views are not tested here")


# ----------------------------------------------------------------------- views


def test_numpy_views_point_into_the_mapping(fake):
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        cols = rec.numpy()
        assert list(cols) == ["t", "x", "y", "p"]
        assert [a.dtype for a in cols.values()] == [np.int64, np.int16, np.int16, np.int8]
        for name, array in cols.items():
            assert_inside(rec, array.__array_interface__["data"][0], array.nbytes)
            assert not array.flags.writeable
            with pytest.raises(ValueError):
                array.flags.writeable = True  # the base is read-only memory
            assert array.tolist() == rec.table.column(name).to_pylist()
        assert cols["t"][:3].tolist() == [0, 1, 2]


def test_polars_frame_points_into_the_mapping(fake):
    pl = pytest.importorskip("polars")
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        frame = rec.polars()
        assert isinstance(frame, pl.DataFrame)
        assert frame.columns == ["t", "x", "y", "p"]
        assert frame.height == rec.rows
        for name in frame.columns:
            array = frame[name].to_numpy()  # zero-copy export of polars' own buffer
            assert_inside(rec, array.__array_interface__["data"][0], array.nbytes)
        assert frame["x"].to_list() == rec.table.column("x").to_pylist()
        assert frame.filter(pl.col("p") == 1).height == int(rec.numpy()["p"].sum(dtype=np.int64))


@needs_torch
def test_torch_tensors_point_into_the_mapping_without_warning(fake):
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's non-writable warning would raise
            tensors = rec.torch()
        assert [t.dtype for t in tensors.values()] == [
            torch.int64, torch.int16, torch.int16, torch.int8]
        for name, tensor in tensors.items():
            assert_inside(rec, tensor.data_ptr(), tensor.numel() * tensor.element_size())
            assert tensor.tolist() == rec.table.column(name).to_pylist()


def test_missing_extra_names_what_to_install(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "polars", None)  # makes `import polars` fail
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        with pytest.raises(ImportError, match=r"evshm\[polars\]"):
            rec.polars()


@pytest.mark.parametrize("kind", ["numpy", "polars", "torch", "window", "events"])
def test_each_view_holds_the_lease_until_it_dies(fake, kind: str):
    if kind == "polars":
        pytest.importorskip("polars")
    if kind == "torch" and not HAVE_TORCH:
        pytest.skip("torch is not installed (pip install 'evshm[torch]')")
    with evshm.Client("/fake.sock") as client:
        rec = client.open("a.raw")
        [path] = fake.arenas
        if kind == "numpy":
            view: Any = rec.numpy()["x"]
        elif kind == "polars":
            view = rec.polars()
        elif kind == "torch":
            view = rec.torch()["t"]
        elif kind == "window":
            view = rec.slice(10, 20)
        else:
            view = rec.time_window(5, 9).events().t
        rec.close()
        del rec
        gc.collect()
        assert fake.leases == 1 and mappings_of(path) == 1
        assert (view.rows if kind == "window" else len(view)) > 0  # still readable
        del view
        gc.collect()
        # The lease is gone; the arena stays mapped for the client's next opens.
        assert fake.leases == 0 and mappings_of(path) == 1
    gc.collect()
    assert mappings_of(path) == 0, "unmapped with the connection that named it"


def test_closing_everything_while_views_live_raises_nothing(fake):
    pl = pytest.importorskip("polars")
    client = evshm.Client("/fake.sock")
    rec = client.open("a.raw")
    cols, frame, window = rec.numpy(), rec.polars(), rec.slice(100, 200)
    rec.close()
    rec.close()
    client.close()  # no BufferError: nothing calls mmap.close() under live buffers
    assert cols["t"][-1] == 999 and frame["t"][500] == 500
    assert window.numpy()["t"].tolist() == list(range(100, 200))
    assert isinstance(frame, pl.DataFrame)
    [path] = fake.arenas
    del cols, frame, window
    gc.collect()
    assert mappings_of(path) == 0 and fake.leases == 0
    assert fake.sockets[0].closed  # the client was closed: its connection went last


def test_thousands_of_open_and_drop_cycles_leave_one_mapping(fake):
    pl = pytest.importorskip("polars")
    client = evshm.Client("/fake.sock")
    [path] = fake.arenas
    total = 0
    for i in range(2000):
        rec = client.open("a.raw")
        cols = rec.numpy()
        frame = rec.polars() if i % 10 == 0 else pl.DataFrame()
        window = rec.time_window(i % 500, i % 500 + 100)
        total += int(cols["x"][i % 1000]) + frame.height + window.rows
        if i % 3 == 0:
            rec.close()  # sometimes explicitly, sometimes not at all
        del rec, cols, frame, window
    gc.collect()
    assert total > 0
    assert mappings_of(path) == 1, "mapped once, for every open"
    assert fake.leases == 0
    releases = sum(sock.ops().count("release") for sock in fake.sockets)
    assert releases == 2000
    client.close()
    gc.collect()
    assert mappings_of(path) == 0


# ----------------------------------------------------------------------- windows


def test_time_windows_follow_the_running_maximum(fake):
    table = jittery_table()
    fake.serve(table)
    t = table.column("t").to_numpy()
    running = np.maximum.accumulate(t)
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        assert rec.time_bounds == (int(t[0]), int(t.max()))
        for t0, t1 in [(5_000, 5_100), (5_050, 6_000), (0, 10), (7_000, 7_000),
                       (int(t[0]), int(t.max()) + 1)]:
            lo, hi = np.searchsorted(running, [t0, t1])
            window = rec.time_window(t0, t1)
            assert (window.start, window.rows, window.window) == (lo, hi - lo, (t0, t1))
            assert window.numpy()["t"].tolist() == t[lo:hi].tolist()
            if window.rows:
                assert_inside(rec, window.numpy()["t"].__array_interface__["data"][0], 8)
                base = rec.numpy()["t"].__array_interface__["data"][0]
                assert window.numpy()["t"].__array_interface__["data"][0] == base + 8 * lo
            events = window.events()
            assert (events.t0, events.t1, events.width, events.height) == (t0, t1, 640, 480)


def test_open_with_a_window_returns_the_same_rows(fake):
    fake.serve(jittery_table())
    with evshm.Client("/fake.sock") as client:
        with client.open("a.raw") as whole:
            expected = whole.time_window(5_200, 5_900)
            rows = expected.numpy()["x"].tolist()
            del expected
        with client.open("a.raw", window=(5_200, 5_900)) as window:
            assert fake.sockets[0].requests[-1]["window"] == [5_200, 5_900]
            assert window.window == (5_200, 5_900)
            assert window.start == 0  # the first of the rows the daemon served
            assert window.numpy()["x"].tolist() == rows
            assert "window=[5200, 5900)" in repr(window)
        with pytest.raises(ValueError, match="ends before"):
            client.open("a.raw", window=(10, 5))
        with pytest.raises(TypeError, match="integers"):
            client.open("a.raw", window=(10.5, 20))  # type: ignore[arg-type]
        assert fake.sockets[0].ops().count("open") == 2  # refused before any request
        gc.collect()
        assert fake.leases == 0


def test_windows_tile_the_recording(fake):
    fake.serve(jittery_table())
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        by_time = list(rec.windows(duration=250))
        assert by_time[0].start == 0
        assert sum(w.rows for w in by_time) == rec.rows
        for before, after in zip(by_time, by_time[1:]):
            assert before.start + before.rows == after.start
            assert before.window is not None and after.window is not None
            assert before.window[1] == after.window[0]
        by_count = list(rec.windows(events=1000))
        assert [w.rows for w in by_count] == [1000, 1000, 1000]
        assert [w.rows for w in rec.windows(events=700, drop_last=True)] == [700] * 4
        assert [w.start for w in rec.windows(events=1000, stride=500)] == [
            0, 500, 1000, 1500, 2000, 2500]
        with pytest.raises(ValueError, match="exactly one"):
            rec.windows(duration=5, events=5)


def test_slice_is_positional_like_a_list(fake):
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        assert rec.slice(990).numpy()["t"].tolist() == list(range(990, 1000))
        assert rec.slice(-3).numpy()["t"].tolist() == [997, 998, 999]
        assert rec.slice(5, 2).rows == 0
        inner = rec.slice(100, 200).slice(10, 20)
        assert inner.start == 110 and inner.numpy()["t"][0] == 110
        assert inner.slice(0, 0).numpy()["t"].tolist() == []
