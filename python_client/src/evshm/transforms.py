"""Event representations computed with numpy from the zero-copy columns.

Each representation is a function on plain arrays (usable on any events) and a small
picklable class that applies it to an :class:`~evshm.Events` (what
:meth:`evshm.Recording.events` returns and what the datasets of :mod:`evshm.torch` pass
to their ``transform``). Inputs are only read, so the read-only views into the shared
memory are used as they are; the output is a new, writable array.

Events outside the sensor (``x`` not in ``[0, width)`` or ``y`` not in ``[0, height)``)
or with a polarity other than 0 or 1 are ignored. Both functions cost a few passes over
the events and one ``np.bincount`` per output array (no ``np.add.at``, which is much
slower).

Definitions
-----------
Histogram, shape ``(2, height, width)``::

    H[c, y, x] = number of events at pixel (x, y) with polarity p == c
                 (channel 0: OFF events, channel 1: ON events)

Voxel grid with ``B`` bins, shape ``(B, height, width)``, the bilinear-in-time voxel grid
of E2VID (Rebecq et al., 2019) and EST's trilinear kernel (Gehrig et al., 2019)::

    V[b, y, x] = sum over events i at (x, y) of  s_i * max(0, 1 - |b - tau_i|)
    s_i   = +1 if p_i == 1 else -1
    tau_i = (B - 1) * (t_i - a) / (z - a), clipped to [0, B - 1]   (0 when z == a)

``(a, z)`` is ``t_range`` when given (the datasets can pass the window ``[t0, t1)``),
else ``(min(t), max(t))`` of the events, which for timestamps that never decrease are the
first and last event's, as in E2VID. Each event thus splits its polarity between the two
bins around ``tau_i``; an event at ``tau_i == b`` counts wholly in bin ``b``.
"""

from __future__ import annotations

from ._events import Events
from ._optional import require

require("numpy", "numpy", "evshm.transforms")
import numpy as np  # noqa: E402 - after the friendly check above
from numpy.typing import DTypeLike  # noqa: E402

__all__ = ["event_histogram", "voxel_grid", "EventHistogram", "VoxelGrid"]


def _on_sensor(x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int,
               height: int) -> np.ndarray | None:
    """The mask of events to keep, or ``None`` when all are kept (the usual case)."""
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height) & ((p == 0) | (p == 1))
    return None if keep.all() else keep


def _check_geometry(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"sensor geometry must be positive, got {width}x{height}")


def event_histogram(x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int, height: int,
                    *, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Events per pixel and polarity: an array of shape ``(2, height, width)``.

    ``out[c, y, x]`` counts the events at ``(x, y)`` with polarity ``c`` (see the module
    doc). ``dtype`` defaults to float32, ready for a network; use an integer type for
    exact counts of more than 2**24 events per pixel.
    """
    _check_geometry(width, height)
    x, y, p = np.asarray(x), np.asarray(y), np.asarray(p)
    keep = _on_sensor(x, y, p, width, height)
    if keep is not None:
        x, y, p = x[keep], y[keep], p[keep]
    flat = (p.astype(np.int64) * height + y) * width + x
    counts = np.bincount(flat, minlength=2 * height * width)
    return counts.reshape(2, height, width).astype(dtype, copy=False)


def voxel_grid(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int,
               height: int, bins: int, *, t_range: tuple[int, int] | None = None,
               dtype: DTypeLike = np.float32) -> np.ndarray:
    """Signed polarity spread bilinearly over ``bins`` time bins: shape
    ``(bins, height, width)``, as defined in the module doc.

    ``t_range=(a, z)`` maps time ``a`` to bin 0 and ``z`` to bin ``bins - 1`` (events
    outside are clipped to the end bins); by default ``(min(t), max(t))``.
    """
    _check_geometry(width, height)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    t, x, y, p = np.asarray(t), np.asarray(x), np.asarray(y), np.asarray(p)
    keep = _on_sensor(x, y, p, width, height)
    if keep is not None:
        t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    plane = height * width
    if not len(t):
        return np.zeros((bins, height, width), dtype=dtype)
    if t_range is None:
        a, z = int(t.min()), int(t.max())
    else:
        a, z = int(t_range[0]), int(t_range[1])
    if z > a:
        tau = (t - a) * ((bins - 1) / (z - a))  # int64 difference, then float64
        np.clip(tau, 0, bins - 1, out=tau)
    else:
        tau = np.zeros(len(t))
    left = tau.astype(np.int64)  # floor: tau >= 0
    right_weight = tau - left
    sign = p.astype(np.float64) * 2.0 - 1.0
    pixel = y.astype(np.int64) * width + x
    grid = np.bincount(left * plane + pixel, weights=sign * (1.0 - right_weight),
                       minlength=bins * plane)
    inside = left + 1 < bins  # only events at tau == bins - 1 fail, with zero weight
    grid += np.bincount((left[inside] + 1) * plane + pixel[inside],
                        weights=(sign * right_weight)[inside], minlength=bins * plane)
    return grid.reshape(bins, height, width).astype(dtype, copy=False)


class EventHistogram:
    """Transform: :func:`event_histogram` of an :class:`~evshm.Events`, shape
    ``(2, height, width)``."""

    def __init__(self, dtype: DTypeLike = np.float32) -> None:
        self.dtype = np.dtype(dtype)

    def __call__(self, events: Events) -> np.ndarray:
        return event_histogram(events.x, events.y, events.p, events.width, events.height,
                               dtype=self.dtype)

    def __repr__(self) -> str:
        return f"EventHistogram(dtype={self.dtype})"


class VoxelGrid:
    """Transform: :func:`voxel_grid` of an :class:`~evshm.Events`, shape
    ``(bins, height, width)``.

    ``time_range="events"`` (default) normalises time by the events' own earliest and
    latest timestamps (E2VID); ``"window"`` by the time window ``[t0, t1)`` they were
    selected by, so that a bin means the same duration in every window (events then need
    ``t0``/``t1``: time windows, not event-count windows).
    """

    def __init__(self, bins: int, *, time_range: str = "events",
                 dtype: DTypeLike = np.float32) -> None:
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        if time_range not in ("events", "window"):
            raise ValueError(f"time_range must be 'events' or 'window', got {time_range!r}")
        self.bins = bins
        self.time_range = time_range
        self.dtype = np.dtype(dtype)

    def __call__(self, events: Events) -> np.ndarray:
        t_range: tuple[int, int] | None = None
        if self.time_range == "window":
            if events.t0 is None or events.t1 is None:
                raise ValueError("VoxelGrid(time_range='window') needs events selected by "
                                 "a time window (t0 and t1 are not set)")
            t_range = (events.t0, events.t1)
        return voxel_grid(events.t, events.x, events.y, events.p, events.width,
                          events.height, self.bins, t_range=t_range, dtype=self.dtype)

    def __repr__(self) -> str:
        return (f"VoxelGrid(bins={self.bins}, time_range={self.time_range!r}, "
                f"dtype={self.dtype})")
