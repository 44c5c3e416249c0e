"""Event representations: dense arrays computed with numpy from the events' columns.

Each representation is a function on plain arrays (usable on any events) and a small
picklable class that applies it to an :class:`~evshm.Events`. Inputs are only read, so the
read-only views into the shared memory are used as they are; the output is a new,
writable array, of the same shape for every window of a sensor.

Events outside the sensor (``x`` not in ``[0, width)`` or ``y`` not in ``[0, height)``)
or with a polarity other than 0 or 1 are ignored. The functions cost a few passes over
the events and ``np.bincount`` (no ``np.add.at``, which is much slower); a window
with few events for its sensor touches only the pixels it holds (see ``_sums``). The
voxel grid works through its events in blocks that stay in the cache and keeps its
scratch arrays between calls, per thread (``_Scratch``): what it costs is then mostly
arithmetic and the new output, not new memory.

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

import threading

import numpy as np
from numpy.typing import DTypeLike

from .._events import Events
from ._base import UNSIGNED, within

__all__ = ["event_histogram", "event_frame", "voxel_grid", "time_surface",
           "EventHistogram", "EventFrame", "VoxelGrid", "TimeSurface"]


def _on_sensor(x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int,
               height: int) -> np.ndarray | None:
    """The mask of events to keep, or ``None`` when all are kept (the usual case)."""
    keep = within(x, width) & within(y, height) & within(p, 2)
    return None if keep.all() else keep


def _all_on_sensor(x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int,
                   height: int) -> bool:
    """Whether every event is on the sensor with polarity 0 or 1 (the usual case):
    one reduction per array, no temporary arrays."""
    return not len(x) or (_below(x, width) and _below(y, height) and _below(p, 2))


def _below(values: np.ndarray, bound: int) -> bool:
    """Whether ``0 <= values < bound`` everywhere: for signed integers, one maximum of
    their unsigned view (a negative value wraps to a large one, as in ``within``)."""
    unsigned = UNSIGNED.get(values.dtype)
    if unsigned is not None:
        return int(values.view(unsigned).max()) < bound
    return bool(values.min() >= 0) and bool(values.max() < bound)


#: Events per block of the voxel grid's passes: each block's temporaries (a few of
#: 128 KiB) stay in the cache from one operation to the next.
_BLOCK = 1 << 14
#: Largest scratch array kept from call to call (bytes). A voxel grid keeps, per thread,
#: 8 bytes per event in five arrays (summed by bin: windows of up to 2 M events keep
#: theirs, 80 MiB at most) or 32 per event in one (by pixel, sparse windows only) and
#: 9 per pixel of the sensor in two; a larger array is made for the call only.
_KEEP = 16 << 20


class _Scratch(threading.local):
    """Scratch arrays that a thread reuses from call to call, by name: written before
    they are read, never returned. New memory is what a representation of a large
    sensor mostly costs (each page faulted in, zeroed, on this VM also backed by the
    host on its first touch); reused arrays cost none of that."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, size: int, dtype: DTypeLike) -> np.ndarray:
        """A 1-d array of ``size`` items of ``dtype``, contents undefined."""
        kept = self.arrays.get(name)
        if kept is not None and kept.dtype == dtype and kept.size >= size:
            return kept[:size]
        made = np.empty(size, dtype=dtype)
        if made.nbytes <= _KEEP:
            self.arrays[name] = made
        else:
            self.arrays.pop(name, None)
        return made


_SCRATCH = _Scratch()


def _scratch() -> _Scratch:
    return _SCRATCH


def _check_geometry(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"sensor geometry must be positive, got {width}x{height}")


