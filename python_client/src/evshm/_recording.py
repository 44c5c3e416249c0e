"""A recording mapped from shared memory, its views and its windows.

A :class:`Recording` is a table over its chunks' streams in the arenas' mappings plus
what the daemon said about it. Windows (:meth:`Recording.time_window`, :meth:`Recording.slice`)
are recordings too: zero-copy slices of the same table that share the mappings and the
lease; ``client.open(path, window=(t0, t1))``, where the daemon selects the rows, returns
the same kind of object.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from ._errors import EvshmError
from ._events import Events
from ._optional import require
from ._protocol import ChunkInfo, OpenReply
from ._views import numpy_columns, polars_frame, torch_columns

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
    import torch

    from ._windows import TimeIndex

__all__ = ["Recording"]


class Recording:
    """A decoded recording (or a window of one) mapped read-only from shared memory.

    The daemon serves a recording as consecutive *chunks*, each decoded into an extent of
    its own (:attr:`chunks`). :attr:`table` is a :class:`pyarrow.Table` (columns ``t:
    int64`` in microseconds, ``x: int16``, ``y: int16``, ``p: int8``) whose buffers point
    into the arenas' mappings, one Arrow chunk per chunk: nothing was copied, however
    many chunks. :meth:`numpy` and :meth:`torch` are views of the same memory when the
    rows lie in one chunk (:attr:`zero_copy`) and copies otherwise;
    :meth:`polars` is always a view. :meth:`time_window` and :meth:`slice` give windows,
    without copying.

    The daemon's lease on the extents lasts while anything that points into them
    is alive: this object, a window of it, the table, a column, a numpy array, a polars
    frame or a tensor made from it. :meth:`release` (or :meth:`close`, or leaving a
    ``with`` block) only gives up this object's own references; it never raises, even
    while views are alive, and the lease ends once the last view is gone.

    Attributes:
        path: the recording's path as the daemon names it.
        rows: number of events in this object.
        start: index of this object's first row among the rows that ``Client.open``
            returned (0 for what ``open`` returns; for a whole recording, the position
            in the recording).
        window: ``(t0, t1)`` when this is the time window ``[t0, t1)``, else ``None``.
        format: source format (``evt2``, ``evt3``, ``dat``, ``es``...: docs/FORMATS.md).
        width, height: sensor geometry (``None`` if the daemon sent none).
        lease: the lease id on the connection that opened the recording.
        chunks: the chunks this object's rows come from, in order, each with its extent
            (arena, offset, size) and the rows ``start..end`` of it that are this
            object's.
        cached: whether every chunk was resident already (no decode for this open).
        table_name: ``"events"`` or ``"triggers"``, the table the extents hold.
        dropped: events of the opened chunks outside their stated sensor size, left out.
        skipped: records of the opened chunks passed over instead of decoded (malformed
            text lines, words of unknown type or before the first time word, unreadable
            packets, a truncated final word); 0 from a daemon that does not count them.
    """

    def __init__(self, reply: OpenReply, chunks: Sequence[ChunkInfo],
                 streams: Sequence[pa.Buffer] | None,
                 table: pa.Table, *, start: int = 0,
                 window: tuple[int, int] | None = None) -> None:
        self.path: str = reply.path
        self.rows: int = table.num_rows
        self.start: int = start
        self.window: tuple[int, int] | None = window
        self.format: str = reply.format
        self.width: int | None = reply.width
        self.height: int | None = reply.height
        self.lease: int = reply.lease
        self.chunks: tuple[ChunkInfo, ...] = tuple(chunks)
        self.cached: bool = reply.cached
        self.table_name: str = reply.table
        self.dropped: int = reply.dropped
        self.skipped: int = reply.skipped
        self._reply = reply
        # One per chunk; None for a recording read over Flight, which has none.
        self._streams: tuple[pa.Buffer, ...] | None = None if streams is None else tuple(streams)
        self._table: pa.Table | None = table
        self._index: TimeIndex | None = None

    # ----------------------------------------------------------------- data

    @property
    def table(self) -> pa.Table:
        """The events, read in place from the arenas' mappings (one Arrow chunk per
        chunk that holds rows). Raises once released."""
        if self._table is None:
            raise EvshmError(f"recording {self.path} was released")
        return self._table

    @property
    def stream_buffers(self) -> tuple[pa.Buffer, ...]:
        """The extent of each of :attr:`chunks` (a whole Arrow IPC stream) as a
        read-only, zero-copy buffer into the arena's mapping, in the same order.

        Like the table, the buffers keep the lease held while they are alive.
        """
        if self._table is None:
            raise EvshmError(f"recording {self.path} was released")
        if self._streams is None:
            raise EvshmError(f"recording {self.path} was read over Flight: it has no streams "
                             "in shared memory")
        return self._streams

    @property
    def zero_copy(self) -> bool:
        """Whether this object's rows lie in at most one chunk, so that
        :meth:`numpy`, :meth:`torch` and :meth:`events` are views of the shared memory
        rather than copies. (:attr:`table` and :meth:`polars` never copy.)"""
        return sum(1 for chunk in self.chunks if chunk.end > chunk.start) <= 1

    def numpy(self) -> dict[str, np.ndarray]:
        """One read-only numpy array per column (``t``, ``x``, ``y``, ``p``).

        Zero-copy when :attr:`zero_copy` (the rows lie in one chunk: a window inside a
        chunk, a recording of one chunk); otherwise each array is a new concatenation of
        the rows of the chunks (one copy: a numpy array is contiguous). Needs numpy
        (``pip install 'evshm[numpy]'``).
        """
        return numpy_columns(self.table)

    def polars(self) -> pl.DataFrame:
        """A polars DataFrame over the same memory (no copy, however many chunks:
        polars columns are chunked like the table's; ``.rechunk()`` makes them
        contiguous, by copying).

        Needs polars (``pip install 'evshm[polars]'``). Polars never writes to the
        buffers of a frame it did not allocate; operations that produce new columns
        allocate them as usual.
        """
        return polars_frame(self.table)

    def torch(self) -> dict[str, torch.Tensor]:
        """One CPU tensor per column, zero-copy when :attr:`zero_copy` (else a copy, as
        with :meth:`numpy`), without warnings.

        The tensors are made through DLPack, so torch's "non-writable tensor" warning is
        not raised, but the pages of a zero-copy tensor are still read-only: writing to
        such a tensor in place kills the process with SIGSEGV. Use ``.clone()`` (or any
        out-of-place operation, ``.float()``, ``.to(device)``...) before modifying.
        Needs torch and pyarrow >= 15 (``pip install 'evshm[torch]'``).
        """
        return torch_columns(self.table)

    def events(self) -> Events:
        """The columns as an :class:`~evshm.Events` of read-only numpy arrays (views
        when :attr:`zero_copy`, see :meth:`numpy`), with the geometry and this object's
        time window: what transforms take."""
        if self.width is None or self.height is None:
            raise EvshmError(f"recording {self.path} has no sensor geometry")
        cols = self.numpy()
        t0, t1 = self.window if self.window is not None else (None, None)
        return Events(t=cols["t"], x=cols["x"], y=cols["y"], p=cols["p"],
                      width=self.width, height=self.height, t0=t0, t1=t1)

    # ----------------------------------------------------------------- windows

    def _time_index(self) -> TimeIndex:
        if self._index is None:
            require("numpy", "numpy", "time windows")
            from ._windows import TimeIndex

            # One numpy view per Arrow chunk: the index never concatenates the column.
            self._index = TimeIndex(*(chunk.to_numpy(zero_copy_only=True)
                                      for chunk in self.table.column("t").chunks))
        return self._index

    @property
    def time_bounds(self) -> tuple[int, int] | None:
        """``(first, last)``: the first event's timestamp and the largest one, ``None``
        when there are no events; ``time_window(first, last + 1)`` holds every event.

        Computed once per object with one pass over ``t`` (needs numpy).
        """
        return self._time_index().bounds

    def time_window(self, t0: int, t1: int) -> Recording:
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

    def slice(self, start: int, stop: int | None = None) -> Recording:
        """Events ``start`` to ``stop`` (exclusive, default: the end) of this object, by
        position, like ``list[start:stop]`` without a step: a zero-copy window of a fixed
        number of events. Negative indices count from the end."""
        lo, hi, _ = slice(start, stop).indices(self.rows)
        return self._derive(lo, max(lo, hi), None)

    def windows(self, *, duration: int | None = None, events: int | None = None,
                stride: int | None = None,
                drop_last: bool = False) -> Iterator[Recording]:
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

    def _derive(self, lo: int, hi: int, window: tuple[int, int] | None) -> Recording:
        table = self.table  # raises once released
        # The chunks (and their streams) that rows lo..hi of this object come from.
        chunks: list[ChunkInfo] = []
        streams: list[pa.Buffer] = []
        offset = 0
        for number, chunk in enumerate(self.chunks):
            first = chunk.start + max(lo - offset, 0)
            last = chunk.start + min(hi - offset, chunk.end - chunk.start)
            if first < last:
                chunks.append(chunk._replace(start=first, end=last))
                if self._streams is not None:
                    streams.append(self._streams[number])
            offset += chunk.end - chunk.start
        return Recording(self._reply, chunks, streams if self._streams is not None else None,
                         table.slice(lo, hi - lo),
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
        self._streams = None
        self._index = None

    def close(self) -> None:
        """Same as :meth:`release`."""
        self.release()

    def __enter__(self) -> Recording:
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
                f"chunks={len(self.chunks)} lease={self.lease}{state}>")
