"""Windows over served recordings, readable from any process: :class:`EventWindows`.

The list of windows is fixed once, where the object is built: cut from whole recordings
(``duration=``, ``events=``) or given (``windows=``). Reading a window goes over *this
process's* connection: a cut window is sliced from its recording, attached whole and
kept; a given window is asked of the daemon by itself and not kept. A forked child
notices the new pid and starts afresh (a connection of its own, the parent's leases
untouched); a pickled copy (a spawned worker) carries only the socket path and the list
of windows. This is what the datasets of :mod:`evshm.torch` are made of, and it needs no
torch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._client import Client, PathArg
from ._connect import default_socket_path
from ._optional import require
from ._protocol import check_window
from ._recording import Recording

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EventWindows"]

#: A window given explicitly: ``(path, t_start, t_end)``, microseconds ``[t_start, t_end)``.
WindowArg = tuple[PathArg, int, int]


class _Attachments:
    """This process's connection to evshmd and the recordings it attached."""

    def __init__(self, socket_path: str, timeout: float | None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # a parent thread may have held the old one
        self._client: Client | None = None
        # In a forked child the parent's objects are just dropped: their finalizers see
        # a foreign pid and leave the parent's connection and leases alone.
        self._recordings: dict[str, Recording] = {}

    def _client_locked(self) -> Client:
        if self._client is None:
            self._client = Client(self.socket_path, timeout=self.timeout)
        return self._client

    def get(self, path: str) -> Recording:
        """The whole recording ``path``, opened on first use and kept until :meth:`close`."""
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            rec = self._recordings.get(path)
            if rec is None:
                rec = self._recordings[path] = self._client_locked().open(path)
            return rec

    def open_window(self, path: str, window: tuple[int, int]) -> Recording:
        """The time window ``window`` of ``path``, served by the daemon and not kept: its
        lease ends once the caller holds nothing of it, so that the daemon may evict its
        chunks (a long pass over a recording larger than the budget stays within it)."""
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            return self._client_locked().open(path, window=window)

    def close(self) -> None:
        if self._pid != os.getpid():
            self._reset()
            return
        with self._lock:
            for rec in self._recordings.values():
                rec.release()
            self._recordings.clear()
            if self._client is not None:
                self._client.close()
                self._client = None

    def __getstate__(self) -> dict[str, Any]:
        return {"socket_path": self.socket_path, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.socket_path = state["socket_path"]
        self.timeout = state["timeout"]
        self._reset()


class EventWindows:
    """The windows of a list of served recordings, as a sequence of zero-copy
    :class:`~evshm.Recording` windows; safe to fork and to pickle.

    The windows are cut from whole recordings (``paths`` with ``duration=`` or
    ``events=``) or given one by one (``windows=``), never both.

    Args:
        paths: recordings, as :meth:`evshm.Client.open` takes them; default every
            recording the daemon lists, in its order.
        duration: window length in microseconds: time windows ``[s, s + duration)``
            with exactly the events :meth:`evshm.Recording.time_window` gives, starting at
            each recording's first timestamp (see :meth:`evshm.Recording.windows`).
        events: window length in events (fixed-count windows). Give exactly one.
        stride: distance between window starts (microseconds or events); default the
            window length (back-to-back windows).
        drop_last: drop each recording's shorter final window.
        windows: instead of all of the above, the windows themselves: ``(path, t_start,
            t_end)`` time windows ``[t_start, t_end)`` in integer microseconds, in the
            order of the items (e.g. 50 ms around each label). They may overlap, repeat,
            or hold no event.
        socket_path, timeout: where the daemon is, and the socket timeout in seconds
            (building may wait for decodes).

    With ``duration=`` or ``events=``, building opens each recording once here (the
    daemon decodes what it has not decoded yet), records its windows and releases it.
    ``windows[i]`` then attaches the recording over this process's own connection on
    first use and returns window ``i`` as a zero-copy :class:`~evshm.Recording`;
    attachments are kept until :meth:`close`. So every recording must fit in the
    daemon's memory budget.

    With ``windows=``, nothing is opened here: the windows are only checked (integers,
    ``t_start <= t_end``). ``windows[i]`` asks the daemon for window ``i`` alone
    (``client.open(path, window=(t_start, t_end))``), which decodes and maps only the
    chunks holding its rows, and keeps nothing: the window's lease lasts as long as the
    returned recording or a view of it, so a pass over recordings larger than the
    daemon's memory budget stays within it. Its rows are those of
    :meth:`~evshm.Recording.time_window` on the whole recording.

    Either way a window's numpy and torch views copy only when it spans two of the
    daemon's chunks (see :attr:`~evshm.Recording.zero_copy`). Needs numpy.
    """

    def __init__(self, paths: Sequence[PathArg] | None = None, *,
                 duration: int | None = None, events: int | None = None,
                 stride: int | None = None, drop_last: bool = False,
                 windows: Iterable[WindowArg] | None = None,
                 socket_path: str | os.PathLike[str] | None = None,
                 timeout: float | None = 60.0) -> None:
        if windows is not None:
            mixed = [name for name, value in (("paths", paths), ("duration", duration),
                                              ("events", events), ("stride", stride))
                     if value is not None] + (["drop_last"] if drop_last else [])
            if mixed:
                raise ValueError(f"windows= gives the windows themselves: it cannot be "
                                 f"combined with {'=, '.join(mixed)}=")
        elif (duration is None) == (events is None):
            raise ValueError("give exactly one of duration= (microseconds) and events=, "
                             "or windows=[(path, t_start, t_end), ...]")
        numpy = require("numpy", "numpy", "EventWindows")
        path = default_socket_path() if socket_path is None else os.fspath(socket_path)
        self._attachments = _Attachments(path, timeout)
        #: Whether the windows were given (``windows=``): each item is then served by the
        #: daemon on its own, and nothing is kept.
        self.explicit: bool = windows is not None
        #: Whether windows are time windows (else windows of a fixed number of events).
        self.by_time: bool = windows is not None or duration is not None
        #: Window length, microseconds or events; ``None`` for given windows.
        self.length: int | None = None
        #: The recordings, in the order of their first window.
        self.paths: list[str]
        # Each window's recording number, start and end: lists when given, arrays when cut.
        owner: Sequence[int] | np.ndarray
        start: Sequence[int] | np.ndarray
        stop: Sequence[int] | np.ndarray
        # Each recording's sensor (width, height), as far as known: from the open that
        # cut its windows, or asked for by sensor_sizes().
        self._sizes: dict[str, tuple[int, int] | None] = {}
        if windows is not None:
            self.paths, owner, start, stop = _given_windows(windows)
        else:
            length = duration if duration is not None else events
            assert length is not None
            self.length = int(length)
            self.paths, owner, start = self._cut(paths, stride, drop_last, timeout)
            stop = start + self.length
        self._owner: np.ndarray = numpy.asarray(owner, dtype=numpy.int32)
        self._start: np.ndarray = numpy.asarray(start, dtype=numpy.int64)
        self._stop: np.ndarray = numpy.asarray(stop, dtype=numpy.int64)

    def _cut(self, paths: Sequence[PathArg] | None, stride: int | None,
             drop_last: bool, timeout: float | None,
             ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Open each recording once and list its windows: the recordings, and for each
        window its recording's number and its start."""
        import numpy

        from ._windows import event_window_starts, time_window_starts

        assert self.length is not None
        owners: list[np.ndarray] = [numpy.empty(0, numpy.int32)]
        starts: list[np.ndarray] = [numpy.empty(0, numpy.int64)]
        with Client(self.socket_path, timeout=timeout) as client:
            names = ([info.path for info in client.list()] if paths is None
                     else [os.fsdecode(p) for p in paths])
            for number, name in enumerate(names):
                with client.open(name) as rec:
                    self._sizes[name] = _size(rec)
                    if self.by_time:
                        first = time_window_starts(rec.time_bounds, self.length, stride,
                                                   drop_last)
                    else:
                        first = event_window_starts(rec.rows, self.length, stride,
                                                    drop_last)
                owners.append(numpy.full(len(first), number, dtype=numpy.int32))
                starts.append(first)
        return names, numpy.concatenate(owners), numpy.concatenate(starts)

    @property
    def socket_path(self) -> str:
        """The daemon's socket."""
        return self._attachments.socket_path

    def __len__(self) -> int:
        return len(self._start)

    def window(self, index: int) -> tuple[str, int, int]:
        """``(path, start, stop)`` of window ``index``: microseconds ``[start, stop)``
        for time windows, rows ``start:stop`` for event-count windows (``stop`` may pass
        the recording's last row: its final window is then shorter)."""
        size = len(self._start)
        if not -size <= index < size:
            raise IndexError(f"window {index} out of range: there are {size}")
        index %= size
        return (self.paths[int(self._owner[index])], int(self._start[index]),
                int(self._stop[index]))

    def __getitem__(self, index: int) -> Recording:
        """Window ``index`` as a zero-copy :class:`~evshm.Recording`."""
        path, start, stop = self.window(index)
        if self.explicit:
            return self._attachments.open_window(path, (start, stop))
        rec = self._attachments.get(path)
        return rec.time_window(start, stop) if self.by_time else rec.slice(start, stop)

    def recording(self, path: str) -> Recording:
        """The whole recording ``path`` as this process attached it (on first use; kept
        until :meth:`close`, also with ``windows=``, where nothing else is)."""
        return self._attachments.get(path)

    def sensor_sizes(self) -> dict[str, tuple[int, int] | None]:
        """Each recording's sensor size ``(width, height)`` (``None`` if the daemon
        states none), in the order of :attr:`paths`.

        Known from building for cut windows; for given windows, the first call asks the
        daemon, opening an empty window ``[0, 0)`` of each recording (the daemon reads
        what the file says of its sensor and decodes nothing), over a connection of its
        own, closed at once.
        """
        unknown = [path for path in self.paths if path not in self._sizes]
        if unknown:
            with Client(self.socket_path, timeout=self._attachments.timeout) as client:
                for path in unknown:
                    with client.open(path, window=(0, 0)) as rec:
                        self._sizes[path] = _size(rec)
        return {path: self._sizes[path] for path in self.paths}

    def close(self) -> None:
        """Release this process's recordings and close its connection. Idempotent;
        windows can still be read afterwards (they attach again). Windows read earlier
        and still referenced keep their leases until they go."""
        self._attachments.close()

    def __repr__(self) -> str:
        if self.length is None:
            kind = "given windows"
        else:
            kind = f"windows of {self.length} {'us' if self.by_time else 'events'}"
        return f"<EventWindows {len(self)} {kind} over {len(self.paths)} recordings>"


def _size(rec: Recording) -> tuple[int, int] | None:
    return None if rec.width is None or rec.height is None else (rec.width, rec.height)


def _given_windows(windows: Iterable[WindowArg],
                   ) -> tuple[list[str], list[int], list[int], list[int]]:
    """Check windows given as ``(path, t_start, t_end)``; return the recordings in the
    order of their first window, and each window's recording number, start and end.

    Raises :class:`TypeError` or :class:`ValueError` naming the first bad window, so that
    a mistake shows when the dataset is built rather than in a worker mid-epoch.
    """
    numbers: dict[str, int] = {}
    owner: list[int] = []
    start: list[int] = []
    stop: list[int] = []
    for position, item in enumerate(windows):
        where = f"windows[{position}] = {item!r}"
        try:
            path, t0, t1 = item
        except (TypeError, ValueError):
            raise TypeError(f"{where}: a window is (path, t_start, t_end)") from None
        try:
            name = os.fsdecode(path)
            t0, t1 = check_window((t0, t1))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        if not name:
            raise ValueError(f"{where}: the path is empty")
        owner.append(numbers.setdefault(name, len(numbers)))
        start.append(t0)
        stop.append(t1)
    return list(numbers), owner, start, stop
