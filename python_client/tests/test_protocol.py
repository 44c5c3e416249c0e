"""Framing and reply parsing, on bytes only (no socket)."""

from __future__ import annotations

import json

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
    assert proto.hello_request("evshm-python/0.1.0") == {
        "op": "hello", "version": 1, "client": "evshm-python/0.1.0"}


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


REPLIES = [
    {"ok": True, "version": 1, "server": "evshmd/0.1.0"},
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


def test_exception_names_do_not_shadow_builtins():
    import builtins

    for name in evshm.__all__:
        assert not hasattr(builtins, name), name


OPEN_REPLY = {
    "ok": True, "lease": 7, "path": "day1/cam0.raw",
    "segment": {"name": "evshm-v1-4242-5f0c", "path": "/dev/shm/evshm-v1-4242-5f0c",
                "size": 2855488},
    "rows": 219596, "format": "evt3", "width": 1280, "height": 720,
    "schema": [{"name": "t", "type": "int64"}], "cached": False,
}


def test_parse_open_reply():
    reply = proto.parse_open_reply(OPEN_REPLY)
    assert reply == proto.OpenReply(
        lease=7, path="day1/cam0.raw", segment_name="evshm-v1-4242-5f0c",
        segment_path="/dev/shm/evshm-v1-4242-5f0c", segment_size=2855488, rows=219596,
        format="evt3", width=1280, height=720, cached=False)


@pytest.mark.parametrize("change", [
    {"lease": "7"}, {"lease": True}, {"rows": -1}, {"segment": None},
    {"segment": {"name": "n", "path": "p"}}, {"cached": 0}, {"width": 1.5},
])
def test_parse_open_reply_refuses_bad_fields(change):
    with pytest.raises(evshm.ProtocolError) as info:
        proto.parse_open_reply({**OPEN_REPLY, **change})
    assert info.value.code == evshm.MALFORMED_REPLY


def test_parse_list_and_stats_replies():
    infos = proto.parse_list_reply(REPLIES[1])
    assert infos == [evshm.RecordingInfo("dé/x.raw", "evt3", 3, False)]
    stats = proto.parse_stats_reply({"ok": True, "segments": 2, "leases": 3,
                                     "future": "text", "flag": True})
    assert stats == {"segments": 2, "leases": 3}


def test_parse_hello_reply_checks_the_version():
    assert proto.parse_hello_reply(REPLIES[0]) == "evshmd/0.1.0"
    with pytest.raises(evshm.ProtocolError) as info:
        proto.parse_hello_reply({"ok": True, "version": 2})
    assert info.value.code == "unsupported_version"


def test_open_request_table_and_geometry() -> None:
    assert proto.open_request("a.raw") == {"op": "open", "path": "a.raw", "table": "events"}
    assert proto.open_request("a.raw", "triggers", (640, 480)) == {
        "op": "open", "path": "a.raw", "table": "triggers", "width": 640, "height": 480}
    with pytest.raises(ValueError):
        proto.open_request("a.raw", "frames")
