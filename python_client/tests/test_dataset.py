"""EventWindows over given windows (``windows=``), against the fake daemon: checked when
built without connecting, each item the daemon's window and nothing else, its lease
following the item, and the modes kept apart."""

from __future__ import annotations

import gc
import pathlib
import pickle
from typing import Any

import numpy as np
import pytest

import evshm
from evshm._dataset import WindowArg
from fakes import FakeDaemon, jittery_table, window_rows

CHUNK = 700  # rows per chunk of the 3000-row jittery table: 4 chunks and a short one


def served(fake: FakeDaemon) -> np.ndarray:
    """Serve the jittery table (time steps back) in chunks; return its ``t``."""
    table = jittery_table()
    fake.serve(table, chunk_rows=CHUNK)
    return table.column("t").to_numpy()


def opens(fake: FakeDaemon) -> list[dict[str, Any]]:
    return [r for sock in fake.sockets for r in sock.requests if r["op"] == "open"]


@pytest.mark.parametrize("kwargs, named", [
    ({"paths": ["a.raw"]}, "paths="),
    ({"duration": 50_000}, "duration="),
    ({"events": 1000}, "events="),
    ({"stride": 10}, "stride="),
    ({"drop_last": True}, "drop_last="),
])
def test_given_windows_exclude_the_other_mode(fake: FakeDaemon, kwargs: dict[str, Any],
                                              named: str):
    with pytest.raises(ValueError, match=f"cannot be combined with {named}"):
        evshm.EventWindows(windows=[("a.raw", 0, 10)], socket_path="/fake.sock", **kwargs)
    with pytest.raises(ValueError, match=r"exactly one of duration= .* or windows="):
        evshm.EventWindows(["a.raw"], socket_path="/fake.sock")
    assert fake.sockets == []  # refused before connecting


@pytest.mark.parametrize("window, error, message", [
    (("a.raw", 0.5, 10), TypeError, "must be integers"),
    (("a.raw", 0, "10"), TypeError, "must be integers"),
    (("a.raw", True, 10), TypeError, "must be integers"),
    (("a.raw", 10, 9), ValueError, "ends before it starts"),
    (("a.raw", 0, 1 << 63), ValueError, "does not fit in 64 bits"),
    (("a.raw", 0), TypeError, r"a window is \(path, t_start, t_end\)"),
    (5, TypeError, r"a window is \(path, t_start, t_end\)"),
    ((7, 0, 10), TypeError, "expected str, bytes or os.PathLike"),
    (("", 0, 10), ValueError, "the path is empty"),
])
def test_given_windows_are_checked_when_built(fake: FakeDaemon, window: Any, error: type,
                                              message: str):
    good = ("a.raw", 0, 10)
    with pytest.raises(error, match=message) as caught:
        evshm.EventWindows(windows=[good, window], socket_path="/fake.sock")
    assert str(caught.value).startswith(f"windows[1] = {window!r}: ")
    assert fake.sockets == []


def test_each_item_is_the_daemons_window_and_nothing_whole_is_opened(fake: FakeDaemon):
    t = served(fake)
    first, last = int(t[0]), int(np.maximum.accumulate(t)[-1])
    labels = [first + 5, first + 700, first + 2000, last - 3]
    given: list[WindowArg] = [("a.raw", np.int64(label - 40), label + 40) for label in labels]
    given += [(b"b.raw", first, first + 1000), (pathlib.Path("a.raw"), first - 100, first),
              ("a.raw", last + 1, last + 100), ("b.raw", first, first)]
    windows = evshm.EventWindows(windows=given, socket_path="/fake.sock")
    assert fake.sockets == []  # building needs no daemon
    assert (len(windows), windows.paths, windows.explicit, windows.by_time) == (
        len(given), ["a.raw", "b.raw"], True, True)
    assert windows.length is None
    assert windows.window(-1) == ("b.raw", first, first)
    assert repr(windows) == "<EventWindows 8 given windows over 2 recordings>"
    for i, (_, t0, t1) in enumerate(given):
        lo, hi = window_rows(t.tolist(), int(t0), int(t1))
        rec = windows[i]
        assert (rec.window, rec.rows) == ((t0, t1), hi - lo)
        assert rec.table.equals(fake.table.slice(lo, hi - lo))
    requests = opens(fake)
    assert [r["window"] for r in requests] == [[int(t0), t1] for _, t0, t1 in given]
    assert [r["path"] for r in requests] == ["a.raw"] * 4 + ["b.raw", "a.raw", "a.raw",
                                                            "b.raw"]
    assert len(fake.sockets) == 1  # one connection for the process
    windows.close()


def test_a_given_window_is_released_with_the_item(fake: FakeDaemon):
    t = served(fake)
    inside = (int(t[100]), int(t[200]))         # within chunk 0
    across = (int(t[CHUNK - 50]), int(t[CHUNK + 50]))  # chunks 0 and 1
    windows = evshm.EventWindows(windows=[("a.raw", *inside), ("a.raw", *across)],
                                 socket_path="/fake.sock")
    # (Not `assert windows[i]...`: pytest's assert rewriting would keep the item.)
    zero_copy = [windows[i].zero_copy for i in range(len(windows))]
    assert zero_copy == [True, False] and fake.leases == 0  # released with each item
    kept = windows[0].numpy()["x"]  # a zero-copy view holds the lease...
    assert fake.leases == 1
    copied = windows[1].numpy()["x"]  # ...a copy across chunks does not
    assert fake.leases == 1
    del kept
    gc.collect()
    assert fake.leases == 0 and len(copied) > 0
    windows.close()


def test_given_windows_pickle_small_and_read_over_their_own_connection(fake: FakeDaemon):
    t = served(fake)
    given = [("a.raw", int(s), int(s) + 30) for s in t[::10]]
    windows = evshm.EventWindows(windows=given, socket_path="/fake.sock")
    data = pickle.dumps(windows)
    assert len(data) < 16 * len(given) + 2048  # two int64 and an int32 a window
    clone = pickle.loads(data)
    assert [clone.window(i) for i in range(len(clone))] == given
    assert clone[7].table.equals(windows[7].table)
    assert len(fake.sockets) == 2
    clone.close()
    windows.close()


def test_an_empty_list_of_windows(fake: FakeDaemon):
    windows = evshm.EventWindows(windows=iter(()), socket_path="/fake.sock")
    assert (len(windows), windows.paths) == (0, [])
    with pytest.raises(IndexError):
        windows.window(0)
