"""The Python client against the protocol's single source of truth.

``protocol/fixtures/protocol.json`` is written by the Rust protocol crate's tests from its
types and from the examples of ``docs/PROTOCOL.md`` (a stale file fails those tests). Here
the Python client's constants, error table, socket chain, request builders, reply checks
and the fake daemon of these tests are held to it, so the two languages cannot drift.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from evshm import _connect, _errors, _trust
from evshm import _protocol as proto
from fakes import FakeDaemon, FakeSocket

FIXTURE = Path(__file__).resolve().parents[2] / "protocol" / "fixtures" / "protocol.json"
SPEC: dict[str, Any] = json.loads(FIXTURE.read_text())
EXCHANGES: list[dict[str, Any]] = SPEC["exchanges"]


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def test_constants_match() -> None:
    assert proto.PROTOCOL_VERSION == SPEC["protocol_version"]
    assert proto.MAX_REQUEST_LINE == SPEC["max_request_line"]
    assert proto.MAX_REPLY_LINE == SPEC["max_reply_line"]


def test_every_error_code_has_its_exception() -> None:
    codes = set(SPEC["error_codes"])
    known = set(_errors._ERRORS_BY_CODE) - {_errors.MALFORMED_REPLY}
    assert known == codes - {"internal"}, "the Python table and the daemon's codes differ"
    for code in codes:
        error = _errors.error_for_code(code, "message")
        assert error.code == code
        assert (type(error) is _errors.DaemonError) == (code == "internal"), code


@pytest.mark.parametrize("case", SPEC["default_socket"], ids=lambda c: c["path"])
def test_default_socket_chain(case: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case["env"].items():
        monkeypatch.setenv(name, value)
    assert _connect.default_socket_path() == case["path"].format(uid=os.getuid())


def test_whom_the_client_trusts() -> None:
    assert _trust.fallback_socket_dir() == SPEC["fallback_socket_dir"].format(uid=os.getuid())
    assert _trust.DAEMON_UID_VARIABLE == SPEC["daemon_uid_variable"]


BUILDERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "hello": lambda r: proto.hello_request(r["client"]),
    "list": lambda r: proto.list_request(),
    "open": lambda r: proto.open_request(
        r["path"], r.get("table", "events"),
        (r["width"], r["height"]) if "width" in r else None,
        tuple(r["window"]) if "window" in r else None),
    "release": lambda r: proto.release_request(r["lease"]),
    "stats": lambda r: proto.stats_request(),
    "evict": lambda r: proto.evict_request(),
}


# A documented hello of another protocol version shows the daemon's refusal: this client
# never sends one.
OWN_REQUESTS = [e for e in EXCHANGES
                if e["request"].get("version", proto.PROTOCOL_VERSION) == proto.PROTOCOL_VERSION]


@pytest.mark.parametrize("exchange", OWN_REQUESTS, ids=lambda e: e["op"])
def test_documented_requests_are_what_the_client_sends(exchange: dict[str, Any]) -> None:
    request = exchange["request"]
    sent = json.loads(proto.encode_request(BUILDERS[exchange["op"]](request)))
    assert sent == request


PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "hello": proto.parse_hello_reply,
    "list": proto.parse_list_reply,
    "open": proto.parse_open_reply,
    "release": lambda reply: reply,
    "stats": proto.parse_stats_reply,
    "evict": proto.parse_evict_reply,
}


@pytest.mark.parametrize("exchange", EXCHANGES, ids=lambda e: e["op"])
def test_documented_replies_are_read(exchange: dict[str, Any]) -> None:
    reply = exchange["reply"]
    if reply["ok"]:
        PARSERS[exchange["op"]](proto.parse_reply(_line(reply)))
    else:
        with pytest.raises(_errors.DaemonError) as raised:
            proto.parse_reply(_line(reply))
        assert raised.value.code == reply["error"]["code"]


@pytest.mark.parametrize("case", SPEC["malformed_open_replies"], ids=lambda c: c["why"])
def test_malformed_open_replies_are_refused(case: dict[str, Any]) -> None:
    with pytest.raises(_errors.ProtocolError):
        proto.parse_open_reply(proto.parse_reply(_line(case["reply"])))


@pytest.mark.parametrize("exchange", [e for e in EXCHANGES if e["reply"]["ok"]],
                         ids=lambda e: e["op"])
def test_the_fake_daemon_answers_like_the_real_one(exchange: dict[str, Any],
                                                   tmp_path: Path) -> None:
    """The fake of these tests sends no field the daemon does not, and its open replies
    have every field the daemon's have."""
    fake = FakeDaemon(tmp_path)
    sock = FakeSocket(fake)
    request = dict(exchange["request"])
    if exchange["op"] == "release":
        fake.answer(sock, {"op": "open", "path": "a.raw"})
        request["lease"] = 1
    # The fake's recording is not the documented one: ask for all of it.
    request.pop("window", None)
    line, _ = fake.answer(sock, request)
    faked = json.loads(line)
    golden = exchange["reply"]
    assert faked["ok"]
    assert set(faked) <= set(golden), f"fields the daemon never sends: {set(faked) - set(golden)}"
    if exchange["op"] == "open":
        assert set(faked) == set(golden) - {"window"}
        chunk = faked["chunks"][0]
        assert set(chunk) == set(golden["chunks"][0])
        assert set(chunk["extent"]) == set(golden["chunks"][0]["extent"])
        assert set(faked["arenas"][0]) <= {"name", "path", "size", "passed"}
    PARSERS[exchange["op"]](proto.parse_reply(line.rstrip(b"\n")))
