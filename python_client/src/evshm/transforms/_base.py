"""What the transforms share: :class:`Compose`, the seeding of random transforms, and
small checks."""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from .._events import Events

__all__ = ["Compose", "RandomTransform"]


class Compose:
    """Apply transforms one after the other: ``Compose([a, b, c])(x) == c(b(a(x)))``.

    Any callables will do (evshm's, tonic's on structured arrays, your own); the result
    pickles whenever they all do. Unlike tonic's ``Compose``, a step that leaves no
    event does not stop the chain: a representation at the end still gives its (empty)
    array, of the same shape as for any other window.
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, events: Any) -> Any:
        for transform in self.transforms:
            events = transform(events)
        return events

    def __repr__(self) -> str:
        inner = ", ".join(repr(transform) for transform in self.transforms)
        return f"Compose([{inner}])"


def _worker_seed() -> int | None:
    """The seed torch gave this DataLoader worker (it differs per worker and per epoch
    unless the workers persist), or ``None`` outside a worker. torch is not imported for
    this: if it was never imported, this is no worker."""
    data = sys.modules.get("torch.utils.data")
    if data is None:
        return None
    info = data.get_worker_info()
    return None if info is None else int(info.seed)


class RandomTransform:
    """Base of the transforms that draw random numbers: each has its own
    :class:`numpy.random.Generator`, made on first use in each process.

    The generator's seed sequence is built from ``seed``, the transform's class (so that
    ``RandomFlipLR(seed=0)`` and ``RandomFlipUD(seed=0)`` do not flip together) and, in a
    torch ``DataLoader`` worker, the seed torch gave that worker. So:

    - with an integer ``seed``, a run is reproducible: in the main process the draws
      follow one stream (each epoch continues it), and each worker draws a stream of its
      own, which torch reseeds at every epoch (or, with ``persistent_workers``, which
      carries on from epoch to epoch), both given torch's own seed (``torch.manual_seed``
      or the ``DataLoader``'s ``generator=``);
    - with ``seed=None`` (the default) every process draws fresh entropy from the OS:
      different at every run.

    A forked process that is not a torch worker starts the stream of ``seed`` afresh,
    like the process it was forked from did: give such processes seeds of their own.
    Pickling drops the generator (a spawned worker makes its own).
    """

    def __init__(self, seed: int | None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                                 or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self.seed = seed
        self._generator: np.random.Generator | None = None
        self._owner: tuple[int, int | None] | None = None

    def generator(self) -> np.random.Generator:
        """This process's generator (see the class doc for how it is seeded)."""
        owner = (os.getpid(), _worker_seed())
        if self._generator is None or owner != self._owner:
            tag = zlib.crc32(type(self).__qualname__.encode())  # the same in every process
            key = (tag,) if owner[1] is None else (tag, owner[1])
            self._generator = np.random.default_rng(
                np.random.SeedSequence(self.seed, spawn_key=key))
            self._owner = owner
        return self._generator

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_generator"] = state["_owner"] = None
        return state


def check_probability(p: float) -> float:
    """``p`` as a float in [0, 1], or :class:`ValueError`."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    return float(p)


def check_size(size: int | tuple[int, int], what: str) -> tuple[int, int]:
    """``(width, height)`` from an int (a square) or a pair, both positive."""
    width, height = (size, size) if isinstance(size, int) else size
    if width < 1 or height < 1:
        raise ValueError(f"{what} must be positive, got {width}x{height}")
    return int(width), int(height)


#: The unsigned integer type of each integer type's size, by dtype (made once: a small
#: window notices the cost of building a dtype from its name).
UNSIGNED = {np.dtype(f"{kind}{size}"): np.dtype(f"u{size}") for kind in "iu"
            for size in (1, 2, 4, 8)}


def within(offset: np.ndarray, bound: int) -> np.ndarray:
    """``0 <= offset < bound``, elementwise, for signed integer ``offset``: one unsigned
    comparison (a negative offset wraps to a large unsigned value)."""
    if offset.dtype.kind != "i":
        return (offset >= 0) & (offset < bound)
    return offset.view(UNSIGNED[offset.dtype]) < bound


def pixel_index(events: Events) -> tuple[np.ndarray, np.ndarray | None]:
    """Each event's pixel ``y * width + x`` (int64), and the mask of events on the
    sensor (``None`` when all are). Events off the sensor get index -1."""
    on = within(events.x, events.width) & within(events.y, events.height)
    pixel = events.y.astype(np.int64) * events.width + events.x
    if on.all():
        return pixel, None
    pixel[~on] = -1
    return pixel, on
