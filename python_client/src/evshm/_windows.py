"""Which rows a time window holds, and how a recording is cut into windows (numpy).

Window semantics
----------------
Timestamps are kept as the sensor encoded them, and real EVT3 data can step back by a few
microseconds. A window ``[t0, t1)`` is therefore defined on the *running maximum* of the
timestamps, ``m[i] = max(t[0], ..., t[i])``, which never decreases:

    rows ``lo`` (inclusive) to ``hi`` (exclusive), where ``lo`` is the first row with
    ``m[lo] >= t0`` and ``hi`` the first row with ``m[hi] >= t1`` (the row count when
    there is none).

So a window is always one contiguous run of rows (a zero-copy slice), windows that tile
time (``[a, b)``, ``[b, c)``...) tile the rows with no gap and no overlap, and a row whose
time stepped back stays with its neighbours in stream order: it may carry a timestamp a
little below ``t0``, never one at or above ``t1``. When the timestamps never decrease,
``m == t`` and this is exactly ``np.searchsorted(t, [t0, t1])``.

The running maximum is not materialised (that would be 8 bytes per event in every
process): :class:`TimeIndex` keeps the running maximum at the end of each block of
:data:`BLOCK` rows (one pass over ``t``), finds the block by binary search and then scans
that one block.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK", "TimeIndex", "time_window_starts", "event_window_starts"]

#: Rows per block of :class:`TimeIndex`: the index holds ``rows / BLOCK`` int64 values and
#: each lookup scans at most this many rows.
BLOCK = 4096


class TimeIndex:
    """Finds the rows of time windows in a column of timestamps (see the module doc).

    The column is given as its consecutive parts (``TimeIndex(t)`` for one array,
    ``TimeIndex(*chunks)`` for a column in several chunks, rows numbered across them),
    each a one-dimensional integer array; read-only views are fine: they are never
    written nor copied. Building the index reads each part once; each lookup costs a
    binary search over about ``rows / block`` values plus a scan of at most ``block``
    rows of one part.
    """

    def __init__(self, *parts: np.ndarray, block: int = BLOCK) -> None:
        if any(part.ndim != 1 for part in parts):
            raise ValueError("timestamps must be one-dimensional arrays")
        if block < 1:
            raise ValueError("block must be at least 1")
        self._parts = [part for part in parts if len(part)]
        self._block = block
        self._rows = sum(len(part) for part in self._parts)
        # Blocks never straddle two parts; for each, its part and its first row.
        maxima, block_part, block_row = [], [], []
        row = 0
        for number, part in enumerate(self._parts):
            offsets = np.arange(0, len(part), block)
            maxima.append(np.maximum.reduceat(part, offsets))
            block_part.append(np.full(len(offsets), number, dtype=np.int64))
            block_row.append(offsets + row)
            row += len(part)
        if maxima:
            self._block_max: np.ndarray = np.maximum.accumulate(np.concatenate(maxima))
            self._block_part: np.ndarray = np.concatenate(block_part)
            self._block_row: np.ndarray = np.concatenate(block_row)
        else:
            self._block_max = np.empty(0, dtype=np.int64)
            self._block_part = self._block_row = np.empty(0, dtype=np.int64)
        self._part_row = np.cumsum([0] + [len(part) for part in self._parts])

    def __len__(self) -> int:
        return self._rows

    @property
    def bounds(self) -> tuple[int, int] | None:
        """``(t[0], max(t))``: the running maximum's first and last values, ``None``
        without rows. The window ``[first, last + 1)`` holds every row."""
        if not self._parts:
            return None
        return int(self._parts[0][0]), int(self._block_max[-1])

    def first_at_least(self, value: int) -> int:
        """The first row whose running maximum is ``>= value`` (the row count if none)."""
        k = int(np.searchsorted(self._block_max, value, side="left"))
        if k == len(self._block_max):
            return self._rows
        number = int(self._block_part[k])
        start = int(self._block_row[k])
        offset = start - int(self._part_row[number])
        # Every row before `start` has a running maximum < value, so inside block k the
        # running maximum reaches `value` exactly where the block's own one does.
        local = np.maximum.accumulate(self._parts[number][offset:offset + self._block])
        return start + int(np.searchsorted(local, value, side="left"))

    def rows(self, t0: int, t1: int) -> tuple[int, int]:
        """The row range ``(lo, hi)`` of the window ``[t0, t1)``; ``t1 >= t0``."""
        if t1 < t0:
            raise ValueError(f"window [{t0}, {t1}) ends before it starts")
        return self.first_at_least(t0), self.first_at_least(t1)


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def time_window_starts(bounds: tuple[int, int] | None, duration: int,
                       stride: int | None = None, drop_last: bool = False) -> np.ndarray:
    """Start times of the windows ``[s, s + duration)`` that cover a recording.

    ``bounds`` is :attr:`TimeIndex.bounds` ``(first, last)``. Windows start at
    ``first + k * stride`` (``stride`` defaults to ``duration``: back-to-back windows)
    for every ``k >= 0`` with a start ``<= last``. With ``drop_last``, only windows that
    end by ``last + 1`` are kept (the partial window at the end is dropped). Windows in a
    gap of the recording are kept: they simply hold no events.
    """
    duration = _check_positive("duration", duration)
    stride = duration if stride is None else _check_positive("stride", stride)
    if bounds is None:
        return np.empty(0, dtype=np.int64)
    first, last = bounds
    end = last + 1 - duration if drop_last else last
    if end < first:
        return np.empty(0, dtype=np.int64)
    return np.arange(first, end + 1, stride, dtype=np.int64)


def event_window_starts(rows: int, count: int, stride: int | None = None,
                        drop_last: bool = False) -> np.ndarray:
    """First rows of the windows of ``count`` consecutive events that cover ``rows``.

    Windows start every ``stride`` rows (default ``count``); with ``drop_last`` the last
    window is dropped when it holds fewer than ``count`` events.
    """
    count = _check_positive("events", count)
    stride = count if stride is None else _check_positive("stride", stride)
    end = rows - count if drop_last else rows - 1
    if end < 0:
        return np.empty(0, dtype=np.int64)
    return np.arange(0, end + 1, stride, dtype=np.int64)
