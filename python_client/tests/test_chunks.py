"""Recordings served as several chunks by the fake daemon: one table over every mapping,
windows chosen by the daemon, sealed descriptors over several reads, and the lease
following every mapping."""

from __future__ import annotations

import gc
import os
import socket
from typing import Any

import numpy as np
import pytest

import evshm
from fakes import (
    FakeDaemon,
    assert_inside,
    jittery_table,
    mappings_of,
    sealed_memfd,
    window_rows,
)

CHUNK = 700  # rows per chunk of the 3000-row jittery table: 4 chunks and a short one


def open_fds() -> int:
    gc.collect()  # mappings of earlier tests still in garbage cycles hold descriptors
    return len(os.listdir("/proc/self/fd"))


def served(fake: FakeDaemon, sealed: bool = False) -> np.ndarray:
    """Serve the jittery table in chunks of :data:`CHUNK` rows; return its ``t``."""
    table = jittery_table()
    fake.serve(table, chunk_rows=CHUNK, sealed=sealed)
    assert len(fake.chunks) == 5
    return table.column("t").to_numpy()


def address(array: Any) -> int:
    return int(array.__array_interface__["data"][0])


def mapped_anywhere(rec: evshm.Recording, array: np.ndarray) -> bool:
    ranges = [(b.address, b.address + b.size) for b in rec.stream_buffers]
    return any(start <= address(array) < end for start, end in ranges)


def test_several_chunks_make_one_table_over_all_the_mappings(fake: FakeDaemon):
    served(fake)
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        assert rec.table.equals(fake.table, check_metadata=True)
        assert [(c.index, c.rows, c.start, c.end) for c in rec.chunks] == [
            (0, 700, 0, 700), (1, 700, 0, 700), (2, 700, 0, 700), (3, 700, 0, 700),
            (4, 200, 0, 200)]
        assert [(c.extent.arena, c.extent.offset) for c in rec.chunks] == [
            (fake.arena_name, c.offset) for c in fake.chunks]
        assert not rec.zero_copy
        buffers = rec.stream_buffers
        assert [b.size for b in buffers] == [c.size for c in fake.chunks]
        for column in rec.table.columns:
            # One Arrow chunk per chunk, each read in place from its extent.
            assert [len(chunk) for chunk in column.chunks] == [700, 700, 700, 700, 200]
            for chunk, buffer in zip(column.chunks, buffers):
                for buf in chunk.buffers():
                    if buf is not None:
                        assert buffer.address <= buf.address
                        assert buf.address + buf.size <= buffer.address + buffer.size
        assert mappings_of(fake.arena_path) == 1, "the arena is mapped once"
        assert "chunks=5" in repr(rec)


def test_views_across_chunks_are_copies_and_within_one_are_views(fake: FakeDaemon):
    pytest.importorskip("polars")
    t = served(fake)
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        cols = rec.numpy()  # 5 chunks: concatenated, a copy
        assert np.array_equal(cols["t"], t)
        for array in cols.values():
            assert not array.flags.writeable and not mapped_anywhere(rec, array)
        frame = rec.polars()  # polars keeps the chunks: in place
        assert frame["t"].n_chunks() == 5 and frame["t"].to_list() == t.tolist()
        for series in frame["x"].get_chunks():
            array = series.to_numpy()
            assert_inside(rec, address(array), array.nbytes)

        inside = rec.slice(710, 1390)  # rows 10..690 of chunk 1
        assert inside.zero_copy
        assert [(c.index, c.start, c.end) for c in inside.chunks] == [(1, 10, 690)]
        for name, array in inside.numpy().items():
            assert_inside(inside, address(array), array.nbytes)
            assert array.tolist() == rec.table.column(name).to_pylist()[710:1390]
        events = inside.events()
        assert_inside(inside, address(events.t), events.t.nbytes)

        across = rec.slice(690, 1410)  # the end of chunk 0, all of 1, the start of 2
        assert not across.zero_copy
        assert [(c.index, c.start, c.end) for c in across.chunks] == [
            (0, 690, 700), (1, 0, 700), (2, 0, 10)]
        assert across.numpy()["t"].tolist() == t[690:1410].tolist()
        assert [b.address for b in across.stream_buffers] == [
            b.address for b in rec.stream_buffers[:3]]
        # A slice of a slice keeps counting rows in the recording and in the chunks.
        inner = across.slice(5, 20)
        assert inner.start == 695 and [(c.index, c.start, c.end) for c in inner.chunks] == [
            (0, 695, 700), (1, 0, 10)]
        assert rec.slice(700, 700).chunks == () and rec.slice(700, 700).zero_copy


