"""Several reader processes, forked or spawned, map the same arena and read the same
extents: correct data, one copy in RAM (read back from /proc), one mapping of the arena
per process. numpy only: this runs wherever the suite runs."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle

import pytest

import evshm
import workers
from harness import Daemon, arena_file, time_bounds, wait_for

READERS = 2
DURATION = 2_000  # µs: tens of windows over big.raw, a few over small.raw


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_processes_share_one_copy(synthetic: Daemon, method: str):
    paths = ["big.raw", "small.raw"]
    windows = evshm.EventWindows(paths, duration=DURATION, socket_path=synthetic.socket)
    for path in paths:
        first, last = time_bounds(windows.recording(path))
        count = sum(1 for i in range(len(windows)) if windows.window(i)[0] == path)
        assert count == len(range(first, last + 1, DURATION)) > 1
    # The parent reads too, and keeps its attachments: forked readers inherit them and
    # must start afresh; spawned ones get a pickled copy without them.
    expected = {i: workers.checksum(windows[i]) for i in range(len(windows))}
    whole = {p: workers.checksum(windows.recording(p)) for p in paths}
    [chunk] = windows.recording("big.raw").chunks  # 3 M events: one chunk by default
    [small] = windows.recording("small.raw").chunks
    # Both in one arena (1 GiB): each reader reads both extents whole.
    assert chunk.extent.arena == small.extent.arena
    arena = arena_file(chunk.extent)
    read = sum(-(-c.extent.size // 4096) * 4096 for c in (chunk, small))  # whole pages
    assert sum(rows for i, (rows, *_) in expected.items()
               if windows.window(i)[0] == "big.raw") == whole["big.raw"][0]

    ctx = multiprocessing.get_context(method)
    results = ctx.Queue()
    done = ctx.Event()
    # typeshed: get_context(str) is a BaseContext, whose subclasses alone have Process.
    procs = [ctx.Process(target=workers.read_share,  # type: ignore[attr-defined]
                         args=(windows, n, READERS, results, done)) for n in range(READERS)]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=120) for _ in procs]
        readers = {pid: workers.mapping_memory(pid, arena) for pid, *_ in reports}
        others = {pid: workers.mapping_memory(pid, arena)
                  for pid in (os.getpid(), synthetic.pid)}
        resident = os.stat(arena).st_blocks * 512  # the arena file's pages
        rollups = {pid: workers.rollup(pid) for pid in readers}
        with synthetic.client() as observer:
            # The parent's attachments, the observer, one per reader (the daemon may not
            # have seen EventWindows' own building connection close yet: poll).
            wait_for(lambda: observer.stats()["connections"] == 1 + 1 + READERS,
                     "one connection per process")
            stats = observer.stats()
    finally:
        done.set()
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert [proc.exitcode for proc in procs] == [0] * READERS

    seen: dict[int, tuple] = {}
    for pid, sums, their_whole, extents, mapped in reports:
        assert pid != os.getpid()
        assert their_whole == whole
        assert extents["big.raw"] == chunk.extent  # the same extent, read anew
        assert mapped == {chunk.extent.arena: 1}  # the arena mapped once per process
        seen.update(sums)
    assert seen == expected  # every window read once, with the parent's content
    # One decode per recording; each reader has its own connection and leases.
    assert stats["decodes"] == 2
    assert stats["leases"] == 2 + 2 * READERS
    # All the pages of the arena are the extents of the two decodes (events and
    # triggers): --provision 0 keeps no free page.
    assert resident == stats["bytes_resident"]
    workers.assert_one_copy(read, resident, readers, others, rollups)

    # The process keeps its one mapping of the arena for the next opens (a warm open
    # maps nothing): however many recordings and windows, one mapping...
    assert workers.mappings_of(arena) == 1
    windows.close()
    gc.collect()
    # ...until the connection that named it closes.
    assert workers.mappings_of(arena) == 0
    with synthetic.client() as observer:
        wait_for(lambda: observer.stats()["leases"] == 0, "the readers' leases to end")


def test_event_windows_pickle_small_and_without_connections(synthetic: Daemon):
    windows = evshm.EventWindows(["small.raw"], events=50_000, socket_path=synthetic.socket)
    first = workers.checksum(windows[0])
    data = pickle.dumps(windows)
    assert len(data) < 4096  # the window list and the socket path, not the events
    clone = pickle.loads(data)
    assert [clone.window(i) for i in range(len(clone))] == [
        ("small.raw", 0, 50_000), ("small.raw", 50_000, 100_000),
        ("small.raw", 100_000, 150_000), ("small.raw", 150_000, 200_000)]
    assert workers.checksum(clone[0]) == first
    assert clone.recording("small.raw").lease != windows.recording("small.raw").lease
    with synthetic.client() as observer:  # windows, clone, observer
        wait_for(lambda: observer.stats()["connections"] == 3, "three connections")
    clone.close()
    windows.close()
    with pytest.raises(IndexError):
        windows.window(4)
    assert windows.window(-1) == ("small.raw", 150_000, 200_000)
