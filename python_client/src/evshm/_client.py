"""The socket side of the client: :class:`Client`, connections and leases.

How a lease follows the data
----------------------------
``Client.open`` gets one lease and reads every chunk of the reply in place in the arenas'
mappings (``_arena``: each arena mapped once per process). The lease must stay held while
any Arrow buffer of the recording is alive, wherever that buffer went (a column kept in a
list, a numpy view...): evshmd may reuse an extent once its lease ends. Every such buffer
is based on the open's ``Hold`` object, so a ``weakref.finalize`` on the hold tells when
the last of them is gone, and sends ``release`` then. (A reply without chunks, an empty
window, leaves nothing to follow: its lease is released at once.)
``Recording.release()`` merely drops the recording's own references, and
numpy/polars/torch views and windows (``_views``, ``_recording``) all hold Arrow buffers,
so they hold the lease too.

Finalizers run whenever the garbage is collected, possibly in the middle of another request
on the same connection (same thread or another). They therefore never do socket I/O
themselves unless the connection's lock is free: the lease id is queued, and the queue is
flushed by whoever holds or next takes the lock (before the next request, after the current
one, or when the client closes). A connection whose client is closed or gone stays open
until its last lease is released, then closes.

Fork: a connection remembers the pid that opened it. In a child process the client opens a
connection of its own; the parent's socket is closed in the child without shutdown and the
parent's leases are never touched (redis-py's ``_checkpid``).
"""

from __future__ import annotations

import builtins
import collections
import logging
import os
import socket
import threading
import time
import weakref
from typing import Any, Callable, TypeVar, Union

from ._arena import Hold, StreamReader, arena_mapping, forget, join_chunks, stream_buffer
from ._connect import connect as _connect
from ._connect import daemon_status, default_socket_path
from ._errors import (
    MALFORMED_REPLY,
    ConnectionLost,
    DaemonError,
    EvshmError,
    MappingError,
    PathRefused,
    ProtocolError,
)
from ._protocol import (
    LineBuffer,
    OpenReply,
    RecordingInfo,
    check_window,
    encode_request,
    evict_request,
    hello_request,
    list_request,
    open_request,
    parse_evict_reply,
    parse_hello_reply,
    parse_list_reply,
    parse_open_reply,
    parse_reply,
    parse_stats_reply,
    release_request,
    stats_request,
)
from ._recording import Recording

__all__ = ["Client"]

_T = TypeVar("_T")
_log = logging.getLogger("evshm")
_RECV_SIZE = 65_536
# Descriptors one recvmsg can take: Linux's SCM_MAX_FD, the most one message can carry
# (the daemon sends at most 250 per message, a sealed reply's spread over several).
_MAX_FDS = 253
PathArg = Union[str, "os.PathLike[str]", "os.PathLike[bytes]", bytes]


def _client_name() -> str:
    from . import __version__

    return f"evshm-python/{__version__}"


def _path_arg(path: PathArg) -> str:
    text = os.fspath(path)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise PathRefused("bad_path", f"path {text!r} is not valid UTF-8") from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PathRefused("bad_path", f"path {text!r} is not valid UTF-8") from None
    return text


def _went_away(conn: _Connection, error: EvshmError) -> bool:
    """Whether ``error`` came from evshmd closing ``conn``, as it does when it stops: the
    connection was dropped from its end, or an arena of a reply vanished (a stopping
    daemon removes them) and the connection turns out dropped."""
    if isinstance(error, MappingError):
        if not error.vanished:
            return False
        try:
            conn.request(stats_request(), parse_stats_reply)
        except ConnectionLost:
            pass
        else:
            return False  # evshmd still serves: the arena went some other way
    return conn.dropped


