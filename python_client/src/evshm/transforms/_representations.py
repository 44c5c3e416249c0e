"""Event representations: dense arrays computed with numpy from the events' columns.

Each representation is a function on plain arrays (usable on any events) and a small
picklable class that applies it to an :class:`~evshm.Events`. Inputs are only read, so the
read-only views into the shared memory are used as they are; the output is a new,
writable array, of the same shape for every window of a sensor.

Events outside the sensor (``x`` not in ``[0, width)`` or ``y`` not in ``[0, height)``)
or with a polarity other than 0 or 1 are ignored. The functions cost a few passes over
the events and one ``np.bincount`` (no ``np.add.at``, which is much slower); a window
with few events for its sensor touches only the pixels it holds (see ``_sums``).

Definitions
-----------
Histogram, shape ``(2, height, width)``::

    H[c, y, x] = number of events at pixel (x, y) with polarity p == c
                 (channel 0: OFF events, channel 1: ON events)

Event frame, one image of the window: ``"count"``, shape ``(1, height, width)``, the
events per pixel whatever their polarity; ``"polarity"``, the histogram; ``"binary"``,
shape ``(1, height, width)``, 1 where a pixel has any event, else 0.

Voxel grid with ``B`` bins, shape ``(B, height, width)``, the bilinear-in-time voxel grid
of E2VID (Rebecq et al., 2019) and EST's trilinear kernel (Gehrig et al., 2019)::

    V[b, y, x] = sum over events i at (x, y) of  s_i * max(0, 1 - |b - tau_i|)
    s_i   = +1 if p_i == 1 else -1
    tau_i = (B - 1) * (t_i - a) / (z - a), clipped to [0, B - 1]   (0 when z == a)

``(a, z)`` is ``t_range`` when given (the datasets can pass the window ``[t0, t1)``),
else ``(min(t), max(t))`` of the events, which for timestamps that never decrease are the
first and last event's, as in E2VID. Each event thus splits its polarity between the two
bins around ``tau_i``; an event at ``tau_i == b`` counts wholly in bin ``b``.

Time surface with decay ``tau`` (microseconds), shape ``(2, height, width)``, the
exponentially decaying surface of HOTS (Lagorce et al., 2016) over the whole sensor::

    S[c, y, x] = exp(-max(0, t_ref - T[c, y, x]) / tau), or 0 where no event
    T[c, y, x] = the latest timestamp of the events at (x, y) with polarity c

``t_ref`` is given (the datasets can pass the window's end ``t1``), else ``max(t)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from .._events import Events
from ._base import within

__all__ = ["event_histogram", "event_frame", "voxel_grid", "time_surface",
           "EventHistogram", "EventFrame", "VoxelGrid", "TimeSurface"]


def _on_sensor(x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int,
               height: int) -> np.ndarray | None:
    """The mask of events to keep, or ``None`` when all are kept (the usual case)."""
    keep = within(x, width) & within(y, height) & within(p, 2)
    return None if keep.all() else keep


def _check_geometry(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"sensor geometry must be positive, got {width}x{height}")


def _touched(flat: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``flat`` (indices below ``size``), sorted, and each
    element's position among them: ``size`` bytes and ``size`` int32s of scratch, no
    sort."""
    seen = np.zeros(size, dtype=bool)
    seen[flat] = True
    touched = np.flatnonzero(seen)
    # Only the entries at `touched` are written and read back: np.empty leaves the
    # pages of the others unwritten.
    slot = np.empty(size, dtype=np.int32 if size < 1 << 31 else np.int64)
    slot[touched] = np.arange(len(touched), dtype=slot.dtype)
    return touched, slot[flat]


