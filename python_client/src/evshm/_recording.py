"""A recording mapped from shared memory, its zero-copy views and its windows.

A :class:`Recording` is a table over the segment mapping plus what the daemon said about
it. Windows (:meth:`Recording.time_window`, :meth:`Recording.slice`) are recordings too:
zero-copy slices of the same table that share the mapping and the lease, so that code
written against a window keeps working when the daemon serves windows itself
(``client.open(path, window=(t0, t1))`` already returns the same kind of object).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Tuple

import pyarrow as pa

from ._errors import EvshmError
from ._events import Events
from ._optional import require
from ._protocol import OpenReply
from ._views import numpy_columns, polars_frame, single_chunk, torch_columns

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import torch

    from ._windows import TimeIndex

__all__ = ["Recording"]


class Recording:
    """A decoded recording (or a window of one) mapped read-only from shared memory.

    :attr:`table` is a :class:`pyarrow.Table` (columns ``t: int64`` in microseconds,
    ``x: int16``, ``y: int16``, ``p: int8``) whose buffers point into the mapping: nothing
    was copied. :meth:`numpy`, :meth:`polars` and :meth:`torch` give views of the same
    memory; :meth:`time_window` and :meth:`slice` give windows, also without copying.

    The daemon's lease on the segment lasts while anything that points into the mapping
    is alive: this object, a window of it, the table, a column, a numpy array, a polars
    frame or a tensor made from it. :meth:`release` (or :meth:`close`, or leaving a
    ``with`` block) only gives up this object's own references; it never raises, even
    while views are alive, and the lease ends once the last view is gone.

    Attributes:
        path: the recording's path as the daemon names it.
        rows: number of events in this recording or window.
        start: index of this object's first row in the whole recording (0 unless a window).
        window: ``(t0, t1)`` when this is the time window ``[t0, t1)``, else ``None``.
        format: source format (``evt2``, ``evt3``, ``dat``...).
        width, height: sensor geometry (``None`` if the daemon sent none).
        lease: the lease id on the connection that opened the recording.
        segment_name, segment_path, segment_size: the shared-memory segment
            (``segment_path`` is ``None`` when the daemon runs sealed and passed it as a
            descriptor).
        cached: whether the segment was resident already (no decode for this open).
        table_name: ``"events"`` or ``"triggers"``, the table this segment holds.
        dropped: events of the file outside its stated sensor size, left out.
    """

    def __init__(self, reply: OpenReply, mapping: Any, table: pa.Table, *,
                 start: int = 0, window: Optional[Tuple[int, int]] = None) -> None:
        self.path: str = reply.path
        self.rows: int = table.num_rows
        self.start: int = start
        self.window: Optional[Tuple[int, int]] = window
        self.format: str = reply.format
        self.width: Optional[int] = reply.width
        self.height: Optional[int] = reply.height
        self.lease: int = reply.lease
        self.segment_name: str = reply.segment_name
        self.segment_path: Optional[str] = reply.segment_path
        self.segment_size: int = reply.segment_size
        self.cached: bool = reply.cached
        self.table_name: str = reply.table
        self.dropped: int = reply.dropped
        self._reply = reply
        self._mapping: Any = mapping
        self._table: Optional[pa.Table] = table
        self._index: Optional["TimeIndex"] = None

    # ----------------------------------------------------------------- data

    @property
    def table(self) -> pa.Table:
        """The events, read in place from the mapping. Raises once released."""
        if self._table is None:
            raise EvshmError(f"recording {self.path} was released")
        return self._table

    @property
    def buffer(self) -> pa.Buffer:
        """The whole segment (an Arrow IPC stream) as a read-only, zero-copy buffer.

        Like the table, the buffer keeps the lease held while it is alive.
        """
        if self._mapping is None:
            raise EvshmError(f"recording {self.path} was released")
        return pa.py_buffer(memoryview(self._mapping)[: self.segment_size])

    def numpy(self) -> "Dict[str, np.ndarray]":
        """One read-only numpy array per column (``t``, ``x``, ``y``, ``p``), zero-copy.

        Needs numpy (``pip install 'evshm[numpy]'``).
        """
        return numpy_columns(self.table)

    def polars(self) -> "pl.DataFrame":
        """A polars DataFrame over the same memory (no copy).

        Needs polars (``pip install 'evshm[polars]'``). Polars never writes to the
        buffers of a frame it did not allocate; operations that produce new columns
        allocate them as usual.
        """
        return polars_frame(self.table)

    def torch(self) -> "Dict[str, torch.Tensor]":
        """One CPU tensor per column over the same memory (no copy, no warning).

        The tensors are made through DLPack, so torch's "non-writable tensor" warning is
        not raised, but the pages are still read-only: writing to such a tensor in place
        kills the process with SIGSEGV. Use ``.clone()`` (or any out-of-place operation,
        ``.float()``, ``.to(device)``...) before modifying. Needs torch and pyarrow >= 15
        (``pip install 'evshm[torch]'``).
        """
        return torch_columns(self.table)

    def events(self) -> Events:
        """The columns as an :class:`~evshm.Events` of read-only numpy views (no copy),
        with the geometry and this object's time window: what transforms take."""
        if self.width is None or self.height is None:
            raise EvshmError(f"recording {self.path} has no sensor geometry")
        cols = self.numpy()
        t0, t1 = self.window if self.window is not None else (None, None)
        return Events(t=cols["t"], x=cols["x"], y=cols["y"], p=cols["p"],
                      width=self.width, height=self.height, t0=t0, t1=t1)

    # ----------------------------------------------------------------- windows

    def _time_index(self) -> "TimeIndex":
        if self._index is None:
            require("numpy", "numpy", "time windows")
            from ._windows import TimeIndex

            self._index = TimeIndex(single_chunk(self.table, "t").to_numpy(
                zero_copy_only=True))
        return self._index

    @property
    def time_bounds(self) -> Optional[Tuple[int, int]]:
        """``(first, last)``: the first event's timestamp and the largest one, ``None``
        when there are no events; ``time_window(first, last + 1)`` holds every event.

        Computed once per object with one pass over ``t`` (needs numpy).
        """
        return self._time_index().bounds

    def time_window(self, t0: int, t1: int) -> "Recording":
        """The events of the time window ``[t0, t1)`` (microseconds), without copying.

        Exactly: with ``m[i] = max(t[0..i])`` the running maximum of this object's
        timestamps, the rows from the first with ``m >= t0`` up to (excluding) the first
        with ``m >= t1``. For timestamps that never decrease, that is every event with
        ``t0 <= t < t1``; where the sensor time steps back, such events stay with their
        neighbours in stream order (their ``t`` may be a little below ``t0``, never
        ``>= t1``), and back-to-back windows never lose or repeat an event. The lookup is
        a binary search (needs numpy); the result is a zero-copy slice.
        """
        t0, t1 = int(t0), int(t1)
        lo, hi = self._time_index().rows(t0, t1)
        return self._derive(lo, hi, (t0, t1))

    def slice(self, start: int, stop: Optional[int] = None) -> "Recording":
        """Events ``start`` to ``stop`` (exclusive, default: the end) of this object, by
        position, like ``list[start:stop]`` without a step: a zero-copy window of a fixed
        number of events. Negative indices count from the end."""
        lo, hi, _ = slice(start, stop).indices(self.rows)
        return self._derive(lo, max(lo, hi), None)

    def windows(self, *, duration: Optional[int] = None, events: Optional[int] = None,
                stride: Optional[int] = None,
                drop_last: bool = False) -> Iterator["Recording"]:
        """Cut this object into consecutive windows, each a zero-copy :class:`Recording`.

        Give exactly one of ``duration`` (microseconds: :meth:`time_window` ``[s, s +
        duration)`` for ``s = first, first + stride, ...`` while ``s <= last``, see
        :attr:`time_bounds`) or ``events`` (:meth:`slice` of that many events every
        ``stride`` rows). ``stride`` defaults to the window length; ``drop_last`` drops
        a shorter final window. Time windows falling in a gap hold no event. Needs numpy.
        """
        require("numpy", "numpy", "Recording.windows()")
        from ._windows import event_window_starts, time_window_starts

        if duration is not None and events is None:
            length = int(duration)
            starts = time_window_starts(self.time_bounds, length, stride, drop_last)
            return (self.time_window(s, s + length) for s in starts.tolist())
        if events is not None and duration is None:
            length = int(events)
            starts = event_window_starts(self.rows, length, stride, drop_last)
            return (self.slice(s, s + length) for s in starts.tolist())
        raise ValueError("give exactly one of duration= and events=")

    def _derive(self, lo: int, hi: int, window: Optional[Tuple[int, int]]) -> "Recording":
        return Recording(self._reply, self._mapping, self.table.slice(lo, hi - lo),
                         start=self.start + lo, window=window)

    # ----------------------------------------------------------------- lifetime

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called."""
        return self._table is None

    def release(self) -> None:
        """Drop this object's references to the data. Idempotent; never raises.

        Views taken from it (tables, arrays, frames, tensors, windows) stay valid. The
        ``release`` request goes to the daemon once none of them is reachable any more
        (immediately if none was kept).
        """
        self._table = None
        self._mapping = None
        self._index = None

    def close(self) -> None:
        """Same as :meth:`release`."""
        self.release()

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        geometry = f" {self.width}x{self.height}" if self.width is not None else ""
        if self.window is not None:
            part = f" window=[{self.window[0]}, {self.window[1]})"
        elif self.start or self.rows != self._reply.rows:
            part = f" rows[{self.start}:{self.start + self.rows}]"
        else:
            part = ""
        state = " released" if self.released else ""
        return (f"<Recording {self.path!r} {self.format}{geometry}{part} rows={self.rows} "
                f"lease={self.lease}{state}>")
