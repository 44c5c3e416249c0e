"""Framing and reply parsing, on bytes only (no socket)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import evshm
from evshm import _protocol as proto


def chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_encode_request_is_one_compact_utf8_line():
    line = proto.encode_request(proto.open_request("jour/caméra0.raw"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line.decode("utf-8")) == {
        "op": "open", "path": "jour/caméra0.raw", "table": "events"}
    assert "é".encode() in line  # UTF-8, not \\u escapes


def test_encode_request_with_newline_in_a_string_stays_one_line():
    line = proto.encode_request({"op": "open", "path": "a\nb"})
    assert line.count(b"\n") == 1


def test_hello_names_version_and_client():
    # The version itself is held to the Rust protocol crate by test_protocol_fixtures.py.
    assert proto.PROTOCOL_VERSION == evshm.PROTOCOL_VERSION
    assert proto.hello_request("evshm-python/0.1.0") == {
        "op": "hello", "version": proto.PROTOCOL_VERSION, "client": "evshm-python/0.1.0"}


def test_encode_request_refuses_a_missing_op():
    with pytest.raises(evshm.ProtocolError) as info:
        proto.encode_request({"path": "x"})
    assert info.value.code == "bad_request"


def test_encode_request_refuses_unencodable_strings():
    with pytest.raises(evshm.ProtocolError) as info:
        proto.encode_request({"op": "open", "path": "bad\udcff"})
    assert info.value.code == "bad_request"


def test_encode_request_refuses_a_line_over_the_limit():
    limit = proto.MAX_REQUEST_LINE
    overhead = len(proto.encode_request({"op": "open", "path": ""}))
    assert len(proto.encode_request({"op": "open", "path": "a" * (limit - overhead)})) == limit
    with pytest.raises(evshm.ProtocolError) as info:
        proto.encode_request({"op": "open", "path": "a" * (limit - overhead + 1)})
    assert info.value.code == "frame_too_large"


REPLIES: list[dict[str, Any]] = [
    {"ok": True, "version": 3, "server": "evshmd/0.1.0"},
    {"ok": True, "recordings": [{"path": "dé/x.raw", "format": "evt3", "size": 3,
                                 "decoded": False}]},
    {"ok": False, "error": {"code": "not_found", "message": "no root holds a/b.raw"}},
    {"ok": True},
]


def test_line_buffer_fed_five_bytes_at_a_time():
    stream = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in REPLIES)
    buf = proto.LineBuffer()
    lines = []
    for chunk in chunks(stream, 5):
        lines.extend(buf.feed(chunk))
    assert buf.pending == 0
    assert [json.loads(line) for line in lines] == REPLIES


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_line_buffer_is_independent_of_the_split(size):
    stream = b"".join(json.dumps(r).encode() + b"\n" for r in REPLIES) + b'{"partial'
    buf = proto.LineBuffer()
    lines = [line for chunk in chunks(stream, size) for line in buf.feed(chunk)]
    assert [json.loads(line) for line in lines] == REPLIES
    assert buf.pending == len(b'{"partial')


def test_line_buffer_accepts_a_line_of_exactly_the_limit():
    buf = proto.LineBuffer(max_line=10)
    assert buf.feed(b"123456789") == []
    assert buf.feed(b"\nab\n") == [b"123456789", b"ab"]


def test_line_buffer_refuses_an_oversized_line_without_newline():
    buf = proto.LineBuffer(max_line=10)
    buf.feed(b"12345")
    with pytest.raises(evshm.ProtocolError) as info:
        buf.feed(b"67890")  # 10 bytes and no newline: the line will be at least 11
    assert info.value.code == evshm.MALFORMED_REPLY


def test_line_buffer_refuses_an_oversized_complete_line():
    buf = proto.LineBuffer(max_line=10)
    assert buf.feed(b"ok\n") == [b"ok"]
    with pytest.raises(evshm.ProtocolError):
        buf.feed(b"0123456789\n")


def test_default_reply_limit_is_16_mib():
    assert proto.MAX_REPLY_LINE == 16 * 1024 * 1024
    buf = proto.LineBuffer()
    with pytest.raises(evshm.ProtocolError):
        for _ in range(17):
            buf.feed(b"x" * (1024 * 1024))


def test_parse_reply_ok():
    assert proto.parse_reply(b'{"ok": true, "leases": 2}') == {"ok": True, "leases": 2}


@pytest.mark.parametrize("line", [
    b"{not json",
    b"\xff\xfe",
    b"[1, 2]",
    b'"ok"',
    b"{}",
    b'{"ok": 1}',
    b'{"ok": false}',
    b'{"ok": false, "error": "not_found"}',
    b'{"ok": false, "error": {"code": 3, "message": "x"}}',
    b'{"ok": false, "error": {"code": "not_found"}}',
])
def test_parse_reply_refuses_malformed_replies(line):
    with pytest.raises(evshm.ProtocolError) as info:
        proto.parse_reply(line)
    assert info.value.code == evshm.MALFORMED_REPLY


def _error_line(code: str) -> bytes:
    return json.dumps({"ok": False, "error": {"code": code, "message": f"msg {code}"}}).encode()


@pytest.mark.parametrize("code, kind", [
    ("bad_request", evshm.ProtocolError),
    ("frame_too_large", evshm.ProtocolError),
    ("hello_required", evshm.ProtocolError),
    ("unsupported_version", evshm.ProtocolError),
    ("unknown_op", evshm.ProtocolError),
    ("bad_path", evshm.PathRefused),
    ("outside_roots", evshm.PathRefused),
    ("not_found", evshm.RecordingNotFound),
    ("unsupported_format", evshm.UnsupportedFormat),
    ("corrupt_recording", evshm.CorruptRecording),
    ("shm_full", evshm.ShmFull),
    ("over_budget", evshm.OverBudget),
    ("unknown_lease", evshm.UnknownLease),
    ("internal", evshm.DaemonError),
    ("some_future_code", evshm.DaemonError),
])
def test_error_code_selects_the_exception(code, kind):
    with pytest.raises(evshm.DaemonError) as info:
        proto.parse_reply(_error_line(code))
    assert type(info.value) is kind
    assert info.value.code == code
    assert info.value.message == f"msg {code}"
    assert isinstance(info.value, evshm.EvshmError)


def test_error_class_is_chosen_by_code_not_message():
    line = json.dumps({"ok": False, "error": {"code": "shm_full",
                                              "message": "not_found bad_path"}}).encode()
    with pytest.raises(evshm.ShmFull):
        proto.parse_reply(line)


def test_over_budget_is_still_caught_as_shm_full():
    """``over_budget`` raised ``ShmFull`` before ``OverBudget`` existed: code catching
    ``ShmFull`` keeps working."""
    with pytest.raises(evshm.ShmFull) as info:
        proto.parse_reply(_error_line("over_budget"))
    assert type(info.value) is evshm.OverBudget


def test_exception_names_do_not_shadow_builtins():
    import builtins

    for name in evshm.__all__:
        assert not hasattr(builtins, name), name


ARENA = "evshm-v2-9f2c41d07a3b5e18-4c1d"


def _chunk(index: int, rows: int, start: int, end: int) -> dict[str, Any]:
    return {"index": index, "extent": {"arena": 0, "offset": index << 26,
                                       "size": 13 * rows + 1000},
            "rows": rows, "start": start, "end": end}


METADATA = {"evshm.format": "evt3", "evshm.geometry": "header", "evshm.height": "720",
            "evshm.source": "day1/cam0.raw", "evshm.width": "1280"}
SCHEMA = [{"name": "t", "type": "int64"}, {"name": "x", "type": "int16"},
          {"name": "y", "type": "int16"}, {"name": "p", "type": "int8"}]
#: The windowed reply of docs/PROTOCOL.md.
OPEN_REPLY: dict[str, Any] = {
    "ok": True, "lease": 7, "path": "day1/cam0.raw", "table": "events",
    "window": [2000000, 2050000],
    "arenas": [{"name": ARENA, "path": f"/dev/shm/{ARENA}", "size": 1 << 30}],
    "chunks": [_chunk(3, 4194310, 4021881, 4194310), _chunk(4, 4194296, 0, 301122)],
    "rows": 473551, "format": "evt3", "width": 1280, "height": 720,
    "schema": SCHEMA, "metadata": METADATA, "cached": False, "dropped": 0,
    "skipped": 0,
}
#: A whole-recording reply: every chunk, every row.
WHOLE_REPLY: dict[str, Any] = {
    **OPEN_REPLY, "window": None, "rows": 30,
    "chunks": [_chunk(0, 10, 0, 10), _chunk(1, 15, 0, 15), _chunk(2, 5, 0, 5)],
}


def test_parse_open_reply():
    assert (evshm.ChunkInfo, evshm.ArenaInfo, evshm.ExtentInfo) == (
        proto.ChunkInfo, proto.ArenaInfo, proto.ExtentInfo)
    reply = proto.parse_open_reply(OPEN_REPLY)
    assert reply == proto.OpenReply(
        lease=7, path="day1/cam0.raw", table="events", window=(2000000, 2050000),
        arenas=(proto.ArenaInfo(ARENA, f"/dev/shm/{ARENA}", 1 << 30),),
        chunks=(
            proto.ChunkInfo(3, proto.ExtentInfo(ARENA, 3 << 26, 13 * 4194310 + 1000),
                            rows=4194310, start=4021881, end=4194310),
            proto.ChunkInfo(4, proto.ExtentInfo(ARENA, 4 << 26, 13 * 4194296 + 1000),
                            rows=4194296, start=0, end=301122),
        ),
        rows=473551, format="evt3", width=1280, height=720,
        schema=(("t", "int64"), ("x", "int16"), ("y", "int16"), ("p", "int8")),
        metadata=METADATA, cached=False)


def test_parse_whole_sealed_and_empty_open_replies():
    whole = proto.parse_open_reply({key: value for key, value in WHOLE_REPLY.items()
                                    if key != "window"})
    assert whole.window is None and whole.rows == 30
    assert [(c.index, c.start, c.end) for c in whole.chunks] == [(0, 0, 10), (1, 0, 15),
                                                                  (2, 0, 5)]
    sealed = dict(WHOLE_REPLY, arenas=[{"name": ARENA, "size": 1 << 30, "passed": True}],
                  gone=["evshm-v2-9f2c41d07a3b5e18-0001"])
    parsed_sealed = proto.parse_open_reply(sealed)
    assert parsed_sealed.arenas == (proto.ArenaInfo(ARENA, None, 1 << 30, passed=True),)
    assert parsed_sealed.gone == ("evshm-v2-9f2c41d07a3b5e18-0001",)
    empty = proto.parse_open_reply({**OPEN_REPLY, "window": [5, 5], "chunks": [], "rows": 0,
                                    "arenas": []})
    assert (empty.chunks, empty.rows, empty.window) == ((), 0, (5, 5))
    # `metadata`, `dropped` and `skipped` may be absent (the Rust side defaults them).
    bare = {key: value for key, value in OPEN_REPLY.items()
            if key not in ("metadata", "dropped", "skipped")}
    parsed = proto.parse_open_reply(bare)
    assert (parsed.metadata, parsed.dropped, parsed.skipped) == ({}, 0, 0)
    counted = proto.parse_open_reply({**OPEN_REPLY, "dropped": 2, "skipped": 3})
    assert (counted.dropped, counted.skipped) == (2, 3)
    with pytest.raises(evshm.ProtocolError):
        proto.parse_open_reply({**OPEN_REPLY, "skipped": "3"})


def _with_chunk(number: int, **change: Any) -> dict[str, Any]:
    chunks = [dict(chunk) for chunk in OPEN_REPLY["chunks"]]
    chunks[number].update(change)
    return {"chunks": chunks}


@pytest.mark.parametrize("change", [
    {"lease": "7"}, {"lease": True}, {"rows": -1}, {"cached": 0}, {"width": 1.5},
    {"chunks": None}, {"chunks": {}}, {"chunks": [None]},
    {"rows": 473550},  # not the sum of the chunks' rows
    {"window": [1]}, {"window": [2, 1]}, {"window": [1.0, 2]}, {"window": "1,2"},
    {"window": [True, 2]},
    {"schema": None}, {"schema": []}, {"schema": [{"name": "t"}]},
    {"schema": [{"name": 1, "type": "int64"}]},
    {"metadata": {"a": 1}}, {"metadata": []},
    {"table": "frames"},
    _with_chunk(0, extent=None), _with_chunk(0, extent={"arena": 0, "offset": 0}),
    _with_chunk(0, extent={"arena": 0, "offset": "0", "size": 9}),
    _with_chunk(0, extent={"arena": 0, "offset": 0, "size": 0}),
    _with_chunk(0, extent={"arena": 0, "offset": -64, "size": 9}),
    _with_chunk(0, extent={"arena": 1, "offset": 0, "size": 9}),
    _with_chunk(0, extent={"arena": ARENA, "offset": 0, "size": 9}),
    _with_chunk(0, extent={"arena": 0, "offset": (1 << 30) - 8, "size": 9}),
    {"arenas": None}, {"arenas": [{"name": ARENA}]},
    {"arenas": [{"name": ARENA, "size": 0}]},
    {"arenas": [{"name": ARENA, "size": 1 << 30}, {"name": ARENA, "size": 1 << 30}]},
    {"gone": "x"}, {"gone": [1]},
    _with_chunk(0, index=-1), _with_chunk(0, index="3"), _with_chunk(1, index=3),
    _with_chunk(0, rows=None), _with_chunk(0, start=-1),
    _with_chunk(0, start=4194311, end=4194311),  # past the batch's end
    _with_chunk(0, end=4194309),  # the rows of a window are one run: a gap before chunk 4
    _with_chunk(1, start=1, end=301123),  # ...and after chunk 3
    _with_chunk(1, end=4194297),  # past the batch's end
])
def test_parse_open_reply_refuses_bad_fields(change):
    with pytest.raises(evshm.ProtocolError) as info:
        proto.parse_open_reply({**OPEN_REPLY, **change})
    assert info.value.code == evshm.MALFORMED_REPLY


def test_a_version_1_reply_is_refused():
    v1 = {key: value for key, value in WHOLE_REPLY.items() if key not in ("chunks", "arenas")}
    v1["segment"] = {"name": "evshm-v1-1-a", "path": "/dev/shm/evshm-v1-1-a", "size": 400}
    with pytest.raises(evshm.ProtocolError, match="'chunks'"):
        proto.parse_open_reply(v1)


def test_a_whole_recording_reply_must_ask_for_every_row():
    chunks = [dict(chunk) for chunk in WHOLE_REPLY["chunks"]]
    chunks[0]["start"] = 1
    with pytest.raises(evshm.ProtocolError, match="one run"):
        proto.parse_open_reply({**WHOLE_REPLY, "chunks": chunks, "rows": 29})
    chunks[0]["start"], chunks[2]["end"] = 0, 4
    with pytest.raises(evshm.ProtocolError, match="one run"):
        proto.parse_open_reply({**WHOLE_REPLY, "chunks": chunks, "rows": 29})


def test_parse_list_and_stats_replies():
    infos = proto.parse_list_reply(REPLIES[1])
    assert infos == [evshm.RecordingInfo("dé/x.raw", "evt3", 3, False)]
    stats = proto.parse_stats_reply({"ok": True, "extents": 2, "leases": 3,
                                     "future": "text", "flag": True})
    assert stats == {"extents": 2, "leases": 3}


def test_parse_hello_reply_checks_the_version():
    assert proto.parse_hello_reply(REPLIES[0]) == proto.Hello("evshmd/0.1.0", ())
    with_roots = {**REPLIES[0], "roots": ["/data/a", "/data/b"]}
    assert proto.parse_hello_reply(with_roots).roots == ("/data/a", "/data/b")
    with pytest.raises(evshm.ProtocolError):
        proto.parse_hello_reply({**REPLIES[0], "roots": "/data/a"})
    with pytest.raises(evshm.ProtocolError) as info:
        proto.parse_hello_reply({"ok": True, "version": 1})  # a daemon of protocol 1
    assert info.value.code == "unsupported_version"


def test_open_request_table_and_geometry() -> None:
    assert proto.open_request("a.raw") == {"op": "open", "path": "a.raw", "table": "events"}
    assert proto.open_request("a.raw", "triggers", (640, 480)) == {
        "op": "open", "path": "a.raw", "table": "triggers", "width": 640, "height": 480}
    with pytest.raises(ValueError):
        proto.open_request("a.raw", "frames")


def test_open_request_with_a_window() -> None:
    import numpy as np

    request = proto.open_request("a.raw", window=(-5, np.int64(7)))
    assert request == {"op": "open", "path": "a.raw", "table": "events", "window": [-5, 7]}
    line = proto.encode_request(request)
    assert b'"window":[-5,7]' in line
    assert proto.open_request("a.raw", window=(3, 3))["window"] == [3, 3]  # empty is fine


@pytest.mark.parametrize("window, error", [
    ((5, 4), ValueError), ((0, 1 << 63), ValueError), ((-(1 << 63) - 1, 0), ValueError),
    ((0.0, 1), TypeError), ((0, "1"), TypeError), ((False, 1), TypeError),
    ((None, 1), TypeError),
])
def test_check_window_refuses_what_the_daemon_would(window, error) -> None:
    with pytest.raises(error):
        proto.check_window(window)
    assert proto.check_window((-(1 << 63), (1 << 63) - 1)) == (-(1 << 63), (1 << 63) - 1)