def _sums(pixel: np.ndarray, channel: np.ndarray | None, weights: np.ndarray | None,
          channels: int, plane: int, dtype: DTypeLike, *, parts: int = 1) -> np.ndarray:
    """``out[c, q]`` = the sum of ``weights`` (or the count) of the events at pixel
    ``q`` in channel ``c`` (``None``: 0): an array ``(channels, plane)`` of ``dtype``.
    With ``parts=k``, ``channel`` and ``weights`` are ``k`` runs of the events one after
    the other (a voxel grid's share of each event in two bins), and ``channel`` may be
    written into.

    One ``np.bincount`` adds the weights in their order, in float64 (or counts in
    int64), then the sums are cast to ``dtype``. It spans either every pixel of every
    channel, or (``_touched``) only the pixels that hold events, whose sums are then
    written into a zeroed array. The second writes less new memory (8 bytes per pixel
    and channel, against 5 per pixel plus 8 per touched pixel and channel) whenever
    fewer pixels than that hold events, which is what a window of a large sensor costs:
    first writes of new memory, each page faulted in, outweigh the arithmetic. The sums
    are the same either way: the same additions in the same order.
    """
    if len(pixel) >= plane * (1 - 5 / (8 * channels)):  # bounds the pixels touched
        touched, base, stride = None, pixel, plane
    else:
        touched, base = _touched(pixel, plane)
        stride = len(touched)
    if channel is None:
        index = base
    else:
        index = channel.astype(np.int64, copy=False)
        index *= stride
        index.reshape(parts, -1)[...] += base  # each run of events gets its pixels
    sums = np.bincount(index, weights=weights, minlength=channels * stride)
    if touched is None:
        return sums.reshape(channels, plane).astype(dtype, copy=False)
    if stride * 16 < plane:
        # So few pixels that most pages of the result stay zero: calloc's pages, which
        # only the pages written below fault in.
        out = np.zeros((channels, plane), dtype=dtype)
    else:
        # Most pages are written: zeroed by one sequential write, on the huge pages
        # numpy asks for large arrays it allocates, rather than calloc's 4 KiB zero
        # pages faulted one at a time by the scattered writes.
        out = np.empty((channels, plane), dtype=dtype)
        out.fill(0)
    for c in range(channels):  # a 1-d scatter each: much faster than out[:, touched]
        out[c, touched] = sums[c * stride:(c + 1) * stride]
    return out


def _pixels(x: np.ndarray, y: np.ndarray, width: int) -> np.ndarray:
    """``y * width + x``, int64, in one new array."""
    pixel = y.astype(np.int64)
    pixel *= width
    pixel += x
    return pixel


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
    counts = _sums(_pixels(x, y, width), p.astype(np.int64), None, 2, height * width, dtype)
    return counts.reshape(2, height, width)


FRAME_MODES = ("count", "polarity", "binary")


def event_frame(x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int, height: int,
                mode: str = "count", *, dtype: DTypeLike = np.float32) -> np.ndarray:
    """One image of the events (see the module doc): ``mode="count"`` events per
    pixel, shape ``(1, height, width)``; ``"polarity"`` the histogram, ``(2, height,
    width)``; ``"binary"`` 1 where a pixel has an event, ``(1, height, width)``."""
    if mode not in FRAME_MODES:
        raise ValueError(f"mode must be one of {', '.join(FRAME_MODES)}, got {mode!r}")
    if mode == "polarity":
        return event_histogram(x, y, p, width, height, dtype=dtype)
    _check_geometry(width, height)
    x, y, p = np.asarray(x), np.asarray(y), np.asarray(p)
    keep = _on_sensor(x, y, p, width, height)
    if keep is not None:
        x, y = x[keep], y[keep]
    pixel = _pixels(x, y, width)
    if mode == "binary":
        out = np.zeros(height * width, dtype=dtype)
        out[pixel] = 1
        return out.reshape(1, height, width)
    return _sums(pixel, None, None, 1, height * width, dtype).reshape(1, height, width)


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
    if not len(t):
        return np.zeros((bins, height, width), dtype=dtype)
    if t_range is None:
        a, z = int(t.min()), int(t.max())
    else:
        a, z = int(t_range[0]), int(t_range[1])
    n = len(t)
    tau = np.subtract(t, a, out=np.empty(n))  # the int64 difference, stored as float64
    if z > a:
        tau *= (bins - 1) / (z - a)
        np.clip(tau, 0, bins - 1, out=tau)
    else:
        tau.fill(0)
    # Each event twice, in the bin left of tau_i and in the next one; computed in place
    # into these two arrays, every temporary being new memory to fault in.
    channel = np.empty(2 * n, dtype=np.int64)
    weights = np.empty(2 * n)
    left, right = channel[:n], channel[n:]
    left[...] = tau  # floor: tau >= 0
    sign = weights[:n]
    sign[...] = p
    sign *= 2.0
    sign -= 1.0  # s_i
    np.subtract(tau, left, out=weights[n:])
    weights[n:] *= sign  # s_i * (tau_i - b): the right share
    sign -= weights[n:]  # s_i * (1 - (tau_i - b)): the left share
    # An event at tau == bins - 1 has no right bin and a zero share: adding it to its
    # own bin changes no sum, and spares selecting the others.
    np.add(left, 1, out=right)
    np.minimum(right, bins - 1, out=right)
    grid = _sums(_pixels(x, y, width), channel, weights, bins, height * width, dtype,
                 parts=2)
    return grid.reshape(bins, height, width)


