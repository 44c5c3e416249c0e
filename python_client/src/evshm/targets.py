"""Targets of windows for training: a callable ``target(path, t_start, t_end)``.

The datasets of :mod:`evshm.torch` take one as ``target=`` and make each item ``(input,
target(path, t_start, t_end))``, where ``path`` is the recording's name as the daemon
serves it and ``[t_start, t_end)`` the window in microseconds. Any picklable callable
will do (a module-level function, a class instance); two common layouts are here:

- :class:`FolderClass`: the class is the name of the folder holding the recording, as
  in N-CARS (``train/cars/obj_004397_td.dat``), N-Caltech101, N-MNIST, or DVS-Gesture
  sorted into one folder per gesture;
- :class:`Boxes`: the bounding boxes of Prophesee's automotive detection datasets (Gen1,
  1 Megapixel), read from the ``*_bbox.npy`` file beside each recording.

A target may also have a ``fit(paths)`` method: the dataset calls it once, when it is
built, with its recordings (in the training process, before any worker starts).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._optional import require

if TYPE_CHECKING:
    import numpy as np

__all__ = ["FolderClass", "Boxes", "bbox_dtype"]


class FolderClass:
    """The class of a recording is the name of its parent folder: item target is the
    class's index in :attr:`classes`, sorted by name (as torchvision's
    ``ImageFolder``), an int.

    ``classes`` lists the classes; by default they are learnt by the first dataset built
    with this target (from its recordings' folders). A later dataset (the validation set
    built with the same object) must then hold only known classes, so that an index
    means the same class in both; a recording of another class is refused when the
    dataset is built, naming it.

    Attributes:
        classes: the class names, sorted (``None`` until learnt).
        class_to_idx: each class name's index.
    """

    def __init__(self, classes: Sequence[str] | None = None) -> None:
        self.classes: list[str] | None = None
        self.class_to_idx: dict[str, int] = {}
        if classes is not None:
            self._set(classes)

    def _set(self, classes: Sequence[str]) -> None:
        names = sorted(set(classes))
        if not names or any(not name for name in names):
            raise ValueError(f"classes must be non-empty names, got {list(classes)!r}")
        self.classes = names
        self.class_to_idx = {name: i for i, name in enumerate(names)}

    @staticmethod
    def folder(path: str) -> str:
        """The class name of ``path``: its parent folder's name (``""`` for a recording
        at the top of a root)."""
        return posixpath.basename(posixpath.dirname(path))

    def fit(self, paths: Sequence[str]) -> None:
        """Learn the classes from ``paths`` (the dataset's recordings) if none are known
        yet; else check that every path's class is known. Raises :class:`ValueError`
        naming the recordings that have no class folder or an unknown one."""
        found = {path: self.folder(path) for path in paths}
        loose = [path for path, name in found.items() if not name]
        if loose:
            raise ValueError(f"FolderClass: {len(loose)} recording(s) not in a class "
                             f"folder, e.g. {loose[0]!r}")
        if self.classes is None:
            self._set(list(found.values()))
            return
        unknown = sorted({name for name in found.values() if name not in self.class_to_idx})
        if unknown:
            raise ValueError(f"FolderClass: classes {unknown} are not among the known "
                             f"classes {self.classes}")

    def __call__(self, path: str, t_start: int, t_end: int) -> int:
        if self.classes is None:
            raise ValueError("FolderClass has no classes yet: give classes=, or let a "
                             "dataset fit it (target=FolderClass())")
        name = self.folder(path)
        try:
            return self.class_to_idx[name]
        except KeyError:
            raise ValueError(f"FolderClass: {path!r} is in folder {name!r}, not one of "
                             f"the classes {self.classes}") from None

    def __repr__(self) -> str:
        return f"FolderClass(classes={self.classes!r})"


def bbox_dtype() -> np.dtype[Any]:
    """The boxes :class:`Boxes` returns: the dtype of Prophesee's automotive toolbox
    (``BBOX_DTYPE``), fields ``t`` (int64, microseconds), ``x``, ``y`` (the top left
    corner), ``w``, ``h`` (float32, pixels), ``class_id`` (uint32), ``track_id``
    (uint32), ``class_confidence`` (float32), 40 bytes a record."""
    require("numpy", "numpy", "evshm.targets.Boxes")
    import numpy

    return numpy.dtype({
        "names": ["t", "x", "y", "w", "h", "class_id", "track_id", "class_confidence"],
        "formats": ["<i8", "<f4", "<f4", "<f4", "<f4", "<u4", "<u4", "<f4"],
        "offsets": [0, 8, 12, 16, 20, 24, 28, 32], "itemsize": 40})


#: Older label files (the Gen1 release) name two fields differently; Prophesee's toolbox
#: (``reformat_boxes``) reads them under the new names, and so does :class:`Boxes`.
_OLD_NAMES = {"ts": "t", "confidence": "class_confidence"}


class Boxes:
    """The bounding boxes of a window, from Prophesee's ``*_bbox.npy`` label files
    (Gen1 and 1 Megapixel automotive detection datasets).

    The label file of recording ``NAME_td.dat`` (or ``NAME.raw``, ``NAME_td.h5``...) is
    ``NAME_bbox.npy`` beside it, under ``root``, the folder the daemon serves (evshm
    reads the labels, not the daemon). A call returns the boxes whose time lies in the
    window, ``t_start <= t < t_end``, in time order, as a read-only structured array of
    :func:`bbox_dtype` (Prophesee's ``BBOX_DTYPE``: the files of the Gen1 release, with
    fields ``ts`` and ``confidence`` and unsigned times, are read into it, as
    Prophesee's toolbox does). A recording without a label file has no boxes.

    Each process reads a label file once, on first use, and keeps it; pickling keeps
    only ``root``. Geometric transforms apply to the events, not to the boxes: to crop
    or resize, move the boxes yourself (``x``, ``y``, ``w``, ``h`` are pixels of the
    recording's sensor).
    """

    def __init__(self, root: str | os.PathLike[str], *, suffix: str = "_bbox.npy",
                 missing_ok: bool = True) -> None:
        self.root = os.fspath(root)
        self.suffix = suffix
        self.missing_ok = missing_ok
        self._cache: dict[str, np.ndarray] = {}

    def label_file(self, path: str) -> str:
        """Where the boxes of recording ``path`` are: its name with ``_td`` and the
        extension replaced by ``suffix``, under ``root``."""
        stem = posixpath.splitext(path)[0].removesuffix("_td")
        return os.path.join(self.root, stem + self.suffix)

    def boxes(self, path: str) -> np.ndarray:
        """Every box of recording ``path``, sorted by time (stable), read-only."""
        cached = self._cache.get(path)
        if cached is None:
            cached = self._cache[path] = self._load(path)
        return cached

    def _load(self, path: str) -> np.ndarray:
        import numpy

        kind = bbox_dtype()
        file = self.label_file(path)
        if not os.path.exists(file) and self.missing_ok:
            return numpy.empty(0, dtype=kind)
        raw = numpy.load(file, allow_pickle=False)
        names = raw.dtype.names or ()
        renamed = {_OLD_NAMES.get(name, name): name for name in names}
        missing = [name for name in ("t", "x", "y", "w", "h", "class_id")
                   if name not in renamed]
        if raw.ndim != 1 or missing:
            raise ValueError(f"{file}: not a file of boxes (a 1-d structured array with "
                             f"fields ts or t, x, y, w, h, class_id): {raw.dtype}, "
                             f"shape {raw.shape}")
        out = numpy.zeros(len(raw), dtype=kind)
        for name in kind.names or ():
            if name in renamed:
                out[name] = raw[renamed[name]]
        out = out[numpy.argsort(out["t"], kind="stable")]
        out.flags.writeable = False
        return out

    def __call__(self, path: str, t_start: int, t_end: int) -> np.ndarray:
        boxes = self.boxes(path)
        lo, hi = boxes["t"].searchsorted([t_start, t_end])
        return boxes[lo:hi]

    def __getstate__(self) -> dict[str, Any]:
        return {"root": self.root, "suffix": self.suffix, "missing_ok": self.missing_ok}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cache = {}

    def __repr__(self) -> str:
        return f"Boxes(root={self.root!r}, suffix={self.suffix!r})"
