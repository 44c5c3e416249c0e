"""Geometric transforms: flips, crops, and rescaling to another sensor size."""

from __future__ import annotations

import math

import numpy as np

from .._events import Events
from ._base import RandomTransform, check_probability, check_size, within

__all__ = ["RandomFlipLR", "RandomFlipUD", "RandomCrop", "CenterCrop", "Resize",
           "Downsample", "crop", "resize"]


class RandomFlipLR(RandomTransform):
    """Mirror the events left to right with probability ``p``: ``x' = width - 1 - x``
    (tonic's ``RandomFlipLR``). ``seed``: see :class:`RandomTransform`."""

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.p = check_probability(p)

    def __call__(self, events: Events) -> Events:
        if not self.generator().random() < self.p:
            return events
        return Events(events.t, (events.width - 1) - events.x, events.y, events.p,
                      events.width, events.height, events.t0, events.t1)

    def __repr__(self) -> str:
        return f"RandomFlipLR(p={self.p}, seed={self.seed})"


class RandomFlipUD(RandomTransform):
    """Mirror the events top to bottom with probability ``p``: ``y' = height - 1 - y``
    (tonic's ``RandomFlipUD``). ``seed``: see :class:`RandomTransform`."""

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.p = check_probability(p)

    def __call__(self, events: Events) -> Events:
        if not self.generator().random() < self.p:
            return events
        return Events(events.t, events.x, (events.height - 1) - events.y, events.p,
                      events.width, events.height, events.t0, events.t1)

    def __repr__(self) -> str:
        return f"RandomFlipUD(p={self.p}, seed={self.seed})"


def crop(events: Events, left: int, top: int, width: int, height: int) -> Events:
    """The events inside the ``width`` x ``height`` rectangle whose top left pixel is
    ``(left, top)``, moved so that it becomes ``(0, 0)``: ``x' = x - left``, ``y' = y -
    top``, on a sensor of ``width`` x ``height``. ``left`` and ``top`` may be negative
    (the rectangle then reaches past the sensor: padding)."""
    dx = events.x - left  # in the column's type: |left| is at most a sensor's size
    dy = events.y - top
    (rows,) = (within(dx, width) & within(dy, height)).nonzero()
    return Events(events.t[rows], dx[rows], dy[rows], events.p[rows], width, height,
                  events.t0, events.t1)


class RandomCrop(RandomTransform):
    """Keep a ``size = (width, height)`` rectangle (an int: a square) at a random
    place on the sensor, every place equally likely, as the new sensor (see
    :func:`crop`). The sensor must be at least that large. ``seed``: see
    :class:`RandomTransform`."""

    def __init__(self, size: int | tuple[int, int], *, seed: int | None = None) -> None:
        super().__init__(seed)
        self.size = check_size(size, "the crop size")

    def __call__(self, events: Events) -> Events:
        width, height = self.size
        if width > events.width or height > events.height:
            raise ValueError(f"cannot crop {width}x{height} out of a "
                             f"{events.width}x{events.height} sensor")
        # Both corners from one draw of two uniforms in [0, 1): a fraction of the cost
        # of two calls of Generator.integers, which a small window notices.
        u, v = self.generator().random(2).tolist()
        left = int(u * (events.width - width + 1))
        top = int(v * (events.height - height + 1))
        return crop(events, left, top, width, height)

    def __repr__(self) -> str:
        return f"RandomCrop(size={self.size}, seed={self.seed})"


class CenterCrop:
    """Keep the ``size = (width, height)`` rectangle (an int: a square) in the middle
    of the sensor, its top left pixel at ``((W - width) // 2, (H - height) // 2)``, as
    the new sensor (see :func:`crop`). A size larger than the sensor pads it (events
    move right or down), as tonic's ``CenterCrop`` does."""

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = check_size(size, "the crop size")

    def __call__(self, events: Events) -> Events:
        width, height = self.size
        return crop(events, (events.width - width) // 2, (events.height - height) // 2,
                    width, height)

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


def resize(events: Events, width: int, height: int) -> Events:
    """The events mapped onto a ``width`` x ``height`` sensor:
    ``x' = floor(x * width / W)``, ``y' = floor(y * height / H)`` in exact integer
    arithmetic (``W`` x ``H`` the events' sensor). No event is dropped; the same events
    come back when the size does not change."""
    if (width, height) == (events.width, events.height):
        return events
    return Events(events.t, _scale(events.x, width, events.width),
                  _scale(events.y, height, events.height), events.p, width, height,
                  events.t0, events.t1)


def _scale(v: np.ndarray, new: int, old: int) -> np.ndarray:
    # int32 holds v * new for any int16 v and new < 2**16: half the memory traffic of int64.
    work = np.int32 if new < 1 << 16 and v.dtype.itemsize <= 2 else np.int64
    return ((v.astype(work) * new) // old).astype(v.dtype)


class Resize:
    """Map the events onto a sensor of ``size = (width, height)`` (see :func:`resize`):
    how recordings of different sensors are brought to one size. Upscaling is allowed
    (the events then land on a sparser grid). tonic's ``Downsample(sensor_size=...,
    target_size=...)`` computes the same in floating point."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = check_size(size, "the size")

    def __call__(self, events: Events) -> Events:
        return resize(events, *self.size)

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class Downsample:
    """Scale pixel coordinates by ``factor`` (or ``(fx, fy)``): ``x' = floor(x * fx)``,
    ``y' = floor(y * fy)``, as tonic's ``Downsample(spatial_factor=...)``. The new
    sensor is the smallest that holds every scaled pixel: ``floor((W - 1) * fx) + 1``
    by ``floor((H - 1) * fy) + 1`` (320 x 180 for 1280 x 720 and 0.25). To reach a given
    size, use :class:`Resize`."""

    def __init__(self, factor: float | tuple[float, float]) -> None:
        fx, fy = (factor, factor) if isinstance(factor, (int, float)) else factor
        if not (fx > 0 and fy > 0 and math.isfinite(fx) and math.isfinite(fy)):
            raise ValueError(f"factor must be positive, got {factor!r}")
        self.factor = (float(fx), float(fy))

    def __call__(self, events: Events) -> Events:
        fx, fy = self.factor
        # Multiplied in float64 and truncated, like tonic, so that results agree.
        return Events(events.t, (events.x * fx).astype(events.x.dtype),
                      (events.y * fy).astype(events.y.dtype), events.p,
                      math.floor((events.width - 1) * fx) + 1,
                      math.floor((events.height - 1) * fy) + 1, events.t0, events.t1)

    def __repr__(self) -> str:
        return f"Downsample(factor={self.factor})"