class _Connection:
    """One socket to evshmd: its lock, its reply buffer and the leases taken on it."""

    def __init__(self, socket_path: str, timeout: float | None,
                 explicit: bool = True) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.pid = os.getpid()
        self.lock = threading.Lock()
        # Leases whose buffers are gone, waiting for the lock to send `release`.
        self.pending: collections.deque[int] = collections.deque()
        # Leases whose buffers may still be alive (not released yet).
        self.live: set[int] = set()
        self.closing = False  # close as soon as no lease is live
        self.closed = False
        # Whether evshmd closed it (it stopped or restarted): see Client._call.
        self.dropped = False
        self._lines = LineBuffer()
        # Descriptors passed with the reply being read (a sealed arena, SCM_RIGHTS).
        self._fds: list[int] = []
        # Arenas evshmd named on this connection: the process forgets their mappings when
        # it closes (evshmd may be gone, and its arenas with it).
        self.arenas: set[str] = set()
        self._sock = _connect(socket_path, timeout, explicit)
        try:
            self.hello = self.request(hello_request(_client_name()), parse_hello_reply)
        except BaseException:
            self._close_locked()
            raise

    @property
    def sock(self) -> socket.socket:
        """The socket (to read the credentials of the process at its other end)."""
        return self._sock

    # ----------------------------------------------------------------- requests

    def request(self, req: dict[str, Any], parse: Callable[[dict[str, Any]], _T]) -> _T:
        """Send ``req``, read its reply and return ``parse(reply)``."""
        self.lock.acquire()
        try:
            self._flush_locked()
            return self._roundtrip_locked(req, parse)
        finally:
            self.lock.release()
            self._maintain()  # releases queued by finalizers while we held the lock

    def open(self, path: str, table: str = "events",
             geometry: tuple[int, int] | None = None,
             window: tuple[int, int] | None = None) -> tuple[OpenReply, list[int]]:
        """Send ``open`` and register the lease of the reply as live; also return the
        descriptors passed with the reply (the caller owns them)."""
        def parse(reply: dict[str, Any]) -> tuple[OpenReply, list[int]]:
            result = parse_open_reply(reply)
            if result.window != window:
                raise ProtocolError(MALFORMED_REPLY,
                                    f"malformed reply from evshmd: asked for window {window}, "
                                    f"got the rows of {result.window}")
            self.live.add(result.lease)  # under the lock, before anything can release it
            self.arenas.update(arena.name for arena in result.arenas)
            fds, self._fds = self._fds, []
            return result, fds

        return self.request(open_request(path, table, geometry, window), parse)

    def _roundtrip_locked(self, req: dict[str, Any],
                          parse: Callable[[dict[str, Any]], _T]) -> _T:
        if self.closed:
            raise ConnectionLost(f"the connection to evshmd at {self.socket_path} is closed")
        line = encode_request(req)  # may raise before any I/O: the stream stays in sync
        self._close_fds()
        try:
            self._sock.sendall(line)
            reply_line = self._read_line()
        except BaseException as exc:
            # Whatever interrupted us (I/O error, timeout, bad framing, KeyboardInterrupt),
            # the reply may be half read: the stream is out of sync for good.
            self._close_locked()
            if isinstance(exc, OSError):
                # A reset or a closed pipe, unlike a timeout, means evshmd closed it.
                self.dropped = not isinstance(exc, socket.timeout)
                raise self._lost(exc) from exc
            raise
        try:
            return parse(parse_reply(reply_line))
        except DaemonError as exc:
            if exc.code in (MALFORMED_REPLY, "frame_too_large"):
                self._close_locked()  # we cannot trust the stream, or the daemon hung up
            raise
        except BaseException:
            self._close_locked()
            raise

    def _close_fds(self) -> None:
        """Close descriptors nobody took (passed with a reply that did not need them)."""
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _read_line(self) -> bytes:
        # A reply's descriptors may come with any of its bytes, over several messages:
        # collect them until the line is complete.
        while True:
            data, fds, flags, _address = socket.recv_fds(self._sock, _RECV_SIZE, _MAX_FDS)
            self._fds.extend(fds)
            if flags & socket.MSG_CTRUNC:
                # The kernel dropped descriptors that did not fit (or that this process
                # had no room for: RLIMIT_NOFILE): the reply cannot be used.
                raise ProtocolError(MALFORMED_REPLY,
                                    "descriptors passed by evshmd were lost (more than "
                                    f"{_MAX_FDS} in one message, or too many open files)")
            if not data:
                self.dropped = True
                where = " in the middle of a reply" if self._lines.pending else ""
                raise ConnectionLost(
                    f"evshmd at {self.socket_path} closed the connection{where}; "
                    f"{daemon_status(self.socket_path)}"
                )
            lines = self._lines.feed(data)
            if lines:
                if len(lines) > 1 or self._lines.pending:
                    raise ProtocolError(MALFORMED_REPLY,
                                        "evshmd sent more than one reply to one request")
                return lines[0]

    def _lost(self, exc: OSError) -> ConnectionLost:
        if isinstance(exc, socket.timeout):
            what = f"no reply from evshmd at {self.socket_path} within {self.timeout} s"
        else:
            what = (f"lost the connection to evshmd at {self.socket_path}: "
                    f"{exc.strerror or exc}")
        return ConnectionLost(f"{what}; connection closed; {daemon_status(self.socket_path)}")

    # ----------------------------------------------------------------- leases

    def drop_lease(self, lease: int) -> None:
        """The buffers of ``lease`` are gone: release it now if the lock is free, else later.

        Safe to call from a finalizer at any point, including in the middle of a request
        on this connection: it never blocks on the lock.
        """
        if self.pid != os.getpid() or self.closed:
            return  # the parent's lease, or already ended with its connection
        self.pending.append(lease)
        self._maintain()

    def _maintain(self) -> None:
        """Do the deferred work (queued releases, deferred close) if the lock is free.

        Whoever holds the lock calls this after releasing it, so queued work never waits
        longer than the current request.
        """
        while not self.closed and (self.pending or (self.closing and not self.live)):
            if not self.lock.acquire(blocking=False):
                return  # the holder will call _maintain after releasing
            try:
                self._flush_locked()
                if self.closing and not self.live:
                    self._close_locked()
            except Exception:  # a failed release closes the connection
                pass
            finally:
                self.lock.release()

    def _flush_locked(self) -> None:
        while self.pending and not self.closed:
            lease = self.pending.popleft()
            if lease not in self.live:
                continue
            self.live.discard(lease)
            if self.closing and not self.live:
                self._close_locked()  # closing ends every lease at once
                return
            try:
                self._roundtrip_locked(release_request(lease), lambda reply: None)
            except DaemonError:
                pass  # e.g. unknown_lease: the lease is not held either way

    # ----------------------------------------------------------------- closing

    def close_when_idle(self) -> None:
        """Close now if no lease is live, else as soon as the last one is released."""
        if self.pid != os.getpid():
            self.abandon()
            return
        self.closing = True
        self._maintain()

    def abandon(self) -> None:
        """In a forked child: drop this process's copy of the parent's socket.

        No shutdown (that would cut the parent's connection) and no lock (a parent thread
        may have held it at fork time).
        """
        self.closed = True
        self._sock.close()

    def _close_locked(self) -> None:
        self.closed = True
        self.pending.clear()
        self.live.clear()
        self._close_fds()
        self._sock.close()
        forget(self.arenas)


