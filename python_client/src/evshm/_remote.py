"""A client of evshmd's Arrow Flight service: the same recordings from another machine.

``evshmd --flight grpc://HOST:PORT`` serves the recordings under its roots over Arrow
Flight (gRPC). :class:`RemoteClient` (also what ``evshm.Client("grpc://HOST:PORT")``
returns) asks ``GetFlightInfo`` for a path or window, which answers with one endpoint per
chunk, fetches the chunks with ``DoGet`` on several streams at once, and returns the same
:class:`~evshm.Recording` as a local open: ``.table``, ``.numpy()``, ``.torch()``,
windows. The bytes cross the network once, into memory this process owns (a local open
maps shared memory instead, with no copy at all).

Errors are the same exceptions as locally, chosen from the error code the daemon puts at
the head of its Flight error messages (``evshm:<code>: ...``); a wrong or missing token is
:class:`~evshm.AccessDenied`, an unreachable service :class:`~evshm.ConnectionLost`.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from ._arena import join_chunks
from ._errors import AccessDenied, ConnectionLost, DaemonError, EvshmError, error_for_code
from ._protocol import ChunkInfo, ExtentInfo, OpenReply, RecordingInfo, check_window
from ._recording import Recording

__all__ = ["RemoteClient", "is_remote_address", "REMOTE_SCHEMES"]

#: The environment variable a token defaults to.
TOKEN_VARIABLE = "EVSHM_FLIGHT_TOKEN"

#: Address schemes of the Flight service (``grpc+tls`` with TLS).
REMOTE_SCHEMES = ("grpc://", "grpc+tcp://", "grpc+tls://")

# "evshm:<code>: <message>", as the daemon writes it, inside gRPC's own wording.
_CODED = re.compile(r"evshm:([a-z_]+): (.*?)(?:\. gRPC client debug context|\. Detail:|$)",
                    re.DOTALL)


def is_remote_address(address: object) -> bool:
    """Whether ``address`` names a Flight service (``grpc://...``) rather than a socket."""
    return isinstance(address, str) and address.startswith(REMOTE_SCHEMES)


def _flight() -> Any:
    import pyarrow.flight as flight  # part of every pyarrow wheel

    return flight


def _error(exc: BaseException, address: str) -> EvshmError:
    """The evshm exception for a failed Flight call."""
    flight = _flight()
    text = str(exc)
    found = _CODED.search(text)
    if found:
        code, message = found.group(1), found.group(2).strip()
        if code == "unauthenticated":
            return AccessDenied(code, f"evshmd at {address} refused the token: {message}")
        return error_for_code(code, message)
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return AccessDenied("unauthenticated", f"evshmd at {address}: {text}")
    if isinstance(exc, (flight.FlightUnavailableError, flight.FlightCancelledError,
                        flight.FlightTimedOutError, OSError)):
        return ConnectionLost(f"evshmd at {address} cannot be reached or went away: {text}")
    return DaemonError("internal", f"evshmd at {address}: {text}")


def _whole_ticket(info: Any) -> bytes | None:
    """The ticket of every chunk in one stream, from ``GetFlightInfo``'s ``app_metadata``
    (``{"whole": ticket}``), if the service gave one."""
    try:
        whole = json.loads(bytes(getattr(info, "app_metadata", b"") or b"{}")).get("whole")
    except (ValueError, AttributeError):
        return None
    return whole.encode() if isinstance(whole, str) else None


class RemoteClient:
    """A client of an evshmd Flight service (``evshmd --flight ADDR``).

    Args:
        address: ``grpc://HOST:PORT``, or ``grpc+tls://HOST:PORT`` for a service with
            TLS.
        token: the service's bearer token (``--flight-token-file``), sent on every call
            as ``authorization: Bearer <token>``; default ``$EVSHM_FLIGHT_TOKEN``, if set
            (so that the datasets, given ``socket_path="grpc://..."``, read remotely).
        tls_root_certs: PEM certificates to trust for TLS (bytes, or a file path); the
            system's by default.
        parallel: chunks fetched at once, each on a connection of its own.
        timeout: seconds for each call, ``None`` for no limit.

    A client can be shared by threads; in a forked or spawned child (a DataLoader
    worker) it makes its own gRPC channel on first use, since a channel does not survive
    a fork. Pickling carries the address, token and options only.

    Example::

        client = evshm.Client("grpc://node0:8815", token="...")
        with client.open("day1/cam0.raw", window=(0, 50_000)) as rec:
            t = rec.numpy()["t"]
    """

    def __init__(self, address: str, *, token: str | None = None,
                 tls_root_certs: bytes | str | os.PathLike[str] | None = None,
                 parallel: int = 4, timeout: float | None = 60.0) -> None:
        if not is_remote_address(address):
            raise ValueError(f"{address!r} is not a Flight address (grpc://HOST:PORT)")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        certs = tls_root_certs
        if certs is not None and not isinstance(certs, bytes):
            with open(certs, "rb") as f:
                certs = f.read()
        self.address: str = address
        self.parallel: int = parallel
        self.timeout: float | None = timeout
        self._token = token if token is not None else os.environ.get(TOKEN_VARIABLE)
        self._certs: bytes | None = certs
        self._lock = threading.Lock()
        self._pid = -1
        self._lanes: dict[int, Any] = {}

    # ----------------------------------------------------------------- connection

    def __getstate__(self) -> dict[str, Any]:
        return {"address": self.address, "token": self._token, "certs": self._certs,
                "parallel": self.parallel, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["address"], token=state["token"],  # type: ignore[misc]
                      tls_root_certs=state["certs"], parallel=state["parallel"],
                      timeout=state["timeout"])

    def _flight_client(self, lane: int = 0) -> Any:
        """The client of connection ``lane`` (one per chunk fetched at once: streams on one
        HTTP/2 connection share one TCP stream and one thread of gRPC's), made in this
        process on first use."""
        with self._lock:
            if self._pid != os.getpid():
                self._lanes = {}  # a parent's channels do not survive a fork
                self._pid = os.getpid()
            client = self._lanes.get(lane)
            if client is None:
                flight = _flight()
                kwargs: dict[str, Any] = {
                    # Each lane's channel its own connection, not one shared by all; and
                    # HTTP/2 frames of up to 16 MiB rather than 16 KiB: a chunk of tens of
                    # megabytes in fewer pieces.
                    "generic_options": [("grpc.use_local_subchannel_pool", 1),
                                        ("grpc.http2.max_frame_size", (1 << 24) - 1)],
                }
                if self._certs is not None:
                    kwargs["tls_root_certs"] = self._certs
                try:
                    client = flight.FlightClient(self.address, **kwargs)
                except Exception as exc:
                    raise _error(exc, self.address) from exc
                self._lanes[lane] = client
            return client

    def _options(self) -> Any:
        headers = []
        if self._token is not None:
            headers.append((b"authorization", b"Bearer " + self._token.encode()))
        return _flight().FlightCallOptions(headers=headers, timeout=self.timeout)

    # ----------------------------------------------------------------- requests

    def list(self) -> builtins.list[RecordingInfo]:
        """The recordings under the service's roots (``decoded`` is always ``False``: the
        Flight listing does not say)."""
        client, options = self._flight_client(), self._options()
        try:
            infos = builtins.list(client.list_flights(options=options))
        except Exception as exc:
            raise _error(exc, self.address) from exc
        listed = []
        for info in infos:
            path = "/".join(p.decode() if isinstance(p, bytes) else p
                            for p in info.descriptor.path)
            meta = info.schema.metadata or {}
            listed.append(RecordingInfo(path=path, format=meta.get(b"evshm.format", b"").decode(),
                                        size=info.total_bytes, decoded=False))
        return listed

    def open(self, path: str, *, window: tuple[int, int] | None = None,
             table: str = "events", geometry: tuple[int, int] | None = None) -> Recording:
        """Open a recording, or the time window ``[t0, t1)`` of it, as
        :meth:`evshm.Client.open` does, and fetch its rows (chunks in parallel).

        The recording's rows are in memory of this process: the views are not backed by
        shared memory, and nothing is held on the daemon once this returns.
        """
        checked = None if window is None else check_window(window)
        try:
            return self._open(os.fspath(path), checked, table, geometry)
        except DaemonError as exc:
            if exc.code != "stale_ticket":
                raise
        # The file changed between GetFlightInfo and DoGet: once more, on the new version.
        return self._open(os.fspath(path), checked, table, geometry)

    def _open(self, path: str, window: tuple[int, int] | None, table: str,
              geometry: tuple[int, int] | None) -> Recording:
        flight = _flight()
        client, options = self._flight_client(), self._options()
        command: dict[str, Any] = {"path": path, "table": table}
        if window is not None:
            command["window"] = list(window)
        if geometry is not None:
            command["width"], command["height"] = (int(geometry[0]), int(geometry[1]))
        descriptor = flight.FlightDescriptor.for_command(json.dumps(command).encode())
        try:
            info = client.get_flight_info(descriptor, options)
        except Exception as exc:
            raise _error(exc, self.address) from exc
        endpoints = builtins.list(info.endpoints)

        lanes = max(1, min(self.parallel, len(endpoints)))

        def lane(number: int) -> list[pa.Table]:
            # Endpoints number, number + lanes...: one after the other on this connection.
            lane_client = self._flight_client(number)
            got = []
            for endpoint in endpoints[number::lanes]:
                try:
                    got.append(lane_client.do_get(endpoint.ticket, options).read_all())
                except Exception as exc:
                    raise _error(exc, self.address) from exc
            return got

        whole = _whole_ticket(info) if lanes == 1 and len(endpoints) > 1 else None
        if whole is not None:
            # One chunk at a time: all of them in one stream, which never waits in between.
            try:
                reader = self._flight_client(0).do_get(flight.Ticket(whole), options)
                tables = [pa.Table.from_batches([chunk.data]) for chunk in reader]
            except Exception as exc:
                raise _error(exc, self.address) from exc
            if len(tables) != len(endpoints):
                raise DaemonError("internal", f"evshmd at {self.address} sent {len(tables)} "
                                              f"chunks of {path} for {len(endpoints)}")
        elif lanes > 1:
            with ThreadPoolExecutor(lanes) as pool:
                per_lane = builtins.list(pool.map(lane, range(lanes)))
            tables = [per_lane[i % lanes][i // lanes] for i in range(len(endpoints))]
        else:
            tables = lane(0)
        return self._recording(path, table, window, info, endpoints, tables)

    def _recording(self, path: str, table: str, window: tuple[int, int] | None, info: Any,
                   endpoints: Sequence[Any], tables: Sequence[pa.Table]) -> Recording:
        schema: pa.Schema = info.schema
        metadata = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        fields = tuple((field.name, str(field.type)) for field in schema)
        chunks = []
        for i, (endpoint, part) in enumerate(zip(endpoints, tables)):
            try:
                index = int(json.loads(endpoint.ticket.ticket)["chunk"])
            except (ValueError, KeyError, TypeError):
                index = i
            # No arena: the chunk's rows were received into this process's memory.
            extent = ExtentInfo(arena=f"flight:{path}", offset=0, size=part.nbytes)
            chunks.append(ChunkInfo(index, extent, part.num_rows, 0, part.num_rows))
        rows = sum(part.num_rows for part in tables)
        if info.total_records >= 0 and rows != info.total_records:
            raise DaemonError("internal", f"evshmd at {self.address} announced "
                                          f"{info.total_records} rows of {path} but sent {rows}")
        batches = [batch for part in tables for batch in part.to_batches()]
        joined = join_chunks(batches, schema if batches else None, fields, metadata)

        def side(key: str) -> int | None:
            value = metadata.get(key)
            return int(value) if value is not None else None

        reply = OpenReply(lease=0, path=path, table=table, window=window, arenas=(),
                          chunks=tuple(chunks),
                          rows=rows, format=metadata.get("evshm.format", ""),
                          width=side("evshm.width"), height=side("evshm.height"),
                          schema=fields, metadata=metadata, cached=False)
        return Recording(reply, chunks, None, joined, window=window)

    # ----------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close the gRPC channels (recordings already returned stay valid)."""
        with self._lock:
            lanes, self._lanes = self._lanes, {}
        if self._pid == os.getpid():
            for client in lanes.values():
                client.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<evshm.RemoteClient {self.address}>"