def time_surface(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int,
                 height: int, tau: float, *, t_ref: int | None = None,
                 dtype: DTypeLike = np.float32) -> np.ndarray:
    """Exponentially decaying time surface, shape ``(2, height, width)``, as defined in
    the module doc: ``exp(-(t_ref - T) / tau)`` of each pixel and polarity's latest
    timestamp ``T`` (0 where none); ``t_ref`` defaults to ``max(t)``."""
    _check_geometry(width, height)
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    t, x, y, p = np.asarray(t), np.asarray(x), np.asarray(y), np.asarray(p)
    keep = _on_sensor(x, y, p, width, height)
    if keep is not None:
        t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    out = np.zeros(2 * height * width, dtype=dtype)
    if not len(t):
        return out.reshape(2, height, width)
    touched, slot = _touched((p.astype(np.int64) * height + y) * width + x, out.size)
    latest = np.empty(len(touched), dtype=np.int64)
    # Each pixel gets one of its timestamps (numpy does not say which one when a pixel
    # is assigned repeatedly); where an event is later than that one, np.maximum.at
    # fixes the pixel. Events mostly come in time order, so that is rarely any.
    latest[slot] = t
    later = t > latest[slot]
    if later.any():
        np.maximum.at(latest, slot[later], t[later])
    reference = int(t.max()) if t_ref is None else int(t_ref)
    age = np.maximum(reference - latest, 0).astype(np.float64)
    out[touched] = np.exp(-age / tau)
    return out.reshape(2, height, width)


def _check_time_range(time_range: str) -> None:
    if time_range not in ("events", "window"):
        raise ValueError(f"time_range must be 'events' or 'window', got {time_range!r}")


def _window(events: Events, who: str) -> tuple[int, int]:
    """The window ``(t0, t1)`` of ``events``, which ``who(time_range='window')`` needs."""
    if events.t0 is None or events.t1 is None:
        raise ValueError(f"{who}(time_range='window') needs events selected by a time "
                         "window (t0 and t1 are not set)")
    return events.t0, events.t1


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
        _check_time_range(time_range)
        self.bins = bins
        self.time_range = time_range
        self.dtype = np.dtype(dtype)

    def __call__(self, events: Events) -> np.ndarray:
        t_range = _window(events, "VoxelGrid") if self.time_range == "window" else None
        return voxel_grid(events.t, events.x, events.y, events.p, events.width,
                          events.height, self.bins, t_range=t_range, dtype=self.dtype)

    def __repr__(self) -> str:
        return (f"VoxelGrid(bins={self.bins}, time_range={self.time_range!r}, "
                f"dtype={self.dtype})")


class EventFrame:
    """Transform: :func:`event_frame` of an :class:`~evshm.Events`: ``mode="count"``
    (events per pixel, ``(1, height, width)``), ``"polarity"`` (per pixel and polarity,
    ``(2, height, width)``) or ``"binary"`` (1 where a pixel has an event, ``(1, height,
    width)``). tonic's ``ToFrame`` with one slice gives the polarity frame, in int16."""

    def __init__(self, mode: str = "count", *, dtype: DTypeLike = np.float32) -> None:
        if mode not in FRAME_MODES:
            raise ValueError(f"mode must be one of {', '.join(FRAME_MODES)}, got {mode!r}")
        self.mode = mode
        self.dtype = np.dtype(dtype)

    def __call__(self, events: Events) -> np.ndarray:
        return event_frame(events.x, events.y, events.p, events.width, events.height,
                           self.mode, dtype=self.dtype)

    def __repr__(self) -> str:
        return f"EventFrame(mode={self.mode!r}, dtype={self.dtype})"


class TimeSurface:
    """Transform: :func:`time_surface` of an :class:`~evshm.Events`, shape
    ``(2, height, width)``, decaying with ``tau`` microseconds.

    ``time_range="events"`` (default) takes the surface at the latest event; ``"window"``
    at the end ``t1`` of the time window the events were selected by, so that a pixel
    that fell silent early in the window has decayed for the rest of it. tonic's
    ``ToTimesurface(dt=..., tau=...)`` with one slice takes it at the first event plus
    ``dt``.
    """

    def __init__(self, tau: float, *, time_range: str = "events",
                 dtype: DTypeLike = np.float32) -> None:
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau!r}")
        _check_time_range(time_range)
        self.tau = tau
        self.time_range = time_range
        self.dtype = np.dtype(dtype)

    def __call__(self, events: Events) -> np.ndarray:
        t_ref = _window(events, "TimeSurface")[1] if self.time_range == "window" else None
        return time_surface(events.t, events.x, events.y, events.p, events.width,
                            events.height, self.tau, t_ref=t_ref, dtype=self.dtype)

    def __repr__(self) -> str:
        return (f"TimeSurface(tau={self.tau}, time_range={self.time_range!r}, "
                f"dtype={self.dtype})")
