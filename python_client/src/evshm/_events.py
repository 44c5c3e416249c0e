"""The events of a recording or window as numpy arrays: what transforms take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Events"]


@dataclass(frozen=True)
class Events:
    """Events as four equally long numpy arrays, plus the sensor geometry.

    From :meth:`evshm.Recording.events` the arrays are read-only views into the shared
    memory (no copy); they can also be built from any arrays of the same meaning.

    Attributes:
        t: timestamps in microseconds (int64, absolute sensor time; may step back a
            little in real data).
        x, y: pixel coordinates (int16), ``0 <= x < width``, ``0 <= y < height``.
        p: polarity (int8), 0 (OFF, darker) or 1 (ON, brighter).
        width, height: sensor geometry in pixels.
        t0, t1: the time window ``[t0, t1)`` these events were selected by, or ``None``
            when they were not selected by time (a whole recording, a count window).
    """

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    width: int
    height: int
    t0: int | None = None
    t1: int | None = None

    def __len__(self) -> int:
        return len(self.t)
