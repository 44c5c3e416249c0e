"""Several reader processes, forked or spawned, attach the same segments: correct data,
one copy in RAM (read back from /proc). numpy only: this runs wherever the suite runs."""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import time
from typing import Dict

import pytest

import evshm
import workers
from harness import Daemon

READERS = 2
DURATION = 2_000  # µs: tens of windows over big.raw, a few over small.raw


def wait_for(predicate, what: str, deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_one_copy(size: int, readers: Dict[int, Dict[str, int]],
                    others: Dict[int, Dict[str, int]],
                    rollups: Dict[int, Dict[str, int]]) -> None:
    """The memory test: ``readers`` and ``others`` hold the /proc/PID/smaps counters of
    the segment's mapping in the readers and in the other processes that may map it,
    ``rollups`` the readers' /proc/PID/smaps_rollup, all taken while the readers held
    their mappings.

    Every reader read every event, so each has the whole segment resident (Rss). If
    the pages were shared, the Pss of all the processes that map them adds up to one
    copy; two private copies would add up to two. PSS charges each page 1/k to each of
    the k processes mapping it; the kernel keeps it exact to well under a kB, and
    smaps rounds each figure down to a kB, so the sum of all mappers lands within
    1% of the segment (which absorbs that rounding and the last partial page, ~40 KB
    on a 39 MB segment).
    """
    tolerance = 0.01 * size
    for pid, mem in readers.items():
        assert mem.get("Rss", 0) * 1024 >= size - tolerance, (pid, mem)
        assert mem.get("Private_Clean", 0) + mem.get("Private_Dirty", 0) == 0, (pid, mem)
    readers_pss = sum(mem["Pss"] for mem in readers.values()) * 1024
    everyone_pss = readers_pss + sum(mem.get("Pss", 0) for mem in others.values()) * 1024
    assert abs(everyone_pss - size) <= tolerance, (everyone_pss, size, readers, others)
    assert readers_pss <= size + tolerance, (readers_pss, size)
    # The same seen in smaps_rollup: the segment is shared memory (tmpfs), so it is in
    # each reader's Pss_Shmem; their sum stays one copy plus small change (multiprocessing's
    # semaphores live in /dev/shm too: a page each).
    if all("Pss_Shmem" in r for r in rollups.values()):
        for pid, r in rollups.items():
            assert r["Pss_Shmem"] >= readers[pid]["Pss"] - 4, (pid, r)
        shmem = sum(r["Pss_Shmem"] for r in rollups.values()) * 1024
        assert shmem <= size + tolerance + (1 << 20), (shmem, size)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_reader_processes_share_one_copy(synthetic: Daemon, method: str):
    paths = ["big.raw", "small.raw"]
    windows = evshm.EventWindows(paths, duration=DURATION, socket_path=synthetic.socket)
    for path in paths:
        first, last = windows.recording(path).time_bounds
        count = sum(1 for i in range(len(windows)) if windows.window(i)[0] == path)
        assert count == len(range(first, last + 1, DURATION)) > 1
    # The parent reads too, and keeps its attachments: forked readers inherit them and
    # must start afresh; spawned ones get a pickled copy without them.
    expected = {i: workers.checksum(windows[i]) for i in range(len(windows))}
    whole = {p: workers.checksum(windows.recording(p)) for p in paths}
    segment = windows.recording("big.raw").segment_path
    size = windows.recording("big.raw").segment_size
    assert sum(rows for i, (rows, *_) in expected.items()
               if windows.window(i)[0] == "big.raw") == whole["big.raw"][0]

    ctx = multiprocessing.get_context(method)
    results = ctx.Queue()
    done = ctx.Event()
    procs = [ctx.Process(target=workers.read_share,
                         args=(windows, n, READERS, results, done)) for n in range(READERS)]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=120) for _ in procs]
        readers = {pid: workers.mapping_memory(pid, segment) for pid, *_ in reports}
        others = {pid: workers.mapping_memory(pid, segment)
                  for pid in (os.getpid(), synthetic.pid)}
        rollups = {pid: workers.rollup(pid) for pid in readers}
        with synthetic.client() as observer:
            stats = observer.stats()
    finally:
        done.set()
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
                proc.join()
    assert [proc.exitcode for proc in procs] == [0] * READERS

    seen: Dict[int, tuple] = {}
    for pid, sums, their_whole, segments in reports:
        assert pid != os.getpid()
        assert their_whole == whole
        assert segments["big.raw"] == segment  # the same segment, attached anew
        seen.update(sums)
    assert seen == expected  # every window read once, with the parent's content
    # One decode per recording; each reader has its own connection and leases.
    assert stats["decodes"] == 2
    assert stats["connections"] == 1 + 1 + READERS  # parent's windows, observer, readers
    assert stats["leases"] == 2 + 2 * READERS
    assert_one_copy(size, readers, others, rollups)

    windows.close()
    gc.collect()
    assert workers.mappings_of(segment) == 0
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
    with synthetic.client() as observer:
        assert observer.stats()["connections"] == 3  # windows, clone, observer
    clone.close()
    windows.close()
    with pytest.raises(IndexError):
        windows.window(4)
    assert windows.window(-1) == ("small.raw", 150_000, 200_000)
