"""The trigger table and a geometry given with the request, from Python."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import evshm
from harness import Daemon

EVT3_HEADER = b"% format EVT3;height=720;width=1280\n% end\n"


def evt3(words: list) -> bytes:
    return EVT3_HEADER + b"".join(struct.pack("<H", w) for w in words)


def dat(header: bytes, events: list) -> bytes:
    records = b"".join(struct.pack("<II", t, x | y << 14 | p << 28) for t, x, y, p in events)
    return header + bytes([12, 8]) + records


def write(root: Path, name: str, data: bytes) -> str:
    (root / name).write_bytes(data)
    return name


def test_triggers_are_a_second_table_from_the_same_decode(daemon: Daemon):
    # TIME_HIGH 1, row 5, x=3 on, trigger 3 rising, TIME_LOW 16, x=4 off, trigger 2 falling.
    name = write(daemon.root, "triggers.raw",
                 evt3([0x8001, 0x0005, 0x2803, 0xA301, 0x6010, 0x2004, 0xA200]))
    with daemon.client() as client:
        events = client.open(name)
        triggers = client.open(name, table="triggers")
        assert (events.table_name, triggers.table_name) == ("events", "triggers")
        assert events.table.to_pydict() == {
            "t": [4096, 4112], "x": [3, 4], "y": [5, 5], "p": [1, 0]}
        assert triggers.table.column_names == ["t", "id", "p"]
        assert triggers.table.to_pydict() == {"t": [4096, 4112], "id": [3, 2], "p": [1, 0]}
        assert triggers.cached and client.stats()["decodes"] == 1
        [buffer] = triggers.stream_buffers
        base, size = buffer.address, buffer.size
        # An extent of its own, in the same arena as the events' extent.
        [event_extent] = [chunk.extent for chunk in events.chunks]
        [extent] = [chunk.extent for chunk in triggers.chunks]
        assert extent.arena == event_extent.arena
        assert extent.size == size and extent.offset != event_extent.offset
        assert events.stream_buffers[0].address - event_extent.offset == base - extent.offset
        for column in triggers.table.columns:
            for buf in column.chunks[0].buffers():
                if buf is not None:
                    assert base <= buf.address and buf.address + buf.size <= base + size
        with pytest.raises(ValueError):
            client.open(name, table="frames")


def test_a_file_without_geometry_takes_one_from_the_request(daemon: Daemon):
    events = [(1, 500, 10, 1), (2, 5, 5, 0)]
    unstated = write(daemon.root, "unstated.dat", dat(b"% Version 2\n", events))
    stated = write(daemon.root, "stated.dat",
                   dat(b"% Version 2\n% Width 640\n% Height 480\n", events))
    with daemon.client() as client:
        guessed = client.open(unstated)
        assert (guessed.width, guessed.height, guessed.rows, guessed.dropped) == (304, 240, 2, 0)
        given = client.open(unstated, geometry=(640, 480))
        assert (given.width, given.height, given.rows) == (640, 480, 2)
        cropped = client.open(unstated, geometry=(100, 100))
        assert (cropped.rows, cropped.dropped) == (1, 1)
        with pytest.raises(evshm.DaemonError) as refused:
            client.open(stated, geometry=(100, 100))
        assert refused.value.code == "bad_request" and "640x480" in refused.value.message
        assert client.open(stated).rows == 2
