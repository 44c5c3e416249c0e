"""Error replies map to the right exceptions, and the daemon keeps serving."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

import evshm
from harness import Daemon, wait_for


def open_ok(client: evshm.Client) -> None:
    with client.open("evt3_test_pedestrians.raw") as rec:
        assert rec.rows == 5000


@pytest.mark.parametrize("path, kind, code", [
    ("missing.raw", evshm.RecordingNotFound, "not_found"),
    ("sub/missing.raw", evshm.RecordingNotFound, "not_found"),
    ("../x", evshm.PathRefused, "bad_path"),
    ("sub/../../x", evshm.PathRefused, "bad_path"),
    ("", evshm.PathRefused, "bad_path"),
    ("a\0b", evshm.PathRefused, "bad_path"),
    ("notes.txt", evshm.UnsupportedFormat, "unsupported_format"),
])
def test_open_errors(daemon: Daemon, real, path: str, kind, code: str):
    with daemon.client() as client:
        with pytest.raises(kind) as info:
            client.open(path)
        assert info.value.code == code
        assert info.value.message
        open_ok(client)  # same connection, still in sync
        assert client.stats()["errors"] == 1


def test_absolute_path_outside_the_roots(daemon: Daemon, real, tmp_path: Path):
    outside = tmp_path / "outside.raw"
    outside.write_bytes((daemon.root / "evt3_test_pedestrians.raw").read_bytes())
    with daemon.client() as client:
        with pytest.raises(evshm.PathRefused) as info:
            client.open(str(outside))
        assert info.value.code == "outside_roots"
        open_ok(client)


def test_symlink_leading_outside_the_roots(daemon: Daemon, real, tmp_path: Path):
    outside = tmp_path / "outside.raw"
    outside.write_bytes((daemon.root / "evt3_test_pedestrians.raw").read_bytes())
    os.symlink(outside, daemon.root / "escape.raw")
    with daemon.client() as client:
        with pytest.raises(evshm.PathRefused) as info:
            client.open("escape.raw")
        assert info.value.code == "outside_roots"
        open_ok(client)


def test_unsupported_format_message_lists_formats(daemon: Daemon, real):
    with daemon.client() as client:
        with pytest.raises(evshm.UnsupportedFormat) as info:
            client.open("notes.txt")
        message = info.value.message.lower()
        assert "notes.txt" in message
        assert "evt3" in message and "dat" in message


class Raw:
    """A raw connection speaking bytes, for what the client never sends."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> dict:
        self.sock.sendall(data)
        line = self.file.readline()
        assert line.endswith(b"\n"), line
        return json.loads(line)

    def hello(self) -> None:
        assert self.send(b'{"op":"hello","version":3,"client":"raw-test"}\n')["ok"] is True

    def eof(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def error_code(reply: dict) -> str:
    assert reply["ok"] is False
    assert isinstance(reply["error"]["message"], str) and reply["error"]["message"]
    return reply["error"]["code"]


def test_malformed_json_gets_bad_request(daemon: Daemon):
    raw = Raw(daemon.socket)
    raw.hello()
    assert error_code(raw.send(b"{this is not json\n")) == "bad_request"
    assert error_code(raw.send(b"[1, 2]\n")) == "bad_request"
    assert error_code(raw.send(b'{"op": "open"}\n')) == "bad_request"
    assert error_code(raw.send(b'{"op": "release", "lease": "x"}\n')) == "bad_request"
    assert raw.send(b'{"op": "stats", "future_field": 1}\n')["ok"] is True
    raw.close()


def test_hello_is_required_first(daemon: Daemon):
    raw = Raw(daemon.socket)
    assert error_code(raw.send(b'{"op": "stats"}\n')) == "hello_required"
    raw.hello()
    assert raw.send(b'{"op": "stats"}\n')["ok"] is True
    raw.close()


def test_unsupported_version(daemon: Daemon):
    raw = Raw(daemon.socket)
    # Version 2 named one segment per chunk; version 3 names arenas and extents. A
    # client of either other version is refused, and told which the daemon speaks.
    for version in (2, 4):
        reply = raw.send(b'{"op": "hello", "version": %d}\n' % version)
        assert error_code(reply) == "unsupported_version"
        assert "speaks version 3" in reply["error"]["message"], reply
    assert raw.send(b'{"op": "hello", "version": 3}\n')["ok"] is True
    raw.close()


def test_unknown_op_and_unknown_lease(daemon: Daemon):
    raw = Raw(daemon.socket)
    raw.hello()
    assert error_code(raw.send(b'{"op": "fly"}\n')) == "unknown_op"
    assert error_code(raw.send(b'{"op": "release", "lease": 99}\n')) == "unknown_lease"
    raw.close()


def test_unknown_lease_through_the_client_api(daemon: Daemon, real):
    with daemon.client() as client:
        conn = client._slot.conn
        assert conn is not None
        with pytest.raises(evshm.UnknownLease):
            conn.request({"op": "release", "lease": 12345}, lambda reply: reply)
        assert client.stats()["leases"] == 0


def test_oversized_request_gets_frame_too_large_then_eof(daemon: Daemon):
    raw = Raw(daemon.socket)
    raw.hello()
    line = b'{"op": "open", "path": "' + b"a" * 70_000 + b'"}\n'
    assert error_code(raw.send(line)) == "frame_too_large"
    assert raw.eof()
    raw.close()
    with evshm.Client(daemon.socket) as client:  # the daemon still serves others
        # Only this one once the daemon has seen the other close (poll: no race).
        wait_for(lambda: client.stats()["connections"] == 1, "the closed connection to go")


def test_client_refuses_an_oversized_request_without_sending_it(daemon: Daemon):
    with daemon.client() as client:
        with pytest.raises(evshm.ProtocolError) as info:
            client.open("a" * 70_000)
        assert info.value.code == "frame_too_large"
        assert client.stats()["errors"] == 0  # never reached the daemon


def test_a_request_of_exactly_the_limit_is_accepted(daemon: Daemon):
    raw = Raw(daemon.socket)
    raw.hello()
    head, tail = b'{"op": "stats", "pad": "', b'"}\n'
    line = head + b"a" * (65_536 - len(head) - len(tail)) + tail
    assert len(line) == 65_536
    assert raw.send(line)["ok"] is True
    raw.close()
