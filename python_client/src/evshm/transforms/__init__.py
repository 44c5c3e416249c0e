"""Transforms of events, numpy-vectorised: augmentations, filters and representations.

Every transform is a small picklable object (so it reaches ``spawn`` DataLoader workers)
called on an :class:`~evshm.Events`, what :meth:`evshm.Recording.events` returns and what
the datasets of :mod:`evshm.torch` pass to their ``transform``. Event transforms return
new :class:`~evshm.Events` (crops and resizes with the new geometry); representations
return a dense numpy array, the same shape for every window. Chain them with
:class:`Compose`::

    Compose([Resize((320, 240)), RandomFlipLR(seed=0), RandomCrop((256, 192), seed=1),
             VoxelGrid(5)])

No transform writes into its input, so the read-only views into the shared memory are
used as they are; each computes with whole-array numpy operations, no loop over events.

- geometric: :class:`RandomFlipLR`, :class:`RandomFlipUD`, :class:`RandomCrop`,
  :class:`CenterCrop`, :class:`Resize` (onto another sensor size: how recordings of
  different sensors are mixed), :class:`Downsample` (by a factor);
- temporal: :class:`TimeJitter`, :class:`DropEvents`, :class:`TimeReversal`;
- filters: :class:`Denoise` (background activity), :class:`Refractory`,
  :class:`HotPixels`;
- representations: :class:`EventHistogram`, :class:`EventFrame`, :class:`VoxelGrid`,
  :class:`TimeSurface`, and the functions on plain arrays behind them.

Where tonic has the same transform, its class doc says how the two compare (mostly:
the same result). tonic's own transforms take structured arrays:
:meth:`evshm.Events.as_structured` gives one, and the datasets' ``structured=True`` passes
one to the transform.

Random transforms take a ``seed`` and draw from a generator of their own, seeded per
process and per torch DataLoader worker: see :class:`RandomTransform`.
"""

from __future__ import annotations

from .._optional import require

require("numpy", "numpy", "evshm.transforms")

# After the friendly check above: each module imports numpy.
from ._base import Compose, RandomTransform  # noqa: E402
from ._filters import Denoise, HotPixels, Refractory  # noqa: E402
from ._representations import (  # noqa: E402
    EventFrame,
    EventHistogram,
    TimeSurface,
    VoxelGrid,
    event_frame,
    event_histogram,
    time_surface,
    voxel_grid,
)
from ._spatial import (  # noqa: E402
    CenterCrop,
    Downsample,
    RandomCrop,
    RandomFlipLR,
    RandomFlipUD,
    Resize,
    crop,
    resize,
)
from ._temporal import DropEvents, TimeJitter, TimeReversal  # noqa: E402

__all__ = [
    "Compose",
    "RandomTransform",
    "RandomFlipLR",
    "RandomFlipUD",
    "RandomCrop",
    "CenterCrop",
    "Resize",
    "Downsample",
    "crop",
    "resize",
    "TimeJitter",
    "DropEvents",
    "TimeReversal",
    "Denoise",
    "Refractory",
    "HotPixels",
    "EventHistogram",
    "EventFrame",
    "VoxelGrid",
    "TimeSurface",
    "event_histogram",
    "event_frame",
    "voxel_grid",
    "time_surface",
]