def test_torch_views_across_chunks_are_copies_and_within_one_are_views(fake: FakeDaemon):
    torch = pytest.importorskip("torch", reason="torch is not installed "
                                "(pip install 'evshm[torch]'): torch views untested here")
    t = served(fake)
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        ranges = [(b.address, b.address + b.size) for b in rec.stream_buffers]
        for view, in_place in ((rec.slice(710, 1390), True), (rec.slice(690, 1410), False)):
            tensors = view.torch()
            assert tensors["t"].tolist() == t[view.start:view.start + view.rows].tolist()
            for tensor in tensors.values():
                assert tensor.dtype in (torch.int64, torch.int16, torch.int8)
                inside = any(start <= tensor.data_ptr() < end for start, end in ranges)
                assert inside == in_place


def test_time_windows_and_tiling_over_several_chunks(fake: FakeDaemon):
    t = served(fake)
    running = np.maximum.accumulate(t)
    with evshm.Client("/fake.sock") as client, client.open("a.raw") as rec:
        assert rec.time_bounds == (int(t[0]), int(t.max()))
        boundaries = [int(t[k * CHUNK]) for k in range(1, 5)]
        for t0, t1 in [(boundaries[0], boundaries[1]), (boundaries[0] - 3, boundaries[0] + 3),
                       (0, 5_001), (int(t.max()) + 1, int(t.max()) + 9), (6_000, 6_000)]:
            lo, hi = np.searchsorted(running, [t0, t1])
            window = rec.time_window(t0, t1)
            assert (window.start, window.rows) == (lo, hi - lo)
            assert window.numpy()["t"].tolist() == t[lo:hi].tolist()
        tiles = list(rec.windows(duration=97))
        assert sum(w.rows for w in tiles) == rec.rows
        assert np.array_equal(np.concatenate([w.numpy()["t"] for w in tiles]), t)
        assert sum(1 for w in tiles if not w.zero_copy) >= 4  # the ones across a boundary
        counted = list(rec.windows(events=650))
        assert [w.rows for w in counted] == [650] * 4 + [400]
        assert np.array_equal(np.concatenate([w.numpy()["x"] for w in counted]),
                              rec.numpy()["x"])


def reference(t: np.ndarray, t0: int, t1: int) -> tuple[int, int]:
    """The documented window rule, with numpy (independent of the fake's own loop)."""
    running = np.maximum.accumulate(t)
    lo, hi = np.searchsorted(running, [t0, t1])
    return int(lo), int(hi)