def _touched(flat: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``flat`` (indices below ``size``), sorted, and each
    element's position among them: ``size`` bytes and ``size`` int32s of scratch, no
    sort."""
    seen = np.zeros(size, dtype=bool)
    seen[flat] = True
    (touched,) = seen.nonzero()
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
    # One contiguous cast, then a 1-d scatter per channel of values of the output's type:
    # much faster than out[:, touched], out[c, touched] (numpy's n-d path) or a scatter
    # that casts.
    values = sums.astype(out.dtype, copy=False)
    for c in range(channels):
        out[c][touched] = values[c * stride:(c + 1) * stride]
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

    The result is the definition evaluated in float64, event after event, then cast to
    ``dtype``: each event's two shares are computed as written (``1 - |b - tau|``, with
    ``tau`` the integer ``(bins - 1) * (t - a)`` divided by ``z - a``), and
    ``np.bincount`` adds them to their voxels in the events' order, so that each voxel
    gets the same float64 additions in the same order as a loop over the events.
    """
    _check_geometry(width, height)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    t, x, y, p = np.asarray(t), np.asarray(x), np.asarray(y), np.asarray(p)
    if not _all_on_sensor(x, y, p, width, height):
        keep = within(x, width) & within(y, height) & within(p, 2)
        t, x, y, p = t[keep], x[keep], y[keep], p[keep]
    if not len(t):
        return np.zeros((bins, height, width), dtype=dtype)
    if t_range is None:
        times = _Times(int(t.min()), int(t.max()), bins, clip=False)
    else:
        times = _Times(int(t_range[0]), int(t_range[1]), bins, clip=True)
    grid = None
    if len(t) * _DENSE >= height * width:
        grid = _voxels_by_bin(t, x, y, p, width, height, times, dtype)
    if grid is None:
        grid = _voxels_by_pixel(t, x, y, p, width, height, times, dtype)
    return grid.reshape(bins, height, width)


#: A voxel grid is summed bin after bin, over whole planes, when its events number at
#: least 1/_DENSE of the sensor's pixels (and come in bin order); else over the pixels
#: that hold events only (measured on a 1280x720 sensor: by bin from about 1/30).
_DENSE = 32


class _Times:
    """The time normalisation of a voxel grid: ``tau = (bins - 1) * (t - a) / (z - a)``
    and the two shares of each event, computed block by block into given arrays."""

    def __init__(self, a: int, z: int, bins: int, *, clip: bool) -> None:
        self.a, self.z, self.bins, self.clip = a, z, bins, clip

    def tau(self, t: np.ndarray, tau: np.ndarray, low: np.ndarray) -> None:
        """``tau`` of the block ``t``, and its floor ``low``, the left bin ``b``."""
        if self.z > self.a and self.bins > 1:
            np.subtract(t, self.a, out=tau)  # exact below 2**53 microseconds
            if self.bins > 2:
                tau *= self.bins - 1  # exact too: a timestamp difference times a few bins
            tau /= self.z - self.a  # so the one rounding of the definition's quotient
            if self.clip:
                np.clip(tau, 0, self.bins - 1, out=tau)
        else:
            tau.fill(0)
        np.floor(tau, out=low)

    @staticmethod
    def shares(tau: np.ndarray, low: np.ndarray, p: np.ndarray, sign: np.ndarray,
               left: np.ndarray, right: np.ndarray) -> None:
        """The signed shares ``s * (1 - |b - tau|)`` and ``s * (1 - |b + 1 - tau|)`` into
        ``left`` and ``right`` (``low`` is overwritten). They are computed as ``s * u``
        and ``s - s * u`` with ``u = (b + 1) - tau``: for ``b >= 1`` that difference is
        exact (Sterbenz), hence equal to the rounding of ``1 - (tau - b)``, ``tau - b``
        being exact too; for ``b = 0`` both are ``1 - tau``; ``s = +-1`` only flips
        signs, and ``1 - u`` is ``1 - |b + 1 - tau|``."""
        low += 1.0
        np.subtract(low, tau, out=low)
        np.multiply(p, 2.0, out=sign)
        sign -= 1.0
        np.multiply(low, sign, out=left)
        np.subtract(sign, left, out=right)


def _voxels_by_bin(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int,
                   height: int, times: _Times, dtype: DTypeLike) -> np.ndarray | None:
    """The grid ``(bins, height * width)`` one bin at a time, or ``None`` when the
    events' bins ever decrease (time going back across a bin's start).

    In bin order, bin ``c`` gets the right shares of the events of bin ``c - 1`` and
    then the left shares of those of bin ``c``: two adjacent runs of events, added to
    a whole plane by one ``np.bincount`` in the events' order, then cast into the
    output, whose every value is so written once (no zeroing, no scatter)."""
    n, bins, plane = len(t), times.bins, height * width
    scratch = _scratch()
    block = min(n, _BLOCK)
    pixel, tau, left, right, runs = (
        scratch.array(name, n, np.intp if name == "pixel" else np.float64)
        for name in ("pixel", "tau", "left", "right", "runs"))
    low, sign = (scratch.array(name, block, np.float64) for name in ("low", "sign"))
    previous = 0.0
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        low_b = low[:hi - lo]
        q = pixel[lo:hi]
        np.multiply(y[lo:hi], width, out=q, dtype=np.intp)
        q += x[lo:hi]
        times.tau(t[lo:hi], tau[lo:hi], low_b)
        if low_b[0] < previous or not (low_b[1:] >= low_b[:-1]).all():
            return None
        previous = low_b[-1]
        times.shares(tau[lo:hi], low_b, p[lo:hi], sign[:hi - lo], left[lo:hi],
                     right[lo:hi])
    # Bin c's events: [start[c], start[c + 1]), tau >= c being monotonic in the events.
    start = [0, *np.searchsorted(tau, np.arange(1, bins)).tolist(), n]
    out = np.empty((bins, plane), dtype=dtype)
    for c in range(bins):
        first = start[c - 1] if c else 0  # the previous bin's events, then this one's
        before = start[c] - first
        np.copyto(runs[:before], right[first:start[c]])
        np.copyto(runs[before:start[c + 1] - first], left[start[c]:start[c + 1]])
        sums = np.bincount(pixel[first:start[c + 1]], weights=runs[:start[c + 1] - first],
                           minlength=plane)
        np.copyto(out[c], sums, casting="unsafe")
    return out


def _voxels_by_pixel(t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
                     width: int, height: int, times: _Times,
                     dtype: DTypeLike) -> np.ndarray:
    """The grid ``(bins, height * width)`` summed over the pixels that hold events only
    (a sparse window: its sums are few), in any event order.

    Each event's two voxels and shares sit side by side, the order the definition adds
    them in, for one ``np.bincount`` over all of them; the sums are then scattered into
    a zeroed output, one bin at a time."""
    n, bins, plane = len(t), times.bins, height * width
    scratch = _scratch()
    block = min(n, _BLOCK)
    pixel, slots = scratch.array("block_ints", 2 * block, np.intp).reshape(2, block)
    tau, low, sign = scratch.array("block_floats", 3 * block, np.float64).reshape(3, block)
    seen = scratch.array("seen", plane, np.bool_)
    seen.fill(False)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        q = pixel[:hi - lo]
        np.multiply(y[lo:hi], width, out=q, dtype=np.intp)
        q += x[lo:hi]
        seen[q] = True
    (touched,) = seen.nonzero()
    stride = len(touched)
    slot = scratch.array("slot", plane, np.intp)
    slot[touched] = np.arange(stride)
    # Voxel bin * stride + slot; both arrays in one buffer, 32 bytes an event.
    pairs = scratch.array("pairs", 4 * n, np.intp)
    index = pairs[:2 * n].reshape(n, 2)
    weights = pairs[2 * n:].view(np.float64).reshape(n, 2)
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        m = hi - lo
        q, s_b, tau_b, low_b = pixel[:m], slots[:m], tau[:m], low[:m]
        left, right = index[lo:hi, 0], index[lo:hi, 1]
        if n > block:  # else still the pixels of the first pass
            np.multiply(y[lo:hi], width, out=q, dtype=np.intp)
            q += x[lo:hi]
        np.take(slot, q, out=s_b, mode="clip")  # q < plane
        times.tau(t[lo:hi], tau_b, low_b)
        np.multiply(low_b, stride, out=left, casting="unsafe")
        left += s_b
        np.add(left, stride, out=right)  # past the last bin: a zero share, cut below
        times.shares(tau_b, low_b, p[lo:hi], sign[:m], weights[lo:hi, 0],
                     weights[lo:hi, 1])
    sums = np.bincount(index.reshape(-1), weights=weights.reshape(-1),
                       minlength=bins * stride)[:bins * stride].reshape(bins, stride)
    del index, weights, pairs
    out = np.zeros((bins, plane), dtype=dtype)
    cast = scratch.array("cast", bins * stride, out.dtype).reshape(bins, stride)
    np.copyto(cast, sums, casting="unsafe")
    for c in range(bins):  # a 1-d scatter each, of values already in the output's type
        out[c][touched] = cast[c]  # (out[c, touched] takes numpy's slower n-d path)
    return out


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
