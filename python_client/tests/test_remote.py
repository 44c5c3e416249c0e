"""RemoteClient without a server: addresses, pickling, and Flight errors mapped to the
same exceptions as local ones, from the ``evshm:<code>:`` head of the daemon's messages."""

from __future__ import annotations

import pickle

import pyarrow.flight as flight
import pytest

import evshm
from evshm._remote import _error, is_remote_address


def test_addresses() -> None:
    assert is_remote_address("grpc://h:1") and is_remote_address("grpc+tls://h:1")
    assert not is_remote_address("/tmp/evshm.sock") and not is_remote_address(None)
    with pytest.raises(ValueError):
        evshm.RemoteClient("/tmp/evshm.sock")
    with pytest.raises(ValueError):
        evshm.RemoteClient("grpc://h:1", parallel=0)
    # Typed code says RemoteClient: Client's signature is the local one's.
    client: object = evshm.Client("grpc://127.0.0.1:1", token="t", parallel=2)  # type: ignore[call-arg]
    assert isinstance(client, evshm.RemoteClient)
    assert client.parallel == 2


def test_pickled_clients_carry_the_address_and_options_only() -> None:
    client = evshm.RemoteClient("grpc://127.0.0.1:1", token="secret", parallel=3, timeout=5)
    copy = pickle.loads(pickle.dumps(client))
    assert (copy.address, copy.parallel, copy.timeout) == ("grpc://127.0.0.1:1", 3, 5)
    assert copy._token == "secret" and copy._lanes == {}


@pytest.mark.parametrize(("message", "kind", "code"), [
    ("Flight returned not found error, with message: evshm:not_found: a.raw: no file. "
     "gRPC client debug context: x", evshm.RecordingNotFound, "not_found"),
    ("evshm:outside_roots: ../a.raw is outside. Detail: NotFound", evshm.PathRefused,
     "outside_roots"),
    ("evshm:over_budget: the whole recording needs 2 GiB", evshm.OverBudget, "over_budget"),
    ("evshm:unauthenticated: wrong token", evshm.AccessDenied, "unauthenticated"),
    ("evshm:stale_ticket: a.raw changed", evshm.DaemonError, "stale_ticket"),
    ("something else entirely", evshm.DaemonError, "internal"),
])
def test_flight_errors_become_evshm_errors(message: str, kind: type, code: str) -> None:
    error = _error(flight.FlightServerError(message), "grpc://h:1")
    assert type(error) is kind and error.code == code  # type: ignore[attr-defined]
    assert "gRPC client debug context" not in str(error)


def test_an_unreachable_service_is_a_lost_connection() -> None:
    error = _error(flight.FlightUnavailableError("failed to connect"), "grpc://h:1")
    assert isinstance(error, evshm.ConnectionLost)
    with pytest.raises(evshm.ConnectionLost):
        evshm.RemoteClient("grpc://127.0.0.1:1", timeout=5).open("a.raw")