def test_windows_served_by_the_daemon_equal_slices_of_the_whole(fake: FakeDaemon):
    t = served(fake)
    rng = np.random.default_rng(5)
    first, last = int(t[0]), int(t.max())
    boundaries = [int(t[k * CHUNK]) for k in range(1, 5)]
    windows = [(int(a), int(a) + int(d)) for a, d in zip(
        rng.integers(first - 50, last + 50, 40), rng.integers(0, 1500, 40))]
    windows += [(b, b + 40) for b in boundaries] + [(b - 40, b) for b in boundaries]
    windows += [(boundaries[0], boundaries[2]), (first, last + 1), (first - 100, first),
                (last + 1, last + 100), (first - 100, first + 1), (boundaries[1],) * 2]
    with evshm.Client("/fake.sock") as client:
        whole = client.open("a.raw")
        for t0, t1 in windows:
            lo, hi = reference(t, t0, t1)
            assert window_rows(t.tolist(), t0, t1) == (lo, hi)
            rec = client.open("a.raw", window=(t0, t1))
            assert (rec.rows, rec.start, rec.window) == (hi - lo, 0, (t0, t1))
            assert rec.table.equals(whole.table.slice(lo, hi - lo), check_metadata=True)
            assert rec.table.schema.equals(whole.table.schema, check_metadata=True)
            spanned = {row // CHUNK for row in range(lo, hi)}
            assert [c.index for c in rec.chunks] == sorted(spanned)
            assert rec.zero_copy == (len(spanned) <= 1)
            if rec.rows and rec.zero_copy:
                array = rec.numpy()["y"]
                assert_inside(rec, address(array), array.nbytes)
                del array
            if not rec.rows:
                assert rec.chunks == () and rec.stream_buffers == ()
                assert rec.numpy()["t"].dtype == np.int64 and rec.time_bounds is None
            del rec
        whole.release()
        gc.collect()
        assert fake.leases == 0


def test_an_empty_window_holds_no_lease(fake: FakeDaemon):
    served(fake)
    with evshm.Client("/fake.sock") as client:
        rec = client.open("a.raw", window=(0, 10))  # before the first event
        assert rec.rows == 0 and rec.chunks == ()
        assert rec.table.schema.names == ["t", "x", "y", "p"]
        assert rec.table.schema.metadata[b"evshm.width"] == b"640"
        assert fake.leases == 0  # released at once: nothing to hold
        assert fake.sockets[0].ops()[-2:] == ["open", "release"]


def test_the_lease_follows_every_buffer(fake: FakeDaemon):
    served(fake)
    with evshm.Client("/fake.sock") as client:
        rec = client.open("a.raw")
        kept = rec.slice(3 * CHUNK + 5, 3 * CHUNK + 50).numpy()["x"]  # inside chunk 3
        rec.close()
        del rec
        gc.collect()
        # Only a view into chunk 3 is still reachable, and it alone holds the lease.
        assert fake.leases == 1 and "release" not in fake.sockets[0].ops()
        assert len(kept) == 45
        del kept
        gc.collect()
        assert fake.leases == 0 and fake.sockets[0].ops().count("release") == 1
        # The arena stays mapped for the next open: a warm open maps nothing.
        assert mappings_of(fake.arena_path) == 1
    gc.collect()
    assert mappings_of(fake.arena_path) == 0, "unmapped once its connection is closed"


def test_thousands_of_multi_chunk_open_and_drop_cycles_leave_one_mapping(fake: FakeDaemon):
    pl = pytest.importorskip("polars")
    t = served(fake)
    client = evshm.Client("/fake.sock")
    total = 0
    for i in range(2000):
        if i % 2:
            t0 = int(t[(i * 7) % 2900])
            rec = client.open("a.raw", window=(t0, t0 + 300))
        else:
            rec = client.open("a.raw")
        cols = rec.numpy()
        frame = rec.polars() if i % 10 == 0 else pl.DataFrame()
        window = rec.slice(i % 500, i % 500 + 900)
        total += len(cols["x"]) + frame.height + window.rows
        if i % 3 == 0:
            rec.close()
        del rec, cols, frame, window
    gc.collect()
    assert total > 0
    assert mappings_of(fake.arena_path) == 1
    assert fake.leases == 0
    assert sum(sock.ops().count("release") for sock in fake.sockets) == 2000
    client.close()
    gc.collect()
    assert mappings_of(fake.arena_path) == 0


# ----------------------------------------------------------------------- failures


def test_an_arena_that_cannot_be_mapped_releases_the_lease(fake: FakeDaemon):
    served(fake)
    os.unlink(fake.arena_path)
    with evshm.Client("/fake.sock") as client:
        with pytest.raises(evshm.MappingError, match=fake.arena_name):
            client.open("a.raw")
        gc.collect()
        assert fake.leases == 0


def test_a_chunk_of_the_wrong_row_count_releases_the_lease(fake: FakeDaemon):
    served(fake)
    fake.chunks[4].rows = 201  # the reply says 201, the stream holds 200
    with evshm.Client("/fake.sock") as client:
        with pytest.raises(evshm.MappingError, match="holds 200 rows"):
            client.open("a.raw")
        gc.collect()
        assert fake.leases == 0


def test_a_reply_for_another_window_is_malformed(fake: FakeDaemon, monkeypatch):
    served(fake)
    original = fake.open_reply

    def shifted(sock: Any, request: dict[str, Any],
                lease: int) -> tuple[dict[str, Any], list[int]]:
        reply, fds = original(sock, request, lease)
        reply["window"] = [request["window"][0], request["window"][1] + 1]
        return reply, fds

    monkeypatch.setattr(fake, "open_reply", shifted)
    client = evshm.Client("/fake.sock")
    with pytest.raises(evshm.ProtocolError, match="window"):
        client.open("a.raw", window=(5_100, 5_200))
    assert fake.sockets[0].closed  # the connection (and so the lease) is gone
    client.close()


# ----------------------------------------------------------------------- sealed


def assert_refused_without_leaks(fake: FakeDaemon, error: str) -> None:
    """Opening a.raw fails with a MappingError matching `error`, releases every lease and
    leaves no descriptor open."""
    before = open_fds()
    with evshm.Client("/fake.sock") as client:
        with pytest.raises(evshm.MappingError, match=error):
            client.open("a.raw")
        gc.collect()
        assert fake.leases == 0
    assert open_fds() == before


def test_a_sealed_arena_arrives_as_a_descriptor_once_per_connection(fake: FakeDaemon):
    t = served(fake, sealed=True)
    before = open_fds()
    with evshm.Client("/fake.sock") as client:
        assert fake.arenas == []
        rec = client.open("a.raw")  # its descriptor comes among 5-byte reads
        assert [c.extent.arena for c in rec.chunks] == [fake.arena_name] * 5
        assert np.array_equal(rec.numpy()["t"], t)
        with open("/proc/self/maps") as maps:
            lines = [line for line in maps if f"memfd:{fake.arena_name}" in line]
        assert len(lines) == 1 and lines[0].split()[1] == "r--s"
        window = client.open("a.raw", window=(int(t[800]), int(t[2500])))
        assert [c.index for c in window.chunks] == [1, 2, 3]
        lo, hi = reference(t, int(t[800]), int(t[2500]))
        assert window.table.equals(rec.table.slice(lo, hi - lo))
        del rec, window
        gc.collect()
        assert fake.leases == 0
    assert open_fds() == before  # every descriptor passed was closed or became a mapping


def test_missing_descriptors_are_refused_and_the_lease_released(fake: FakeDaemon, monkeypatch):
    served(fake, sealed=True)
    original = fake.open_reply
    monkeypatch.setattr(fake, "open_reply",
                        lambda sock, request, lease: (original(sock, request, lease)[0], []))
    assert_refused_without_leaks(fake, "marked 1 arenas passed but sent 0 descriptors")


def test_an_unsealed_descriptor_is_refused(fake: FakeDaemon):
    served(fake, sealed=True)
    sealed = fake.memfd
    assert sealed is not None
    unsealed = os.memfd_create("unsealed", os.MFD_CLOEXEC)
    os.write(unsealed, os.pread(sealed, fake.arena_size, 0))
    os.close(sealed)
    fake.memfd = unsealed
    assert_refused_without_leaks(fake, "seals")


def test_descriptors_lost_in_transit_close_the_connection(fake: FakeDaemon):
    served(fake, sealed=True)
    before = open_fds()
    client = evshm.Client("/fake.sock")
    fake.sockets[0].recv_flags = socket.MSG_CTRUNC
    with pytest.raises(evshm.ProtocolError, match="descriptors") as info:
        client.open("a.raw")
    assert info.value.code == evshm.MALFORMED_REPLY
    assert fake.sockets[0].closed
    client.close()
    assert open_fds() == before


def test_sealed_memfd_helper_seals_what_the_client_checks():
    fd = sealed_memfd("probe", b"abc")
    try:
        with pytest.raises(PermissionError):
            os.write(fd, b"x")
    finally:
        os.close(fd)
