"""Noise filters: background activity, refractory period, hot pixels.

The first two look, for each event, at the last earlier event (in stream order) of a
pixel. Instead of a loop over the events, both sort the keys ``pixel * n + i`` once
(``i`` the event's position, ``n`` the number of events): the sorted keys list each
pixel's events in stream order, so "the last event of pixel ``q`` before event ``i``" is
the key just below ``q * n + i``, found by a binary search whose needles come already
sorted. Events off the sensor cannot be judged and are dropped by every filter.
"""

from __future__ import annotations

import numpy as np

from .._events import Events
from ._base import pixel_index

__all__ = ["Denoise", "Refractory", "HotPixels"]


def _on_sensor(events: Events) -> tuple[Events, np.ndarray]:
    """The events on the sensor, and their pixels ``y * width + x``."""
    pixel, on = pixel_index(events)
    if on is None:
        return events, pixel
    return events.select(on), pixel[on]


def _sorted_keys(pixel: np.ndarray) -> np.ndarray:
    """``pixel * n + i`` sorted: by pixel, then by position in the stream."""
    n = len(pixel)
    return np.sort(pixel * n + np.arange(n, dtype=np.int64))


class Denoise:
    """Background-activity filter: keep an event only if one of its four neighbouring
    pixels (left, right, above, below) had an event less than ``filter_time``
    microseconds before it. Exactly: event ``i`` at ``(x, y)`` is kept when, for some
    neighbour, the neighbour's last event ``j`` before ``i`` in stream order has
    ``t_i - t_j < filter_time``.

    tonic's ``Denoise(filter_time)`` computes the same with a loop over the events,
    except at the start of time: it also keeps the events at ``t < filter_time`` that
    have a neighbour on the sensor, as if every pixel had fired at time 0.
    """

    def __init__(self, filter_time: float) -> None:
        if not filter_time > 0:
            raise ValueError(f"filter_time must be positive, got {filter_time!r}")
        self.filter_time = filter_time

    def __call__(self, events: Events) -> Events:
        events, pixel = _on_sensor(events)
        n = len(pixel)
        if not n:
            return events
        keys = _sorted_keys(pixel)
        pix = keys // n
        row = keys - pix * n  # each sorted key's event
        t = events.t[row]
        x = pix % events.width
        keep = np.zeros(n, dtype=bool)
        for offset, has in ((-1, x > 0), (1, x < events.width - 1),
                            (-events.width, None), (events.width, None)):
            # The last event of the neighbour q = pix + offset before each event is the
            # largest key below q * n + row, if that key is q's. (The needles are
            # sorted, as the keys are; a q above row 0 or below the last is no pixel,
            # and no key matches it.)
            base = keys + offset * n - row  # q * n
            found = np.searchsorted(keys, base + row) - 1
            np.maximum(found, 0, out=found)  # -1: no key below; keys[0] is not below
            before = keys[found]
            hit = (before >= base) & (before < base + row)
            if has is not None:
                hit &= has  # left of x = 0 or right of the last column: no neighbour
            earlier = before - base
            earlier[~hit] = 0
            hit &= (t - events.t[earlier]) < self.filter_time
            keep |= hit
        rows = np.zeros(n, dtype=bool)
        rows[row] = keep
        return events.select(rows)

    def __repr__(self) -> str:
        return f"Denoise(filter_time={self.filter_time})"


class Refractory:
    """Refractory period: drop an event when its pixel's previous event (in stream
    order, kept or not) came ``period`` microseconds or less before it, so that
    ``t_i - t_previous > period`` holds for every kept event but a pixel's first.
    tonic's ``RefractoryPeriod(delta)``, except that tonic also drops a first event
    at ``t <= 0``."""

    def __init__(self, period: float) -> None:
        if not period >= 0:
            raise ValueError(f"period must be non-negative, got {period!r}")
        self.period = period

    def __call__(self, events: Events) -> Events:
        events, pixel = _on_sensor(events)
        n = len(pixel)
        if n < 2:
            return events
        keys = _sorted_keys(pixel)
        pix = keys // n
        row = keys - pix * n
        t = events.t[row]
        keep = np.ones(n, dtype=bool)
        keep[1:] = (pix[1:] != pix[:-1]) | ((t[1:] - t[:-1]) > self.period)
        rows = np.zeros(n, dtype=bool)
        rows[row] = keep
        return events.select(rows)

    def __repr__(self) -> str:
        return f"Refractory(period={self.period})"


class HotPixels:
    """Drop every event of the pixels that fire faster than ``rate`` events per second
    (both polarities counted) over the events' duration: the window ``t1 - t0`` when
    they have one, else ``max(t) - min(t)``. A pixel is hot when its count exceeds
    ``rate * duration / 1e6``. tonic's ``DropPixel(hot_pixel_frequency=rate)``, which
    takes the duration from the first and last events."""

    def __init__(self, rate: float) -> None:
        if not rate >= 0:
            raise ValueError(f"rate must be non-negative, got {rate!r}")
        self.rate = rate

    def __call__(self, events: Events) -> Events:
        events, pixel = _on_sensor(events)
        if not len(pixel):
            return events
        if events.t0 is not None and events.t1 is not None:
            duration = events.t1 - events.t0
        else:
            duration = int(events.t.max()) - int(events.t.min())
        counts = np.bincount(pixel, minlength=events.width * events.height)
        hot = counts > self.rate * duration * 1e-6
        if not hot.any():
            return events
        return events.select(~hot[pixel])

    def __repr__(self) -> str:
        return f"HotPixels(rate={self.rate})"
