"""Temporal transforms: jitter, random dropping, reversal."""

from __future__ import annotations

import numpy as np

from .._events import Events
from ._base import RandomTransform, check_probability

__all__ = ["TimeJitter", "DropEvents", "TimeReversal"]


class TimeJitter(RandomTransform):
    """Add to each timestamp an independent draw of a normal distribution of mean 0 and
    standard deviation ``std`` microseconds, rounded to the microsecond (tonic's
    ``TimeJitter`` truncates instead).

    ``clip_negative`` drops the events whose time became negative (tonic's default);
    ``sort`` puts the events back in time order (stable), else they keep their order
    and time steps back. The window ``t0``/``t1`` is kept: jittered events may fall a
    little outside it. ``seed``: see :class:`RandomTransform`.
    """

    def __init__(self, std: float, *, clip_negative: bool = True, sort: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        if not std >= 0:
            raise ValueError(f"std must be non-negative, got {std!r}")
        self.std = float(std)
        self.clip_negative = clip_negative
        self.sort = sort

    def __call__(self, events: Events) -> Events:
        shift = np.rint(self.generator().normal(0.0, self.std, len(events)))
        t = events.t + shift.astype(np.int64)
        out = Events(t, events.x, events.y, events.p, events.width, events.height,
                     events.t0, events.t1)
        if self.clip_negative and len(t) and t.min() < 0:
            out = out.select(t >= 0)
        if self.sort:
            out = out.select(np.argsort(out.t, kind="stable"))
        return out

    def __repr__(self) -> str:
        return (f"TimeJitter(std={self.std}, clip_negative={self.clip_negative}, "
                f"sort={self.sort}, seed={self.seed})")


class DropEvents(RandomTransform):
    """Drop a random ``fraction`` of the events: ``round(fraction * n)`` of the ``n``
    events, every subset of that size equally likely; the others keep their order.
    ``fraction=(low, high)`` draws the fraction uniformly in that range for each call.
    tonic's ``DropEvent(p)``. ``seed``: see :class:`RandomTransform`."""

    def __init__(self, fraction: float | tuple[float, float], *,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        low, high = fraction if isinstance(fraction, tuple) else (fraction, fraction)
        self.fraction: float | tuple[float, float] = fraction
        self._range = (check_probability(low), check_probability(high))
        if low > high:
            raise ValueError(f"fraction range {fraction!r} is empty")

    def __call__(self, events: Events) -> Events:
        rng = self.generator()
        low, high = self._range
        fraction = low if low == high else rng.uniform(low, high)
        n = len(events)
        dropped = int(fraction * n + 0.5)  # tonic's rounding
        if not dropped:
            return events
        keep = np.ones(n, dtype=bool)
        keep[rng.choice(n, dropped, replace=False)] = False
        return events.select(keep)

    def __repr__(self) -> str:
        return f"DropEvents(fraction={self.fraction!r}, seed={self.seed})"


class TimeReversal(RandomTransform):
    """With probability ``p``, play the events backwards: reverse their order, mirror
    their times and (``flip_polarities``, default) swap ON and OFF, since a brightening
    seen backwards is a darkening.

    Times are mirrored within the window ``[t0, t1)`` when the events have one (``t' =
    t0 + t1 - 1 - t``: the reversed events lie in the same window, so a representation
    normalised by the window reads them the same way), else within their own span
    (``t' = min(t) + max(t) - t``). tonic's ``RandomTimeReversal`` computes
    ``max(t) - t``, the same events shifted to start at time 0. ``seed``: see
    :class:`RandomTransform`.
    """

    def __init__(self, p: float = 0.5, *, flip_polarities: bool = True,
                 seed: int | None = None) -> None:
        super().__init__(seed)
        self.p = check_probability(p)
        self.flip_polarities = flip_polarities

    def __call__(self, events: Events) -> Events:
        if not self.generator().random() < self.p or not len(events):
            return events
        if events.t0 is not None and events.t1 is not None:
            pivot = events.t0 + events.t1 - 1
        else:
            pivot = int(events.t.min()) + int(events.t.max())
        p = events.p[::-1]
        return Events(pivot - events.t[::-1], events.x[::-1].copy(), events.y[::-1].copy(),
                      1 - p if self.flip_polarities else p.copy(), events.width,
                      events.height, events.t0, events.t1)

    def __repr__(self) -> str:
        return (f"TimeReversal(p={self.p}, flip_polarities={self.flip_polarities}, "
                f"seed={self.seed})")
