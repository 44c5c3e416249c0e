"""Windows over served recordings, readable from any process: :class:`EventWindows`.

The list of windows is computed once, where the object is built; reading a window
attaches its recording over *this process's* connection. A forked child notices the new
pid and starts afresh (a connection of its own, the parent's leases untouched); a pickled
copy (a spawned worker) carries only the socket path and the list of windows. This is
what the datasets of :mod:`evshm.torch` are made of, and it needs no torch.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from ._client import Client, PathArg, default_socket_path
from ._optional import require
from ._recording import Recording

if TYPE_CHECKING:
    import numpy as np

__all__ = ["EventWindows"]


class _Attachments:
    """This process's connection to evshmd and the recordings it attached."""

    def __init__(self, socket_path: str, timeout: Optional[float]) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # a parent thread may have held the old one
        self._client: Optional[Client] = None
        # In a forked child the parent's objects are just dropped: their finalizers see
        # a foreign pid and leave the parent's connection and leases alone.
        self._recordings: Dict[str, Recording] = {}

    def get(self, path: str) -> Recording:
        if self._pid != os.getpid():
            self._reset()
        with self._lock:
            rec = self._recordings.get(path)
            if rec is None:
                if self._client is None:
                    self._client = Client(self.socket_path, timeout=self.timeout)
                rec = self._recordings[path] = self._client.open(path)
            return rec

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

    def __getstate__(self) -> Dict[str, Any]:
        return {"socket_path": self.socket_path, "timeout": self.timeout}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.socket_path = state["socket_path"]
        self.timeout = state["timeout"]
        self._reset()


class EventWindows:
    """The windows of a list of served recordings, as a sequence of zero-copy
    :class:`~evshm.Recording` windows; safe to fork and to pickle.

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
        socket_path, timeout: where the daemon is, and the socket timeout in seconds
            (building may wait for decodes).

    Building opens each recording once here (the daemon decodes what it has not decoded
    yet), records its windows and releases it. ``windows[i]`` then attaches the
    recording over this process's own connection on first use and returns window ``i``
    as a zero-copy :class:`~evshm.Recording` (whose numpy and torch views copy only when
    the window spans two of the daemon's chunks, see :attr:`~evshm.Recording.zero_copy`);
    attachments are kept until :meth:`close`. Needs numpy.
    """

    def __init__(self, paths: Optional[Sequence[PathArg]] = None, *,
                 duration: Optional[int] = None, events: Optional[int] = None,
                 stride: Optional[int] = None, drop_last: bool = False,
                 socket_path: Union[str, "os.PathLike[str]", None] = None,
                 timeout: Optional[float] = 60.0) -> None:
        if (duration is None) == (events is None):
            raise ValueError("give exactly one of duration= (microseconds) and events=")
        numpy = require("numpy", "numpy", "EventWindows")
        from ._windows import event_window_starts, time_window_starts

        path = default_socket_path() if socket_path is None else os.fspath(socket_path)
        length = duration if duration is not None else events
        assert length is not None
        #: Whether windows are time windows (else windows of a fixed number of events).
        self.by_time: bool = duration is not None
        #: Window length: microseconds, or events.
        self.length: int = int(length)
        self._attachments = _Attachments(path, timeout)
        owners: "List[np.ndarray]" = []
        starts: "List[np.ndarray]" = []
        with Client(path, timeout=timeout) as client:
            names = ([info.path for info in client.list()] if paths is None
                     else [os.fsdecode(p) for p in paths])
            for number, name in enumerate(names):
                with client.open(name) as rec:
                    if self.by_time:
                        first = time_window_starts(rec.time_bounds, self.length, stride,
                                                   drop_last)
                    else:
                        first = event_window_starts(rec.rows, self.length, stride,
                                                    drop_last)
                owners.append(numpy.full(len(first), number, dtype=numpy.int32))
                starts.append(first)
        #: The recordings, in the order their windows are numbered.
        self.paths: List[str] = names
        self._owner: "np.ndarray" = (numpy.concatenate(owners) if owners
                                     else numpy.empty(0, numpy.int32))
        self._start: "np.ndarray" = (numpy.concatenate(starts) if starts
                                     else numpy.empty(0, numpy.int64))

    @property
    def socket_path(self) -> str:
        """The daemon's socket."""
        return self._attachments.socket_path

    def __len__(self) -> int:
        return len(self._start)

    def window(self, index: int) -> Tuple[str, int, int]:
        """``(path, start, stop)`` of window ``index``: microseconds ``[start, stop)``
        for time windows, rows ``start:stop`` for event-count windows (``stop`` may pass
        the recording's last row: its final window is then shorter)."""
        size = len(self._start)
        if not -size <= index < size:
            raise IndexError(f"window {index} out of range: there are {size}")
        index %= size
        start = int(self._start[index])
        return self.paths[int(self._owner[index])], start, start + self.length

    def __getitem__(self, index: int) -> Recording:
        """Window ``index`` as a zero-copy :class:`~evshm.Recording`."""
        path, start, stop = self.window(index)
        rec = self._attachments.get(path)
        return rec.time_window(start, stop) if self.by_time else rec.slice(start, stop)

    def recording(self, path: str) -> Recording:
        """The whole recording ``path`` as this process attached it (on first use)."""
        return self._attachments.get(path)

    def close(self) -> None:
        """Release this process's recordings and close its connection. Idempotent;
        windows can still be read afterwards (they attach again)."""
        self._attachments.close()

    def __repr__(self) -> str:
        unit = "us" if self.by_time else "events"
        return (f"<EventWindows {len(self)} windows of {self.length} {unit} over "
                f"{len(self.paths)} recordings>")
