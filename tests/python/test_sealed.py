"""Sealed mode from Python: each chunk's segment arrives as a sealed memfd descriptor."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import numpy as np
import pytest

from harness import Daemon, assert_table_in_place, decode_whole, generate, mapped_ranges

#: Events per chunk: the smallest chunks the daemon makes (one 64 KiB step of input each),
#: so that a few MB of input are hundreds of chunks.
CHUNK_EVENTS = 1000


@pytest.fixture
def daemon_args() -> list[str]:
    return ["--sealed", "--chunk-events", str(CHUNK_EVENTS)]


def open_fds() -> int:
    gc.collect()  # mappings in garbage cycles hold descriptors before Python 3.13
    return len(os.listdir("/proc/self/fd"))


def test_a_sealed_segment_is_passed_mapped_and_read_in_place(daemon: Daemon):
    generate(daemon.root / "a.raw", 20_000)  # 50 KB: one chunk
    with daemon.client() as client:
        with client.open("a.raw") as rec:
            [chunk] = rec.chunks
            assert chunk.segment.path is None and rec.rows == 20_000
            [buffer] = rec.segment_buffers
            assert buffer.size == chunk.segment.size
            [[(start, end)]] = mapped_ranges(rec)  # memfd:<name>, r--s, exactly once
            for column in rec.table.columns:
                view = column.chunk(0).to_numpy(zero_copy_only=True)
                address = view.__array_interface__["data"][0]
                assert start <= address < end
            t = rec.table.column("t").to_numpy()
            assert len(t) == 20_000 and (t[1:] >= t[:-1]).all()
    leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(daemon.segment_prefix)]
    assert leftovers == [], "sealed segments are no files"


def test_more_chunks_than_one_message_carries(daemon: Daemon, tmp_path: Path):
    """DAT is 8 bytes an event: 2.2 M events are 17.6 MB, over 250 chunks of 64 KiB, so
    the descriptors of a whole-recording open come in several messages."""
    source = generate(daemon.root / "many.dat", 2_200_000, width=640, height=480, fmt="dat")
    expected = decode_whole(source, tmp_path / "many.arrow")
    before = open_fds()
    with daemon.client() as client:
        rec = client.open("many.dat")
        assert len(rec.chunks) > 250, len(rec.chunks)
        assert all(chunk.segment.path is None for chunk in rec.chunks)
        assert [chunk.index for chunk in rec.chunks] == list(range(len(rec.chunks)))
        for name in "txyp":
            assert rec.table.column(name).equals(expected.column(name)), name
        ranges = mapped_ranges(rec)
        assert all(len(mappings) == 1 for mappings in ranges)
        assert_table_in_place(rec)
        # A window over a few of those chunks, from the daemon: the same rows again.
        t = expected.column("t").to_numpy()
        t0, t1 = int(t[100_000]), int(t[130_000])
        lo, hi = np.searchsorted(np.maximum.accumulate(t), [t0, t1])
        window = client.open("many.dat", window=(t0, t1))
        assert 1 < len(window.chunks) < len(rec.chunks)
        assert window.table.equals(rec.table.slice(lo, hi - lo))
        assert_table_in_place(window)
        del rec, window, ranges
        gc.collect()
        assert client.stats()["leases"] == 0
    # Every descriptor received was closed (mapped ones once their mapping went).
    assert open_fds() == before