class _Slot:
    """The client's current connection, shared with the client's finalizer."""

    def __init__(self) -> None:
        self.conn: _Connection | None = None

    def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close_when_idle()


class Client:
    """A connection to the evshmd daemon.

    Args:
        socket_path: the daemon's Unix socket; default :func:`default_socket_path`.
        timeout: seconds to wait for each socket operation (connect, each send and each
            receive; an ``open`` that decodes a large file may need more), ``None`` to
            wait forever.

    The constructor connects and says ``hello``; it raises :class:`~evshm.ConnectionLost`
    when the daemon cannot be reached. A client can be shared by threads (requests are
    serialised). If a request fails midway, the connection is closed (its leases end,
    existing mappings stay valid) and the next request opens a new one. In a forked child
    the client transparently opens its own connection; a pickled client (e.g. sent to a
    spawned worker) carries only its socket path and connects on first use.

    Example::

        with evshm.Client() as client:
            with client.open("day1/cam0.raw") as rec:
                t = rec.numpy()["t"]                     # zero-copy, read-only view
                first_ms = rec.time_window(t[0], t[0] + 1_000)  # a zero-copy window
    """

    def __new__(cls, socket_path: str | os.PathLike[str] | None = None,
                **kwargs: Any) -> Any:
        """``Client("grpc://HOST:PORT", token=...)`` is a :class:`~evshm.RemoteClient`
        (evshmd's Flight service on another machine); anything else a local client."""
        from ._remote import RemoteClient, is_remote_address

        if is_remote_address(socket_path):
            return RemoteClient(str(socket_path), **kwargs)
        return super().__new__(cls)

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *,
                 timeout: float | None = 30.0) -> None:
        path = default_socket_path() if socket_path is None else os.fspath(socket_path)
        self._setup(os.fsdecode(path), timeout, explicit=socket_path is not None)
        self._slot.conn = _Connection(self.socket_path, timeout, self._explicit)

    def _setup(self, socket_path: str, timeout: float | None, explicit: bool) -> None:
        self.socket_path: str = socket_path
        self.timeout: float | None = timeout
        # Whether the caller named the socket (else it is the default one): errors advise
        # differently.
        self._explicit = explicit
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._closed = False
        self._slot = _Slot()
        self._finalizer = weakref.finalize(self, self._slot.close)
        self._finalizer.atexit = False

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the address only (e.g. to a spawned DataLoader worker)."""
        return {"socket_path": self.socket_path, "timeout": self.timeout,
                "explicit": self._explicit}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """An unpickled client connects on its first request, with its own connection."""
        self._setup(state["socket_path"], state["timeout"], state.get("explicit", True))

    # ----------------------------------------------------------------- connection

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked: the connection belongs to the parent
            self._pid = os.getpid()
            self._lock = threading.Lock()  # a parent thread may have held the old one
            old, self._slot.conn = self._slot.conn, None
            if old is not None:
                old.abandon()

    def _connection(self) -> _Connection:
        self._check_pid()
        with self._lock:
            if self._closed:
                raise EvshmError("this evshm.Client is closed")
            conn = self._slot.conn
            if conn is None or conn.closed:
                conn = self._slot.conn = _Connection(self.socket_path, self.timeout,
                                                     self._explicit)
            return conn

    def _call(self, call: Callable[[_Connection], _T]) -> _T:
        """``call`` on this client's connection, and once more on a new one if evshmd
        closed that connection meanwhile (it stopped, or restarted: see ``_went_away``).

        Repeating is safe for every request of this client: the old connection's leases
        ended with it, and no request changes what a repeat finds.
        """
        conn = self._connection()
        try:
            return call(conn)
        except (ConnectionLost, MappingError) as exc:
            if not _went_away(conn, exc):
                raise
            first = exc
        _log.info("evshmd at %s stopped or restarted (%s); reconnecting", self.socket_path,
                  first)
        try:
            conn = self._connection()
        except ConnectionLost as exc:
            raise ConnectionLost(
                f"evshmd at {self.socket_path} stopped or restarted, closing this client's "
                f"connection ({first}), and reconnecting failed: {exc}") from exc
        return call(conn)

    @property
    def server(self) -> str:
        """The daemon's self-description from ``hello`` (e.g. ``evshmd/0.1.0``)."""
        return self._connection().hello.server

    @property
    def roots(self) -> list[str]:
        """The directories the daemon serves, canonical, in the order it searches them
        (from its ``hello``; empty when it does not say)."""
        return list(self._connection().hello.roots)

    # ----------------------------------------------------------------- requests

    def open(self, path: PathArg, *,
             window: tuple[int, int] | None = None,
             table: str = "events",
             geometry: tuple[int, int] | None = None) -> Recording:
        """Open a recording, or a time window of it, and map it (the daemon decodes first
        what no segment holds yet).

        ``path`` is relative to a root served by the daemon, or absolute inside one.
        ``table`` picks the CD events (``"events"``, columns ``t, x, y, p``) or the
        external triggers (``"triggers"``, columns ``t, id, p``); one decode serves both.
        ``geometry=(width, height)`` gives the sensor size of a file that states none
        (otherwise the daemon assumes a per-format default and drops no event; a file
        that states another size is refused).
        With ``window=(t0, t1)`` (integer microseconds, ``t0 <= t1``) the daemon serves
        only the events of the time window ``[t0, t1)``, the rows
        :meth:`Recording.time_window` would select from the whole recording, and decodes
        only the chunks that hold them. The result is then a recording of just those rows
        (its :attr:`~Recording.start` is 0); views of it are zero-copy when they lie in
        one chunk (:attr:`Recording.zero_copy`).

        Raises :class:`~evshm.RecordingNotFound`, :class:`~evshm.PathRefused`,
        :class:`~evshm.UnsupportedFormat`, :class:`~evshm.CorruptRecording`,
        :class:`~evshm.OverBudget`, :class:`~evshm.ShmFull`, :class:`~evshm.MappingError`...;
        :class:`TypeError` or :class:`ValueError` for a window that is not two integers in
        order.
        """
        checked = None if window is None else check_window(window)
        return self._open_timed(path, table, geometry, checked)[0]

    def _open_timed(self, path: PathArg, table: str = "events",
                    geometry: tuple[int, int] | None = None,
                    window: tuple[int, int] | None = None,
                    ) -> tuple[Recording, float, float]:
        """Open and return the recording, the request time and the attach time (s)."""
        text = _path_arg(path)
        return self._call(lambda conn: self._open_on(conn, text, table, geometry, window))

    def _open_on(self, conn: _Connection, text: str, table: str,
                 geometry: tuple[int, int] | None,
                 window: tuple[int, int] | None) -> tuple[Recording, float, float]:
        start = time.perf_counter()
        reply, fds = conn.open(text, table, geometry, window)
        requested = time.perf_counter()
        lease = reply.lease
        try:
            forget(reply.gone)
            passed = [arena for arena in reply.arenas if arena.passed]
            if len(passed) != len(fds):
                raise MappingError(f"evshmd marked {len(passed)} arenas passed but sent "
                                   f"{len(fds)} descriptors")
            mappings = {arena.name: arena_mapping(arena, fds.pop(0) if arena.passed else None)
                        for arena in reply.arenas}
        except BaseException:
            conn.drop_lease(lease)
            raise
        finally:
            for fd in fds:
                os.close(fd)
        if not reply.chunks:
            conn.drop_lease(lease)  # no row: nothing to hold the extents for
        # From here on the lease follows the hold (see the module docstring).
        hold = Hold(mappings.values())
        finalizer = weakref.finalize(hold, conn.drop_lease, lease) if reply.chunks else None
        if finalizer is not None:
            finalizer.atexit = False
        try:
            streams = [stream_buffer(hold, mappings[chunk.extent.arena], chunk.extent)
                       for chunk in reply.chunks]
            reader = StreamReader(streams[0]) if streams else None
            batches = [reader.rows(stream, chunk)
                       for chunk, stream in zip(reply.chunks, streams)] if reader else []
            rows = join_chunks(batches, reader.schema if reader else None, reply.schema,
                               reply.metadata)
        except BaseException:
            # The traceback keeps the buffers alive: release the lease now, not when the
            # exception is gone.
            if finalizer is not None and finalizer.detach() is not None:
                conn.drop_lease(lease)
            raise
        del hold
        attached = time.perf_counter()
        rec = Recording(reply, reply.chunks, streams, rows, window=reply.window)
        return rec, requested - start, attached - requested

    def list(self) -> builtins.list[RecordingInfo]:
        """List the recordings under the served roots, in the daemon's order."""
        return self._call(lambda conn: conn.request(list_request(), parse_list_reply))

    def stats(self) -> dict[str, int]:
        """The daemon's counters (``extents``, ``bytes_resident``, ``leases``...)."""
        return self._call(lambda conn: conn.request(stats_request(), parse_stats_reply))

    def evict(self) -> dict[str, int]:
        """Drop every decoded chunk no client holds from shared memory, now (chunks
        under a lease stay; an evicted one is decoded again when next opened): the
        chunks evicted (``evicted``) and their bytes (``bytes_evicted``)."""
        return self._call(lambda conn: conn.request(evict_request(), parse_evict_reply))

    # ----------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close the client. Idempotent.

        Pending releases are sent. The socket itself closes once no Arrow buffer from
        this client's recordings is alive, so that their leases stay held until then.
        """
        self._check_pid()
        with self._lock:
            self._closed = True
        self._finalizer()  # runs _slot.close once

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<evshm.Client {self.socket_path!r} {state}>"
