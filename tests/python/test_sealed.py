"""Sealed mode from Python: each arena arrives as a sealed memfd descriptor, once per
connection, and the chunks' extents are read in place in its one mapping."""

from __future__ import annotations

import fcntl
import gc
import json
import mmap
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evshm import _protocol
from harness import (
    Daemon,
    arena_mapping,
    assert_table_in_place,
    decode_whole,
    extent_ranges,
    generate,
)

#: Events per chunk: the smallest chunks the daemon makes (one 64 KiB step of input each),
#: so that a few MB of input are hundreds of chunks.
CHUNK_EVENTS = 1000
#: F_SEAL_FUTURE_WRITE (Linux 5.1) is not in every Python's fcntl.
F_SEAL_FUTURE_WRITE = getattr(fcntl, "F_SEAL_FUTURE_WRITE", 0x0010)


@pytest.fixture
def daemon_args() -> list[str]:
    return ["--sealed", "--chunk-events", str(CHUNK_EVENTS)]


def open_fds() -> int:
    gc.collect()  # mappings in garbage cycles hold descriptors before Python 3.13
    return len(os.listdir("/proc/self/fd"))


class RawConnection:
    """The protocol spoken by hand, to see the descriptors each reply passes (the client
    takes them over and closes them once mapped)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.buffer = b""
        reply, fds = self.request(_protocol.hello_request("test_sealed"))
        assert reply["ok"] and fds == []

    def request(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
        self.sock.sendall(_protocol.encode_request(request))
        fds: list[int] = []
        while b"\n" not in self.buffer:
            data, passed, flags, _ = socket.recv_fds(self.sock, 1 << 16, 253)
            assert not flags & socket.MSG_CTRUNC
            assert data, "evshmd closed the connection"
            fds.extend(passed)
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line), fds

    def close(self) -> None:
        self.sock.close()


def test_a_sealed_arena_is_passed_mapped_and_read_in_place(daemon: Daemon):
    generate(daemon.root / "a.raw", 20_000)  # 50 KB: one chunk
    generate(daemon.root / "b.raw", 20_000, seed=2)
    with daemon.client() as client:
        with client.open("a.raw") as rec:
            [chunk] = rec.chunks
            assert rec.rows == 20_000
            [buffer] = rec.stream_buffers
            assert buffer.size == chunk.extent.size
            [(start, end)] = extent_ranges(rec)  # in memfd:<name>, r--s, mapped once
            assert (start, end) == (buffer.address, buffer.address + buffer.size)
            for column in rec.table.columns:
                view = column.chunk(0).to_numpy(zero_copy_only=True)
                address = view.__array_interface__["data"][0]
                assert start <= address < end
            t = rec.table.column("t").to_numpy()
            assert len(t) == 20_000 and (t[1:] >= t[:-1]).all()
            assert_table_in_place(rec)
        # Another recording in the same arena: read in the same mapping.
        with client.open("b.raw") as other:
            [extent] = [c.extent for c in other.chunks]
            assert extent.arena == chunk.extent.arena
            assert_table_in_place(other)
            arena_mapping(extent.arena)  # still one mapping
    leftovers = [n for n in os.listdir("/dev/shm") if n.startswith(daemon.arena_prefix)]
    assert leftovers == [], "sealed arenas are no files"


def test_an_arena_is_passed_once_per_connection_sealed_against_change(daemon: Daemon):
    generate(daemon.root / "a.raw", 20_000)
    generate(daemon.root / "b.raw", 20_000, seed=2)
    first = RawConnection(daemon.socket)
    second = RawConnection(daemon.socket)
    try:
        reply, fds = first.request(_protocol.open_request("a.raw"))
        assert reply["ok"], reply
        [arena] = reply["arenas"]
        assert "path" not in arena and arena["passed"] is True
        [fd] = fds
        try:
            # The kernel's word on it: a memfd of the arena's name and size, sealed
            # against growing, shrinking and any new writable mapping.
            assert os.readlink(f"/proc/self/fd/{fd}") == f"/memfd:{arena['name']} (deleted)"
            assert os.fstat(fd).st_size == arena["size"]
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
            for seal in (fcntl.F_SEAL_GROW, fcntl.F_SEAL_SHRINK, F_SEAL_FUTURE_WRITE):
                assert seals & seal, (seals, seal)
            assert seals & fcntl.F_SEAL_SEAL, "the seals cannot be undone"
            with pytest.raises(PermissionError):
                os.ftruncate(fd, arena["size"] * 2)
            with pytest.raises(PermissionError):
                os.ftruncate(fd, 0)
            with pytest.raises(PermissionError):
                mmap.mmap(fd, arena["size"], flags=mmap.MAP_SHARED,
                          prot=mmap.PROT_READ | mmap.PROT_WRITE)
            with pytest.raises(PermissionError):
                os.pwrite(fd, b"x", reply["chunks"][0]["extent"]["offset"])
        finally:
            os.close(fd)
        # The same arena again on the same connection: named, not passed again.
        again, fds = first.request(_protocol.open_request("b.raw"))
        assert again["ok"], again
        assert fds == []
        assert [(a["name"], a.get("passed", False)) for a in again["arenas"]] == [
            (arena["name"], False)]
        # Another connection hears of it for the first time: passed there.
        other, fds = second.request(_protocol.open_request("a.raw"))
        assert other["ok"] and other["cached"] is True
        assert [(a["name"], a["passed"]) for a in other["arenas"]] == [(arena["name"], True)]
        assert len(fds) == 1
        os.close(fds[0])
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("daemon_args", [
    ["--sealed", "--chunk-events", str(CHUNK_EVENTS)],
    ["--sealed", "--chunk-events", str(CHUNK_EVENTS), "--arena-size", "128K"],
], ids=["one-arena", "arena-per-chunk"])
def test_more_chunks_than_one_message_carries(daemon: Daemon, tmp_path: Path,
                                              daemon_args: list[str]):
    """DAT is 8 bytes an event: 2.2 M events are 17.6 MB, over 250 chunks of 64 KiB. In
    one arena (1 GiB) they are all extents of it, whose descriptor comes once; in arenas
    of 128 KiB each chunk has one of its own, and the descriptors of a whole-recording
    open come in several messages (at most 250 each)."""
    many_arenas = "--arena-size" in daemon_args
    source = generate(daemon.root / "many.dat", 2_200_000, width=640, height=480, fmt="dat")
    expected = decode_whole(source, tmp_path / "many.arrow")
    before = open_fds()
    with daemon.client() as client:
        rec = client.open("many.dat")
        assert len(rec.chunks) > 250, len(rec.chunks)
        arenas = {chunk.extent.arena for chunk in rec.chunks}
        assert len(arenas) > 250 if many_arenas else len(arenas) == 1, len(arenas)
        assert [chunk.index for chunk in rec.chunks] == list(range(len(rec.chunks)))
        for name in "txyp":
            assert rec.table.column(name).equals(expected.column(name)), name
        assert_table_in_place(rec)
        # A window over a few of those chunks, from the daemon: the same rows again.
        t = expected.column("t").to_numpy()
        t0, t1 = int(t[100_000]), int(t[130_000])
        lo, hi = np.searchsorted(np.maximum.accumulate(t), [t0, t1])
        window = client.open("many.dat", window=(t0, t1))
        assert 1 < len(window.chunks) < len(rec.chunks)
        assert window.table.equals(rec.table.slice(lo, hi - lo))
        assert_table_in_place(window)
        del rec, window
        gc.collect()
        assert client.stats()["leases"] == 0
    # Every descriptor received was closed once mapped: the mapping holds none.
    assert open_fds() == before
