"""The events of a recording or window as numpy arrays: what transforms take."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._optional import require

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import DTypeLike

__all__ = ["Events", "structured_dtype"]


def structured_dtype() -> np.dtype[Any]:
    """tonic's dtype for events (``tonic.io.events_struct``): the records of
    :meth:`Events.as_structured`, fields ``x`` (int16), ``y`` (int16), ``t`` (int64,
    microseconds) and ``p`` (bool), packed (13 bytes a record)."""
    require("numpy", "numpy", "Events.as_structured()")
    import numpy

    return numpy.dtype([("x", numpy.int16), ("y", numpy.int16), ("t", numpy.int64),
                        ("p", numpy.bool_)])


@dataclass(frozen=True)
class Events:
    """Events as four equally long numpy arrays, plus the sensor geometry.

    From :meth:`evshm.Recording.events` the arrays are read-only views into the shared
    memory (no copy); they can also be built from any arrays of the same meaning, or from
    a structured array (:meth:`from_structured`). The transforms of
    :mod:`evshm.transforms` take and return them, never writing into their arrays.

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

    def select(self, rows: np.ndarray) -> Events:
        """The events picked by ``rows`` (a boolean mask or integer indices), in that
        order, with the same geometry and window: new arrays (numpy indexing copies)."""
        require("numpy", "numpy", "Events.select()")
        import numpy

        rows = numpy.asarray(rows)
        if rows.dtype == numpy.bool_:
            # One pass to find the rows, then four gathers: cheaper than four masks,
            # each of which counts the mask again (nonzero: flatnonzero's own cost is
            # a few times that of nonzero on a small window).
            (rows,) = rows.reshape(-1).nonzero()
        return Events(self.t[rows], self.x[rows], self.y[rows], self.p[rows], self.width,
                      self.height, self.t0, self.t1)

    def as_structured(self, dtype: DTypeLike | None = None) -> np.ndarray:
        """The events as one structured numpy array, a record per event: by default
        with tonic's fields and dtypes (:func:`structured_dtype`: ``x, y`` int16, ``t``
        int64, ``p`` bool), which is what tonic's transforms take.

        ``dtype`` may name another structured dtype with fields ``x``, ``y``, ``t`` and
        ``p`` (in any order, of any numeric type, e.g. tonic's N-MNIST dtype of four
        ints); each column is converted to its field's type. Always a copy: the records
        interleave the columns.
        """
        import numpy

        kind = structured_dtype() if dtype is None else numpy.dtype(dtype)
        missing = [name for name in ("x", "y", "t", "p")
                   if kind.names is None or name not in kind.names]
        if missing:
            raise ValueError(f"a structured dtype with fields x, y, t and p is needed, "
                             f"{kind} has no {', '.join(missing)}")
        out = numpy.empty(len(self.t), dtype=kind)
        out["x"], out["y"], out["t"] = self.x, self.y, self.t
        # A bool field takes "is ON", not the int8 bit pattern.
        out["p"] = self.p == 1 if out.dtype["p"] == numpy.bool_ else self.p
        return out

    @classmethod
    def from_structured(cls, events: np.ndarray, width: int, height: int, *,
                        t0: int | None = None, t1: int | None = None) -> Events:
        """Events from a structured array with fields ``x``, ``y``, ``t`` and ``p`` (a
        tonic sample, :meth:`as_structured`'s result), converted to evshm's column
        types (``t`` int64, ``x``/``y`` int16, ``p`` int8: a bool polarity becomes 0/1).
        The columns are copied into contiguous arrays."""
        require("numpy", "numpy", "Events.from_structured()")
        import numpy

        names = events.dtype.names or ()
        missing = [name for name in ("x", "y", "t", "p") if name not in names]
        if missing:
            raise ValueError(f"events need fields x, y, t and p; {events.dtype} has no "
                             f"{', '.join(missing)}")
        return cls(t=numpy.ascontiguousarray(events["t"], dtype=numpy.int64),
                   x=numpy.ascontiguousarray(events["x"], dtype=numpy.int16),
                   y=numpy.ascontiguousarray(events["y"], dtype=numpy.int16),
                   p=numpy.ascontiguousarray(events["p"], dtype=numpy.int8),
                   width=int(width), height=int(height), t0=t0, t1=t1)
