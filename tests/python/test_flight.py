"""evshmd's Flight service on loopback (``--flight grpc://127.0.0.1:0``): remote opens
equal local ones, tokens are checked on every call, chunks come on parallel streams, bad
tickets and paths are Flight errors, a changed file is a stale ticket.
(A stream's lease, TLS, and a daemon killed mid-stream: test_flight_netns.py, across two
network namespaces.)"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flight_util import TOKEN, flight_address, same_rows, token_file

import evshm
from harness import Daemon, generate, wait_for

#: What pyarrow raises for a Flight error status: a FlightError subclass, or an
#: ArrowException or OSError, depending on the status code.
FLIGHT_ERRORS = (flight.FlightError, pa.ArrowException, OSError)

#: Chunks of about this many events: big.raw (3 M events) comes in about 30.
CHUNK_EVENTS = 100_000


@pytest.fixture
def real_in_root() -> bool:
    return False


@pytest.fixture
def daemon_args(tmp_path: Path) -> list[str]:
    return ["--chunk-events", str(CHUNK_EVENTS), "--flight", "grpc://127.0.0.1:0",
            "--flight-token-file", str(token_file(tmp_path))]


@pytest.fixture
def remote(synthetic: Daemon) -> Iterator[evshm.RemoteClient]:
    client: object = evshm.Client(flight_address(synthetic), token=TOKEN)  # type: ignore[call-arg]
    assert isinstance(client, evshm.RemoteClient)
    with client:
        yield client


def options(token: str | None = TOKEN) -> flight.FlightCallOptions:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    return flight.FlightCallOptions(headers=headers, timeout=60)  # type: ignore[arg-type]


def test_remote_opens_equal_local_ones(synthetic: Daemon, remote: evshm.RemoteClient) -> None:
    local = synthetic.client()
    for window in (None, (1_000_000, 1_250_000), (10_050_000, 10_060_000), (5, 5)):
        expected = local.open("big.raw" if window is None or window[0] < 10**7 else "small.raw",
                              window=window)
        got = remote.open(expected.path, window=window)
        assert same_rows(got.table, expected.table), window
        assert (got.rows, got.window, got.format, got.width, got.height) == (
            expected.rows, expected.window, expected.format, expected.width, expected.height)
        assert got.table.schema.metadata == expected.table.schema.metadata
    whole = remote.open("big.raw")
    assert len(whole.chunks) > 20, "fetched chunk by chunk"
    assert [c.index for c in whole.chunks] == list(range(len(whole.chunks)))
    part = whole.time_window(2_000_000, 2_000_500)
    assert same_rows(part.table, local.open("big.raw", window=(2_000_000, 2_000_500)).table)
    triggers = remote.open("big.raw", table="triggers")
    assert triggers.table.schema.names == ["t", "id", "p"]
    listed = {r.path: r for r in remote.list()}
    assert set(listed) == {"big.raw", "small.raw"} and listed["big.raw"].format == "evt3"


def test_every_call_needs_the_token(synthetic: Daemon) -> None:
    address = flight_address(synthetic)
    for token in (None, "wrong", TOKEN + "x", ""):
        client = evshm.RemoteClient(address, token=token)
        with pytest.raises(evshm.AccessDenied):
            client.open("big.raw")
        with pytest.raises(evshm.AccessDenied):
            client.list()
    raw = flight.connect(address)
    info = raw.get_flight_info(flight.FlightDescriptor.for_path("small.raw"), options())
    # pyarrow raises FlightUnauthenticatedError or a plain OSError, by method.
    with pytest.raises((flight.FlightUnauthenticatedError, OSError), match="unauthenticated"):
        raw.do_get(info.endpoints[0].ticket, options(None)).read_all()
    with pytest.raises((flight.FlightUnauthenticatedError, OSError), match="unauthenticated"):
        raw.get_schema(flight.FlightDescriptor.for_path("small.raw"), options("nope"))
    assert raw.do_get(info.endpoints[0].ticket, options()).read_all().num_rows > 0


def test_bad_requests_are_flight_errors_and_the_daemon_lives_on(
        synthetic: Daemon, remote: evshm.RemoteClient) -> None:
    with pytest.raises(evshm.RecordingNotFound):
        remote.open("missing.raw")
    with pytest.raises(evshm.PathRefused):
        remote.open("../outside.raw")
    with pytest.raises(evshm.UnsupportedFormat):
        remote.open("notes.txt")
    raw = flight.connect(flight_address(synthetic))
    info = raw.get_flight_info(flight.FlightDescriptor.for_path("small.raw"), options())
    good = json.loads(info.endpoints[0].ticket.ticket)
    forged = [b"", b"garbage", b"\xff" * 64, json.dumps({**good, "chunk": 10**6}).encode(),
              json.dumps({**good, "rows": [0, 10**12]}).encode(),
              json.dumps({**good, "path": "../../etc/passwd"}).encode(),
              json.dumps({**good, "evshm": 2}).encode(), b"x" * 200_000]
    for ticket in forged:
        with pytest.raises(FLIGHT_ERRORS, match=r"evshm:|message length too large"):
            raw.do_get(flight.Ticket(ticket), options()).read_all()
    backwards = json.dumps({"path": "small.raw", "window": [9, 1]}).encode()
    for command in (b"{}", b"not json", backwards, b"{" + b" " * 100_000 + b"}"):
        with pytest.raises(FLIGHT_ERRORS, match=r"evshm:|message length too large"):
            raw.get_flight_info(flight.FlightDescriptor.for_command(command), options())
    with pytest.raises(FLIGHT_ERRORS, match="no Flight actions"):
        list(raw.do_action(flight.Action("x", b""), options()))
    assert synthetic.proc.poll() is None, "alive after every bad request"
    assert remote.open("small.raw").rows == 200_000


def test_chunks_come_on_parallel_streams(synthetic: Daemon) -> None:
    address = flight_address(synthetic)
    one = evshm.RemoteClient(address, token=TOKEN, parallel=1).open("big.raw")
    four = evshm.RemoteClient(address, token=TOKEN, parallel=4).open("big.raw")
    assert same_rows(one.table, four.table)
    assert one.rows == 3_000_000
    # What one stream reads: every chunk in one DoGet, the ticket GetFlightInfo gave for it.
    raw = flight.connect(address)
    info = raw.get_flight_info(flight.FlightDescriptor.for_path("big.raw"), options())
    whole = json.loads(info.app_metadata)["whole"]
    stream = raw.do_get(flight.Ticket(whole.encode()), options()).read_all()
    assert stream.num_rows == one.rows and same_rows(stream, one.table)
    assert len(stream.column("t").chunks) == len(info.endpoints), "a batch per chunk"
    # Every stream held a lease while it lasted, and gave it back.
    wait_for(lambda: synthetic.client().stats()["leases"] == 0, "the streams' leases to go")


def test_a_ticket_of_a_changed_file_is_stale(synthetic: Daemon, tmp_path: Path) -> None:
    address = flight_address(synthetic)
    raw = flight.connect(address)
    path = synthetic.root / "changing.raw"
    generate(path, 50_000, seed=3)
    info = raw.get_flight_info(flight.FlightDescriptor.for_path("changing.raw"), options())
    generate(tmp_path / "other.raw", 60_000, seed=4)
    os.replace(tmp_path / "other.raw", path)
    with pytest.raises(FLIGHT_ERRORS, match="evshm:stale_ticket"):
        raw.do_get(info.endpoints[0].ticket, options()).read_all()
    # The client opens again, once, on the new version.
    assert evshm.RemoteClient(address, token=TOKEN).open("changing.raw").rows == 60_000


def test_datasets_read_over_flight(synthetic: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """socket_path="grpc://..." makes the datasets' clients remote ones (the token from
    $EVSHM_FLIGHT_TOKEN): the same windows as through the socket."""
    pytest.importorskip("torch")
    from evshm.torch import EventWindowDataset

    monkeypatch.setenv("EVSHM_FLIGHT_TOKEN", TOKEN)
    windows = [("big.raw", 1_000_000, 1_010_000), ("small.raw", 10_000_000, 10_001_000)]
    remote = EventWindowDataset(windows=windows, socket_path=flight_address(synthetic))
    local = EventWindowDataset(windows=windows, socket_path=synthetic.socket)
    assert len(remote) == len(local) == 2
    for i in range(2):
        got, expected = remote[i], local[i]
        assert all(got[name].equal(expected[name]) for name in ("t", "x", "y", "p"))
